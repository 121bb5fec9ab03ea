//! The same offers, payments and receipts in MPP framing: the "Payment" HTTP authentication
//! scheme (draft-ryan-httpauth-payment), method [`METHOD`], intent [`INTENT`].
//!
//! * `WWW-Authenticate: Payment id=.., realm=.., method="trickle", intent="session",
//!   request=.., expires=..` (server, with status 402, beside `PAYMENT-REQUIRED`): the offer,
//!   [`PaymentChallenge`] carrying a [`SessionRequest`].
//! * `Authorization: Payment <credential>` (client): the challenge echoed and the very
//!   [`ChannelPayment`] a `PAYMENT-SIGNATURE` carries, [`PaymentCredential`].
//! * `Payment-Receipt` (server, with a 2xx answer to a credential): [`SessionReceipt`].
//! * Refusals: RFC 9457 problem details, [`Problem`].
//!
//! JSON travels canonical (RFC 8785) as unpadded base64url; it is read padded or not.
//! `docs/mpp.md` is the spec.

use core::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bitcoin::hashes::{cmp::fixed_time_eq, hmac, sha256, Hash, HashEngine};
use bitcoin::secp256k1::PublicKey;
use bitcoin::Amount;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::http::{
    asset, sat_string, ChannelPayment, ChannelTerms, HeaderError, PaymentRequirements,
    PaymentSignature, Resource, MAX_HEADER_LEN, SCHEME, X402_VERSION,
};

mod client;
pub mod params;
mod problem;
mod receipt;
pub mod time;

pub use problem::{Problem, ProblemType, PROBLEM_JSON};
pub use receipt::{SessionReceipt, SUCCESS};

/// The authentication scheme.
pub const AUTH_SCHEME: &str = "Payment";
/// The payment method: Trickle's channels (`docs/protocol.md`).
pub const METHOD: &str = "trickle";
/// The intent: a channel paid into once and charged per request.
pub const INTENT: &str = "session";
/// The `request`'s `currency`: amounts are satoshis.
pub const CURRENCY: &str = "sat";
/// The `request`'s `unitType`: `amount` is the price of one request.
pub const UNIT_TYPE: &str = "request";
/// The challenge header (HTTP header names are case-insensitive).
pub const WWW_AUTHENTICATE: &str = "www-authenticate";
/// The credential header.
pub const AUTHORIZATION: &str = "authorization";
/// The receipt header.
pub const PAYMENT_RECEIPT: &str = "payment-receipt";

/// Base64url that writes no padding and reads it or its absence.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `value` as canonical JSON (RFC 8785): object members sorted by their names' UTF-16 code
/// units, no whitespace. Every number here is an integer, which JCS writes as serde_json does.
fn canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<_> = members.iter().collect();
            sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, (name, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(name.clone()).to_string());
                out.push(':');
                canonical(item, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn encode_b64url_json<T: Serialize>(value: &T) -> String {
    // Serializing these plain structs cannot fail.
    let json = serde_json::to_value(value).unwrap_or_default();
    let mut text = String::new();
    canonical(&json, &mut text);
    B64URL.encode(text)
}

fn decode_b64url_json<T: DeserializeOwned>(value: &str) -> Result<T, HeaderError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(HeaderError::TooLong);
    }
    let bytes = B64URL
        .decode(value.trim())
        .map_err(|_| HeaderError::Base64)?;
    serde_json::from_slice(&bytes).map_err(|e| HeaderError::Json(e.to_string()))
}

/// The `request` of a challenge: the draft's shared fields (`amount`, `currency`, `recipient`,
/// `description`, `unitType`) and the rest of the x402 offer in `methodDetails`. It is the
/// offer of `PAYMENT-REQUIRED`, field for field ([`SessionRequest::offer`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRequest {
    /// The price of one request, in sat.
    #[serde(with = "sat_string")]
    pub amount: Amount,
    /// Always [`CURRENCY`].
    pub currency: String,
    /// The payee's channel key (x402's `payTo`).
    pub recipient: PublicKey,
    /// What is sold, for people (x402's `resource.description`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Always [`UNIT_TYPE`].
    pub unit_type: String,
    /// The rest of the offer.
    pub method_details: MethodDetails,
}

/// The `methodDetails` of a [`SessionRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MethodDetails {
    /// CAIP-2 network id (`crate::http::caip2`).
    pub network: String,
    /// Absolute URL of the resource (x402's `resource.url`); payments are authorised for it.
    pub resource: String,
    /// Its media type.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mime_type: String,
    /// How long the offer (its nonce) stays valid.
    pub max_timeout_seconds: u32,
    /// The channel terms and the nonce, as in x402's `extra`.
    #[serde(flatten)]
    pub terms: ChannelTerms,
}

impl SessionRequest {
    /// The request of the x402 offer `offer` for `resource`.
    pub fn new(resource: &Resource, offer: &PaymentRequirements) -> Self {
        Self {
            amount: offer.amount,
            currency: CURRENCY.to_owned(),
            recipient: offer.pay_to,
            description: resource.description.clone(),
            unit_type: UNIT_TYPE.to_owned(),
            method_details: MethodDetails {
                network: offer.network.clone(),
                resource: resource.url.clone(),
                mime_type: resource.mime_type.clone(),
                max_timeout_seconds: offer.max_timeout_seconds,
                terms: offer.extra.clone(),
            },
        }
    }

    /// The x402 resource and offer this request is, validated as `PAYMENT-REQUIRED`'s are.
    pub fn offer(&self) -> Result<(Resource, PaymentRequirements), HeaderError> {
        if self.currency != CURRENCY || self.unit_type != UNIT_TYPE {
            return Err(HeaderError::Invalid(format!(
                "currency and unitType must be {CURRENCY:?} and {UNIT_TYPE:?}"
            )));
        }
        let d = &self.method_details;
        let resource = Resource {
            url: d.resource.clone(),
            description: self.description.clone(),
            mime_type: d.mime_type.clone(),
        };
        let offer = PaymentRequirements {
            scheme: SCHEME.to_owned(),
            network: d.network.clone(),
            amount: self.amount,
            asset: asset(&d.network),
            pay_to: self.recipient,
            max_timeout_seconds: d.max_timeout_seconds,
            extra: d.terms.clone(),
        };
        offer.validate()?;
        Ok((resource, offer))
    }

    /// The `request` parameter.
    pub fn encode(&self) -> String {
        encode_b64url_json(self)
    }

    /// Parses a `request` parameter; [`SessionRequest::offer`] validates it.
    pub fn decode(value: &str) -> Result<Self, HeaderError> {
        decode_b64url_json(value)
    }
}

/// One `Payment` challenge, and its echo in a credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentChallenge {
    /// Binds the other parameters ([`ChallengeKey`]).
    pub id: String,
    /// The protection space: the origin's host (and port).
    pub realm: String,
    /// [`METHOD`] for ours.
    pub method: String,
    /// [`INTENT`] for ours.
    pub intent: String,
    /// [`SessionRequest::encode`] for ours.
    pub request: String,
    /// When the challenge expires (RFC 3339): the nonce's issue time plus `maxTimeoutSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// What is sold, for people; bound to nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A digest of the request body the credential must come with (not sent by Trickle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Server correlation data (not sent by Trickle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opaque: Option<String>,
}

impl PaymentChallenge {
    /// The `WWW-Authenticate` value of this one challenge.
    pub fn to_header(&self) -> String {
        let optional = [
            ("expires", &self.expires),
            ("description", &self.description),
            ("digest", &self.digest),
            ("opaque", &self.opaque),
        ];
        let params = [
            ("id", &self.id),
            ("realm", &self.realm),
            ("method", &self.method),
            ("intent", &self.intent),
            ("request", &self.request),
        ]
        .into_iter()
        .chain(optional.iter().filter_map(|(n, v)| Some((*n, v.as_ref()?))))
        .map(|(name, value)| format!("{name}={}", params::quote(value)))
        .collect::<Vec<_>>();
        format!("{AUTH_SCHEME} {}", params.join(", "))
    }

    /// Every `Payment` challenge of a `WWW-Authenticate` value, in order; challenges of other
    /// schemes are skipped. A `Payment` challenge without `id` (or with an empty one),
    /// `realm`, `method`, `intent` or `request` is refused.
    pub fn from_header(value: &str) -> Result<Vec<Self>, HeaderError> {
        let all =
            params::parse_challenges(value).map_err(|e| HeaderError::Invalid(e.to_string()))?;
        let ours = all
            .iter()
            .filter(|c| c.scheme.eq_ignore_ascii_case(AUTH_SCHEME));
        ours.map(|c| {
            let required = |name: &str| {
                c.param(name)
                    .filter(|v| !v.is_empty() || name != "id")
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        HeaderError::Invalid(format!("a Payment challenge needs {name}"))
                    })
            };
            let optional = |name: &str| c.param(name).map(str::to_owned);
            Ok(Self {
                id: required("id")?,
                realm: required("realm")?,
                method: required("method")?,
                intent: required("intent")?,
                request: required("request")?,
                expires: optional("expires"),
                description: optional("description"),
                digest: optional("digest"),
                opaque: optional("opaque"),
            })
        })
        .collect()
    }

    /// Whether this is a challenge of this method and intent.
    pub fn is_ours(&self) -> bool {
        self.method == METHOD && self.intent == INTENT
    }
}

/// Binds a challenge's `id` to its parameters: HMAC-SHA256 under a server secret of `realm`,
/// `method`, `intent`, `request`, `expires`, `digest` and `opaque`, joined with `|` (an absent
/// one empty), unpadded base64url, as the draft recommends. The server stores nothing per
/// challenge.
#[derive(Clone)]
pub struct ChallengeKey([u8; 32]);

impl ChallengeKey {
    /// A key from 32 secret bytes.
    pub fn new(secret: [u8; 32]) -> Self {
        Self(secret)
    }

    fn mac(&self, c: &PaymentChallenge) -> [u8; 32] {
        let none = String::new();
        let slots = [
            &c.realm,
            &c.method,
            &c.intent,
            &c.request,
            c.expires.as_ref().unwrap_or(&none),
            c.digest.as_ref().unwrap_or(&none),
            c.opaque.as_ref().unwrap_or(&none),
        ];
        let mut engine = hmac::HmacEngine::<sha256::Hash>::new(&self.0);
        for (i, slot) in slots.into_iter().enumerate() {
            if i > 0 {
                engine.input(b"|");
            }
            engine.input(slot.as_bytes());
        }
        hmac::Hmac::<sha256::Hash>::from_engine(engine).to_byte_array()
    }

    /// Sets `challenge.id` to its binding.
    pub fn bind(&self, challenge: &mut PaymentChallenge) {
        challenge.id = B64URL.encode(self.mac(challenge));
    }

    /// Whether `challenge.id` is its binding under this key.
    pub fn verify(&self, challenge: &PaymentChallenge) -> bool {
        B64URL
            .decode(&challenge.id)
            .is_ok_and(|id| id.len() == 32 && fixed_time_eq(&id, &self.mac(challenge)))
    }
}

/// Why a credential was refused before its payment was looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialError {
    /// Not `Payment` and base64url of a credential's JSON, or a field is invalid.
    Malformed(String),
    /// A credential for another method or intent.
    Unsupported {
        /// Its method.
        method: String,
        /// Its intent.
        intent: String,
    },
    /// The challenge was not issued by this server for this realm, or has expired.
    Challenge(&'static str),
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "malformed credential: {why}"),
            Self::Unsupported { method, intent } => write!(
                f,
                "method {method:?} and intent {intent:?} are not {METHOD:?} and {INTENT:?}"
            ),
            Self::Challenge(why) => write!(f, "invalid challenge: {why}"),
        }
    }
}

impl std::error::Error for CredentialError {}

impl CredentialError {
    /// The problem type it is answered with.
    pub fn problem_type(&self) -> ProblemType {
        match self {
            Self::Malformed(_) => ProblemType::MalformedCredential,
            Self::Unsupported { .. } => ProblemType::MethodUnsupported,
            Self::Challenge(_) => ProblemType::InvalidChallenge,
        }
    }

    /// The problem's `code`: x402's and Trickle's codes for the same failures, and
    /// `invalid_challenge` for the challenge checks only MPP has.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => crate::http::Refusal::InvalidHeader.as_str(),
            Self::Unsupported { .. } => crate::http::Refusal::UnsupportedScheme.as_str(),
            Self::Challenge(_) => "invalid_challenge",
        }
    }

    /// The problem details it is answered with.
    pub fn problem(&self) -> Problem {
        Problem::new(self.problem_type(), &self.to_string(), self.code())
    }
}

impl From<HeaderError> for CredentialError {
    fn from(e: HeaderError) -> Self {
        Self::Malformed(e.to_string())
    }
}

/// Whether an `Authorization` value is of the `Payment` scheme (any case); other schemes are
/// the site's own.
pub fn is_payment_scheme(value: &str) -> bool {
    let value = value.trim_start_matches([' ', '\t']);
    let scheme = value.split([' ', '\t', ',']).next().unwrap_or_default();
    scheme.eq_ignore_ascii_case(AUTH_SCHEME)
}

/// The `Authorization: Payment` credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCredential {
    /// The challenge answered, echoed unchanged.
    pub challenge: PaymentChallenge,
    /// Who pays, if the client says (ignored: the channel is the payer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The payment: a `PAYMENT-SIGNATURE`'s `payload`, authorised the same way for the
    /// challenge's network, recipient and resource.
    pub payload: ChannelPayment,
}

impl PaymentCredential {
    /// The `Authorization` value.
    pub fn to_header(&self) -> String {
        format!("{AUTH_SCHEME} {}", encode_b64url_json(self))
    }

    /// Parses an `Authorization` value: the `Payment` scheme (any case) and one token68.
    pub fn from_header(value: &str) -> Result<Self, CredentialError> {
        let credentials = params::parse_credentials(value)
            .map_err(|e| CredentialError::Malformed(e.to_string()))?;
        if !credentials.scheme.eq_ignore_ascii_case(AUTH_SCHEME) {
            return Err(CredentialError::Malformed("not the Payment scheme".into()));
        }
        let token = credentials
            .token68
            .ok_or_else(|| CredentialError::Malformed("no token68".into()))?;
        Ok(decode_b64url_json(&token)?)
    }

    /// Checks the credential against the server's challenge key, the request's realm and the
    /// time (Unix seconds), and returns the payment as the `PAYMENT-SIGNATURE` it is: the
    /// challenge's offer as `accepted`, its resource, and the payload. The payment must answer
    /// the challenge: its `nonce` is the challenge's, and it has no `ticket`.
    pub fn signature(
        &self,
        key: &ChallengeKey,
        realm: &str,
        now: u64,
    ) -> Result<PaymentSignature, CredentialError> {
        let c = &self.challenge;
        if !c.is_ours() {
            return Err(CredentialError::Unsupported {
                method: c.method.clone(),
                intent: c.intent.clone(),
            });
        }
        if !key.verify(c) {
            return Err(CredentialError::Challenge("not issued by this server"));
        }
        if c.realm != realm {
            return Err(CredentialError::Challenge("issued for another realm"));
        }
        let expires = c.expires.as_deref().and_then(time::parse_timestamp);
        if expires.is_none_or(|t| now > t) {
            return Err(CredentialError::Challenge("expired"));
        }
        let (resource, accepted) = SessionRequest::decode(&c.request)?.offer()?;
        if self.payload.nonce.as_ref() != Some(&accepted.extra.nonce)
            || self.payload.ticket.is_some()
        {
            return Err(CredentialError::Malformed(
                "the payment's nonce is not the challenge's, or it has a ticket".into(),
            ));
        }
        self.payload.update()?;
        Ok(PaymentSignature {
            x402_version: X402_VERSION,
            resource,
            accepted,
            payload: self.payload.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_members_by_utf16() {
        let value = json!({ "b": [1, {"z": null, "a": true}], "a": "é\n\"", "\u{e000}": 1, "\u{1f600}": 2 });
        let mut out = String::new();
        canonical(&value, &mut out);
        // U+1F600 is a surrogate pair (0xD83D ...), below U+E000 in UTF-16 order.
        assert_eq!(
            out,
            "{\"a\":\"é\\n\\\"\",\"b\":[1,{\"a\":true,\"z\":null}],\"\u{1f600}\":2,\"\u{e000}\":1}"
        );
    }

    #[test]
    fn the_scheme_is_told_apart_from_the_sites_own() {
        assert!(is_payment_scheme("Payment abc"));
        assert!(is_payment_scheme("  payment abc"));
        assert!(is_payment_scheme("PAYMENT"));
        assert!(!is_payment_scheme("Bearer abc"));
        assert!(!is_payment_scheme("Payments abc"));
        assert!(!is_payment_scheme(""));
    }
}
