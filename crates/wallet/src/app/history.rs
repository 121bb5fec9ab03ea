//! The payment history: one entry per paid request, the newest last, at most
//! [`HISTORY_LIMIT`] of them, stored as one JSON list under [`HISTORY_KEY`] of the network's
//! store. It is only shown (and exported): nothing is decided from it.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::site::ReceiptView;
use crate::store::{Staged, Store, WriteBatch};
use crate::WalletError;

/// Payments kept in the history; the oldest go first.
pub const HISTORY_LIMIT: usize = 1_000;
/// The key of the history in the network's store.
pub const HISTORY_KEY: &str = "history";
/// A history entry keeps this much of its URL: the history is only shown (and exported), and
/// a site's pre-armed payment pays any URL of the site, up to Chrome's 2 MB, which would fill
/// `chrome.storage.local` (10 MB, the wallet's too) in a few pages.
pub const HISTORY_URL_CHARS: usize = 2_048;

/// One paid request, as the history keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    /// When the receipt came (ms since epoch).
    pub at: f64,
    /// The site.
    pub origin: String,
    /// The URL paid for, cut to [`HISTORY_URL_CHARS`].
    pub url: String,
    /// What the request was charged, sat.
    pub consumed_sat: u64,
    /// What the payee holds in total, sat.
    pub paid_sat: u64,
    /// Paid and not yet consumed, sat.
    pub credit_sat: u64,
    /// Sat of the budget the receipt committed.
    pub committed_sat: u64,
    /// For a pre-armed payment: the header that reloads the URL without paying again (not kept
    /// in the history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload_header: Option<String>,
}

impl Payment {
    /// The payment a receipt for `url`, taken at `at` (ms since epoch), shows.
    pub fn of(at: f64, url: &str, view: &ReceiptView) -> Self {
        Self {
            at,
            origin: view.origin.clone(),
            url: history_url(url),
            consumed_sat: view.consumed.to_sat(),
            paid_sat: view.paid.to_sat(),
            credit_sat: view.credit.to_sat(),
            committed_sat: view.committed.to_sat(),
            reload_header: None,
        }
    }
}

/// `url` as the history keeps it: at most [`HISTORY_URL_CHARS`] characters, cut with "…".
pub fn history_url(url: &str) -> String {
    if url.chars().nth(HISTORY_URL_CHARS).is_none() {
        return url.to_owned();
    }
    let cut = url
        .char_indices()
        .nth(HISTORY_URL_CHARS - 1)
        .map_or(url.len(), |(i, _)| i);
    format!("{}…", &url[..cut])
}

/// The stored history (empty when there is none).
pub async fn load<S: Store>(store: &S) -> Result<Vec<Payment>, WalletError> {
    match store.get(HISTORY_KEY).await? {
        None => Ok(Vec::new()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| WalletError::Corrupt(format!("{HISTORY_KEY}: {e}"))),
    }
}

/// `history` with `payment` added (the oldest dropped past [`HISTORY_LIMIT`]), staged as one
/// write of the whole list.
pub fn record(
    mut history: Vec<Payment>,
    payment: Option<Payment>,
) -> Result<Staged<Vec<Payment>>, WalletError> {
    if let Some(payment) = payment {
        history.push(payment);
        let excess = history.len().saturating_sub(HISTORY_LIMIT);
        history.drain(..excess);
    }
    let bytes = serde_json::to_vec(&history).map_err(|e| WalletError::Corrupt(e.to_string()))?;
    let mut writes = WriteBatch::new();
    writes.put(HISTORY_KEY, bytes);
    Ok(Staged::new(history, writes))
}
