//! Chain access: the tip, broadcasting, and whether a contract was spent.

use core::fmt;
use std::time::Duration;

use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{BlockHash, FeeRate, OutPoint, Transaction, Txid};
use serde::Deserialize;
use trickle_channel::ChainTip;

/// Why the chain could not be asked or told something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// The chain backend could not be reached or answered nonsense; try again later.
    Unavailable(String),
    /// The network refused the transaction (invalid, non-standard, conflicting).
    Rejected(String),
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(e) => write!(f, "chain backend unavailable: {e}"),
            Self::Rejected(e) => write!(f, "transaction rejected: {e}"),
        }
    }
}

impl std::error::Error for ChainError {}

/// A spend of an output, as seen by the chain backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spend {
    /// The spending transaction.
    pub tx: Transaction,
    /// The height of the block holding it, if it is in one (else it is only in the mempool).
    pub height: Option<u32>,
}

impl Spend {
    /// How many blocks hold it at `tip` (its own and those after it); 0 in the mempool.
    pub fn depth(&self, tip: &ChainTip) -> u32 {
        self.height.map_or(0, |h| depth(h, tip))
    }
}

/// How many confirmations a transaction in the block at `height` has at `tip`.
pub fn depth(height: u32, tip: &ChainTip) -> u32 {
    tip.height.max(height) - height + 1
}

/// What the payee needs from the chain.
#[async_trait::async_trait]
pub trait Chain: Send + Sync {
    /// The best block: height and median-time-past.
    async fn tip(&self) -> Result<ChainTip, ChainError>;

    /// Hands a transaction to the network. A transaction the network already has is a success.
    async fn broadcast(&self, tx: &Transaction) -> Result<(), ChainError>;

    /// The height of the block holding `txid`, if it is in one.
    async fn confirmation_height(&self, txid: &Txid) -> Result<Option<u32>, ChainError>;

    /// The transaction spending `outpoint`, if any (mempool or chain).
    async fn spend_of(&self, outpoint: &OutPoint) -> Result<Option<Spend>, ChainError>;

    /// The fee rate estimated to confirm within `target` blocks, if the backend has one.
    async fn fee_estimate(&self, target: u32) -> Result<Option<FeeRate>, ChainError>;
}

/// From Esplora's `/fee-estimates` (sat/vB by confirmation target): the estimate of the largest
/// target not above `target`, or of the smallest target if all are above it.
pub fn pick_estimate(
    estimates: &std::collections::BTreeMap<u32, f64>,
    target: u32,
) -> Option<FeeRate> {
    let sat_vb = estimates
        .range(..=target)
        .next_back()
        .or_else(|| estimates.iter().next())
        .map(|(_, rate)| *rate)
        .filter(|rate| rate.is_finite() && *rate > 0.0)?;
    // Rounded up to whole sat per 1,000 weight units (a quarter of a sat/vB's precision).
    Some(FeeRate::from_sat_per_kwu(
        (sat_vb * 250.0).ceil().min(1e12) as u64
    ))
}

/// An Esplora REST server (Blockstream's API; `trickle-regtest` serves the same).
pub struct Esplora {
    base: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct BlockInfo {
    height: u32,
    mediantime: u32,
}

#[derive(Deserialize)]
struct TxStatus {
    confirmed: bool,
    block_height: Option<u32>,
}

#[derive(Deserialize)]
struct Outspend {
    spent: bool,
    txid: Option<Txid>,
    status: Option<TxStatus>,
}

fn unavailable(e: impl fmt::Display) -> ChainError {
    ChainError::Unavailable(e.to_string())
}

/// Error texts of Esplora/Bitcoin Core meaning "the network already has it".
fn already_known(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "already in block chain",
        "already-in-mempool",
        "already in mempool",
        "already-known",
        "already known",
        "outputs already in utxo set",
        "same-nonwitness-data-in-mempool",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

impl Esplora {
    /// A client for the Esplora API at `base` (for example `http://127.0.0.1:3002`).
    pub fn new(base: &str) -> Result<Self, ChainError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(unavailable)?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    async fn get_text(&self, path: &str) -> Result<Option<String>, ChainError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(unavailable)?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(ChainError::Unavailable(format!(
                "GET {path} answered {}",
                resp.status()
            )));
        }
        resp.text().await.map(Some).map_err(unavailable)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, ChainError> {
        match self.get_text(path).await? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| ChainError::Unavailable(format!("GET {path}: {e}"))),
        }
    }
}

#[async_trait::async_trait]
impl Chain for Esplora {
    async fn tip(&self) -> Result<ChainTip, ChainError> {
        let hash = self
            .get_text("/blocks/tip/hash")
            .await?
            .ok_or_else(|| unavailable("no tip"))?;
        let hash: BlockHash = hash.trim().parse().map_err(unavailable)?;
        let block: BlockInfo = self
            .get_json(&format!("/block/{hash}"))
            .await?
            .ok_or_else(|| unavailable("tip block vanished"))?;
        Ok(ChainTip {
            height: block.height,
            median_time_past: block.mediantime,
        })
    }

    async fn broadcast(&self, tx: &Transaction) -> Result<(), ChainError> {
        let resp = self
            .http
            .post(format!("{}/tx", self.base))
            .body(serialize_hex(tx))
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        let text = resp.text().await.map_err(unavailable)?;
        if status.is_success() || already_known(&text) {
            return Ok(());
        }
        if status.is_client_error() {
            return Err(ChainError::Rejected(text));
        }
        Err(ChainError::Unavailable(format!(
            "POST /tx answered {status}: {text}"
        )))
    }

    async fn confirmation_height(&self, txid: &Txid) -> Result<Option<u32>, ChainError> {
        let status: Option<TxStatus> = self.get_json(&format!("/tx/{txid}/status")).await?;
        Ok(status.filter(|s| s.confirmed).and_then(|s| s.block_height))
    }

    async fn spend_of(&self, outpoint: &OutPoint) -> Result<Option<Spend>, ChainError> {
        let path = format!("/tx/{}/outspend/{}", outpoint.txid, outpoint.vout);
        let Some(out) = self.get_json::<Outspend>(&path).await? else {
            return Ok(None);
        };
        let (true, Some(txid)) = (out.spent, out.txid) else {
            return Ok(None);
        };
        let hex = self
            .get_text(&format!("/tx/{txid}/hex"))
            .await?
            .ok_or_else(|| unavailable("spending transaction vanished"))?;
        let tx: Transaction = deserialize_hex(hex.trim()).map_err(unavailable)?;
        Ok(Some(Spend {
            tx,
            height: out
                .status
                .filter(|s| s.confirmed)
                .and_then(|s| s.block_height),
        }))
    }

    async fn fee_estimate(&self, target: u32) -> Result<Option<FeeRate>, ChainError> {
        // Esplora's keys are targets as strings; anything else in the object is ignored.
        let raw: Option<std::collections::BTreeMap<String, serde_json::Value>> =
            self.get_json("/fee-estimates").await?;
        let estimates = raw
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(t, rate)| Some((t.parse().ok()?, rate.as_f64()?)))
            .collect();
        Ok(pick_estimate(&estimates, target))
    }
}

#[cfg(test)]
mod tests {
    use super::{already_known, pick_estimate};
    use bitcoin::FeeRate;

    #[test]
    fn the_estimate_for_a_target_is_the_nearest_faster_one() {
        let estimates = [(1, 40.0), (3, 20.5), (6, 10.0), (144, 1.0)]
            .into_iter()
            .collect();
        let rate = |t| pick_estimate(&estimates, t);
        assert_eq!(rate(6), Some(FeeRate::from_sat_per_vb_u32(10)));
        assert_eq!(rate(5), Some(FeeRate::from_sat_per_kwu(5_125)));
        assert_eq!(rate(1_000), Some(FeeRate::from_sat_per_vb_u32(1)));
        let slow = [(6, 3.0)].into_iter().collect();
        assert_eq!(
            pick_estimate(&slow, 1),
            Some(FeeRate::from_sat_per_vb_u32(3))
        );
        let bad = [(1, f64::NAN), (2, -1.0)].into_iter().collect();
        assert_eq!(pick_estimate(&bad, 2), None);
        assert_eq!(pick_estimate(&Default::default(), 2), None);
    }

    #[test]
    fn duplicate_broadcasts_are_recognised() {
        assert!(already_known("txn-already-in-mempool"));
        assert!(already_known(
            "sendrawtransaction RPC error: {\"code\":-27,\"message\":\"Transaction already in block chain\"}"
        ));
        assert!(!already_known("bad-txns-inputs-missingorspent"));
    }
}
