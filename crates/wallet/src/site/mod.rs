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
use serde::Serialize;
use trickle_channel::auth::{self, ChannelRequest};
use trickle_channel::http::{PaymentRequired, PaymentResponse, Receipt, Refusal, Resource};
use trickle_channel::{ChainTip, PayerState};

use crate::approval::{self, Approver};
use crate::budget::{BudgetError, Period, ReservationId, Terms};
use crate::chain::ChainSource;
use crate::channels::{ChannelClientError, ChannelRecord, OpenParams, Transport};
use crate::error::{Shortfall, WalletError};
use crate::offer::{check_offer, Approval, CheckedOffer, OfferContext, OfferError, OfferPolicy};
use crate::store::{Staged, Store, WriteBatch};
use crate::wallet::Wallet;
use ts_rs::TS;

mod ahead;
mod answer;
mod ask;
mod error;
mod outstanding;
mod receipt;
mod reconcile;

use answer::Reserved;
pub use ask::{suggested_terms, Ask, AskReason};
pub use error::PayError;
pub use receipt::{pays_again, receipt_in, ReceiptView};

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
    /// Opening a channel: the preview of what it costs.
    Opening {
        /// The site.
        origin: &'a str,
        /// What it locks.
        value: Amount,
        /// The contract's fee, as the wallet will build it; `None` when the wallet cannot
        /// fund the contract now (the opening then fails saying why).
        fee: Option<Amount>,
        /// The contract's fee rate.
        fee_rate: FeeRate,
    },
}

/// `rate` in sat/vB, with the decimals it has (`2`, `2.5`).
pub fn sat_per_vb(rate: FeeRate) -> f64 {
    rate.to_sat_per_kwu() as f64 / 250.0
}

impl fmt::Display for Progress<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Completing { origin } => {
                write!(f, "completing the opening of the channel with {origin} ...")
            }
            Self::Opening {
                origin,
                value,
                fee,
                fee_rate,
            } => {
                write!(
                    f,
                    "opening a channel of {} sat with {origin}: contract fee ",
                    value.to_sat()
                )?;
                match fee {
                    Some(fee) => write!(f, "{} sat", fee.to_sat())?,
                    None => f.write_str("unknown (the wallet cannot fund it now)")?,
                }
                write!(f, " at {} sat/vB", sat_per_vb(*fee_rate))
            }
        }
    }
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
