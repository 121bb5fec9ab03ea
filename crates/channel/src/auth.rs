//! What only a channel's client may do.
//!
//! * Requests about an open channel — close it, read its totals, resume it — are authorised by a
//!   signature of the client's channel key over the request and the contract txid
//!   ([`authorize`], [`check`]). The authorisation is the same for every request of one kind on
//!   one channel, so whoever sees it (the payee, or a path in between on plain `http`) can
//!   repeat that request, and only that one: close a channel its client already asked to
//!   close, or read totals the payee already gave.
//! * Every `PAYMENT-SIGNATURE` carries an HMAC under a secret the channel's two keys share
//!   ([`PaymentKey`]): a header made without the client's key, or changed in any field, moves
//!   no money (`docs/protocol.md`, section 2).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bitcoin::hashes::{cmp::fixed_time_eq, hmac, sha256, Hash, HashEngine};
use bitcoin::hex::{DisplayHex, FromHex};
use bitcoin::secp256k1::{ecdh::SharedSecret, ecdsa::Signature, Message, PublicKey, SecretKey};
use bitcoin::Txid;
use secp256k1::SECP256K1;

use crate::error::ChannelError;
use crate::http::{PaymentSignature, TICKET_LEN};

/// What the client asks of its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelRequest {
    /// `CLOSE` on `POST {endpoint}/session/{txid}`.
    Close,
    /// `GET {endpoint}/session/{txid}`.
    Status,
    /// `CLIENT_VERSION` with the contract as `previous_contract`, on `POST {endpoint}/open`.
    Resume,
}

impl ChannelRequest {
    fn tag(self) -> &'static [u8] {
        match self {
            Self::Close => b"trickle/channel-request/close",
            Self::Status => b"trickle/channel-request/status",
            Self::Resume => b"trickle/channel-request/resume",
        }
    }
}

/// What is signed: SHA-256 of the request's tag and the contract txid's 32 bytes (a single
/// hash with a tag of its own, so it is never the digest of a transaction).
fn digest(request: ChannelRequest, contract: &Txid) -> Message {
    let mut data = request.tag().to_vec();
    data.extend_from_slice(contract.as_byte_array());
    Message::from_digest(sha256::Hash::hash(&data).to_byte_array())
}

/// The client's authorisation of `request` on the channel whose contract is `contract`: the
/// 64-byte compact ECDSA signature, in lowercase hex.
pub fn authorize(request: ChannelRequest, contract: &Txid, client_secret: &SecretKey) -> String {
    let sig = SECP256K1.sign_ecdsa(&digest(request, contract), client_secret);
    sig.serialize_compact().to_lower_hex_string()
}

/// Checks `authorization` (as [`authorize`] makes it) against the channel's client key.
pub fn check(
    request: ChannelRequest,
    contract: &Txid,
    client_key: &PublicKey,
    authorization: Option<&str>,
) -> Result<(), ChannelError> {
    let refused =
        ChannelError::BadSignature("the request is not authorised by the channel's client key");
    let bytes = authorization
        .and_then(|a| Vec::<u8>::from_hex(a).ok())
        .ok_or(refused.clone())?;
    let sig = Signature::from_compact(&bytes).map_err(|_| refused.clone())?;
    SECP256K1
        .verify_ecdsa(&digest(request, contract), &sig, client_key)
        .map_err(|_| refused)
}

/// The secret a channel's client and server share for authorising payment headers:
/// `HMAC-SHA256(ECDH(client key, server key), "trickle/payment-key/v1" || contract txid)`,
/// where ECDH is libsecp256k1's (SHA-256 of the shared point, compressed). Either side derives
/// it from its own secret key and the other's public key; nobody else can.
#[derive(Clone)]
pub struct PaymentKey([u8; 32]);

impl PaymentKey {
    /// The key of the channel whose contract is `contract`, from one side's secret key and the
    /// other side's public key.
    pub fn derive(own_secret: &SecretKey, peer_key: &PublicKey, contract: &Txid) -> Self {
        let shared = SharedSecret::new(peer_key, own_secret);
        let mut engine = hmac::HmacEngine::<sha256::Hash>::new(&shared.secret_bytes());
        engine.input(b"trickle/payment-key/v1");
        engine.input(contract.as_byte_array());
        Self(hmac::Hmac::<sha256::Hash>::from_engine(engine).to_byte_array())
    }

    /// The MAC of a header: over its network, payee key, channel, amount, update, nonce,
    /// ticket and resource URL, each length-prefixed (`docs/protocol.md`, section 2).
    fn mac(&self, sig: &PaymentSignature) -> [u8; 32] {
        let p = &sig.payload;
        let mut engine = hmac::HmacEngine::<sha256::Hash>::new(&self.0);
        let fields: [&[u8]; 9] = [
            b"trickle/payment/v1",
            sig.accepted.network.as_bytes(),
            &sig.accepted.pay_to.serialize(),
            p.channel.as_byte_array(),
            &p.amount.to_sat().to_be_bytes(),
            p.update.as_deref().unwrap_or_default().as_bytes(),
            p.nonce.as_deref().unwrap_or_default().as_bytes(),
            p.ticket.as_deref().unwrap_or_default().as_bytes(),
            sig.resource.url.as_bytes(),
        ];
        for field in fields {
            // Header fields are far below 4 GiB (MAX_HEADER_LEN); the prefix keeps them apart.
            let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
            engine.input(&len.to_be_bytes());
            engine.input(field);
        }
        hmac::Hmac::<sha256::Hash>::from_engine(engine).to_byte_array()
    }

    /// `sig`'s `authorization`: the MAC, unpadded base64url.
    pub fn authorization(&self, sig: &PaymentSignature) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(sig))
    }

    /// Whether `sig` carries this key's MAC of its fields.
    pub fn check(&self, sig: &PaymentSignature) -> bool {
        let Some(given) = sig.payload.authorization.as_deref() else {
            return false;
        };
        let Ok(given) = URL_SAFE_NO_PAD.decode(given) else {
            return false;
        };
        given.len() == 32 && fixed_time_eq(&given, &self.mac(sig))
    }
}

/// Authorises a payment header with the client's channel key: a pre-armed header (no nonce)
/// gets `fresh` as its ticket, then every header its `authorization`. `fresh` must be random
/// bytes never used before (the core has no RNG).
pub fn authorize_payment(
    sig: &mut PaymentSignature,
    client_secret: &SecretKey,
    fresh: [u8; TICKET_LEN],
) {
    if sig.payload.nonce.is_none() {
        sig.payload.ticket = Some(URL_SAFE_NO_PAD.encode(fresh));
    }
    let key = PaymentKey::derive(client_secret, &sig.accepted.pay_to, &sig.payload.channel);
    sig.payload.authorization = Some(key.authorization(sig));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_client_key_authorises_only_its_request_on_its_channel() {
        let client = SecretKey::from_slice(&[1; 32]).expect("key");
        let other = SecretKey::from_slice(&[2; 32]).expect("key");
        let key = PublicKey::from_secret_key(SECP256K1, &client);
        let txid = Txid::from_byte_array([7; 32]);
        let ok = authorize(ChannelRequest::Close, &txid, &client);
        assert_eq!(ok.len(), 128);
        assert!(check(ChannelRequest::Close, &txid, &key, Some(&ok)).is_ok());
        let refused =
            |auth: Option<&str>, request, txid: &Txid| check(request, txid, &key, auth).is_err();
        let by_other = authorize(ChannelRequest::Close, &txid, &other);
        assert!(refused(Some(&by_other), ChannelRequest::Close, &txid));
        assert!(refused(Some(&ok), ChannelRequest::Status, &txid));
        assert!(refused(
            Some(&ok),
            ChannelRequest::Close,
            &Txid::from_byte_array([8; 32])
        ));
        assert!(refused(None, ChannelRequest::Close, &txid));
        assert!(refused(Some("zz"), ChannelRequest::Close, &txid));
        assert!(refused(Some(&ok[..64]), ChannelRequest::Close, &txid));
    }
}
