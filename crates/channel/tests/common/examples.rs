//! The examples of `tests/vectors/http.json`: the x402 headers of a payment over the v2
//! channel of `Pair::open`, and the same offer, payment and receipt in MPP framing.

use bitcoin::{Amount, Network};
use trickle_channel::http::mpp::{
    ChallengeKey, PaymentChallenge, PaymentCredential, SessionReceipt, SessionRequest, INTENT,
    METHOD,
};
use trickle_channel::http::*;
use trickle_channel::*;
use trickle_testkit::offer;

use super::*;

/// The MPP examples' challenge key.
pub const CHALLENGE_KEY: [u8; 32] = [8; 32];
/// The MPP examples' realm: the host of `offer::URL`.
pub const REALM: &str = "127.0.0.1:8080";
/// When the example challenge expires: its nonce's issue time plus `maxTimeoutSeconds`.
pub const EXPIRES: u64 = offer::ISSUED_AT + 300;

/// The offer, its answer, a pre-armed header (ticket `[5; 16]`, paying from credit) and the
/// receipt, each payment authorised with the client's channel key.
pub fn all_examples() -> (
    PaymentRequired,
    PaymentSignature,
    PaymentSignature,
    PaymentResponse,
) {
    let nonce = offer::nonce();
    let required = offer::offer_with(nonce.clone());
    let mut pair = Pair::open(Version::V2);
    pair.pay(Amount::from_sat(10)).expect("paid");
    let ch = pair.payer_channel();
    let mut signature = PaymentSignature {
        x402_version: X402_VERSION,
        resource: required.resource.clone(),
        accepted: required.accepts[0].clone(),
        payload: ChannelPayment {
            channel: ch.contract_txid(),
            amount: ch.paid(),
            update: Some(WireMessage::UpdatePayment(ch.latest.clone()).to_base64url()),
            nonce: Some(nonce),
            ticket: None,
            authorization: None,
        },
    };
    let mut pre_armed = signature.clone();
    pre_armed.payload.update = None;
    pre_armed.payload.nonce = None;
    auth::authorize_payment(&mut signature, &key(CLIENT), [5; 16]);
    auth::authorize_payment(&mut pre_armed, &key(CLIENT), [5; 16]);
    let response = PaymentResponse {
        success: true,
        error_reason: None,
        network: caip2(Network::Regtest),
        payer: Some(pubkey(&key(CLIENT))),
        transaction: None,
        receipt: Some(Receipt {
            channel: ch.contract_txid(),
            paid: ch.paid(),
            consumed: Amount::from_sat(10),
            credit: ch.paid() - Amount::from_sat(20),
            channel_value: ch.funding.contract.value,
            expiry: ch.funding.contract.expiry.to_consensus_u32(),
            nonce: None,
        }),
    };
    (required, signature, pre_armed, response)
}

/// The `WWW-Authenticate: Payment` challenge of the example offer, bound by [`CHALLENGE_KEY`].
pub fn mpp_challenge(required: &PaymentRequired) -> PaymentChallenge {
    let mut challenge = PaymentChallenge {
        id: String::new(),
        realm: REALM.into(),
        method: METHOD.into(),
        intent: INTENT.into(),
        request: SessionRequest::new(&required.resource, &required.accepts[0]).encode(),
        expires: Some(mpp::time::timestamp(EXPIRES)),
        description: None,
        digest: None,
        opaque: None,
    };
    ChallengeKey::new(CHALLENGE_KEY).bind(&mut challenge);
    challenge
}

/// The credential answering `challenge` with the example payment's payload.
pub fn mpp_credential(
    challenge: &PaymentChallenge,
    signature: &PaymentSignature,
) -> PaymentCredential {
    PaymentCredential {
        challenge: challenge.clone(),
        source: None,
        payload: signature.payload.clone(),
    }
}

/// The `Payment-Receipt` of the example receipt, a second after the offer.
pub fn mpp_receipt(response: &PaymentResponse, challenge: &PaymentChallenge) -> SessionReceipt {
    let receipt = response.receipt.clone().expect("a receipt");
    SessionReceipt::new(receipt, None, &challenge.id, offer::ISSUED_AT + 1)
}
