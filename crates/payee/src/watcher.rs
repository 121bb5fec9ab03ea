//! Chain duties: follow the tip, close channels before expiry, rebroadcast contracts and
//! settlements until they confirm, and notice a contract spent.
//!
//! Nothing is final before `final_confirmations`: a channel is recorded closed only once the
//! transaction spending its contract is that deep, and a contract is asked about until it is.
//! A reorganisation that drops either finds the channel's duties where they were: the
//! contract is rebroadcast, the stored settlement rebroadcast (or replaced) until it confirms
//! again.

use std::time::Duration;

use trickle_channel::PayeeState;

use crate::chain::{depth, ChainError};
use crate::payee::{Metrics, Payee};
use crate::store::{ChannelUpdate, StoreError, StoredChannel};

/// A contract the chain showed in a block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Confirmed {
    /// The block's height.
    height: u32,
    /// It was `final_confirmations` deep when the chain was last asked: not asked again.
    is_final: bool,
}

/// A close at risk: the channel is past its close margin (its settlement's fee rises block by
/// block) and no transaction spending its contract is in a block yet. Shown in `/status` and
/// counted in `/metrics`, so that an operator sees a close racing the client's refund.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CloseAtRisk {
    /// Blocks left before the client's refund is valid too.
    pub blocks_left: i64,
    /// The fee rate of the settlement last broadcast, sat/vB.
    pub fee_rate_sat_vb: u64,
}

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
    /// rebroadcast what is unconfirmed, note when its contract confirms (and forget it when a
    /// reorganisation takes it out of the chain), and mark it closed once its contract is
    /// spent `final_confirmations` deep or its contract's inputs are spent by another
    /// transaction.
    /// Also forgets pending sessions older than the offer timeout.
    pub async fn chain_duties(&self) -> Result<(), DutyError> {
        let tip = self.chain().tip().await?;
        self.set_tip(tip);
        // Settlements follow the fee market; if the estimate cannot be read, the last one
        // stands (never the floor in the middle of a spike).
        match self
            .chain()
            .fee_estimate(self.config().close_target_blocks)
            .await
        {
            Ok(Some(rate)) => self.set_fee_estimate(Some(rate)),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "no fee estimate; keeping the last one"),
        }
        let timeout = u64::from(self.config().offer_timeout_secs);
        self.store()
            .prune_sessions(self.now().saturating_sub(timeout))
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
        let tip = self.tip();
        let needed = self.config().final_confirmations;
        if let Some(spend) = chain.spend_of(&channel.funding.outpoint).await? {
            if spend.height.is_some() {
                self.set_at_risk(txid, None);
            }
            if spend.depth(&tip) >= needed {
                let step = stored
                    .state
                    .on_contract_spent(&spend.tx)
                    .map_err(|_| ChainError::Unavailable("spend does not match".into()))?;
                self.write(&stored, &step.state).await?;
                tracing::info!(%txid, spent_by = %spend.tx.compute_txid(), "channel closed on chain");
                return Ok(());
            }
            if spend.height.is_some() {
                // In a block, not yet final: nothing to broadcast or replace. Should a
                // reorganisation drop it, a later round finds it unconfirmed or gone, and
                // rebroadcasts.
                return Ok(());
            }
        } else if !self.confirmation(&txid).is_some_and(|c| c.is_final) {
            if let Some(height) = chain.confirmation_height(&txid).await? {
                self.remember_confirmed(txid, height, depth(height, &tip) >= needed);
            } else if let Some(conflict) = self.conflicting_spend(&channel.contract_tx).await? {
                // The client spent the contract's coins elsewhere: it can never confirm, so
                // the channel is dead. Closed, it is neither served nor watched again.
                let dead = PayeeState::Closed {
                    channel: channel.clone(),
                    spent_by: conflict,
                };
                self.write(&stored, &dead).await?;
                self.set_at_risk(txid, None);
                tracing::warn!(%txid, %conflict, "contract double-spent; channel abandoned");
                return Ok(());
            } else {
                // Not (or no longer, after a reorganisation) in a block.
                self.forget_confirmed(&txid);
                if let Err(e) = chain.broadcast(&channel.contract_tx).await {
                    // A refused rebroadcast must not keep the channel from closing at its
                    // margin.
                    tracing::warn!(%txid, error = %e, "contract rebroadcast failed");
                }
            }
        }
        let step = self
            .with_ctx(|ctx| stored.state.on_tip(ctx))
            .map_err(|e| ChainError::Unavailable(e.to_string()))?;
        if step.state != stored.state {
            self.write(&stored, &step.state).await?;
            tracing::info!(%txid, "closing channel before its expiry");
        }
        let blocks_left = tip.blocks_until(channel.funding.contract.expiry);
        let margin = i64::from(self.config().policy.close_margin_blocks);
        let at_risk = match &step.state {
            PayeeState::Closing { settlement, .. } if blocks_left < margin => Some(CloseAtRisk {
                blocks_left,
                fee_rate_sat_vb: channel.settlement_fee(settlement).to_sat()
                    / (settlement.vsize() as u64).max(1),
            }),
            _ => None,
        };
        if let Some(risk) = at_risk {
            tracing::warn!(%txid, blocks_left, fee_rate_sat_vb = risk.fee_rate_sat_vb, "settlement not yet in a block");
        }
        self.set_at_risk(txid, at_risk);
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
        let update = ChannelUpdate::new(&stored.state, state, stored.ledger, &[]);
        // A conflict means a request moved the channel; the next round sees the new state.
        self.forget_hot_channel(&txid);
        self.store()
            .update_channel(&txid, stored.revision, update)
            .await
            .map(drop)
    }

    /// A transaction other than `contract` spending one of its inputs, on chain or in the
    /// mempool, if the chain backend knows one.
    async fn conflicting_spend(
        &self,
        contract: &bitcoin::Transaction,
    ) -> Result<Option<bitcoin::Txid>, ChainError> {
        let txid = contract.compute_txid();
        for input in &contract.input {
            if let Some(spend) = self.chain().spend_of(&input.previous_output).await? {
                let by = spend.tx.compute_txid();
                if by != txid {
                    return Ok(Some(by));
                }
            }
        }
        Ok(None)
    }

    fn set_at_risk(&self, txid: bitcoin::Txid, risk: Option<CloseAtRisk>) {
        if let Ok(mut m) = self.0.at_risk.lock() {
            match risk {
                Some(risk) => m.insert(txid, risk),
                None => m.remove(&txid),
            };
        }
    }

    /// The close of the channel with contract `txid`, if the chain duties last found it at
    /// risk.
    pub(crate) fn close_at_risk(&self, txid: &bitcoin::Txid) -> Option<CloseAtRisk> {
        self.0.at_risk.lock().ok()?.get(txid).copied()
    }

    fn confirmation(&self, txid: &bitcoin::Txid) -> Option<Confirmed> {
        self.0.confirmed.lock().ok()?.get(txid).copied()
    }

    fn remember_confirmed(&self, txid: bitcoin::Txid, height: u32, is_final: bool) {
        if let Ok(mut s) = self.0.confirmed.lock() {
            s.insert(txid, Confirmed { height, is_final });
        }
    }

    fn forget_confirmed(&self, txid: &bitcoin::Txid) {
        if let Ok(mut s) = self.0.confirmed.lock() {
            s.remove(txid);
        }
    }

    /// Whether the contract `txid` has the configured confirmations, as the chain duties last
    /// saw it: a channel is served beyond `unconfirmed_credit` only then.
    pub(crate) fn has_confirmations(&self, txid: &bitcoin::Txid) -> bool {
        let needed = self.config().confirmations;
        if needed == 0 {
            return true;
        }
        self.confirmation(txid)
            .is_some_and(|c| depth(c.height, &self.tip()) >= needed)
    }

    /// [`Self::has_confirmations`], asking the chain when the duties have not yet seen the
    /// contract confirmed (a contract opened since their last round, or any contract after a
    /// restart), rather than refusing a channel that may well be confirmed.
    pub(crate) async fn confirmed_enough(&self, txid: &bitcoin::Txid) -> bool {
        if self.has_confirmations(txid) {
            return true;
        }
        if self.confirmation(txid).is_none() {
            match self.chain().confirmation_height(txid).await {
                Ok(Some(height)) => self.remember_confirmed(*txid, height, false),
                Ok(None) => return false,
                Err(e) => {
                    tracing::warn!(%txid, error = %e, "cannot ask the chain about a contract");
                    return false;
                }
            }
        }
        self.has_confirmations(txid)
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
