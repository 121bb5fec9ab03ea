//! The chain as the wallet needs it: the tip, fee estimates, broadcasting, and what spent an
//! output. [`ChainSource`] is implemented here for the Esplora client the extension and the
//! command-line payer use; a test can put any chain behind it. Scanning the chain for the
//! wallet's own coins is BDK's (`Wallet::sync`, over Esplora).

use bdk_esplora::esplora_client::{AsyncClient, Sleeper};
use bitcoin::{FeeRate, OutPoint, Transaction, Txid};
use trickle_channel::ChainTip;

use crate::WalletError;

/// Fee rates for about 1, 6 and 24 blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeeRates {
    /// About 1 block.
    pub fast: FeeRate,
    /// About 6 blocks.
    pub normal: FeeRate,
    /// About 24 blocks.
    pub slow: FeeRate,
}

/// The transaction that spent an output, as the chain source reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spend {
    /// The spending transaction.
    pub txid: Txid,
    /// The height of its block, if it is in one.
    pub height: Option<u32>,
}

/// Confirmations of a transaction in the block at `height` with the chain at `tip` (one in
/// the tip's block itself).
pub fn depth(height: u32, tip: &ChainTip) -> u32 {
    tip.height.saturating_add(1).saturating_sub(height)
}

/// What the wallet asks of the chain. Futures are not `Send`, as with [`crate::store::Store`]:
/// the wasm worker is single-threaded (bdk_esplora's `?Send` on wasm32), and native callers
/// run the wallet on one task.
#[allow(async_fn_in_trait)]
pub trait ChainSource {
    /// The chain tip: height and median-time-past.
    async fn tip(&self) -> Result<ChainTip, WalletError>;
    /// Fee rates for about 1, 6 and 24 blocks (at least 1 sat/vB).
    async fn fee_rates(&self) -> Result<FeeRates, WalletError>;
    /// Hands `tx` to the network.
    async fn broadcast(&self, tx: &Transaction) -> Result<(), WalletError>;
    /// What spent `outpoint`, if anything.
    async fn spend_of(&self, outpoint: OutPoint) -> Result<Option<Spend>, WalletError>;
    /// The transaction `txid`, if the chain source knows it.
    async fn tx(&self, txid: &Txid) -> Result<Option<Transaction>, WalletError>;
    /// The height of the block `txid` is in; `None` while it is not in one (or unknown).
    async fn confirmation_height(&self, txid: &Txid) -> Result<Option<u32>, WalletError>;
}

impl<Z: Sleeper> ChainSource for AsyncClient<Z> {
    async fn tip(&self) -> Result<ChainTip, WalletError> {
        let hash = self.get_tip_hash().await?;
        let info = self.get_block_info(&hash).await?;
        Ok(ChainTip {
            height: info.height,
            median_time_past: u32::try_from(info.mediantime)
                .map_err(|_| WalletError::Chain("median time out of range".into()))?,
        })
    }

    async fn fee_rates(&self) -> Result<FeeRates, WalletError> {
        let estimates = self.get_fee_estimates().await?;
        let rate = |target| {
            let sat_vb = bdk_esplora::esplora_client::convert_fee_rate(target, estimates.clone())
                .unwrap_or(1.0)
                .max(1.0);
            // sat/vB to sat/kwu, rounded up so the estimate is met.
            FeeRate::from_sat_per_kwu((f64::from(sat_vb) * 250.0).ceil() as u64)
        };
        Ok(FeeRates {
            fast: rate(1),
            normal: rate(6),
            slow: rate(24),
        })
    }

    async fn broadcast(&self, tx: &Transaction) -> Result<(), WalletError> {
        Ok(AsyncClient::broadcast(self, tx).await?)
    }

    async fn spend_of(&self, outpoint: OutPoint) -> Result<Option<Spend>, WalletError> {
        let status = self
            .get_output_status(&outpoint.txid, u64::from(outpoint.vout))
            .await?;
        Ok(status.and_then(|s| {
            let height = s.status.as_ref().and_then(|t| t.block_height);
            s.txid.map(|txid| Spend { txid, height })
        }))
    }

    async fn tx(&self, txid: &Txid) -> Result<Option<Transaction>, WalletError> {
        Ok(self.get_tx(txid).await?)
    }

    async fn confirmation_height(&self, txid: &Txid) -> Result<Option<u32>, WalletError> {
        let info = self.get_tx_info(txid).await?;
        Ok(info.and_then(|tx| tx.status.block_height))
    }
}
