//! Chain duties: follow the tip, close channels before expiry, rebroadcast contracts and
//! settlements until they confirm, and notice a contract spent.

use std::time::Duration;

use trickle_channel::PayeeState;

use crate::chain::ChainError;
use crate::payee::{unix_now, Metrics, Payee};
use crate::store::{ChannelUpdate, StoreError, StoredChannel};

/// Why a round of chain duties stopped early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DutyError {
    /// The chain backend failed.
    Chain(ChainError),
    /// The store failed.
    Store(StoreError),
}

impl std::fmt::Display for DutyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Chain(e) => write!(f, "chain duties: {e}"),
            Self::Store(e) => write!(f, "chain duties: {e}"),
        }
    }
}

impl std::error::Error for DutyError {}

impl From<ChainError> for DutyError {
    fn from(e: ChainError) -> Self {
        Self::Chain(e)
    }
}

impl From<StoreError> for DutyError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl Payee {
    /// One round of chain duties: read the tip, then for every channel close it at the margin,
    /// rebroadcast what is unconfirmed and mark it closed once its contract is spent on chain.
    /// Also forgets pending sessions older than the offer timeout.
    pub async fn chain_duties(&self) -> Result<(), DutyError> {
        let tip = self.chain().tip().await?;
        self.set_tip(tip);
        let timeout = u64::from(self.config().offer_timeout_secs);
        self.store()
            .prune_sessions(unix_now().saturating_sub(timeout))
            .await?;
        for stored in self.store().channels().await? {
            if matches!(stored.state, PayeeState::Closed { .. }) {
                continue;
            }
            // One channel's trouble must not stop the others' duties.
            if let Err(e) = self.channel_duties(stored).await {
                tracing::warn!(error = %e, "channel duties failed; will retry");
            }
        }
        Ok(())
    }

    async fn channel_duties(&self, stored: StoredChannel) -> Result<(), DutyError> {
        let Some(channel) = stored.state.channel() else {
            return Ok(());
        };
        let txid = channel.contract_txid();
        let chain = self.chain();
        if let Some(spend) = chain.spend_of(&channel.funding.outpoint).await? {
            if spend.confirmed {
                let step = stored
                    .state
                    .on_contract_spent(&spend.tx)
                    .map_err(|_| ChainError::Unavailable("spend does not match".into()))?;
                self.write(&stored, &step.state).await?;
                tracing::info!(%txid, spent_by = %spend.tx.compute_txid(), "channel closed on chain");
                return Ok(());
            }
        } else if !self.is_known_confirmed(&txid) {
            if chain.is_confirmed(&txid).await? {
                self.remember_confirmed(txid);
            } else {
                chain.broadcast(&channel.contract_tx).await?;
            }
        }
        let step = self
            .with_ctx(|ctx| stored.state.on_tip(ctx))
            .map_err(|e| ChainError::Unavailable(e.to_string()))?;
        if step.state != stored.state {
            self.write(&stored, &step.state).await?;
            tracing::info!(%txid, "closing channel before its expiry");
        }
        for tx in &step.broadcast {
            Metrics::bump(&self.metrics().settlements_broadcast, 1);
            chain.broadcast(tx).await?;
        }
        Ok(())
    }

    async fn write(&self, stored: &StoredChannel, state: &PayeeState) -> Result<(), StoreError> {
        let Some(txid) = stored.txid() else {
            return Ok(());
        };
        let update = ChannelUpdate {
            state,
            ledger: stored.ledger,
            charged_nonce: None,
        };
        // A conflict means a request moved the channel; the next round sees the new state.
        self.forget_hot_channel(&txid);
        self.store()
            .update_channel(&txid, stored.revision, update)
            .await
            .map(drop)
    }

    fn is_known_confirmed(&self, txid: &bitcoin::Txid) -> bool {
        self.0.confirmed.lock().is_ok_and(|s| s.contains(txid))
    }

    fn remember_confirmed(&self, txid: bitcoin::Txid) {
        if let Ok(mut s) = self.0.confirmed.lock() {
            s.insert(txid);
        }
    }

    /// Runs [`Payee::chain_duties`] every `every` until the returned task is aborted.
    pub fn spawn_chain_duties(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let payee = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                if let Err(e) = payee.chain_duties().await {
                    tracing::warn!(error = %e, "chain duties failed; will retry");
                }
            }
        })
    }
}
