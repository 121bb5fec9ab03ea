//! Requests about an open channel that only its client may make — close it, read its totals —
//! authorised by a signature of the client's channel key over the request and the contract
//! txid. A payment needs none: it is a signature of that key already.
//!
//! The authorisation is the same for every request of one kind on one channel, so whoever
//! sees it (the payee, or a path in between on plain `http`) can repeat that request, and only
//! that one: close a channel its client already asked to close, or read totals the payee
//! already gave.

use bitcoin::hashes::{sha256, Hash};
use bitcoin::hex::{DisplayHex, FromHex};
use bitcoin::secp256k1::{ecdsa::Signature, Message, PublicKey, SecretKey};
use bitcoin::Txid;
use secp256k1::SECP256K1;

use crate::error::ChannelError;

/// What the client asks of its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelRequest {
    /// `CLOSE` on `POST {endpoint}/session/{txid}`.
    Close,
    /// `GET {endpoint}/session/{txid}`.
    Status,
}

impl ChannelRequest {
    fn tag(self) -> &'static [u8] {
        match self {
            Self::Close => b"trickle/channel-request/close",
            Self::Status => b"trickle/channel-request/status",
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
