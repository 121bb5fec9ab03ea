//! The payer of a process that makes its own HTTP requests (the command-line payer, the Rust
//! payer API): an unlocked wallet and its [`Approver`], kept for the process's life, told of
//! each request it sends and each response it gets.
//!
//! For each request, the caller asks [`Payer::armed`] for a pre-armed `PAYMENT-SIGNATURE` (a
//! site with an open channel is paid before it asks), sends the request (optionally with
//! [`Payer::prepare`] meanwhile), and hands the response to [`Payer::on_response`], which
//! applies its receipt and says whether to send the request again with a payment. The rules
//! are the wallet's (see [`crate::site`]): every offer is checked, every signed amount is
//! reserved with the approver first, a request already paid is paid again only for a lack of
//! credit and only once ([`crate::site::pays_again`]).
//!
//! A payer answers in x402's framing, or in MPP's when set to ([`Framing`]): it then pays a
//! 402's `Payment` challenge with an `Authorization: Payment` credential and reads the
//! `Payment-Receipt`; pre-armed payments are x402's, so it sends a payment only when asked (and
//! a URL's reload).
//!
//! Receipts are carried into the next payment's write (one durable write per paid request);
//! [`Payer::flush`] stores what is left of them. A URL paid in this process's life is sent
//! again with the payment that paid it, within the offer's life: the payee serves it as a
//! reload, without charging again.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::approval::Approver;
use crate::budget::site_origin;
use crate::chain::ChainSource;
use crate::channels::Transport;
use crate::offer::OfferError;
use crate::site::{receipt_in, Answer, PayContext, PayError};
use crate::store::{Staged, Store, WriteBatch};
use crate::wallet::Wallet;
use trickle_channel::http::mpp::{
    PaymentChallenge, PaymentCredential, SessionReceipt, AUTHORIZATION,
};
use trickle_channel::http::{caip2, PAYMENT_SIGNATURE};
use trickle_channel::ChainTip;

/// The framing a payer answers in: x402's headers, or MPP's `Payment` authentication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// `PAYMENT-SIGNATURE`, `PAYMENT-RESPONSE` (and pre-armed payments).
    #[default]
    X402,
    /// `Authorization: Payment`, `Payment-Receipt`.
    Mpp,
}

/// A payment a request carries: the header it goes in and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentHeader {
    /// `payment-signature` (x402) or `authorization` (MPP).
    pub name: &'static str,
    /// The header's value.
    pub value: String,
}

impl PaymentHeader {
    fn x402(value: String) -> Self {
        Self {
            name: PAYMENT_SIGNATURE,
            value,
        }
    }
}

/// What a request carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub enum Sent {
    /// No payment.
    #[default]
    Nothing,
    /// A pre-armed payment, sent before the site asked.
    Armed,
    /// A payment answering the site's 402.
    Paid,
    /// A second payment after the payee found too little credit.
    PaidAgain,
}

/// The headers of a response that the payer reads.
#[derive(Clone, Copy, Debug)]
pub struct Response<'a> {
    /// The HTTP status.
    pub status: u16,
    /// `PAYMENT-REQUIRED`, if any.
    pub payment_required: Option<&'a str>,
    /// `PAYMENT-RESPONSE`, if any.
    pub payment_response: Option<&'a str>,
    /// `WWW-Authenticate`, if any (MPP's challenges).
    pub www_authenticate: Option<&'a str>,
    /// `Payment-Receipt`, if any (MPP's receipt).
    pub payment_receipt: Option<&'a str>,
}

/// What a 402 answering a request that carried `sent` may be paid with: the payment the request
/// then carries, or the refusal. A request already paid is paid again only when the payee
/// refused it for lack of credit (`pay_again`, see [`crate::site::pays_again`]), and only once;
/// any other 402 after a payment is the site asking twice.
pub fn answering(sent: Sent, pay_again: bool) -> Result<Sent, PayError> {
    match sent {
        Sent::Nothing | Sent::Armed => Ok(Sent::Paid),
        Sent::Paid if pay_again => Ok(Sent::PaidAgain),
        Sent::Paid | Sent::PaidAgain => Err(PayError::AskedTwice),
    }
}

/// What to do after a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// The response is the answer.
    Done,
    /// Send the request again with this payment; it then carries `sent`.
    Pay {
        /// The header (its payment is stored).
        header: PaymentHeader,
        /// What the request carries then.
        sent: Sent,
    },
}

/// An unlocked wallet paying as its approver allows (see the [module documentation](self)).
pub struct Payer<S: Store, A> {
    wallet: Wallet<S>,
    approver: A,
    /// Receipts applied since the last write, stored with the next one.
    pending: WriteBatch,
    /// The payments that paid a URL, and until when (Unix seconds) they reload it.
    reloads: HashMap<String, Reload>,
    framing: Framing,
}

/// A payment that reloads the URL it paid.
struct Reload {
    header: PaymentHeader,
    until: u64,
}

/// Reloads kept at the most; the oldest go first.
const MAX_RELOADS: usize = 1_000;

impl<S: Store, A: Approver> Payer<S, A> {
    /// Pays with `wallet` as `approver` allows, in x402's framing.
    pub fn new(wallet: Wallet<S>, approver: A) -> Self {
        Self {
            wallet,
            approver,
            pending: WriteBatch::new(),
            reloads: HashMap::new(),
            framing: Framing::X402,
        }
    }

    /// This payer, answering in `framing`.
    pub fn in_framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// The wallet (its receipts not yet stored are not in it: [`Payer::flush`] first).
    pub fn wallet(&mut self) -> &mut Wallet<S> {
        &mut self.wallet
    }

    fn origin(url: &str) -> Result<String, PayError> {
        site_origin(url).map_err(|_| OfferError::BadUrl(url.to_owned()).into())
    }

    /// The payment a request to `url` carries before the site asks: the one that paid the URL
    /// in this process's life (a reload), else a pre-armed `PAYMENT-SIGNATURE`, stored before
    /// it is returned. `None` without an open channel with the site, when its approver would
    /// not pay its last price without asking, or in MPP's framing (which has no pre-armed
    /// payments).
    pub async fn armed(
        &mut self,
        url: &str,
        tip: ChainTip,
        now: u64,
    ) -> Result<Option<PaymentHeader>, PayError> {
        if let Some(reload) = self.reloads.get(url).filter(|r| now <= r.until) {
            return Ok(Some(reload.header.clone()));
        }
        if self.framing == Framing::Mpp {
            return Ok(None);
        }
        let origin = Self::origin(url)?;
        let armed = self
            .wallet
            .pre_arm_site(&self.pending, &self.approver, &origin, tip, now)
            .await?;
        let armed = armed
            .commit_carrying(&(&self.wallet, &self.approver), &mut self.pending)
            .await?;
        Ok(armed.map(PaymentHeader::x402))
    }

    /// While a request to `url` is in flight: signs (and stores) the top-up of the site's
    /// credit that the next requests to it will carry, within what the approver allows (see
    /// [`Wallet::prepare_site`]).
    /// Nothing in MPP's framing, whose requests carry no payment before they are asked.
    pub async fn prepare(&mut self, url: &str, tip: ChainTip, now: u64) -> Result<(), PayError> {
        if self.framing == Framing::Mpp {
            return Ok(());
        }
        let origin = Self::origin(url)?;
        let prepared = self
            .wallet
            .prepare_site(&self.pending, &self.approver, &origin, tip, now)
            .await?;
        Ok(prepared
            .commit_carrying(&(&self.wallet, &self.approver), &mut self.pending)
            .await?)
    }

    /// Takes the response to a request for `url` that carried `sent` (with the payment
    /// `paid_with`, if any): applies its receipt, and answers a 402 with a payment when the
    /// rules allow it.
    pub async fn on_response<T: Transport, C: ChainSource>(
        &mut self,
        ctx: &PayContext<'_, T, C>,
        url: &str,
        (sent, paid_with): (Sent, Option<&PaymentHeader>),
        response: Response<'_>,
    ) -> Result<Next, PayError> {
        let mut again = false;
        let account = match response.payment_receipt {
            Some(receipt) => Some(
                SessionReceipt::from_header(receipt)
                    .map_err(|e| PayError::BadHeader(e.to_string()))?
                    .as_response(&caip2(ctx.network)),
            ),
            None => receipt_in(
                response.status,
                response.payment_response,
                response.payment_required,
            )?,
        };
        let taken = match account {
            Some(account) => {
                self.wallet
                    .take_response(
                        &self.pending,
                        &self.approver,
                        url,
                        &account,
                        ctx.tip,
                        ctx.now,
                    )
                    .await?
            }
            None => None,
        };
        if let Some(taken) = taken {
            let (view, writes) = taken.into_parts();
            self.pending.merge(writes);
            again = view.pay_again;
            let served = view.success && (200..300).contains(&response.status);
            // A pre-armed payment reloads by the receipt's nonce; one answering an offer,
            // by itself (its nonce is the offer's).
            let reload = match sent {
                Sent::Armed => view.reload_header.clone().map(PaymentHeader::x402),
                Sent::Paid | Sent::PaidAgain => paid_with.cloned(),
                Sent::Nothing => None,
            };
            if let Some(header) = reload.filter(|_| served) {
                self.remember(url, header, ctx.now).await?;
            }
            // A refused payment that comes with no offer to pay ends the request.
            if !view.success && response.status != 402 {
                return Err(PayError::Refused(view.error_reason.unwrap_or_default()));
            }
        }
        if response.status != 402 {
            return Ok(Next::Done);
        }
        let next = answering(sent, again)?;
        // In MPP's framing, a challenge of ours is its offer in x402's terms.
        let challenge = response
            .www_authenticate
            .filter(|_| self.framing == Framing::Mpp)
            .and_then(PaymentChallenge::ours_in);
        let required = match &challenge {
            Some(challenge) => challenge
                .offer_header()
                .map_err(|e| PayError::BadHeader(e.to_string()))?,
            None => response
                .payment_required
                .ok_or_else(|| {
                    PayError::BadHeader("a 402 without a PAYMENT-REQUIRED header".into())
                })?
                .to_owned(),
        };
        // An opening acts as it goes, on what is stored: the receipts go first.
        self.flush().await?;
        let answer = self
            .wallet
            .answer_offer(&self.approver, ctx, url, &required, false)
            .await?
            .commit(&(&self.wallet, &self.approver))
            .await?;
        let header = match answer {
            Answer::Pay { header, .. } => header,
            Answer::Ask(ask) => return Err(PayError::NotApproved(ask)),
        };
        let header = match challenge {
            Some(challenge) => PaymentHeader {
                name: AUTHORIZATION,
                value: PaymentCredential::answering(challenge, &header)
                    .map_err(|e| PayError::BadHeader(e.to_string()))?
                    .to_header(),
            },
            None => PaymentHeader::x402(header),
        };
        Ok(Next::Pay { header, sent: next })
    }

    /// Keeps `header` as the reload of `url`, for the life of the site's offer.
    async fn remember(
        &mut self,
        url: &str,
        header: PaymentHeader,
        now: u64,
    ) -> Result<(), PayError> {
        let origin = Self::origin(url)?;
        let life = self
            .wallet
            .channels_in(&self.pending)
            .await?
            .into_iter()
            .find(|r| r.site == origin && r.last_offer.is_some())
            .and_then(|r| r.last_offer)
            .map_or(0, |o| u64::from(o.max_timeout_seconds));
        if self.reloads.len() >= MAX_RELOADS {
            let oldest = self
                .reloads
                .iter()
                .min_by_key(|(_, r)| r.until)
                .map(|(u, _)| u.clone());
            if let Some(oldest) = oldest {
                self.reloads.remove(&oldest);
            }
        }
        let until = now.saturating_add(life);
        self.reloads
            .insert(url.to_owned(), Reload { header, until });
        Ok(())
    }

    /// Stores the receipts applied since the last write.
    pub async fn flush(&mut self) -> Result<(), PayError> {
        Staged::new((), self.pending.clone())
            .commit(&(&self.wallet, &self.approver))
            .await?;
        self.pending = WriteBatch::new();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_already_paid_is_paid_again_only_for_lack_of_credit_and_only_once() {
        for pay_again in [false, true] {
            assert_eq!(answering(Sent::Nothing, pay_again).ok(), Some(Sent::Paid));
            assert_eq!(answering(Sent::Armed, pay_again).ok(), Some(Sent::Paid));
            let twice = answering(Sent::PaidAgain, pay_again);
            assert!(matches!(twice, Err(PayError::AskedTwice)), "{twice:?}");
        }
        assert_eq!(answering(Sent::Paid, true).ok(), Some(Sent::PaidAgain));
        let asked = answering(Sent::Paid, false);
        assert_eq!(asked.map_err(|e| e.code()).err(), Some("paid_again"));
    }
}
