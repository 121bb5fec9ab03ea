//! Protocol test vectors in `tests/vectors/channel.json`, for other implementations.
//!
//! The vectors are built from fixed keys with deterministic (RFC 6979) signatures, so the same
//! inputs always give the same bytes. This test rebuilds them and compares with the committed
//! file; after an intended change, regenerate with `TRICKLE_WRITE_VECTORS=1 cargo test -p
//! trickle-channel --test vectors` and review the diff.

mod common;

use std::path::PathBuf;

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::{Amount, Transaction};
use common::*;
use serde_json::{json, Value};
use trickle_channel::*;

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/channel.json")
}

fn message_json(m: &WireMessage) -> Value {
    json!({ "type": m.name(), "hex": hex::encode(m.encode()), "base64url": m.to_base64url() })
}

fn tx_json(tx: &Transaction) -> Value {
    json!({ "txid": tx.compute_txid().to_string(), "hex": serialize_hex(tx) })
}

fn case(name: &str, version: Version, expiry_kind: ExpiryKind) -> Value {
    let mut policy = policy();
    policy.expiry_kind = expiry_kind;
    let mut pair = Pair::open_with(payer_config(version), policy);
    for inc in [10u64, 250, 5_000] {
        pair.pay(Amount::from_sat(inc)).expect("payment");
    }
    let close = pair.payer.close().expect("close");
    pair.payer = close.state;
    let settlement = pair.exchange(close.send).expect("settled");
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
    for tx in settlement.iter().chain([&refund]) {
        pair.wallet.utxos.verify(tx).expect("valid under consensus");
    }
    json!({
        "name": name,
        "inputs": {
            "version": version.major(),
            "client_secret": hex::encode(key(CLIENT).secret_bytes()),
            "server_secret": hex::encode(key(SERVER).secret_bytes()),
            "client_payout_script": hex::encode(p2wpkh(&key(CLIENT_PAYOUT)).as_bytes()),
            "server_payout_script": hex::encode(pair.policy.payout_script.as_bytes()),
            "tip": { "height": TIP.height, "median_time_past": TIP.median_time_past },
            "fee_rate_sat_per_vb": 2,
            "payments_sat": [1000, 10, 250, 5000],
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
        "final_payment": {
            "client_change_sat": ch.latest.client_change.to_sat(),
            "signature": hex::encode(ch.latest.signature.to_vec()),
        },
        "settlement": settlement.iter().map(tx_json).collect::<Vec<_>>(),
        "refund": tx_json(&refund),
        "transcript": pair.transcript.iter().map(message_json).collect::<Vec<_>>(),
    })
}

/// The payer's channel, open or closed.
fn payer_channel(pair: &Pair) -> PayerChannel {
    match &pair.payer {
        PayerState::Closed { channel, .. } => channel.clone(),
        other => other.committed_channel().expect("channel").clone(),
    }
}

fn all_vectors() -> Value {
    json!({
        "description": "Trickle payment channel test vectors: fixed keys, deterministic signatures. \
            Each case opens a channel, pays the listed amounts (the first is the server's minimum), \
            closes cooperatively, and also gives the client's refund. Messages use the binary \
            encoding of docs (format 1) and unpadded base64url. Every transaction is valid under \
            Bitcoin Core's script interpreter against the funding transaction's outputs. A v1 \
            contract's server_key is derived from server_secret and the expiry \
            (docs/architecture.md, \"The contract\"); v2 uses server_secret's own key.",
        "cases": [
            case("v1-height-expiry", Version::V1, ExpiryKind::Height),
            case("v2-height-expiry", Version::V2, ExpiryKind::Height),
            case("v2-time-expiry", Version::V2, ExpiryKind::Time),
        ],
    })
}

#[test]
fn vectors_match_the_committed_file() {
    let generated = all_vectors();
    let path = vectors_path();
    if std::env::var_os("TRICKLE_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&generated).expect("json") + "\n";
        std::fs::write(&path, text).expect("write vectors");
    }
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).expect("tests/vectors/channel.json exists"),
    )
    .expect("vectors are JSON");
    assert_eq!(
        committed,
        generated,
        "vectors differ from {}",
        path.display()
    );
}

#[test]
fn committed_messages_decode_and_reencode() {
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(vectors_path()).expect("vectors"))
            .expect("json");
    let mut count = 0;
    for case in committed["cases"].as_array().expect("cases") {
        for m in case["transcript"].as_array().expect("transcript") {
            let bytes = hex::decode(m["hex"].as_str().expect("hex")).expect("hex");
            let msg = WireMessage::decode(&bytes).expect("decodes");
            assert_eq!(msg.name(), m["type"]);
            assert_eq!(msg.encode(), bytes);
            let b64 = m["base64url"].as_str().expect("base64url");
            assert_eq!(WireMessage::from_base64url(b64).expect("decodes"), msg);
            count += 1;
        }
    }
    assert!(
        count > 20,
        "vectors carry the whole transcripts ({count} messages)"
    );
}
