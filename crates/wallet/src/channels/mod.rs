//! The client's channels with sites: opening one over the payee's channel endpoint, paying
//! priced requests, reading receipts, closing and refunding. Every state is stored before the
//! message it produced leaves ("persist, then act"): a payment is returned
//! [`Staged`](crate::store::Staged), its header had only once the signed state is committed.
//! Receipts produce no message; a caller may commit them with the next payment
//! ([`Staged::commit_carrying`](crate::store::Staged::commit_carrying)), so that a paid page
//! costs one durable write, which [`Wallet::prepare_next`] lets the caller make while the
//! previous request is in flight. The wallet's memory of its channels is what was last
//! committed; the operations that take a `base` batch read through writes staged but not yet
//! committed.

use bitcoin::{Amount, FeeRate};
use trickle_channel::http::PaymentRequirements;

#[cfg(doc)]
use crate::wallet::Wallet;

mod close;
mod endpoint;
mod error;
mod open;
mod pay;
mod records;

pub use crate::book::{ChainWatch, ChannelRecord};

pub(crate) use endpoint::signature_header;
pub use error::ChannelClientError;
pub(crate) use records::relabelled_by_origin;

/// How many requests at a site's price one prepared payment pays ahead
/// ([`Wallet::prepare_next`]): one signature and one durable write then serve this many
/// requests. The cost: a payee that vanishes, or a channel closed before they are used, keeps
/// up to this many prices unused.
pub const PREPAID_REQUESTS: u64 = 10;

/// How long a call to a channel endpoint may take, answer read included: a transport gives up
/// after this (a payee that never answers must not hold the wallet).
pub const ENDPOINT_TIMEOUT: core::time::Duration = core::time::Duration::from_secs(10);

/// The largest answer a transport reads from a channel endpoint, in bytes (the largest real
/// one, a `CLOSE` with its settlement, is under 2 KiB).
pub const MAX_ENDPOINT_BODY_BYTES: usize = 64 * 1024;

/// HTTP as the channel client needs it: a JSON POST, and a GET, each answering a status and a
/// body. Every call fails after [`ENDPOINT_TIMEOUT`], and with an answer longer than
/// [`MAX_ENDPOINT_BODY_BYTES`].
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// POSTs `body` (JSON) to `url`.
    async fn post_json(&self, url: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String>;
    /// GETs `url`.
    async fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String>;
}

/// The client's limits for channels it opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelLimits {
    /// Longest the client locks funds, in blocks.
    pub max_expiry_blocks: u32,
    /// Largest first payment the client accepts.
    pub max_min_payment: Amount,
    /// Most the client locks in one channel, whatever the payee's minimum: a payee must not
    /// decide how much of the wallet is locked.
    pub max_channel_value: Amount,
}

impl Default for ChannelLimits {
    fn default() -> Self {
        Self {
            max_expiry_blocks: 4 * 1008,
            max_min_payment: Amount::from_sat(5_000),
            max_channel_value: Amount::from_sat(100_000),
        }
    }
}

/// What [`Wallet::open_channel`] opens.
#[derive(Clone, Copy, Debug)]
pub struct OpenParams<'a> {
    /// The site the channel pays.
    pub site: &'a str,
    /// The payee's offer.
    pub offer: &'a PaymentRequirements,
    /// The channel's value (at most `limits.max_channel_value`).
    pub value: Amount,
    /// The most the first payment may sign: what the caller set aside for it.
    pub first_payment: Amount,
    /// The client's limits.
    pub limits: &'a ChannelLimits,
    /// The contract's fee rate.
    pub fee_rate: FeeRate,
    /// Now, in Unix seconds (the contract is recorded as pending from then).
    pub now: u64,
}

/// Blocks the payee's chain tip may be ahead of the client's when it sets a channel's expiry:
/// an `INITIATE` expiry up to this much beyond the offer's `maxExpiryBlocks` is accepted.
const EXPIRY_TIP_SKEW_BLOCKS: u32 = 6;
