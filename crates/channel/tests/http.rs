//! The HTTP 402 headers: round trips, hostile values, and the committed examples in
//! `tests/vectors/http.json` (regenerate with `TRICKLE_WRITE_VECTORS=1`).

mod common;

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bitcoin::{Amount, Network};
use common::examples::{self, all_examples};
use common::*;
use serde_json::{json, Value};
use trickle_channel::credit::NonceKey;
use trickle_channel::http::*;
use trickle_channel::*;
use trickle_testkit::offer;

fn examples() -> (PaymentRequired, PaymentSignature, PaymentResponse) {
    let (required, signature, _, response) = all_examples();
    (required, signature, response)
}

/// The refusal of a payment on the examples' channel once it is closed: the receipt names the
/// settlement as x402's `transaction`.
fn closed_refusal() -> PaymentResponse {
    let mut pair = Pair::open(Version::V2);
    pair.pay(Amount::from_sat(10)).expect("paid");
    let close = pair.payer.close().expect("close");
    pair.payer = close.state;
    let broadcast = pair.exchange(close.send).expect("settled");
    let [settlement] = broadcast.as_slice() else {
        panic!("a close broadcasts one settlement")
    };
    let ch = pair.payee_channel();
    PaymentResponse {
        success: false,
        error_reason: Some(Refusal::Channel(ErrorCode::ChannelClosed).as_str().into()),
        network: caip2(Network::Regtest),
        payer: Some(pubkey(&key(CLIENT))),
        transaction: Some(settlement.compute_txid()),
        receipt: Some(Receipt {
            channel: ch.contract_txid(),
            paid: ch.paid(),
            consumed: Amount::ZERO,
            credit: ch.paid() - Amount::from_sat(10),
            channel_value: ch.funding.contract.value,
            expiry: ch.funding.contract.expiry.to_consensus_u32(),
            nonce: None,
        }),
    }
}

#[test]
fn headers_round_trip() {
    let (required, signature, response) = examples();
    assert_eq!(
        PaymentRequired::from_header(&required.to_header()),
        Ok(required.clone())
    );
    assert_eq!(
        PaymentSignature::from_header(&signature.to_header()),
        Ok(signature.clone())
    );
    assert_eq!(
        PaymentResponse::from_header(&response.to_header()),
        Ok(response)
    );
    assert!(required.channel_offer(Network::Regtest).is_some());
    assert!(
        required.channel_offer(Network::Bitcoin).is_none(),
        "wrong network is not offered"
    );
    let update = signature
        .payload
        .update()
        .expect("decodes")
        .expect("present");
    assert_eq!(update.client_change, Amount::from_sat(100_000 - 1_010));
}

#[test]
fn caip2_ids_are_genesis_prefixes() {
    assert_eq!(
        caip2(Network::Bitcoin),
        "bip122:000000000019d6689c085ae165831e93"
    );
    assert_eq!(
        caip2(Network::Regtest),
        "bip122:0f9188f13cb7b2c71f2a335e3a4fc328"
    );
    assert_eq!(
        caip2(Network::Signet),
        "bip122:00000008819873e925422c1ff0f99f7c"
    );
    assert_eq!(
        caip2(Network::Testnet),
        "bip122:000000000933ea01ad0ee984209779ba"
    );
}

fn b64(v: &Value) -> String {
    STANDARD.encode(serde_json::to_vec(v).expect("json"))
}

#[test]
fn hostile_offers_are_refused_with_reasons() {
    let (required, _, _) = examples();
    let good = serde_json::to_value(&required).expect("json");
    let with = |path: &[&str], v: Value| {
        let mut j = good.clone();
        let mut cur = &mut j;
        for p in &path[..path.len() - 1] {
            cur = if let Ok(i) = p.parse::<usize>() {
                &mut cur[i]
            } else {
                &mut cur[*p]
            };
        }
        cur[path[path.len() - 1]] = v;
        PaymentRequired::from_header(&b64(&j))
    };
    let invalid = |r: Result<PaymentRequired, HeaderError>| match r {
        Err(HeaderError::Invalid(_) | HeaderError::Json(_) | HeaderError::Version(_)) => {}
        other => panic!("expected a refusal, got {other:?}"),
    };
    invalid(with(&["x402Version"], json!(1)));
    invalid(with(&["accepts", "0", "amount"], json!("-1")));
    invalid(with(&["accepts", "0", "amount"], json!("1e3")));
    invalid(with(&["accepts", "0", "amount"], json!(10)));
    invalid(with(&["accepts", "0", "amount"], json!("2100000000000001")));
    invalid(with(
        &["accepts", "0", "amount"],
        json!("99999999999999999999"),
    ));
    invalid(with(&["accepts", "0", "amount"], json!("2000000")));
    invalid(with(&["accepts", "0", "asset"], json!("usd")));
    invalid(with(&["accepts", "0", "asset"], json!("sat")));
    invalid(with(
        &["accepts", "0", "asset"],
        json!(asset(&caip2(Network::Bitcoin))),
    ));
    invalid(with(&["accepts", "0", "payTo"], json!("02ffff")));
    invalid(with(&["accepts", "0", "extra", "versions"], json!([3])));
    invalid(with(&["accepts", "0", "extra", "versions"], json!([])));
    invalid(with(&["accepts", "0", "extra", "nonce"], json!("x")));
    invalid(with(
        &["accepts", "0", "extra", "maxExpiryBlocks"],
        json!(0),
    ));
    invalid(with(
        &["accepts", "0", "extra", "minChannelValue"],
        json!("2000000"),
    ));
    // Another scheme is kept but never chosen.
    let other = with(&["accepts", "0", "scheme"], json!("exact")).expect("other schemes pass");
    assert!(other.channel_offer(Network::Regtest).is_none());

    assert_eq!(
        PaymentRequired::from_header("%%%"),
        Err(HeaderError::Base64)
    );
    assert!(matches!(
        PaymentRequired::from_header(&STANDARD.encode("[1,2]")),
        Err(HeaderError::Json(_))
    ));
    let huge = "A".repeat(MAX_HEADER_LEN + 4);
    assert_eq!(
        PaymentRequired::from_header(&huge),
        Err(HeaderError::TooLong)
    );
}

#[test]
fn hostile_payments_are_refused() {
    let (_, signature, _) = examples();
    let mut wrong_msg = signature.clone();
    wrong_msg.payload.update = Some(
        WireMessage::PaymentAck(PaymentAck {
            amount_paid: Amount::ONE_SAT,
        })
        .to_base64url(),
    );
    assert!(matches!(
        PaymentSignature::from_header(&wrong_msg.to_header()),
        Err(HeaderError::Invalid(_))
    ));
    let mut garbage = signature.clone();
    garbage.payload.update = Some("AQgA".into());
    assert!(matches!(
        PaymentSignature::from_header(&garbage.to_header()),
        Err(HeaderError::Message(_))
    ));
    let mut no_channel = serde_json::to_value(&signature).expect("json");
    no_channel["payload"]["channel"] = json!("not-a-txid");
    assert!(matches!(
        PaymentSignature::from_header(&b64(&no_channel)),
        Err(HeaderError::Json(_))
    ));
}

#[test]
fn the_receipt_is_x402s_settlement_response() {
    let (_, _, response) = examples();
    let wire = serde_json::to_value(&response).expect("json");
    assert_eq!(
        wire["transaction"], "",
        "an off-chain payment has no transaction"
    );
    assert!(wire.get("receipt").is_none(), "no top-level receipt");
    assert_eq!(
        wire["extra"]["receipt"],
        serde_json::to_value(response.receipt.as_ref().expect("receipt")).expect("json")
    );
    let closed = closed_refusal();
    let wire = serde_json::to_value(&closed).expect("json");
    let settlement = closed.transaction.expect("settled");
    assert_eq!(wire["transaction"], settlement.to_string());
    assert_eq!(
        PaymentResponse::from_header(&closed.to_header()),
        Ok(closed)
    );
    // The form before x402's: no `transaction`, the receipt at the top.
    let mut old = wire.clone();
    old.as_object_mut().expect("object").remove("transaction");
    assert!(matches!(
        PaymentResponse::from_header(&b64(&old)),
        Err(HeaderError::Json(_))
    ));
    let mut bad_txid = wire;
    bad_txid["transaction"] = json!("0x1234");
    assert!(matches!(
        PaymentResponse::from_header(&b64(&bad_txid)),
        Err(HeaderError::Json(_))
    ));
}

#[test]
fn headers_are_read_padded_or_not_and_sent_padded() {
    let (required, signature, response) = examples();
    let unpadded = |h: String| h.trim_end_matches('=').to_owned();
    // Each example's JSON has a length that needs padding.
    for header in [
        required.to_header(),
        signature.to_header(),
        response.to_header(),
    ] {
        assert_eq!(header.len() % 4, 0, "padded: {header}");
        assert!(header.ends_with('='), "this example needs padding");
    }
    assert_eq!(
        PaymentRequired::from_header(&unpadded(required.to_header())),
        Ok(required)
    );
    assert_eq!(
        PaymentSignature::from_header(&unpadded(signature.to_header())),
        Ok(signature)
    );
    assert_eq!(
        PaymentResponse::from_header(&unpadded(response.to_header())),
        Ok(response)
    );
}

#[test]
fn another_scheme_or_version_is_told_apart_from_a_malformed_header() {
    let (_, signature, _) = examples();
    // An x402 `exact` payment: its payload is nothing like a channel payment's.
    let mut exact = serde_json::to_value(&signature).expect("json");
    exact["accepted"]["scheme"] = json!("exact");
    exact["payload"] = json!({ "signature": "0x00", "authorization": {} });
    let err = PaymentSignature::from_header(&b64(&exact)).expect_err("refused");
    assert_eq!(err, HeaderError::Scheme("exact".into()));
    assert_eq!(err.refusal(), Refusal::UnsupportedScheme);
    assert_eq!(err.refusal().as_str(), "unsupported_scheme");

    let mut v1 = serde_json::to_value(&signature).expect("json");
    v1["x402Version"] = json!(1);
    let err = PaymentSignature::from_header(&b64(&v1)).expect_err("refused");
    assert_eq!(err, HeaderError::Version(1));
    assert_eq!(err.refusal().as_str(), "invalid_x402_version");

    let mut broken = serde_json::to_value(&signature).expect("json");
    broken["payload"]["amount"] = json!(5);
    let err = PaymentSignature::from_header(&b64(&broken)).expect_err("refused");
    assert_eq!(err.refusal(), Refusal::InvalidHeader);
}

#[test]
fn accepted_matches_the_offer_as_x402_matches_it() {
    let (required, signature, _) = examples();
    let offer = &required.accepts[0];
    assert!(offer.matches(&signature.accepted));
    // The nonce is fresh in every offer: x402's dynamic extra field.
    let mut fresh = offer.clone();
    fresh.extra.nonce = NonceKey::new(offer::NONCE_KEY).issue([4; 16], 1_700_000_100, offer::URL);
    assert!(fresh.matches(&signature.accepted));
    // So is a corrective 402's account of the channel, which a payment does not repeat.
    let refused = PaymentResponse {
        success: false,
        error_reason: Some(Refusal::InsufficientCredit.as_str().to_owned()),
        network: offer.network.clone(),
        payer: None,
        transaction: None,
        receipt: None,
    };
    fresh.extra.channel_state = Some(refused.clone());
    assert!(fresh.matches(&signature.accepted));
    assert_eq!(fresh.as_accepted().extra.channel_state, None);
    let corrective = PaymentRequired {
        accepts: vec![fresh],
        ..required.clone()
    };
    let read = PaymentRequired::from_header(&corrective.to_header()).expect("parses");
    assert_eq!(read.channel_state(), Some(&refused));
    assert_eq!(required.channel_state(), None);
    let changed: [fn(&mut PaymentRequirements); 5] = [
        |r| r.amount = Amount::from_sat(11),
        |r| r.max_timeout_seconds = 301,
        |r| r.asset = asset(&caip2(Network::Bitcoin)),
        |r| r.extra.min_payment = Amount::from_sat(999),
        |r| r.extra.endpoint.push('/'),
    ];
    for change in changed {
        let mut other = offer.clone();
        change(&mut other);
        assert!(!other.matches(&signature.accepted), "{other:?}");
    }
}

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/http.json")
}

#[test]
fn http_vectors_match_the_committed_file() {
    let (required, signature, pre_armed, response) = all_examples();
    let closed = closed_refusal();
    let entry = |name: &str, json: Value, header: String| json!({ "header": name, "json": json, "value": header });
    let txid = signature.payload.channel;
    let payment_key = |own: &bitcoin::secp256k1::SecretKey, peer| {
        auth::PaymentKey::derive(own, &pubkey(peer), &txid).authorization(&pre_armed)
    };
    // Both ends derive the same key: the server's MAC of the pre-armed header is the client's.
    assert_eq!(
        payment_key(&key(SERVER), &key(CLIENT)),
        pre_armed.payload.authorization.clone().expect("authorised")
    );
    let generated = json!({
        "description": "Trickle HTTP 402 headers (x402 v2 framing, scheme \"batch-settlement\"). `value` is \
            the header value: standard base64 of the JSON. The payment's `update` is the \
            UPDATE_PAYMENT of a v2 channel from tests/vectors/channel.json's keys. Nonces are \
            NonceKey([9; 32]).issue([3; 16], 1_700_000_000, resource URL). Payments are \
            authorised with that channel's payment key (docs/protocol.md section 2), given \
            here with the client and server keys it comes from; the pre-armed payment's \
            ticket is 16 bytes of 0x05. The channel is the case v2-height-expiry of \
            tests/vectors/channel.json after its second payment (1,010 sat): funding coin, keys \
            and contract are named there. The second PAYMENT-RESPONSE refuses a payment once that \
            channel is closed; its `transaction` is the cooperative settlement of the channel at \
            1,010 sat. Every header validates with @x402/core's schemas \
            (tests/browser/x402.test.mjs). `mpp`: the same in MPP framing.",
        "paymentKey": {
            "clientSecret": key(CLIENT).display_secret().to_string(),
            "serverKey": pubkey(&key(SERVER)).to_string(),
            "contractTxid": txid.to_string(),
        },
        "headers": [
            entry("PAYMENT-REQUIRED", serde_json::to_value(&required).expect("json"), required.to_header()),
            entry("PAYMENT-SIGNATURE", serde_json::to_value(&signature).expect("json"), signature.to_header()),
            entry("PAYMENT-SIGNATURE", serde_json::to_value(&pre_armed).expect("json"), pre_armed.to_header()),
            entry("PAYMENT-RESPONSE", serde_json::to_value(&response).expect("json"), response.to_header()),
            entry("PAYMENT-RESPONSE", serde_json::to_value(&closed).expect("json"), closed.to_header()),
        ],
        "mpp": mpp_vectors(&required, &signature, &response),
    });
    if std::env::var_os("TRICKLE_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&generated).expect("json") + "\n";
        std::fs::write(vectors_path(), text).expect("write");
    }
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(vectors_path()).expect("http.json exists"))
            .expect("json");
    assert_eq!(committed, generated);
}

/// The same offer, payment and receipt in MPP framing (docs/mpp.md).
fn mpp_vectors(
    required: &PaymentRequired,
    signature: &PaymentSignature,
    response: &PaymentResponse,
) -> Value {
    let challenge = examples::mpp_challenge(required);
    let credential = examples::mpp_credential(&challenge, signature);
    let receipt = examples::mpp_receipt(response, &challenge);
    let request = mpp::SessionRequest::decode(&challenge.request).expect("request");
    // What the vectors claim: the credential is the example PAYMENT-SIGNATURE, field for field.
    let key = mpp::ChallengeKey::new(examples::CHALLENGE_KEY);
    let read = credential.signature(&key, examples::REALM, examples::EXPIRES);
    assert_eq!(read.as_ref(), Ok(signature));
    let entry = |name: &str, json: Value, header: String| json!({ "header": name, "json": json, "value": header });
    json!({
        "description": "The offer, payment and receipt above in MPP framing (docs/mpp.md): the \
            challenge's id is bound with ChallengeKey([8; 32]) (HMAC-SHA256 of realm, method, \
            intent, request, expires, digest and opaque joined with |); its `request` is the \
            canonical JSON of `json.request`, unpadded base64url. The credential carries the \
            first PAYMENT-SIGNATURE's payload unchanged (its authorization is valid for the \
            request's network, recipient and resource); the receipt is the first \
            PAYMENT-RESPONSE's at 2023-11-14T22:13:21Z. Credential and receipt values are \
            unpadded base64url of canonical JSON (RFC 8785); the credential's header value is \
            `Payment <that>`.",
        "challengeKey": hex::encode(examples::CHALLENGE_KEY),
        "headers": [
            entry("WWW-Authenticate", json!({
                "challenge": serde_json::to_value(&challenge).expect("json"),
                "request": serde_json::to_value(&request).expect("json"),
            }), challenge.to_header()),
            entry("Authorization", serde_json::to_value(&credential).expect("json"), credential.to_header()),
            entry("Payment-Receipt", serde_json::to_value(&receipt).expect("json"), receipt.to_header()),
        ],
    })
}

#[test]
fn refusal_reasons_are_distinct_and_parse_back() {
    let mut seen = std::collections::HashSet::new();
    for r in Refusal::all() {
        assert!(seen.insert(r.as_str()), "duplicate reason {}", r.as_str());
        assert_eq!(Refusal::parse(r.as_str()), Some(r));
    }
    assert_eq!(Refusal::parse("no_such_reason"), None);
}
