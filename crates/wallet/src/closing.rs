//! The client's chain duties for its channels: ask the payee to close a channel near its
//! expiry, watch each contract until the transaction that spends it is final, broadcast the refund of a channel the payee never closed at the fee
//! market of the moment (and replace it at a higher fee while it waits), flag a channel whose
//! settlement is late, and put back what a reorganisation takes out of the chain.
//!
//! Nothing is final before [`final_confirmations`]: a channel is recorded closed (or its
//! refund done with) only once the spending transaction is that deep. Until then a
//! settlement, a refund or a contract no longer in a block is broadcast again.

use bitcoin::{FeeRate, Network, Transaction, Txid};
use trickle_channel::{ChannelError, PayerChannel, PayerState, Snapshot};

use crate::chain::{depth, ChainSource};
use crate::channels::{ChannelClientError, Transport};
use crate::store::Store;
use crate::wallet::Wallet;

/// Blocks before a channel's expiry at which the payer asks its payee to close it, if the
/// payee has not (it closes 12 blocks ahead by default): the settlement then has these blocks
/// to confirm before the refund is valid too.
pub const CLOSE_MARGIN_BLOCKS: i64 = 6;

/// Blocks before the expiry by which the settlement should be in a block: a channel whose
/// contract is not spent in a block by then is flagged
/// ([`ChainWatch::settlement_overdue`]), and its refund goes out as soon as it is valid. The
/// payee closes 12 blocks ahead by default, the extension asks it to 6 blocks ahead; this is
/// what is left when both failed.
pub const SETTLEMENT_DUE_BLOCKS: i64 = 3;

/// Confirmations after which the wallet counts a settlement, refund or contract final on
/// `network`: 6 (a reorganisation deeper than that is not planned for), 1 on regtest, where
/// only tests reorganise the chain.
pub fn final_confirmations(network: Network) -> u32 {
    match network {
        Network::Regtest => 1,
        _ => 6,
    }
}

/// What one round of [`Wallet::run_duties`] did, per site.
#[derive(Debug, Default)]
pub struct Duties {
    /// Channels near their expiry the payee was asked to close: its settlement's txid, or why
    /// it did not close (closed already, or unreachable: the spent contract or the refund
    /// tells, later).
    pub closed: Vec<(String, Result<Txid, ChannelClientError>)>,
    /// Contracts whose spend is newly final ([`Wallet::check_spent_contracts`]).
    pub settled: Vec<(String, Result<Txid, ChannelError>)>,
    /// Refunds broadcast, and their replacements ([`Wallet::refund_expired`]).
    pub refunds: Vec<Transaction>,
}

/// The channel whose contract the duties watch: committed, or refunded.
fn watched(state: &PayerState) -> Option<&PayerChannel> {
    match state {
        PayerState::Refunded { channel, .. } => Some(channel),
        state => state.committed_channel(),
    }
}

/// The refund's fee rate from the chain's estimates: the next block's, as the refund races
/// the payee's settlement from the moment it is valid (at least 1 sat/vB, the estimates'
/// floor; at most half the channel in fees, `trickle_channel::MAX_REFUND_FEE_SHARE`).
async fn refund_fee_rate<C: ChainSource>(chain: &C) -> Result<FeeRate, ChannelClientError> {
    Ok(chain.fee_rates().await?.fast.max(FeeRate::BROADCAST_MIN))
}

impl<S: Store> Wallet<S> {
    /// Every channel duty, in order, as both payers run them (the extension from an alarm,
    /// the CLI's `duties`): ask the payee of each open channel within [`CLOSE_MARGIN_BLOCKS`]
    /// of its expiry to close it, check the contracts spent
    /// ([`Self::check_spent_contracts`]), and refund the expired ones
    /// ([`Self::refund_expired`]).
    pub async fn run_duties<C: ChainSource, T: Transport>(
        &mut self,
        chain: &C,
        transport: &T,
        final_confirmations: u32,
    ) -> Result<Duties, ChannelClientError> {
        let tip = chain.tip().await?;
        let mut duties = Duties::default();
        for record in self.channels().await? {
            let expiring = matches!(record.state.state, PayerState::Ready { .. })
                && record
                    .state
                    .state
                    .contract()
                    .is_some_and(|c| tip.blocks_until(c.expiry) <= CLOSE_MARGIN_BLOCKS);
            if expiring {
                let closed = self
                    .close_channel(transport, &record.site, &record.payee_key, tip)
                    .await;
                let txid = closed.map(|settlement| settlement.compute_txid());
                duties.closed.push((record.site, txid));
            }
        }
        duties.settled = self
            .check_spent_contracts(chain, final_confirmations)
            .await?;
        duties.refunds = self.refund_expired(chain).await?;
        Ok(duties)
    }

    /// Chain duties for every channel not yet final: a contract spent in a block
    /// `final_confirmations` deep is checked — one of our refunds, or a settlement, which must
    /// pay the client at least the channel value less what it signed
    /// (`PayerState::on_contract_spent`) — and the channel recorded as closed (or refunded)
    /// for good. Until then nothing is final: a settlement in a block is kept to broadcast
    /// again, and one no longer in a block (a reorganisation) is broadcast again, as is a
    /// contract out of the chain. A channel with no spend in a block [`SETTLEMENT_DUE_BLOCKS`]
    /// before its expiry is flagged. Returns, per site whose contract's spend is newly final,
    /// its txid or why the settlement is refused (then the channel is kept as it was, and the
    /// refusal reported again).
    pub async fn check_spent_contracts<C: ChainSource>(
        &mut self,
        chain: &C,
        final_confirmations: u32,
    ) -> Result<Vec<(String, Result<Txid, ChannelError>)>, ChannelClientError> {
        let tip = chain.tip().await?;
        let mut seen = Vec::new();
        for mut record in self.channels().await? {
            if record.chain.is_done(&record.state.state) {
                continue;
            }
            let Some(channel) = watched(&record.state.state).cloned() else {
                continue;
            };
            let before = record.clone();
            let spend = chain.spend_of(channel.funding.outpoint).await?;
            match spend.and_then(|s| s.height.map(|h| (s.txid, h))) {
                Some((txid, height)) => {
                    // Only a spend in a block counts: a settlement in a mempool (or one an
                    // Esplora server invents) may never confirm, and the refund stays armed.
                    let Some(tx) = chain.tx(&txid).await? else {
                        continue;
                    };
                    let step = match record.state.state.on_contract_spent(&tx) {
                        Ok(step) => step,
                        Err(e) => {
                            seen.push((record.site.clone(), Err(e)));
                            continue;
                        }
                    };
                    if depth(height, &tip) >= final_confirmations {
                        if matches!(step.state, PayerState::Closed { .. }) {
                            // Settled after all: nothing for the user to act on.
                            record.chain.settlement_overdue = false;
                        }
                        record.state = Snapshot::new(step.state);
                        record.chain.final_spend = Some(txid);
                        seen.push((record.site.clone(), Ok(txid)));
                    } else if matches!(step.state, PayerState::Closed { .. }) {
                        // Not final yet: kept, to broadcast again if a reorganisation drops it.
                        record.chain.settlement = Some(tx);
                    }
                }
                None => {
                    // Not (or no longer, after a reorganisation) in a block: what we hold goes
                    // out again. A refused broadcast (already in the mempool, or replaced
                    // there by a higher fee) changes nothing.
                    let contract = channel.contract_txid();
                    if spend.is_none() && chain.confirmation_height(&contract).await?.is_none() {
                        let _ = chain.broadcast(&channel.contract_tx).await;
                    }
                    if let Some(settlement) = &record.chain.settlement {
                        let _ = chain.broadcast(settlement).await;
                    }
                    let expiry = channel.funding.contract.expiry;
                    if tip.blocks_until(expiry) <= SETTLEMENT_DUE_BLOCKS {
                        record.chain.settlement_overdue = true;
                    }
                }
            }
            if record != before {
                self.save(&record).await?;
            }
        }
        Ok(seen)
    }

    /// Chain duties for every channel not yet final: once a channel's expiry has passed
    /// without a settlement, store its refund at the chain's fee estimate for the next block,
    /// then broadcast it; on later calls, broadcast it again, or, when the estimate has risen
    /// above what it pays, store and broadcast a replacement at the new rate (both versions:
    /// the client alone rebuilds its refund, `PayerChannel::bumped_refund`). Returns the
    /// refunds broadcast for the first time and the replacements.
    pub async fn refund_expired<C: ChainSource>(
        &mut self,
        chain: &C,
    ) -> Result<Vec<Transaction>, ChannelClientError> {
        let tip = chain.tip().await?;
        let rate = refund_fee_rate(chain).await?;
        let mut refunds = Vec::new();
        for mut record in self.channels().await? {
            if record.chain.is_done(&record.state.state) {
                continue;
            }
            let key = self.channel_key(record.key_index)?;
            let step = record.state.state.on_tip(&Self::context(&key, tip, rate))?;
            if step.broadcast.is_empty() {
                continue;
            }
            // A spend in a block (a settlement, or a refund) is final soon, or put back in the
            // mempool by a reorganisation: no refund against it, and no replacement of it.
            if let Some(channel) = watched(&record.state.state) {
                let spend = chain.spend_of(channel.funding.outpoint).await?;
                if spend.is_some_and(|s| s.height.is_some()) {
                    continue;
                }
            }
            let changed = step.state != record.state.state;
            if changed {
                // Persist, then act: a refund (or its replacement) leaves only once stored.
                record.state = Snapshot::new(step.state);
                self.save(&record).await?;
            }
            for tx in step.broadcast {
                let sent = chain.broadcast(&tx).await;
                if changed {
                    sent?;
                    refunds.push(tx);
                }
                // A rebroadcast fails once the refund is in a block: nothing to do then.
            }
        }
        Ok(refunds)
    }
}
