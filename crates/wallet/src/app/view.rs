//! What a payer shows of the wallet: plain, serialisable views of budgets, channels, coins and
//! answers, amounts in sat. The extension's pages get them as JSON (their TypeScript is
//! generated from these types); the command-line payer prints them.

use bitcoin::Amount;
use serde::{Deserialize, Serialize};
use trickle_channel::PayerState;
use ts_rs::TS;

use crate::app::failure::Failure;
use crate::app::history::Payment;
use crate::budget::{Budget, BudgetState, Period, Terms};
use crate::site::{Answer, Ask};
use crate::{Balance, ChannelRecord, Duties, TxSummary};

/// A budget's terms as the pages write them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct TermsView {
    /// What the site may spend per period, sat.
    pub limit_sat: u64,
    /// The budget's period.
    pub period: Period,
    /// The most one request may cost, sat.
    pub max_price_sat: u64,
    /// Requests priced at or below this are paid without asking; `None`: always ask.
    pub auto_approve_sat: Option<u64>,
}

impl From<Terms> for TermsView {
    fn from(t: Terms) -> Self {
        Self {
            limit_sat: t.limit.to_sat(),
            period: t.period,
            max_price_sat: t.max_price.to_sat(),
            auto_approve_sat: t.auto_approve.map(Amount::to_sat),
        }
    }
}

impl From<TermsView> for Terms {
    fn from(t: TermsView) -> Self {
        Self {
            limit: Amount::from_sat(t.limit_sat),
            period: t.period,
            max_price: Amount::from_sat(t.max_price_sat),
            auto_approve: t.auto_approve_sat.map(Amount::from_sat),
        }
    }
}

/// A site's budget, as of a moment.
#[derive(Clone, Debug, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct SiteView {
    /// The site.
    pub origin: String,
    /// Nothing is paid to it until it is approved again.
    pub revoked: bool,
    /// Its terms.
    pub terms: TermsView,
    /// Spent this period, sat.
    pub spent_sat: u64,
    /// Reserved for payments whose receipt has not come, sat.
    pub reserved_sat: u64,
    /// Left this period, sat.
    pub remaining_sat: u64,
    /// The period's start (Unix seconds).
    pub period_start: u64,
    /// The period's end (Unix seconds).
    pub period_end: u64,
}

impl SiteView {
    /// `budget` at `now` (Unix seconds).
    pub fn of(budget: &Budget, now: u64) -> Self {
        let status = budget.status(now);
        Self {
            origin: budget.origin().to_owned(),
            revoked: budget.state() == BudgetState::Revoked,
            terms: (*budget.terms()).into(),
            spent_sat: status.spent.to_sat(),
            reserved_sat: status.reserved.to_sat(),
            remaining_sat: status.remaining.to_sat(),
            period_start: status.period_start,
            period_end: status.period_end,
        }
    }
}

/// One channel, as a list shows it.
#[derive(Clone, Debug, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ChannelView {
    /// The site it pays.
    pub site: String,
    /// Its state's name (`PayerState::name`).
    pub state: &'static str,
    /// The contract's value, sat (0 before there is one).
    pub value_sat: u64,
    /// Signed to the payee in total (the last part may not have reached it yet).
    pub paid_sat: u64,
    /// What the payee holds, per its last receipt (the rest of `paid_sat` is signed, not yet
    /// sent or acknowledged).
    pub acknowledged_sat: u64,
    /// Paid and not yet consumed, per the last receipt, sat.
    pub credit_sat: u64,
    /// The block height the channel expires at (nLockTime encoding: below 500,000,000).
    pub expiry: u32,
    /// The contract's txid: the channel's id on the wire and on chain.
    pub contract_txid: Option<String>,
    /// The payee's channel key.
    pub payee: String,
    /// No settlement was in a block a few blocks before the expiry
    /// (`trickle_wallet::SETTLEMENT_DUE_BLOCKS`): the refund goes out once valid.
    pub settlement_overdue: bool,
}

impl From<&ChannelRecord> for ChannelView {
    fn from(r: &ChannelRecord) -> Self {
        let state = &r.state.state;
        Self {
            site: r.site.clone(),
            state: state.name(),
            value_sat: state.contract().map_or(0, |c| c.value.to_sat()),
            paid_sat: match state {
                PayerState::Closed { channel, .. } => channel.paid().to_sat(),
                _ => state.committed_channel().map_or(0, |c| c.paid().to_sat()),
            },
            acknowledged_sat: state
                .committed_channel()
                .map_or(0, |c| c.acknowledged.to_sat()),
            credit_sat: r.credit.to_sat(),
            expiry: state.contract().map_or(0, |c| c.expiry.to_consensus_u32()),
            contract_txid: state.contract_txid().map(|t| t.to_string()),
            payee: r.payee_key.to_string(),
            settlement_overdue: r.chain.settlement_overdue,
        }
    }
}

/// Budgets, channels and the payment history.
#[derive(Debug, Serialize, TS)]
#[serde(rename_all = "camelCase")]
#[ts(rename = "Sites")]
pub struct SitesView {
    /// Every budget.
    pub sites: Vec<SiteView>,
    /// Every channel.
    pub channels: Vec<ChannelView>,
    /// The payments, the newest last.
    pub history: Vec<Payment>,
}

/// The wallet's coins.
#[derive(Clone, Copy, Debug, Serialize, TS)]
#[serde(rename_all = "camelCase")]
#[ts(rename = "Balance")]
pub struct BalanceView {
    /// Confirmed and spendable, sat.
    pub confirmed: u64,
    /// Unconfirmed, incoming or own change, sat.
    pub pending: u64,
    /// Coinbase outputs not yet mature, sat.
    pub immature: u64,
}

impl From<Balance> for BalanceView {
    fn from(b: Balance) -> Self {
        Self {
            confirmed: b.confirmed.to_sat(),
            pending: b.pending.to_sat(),
            immature: b.immature.to_sat(),
        }
    }
}

/// One of the wallet's transactions.
#[derive(Clone, Debug, Serialize, TS)]
#[serde(rename_all = "camelCase")]
#[ts(rename = "TxSummary")]
pub struct TxView {
    /// Its id.
    pub txid: String,
    /// Net effect on the wallet, sat (negative when spending).
    pub net: i64,
    /// Fee in sat when the wallet paid it and knows it.
    pub fee: Option<u64>,
    /// Block height when confirmed.
    pub height: Option<u32>,
    /// Block time (Unix seconds) when confirmed, else when first seen.
    pub time: Option<u64>,
}

impl From<TxSummary> for TxView {
    fn from(t: TxSummary) -> Self {
        Self {
            txid: t.txid.to_string(),
            net: t.net.to_sat(),
            fee: t.fee.map(Amount::to_sat),
            height: t.height,
            time: t.time,
        }
    }
}

/// What a send would cost.
#[derive(Clone, Copy, Debug, Serialize, TS)]
#[serde(rename_all = "camelCase")]
#[ts(rename = "SendPreview")]
pub struct SendPreviewView {
    /// The fee, sat.
    pub fee_sat: u64,
    /// The transaction's virtual size.
    pub vsize: u64,
    /// Amount plus fee, sat.
    pub total_sat: u64,
    /// The fee rate asked for, sat/vB.
    pub fee_rate: f64,
}

/// Something a duty did to one site's channel.
#[derive(Clone, Debug, Serialize, TS)]
#[ts(rename = "DutyEvent")]
pub struct DutyEvent {
    /// The site.
    pub site: String,
    /// A txid, or what went wrong.
    pub detail: String,
}

/// What the channel duties did ([`crate::Wallet::run_duties`]), in words.
#[derive(Clone, Debug, Default, Serialize, TS)]
#[ts(rename = "Duties")]
pub struct DutiesView {
    /// Channels closed near their expiry (the settlement's txid).
    pub closed: Vec<DutyEvent>,
    /// Contracts seen spent by a settlement that pays what it must.
    pub settled: Vec<DutyEvent>,
    /// Refunds broadcast (their txids).
    pub refunds: Vec<String>,
    /// Closes that failed and settlements refused.
    pub failed: Vec<DutyEvent>,
}

impl From<Duties> for DutiesView {
    fn from(done: Duties) -> Self {
        let mut view = Self::default();
        for (site, closed) in done.closed {
            match closed {
                Ok(txid) => view.closed.push(DutyEvent {
                    site,
                    detail: txid.to_string(),
                }),
                Err(e) => view.failed.push(DutyEvent {
                    site,
                    detail: format!("the payee did not close the channel: {e}"),
                }),
            }
        }
        for (site, seen) in done.settled {
            match seen {
                Ok(txid) => view.settled.push(DutyEvent {
                    site,
                    detail: txid.to_string(),
                }),
                Err(e) => view.failed.push(DutyEvent {
                    site,
                    detail: format!("settlement refused: {e}"),
                }),
            }
        }
        view.refunds = done
            .refunds
            .iter()
            .map(|tx| tx.compute_txid().to_string())
            .collect();
        view
    }
}

/// What to do with an offer.
#[derive(Debug, Serialize, TS)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "action"
)]
pub enum OfferAnswer {
    /// Retry with this `PAYMENT-SIGNATURE`.
    Pay {
        /// The header's value (its payment is stored).
        header: String,
        /// Sat newly signed for the request (zero when paid from credit).
        signed_sat: u64,
    },
    /// Ask the user.
    Ask {
        /// What to ask.
        ask: Box<AskView>,
    },
}

impl From<Answer> for OfferAnswer {
    fn from(answer: Answer) -> Self {
        match answer {
            Answer::Pay { header, signed } => Self::Pay {
                header,
                signed_sat: signed.to_sat(),
            },
            Answer::Ask(ask) => {
                let current = ask.current.map(TermsView::from);
                let suggested = ask.suggested.into();
                Self::Ask {
                    ask: Box::new(AskView {
                        ask: *ask,
                        current,
                        suggested,
                    }),
                }
            }
        }
    }
}

/// A payment waiting for the user, with what approving it means.
#[derive(Debug, Serialize, TS)]
#[serde(rename_all = "camelCase")]
#[ts(rename = "Ask")]
pub struct AskView {
    #[serde(flatten)]
    ask: Ask,
    /// The site's terms now, if it has a budget.
    current: Option<TermsView>,
    /// The terms approving would set.
    suggested: TermsView,
}

/// A receipt applied: the payment, and the site's next pre-armed payment.
#[derive(Debug, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptAnswer {
    /// The payment, as the history keeps it (with its reload header).
    #[serde(flatten)]
    pub payment: Payment,
    /// The next page's `PAYMENT-SIGNATURE`; `None` when nothing is pre-armed.
    pub next_header: Option<String>,
    /// Why the next payment could not be signed (the pre-armed rule is then left as it is).
    pub next_error: Option<Failure>,
    /// The payee refused for lack of credit: the 402 that comes with it is paid, once
    /// (`trickle_wallet::site::pays_again`).
    pub pay_again: bool,
}
