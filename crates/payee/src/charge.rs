//! The payee's side of `trickle_channel::charge::decide`: read the channel and the header's
//! ticket, decide, write the outcome with a compare-and-swap. The layer serves only after the
//! write returns.

use std::sync::Arc;

use bitcoin::{Amount, Txid};
use trickle_channel::charge::{
    self, Charge, ChargeContext, Decision, PricedRequest, Reason, Stored,
};
use trickle_channel::credit::{Ledger, NONCE_RANDOM_LEN};
use trickle_channel::http::{
    caip2, HeaderError, PaymentResponse, PaymentSignature, Receipt, Refusal,
};
use trickle_channel::PayeeState;

use crate::layer::CONTRACT_UNCONFIRMED;
use crate::payee::{random, Metrics, Payee, MAX_ATTEMPTS};
use crate::store::{ChannelUpdate, ChargedTicket, StoreError, StoredChannel};

/// A refused payment: why, and the `PAYMENT-RESPONSE` saying so.
pub(crate) struct Refused {
    pub(crate) reason: Refusal,
    /// Why, for people.
    pub(crate) why: String,
    pub(crate) response: PaymentResponse,
}

/// Why a payment was not taken.
pub(crate) enum Failure {
    /// Refused, with the reason for the client.
    Refused(Refused),
    /// The channel's unconfirmed allowance is spent: nothing was charged; try again once its
    /// contract confirms. The receipt says so.
    Unconfirmed(PaymentResponse),
    /// Storage failed: nothing was charged and nothing may be served.
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl Payee {
    /// The receipt for `state` and `ledger` after a request that cost `consumed`.
    pub(crate) fn response(
        &self,
        state: &PayeeState,
        ledger: Ledger,
        consumed: Amount,
        refusal: Option<&str>,
    ) -> PaymentResponse {
        let channel = state.channel();
        // x402's `transaction`: what ended the channel, once something has.
        let transaction = match state {
            PayeeState::Closing { settlement, .. } => Some(settlement.compute_txid()),
            PayeeState::Closed { spent_by, .. } => Some(*spent_by),
            _ => None,
        };
        PaymentResponse {
            success: refusal.is_none(),
            error_reason: refusal.map(str::to_owned),
            network: caip2(self.config().network),
            payer: channel.map(|c| c.funding.contract.client_key),
            transaction,
            receipt: channel.map(|c| Receipt {
                channel: c.contract_txid(),
                paid: ledger.paid,
                consumed,
                credit: ledger.credit(),
                channel_value: c.funding.contract.value,
                expiry: c.funding.contract.expiry.to_consensus_u32(),
                nonce: None,
            }),
        }
    }

    /// A header that does not parse, or is of another x402 version or scheme.
    pub(crate) fn refuse_header(&self, e: &HeaderError) -> Failure {
        self.not_taken(charge::Refused {
            reason: Reason::Refused(e.refusal()),
            why: e.to_string(),
            account: None,
            keep: false,
        })
    }

    fn not_taken(&self, refused: charge::Refused) -> Failure {
        let (reason, refusal) = match refused.reason {
            Reason::Refused(r) => (r.as_str(), Some(r)),
            Reason::Unconfirmed => (CONTRACT_UNCONFIRMED, None),
        };
        tracing::info!(reason, why = refused.why, "payment not taken");
        self.metrics().refused(reason);
        let response = match refused.account.as_deref() {
            Some((state, ledger)) => self.response(state, *ledger, Amount::ZERO, Some(reason)),
            None => PaymentResponse {
                success: false,
                error_reason: Some(reason.to_owned()),
                network: caip2(self.config().network),
                payer: None,
                transaction: None,
                receipt: None,
            },
        };
        match refusal {
            Some(reason) => Failure::Refused(Refused {
                reason,
                why: refused.why,
                response,
            }),
            None => Failure::Unconfirmed(response),
        }
    }

    /// Decides on `sig` (`docs/protocol.md`, section 2) against the channel as stored. A
    /// refusal is decided only on a fresh read of the store with the header's ticket looked
    /// up; an increment a refusal keeps as credit is stored before it is returned. `retry`:
    /// a write of an earlier decision lost a race, so the store is read afresh.
    pub(crate) async fn decide(
        &self,
        sig: &PaymentSignature,
        request: &PricedRequest<'_>,
        retry: bool,
    ) -> Result<(Arc<StoredChannel>, Decision), Failure> {
        let txid = sig.payload.channel;
        let ticket = sig
            .payload
            .nonce
            .as_deref()
            .or(sig.payload.ticket.as_deref());
        let network = caip2(self.config().network);
        let server_key = self.server_key();
        let mut allowance =
            (!self.has_confirmations(&txid)).then_some(self.config().unconfirmed_credit);
        // A pre-armed ticket is new unless proven otherwise: its first write would conflict if
        // it were charged. A nonce may be a reload, so it is looked up at once.
        let mut fresh = retry || sig.payload.nonce.is_some();
        for _ in 0..MAX_ATTEMPTS {
            let charged_at = match (fresh, ticket) {
                (true, Some(ticket)) => self.store().charged_at(&txid, ticket).await?,
                _ => None,
            };
            let remembered = if fresh { None } else { self.hot_channel(&txid) };
            let stored = match remembered {
                Some(stored) => Some(stored),
                None => self.store().channel(&txid).await?.map(Arc::new),
            };
            let decided = self.with_ctx(|payee| {
                let ctx = ChargeContext {
                    payee,
                    server_key: &server_key,
                    payment_key: &|txid, client| self.payment_key(txid, client),
                    network: &network,
                    nonces: self.nonce_key(),
                    now: self.now(),
                    offer_life: u64::from(self.config().offer_timeout_secs),
                    unconfirmed_allowance: allowance,
                };
                let view = stored.as_deref().map(|s| Stored {
                    state: &s.state,
                    ledger: s.ledger,
                    ticket_charged_at: charged_at.as_deref(),
                });
                charge::decide(view, sig, request, &ctx)
            });
            let refused = match decided {
                Ok(decision) => match stored {
                    Some(stored) => return Ok((stored, decision)),
                    None => {
                        return Err(StoreError::InvalidState("decided without a channel").into())
                    }
                },
                Err(refused) => refused,
            };
            if !fresh {
                self.forget_hot_channel(&txid);
                fresh = true;
                continue;
            }
            if refused.reason == Reason::Unconfirmed
                && allowance.is_some()
                && self.confirmed_enough(&txid).await
            {
                allowance = None;
                continue;
            }
            if let (true, Some(stored), Some(account)) = (refused.keep, &stored, &refused.account) {
                let (state, ledger) = &**account;
                // The increment stays as credit: store it before refusing.
                let update = ChannelUpdate::new(&stored.state, state, *ledger, &[]);
                if self.update_channel(&txid, stored, update).await?.is_none() {
                    continue;
                }
            }
            return Err(self.not_taken(refused));
        }
        Err(StoreError::Conflict.into())
    }

    /// Stores an accepted payment's outcome: with `served` (the site's answer is a success)
    /// the charge and its tickets, else the payment as credit only. Returns the receipt, or
    /// `None` if another writer changed the channel first (decide again).
    pub(crate) async fn store_charge(
        &self,
        stored: &StoredChannel,
        charge: &Charge,
        served: bool,
        request: &PricedRequest<'_>,
    ) -> Result<Option<PaymentResponse>, StoreError> {
        let txid = stored
            .txid()
            .ok_or(StoreError::InvalidState("no contract"))?;
        let ticket = charge.ticket.as_deref().filter(|_| served);
        // A pre-armed charge issues a nonce for the URL, charged with it, that the client
        // reloads the URL with (`receipt.nonce`).
        let minted = match ticket {
            Some(_) if charge.pre_armed => Some(self.mint_nonce(request.url)?),
            _ => None,
        };
        let charged: Vec<ChargedTicket> = ticket
            .into_iter()
            .chain(minted.as_deref())
            .map(|ticket| ChargedTicket {
                ticket,
                resource: request.url,
                price: request.price,
            })
            .collect();
        let ledger = if served {
            charge.charged
        } else {
            charge.credited
        };
        let update = ChannelUpdate::new(&stored.state, &charge.state, ledger, &charged);
        if (!charged.is_empty() || charge.credits(&stored.state, stored.ledger))
            && self.update_channel(&txid, stored, update).await?.is_none()
        {
            return Ok(None);
        }
        let consumed = if served { request.price } else { Amount::ZERO };
        if consumed > Amount::ZERO {
            Metrics::bump(&self.metrics().paid_requests, 1);
            Metrics::bump(&self.metrics().sat_consumed, consumed.to_sat());
        }
        let mut response = self.response(&charge.state, ledger, consumed, None);
        if let Some(receipt) = response.receipt.as_mut() {
            receipt.nonce = minted;
        }
        Ok(Some(response))
    }

    /// Gives back the charge of a request the site did not serve (its answer came after the
    /// charge was stored, and is not a success). Returns the receipt to send: `charged` if the
    /// refund could not be stored (the request then stays paid).
    pub(crate) async fn refund(
        &self,
        txid: &Txid,
        charge: &Charge,
        charged: PaymentResponse,
    ) -> PaymentResponse {
        let price = charge
            .charged
            .consumed
            .checked_sub(charge.credited.consumed)
            .unwrap_or(Amount::ZERO);
        if price == Amount::ZERO {
            return charged;
        }
        for _ in 0..MAX_ATTEMPTS {
            let stored = match self.store().channel(txid).await {
                Ok(Some(stored)) => stored,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, %txid, "refund not stored");
                    break;
                }
            };
            let ledger = stored.ledger.refund(price);
            let update = ChannelUpdate::new(&stored.state, &stored.state, ledger, &[]);
            match self.update_channel(txid, &stored, update).await {
                Ok(Some(_)) => {
                    return self.response(&stored.state, ledger, Amount::ZERO, None);
                }
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(error = %e, %txid, "refund not stored");
                    break;
                }
            }
        }
        charged
    }

    /// A fresh nonce for `url` (see `docs/protocol.md`, section 1).
    fn mint_nonce(&self, url: &str) -> Result<String, StoreError> {
        let random = random::<NONCE_RANDOM_LEN>()
            .map_err(|e| StoreError::Backend(format!("no randomness: {e}")))?;
        Ok(self.nonce_key().issue(random, self.now(), url))
    }

    /// Writes `update` over `stored` and remembers the result for the channel's next request;
    /// `None` if another writer got there first (the remembered state is dropped: reload).
    async fn update_channel(
        &self,
        txid: &Txid,
        stored: &StoredChannel,
        update: ChannelUpdate<'_>,
    ) -> Result<Option<u64>, StoreError> {
        match self
            .store()
            .update_channel(txid, stored.revision, update)
            .await
        {
            Ok(revision) => {
                self.remember_hot_channel(
                    *txid,
                    StoredChannel {
                        state: update.state.clone(),
                        ledger: update.ledger,
                        revision,
                    },
                );
                Ok(Some(revision))
            }
            Err(StoreError::Conflict) => {
                self.forget_hot_channel(txid);
                Ok(None)
            }
            Err(e) => {
                self.forget_hot_channel(txid);
                Err(e)
            }
        }
    }
}
