//! The offer of `tests/vectors/http.json` (the 402 for `/articles/1` of a payee on
//! 127.0.0.1:8080, regtest), built from the channel crate's types.

use bitcoin::{Amount, Network};
use trickle_channel::credit::NonceKey;
use trickle_channel::http::{
    asset, caip2, ChannelTerms, PaymentRequired, PaymentRequirements, Resource, SCHEME,
    X402_VERSION,
};

use crate::keys::{key, pubkey, SERVER};

/// The priced resource.
pub const URL: &str = "http://127.0.0.1:8080/articles/1";
/// The payee's channel endpoint.
pub const ENDPOINT: &str = "http://127.0.0.1:8080/.well-known/trickle/channel";
/// The payee's nonce key.
pub const NONCE_KEY: [u8; 32] = [9; 32];
/// When the example nonce was issued (Unix seconds).
pub const ISSUED_AT: u64 = 1_700_000_000;

/// The example's nonce: issued by [`NONCE_KEY`] with random bytes `[3; 16]` at [`ISSUED_AT`]
/// for [`URL`].
pub fn nonce() -> String {
    NonceKey::new(NONCE_KEY).issue([3; 16], ISSUED_AT, URL)
}

/// The example offer carrying `nonce`: 10 sat for [`URL`], paid to `key(SERVER)`, channels of
/// version 2 or 1 of 10 000 to 1 000 000 sat.
pub fn offer_with(nonce: String) -> PaymentRequired {
    PaymentRequired {
        x402_version: X402_VERSION,
        error: None,
        resource: Resource {
            url: URL.into(),
            description: "Article 1".into(),
            mime_type: "text/html".into(),
        },
        accepts: vec![PaymentRequirements {
            scheme: SCHEME.into(),
            network: caip2(Network::Regtest),
            amount: Amount::from_sat(10),
            asset: asset(&caip2(Network::Regtest)),
            pay_to: pubkey(&key(SERVER)),
            max_timeout_seconds: 300,
            extra: ChannelTerms {
                endpoint: ENDPOINT.into(),
                versions: vec![2, 1],
                min_channel_value: Amount::from_sat(10_000),
                max_channel_value: Amount::from_sat(1_000_000),
                min_payment: Amount::from_sat(1_000),
                max_expiry_blocks: 1_008,
                nonce,
                channel_state: None,
            },
        }],
    }
}

/// The example offer, with the example [`nonce`].
pub fn offer() -> PaymentRequired {
    offer_with(nonce())
}
