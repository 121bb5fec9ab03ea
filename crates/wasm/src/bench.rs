//! `benchPayments`: how long the worker takes to sign a channel payment, for
//! `tests/browser/bench.mjs` (`scripts/bench.sh`).
//!
//! It signs `count` payments of 10 sat with the code the extension pays with,
//! [`PayerState::pay`], on a ready v2 channel of 100 000 sat made up here, the same terms as
//! `payer_signs_payment` in `crates/channel/benches/payments.rs`, which times the same call
//! natively. The channel's keys are throwaway keys derived from a public label, not the
//! wallet's; its contract transaction is never signed or broadcast; nothing is stored and
//! only the count and the elapsed time are returned.

use core::hint::black_box;

use bitcoin::absolute::LockTime;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{PublicKey, SecretKey, SECP256K1};
use bitcoin::transaction::Version as TxVersion;
use bitcoin::{Amount, CompressedPublicKey, FeeRate, ScriptBuf, Transaction, TxIn};
use serde::Serialize;
use trickle_channel::{
    ChainTip, Contract, Funding, PayerChannel, PayerContext, PayerState, Version,
};
use wasm_bindgen::prelude::*;

use crate::{failure, Failure};

#[wasm_bindgen]
extern "C" {
    /// `performance.now()` of the worker's global scope (ms).
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// Most payments one request may sign (about ten seconds of work in the worker at most).
const MAX_COUNT: u32 = 10_000;

#[derive(Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BenchPayments {
    count: u32,
    elapsed_ms: f64,
}

fn throwaway_key(label: &str) -> Result<SecretKey, Failure> {
    SecretKey::from_slice(sha256::Hash::hash(label.as_bytes()).as_ref())
        .map_err(|_| failure("internal", "throwaway key"))
}

/// Signs `count` payments (each from the same ready state, as the native benchmark does) and
/// times the loop with `performance.now()`.
pub(crate) fn bench_payments(count: u32) -> Result<BenchPayments, Failure> {
    if count == 0 || count > MAX_COUNT {
        return Err(failure(
            "bad_request",
            format!("count must be 1 to {MAX_COUNT}"),
        ));
    }
    let client = throwaway_key("trickle bench payments: client")?;
    let server = throwaway_key("trickle bench payments: server")?;
    let pubkey = |k: &SecretKey| PublicKey::from_secret_key(SECP256K1, k);
    let payout = ScriptBuf::new_p2wpkh(&CompressedPublicKey(pubkey(&client)).wpubkey_hash());
    let tip = ChainTip {
        height: 1_000,
        median_time_past: 1_700_000_000,
    };
    let contract = Contract {
        version: Version::V2,
        client_key: pubkey(&client),
        server_key: pubkey(&server),
        expiry: LockTime::from_consensus(tip.height + 144),
        value: Amount::from_sat(100_000),
    };
    // Unsigned and never broadcast: only its txid and output locate the contract.
    let contract_tx = Transaction {
        version: TxVersion::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn::default()],
        output: vec![contract.output()],
    };
    let funding = Funding::locate(contract, &contract_tx).map_err(channel_failure)?;
    let first = funding
        .sign_payment(&payout, Amount::from_sat(99_000), &client)
        .map_err(channel_failure)?;
    let state = PayerState::Ready {
        channel: PayerChannel {
            funding,
            contract_tx,
            payout_script: payout,
            server_refund_signature: None,
            latest: first,
            acknowledged: Amount::from_sat(1_000),
        },
    };
    let ctx = PayerContext {
        key: &client,
        tip,
        refund_fee_rate: FeeRate::from_sat_per_vb_u32(2),
    };
    let t0 = performance_now();
    for _ in 0..count {
        let step = state
            .pay(&ctx, black_box(Amount::from_sat(10)))
            .map_err(channel_failure)?;
        let _ = black_box(step);
    }
    Ok(BenchPayments {
        count,
        elapsed_ms: performance_now() - t0,
    })
}

fn channel_failure(e: trickle_channel::ChannelError) -> Failure {
    failure("internal", e.to_string())
}
