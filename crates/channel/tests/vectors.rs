//! Protocol test vectors in `tests/vectors/channel.json`, for other implementations; the layout
//! they follow is `docs/wire.md`.
//!
//! The vectors are built from fixed keys with deterministic (RFC 6979) signatures, so the same
//! inputs always give the same bytes. This test rebuilds them and compares with the committed
//! file; after an intended change, regenerate with `TRICKLE_WRITE_VECTORS=1 cargo test -p
//! trickle-channel --test vectors vectors_match` (the other tests read the file) and review
//! the diff.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use bitcoin::absolute::LockTime;
use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::hashes::{hmac, sha256, Hash, HashEngine};
use bitcoin::secp256k1::SecretKey;
use bitcoin::sighash::SighashCache;
use bitcoin::{Amount, ScriptBuf, Transaction};
use common::*;
use serde_json::{json, Value};
use trickle_channel::*;

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/channel.json")
}

/// Which side sends a message (an `ERROR` in these vectors always comes from the server).
fn sender(m: &WireMessage) -> &'static str {
    match m {
        WireMessage::ClientVersion(_)
        | WireMessage::ProvideRefund(_)
        | WireMessage::ProvideContract(_)
        | WireMessage::UpdatePayment(_)
        | WireMessage::Close(Close { settlement: None }) => "client",
        _ => "server",
    }
}

fn message_json(m: &WireMessage) -> Value {
    json!({
        "from": sender(m),
        "type": m.name(),
        "type_id": m.type_id(),
        "hex": hex::encode(m.encode()),
        "base64url": m.to_base64url(),
        "fields": fields_json(m),
    })
}

/// A message's decoded fields, named as in docs/wire.md: amounts in satoshis, keys and
/// signatures in hex, txids as Bitcoin Core displays them (the reverse of their wire bytes).
fn fields_json(m: &WireMessage) -> Value {
    match m {
        WireMessage::ClientVersion(m) => json!({
            "major": m.major,
            "minor": m.minor,
            "time_window_blocks": m.time_window_blocks,
            "previous_contract": m.previous_contract.map(|t| t.to_string()),
        }),
        WireMessage::ServerVersion(m) => json!({ "major": m.major, "minor": m.minor }),
        WireMessage::Initiate(m) => json!({
            "server_key": m.server_key.to_string(),
            "min_channel_value": m.min_channel_value.to_sat(),
            "max_channel_value": m.max_channel_value.to_sat(),
            "min_payment": m.min_payment.to_sat(),
            "expiry": m.expiry.to_consensus_u32(),
        }),
        WireMessage::ProvideRefund(m) => json!({
            "client_key": m.client_key.to_string(),
            "channel_value": m.channel_value.to_sat(),
            "refund": tx_json(&m.refund),
        }),
        WireMessage::ReturnRefund(m) => json!({ "signature": hex::encode(m.signature.to_vec()) }),
        WireMessage::ProvideContract(m) => json!({
            "contract": tx_json(&m.contract),
            "client_key": m.client_key.to_string(),
            "payout_script": hex::encode(m.payout_script.as_bytes()),
            "initial_payment": update_json(&m.initial_payment),
        }),
        WireMessage::ChannelOpen(m) => json!({
            "contract_txid": m.contract_txid.to_string(),
            "amount_paid": m.amount_paid.to_sat(),
        }),
        WireMessage::UpdatePayment(m) => update_json(m),
        WireMessage::Close(m) => json!({ "settlement": m.settlement.as_ref().map(tx_json) }),
        WireMessage::Error(m) => json!({
            "code": m.code.to_u16(),
            "code_name": m.code.name(),
            "explanation": m.explanation,
            "expected_value": m.expected_value.map(Amount::to_sat),
        }),
        WireMessage::PaymentAck(m) => json!({ "amount_paid": m.amount_paid.to_sat() }),
    }
}

fn update_json(u: &UpdatePayment) -> Value {
    json!({
        "client_change": u.client_change.to_sat(),
        "signature": hex::encode(u.signature.to_vec()),
    })
}

fn tx_json(tx: &Transaction) -> Value {
    json!({ "txid": tx.compute_txid().to_string(), "hex": serialize_hex(tx) })
}

fn key_json(secret: &SecretKey, role: &str) -> Value {
    json!({
        "secret": hex::encode(secret.secret_bytes()),
        "public_key": pubkey(secret).to_string(),
        "role": role,
    })
}

/// What a transaction spending only the contract pays in fees.
fn fee(funding: &Funding, tx: &Transaction) -> u64 {
    let out: Amount = tx.output.iter().map(|o| o.value).sum();
    (funding.contract.value - out).to_sat()
}

/// The v1 server key for `expiry` as docs/wire.md derives it (the payee does it privately, in
/// `PayeeContext::offered_secret`); the vectors check it against the contract's key.
fn v1_server_secret(expiry: LockTime) -> SecretKey {
    let mut engine = hmac::HmacEngine::<sha256::Hash>::new(&key(SERVER).secret_bytes());
    engine.input(b"trickle/v1-server-key");
    engine.input(&expiry.to_consensus_u32().to_le_bytes());
    let derived = hmac::Hmac::<sha256::Hash>::from_engine(engine).to_byte_array();
    SecretKey::from_slice(&derived).expect("valid key")
}

/// One payment: the unsigned transaction the client's signature commits to, its BIP143 digest
/// and the signature, which is checked here.
fn payment_json(funding: &Funding, payout_script: &ScriptBuf, p: &UpdatePayment) -> Value {
    funding
        .verify_payment(payout_script, p)
        .expect("the client's signature verifies");
    let tx = funding.payment(payout_script, p.client_change);
    let ty = payment_sighash_type(p.client_change);
    let digest = SighashCache::new(&tx)
        .p2wsh_signature_hash(
            0,
            &funding.contract.witness_script(),
            funding.contract.value,
            ty,
        )
        .expect("sighash");
    json!({
        "paid": (funding.contract.value - p.client_change).to_sat(),
        "client_change": p.client_change.to_sat(),
        "sighash_type": ty.to_u32(),
        "sighash_name": ty.to_string(),
        "unsigned_tx": serialize_hex(&tx),
        "sighash": hex::encode(digest.to_byte_array()),
        "signature": hex::encode(p.signature.to_vec()),
    })
}

struct CaseSpec {
    name: &'static str,
    version: Version,
    expiry_kind: ExpiryKind,
    /// What the client pays after the first payment (the server's minimum), one by one.
    increments: &'static [u64],
    /// Before closing: one more payment of this increment is lost on the way; the client
    /// resumes and sends it again.
    lost_then_resumed: Option<u64>,
}

/// The client signs a payment of `increment` that never arrives, restarts and resumes: the
/// server answers with what it holds and the client sends the payment again. Returns the
/// messages of the resume, in order.
fn resume_after_lost_payment(pair: &mut Pair, increment: Amount) -> Vec<WireMessage> {
    let lost = pair
        .with_payer(|ctx| pair.payer.pay(ctx, increment))
        .expect("payment");
    pair.payer = lost.state;
    let hello = pair.payer.resume().expect("resume");
    pair.payer = hello.state;
    let [WireMessage::ClientVersion(cv)] = hello.send.as_slice() else {
        panic!("a resume starts with CLIENT_VERSION")
    };
    assert_eq!(
        cv.previous_contract,
        Some(pair.payee_channel().contract_txid())
    );
    let answer = pair.payee.resume(cv).expect("payee resumes");
    pair.payee = answer.state;
    let mut messages = [&hello.send[..], &answer.send[..]].concat();
    let mut resend = Vec::new();
    for msg in answer.send {
        let step = pair
            .with_payer(|ctx| pair.payer.on_message(ctx, roundtrip(&msg)))
            .expect("payer resumes");
        pair.payer = step.state;
        resend.extend(step.send);
    }
    let start = pair.transcript.len();
    pair.exchange(resend)
        .expect("the resent payment is acknowledged");
    messages.extend(pair.transcript.drain(start..));
    assert_eq!(pair.payee_channel().paid(), pair.payer_channel().paid());
    messages
}

fn case(spec: &CaseSpec) -> Value {
    let mut policy = policy();
    policy.expiry_kind = spec.expiry_kind;
    let mut pair = Pair::open_with(payer_config(spec.version), policy);
    let mut payments = vec![pair.payer_channel().latest.clone()];
    for inc in spec.increments {
        pair.pay(Amount::from_sat(*inc)).expect("payment");
        payments.push(pair.payer_channel().latest.clone());
    }
    let resume = spec.lost_then_resumed.map(|increment| {
        let messages = resume_after_lost_payment(&mut pair, Amount::from_sat(increment));
        payments.push(pair.payer_channel().latest.clone());
        json!({
            "lost_increment": increment,
            "messages": messages.iter().map(message_json).collect::<Vec<_>>(),
        })
    });
    let close = pair.payer.close().expect("close");
    pair.payer = close.state;
    let broadcast = pair.exchange(close.send).expect("settled");
    let [settlement] = broadcast.as_slice() else {
        panic!("a close broadcasts one settlement")
    };
    let ch = payer_channel(&pair);
    let contract = &ch.funding.contract;
    let k = key(CLIENT);
    let refund = ch
        .refund(&PayerContext {
            key: &k,
            tip: pair.tip,
            refund_fee_rate: fee_rate(),
        })
        .expect("refund");
    for tx in [settlement, &refund] {
        pair.wallet.utxos.verify(tx).expect("valid under consensus");
    }
    let mut keys = json!({
        "client": key_json(&key(CLIENT), "the client's key in the contract: signs every payment and the refund"),
        "server": key_json(&key(SERVER), "the payee's key (payTo): a v2 contract's server key; a v1 server key is derived from it"),
        "wallet": key_json(&key(WALLET), "owns the funding coin and signs the funding (contract) transaction"),
        "client_payout": key_json(&key(CLIENT_PAYOUT), "client_payout_script is P2WPKH of this key: the change of every payment and the refund"),
        "server_payout": key_json(&key(SERVER_PAYOUT), "server_payout_script is P2WPKH of this key: the server's output of the settlement"),
    });
    if spec.version == Version::V1 {
        let derived = v1_server_secret(contract.expiry);
        assert_eq!(pubkey(&derived), contract.server_key);
        keys["server_contract"] = key_json(
            &derived,
            "the v1 contract's server key: HMAC-SHA256(key = server secret, \"trickle/v1-server-key\" || expiry as u32 LE); signs RETURN_REFUND and the settlement",
        );
    }
    let coin = coin_tx();
    let payments_sat: Vec<u64> = [pair.policy.min_payment.to_sat()]
        .into_iter()
        .chain(spec.increments.iter().copied())
        .chain(spec.lost_then_resumed)
        .collect();
    json!({
        "name": spec.name,
        "keys": keys,
        "inputs": {
            "version": spec.version.major(),
            "client_payout_script": hex::encode(ch.payout_script.as_bytes()),
            "server_payout_script": hex::encode(pair.policy.payout_script.as_bytes()),
            "tip": { "height": TIP.height, "median_time_past": TIP.median_time_past },
            "fee_rate_sat_per_vb": 2,
            "payments_sat": payments_sat,
        },
        "funding_coin": {
            "outpoint": pair.wallet.coin.to_string(),
            "value": coin.output[0].value.to_sat(),
            "script_pubkey": hex::encode(coin.output[0].script_pubkey.as_bytes()),
            "key": "wallet",
            "created_by": tx_json(&coin),
        },
        "contract": {
            "client_key": contract.client_key.to_string(),
            "server_key": contract.server_key.to_string(),
            "expiry": contract.expiry.to_consensus_u32(),
            "value_sat": contract.value.to_sat(),
            "witness_script": hex::encode(contract.witness_script().as_bytes()),
            "script_pubkey": hex::encode(contract.script_pubkey().as_bytes()),
            "outpoint": ch.funding.outpoint.to_string(),
            "funding_tx": tx_json(&ch.contract_tx),
        },
        "payments": payments.iter().map(|p| payment_json(&ch.funding, &ch.payout_script, p)).collect::<Vec<_>>(),
        "settlement": {
            "txid": settlement.compute_txid().to_string(),
            "hex": serialize_hex(settlement),
            "fee": fee(&ch.funding, settlement),
        },
        "refund": {
            "txid": refund.compute_txid().to_string(),
            "hex": serialize_hex(&refund),
            "fee": fee(&ch.funding, &refund),
        },
        "transcript": pair.transcript.iter().map(message_json).collect::<Vec<_>>(),
        "resume": resume,
    })
}

/// The payer's channel, open or closed.
fn payer_channel(pair: &Pair) -> PayerChannel {
    match &pair.payer {
        PayerState::Closed { channel, .. } => channel.clone(),
        other => other.committed_channel().expect("channel").clone(),
    }
}

/// The case whose channel the `ERROR` vectors are refused on: `Pair::open(Version::V2)` opens
/// it from the same keys and funding coin.
const ERRORS_CHANNEL: &str = "v2-height-expiry";

/// `ERROR` messages from real refusals of the server, on an open v2 channel.
fn error_vectors() -> Value {
    let mut pair = Pair::open(Version::V2);
    let first = pair.payer_channel().latest.clone();
    pair.pay(Amount::from_sat(10)).expect("payment");
    let v3 = ClientVersion {
        major: 3,
        minor: 0,
        time_window_blocks: 144,
        previous_contract: None,
    };
    let refusals = [
        (
            "CLIENT_VERSION with major 3",
            pair.with_payee(|ctx| PayeeState::start(ctx, &v3).map(|_| ())),
        ),
        (
            "UPDATE_PAYMENT repeating the first payment (1000 sat) after a second (1010 sat)",
            pair.with_payee(|ctx| {
                pair.payee
                    .on_message(ctx, WireMessage::UpdatePayment(first))
                    .map(|_| ())
            }),
        ),
        (
            "CLIENT_VERSION on an open channel's session",
            pair.with_payee(|ctx| {
                pair.payee
                    .on_message(ctx, WireMessage::ClientVersion(v3.clone()))
                    .map(|_| ())
            }),
        ),
    ];
    refusals
        .into_iter()
        .map(|(trigger, result)| {
            let error = result.expect_err("the server refuses");
            let msg = roundtrip(&WireMessage::Error(error.to_message()));
            json!({ "trigger": trigger, "channel": ERRORS_CHANNEL, "message": message_json(&msg) })
        })
        .collect()
}

const CASES: [CaseSpec; 4] = [
    CaseSpec {
        name: "v1-height-expiry",
        version: Version::V1,
        expiry_kind: ExpiryKind::Height,
        increments: &[10, 250, 5_000],
        lost_then_resumed: None,
    },
    CaseSpec {
        name: "v2-height-expiry",
        version: Version::V2,
        expiry_kind: ExpiryKind::Height,
        increments: &[10, 250, 5_000],
        lost_then_resumed: Some(100),
    },
    CaseSpec {
        name: "v2-time-expiry",
        version: Version::V2,
        expiry_kind: ExpiryKind::Time,
        increments: &[10, 250, 5_000],
        lost_then_resumed: None,
    },
    // 1,010 + 98,800 leaves 190 sat, below the P2WPKH dust limit (294): the client pays it
    // all, signs a zero change with NONE|ANYONECANPAY, and the settlement has one output.
    CaseSpec {
        name: "v2-zero-change",
        version: Version::V2,
        expiry_kind: ExpiryKind::Height,
        increments: &[10, 98_800],
        lost_then_resumed: None,
    },
];

fn all_vectors() -> Value {
    json!({
        "description": "Trickle payment channel test vectors: fixed keys, deterministic signatures; \
            the layout is docs/wire.md. Each case opens a channel from the named funding coin, pays \
            payments_sat one by one (the first is the server's minimum; a change below the dust \
            limit is paid too), closes cooperatively, and also gives the client's refund. \
            `payments` lists every payment signed: the unsigned transaction the signature commits \
            to, its BIP143 digest and the signature. In v2-height-expiry one payment is lost and \
            the client resumes (`resume`, between the payments and the close of `transcript`). \
            `errors` are the server's refusals, each on the channel of the case it names (its \
            keys and funding coin), after that case's first two payments. Every message has its binary encoding (format 1), \
            unpadded base64url and decoded fields (amounts in satoshis, txids in display order, \
            the reverse of their wire bytes). Every settlement and refund is valid under Bitcoin \
            Core's script interpreter against the funding transaction's outputs.",
        "cases": CASES.iter().map(case).collect::<Vec<_>>(),
        "errors": error_vectors(),
    })
}

fn committed() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(vectors_path()).expect("tests/vectors/channel.json exists"),
    )
    .expect("vectors are JSON")
}

#[test]
fn vectors_match_the_committed_file() {
    let generated = all_vectors();
    let path = vectors_path();
    if std::env::var_os("TRICKLE_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&generated).expect("json") + "\n";
        std::fs::write(&path, text).expect("write vectors");
    }
    assert_eq!(
        committed(),
        generated,
        "vectors differ from {}",
        path.display()
    );
}

/// Every message in the file: transcripts, resumes and errors.
fn committed_messages(vectors: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    for case in vectors["cases"].as_array().expect("cases") {
        all.extend(case["transcript"].as_array().expect("transcript").clone());
        if let Some(resume) = case["resume"]["messages"].as_array() {
            all.extend(resume.clone());
        }
    }
    for e in vectors["errors"].as_array().expect("errors") {
        all.push(e["message"].clone());
    }
    all
}

#[test]
fn committed_messages_decode_to_their_fields_and_cover_every_type() {
    let mut types = BTreeSet::new();
    for m in committed_messages(&committed()) {
        let bytes = hex::decode(m["hex"].as_str().expect("hex")).expect("hex");
        let msg = WireMessage::decode(&bytes).expect("decodes");
        assert_eq!(msg.name(), m["type"]);
        assert_eq!(msg.encode(), bytes);
        let b64 = m["base64url"].as_str().expect("base64url");
        assert_eq!(WireMessage::from_base64url(b64).expect("decodes"), msg);
        assert_eq!(fields_json(&msg), m["fields"], "fields of {}", msg.name());
        types.insert(msg.type_id());
    }
    assert_eq!(types, (1..=11).collect(), "every message type has a vector");
}

#[test]
fn the_zero_change_case_signs_none_anyonecanpay_and_settles_to_the_server_alone() {
    let vectors = committed();
    let case = vectors["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == "v2-zero-change")
        .expect("zero-change case");
    let last = case["payments"]
        .as_array()
        .and_then(|p| p.last())
        .expect("payments");
    assert_eq!(last["client_change"], 0);
    assert_eq!(last["paid"], case["contract"]["value_sat"]);
    assert_eq!(last["sighash_type"], 0x82, "NONE|ANYONECANPAY");
    let settlement: Transaction =
        deserialize_hex(case["settlement"]["hex"].as_str().expect("hex")).expect("tx");
    let [only] = settlement.output.as_slice() else {
        panic!("one output, the server's")
    };
    assert_eq!(
        hex::encode(only.script_pubkey.as_bytes()),
        case["inputs"]["server_payout_script"]
    );
}

#[test]
fn errors_are_refused_on_the_channel_of_the_case_they_name() {
    let vectors = committed();
    let contract = Pair::open(Version::V2).payer_channel().contract_txid();
    let errors = vectors["errors"].as_array().expect("errors");
    assert!(!errors.is_empty());
    for e in errors {
        let case = vectors["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .find(|c| c["name"] == e["channel"])
            .expect("the named case");
        assert_eq!(case["contract"]["funding_tx"]["txid"], contract.to_string());
    }
}
