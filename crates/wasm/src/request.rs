//! The worker's messages to the wallet, as `extension/src/shared/messages.ts` sends them (its
//! TypeScript is generated from this enum).

use serde::Deserialize;
use trickle_wallet::app::view::TermsView;
use trickle_wallet::payer::Sent;
use trickle_wallet::settings::Settings;
use ts_rs::TS;

/// The worker's messages (see `messages.ts`).
#[derive(Debug, Deserialize, TS)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub(crate) enum Request {
    State,
    NewPhrase,
    Restore {
        phrase: String,
        password: String,
        /// Reset the stored wallet's password with its phrase instead of adding a wallet.
        #[serde(default)]
        #[ts(as = "Option<bool>", optional)]
        replace: bool,
    },
    Unlock {
        password: String,
    },
    Lock,
    Overview,
    Sync,
    ReceiveAddress,
    FeeRates,
    PreviewSend {
        address: String,
        amount_sat: u64,
        fee_rate: f64,
    },
    Send {
        address: String,
        amount_sat: u64,
        fee_rate: f64,
    },
    ExportPhrase {
        password: String,
    },
    SaveSettings(Settings),
    /// A 402 with a `PAYMENT-REQUIRED` header seen by the worker. `confirmed`: the user
    /// approved this payment; `sent`: what the request it answers carried; `pay_again`: the
    /// receipt that came with it was a refusal for lack of credit (`trickle_wallet::payer::answering`).
    Offer {
        url: String,
        header: String,
        #[serde(default)]
        #[ts(as = "Option<bool>", optional)]
        confirmed: bool,
        #[serde(default)]
        #[ts(as = "Option<Sent>", optional)]
        sent: Sent,
        #[serde(default)]
        #[ts(as = "Option<bool>", optional)]
        pay_again: bool,
    },
    /// The payee's account a response carries: its `PAYMENT-RESPONSE` header, or a 402's
    /// `PAYMENT-REQUIRED`, whose offers carry it when the payee counted less credit and could
    /// not say so in a header (`trickle_wallet::site::receipt_in`).
    Receipt {
        url: String,
        #[serde(default)]
        #[ts(optional)]
        header: Option<String>,
        #[serde(default)]
        #[ts(optional)]
        offer: Option<String>,
    },
    /// Creates or changes a site's budget.
    Approve {
        origin: String,
        terms: TermsView,
    },
    Revoke {
        origin: String,
    },
    /// Budgets, channels and the payment history.
    Sites,
    /// The origins with a budget (not revoked): the pages that get the page API. Readable
    /// while locked.
    ApprovedOrigins,
    CloseChannel {
        site: String,
    },
    /// Channel duties: close near expiry, check settlements, refund expired channels.
    Duties,
    /// Asks payees what they hold of payments whose receipt never came.
    Reconcile,
    /// The pre-armed payment for the next page of `origin`, if its budget allows.
    PreArm {
        origin: String,
    },
    /// Signs `count` payments on a throwaway channel and returns the time it took
    /// (`bench.rs`; `tests/browser/bench.mjs`).
    BenchPayments {
        count: u32,
    },
    /// Runs the store suite (`trickle_wallet::conformance`) over the browser's storage, in a
    /// share of its own (`tests/browser/wallet.test.mjs`).
    StoreSuite,
}
