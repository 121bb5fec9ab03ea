//! On-chain size of a channel: virtual bytes of the transactions the channel core builds, next
//! to the smallest transactions of the same shape. `cargo bench -p trickle-channel --bench
//! vbytes` prints a table; with `BENCH_ROWS` set it also appends its rows to that file
//! (`scripts/bench.sh`).
//!
//! **Measured:** for each of v1 and v2, `BENCH_VBYTES_CHANNELS` (default 101) channels are opened,
//! paid and closed by the real state machines (`tests/common`: each channel of a different value
//! and paid a different amount, so every signature differs), and every transaction is checked
//! by libbitcoinconsensus. The figures are the medians over those channels of:
//! - the contract, as the test wallet funds it: one P2WPKH coin in, the contract's P2WSH output
//!   and P2WPKH change out (the shape the wallet's BDK builds from one coin);
//! - contract + settlement: the settlement is the payee's cooperative close
//!   ([`PayeeState::close`]): contract input, client change (P2WPKH), payee output (P2WPKH);
//! - the refund ([`PayerChannel::refund`]): contract input, one P2WPKH output to the client.
//!
//! **Minimum (the baseline):** the same transaction with
//! - every ECDSA signature in its witness 71 bytes: a 70-byte DER signature with a 32-byte `r`
//!   below 2^255 (low R) and a 32-byte low `s`, plus the sighash byte. That is the smallest size
//!   a signer reaches without luck (grinding R as Bitcoin Core does; a shorter one needs a
//!   leading zero byte in `r` or `s`, 1 in 256 each). libsecp256k1's plain signing does not grind,
//!   so about half our signatures are 72 bytes.
//! - no output or input beyond what the template needs: the contract is one P2WPKH input and
//!   the contract output alone (no change: a coin of exactly the right value); the settlement
//!   and the refund already have only their needed outputs.
//!
//! Everything else is kept: the witness scripts (v1 `2 <c> <s> 2 CHECKMULTISIG`; v2 `IF <s>
//! CHECKSIGVERIFY ELSE <expiry> CLTV DROP ENDIF <c> CHECKSIG`), the branch selectors, the
//! payout scripts (P2WPKH), version, sequence and lock time fields. So the ratio is what our
//! signing and funding cost above the lower bound of these script templates, not a comparison
//! with other templates (a taproot key-path close would be smaller).

#[path = "../tests/common/mod.rs"]
mod common;

use bitcoin::{Amount, Transaction, Witness};
use common::*;
use trickle_channel::*;

/// What every signature weighs at the minimum: 70-byte low-R DER plus the sighash byte.
const MIN_SIG_LEN: usize = 71;

struct Sizes {
    contract: Vec<u64>,
    contract_and_settlement: Vec<u64>,
    refund: Vec<u64>,
    min_contract: Vec<u64>,
    min_contract_and_settlement: Vec<u64>,
    min_refund: Vec<u64>,
}

/// `tx` with every witness element that is an ECDSA signature replaced by a 71-byte one.
fn with_min_signatures(tx: &Transaction) -> Transaction {
    let mut tx = tx.clone();
    for input in &mut tx.input {
        let elements: Vec<Vec<u8>> = input
            .witness
            .iter()
            .map(|e| {
                if bitcoin::ecdsa::Signature::from_slice(e).is_ok() {
                    vec![0x30; MIN_SIG_LEN]
                } else {
                    e.to_vec()
                }
            })
            .collect();
        input.witness = Witness::from_slice(&elements);
    }
    tx
}

fn vsize(tx: &Transaction) -> u64 {
    tx.vsize() as u64
}

fn measure(version: Version, channels: u64) -> Sizes {
    let mut s = Sizes {
        contract: vec![],
        contract_and_settlement: vec![],
        refund: vec![],
        min_contract: vec![],
        min_contract_and_settlement: vec![],
        min_refund: vec![],
    };
    for i in 0..channels {
        let mut config = payer_config(version);
        config.channel_value = Amount::from_sat(100_000 + 1_000 * i);
        let mut pair = Pair::open_with(config, policy());
        pair.pay(Amount::from_sat(500 + 37 * i)).expect("paid");
        let contract = pair.contract_tx.clone().expect("contract");
        let refund = pair
            .with_payer(|ctx| pair.payer_channel().refund(ctx))
            .expect("refund");
        pair.wallet.utxos.verify(&refund).expect("refund is valid");
        let step = pair.with_payee(|ctx| pair.payee.close(ctx)).expect("close");
        let [settlement] = step.broadcast.as_slice() else {
            panic!("one settlement, got {}", step.broadcast.len())
        };
        pair.wallet
            .utxos
            .verify(settlement)
            .expect("settlement is valid");

        // The contract alone: its input with a minimal signature, only the contract output.
        let mut min_contract = with_min_signatures(&contract);
        let contract_script = pair.payer_channel().funding.contract.script_pubkey();
        min_contract
            .output
            .retain(|o| o.script_pubkey == contract_script);
        assert_eq!(min_contract.output.len(), 1);

        s.contract.push(vsize(&contract));
        s.contract_and_settlement
            .push(vsize(&contract) + vsize(settlement));
        s.refund.push(vsize(&refund));
        s.min_contract.push(vsize(&min_contract));
        s.min_contract_and_settlement
            .push(vsize(&min_contract) + vsize(&with_min_signatures(settlement)));
        s.min_refund.push(vsize(&with_min_signatures(&refund)));
    }
    s
}

fn median(values: &[u64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no flag: keep that quick.
    let benching = std::env::args().any(|a| a == "--bench");
    let channels: u64 = match std::env::var("BENCH_VBYTES_CHANNELS") {
        Ok(n) => n.parse().expect("BENCH_VBYTES_CHANNELS is a number"),
        Err(_) if benching => 101,
        Err(_) => 3,
    };
    assert!(channels > 0, "BENCH_VBYTES_CHANNELS must be at least 1");
    let mut rows = Vec::new();
    for version in [Version::V1, Version::V2] {
        let s = measure(version, channels);
        let v = match version {
            Version::V1 => "v1",
            Version::V2 => "v2",
        };
        let figures = [
            ("contract", &s.contract, &s.min_contract),
            (
                "contract + settlement",
                &s.contract_and_settlement,
                &s.min_contract_and_settlement,
            ),
            ("refund", &s.refund, &s.min_refund),
        ];
        for (what, actual, min) in figures {
            let (a, m) = (median(actual), median(min));
            rows.push(format!(
                "| {v} {what}, vB (median of {channels} channels) | {a} vB | {m} vB (minimum) | {:.3}x |",
                a / m
            ));
        }
    }
    println!("\n| figure | value | baseline | ratio |\n| --- | --- | --- | --- |");
    for row in &rows {
        println!("{row}");
    }
    trickle_testkit::bench_rows::append(&rows);
}
