//! The HTTP 402 headers, in x402 version 2 framing, scheme `batch-settlement` on Bitcoin
//! networks (`docs/scheme_batch_settlement_bip122.md`).
//!
//! * `PAYMENT-REQUIRED` (server, with status 402): what a resource costs and how to open a
//!   channel to pay for it.
//! * `PAYMENT-SIGNATURE` (client, on the retried or pre-armed request): a channel payment.
//! * `PAYMENT-RESPONSE` (server, with the resource): the receipt.
//!
//! Each header value is standard base64 of a JSON object, as x402 specifies (sent padded, read
//! padded or not, as x402's own code does); wire messages inside it are unpadded base64url of
//! their binary encoding. `docs/protocol.md` is the spec. The same offers, payments and
//! receipts travel in MPP framing too ([`mpp`]).

use core::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, Network, Txid};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::message::{DecodeError, UpdatePayment, WireMessage};

pub mod endpoint;
pub mod mpp;
mod receipt;
mod refusal;

pub use receipt::{PaymentResponse, Receipt};
pub use refusal::Refusal;

/// The x402 version these headers follow.
pub const X402_VERSION: u32 = 2;
/// The x402 scheme of Bitcoin payment channels: x402's `batch-settlement`, capital-backed,
/// on `bip122:` networks.
pub const SCHEME: &str = "batch-settlement";
/// Longest header value accepted, in bytes; longer values are refused before decoding.
pub const MAX_HEADER_LEN: usize = 16 * 1024;
/// Header names (HTTP header names are case-insensitive; browsers report them lowercase).
pub const PAYMENT_REQUIRED: &str = "payment-required";
/// The client's payment header.
pub const PAYMENT_SIGNATURE: &str = "payment-signature";
/// The server's receipt header.
pub const PAYMENT_RESPONSE: &str = "payment-response";

/// CAIP-2 id of a Bitcoin network: `bip122:` and the first 16 bytes of its genesis hash (hex).
pub fn caip2(network: Network) -> String {
    // From the constant table: building the genesis block on every offer and receipt costs
    // more than the rest of a receipt.
    let genesis = bitcoin::constants::ChainHash::using_genesis_block_const(network);
    let hash = <bitcoin::BlockHash as bitcoin::hashes::Hash>::from_byte_array(genesis.to_bytes())
        .to_string();
    format!("bip122:{}", &hash[..32])
}

/// The asset of a network's offers, in CAIP-19 as x402's Bitcoin bindings name it: bitcoin on
/// `network` (a CAIP-2 id, [`caip2`]), `<network>/slip44:0`. Every amount is in satoshis.
pub fn asset(network: &str) -> String {
    format!("{network}/slip44:0")
}

/// The resource a payment is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// Absolute URL of the resource.
    pub url: String,
    /// What it is, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Its media type.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mime_type: String,
}

/// The `extra` object of a `channel` offer: how to open a channel with this payee.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelTerms {
    /// Where the channel protocol messages go (open, resume, pay, close).
    pub endpoint: String,
    /// Protocol versions accepted, preferred first (2 = CLTV, 1 = refund transaction).
    pub versions: Vec<u8>,
    /// Smallest channel value accepted, in sat.
    #[serde(with = "sat_string")]
    pub min_channel_value: Amount,
    /// Largest channel value accepted, in sat.
    #[serde(with = "sat_string")]
    pub max_channel_value: Amount,
    /// Smallest first payment, in sat.
    #[serde(with = "sat_string")]
    pub min_payment: Amount,
    /// Longest channel life the payee offers, in blocks.
    pub max_expiry_blocks: u32,
    /// Binds a payment to this request (unpadded base64url).
    pub nonce: String,
    /// In a corrective 402 (a payment refused for lack of credit): the payee's account of the
    /// paying channel, as the refused payment's `PAYMENT-RESPONSE` would carry it. A resource
    /// server that cannot add a header to its 402 (x402's) sends it here, as x402's
    /// `batch-settlement` sends its channel state; like `nonce`, it is fresh in every offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_state: Option<PaymentResponse>,
}

/// One way to pay, from the `accepts` list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// [`SCHEME`]; other schemes are ignored by Trickle.
    pub scheme: String,
    /// CAIP-2 network id (see [`caip2`]).
    pub network: String,
    /// Price of the resource, in sat.
    #[serde(with = "sat_string")]
    pub amount: Amount,
    /// Bitcoin on `network`, in CAIP-19: [`asset`].
    pub asset: String,
    /// The payee's channel key (compressed, hex).
    pub pay_to: PublicKey,
    /// How long the offer (its nonce) stays valid.
    pub max_timeout_seconds: u32,
    /// Channel terms.
    pub extra: ChannelTerms,
}

/// The `PAYMENT-REQUIRED` header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// Always 2.
    pub x402_version: u32,
    /// Why payment is required (for example, that a presented payment was refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The resource.
    pub resource: Resource,
    /// The ways to pay.
    pub accepts: Vec<PaymentRequirements>,
}

/// The `payload` of a channel payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelPayment {
    /// The channel, by its contract txid.
    pub channel: Txid,
    /// Total paid over the channel after this payment, in sat.
    #[serde(with = "sat_string")]
    pub amount: Amount,
    /// `UPDATE_PAYMENT` as unpadded base64url; absent when the client pays from credit only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
    /// The offer's nonce this payment answers; absent for a pre-armed payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// A pre-armed payment's ticket: [`TICKET_LEN`] fresh random bytes, unpadded base64url,
    /// charged at most once. Absent when `nonce` is present (the nonce is then the ticket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// HMAC-SHA256 of the header's fields under the channel's payment key, unpadded base64url
    /// (`trickle_channel::auth::PaymentKey`). A header without it moves no money.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<String>,
}

/// Bytes of a pre-armed payment's ticket.
pub const TICKET_LEN: usize = 16;

impl ChannelPayment {
    /// The decoded `UPDATE_PAYMENT`, if one is carried.
    pub fn update(&self) -> Result<Option<UpdatePayment>, HeaderError> {
        let Some(text) = &self.update else {
            return Ok(None);
        };
        match WireMessage::from_base64url(text)? {
            WireMessage::UpdatePayment(u) => Ok(Some(u)),
            other => Err(HeaderError::Invalid(format!(
                "update carries {} instead of UPDATE_PAYMENT",
                other.name()
            ))),
        }
    }
}

/// The `PAYMENT-SIGNATURE` header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentSignature {
    /// Always 2.
    pub x402_version: u32,
    /// The resource paid for.
    pub resource: Resource,
    /// The requirements being met (scheme, network and payee must match the server's).
    pub accepted: PaymentRequirements,
    /// The payment.
    pub payload: ChannelPayment,
}

/// Why a header value was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Longer than [`MAX_HEADER_LEN`].
    TooLong,
    /// Not standard base64.
    Base64,
    /// `x402Version` is not [`X402_VERSION`].
    Version(u64),
    /// A payment for another scheme than [`SCHEME`].
    Scheme(String),
    /// Not the JSON object this header carries.
    Json(String),
    /// Well-formed but not acceptable.
    Invalid(String),
    /// An embedded wire message is malformed.
    Message(DecodeError),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong => write!(f, "header is longer than {MAX_HEADER_LEN} bytes"),
            Self::Base64 => f.write_str("header is not base64"),
            Self::Version(v) => write!(f, "x402Version {v} is not {X402_VERSION}"),
            Self::Scheme(s) => write!(f, "scheme {s:?} is not {SCHEME:?}"),
            Self::Json(e) => write!(f, "header is not valid JSON for its kind: {e}"),
            Self::Invalid(why) => write!(f, "header is invalid: {why}"),
            Self::Message(e) => write!(f, "embedded message: {e}"),
        }
    }
}

impl std::error::Error for HeaderError {}

impl HeaderError {
    /// The refusal a server answers a `PAYMENT-SIGNATURE` with that fails so.
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::Version(_) => Refusal::InvalidX402Version,
            Self::Scheme(_) => Refusal::UnsupportedScheme,
            _ => Refusal::InvalidHeader,
        }
    }
}

impl From<DecodeError> for HeaderError {
    fn from(e: DecodeError) -> Self {
        Self::Message(e)
    }
}

/// Standard base64 that writes padding and reads it or its absence (x402 sends padded base64
/// and reads both).
const HEADER_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn encode_header<T: Serialize>(value: &T) -> String {
    // Serializing these plain structs cannot fail; an empty object would be refused by peers.
    HEADER_BASE64.encode(serde_json::to_vec(value).unwrap_or_default())
}

fn decode_header<T: DeserializeOwned>(value: &str) -> Result<T, HeaderError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(HeaderError::TooLong);
    }
    let bytes = HEADER_BASE64
        .decode(value.trim())
        .map_err(|_| HeaderError::Base64)?;
    serde_json::from_slice(&bytes).map_err(|e| HeaderError::Json(e.to_string()))
}

fn check_version(v: u32) -> Result<(), HeaderError> {
    if v != X402_VERSION {
        return Err(HeaderError::Version(v.into()));
    }
    Ok(())
}

impl PaymentRequirements {
    /// Checks what can be checked without context: scheme, asset, versions, value range,
    /// nonce shape.
    pub fn validate(&self) -> Result<(), HeaderError> {
        let invalid = |why: &str| Err(HeaderError::Invalid(why.to_owned()));
        if self.scheme != SCHEME {
            return Err(HeaderError::Scheme(self.scheme.clone()));
        }
        if self.asset != asset(&self.network) {
            return invalid("asset is not bitcoin on the offer's network (<network>/slip44:0)");
        }
        let e = &self.extra;
        if e.versions.is_empty() || e.versions.iter().any(|v| !matches!(v, 1 | 2)) {
            return invalid("versions must list 1 and/or 2");
        }
        if e.min_channel_value > e.max_channel_value {
            return invalid("minChannelValue is above maxChannelValue");
        }
        if self.amount > e.max_channel_value {
            return invalid("amount is above maxChannelValue");
        }
        if e.max_expiry_blocks == 0 {
            return invalid("maxExpiryBlocks is zero");
        }
        match URL_SAFE_NO_PAD.decode(&e.nonce) {
            Ok(n) if (16..=64).contains(&n.len()) => Ok(()),
            _ => invalid("nonce must be 16 to 64 bytes of unpadded base64url"),
        }
    }

    /// Whether `accepted` is this offer as x402 matches a payment's `accepted` against a
    /// server's requirements (`@x402/core`'s `paymentRequirementsMatchAccepted`): every field
    /// equal, but `extra.nonce` and `extra.channelState`, which are fresh in every offer (a
    /// scheme's dynamic extra fields).
    pub fn matches(&self, accepted: &Self) -> bool {
        self.without_dynamic() == accepted.without_dynamic()
    }

    /// This offer without its dynamic extra fields.
    fn without_dynamic(&self) -> Self {
        let mut r = self.clone();
        r.extra.nonce.clear();
        r.extra.channel_state = None;
        r
    }

    /// This offer as a payment names it in `accepted`: without the payee's account of the
    /// channel, which the payment does not repeat.
    pub fn as_accepted(&self) -> Self {
        let mut r = self.clone();
        r.extra.channel_state = None;
        r
    }
}

impl PaymentRequired {
    /// The header value.
    pub fn to_header(&self) -> String {
        encode_header(self)
    }

    /// Parses a header value; the channel offers in it are validated, other schemes kept as
    /// they are (a client picks with [`PaymentRequired::channel_offer`]).
    pub fn from_header(value: &str) -> Result<Self, HeaderError> {
        let this: Self = decode_header(value)?;
        check_version(this.x402_version)?;
        for offer in this.accepts.iter().filter(|a| a.scheme == SCHEME) {
            offer.validate()?;
        }
        Ok(this)
    }

    /// The payee's account of the paying channel that a corrective 402 carries in its channel
    /// offers ([`ChannelTerms::channel_state`]), if any.
    pub fn channel_state(&self) -> Option<&PaymentResponse> {
        self.accepts
            .iter()
            .filter(|a| a.scheme == SCHEME)
            .find_map(|a| a.extra.channel_state.as_ref())
    }

    /// The channel offer for `network`, if the server makes one.
    pub fn channel_offer(&self, network: Network) -> Option<&PaymentRequirements> {
        let id = caip2(network);
        self.accepts
            .iter()
            .find(|a| a.scheme == SCHEME && a.network == id)
    }
}

impl PaymentSignature {
    /// The header value.
    pub fn to_header(&self) -> String {
        encode_header(self)
    }

    /// Parses and validates a header value. Another `x402Version` or another scheme is told
    /// apart from a malformed header ([`HeaderError::refusal`]): x402 answers them with codes
    /// of their own.
    pub fn from_header(value: &str) -> Result<Self, HeaderError> {
        let json: serde_json::Value = decode_header(value)?;
        if let Some(v) = json.get("x402Version").and_then(serde_json::Value::as_u64) {
            if v != u64::from(X402_VERSION) {
                return Err(HeaderError::Version(v));
            }
        }
        if let Some(scheme) = json.pointer("/accepted/scheme").and_then(|s| s.as_str()) {
            if scheme != SCHEME {
                return Err(HeaderError::Scheme(scheme.to_owned()));
            }
        }
        let this: Self =
            serde_json::from_value(json).map_err(|e| HeaderError::Json(e.to_string()))?;
        check_version(this.x402_version)?;
        this.accepted.validate()?;
        this.payload.update()?;
        Ok(this)
    }
}

/// Amounts travel as decimal strings of satoshis, as x402 writes amounts.
pub mod sat_string {
    use bitcoin::Amount;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    /// Writes `a` as a decimal string of sat.
    pub fn serialize<S: Serializer>(a: &Amount, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&a.to_sat().to_string())
    }

    /// Reads a decimal string of sat, at most 21 million BTC.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(D::Error::custom(
                "amount must be a decimal string of satoshis",
            ));
        }
        let sat: u64 = text.parse().map_err(D::Error::custom)?;
        let amount = Amount::from_sat(sat);
        if amount > Amount::MAX_MONEY {
            return Err(D::Error::custom("amount is above 21 million BTC"));
        }
        Ok(amount)
    }
}
