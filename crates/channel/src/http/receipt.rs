//! `PAYMENT-RESPONSE`: x402's settlement response, with Trickle's receipt under `extra`.

use core::str::FromStr;

use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, Txid};
use serde::{Deserialize, Serialize};

use super::{decode_header, encode_header, sat_string, HeaderError};

/// What a priced request did to the channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// The channel, by its contract txid.
    pub channel: Txid,
    /// Total the server holds a signature for, in sat.
    #[serde(with = "sat_string")]
    pub paid: Amount,
    /// Charged for this request, in sat (zero for a repeat of an already paid request).
    #[serde(with = "sat_string")]
    pub consumed: Amount,
    /// Paid but not yet consumed, in sat: spent by the next priced requests.
    #[serde(with = "sat_string")]
    pub credit: Amount,
    /// The channel's value, in sat.
    #[serde(with = "sat_string")]
    pub channel_value: Amount,
    /// The channel's expiry (`nLockTime` encoding: height below 500,000,000, else Unix time).
    pub expiry: u32,
    /// For a request charged by a pre-armed payment: a nonce the server issued for the URL and
    /// counted as charged, so that the client can reload the URL without being charged again
    /// (a payment with this nonce and no update is a reload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// The `PAYMENT-RESPONSE` header. On the wire it is x402's settlement response:
/// `{success, errorReason?, payer?, transaction, network, extra?: {receipt}}`, where
/// `transaction` is the settlement's txid or `""` (a payment over an open channel settles off
/// chain, as x402's EVM bindings write it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "WireResponse", try_from = "WireResponse")]
pub struct PaymentResponse {
    /// Whether the payment was accepted.
    pub success: bool,
    /// Why not, as an error code name (see `docs/protocol.md`).
    pub error_reason: Option<String>,
    /// CAIP-2 network id.
    pub network: String,
    /// The paying channel's client key (hex).
    pub payer: Option<PublicKey>,
    /// The channel's settlement, once the server has made one (the channel is closing or
    /// closed); `None` while payments settle off chain.
    pub transaction: Option<Txid>,
    /// The receipt.
    pub receipt: Option<Receipt>,
}

/// [`PaymentResponse`] as x402's settlement-response schema lays it out.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payer: Option<PublicKey>,
    transaction: String,
    network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extra: Option<WireExtra>,
}

/// The scheme's part of a settlement response.
#[derive(Clone, Serialize, Deserialize)]
struct WireExtra {
    receipt: Receipt,
}

impl From<PaymentResponse> for WireResponse {
    fn from(r: PaymentResponse) -> Self {
        Self {
            success: r.success,
            error_reason: r.error_reason,
            payer: r.payer,
            transaction: r.transaction.map(|t| t.to_string()).unwrap_or_default(),
            network: r.network,
            extra: r.receipt.map(|receipt| WireExtra { receipt }),
        }
    }
}

impl TryFrom<WireResponse> for PaymentResponse {
    type Error = String;

    fn try_from(w: WireResponse) -> Result<Self, String> {
        let transaction = match w.transaction.as_str() {
            "" => None,
            txid => Some(Txid::from_str(txid).map_err(|e| format!("transaction: {e}"))?),
        };
        Ok(Self {
            success: w.success,
            error_reason: w.error_reason,
            network: w.network,
            payer: w.payer,
            transaction,
            receipt: w.extra.map(|e| e.receipt),
        })
    }
}

impl PaymentResponse {
    /// The header value.
    pub fn to_header(&self) -> String {
        encode_header(self)
    }

    /// Parses a header value, in the x402 form only: a header without `transaction` is refused,
    /// and a receipt outside `extra` is none (x402 would drop it too).
    pub fn from_header(value: &str) -> Result<Self, HeaderError> {
        decode_header(value)
    }
}
