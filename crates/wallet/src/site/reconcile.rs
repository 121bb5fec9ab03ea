//! Settling the reservations of increments whose receipt never came, by asking the payee.

use super::*;
use trickle_channel::http::endpoint::{SessionState, SessionStatus};

/// What the payee at `url` (`{endpoint}/session/{txid}`) says it holds, if it answers.
pub(super) async fn session_status<T: Transport>(
    transport: &T,
    url: &str,
) -> Option<SessionStatus> {
    match transport.get(url).await {
        Ok((200, body)) => serde_json::from_slice(&body).ok(),
        _ => None,
    }
}

impl<S: Store> Wallet<S> {
    /// Settles the budget of increments whose receipt never came (the worker stopped between
    /// signing and the receipt, the response was lost): asks each such channel's payee what it
    /// holds (`GET {endpoint}/session/{channel}`), applies that as a receipt and commits what
    /// it acknowledges. What it does not hold stays reserved until the wallet itself has seen
    /// the channel end: refunded (all released), or closed by a settlement it checked on chain
    /// (what the settlement paid is committed, the rest released). A payee's word that the
    /// channel is closing releases nothing: it may still settle with every payment it holds.
    ///
    /// The payees are asked all at once and each answer is applied as it comes, so a payee
    /// that is slow to answer (at most [`crate::ENDPOINT_TIMEOUT`], see [`Transport`]) holds up
    /// no other. One that does not answer is asked again next time. Each site's settlement is
    /// one write, stored before the next is made. Returns what was committed.
    pub async fn reconcile<A: Approver, T: Transport>(
        &mut self,
        approver: &A,
        transport: &T,
        tip: ChainTip,
        now: u64,
    ) -> Result<Amount, PayError> {
        use futures::stream::{FuturesUnordered, StreamExt};

        let mut sites: Vec<(String, PublicKey)> = self
            .outstanding()
            .await?
            .into_iter()
            .map(|(_, o)| (o.origin, o.payee))
            .collect();
        sites.dedup();
        let mut committed = Amount::ZERO;
        let mut asks = FuturesUnordered::new();
        for (site, payee) in sites {
            let Some(record) = self.channel(&site, &payee).await? else {
                continue;
            };
            let mut writes = WriteBatch::new();
            match record.state.state {
                PayerState::Refunded { .. } => {
                    // The refund took the whole channel back: nothing of it was the payee's.
                    self.release_outstanding(&mut writes, approver, &record)
                        .await?;
                    Staged::new((), writes).commit(&(&*self, approver)).await?;
                    continue;
                }
                PayerState::Closed { paid, .. } => {
                    // Settled on chain: what the settlement paid is spent, the rest never was.
                    let paid = self
                        .commit_acknowledged(
                            &WriteBatch::new(),
                            &mut writes,
                            approver,
                            &record,
                            paid,
                            now,
                        )
                        .await?;
                    self.release_outstanding(&mut writes, approver, &record)
                        .await?;
                    committed += Staged::new(paid, writes)
                        .commit(&(&*self, approver))
                        .await?;
                    continue;
                }
                _ => {}
            }
            let Some(txid) = record.state.state.contract_txid() else {
                continue;
            };
            // The totals are only the client's to read (`trickle_channel::auth`).
            let key = self.channel_key(record.key_index)?;
            let authorization = auth::authorize(ChannelRequest::Status, &txid, &key);
            let url = format!(
                "{}/session/{txid}?authorization={authorization}",
                record.endpoint
            );
            asks.push(async move { (site, payee, txid, session_status(transport, &url).await) });
        }
        while let Some((site, payee, txid, held)) = asks.next().await {
            let Some(held) = held.filter(|h| h.state == SessionState::Ready) else {
                continue;
            };
            // Read again: the record may have changed while the payee was asked.
            let Some(record) = self.channel(&site, &payee).await? else {
                continue;
            };
            if record.state.state.contract_txid() != Some(txid) {
                continue;
            }
            let response = PaymentResponse {
                success: true,
                error_reason: None,
                network: trickle_channel::http::caip2(self.network()),
                payer: None,
                transaction: None,
                receipt: Some(Receipt {
                    channel: txid,
                    paid: held.paid,
                    consumed: Amount::ZERO,
                    credit: held.credit,
                    channel_value: held.channel_value,
                    expiry: held.expiry,
                    nonce: None,
                }),
            };
            let mut writes = WriteBatch::new();
            if matches!(record.state.state, PayerState::Ready { .. }) {
                writes = self
                    .apply_receipt(&writes, &site, &payee, &response, tip)
                    .await?
                    .into_writes();
            }
            let paid = self
                .commit_acknowledged(
                    &WriteBatch::new(),
                    &mut writes,
                    approver,
                    &record,
                    held.paid,
                    now,
                )
                .await?;
            committed += Staged::new(paid, writes)
                .commit(&(&*self, approver))
                .await?;
        }
        Ok(committed)
    }

    /// Stages, in `writes`, the release of every outstanding reservation of `record`'s channel.
    pub(super) async fn release_outstanding<A: Approver>(
        &self,
        writes: &mut WriteBatch,
        approver: &A,
        record: &ChannelRecord,
    ) -> Result<(), PayError> {
        for (key, outstanding) in self.outstanding_in(writes).await? {
            if outstanding.origin != record.site || outstanding.payee != record.payee_key {
                continue;
            }
            match approval::stage(approver, writes, &outstanding.origin, |b| {
                b.release(outstanding.reservation)
            })
            .await
            {
                Ok(staged) => writes.merge(staged.into_writes()),
                Err(BudgetError::UnknownReservation(_) | BudgetError::NoBudget { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            writes.remove(key);
        }
        Ok(())
    }
}
