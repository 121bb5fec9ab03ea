//! The cost of one payment on each side, against a bare secp256k1 ECDSA verify measured in the
//! same run: `cargo bench -p trickle-channel --bench payments`. Prints a table of medians and
//! ratios after criterion's own report; with `BENCH_ROWS` set it also appends its rows to that
//! file, in the table format of `scripts/bench.sh`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::SystemTime;

use bitcoin::secp256k1::{Message, SECP256K1};
use bitcoin::Amount;
use common::*;
use criterion::Criterion;
use trickle_channel::*;

const GROUP: &str = "payment";
const BARE: &str = "bare_secp256k1_verify";
const SIGN: &str = "payer_signs_payment";
const VERIFY: &str = "payee_verifies_payment";

fn output_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("criterion")
}

fn bench(c: &mut Criterion) {
    let pair = Pair::open(Version::V2);
    let mut group = c.benchmark_group(GROUP);

    let msg = Message::from_digest([42; 32]);
    let sk = key(CLIENT);
    let sig = SECP256K1.sign_ecdsa(&msg, &sk);
    let pk = pubkey(&sk);
    group.bench_function(BARE, |b| {
        b.iter(|| SECP256K1.verify_ecdsa(black_box(&msg), black_box(&sig), black_box(&pk)))
    });

    group.bench_function(SIGN, |b| {
        b.iter(|| {
            pair.with_payer(|ctx| pair.payer.pay(ctx, black_box(Amount::from_sat(10))))
                .expect("signed")
        })
    });

    let next = pair
        .with_payer(|ctx| pair.payer.pay(ctx, Amount::from_sat(10)))
        .expect("signed");
    let update = next.send[0].clone();
    group.bench_function(VERIFY, |b| {
        b.iter(|| {
            pair.with_payee(|ctx| pair.payee.on_message(ctx, black_box(update.clone())))
                .expect("verified")
        })
    });
    group.finish();
}

/// Median of one benchmark, in nanoseconds, from criterion's estimates written since `since`
/// (an older file is a previous run's).
fn median_ns(name: &str, since: SystemTime) -> Option<f64> {
    let path = output_dir()
        .join(GROUP)
        .join(name)
        .join("new/estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default()
        .output_directory(&output_dir())
        .configure_from_args();
    bench(&mut c);
    c.final_summary();

    let Some(bare) = median_ns(BARE, started) else {
        return; // a filtered or `--test` run measures nothing
    };
    println!("\n{:<28} {:>12} {:>10}", "operation", "median", "vs bare");
    for name in [BARE, SIGN, VERIFY] {
        if let Some(ns) = median_ns(name, started) {
            println!("{name:<28} {:>9.1} us {:>9.2}x", ns / 1e3, ns / bare);
        }
    }

    let mut rows = Vec::new();
    for (name, figure) in [
        (SIGN, "payer signs a payment, native (criterion median)"),
        (
            VERIFY,
            "payee verifies a payment, native (criterion median)",
        ),
    ] {
        if let Some(ns) = median_ns(name, started) {
            rows.push(format!(
                "| {figure} | {:.1} µs | {:.1} µs (bare secp256k1 verify) | {:.2}x |",
                ns / 1e3,
                bare / 1e3,
                ns / bare
            ));
        }
    }
    trickle_testkit::bench_rows::append(&rows);
}
