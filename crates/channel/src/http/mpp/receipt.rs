//! `Payment-Receipt`: the draft's receipt fields, with Trickle's receipt beside them.

use bitcoin::Txid;
use serde::{Deserialize, Serialize};

use super::{decode_b64url_json, encode_b64url_json, time, INTENT, METHOD};
use crate::http::{HeaderError, Receipt, MAX_HEADER_LEN};

/// The `status` of every receipt: receipts are sent only for accepted payments.
pub const SUCCESS: &str = "success";

/// The `Payment-Receipt` header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionReceipt {
    /// Always [`SUCCESS`].
    pub status: String,
    /// [`METHOD`].
    pub method: String,
    /// [`INTENT`].
    pub intent: String,
    /// When the server answered (RFC 3339).
    pub timestamp: String,
    /// The channel's contract txid: the draft's method-specific reference.
    pub reference: String,
    /// The id of the challenge the credential answered.
    pub challenge_id: String,
    /// What the request did to the channel: `channel`, `paid`, `consumed`, `credit`,
    /// `channelValue`, `expiry`, as in `PAYMENT-RESPONSE`'s `extra.receipt`.
    #[serde(flatten)]
    pub receipt: Receipt,
    /// What ended the channel, once the server has one (x402's `transaction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<Txid>,
}

impl SessionReceipt {
    /// The receipt of a request that answered `challenge_id`, at `now` (Unix seconds).
    pub fn new(receipt: Receipt, transaction: Option<Txid>, challenge_id: &str, now: u64) -> Self {
        Self {
            status: SUCCESS.to_owned(),
            method: METHOD.to_owned(),
            intent: INTENT.to_owned(),
            timestamp: time::timestamp(now),
            reference: receipt.channel.to_string(),
            challenge_id: challenge_id.to_owned(),
            receipt,
            transaction,
        }
    }

    /// The header value: unpadded base64url of the JSON, canonical (JCS).
    pub fn to_header(&self) -> String {
        encode_b64url_json(self)
    }

    /// Parses a header value (padded or not).
    pub fn from_header(value: &str) -> Result<Self, HeaderError> {
        if value.len() > MAX_HEADER_LEN {
            return Err(HeaderError::TooLong);
        }
        let this: Self = decode_b64url_json(value)?;
        if this.status != SUCCESS {
            return Err(HeaderError::Invalid(format!(
                "status {:?} is not {SUCCESS:?}",
                this.status
            )));
        }
        Ok(this)
    }
}
