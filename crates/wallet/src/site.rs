//! Paying a site that answered `402 Payment Required`, within the budget the user approved.
//!
//! [`Wallet::answer_offer`] takes the URL and its `PAYMENT-REQUIRED` header and either returns
//! the `PAYMENT-SIGNATURE` header that pays it, or asks for the user ([`Ask`]). On the way:
//!
//! 1. The offer is checked ([`check_offer`]): network, price, endpoint origin, pinned payee key.
//! 2. A site without a budget, or a price above the budget's auto-approve threshold that the
//!    user has not confirmed, is not paid: the caller asks the user.
//! 3. The budget counts money **signed** to the site: the first payment of a new channel and
//!    every later increment. Each is reserved before it is signed and committed once a receipt
//!    shows the payee holds it; a reservation is released only when nothing was signed (the
//!    channel did not open). A signed increment whose receipt never comes stays reserved: it
//!    is in the channel as unacknowledged credit, the next payment builds on it, and the
//!    receipt of a later request commits it. So no sequence of failures, restarts or
//!    concurrent requests signs more than the budget's limit.
//! 4. Payments from credit the payee already holds sign nothing and reserve nothing.
//!
//! A site is an origin (scheme, host and port): its budget and its channels are keyed by it.
//!
//! [`Wallet::take_receipt`] applies the `PAYMENT-RESPONSE` of a paid request and commits the
//! reservations it acknowledges. Outstanding payments are stored under `payment/`, so a worker
//! that stops between signing and the receipt resumes them.

use core::fmt;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, FeeRate, Network, ScriptBuf, TxOut, WScriptHash};
use serde::{Deserialize, Serialize};
use trickle_channel::auth::{self, ChannelRequest};
use trickle_channel::http::{PaymentRequired, PaymentResponse, Receipt, Refusal, Resource};
use trickle_channel::{ChainTip, PayerState};
use ts_rs::TS;

use crate::approval::{self, Approver};
use crate::budget::{budget_key, BudgetError, Period, ReservationId, Terms};
use crate::chain::ChainSource;
use crate::channels::{ChannelClientError, ChannelRecord, OpenParams, Transport};
use crate::offer::{check_offer, Approval, CheckedOffer, OfferContext, OfferError, OfferPolicy};
use crate::store::{Staged, Store, WriteBatch};
use crate::wallet::{Shortfall, Wallet, WalletError};

const PAYMENT_PREFIX: &str = "payment/";

/// What the wallet needs from outside to pay a site.
pub struct PayContext<'a, T, C> {
    /// HTTP to the payee's channel endpoint.
    pub transport: &'a T,
    /// The chain.
    pub chain: &'a C,
    /// The chain tip, recent.
    pub tip: ChainTip,
    /// Fee rate for a channel's contract.
    pub fee_rate: FeeRate,
    /// The wallet's network.
    pub network: Network,
    /// The client's rules for offers and channels.
    pub policy: &'a OfferPolicy,
    /// Now, in Unix seconds (budget periods run on wall-clock time).
    pub now: u64,
    /// Told of the steps that take a while (an opening waits for the payee and the chain).
    pub progress: &'a dyn Fn(Progress<'_>),
}

/// A step of a payment that takes a while, for the user to see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress<'a> {
    /// Completing the opening of a channel that an earlier run or worker left half done.
    Completing {
        /// The site.
        origin: &'a str,
    },
    /// Opening a channel.
    Opening {
        /// The site.
        origin: &'a str,
        /// What it locks.
        value: Amount,
    },
}

impl fmt::Display for Progress<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Completing { origin } => {
                write!(f, "completing the opening of the channel with {origin} ...")
            }
            Self::Opening { origin, value } => write!(
                f,
                "opening a channel of {} sat with {origin} ...",
                value.to_sat()
            ),
        }
    }
}

/// Why the user is asked before a payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum AskReason {
    /// The site has no budget.
    NoBudget,
    /// The price is above the budget's auto-approve threshold.
    Confirm,
    /// The budget has too little left for this payment.
    BudgetExhausted {
        /// What is left this period, sat.
        #[serde(with = "bitcoin::amount::serde::as_sat")]
        #[ts(type = "number")]
        remaining: Amount,
        /// What the payment needs, sat.
        #[serde(with = "bitcoin::amount::serde::as_sat")]
        #[ts(type = "number")]
        needed: Amount,
    },
}

/// A payment the user is asked to approve, with what approving it means.
///
/// Serialized for the extension's pages; the terms are not (`Terms` serializes in its storage
/// form, and each view writes terms its own way).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Ask {
    /// Why.
    pub reason: AskReason,
    /// The site (origin).
    pub origin: String,
    /// The URL asking.
    pub url: String,
    /// The resource's description, from the site.
    pub description: String,
    /// The price, sat.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    #[ts(type = "number")]
    pub price: Amount,
    /// The site's current budget, if any.
    #[serde(skip)]
    pub current: Option<Terms>,
    /// A budget to offer the user.
    #[serde(skip)]
    pub suggested: Terms,
    /// Whether a channel with the site is open (else approving opens one).
    pub has_channel: bool,
    /// What a new channel would lock, sat (from the suggested budget).
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    #[ts(type = "number")]
    pub channel_value: Amount,
    /// What opening a new channel signs to the site at once, sat: the offer's first payment,
    /// counted in the budget (a payee asking more when the channel opens is refused). `None`
    /// when a channel is open.
    #[serde(with = "bitcoin::amount::serde::as_sat::opt")]
    #[ts(type = "number | null")]
    pub first_payment: Option<Amount>,
    /// The on-chain fee to open it at the current fee rate, if the wallet can fund it now.
    #[serde(with = "bitcoin::amount::serde::as_sat::opt")]
    #[ts(type = "number | null")]
    pub open_fee: Option<Amount>,
    /// Why the wallet cannot fund the channel now, if it cannot.
    pub cannot_fund: Option<String>,
    /// What the wallet has and needs, when it cannot fund the channel for lack of coins.
    pub shortfall: Option<Shortfall>,
}

/// The answer to an offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Retry the request with this `PAYMENT-SIGNATURE` header.
    Pay {
        /// The header's value.
        header: String,
        /// Sat newly signed for this request (zero when paid from credit).
        signed: Amount,
    },
    /// Ask the user first; nothing was signed.
    Ask(Box<Ask>),
}

/// A receipt, as applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptView {
    /// The site (origin).
    pub origin: String,
    /// Whether the payee accepted the payment.
    pub success: bool,
    /// The payee's reason for refusing, if it did.
    pub error_reason: Option<String>,
    /// What this request was charged, sat.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub consumed: Amount,
    /// What the payee holds in total, sat.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub paid: Amount,
    /// Paid and not yet consumed, sat.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub credit: Amount,
    /// Sat of the budget this receipt committed.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub committed: Amount,
    /// For a request paid by a pre-armed payment: the `PAYMENT-SIGNATURE` that reloads the URL
    /// without paying again (the receipt's nonce, no update).
    pub reload_header: Option<String>,
    /// The payee refused for lack of credit, with its account of the channel (now applied):
    /// the 402 that comes with it is paid, once (see [`pays_again`]).
    pub pay_again: bool,
}

/// Whether the 402 that comes with `response` is paid although the request carried a payment:
/// only when the payee refused it for lack of credit. It then counted less credit than this
/// wallet did (a receipt lost in a crash, a page paid twice at once), and its refusal carries
/// its account of the channel, from which the difference is paid. Any other 402 after a
/// payment is the site asking twice; and a 402 after the difference was paid is not paid.
pub fn pays_again(response: &PaymentResponse) -> bool {
    !response.success
        && response.error_reason.as_deref() == Some(Refusal::InsufficientCredit.as_str())
}

/// A signed increment waiting for the receipt that shows the payee holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Outstanding {
    /// The site, and its channel's key.
    origin: String,
    payee: PublicKey,
    reservation: ReservationId,
    /// The channel's total once the payee holds this payment.
    paid_after: Amount,
}

/// A channel as its payee's endpoint reports it (`GET {endpoint}/session/{txid}`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionStatus {
    /// `ready`, `closing` or `closed`.
    state: String,
    #[serde(with = "trickle_channel::http::sat_string")]
    paid: Amount,
    #[serde(with = "trickle_channel::http::sat_string")]
    credit: Amount,
    #[serde(with = "trickle_channel::http::sat_string")]
    channel_value: Amount,
    expiry: u32,
}

/// What the payee at `url` (`{endpoint}/session/{txid}`) says it holds, if it answers.
async fn session_status<T: Transport>(transport: &T, url: &str) -> Option<SessionStatus> {
    match transport.get(url).await {
        Ok((200, body)) => serde_json::from_slice(&body).ok(),
        _ => None,
    }
}

fn outstanding_key(origin: &str, id: ReservationId) -> String {
    format!("{PAYMENT_PREFIX}{}/{}", budget_key(origin), id.0)
}

/// Why a site was not paid. Nothing was signed beyond what the budget holds reserved.
#[derive(Debug)]
pub enum PayError {
    /// The offer was refused.
    Offer(OfferError),
    /// The budget refused or failed.
    Budget(BudgetError),
    /// The channel could not be opened or paid.
    Channel(ChannelClientError),
    /// A header that does not parse.
    BadHeader(String),
    /// The approver did not approve the payment: the user is to be asked, or a run's caps
    /// do not allow it. Nothing was signed.
    NotApproved(Box<Ask>),
    /// The payee refused the payment: its `errorReason`.
    Refused(String),
    /// The site asked again to be paid for a request just paid for; not paid twice.
    AskedTwice,
}

impl PayError {
    /// A stable snake_case name for the pages.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Offer(OfferError::WrongNetwork { .. }) => "wrong_network",
            Self::Offer(OfferError::OverMaxPrice { .. }) => "over_max_price",
            Self::Offer(OfferError::EndpointElsewhere { .. }) => "endpoint_elsewhere",
            Self::Offer(OfferError::PayeeKeyChanged { .. }) => "payee_key_changed",
            Self::Offer(OfferError::Revoked { .. }) => "revoked",
            Self::Offer(_) => "bad_offer",
            Self::Budget(BudgetError::Store(_)) => "storage",
            Self::Budget(_) => "budget",
            Self::Channel(ChannelClientError::Wallet(e)) => e.code(),
            Self::Channel(ChannelClientError::PayeeKeyChanged) => "payee_key_changed",
            Self::Channel(_) => "channel",
            Self::BadHeader(_) => "bad_header",
            Self::NotApproved(_) => "not_approved",
            Self::Refused(_) => "refused",
            Self::AskedTwice => "paid_again",
        }
    }
}

impl fmt::Display for PayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Offer(e) => write!(f, "{e}"),
            Self::Budget(e) => write!(f, "{e}"),
            Self::Channel(e) => write!(f, "{e}"),
            Self::BadHeader(e) => write!(f, "{e}"),
            Self::NotApproved(ask) => {
                let sat = Amount::to_sat;
                match &ask.reason {
                    AskReason::NoBudget => write!(f, "payments to {} are not approved", ask.origin),
                    AskReason::Confirm => write!(
                        f,
                        "the price of {} sat at {} needs the user's confirmation",
                        sat(ask.price),
                        ask.origin
                    ),
                    AskReason::BudgetExhausted { remaining, needed } => write!(
                        f,
                        "the budget for {} has {} sat left; this payment needs {} sat",
                        ask.origin,
                        sat(*remaining),
                        sat(*needed)
                    ),
                }
            }
            Self::Refused(reason) => write!(f, "the payee refused the payment: {reason}"),
            Self::AskedTwice => f.write_str(
                "the site asked to be paid again for a request it was just paid for; not paying twice",
            ),
        }
    }
}

impl std::error::Error for PayError {}

impl From<OfferError> for PayError {
    fn from(e: OfferError) -> Self {
        Self::Offer(e)
    }
}

impl From<BudgetError> for PayError {
    fn from(e: BudgetError) -> Self {
        Self::Budget(e)
    }
}

impl From<ChannelClientError> for PayError {
    fn from(e: ChannelClientError) -> Self {
        Self::Channel(e)
    }
}

impl From<WalletError> for PayError {
    fn from(e: WalletError) -> Self {
        Self::Channel(e.into())
    }
}

impl From<crate::store::StoreError> for PayError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Budget(e.into())
    }
}

/// The budget offered to a site the user has not approved yet: a hundred requests at this
/// price a week, each paid without asking.
pub fn suggested_terms(price: Amount) -> Terms {
    let limit = (price * 100).min(Amount::MAX_MONEY);
    Terms {
        limit,
        period: Period::Week,
        max_price: price,
        auto_approve: Some(price),
    }
}

impl<S: Store> Wallet<S> {
    /// The open channel with `site` once `base` is, if any (one that can take payments).
    async fn open_channel_with(
        &self,
        base: &WriteBatch,
        site: &str,
    ) -> Result<Option<ChannelRecord>, ChannelClientError> {
        Ok(self
            .channels_in(base)
            .await?
            .into_iter()
            .find(|r| r.site == site && matches!(r.state.state, PayerState::Ready { .. })))
    }

    /// The payee key of the site's channel that is not yet settled or refunded, if any: an
    /// offer with another key is refused.
    async fn pinned_payee(
        &self,
        base: &WriteBatch,
        site: &str,
    ) -> Result<Option<PublicKey>, ChannelClientError> {
        Ok(self
            .channels_in(base)
            .await?
            .into_iter()
            .find(|r| r.site == site && r.state.state.committed_channel().is_some())
            .map(|r| r.payee_key))
    }

    /// The fee to fund a channel of `value` now, or why the wallet cannot.
    fn open_fee(&mut self, value: Amount, fee_rate: FeeRate) -> Result<Amount, WalletError> {
        // A P2WSH output of the same size as the contract's.
        let contract = TxOut {
            value,
            script_pubkey: ScriptBuf::new_p2wsh(&WScriptHash::all_zeros()),
        };
        Ok(self.preview(vec![contract], fee_rate)?.fee)
    }

    /// Answers the 402 of `url` whose `PAYMENT-REQUIRED` header is `header` (see the
    /// [module documentation](self)). `confirmed`: the user approved this payment.
    ///
    /// Opening a channel is stored step by step as it goes. The payment itself is staged: its
    /// reservation, the signed state and the outstanding increment, committed with
    /// `(&wallet, &approver)` in one write before the header can be had.
    pub async fn answer_offer<A: Approver, T: Transport, C: ChainSource>(
        &mut self,
        approver: &A,
        ctx: &PayContext<'_, T, C>,
        url: &str,
        header: &str,
        confirmed: bool,
    ) -> Result<Staged<Answer>, PayError> {
        let nothing = WriteBatch::new();
        let required =
            PaymentRequired::from_header(header).map_err(|e| PayError::BadHeader(e.to_string()))?;
        let origin = crate::budget::site_origin(url).map_err(|_| OfferError::BadUrl(url.into()))?;
        let budget = approver.budget_in(&nothing, &origin).await?;
        let pinned = self.pinned_payee(&nothing, &origin).await?;
        let offer = check_offer(
            &required,
            &OfferContext {
                url,
                network: ctx.network,
                budget: budget.as_ref(),
                pinned_payee: pinned.as_ref(),
                policy: ctx.policy,
            },
        )?;
        let channel = match self.open_channel_with(&nothing, offer.origin()).await? {
            Some(channel) => Some(channel),
            None => self.finish_opening(ctx, &offer).await?,
        };
        let ask = |wallet: &mut Self, reason| -> Answer {
            let terms = budget.as_ref().map(|b| *b.terms());
            wallet.ask(&offer, url, reason, terms, channel.is_some(), ctx)
        };
        match offer.approval() {
            Approval::NoBudget => return Ok(Staged::new(ask(self, AskReason::NoBudget), nothing)),
            Approval::Prompt if !confirmed => {
                return Ok(Staged::new(ask(self, AskReason::Confirm), nothing))
            }
            Approval::Prompt | Approval::Auto => {}
        }
        let budget = budget.as_ref().ok_or(BudgetError::NoBudget {
            origin: origin.clone(),
        })?;

        let mut signed = Amount::ZERO;
        if channel.is_none() {
            let value = offer.channel_value(
                approver.channel_wish(budget, offer.min_channel_value()),
                &ctx.policy.limits,
            )?;
            match self.open_for(approver, ctx, &offer, value).await? {
                Some(first) => signed += first,
                None => {
                    let reason = self
                        .exhausted(approver, &offer, offer.min_payment(), ctx.now)
                        .await?;
                    return Ok(Staged::new(ask(self, reason), nothing));
                }
            }
        }

        let nothing = WriteBatch::new();
        let (header, paid) = self
            .pay(
                &nothing,
                offer.origin(),
                offer.requirements(),
                offer.resource(),
                Some(offer.nonce().to_owned()),
                ctx.tip,
            )
            .await?
            .into_parts();
        match self
            .reserve_signed(&nothing, approver, &origin, offer.payee(), paid, ctx.now)
            .await?
        {
            Reserved::Writes {
                writes,
                signed: now_signed,
            } => Ok(Staged::new(
                Answer::Pay {
                    header,
                    signed: signed + now_signed,
                },
                writes,
            )),
            Reserved::TooLittleLeft { needed } => {
                let reason = self.exhausted(approver, &offer, needed, ctx.now).await?;
                Ok(Staged::new(ask(self, reason), WriteBatch::new()))
            }
        }
    }

    /// Reserves what `paid` (a payment to `origin` staged on top of `base`, not yet committed)
    /// newly signs, and stages the reservation, the payment and its outstanding increment as
    /// one write: what is reserved is what was signed, measured on the signed state itself, and
    /// nothing signed is stored (or leaves) without its reservation.
    async fn reserve_signed<A: Approver>(
        &self,
        base: &WriteBatch,
        approver: &A,
        origin: &str,
        payee: &PublicKey,
        paid: WriteBatch,
        now: u64,
    ) -> Result<Reserved, PayError> {
        let total = |record: Option<ChannelRecord>| {
            record
                .and_then(|r| r.state.state.committed_channel().map(|c| c.paid()))
                .unwrap_or(Amount::ZERO)
        };
        let before = total(self.channel_in(base, origin, payee).await?);
        let mut view = base.clone();
        view.merge(paid.clone());
        let after = total(self.channel_in(&view, origin, payee).await?);
        let signed = after.checked_sub(before).unwrap_or(Amount::ZERO);
        if signed == Amount::ZERO {
            return Ok(Reserved::Writes {
                writes: paid,
                signed,
            });
        }
        let (id, mut writes) =
            match approval::stage(approver, base, origin, |b| b.reserve(signed, now)).await {
                Ok(staged) => staged.into_parts(),
                Err(BudgetError::WouldExceed { .. }) => {
                    return Ok(Reserved::TooLittleLeft { needed: signed })
                }
                Err(e) => return Err(e.into()),
            };
        writes.merge(paid);
        let mut view = base.clone();
        view.merge(writes.clone());
        self.stage_outstanding(&view, &mut writes, origin, payee, id)
            .await?;
        Ok(Reserved::Writes { writes, signed })
    }

    /// The site's channel whose opening was cut short after its contract was handed over (the
    /// worker stopped, the answer was lost), completed now; `None` if there is none. Opening
    /// another instead would replace its record, and with it the channel's refund.
    async fn finish_opening<T: Transport, C: ChainSource>(
        &mut self,
        ctx: &PayContext<'_, T, C>,
        offer: &CheckedOffer,
    ) -> Result<Option<ChannelRecord>, PayError> {
        let opening = self
            .channel(offer.origin(), offer.payee())
            .await?
            .is_some_and(|r| matches!(r.state.state, PayerState::AwaitingOpen { .. }));
        if !opening {
            return Ok(None);
        }
        (ctx.progress)(Progress::Completing {
            origin: offer.origin(),
        });
        let record = self
            .complete_open(ctx.transport, ctx.chain, offer.origin(), offer.payee())
            .await?;
        Ok(matches!(record.state.state, PayerState::Ready { .. }).then_some(record))
    }

    /// Opens a channel of `value` for `offer`, its first payment reserved in the budget before
    /// it is signed and committed once the payee acknowledged it (in the opening exchange).
    /// The reservation is the offer's first payment, and the opening signs no more than it
    /// (`open_channel` refuses a payee asking more). Returns what was signed; `None` when the
    /// budget has too little left for the first payment.
    async fn open_for<A: Approver, T: Transport, C: ChainSource>(
        &mut self,
        approver: &A,
        ctx: &PayContext<'_, T, C>,
        offer: &CheckedOffer,
        value: Amount,
    ) -> Result<Option<Amount>, PayError> {
        let first = offer.min_payment();
        let id = match approval::change(self, approver, offer.origin(), |b| {
            b.reserve(first, ctx.now)
        })
        .await
        {
            Ok(id) => id,
            Err(BudgetError::WouldExceed { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        (ctx.progress)(Progress::Opening {
            origin: offer.origin(),
            value,
        });
        let opened = self
            .open_channel(
                ctx.transport,
                ctx.chain,
                OpenParams {
                    site: offer.origin(),
                    offer: offer.requirements(),
                    value,
                    first_payment: first,
                    limits: &ctx.policy.limits,
                    fee_rate: ctx.fee_rate,
                    now: ctx.now,
                },
            )
            .await;
        match opened {
            Ok(record) => {
                let (signed, acknowledged) = record
                    .state
                    .state
                    .committed_channel()
                    .map_or((Amount::ZERO, Amount::ZERO), |c| (c.paid(), c.acknowledged));
                // What the payee acknowledged of the first payment is spent. What it did not
                // acknowledge but was signed stays reserved until a receipt or `reconcile`
                // settles it; what was reserved but not signed is released.
                let spent = acknowledged.min(signed);
                if spent > Amount::ZERO {
                    approval::change(self, approver, offer.origin(), |b| {
                        b.commit_part(id, spent, ctx.now)
                    })
                    .await?;
                }
                if spent < signed {
                    self.record_outstanding(offer.origin(), offer.payee(), id)
                        .await?;
                } else if spent < first {
                    approval::change(self, approver, offer.origin(), |b| b.release(id)).await?;
                }
                Ok(Some(signed))
            }
            Err(e) => {
                // The opening failed: the first payment was either never signed or is in a
                // channel the payee never acknowledged. Keep the reservation in the latter case.
                let signed = self
                    .channel(offer.origin(), offer.payee())
                    .await?
                    .and_then(|r| r.state.state.committed_channel().map(|c| c.paid()))
                    .is_some_and(|p| p > Amount::ZERO);
                if signed {
                    // Settled by `reconcile` once the payee says what it holds.
                    self.record_outstanding(offer.origin(), offer.payee(), id)
                        .await?;
                } else {
                    approval::change(self, approver, offer.origin(), |b| b.release(id)).await?;
                }
                Err(e.into())
            }
        }
    }

    async fn exhausted<A: Approver>(
        &self,
        approver: &A,
        offer: &CheckedOffer,
        needed: Amount,
        now: u64,
    ) -> Result<AskReason, PayError> {
        let remaining = approver
            .budget_in(&WriteBatch::new(), offer.origin())
            .await?
            .map_or(Amount::ZERO, |b| b.status(now).remaining);
        Ok(AskReason::BudgetExhausted { remaining, needed })
    }

    fn ask<T, C>(
        &mut self,
        offer: &CheckedOffer,
        url: &str,
        reason: AskReason,
        current: Option<Terms>,
        has_channel: bool,
        ctx: &PayContext<'_, T, C>,
    ) -> Answer {
        let suggested = match (&reason, current) {
            // Raising an exhausted budget: the same terms, twice the limit.
            (AskReason::BudgetExhausted { .. }, Some(t)) => Terms {
                limit: (t.limit * 2).min(Amount::MAX_MONEY),
                ..t
            },
            (_, Some(t)) => t,
            (_, None) => suggested_terms(offer.price()),
        };
        let channel_value = offer
            .channel_value(
                suggested.limit.max(offer.min_channel_value()),
                &ctx.policy.limits,
            )
            .unwrap_or(offer.min_channel_value());
        let (open_fee, cannot_fund, shortfall) = if has_channel {
            (None, None, None)
        } else {
            match self.open_fee(channel_value, ctx.fee_rate) {
                Ok(fee) => (Some(fee), None, None),
                Err(e) => (None, Some(e.to_string()), e.shortfall()),
            }
        };
        Answer::Ask(Box::new(Ask {
            reason,
            origin: offer.origin().to_owned(),
            url: url.to_owned(),
            description: offer.resource().description.clone(),
            price: offer.price(),
            current,
            suggested,
            has_channel,
            channel_value,
            first_payment: (!has_channel).then(|| offer.min_payment()),
            open_fee,
            cannot_fund,
            shortfall,
        }))
    }

    /// Applies the `PAYMENT-RESPONSE` header of a response from `url` and commits the budget
    /// reservations of the increments the payee now holds, staged as one write (commit it with
    /// `(&wallet, &approver)`). `None` when the receipt is about no channel of this wallet (a
    /// stray header is ignored, not trusted).
    pub async fn take_receipt<A: Approver>(
        &self,
        base: &WriteBatch,
        approver: &A,
        url: &str,
        header: &str,
        tip: ChainTip,
        now: u64,
    ) -> Result<Option<Staged<ReceiptView>>, PayError> {
        let response =
            PaymentResponse::from_header(header).map_err(|e| PayError::BadHeader(e.to_string()))?;
        let Some(receipt) = response.receipt.as_ref() else {
            return Ok(None);
        };
        let origin = crate::budget::site_origin(url).map_err(|_| OfferError::BadUrl(url.into()))?;
        let Some(record) = self
            .channels_in(base)
            .await?
            .into_iter()
            .find(|r| r.state.state.contract_txid() == Some(receipt.channel))
        else {
            return Ok(None);
        };
        if record.site != origin {
            return Err(ChannelClientError::BadReceipt("it is for another site's channel").into());
        }
        let mut writes = self
            .apply_receipt(base, &record.site, &record.payee_key, &response, tip)
            .await?
            .into_writes();
        // In the same write as the receipt, so that the two agree after a crash.
        let committed = self
            .commit_acknowledged(base, &mut writes, approver, &record, receipt.paid, now)
            .await?;
        let reload_header = match (&receipt.nonce, &record.last_offer) {
            (Some(nonce), Some(offer)) => Some(
                crate::channels::signature_header(
                    &Resource {
                        url: url.to_owned(),
                        description: String::new(),
                        mime_type: String::new(),
                    },
                    offer,
                    receipt.channel,
                    receipt.paid,
                    None,
                    Some(nonce.clone()),
                    &self.channel_key(record.key_index)?,
                )
                .map_err(WalletError::from)?,
            ),
            _ => None,
        };
        let view = ReceiptView {
            origin,
            success: response.success,
            error_reason: response.error_reason.clone(),
            consumed: receipt.consumed,
            paid: receipt.paid,
            credit: receipt.credit,
            committed,
            reload_header,
            pay_again: pays_again(&response),
        };
        Ok(Some(Staged::new(view, writes)))
    }

    /// Stages, in `writes` (and read through them), the commits of the budget reservations of
    /// `record`'s outstanding increments that the payee holds, now that it holds `paid` in
    /// total. Returns what is committed.
    async fn commit_acknowledged<A: Approver>(
        &self,
        base: &WriteBatch,
        writes: &mut WriteBatch,
        approver: &A,
        record: &ChannelRecord,
        paid: Amount,
        now: u64,
    ) -> Result<Amount, PayError> {
        let mut committed = Amount::ZERO;
        let view = |writes: &WriteBatch| {
            let mut view = base.clone();
            view.merge(writes.clone());
            view
        };
        for (key, outstanding) in self.outstanding_in(&view(writes)).await? {
            if outstanding.origin != record.site
                || outstanding.payee != record.payee_key
                || outstanding.paid_after > paid
            {
                continue;
            }
            let staged = approval::stage(approver, &view(writes), &outstanding.origin, |b| {
                b.commit(outstanding.reservation, now)
            })
            .await;
            match staged {
                Ok(staged) => {
                    let (amount, change) = staged.into_parts();
                    writes.merge(change);
                    committed += amount;
                }
                // Committed before a crash that kept the record: nothing left to do.
                Err(BudgetError::UnknownReservation(_) | BudgetError::NoBudget { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            writes.remove(key);
        }
        Ok(committed)
    }

    /// The increments waiting for their receipt as last committed: read from the store once,
    /// then kept in memory as this wallet commits them.
    async fn outstanding(&self) -> Result<Vec<(String, Outstanding)>, PayError> {
        if let Some(known) = self.known_outstanding().as_ref() {
            return Ok(known.iter().map(|(k, o)| (k.clone(), o.clone())).collect());
        }
        let mut read = std::collections::BTreeMap::new();
        for key in self.store().keys(PAYMENT_PREFIX).await? {
            if let Some(bytes) = self.store().get(&key).await? {
                read.insert(key.clone(), decode_outstanding(&key, &bytes)?);
            }
        }
        let mut known = self.known_outstanding();
        // Another call may have read them, and this wallet committed more, meanwhile.
        let known = known.get_or_insert(read);
        Ok(known.iter().map(|(k, o)| (k.clone(), o.clone())).collect())
    }

    /// The increments waiting for their receipt once `base` (staged, not yet committed) is.
    async fn outstanding_in(
        &self,
        base: &WriteBatch,
    ) -> Result<Vec<(String, Outstanding)>, PayError> {
        let mut all: std::collections::BTreeMap<String, Outstanding> =
            self.outstanding().await?.into_iter().collect();
        for (key, value) in base.with_prefix(PAYMENT_PREFIX) {
            match value {
                Some(bytes) => all.insert(key.to_owned(), decode_outstanding(key, bytes)?),
                None => all.remove(key),
            };
        }
        Ok(all.into_iter().collect())
    }

    pub(crate) fn known_outstanding(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<std::collections::BTreeMap<String, Outstanding>>> {
        // A poisoned lock still holds the entries as they were last committed.
        self.outstanding.lock().unwrap_or_else(|e| e.into_inner())
    }

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
            let Some(held) = held.filter(|h| h.state == "ready") else {
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
    async fn release_outstanding<A: Approver>(
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

    /// A pre-armed `PAYMENT-SIGNATURE` for the next page of `origin`, sent before the site
    /// asks, as it is once `base` (a receipt staged before it) is: it answers the site's last
    /// offer and adds the increment that price needs, reserved in the budget in the same write
    /// (and committed once a receipt shows the payee holds it). `None` when the site's budget
    /// would not pay its last price without asking, when the budget has too little left, or
    /// without an open channel. The writes are this payment's only; commit them with `base`'s
    /// (see [`Staged::and`]) and `(&wallet, &approver)`.
    pub async fn pre_arm_site<A: Approver>(
        &self,
        base: &WriteBatch,
        approver: &A,
        origin: &str,
        tip: ChainTip,
        now: u64,
    ) -> Result<Staged<Option<String>>, PayError> {
        let none = || Ok(Staged::new(None, WriteBatch::new()));
        let Some(record) = self.open_channel_with(base, origin).await? else {
            return none();
        };
        let Some(offer) = record.last_offer.clone() else {
            return none();
        };
        let Some(budget) = approver.budget_in(base, origin).await? else {
            return none();
        };
        let auto = budget.state() == crate::budget::BudgetState::Enabled
            && offer.amount <= budget.terms().max_price
            && !budget.needs_approval(offer.amount);
        if !auto {
            return none();
        }
        let resource = Resource {
            url: format!("{origin}/"),
            description: String::new(),
            mime_type: String::new(),
        };
        let (header, paid) = self
            .pre_arm(base, origin, &record.payee_key, &resource, tip)
            .await?
            .into_parts();
        let Some(header) = header else {
            return none();
        };
        match self
            .reserve_signed(base, approver, origin, &record.payee_key, paid, now)
            .await?
        {
            Reserved::Writes { writes, .. } => Ok(Staged::new(Some(header), writes)),
            Reserved::TooLittleLeft { .. } => none(),
        }
    }

    /// [`Wallet::prepare_next`] within the approver's allowance: the top-up it signs for the
    /// next requests to `origin` is reserved in the same write (and committed as receipts show
    /// the payee holds it); when the budget has too little left, nothing is prepared, and the
    /// next request pays as it goes. Staged on top of `base` as [`Wallet::pre_arm_site`] is.
    pub async fn prepare_site<A: Approver>(
        &self,
        base: &WriteBatch,
        approver: &A,
        origin: &str,
        tip: ChainTip,
        now: u64,
    ) -> Result<Staged<()>, PayError> {
        let none = || Ok(Staged::new((), WriteBatch::new()));
        let Some(record) = self.open_channel_with(base, origin).await? else {
            return none();
        };
        let (_, signed) = self
            .prepare_next(base, origin, &record.payee_key, tip)
            .await?
            .into_parts();
        match self
            .reserve_signed(base, approver, origin, &record.payee_key, signed, now)
            .await?
        {
            Reserved::Writes { writes, .. } => Ok(Staged::new((), writes)),
            // Not prepared: the next request pays as it goes, within what is left.
            Reserved::TooLittleLeft { .. } => none(),
        }
    }

    /// Stages, in `writes`, the outstanding increment of `reservation`: the channel's latest
    /// total once `view` is, which a receipt must reach for the reservation to be committed.
    async fn stage_outstanding(
        &self,
        view: &WriteBatch,
        writes: &mut WriteBatch,
        origin: &str,
        payee: &PublicKey,
        reservation: ReservationId,
    ) -> Result<(), PayError> {
        let paid_after = self
            .channel_in(view, origin, payee)
            .await?
            .and_then(|r| r.state.state.committed_channel().map(|c| c.paid()))
            .unwrap_or(Amount::MAX_MONEY);
        let outstanding = Outstanding {
            origin: origin.to_owned(),
            payee: *payee,
            reservation,
            paid_after,
        };
        let bytes =
            serde_json::to_vec(&outstanding).map_err(|e| WalletError::Corrupt(e.to_string()))?;
        writes.put(outstanding_key(origin, reservation), bytes);
        Ok(())
    }

    /// Stores the outstanding increment of `reservation` now (an opening, which acts as it
    /// goes).
    async fn record_outstanding(
        &self,
        origin: &str,
        payee: &PublicKey,
        reservation: ReservationId,
    ) -> Result<(), PayError> {
        let mut writes = WriteBatch::new();
        self.stage_outstanding(&WriteBatch::new(), &mut writes, origin, payee, reservation)
            .await?;
        Ok(Staged::new((), writes).commit(self).await?)
    }
}

/// A staged payment with its reservation (see [`Wallet::reserve_signed`]).
enum Reserved {
    /// The reservation, the payment and its outstanding increment: one write.
    Writes {
        /// The writes.
        writes: WriteBatch,
        /// What the payment newly signs (zero when paid from credit).
        signed: Amount,
    },
    /// The budget has less left than the payment needs; nothing staged.
    TooLittleLeft {
        /// What the payment needs.
        needed: Amount,
    },
}

fn decode_outstanding(key: &str, bytes: &[u8]) -> Result<Outstanding, WalletError> {
    serde_json::from_slice(bytes).map_err(|e| WalletError::Corrupt(format!("{key}: {e}")))
}

/// Takes the committed outstanding increments of `batch` into the wallet's memory (once it
/// has read them; before, it reads them from the store).
pub(crate) fn mirror<S: Store>(wallet: &Wallet<S>, batch: &WriteBatch) {
    let mut guard = wallet.known_outstanding();
    let Some(known) = guard.as_mut() else {
        return;
    };
    for (key, value) in batch.with_prefix(PAYMENT_PREFIX) {
        match value.map(|bytes| decode_outstanding(key, bytes)) {
            Some(Ok(outstanding)) => {
                known.insert(key.to_owned(), outstanding);
            }
            None => {
                known.remove(key);
            }
            // Not an entry this crate wrote: read them all from the store next time.
            Some(Err(_)) => {
                *guard = None;
                return;
            }
        }
    }
}
