//! The payee under load: payments through the full server path (HTTP parse, state lookup,
//! signature check, durable store) against a bare secp256k1 ECDSA verify loop measured in the
//! same run. `cargo bench -p trickle-payee --bench throughput`.
//!
//! A load generator on loopback opens `CHANNELS` channels, signs `PAYMENTS` payments ahead of
//! time (signing is the client's cost, not the server's), then sends them as pre-armed requests
//! from `CONCURRENCY` connections, each request carrying a new signed increment. The server runs
//! on its own runtime whose threads (workers and blocking pool, where the store works) are named
//! `payee-*`, so that their CPU time can be read from `/proc`: payments per server CPU-second is
//! the per-core rate, compared with bare verifies per CPU-second. The same requests to a free
//! page through the same server give the latency baseline.
//!
//! The cost of authenticated, single-use payments (`docs/protocol.md`, section 2) is measured in
//! the same run, step by step, against the paid path's CPU per request: the MAC check of every
//! header sent (with its key derived once per channel, as the server caches it), the reload
//! nonce a pre-armed charge mints, and the ticket rows a charge writes (the same store write
//! with and without them, alternated). Their sum against the paid path is the extra cost of
//! authorisation; the paid path without it is the paid path minus that sum.
//!
//! Store: SQLite in a temporary directory (the default), and PostgreSQL when
//! `TRICKLE_TEST_POSTGRES_URL` is set (`bash scripts/with-postgres.sh cargo bench ...`).
//! With `BENCH_ROWS=FILE`, rows of the summary table are appended to FILE.

#![allow(clippy::unwrap_used)] // the shared test helpers panic on what cannot happen

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, SECP256K1};
use bitcoin::{Amount, OutPoint, Txid};
use common::*;
use trickle_channel::auth::PaymentKey;
use trickle_channel::credit::{NonceKey, NONCE_RANDOM_LEN};
use trickle_channel::http::{PaymentRequired, PaymentSignature, PAYMENT_SIGNATURE};
use trickle_channel::Version;
use trickle_payee::store::{
    ChannelStore, ChannelUpdate, ChargedTicket, SqliteStore, StoredChannel,
};

const PRICE: u64 = 10;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds of this process's threads whose name starts with `prefix`, from the
/// scheduler's nanosecond run time (`/proc/.../schedstat`; `stat`'s ticks are 10 ms).
fn thread_cpu(prefix: &str) -> f64 {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = task.expect("task").path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if !comm.starts_with(prefix) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("schedstat")) else {
            continue;
        };
        let ns: f64 = stat
            .split(' ')
            .next()
            .and_then(|f| f.parse().ok())
            .expect("schedstat run time");
        total += ns / 1e9;
    }
    total
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Bare verifies per CPU-second: the median of several timed loops on this thread.
fn bare_verify_rate() -> f64 {
    let msg = Message::from_digest([42; 32]);
    let sk = key(CLIENT);
    let sig = SECP256K1.sign_ecdsa(&msg, &sk);
    let pk = pubkey(&sk);
    let n = 5_000;
    let rates = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                black_box(SECP256K1.verify_ecdsa(black_box(&msg), black_box(&sig), black_box(&pk)))
                    .expect("valid");
            }
            n as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    median(rates)
}

struct Run {
    label: String,
    payments: usize,
    wall: Duration,
    server_cpu: f64,
    latencies: Vec<Duration>,
}

/// Sends every request of `work` (one list per connection, sent in order) and times each.
async fn drive(base: &str, work: Vec<Vec<(String, Option<String>)>>) -> Vec<Duration> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(work.len())
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let tasks = work.into_iter().map(|requests| {
        let http = http.clone();
        let base = base.to_owned();
        tokio::spawn(async move {
            let mut times = Vec::with_capacity(requests.len());
            for (path, header) in requests {
                let mut req = http.get(format!("{base}{path}"));
                if let Some(h) = header {
                    req = req.header(PAYMENT_SIGNATURE, h);
                }
                let t = Instant::now();
                let resp = req.send().await.expect("request");
                let status = resp.status();
                resp.bytes().await.expect("body");
                times.push(t.elapsed());
                assert_eq!(status, 200, "{path}");
            }
            times
        })
    });
    let mut all = Vec::new();
    for t in tasks.collect::<Vec<_>>() {
        all.extend(t.await.expect("task"));
    }
    all
}

async fn measure(label: &str, base: &str, work: Vec<Vec<(String, Option<String>)>>) -> Run {
    let payments = work.iter().map(Vec::len).sum();
    let cpu0 = thread_cpu("payee-");
    let t = Instant::now();
    let mut latencies = drive(base, work).await;
    let wall = t.elapsed();
    let server_cpu = thread_cpu("payee-") - cpu0;
    latencies.sort();
    Run {
        label: label.to_owned(),
        payments,
        wall,
        server_cpu,
        latencies,
    }
}

/// Opens `channels` channels on the server at `base` and signs `per_channel` pre-armed
/// payments on each, one price each; returns the requests, dealt to `concurrency` connections.
async fn prepare(
    base: &str,
    channels: usize,
    per_channel: usize,
    concurrency: usize,
) -> Vec<Vec<(String, Option<String>)>> {
    let endpoint = format!("{base}{}", trickle_payee::DEFAULT_ENDPOINT_PATH);
    let offer: PaymentRequired = fetch(&format!("{base}/articles/0"), None)
        .await
        .required
        .expect("a 402 offer");
    let mut work = vec![Vec::new(); concurrency];
    let t = Instant::now();
    for c in 0..channels {
        let mut coin = [0u8; 32];
        coin[..8].copy_from_slice(&(c as u64 + 1).to_le_bytes());
        let wallet = Coin {
            outpoint: OutPoint::new(Txid::from_byte_array(coin), 0),
            value: Amount::from_sat(100_000_000),
        };
        let mut client = Client::open_funded(&endpoint, Version::V2, TIP, &wallet).await;
        // Every channel's requests go to one connection, in order: a channel's payments grow.
        let conn = &mut work[c % concurrency];
        for i in 0..per_channel {
            let update = client.sign(Amount::from_sat(PRICE));
            let header = client.header(&offer, Some(&update), false);
            conn.push((format!("/articles/{c}-{i}"), Some(header)));
        }
    }
    eprintln!(
        "opened {channels} channels and signed {} payments in {:.1} s",
        channels * per_channel,
        t.elapsed().as_secs_f64()
    );
    work
}

fn report(run: &Run, bare: f64) -> Vec<String> {
    let per_cpu = run.payments as f64 / run.server_cpu;
    let wall_rate = run.payments as f64 / run.wall.as_secs_f64();
    let l = &run.latencies;
    println!(
        "{}: {} requests in {:.2} s = {:.0}/s wall; server CPU {:.2} s = {:.0}/CPU-s ({:.2}x bare verify); \
         latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
        run.label,
        run.payments,
        run.wall.as_secs_f64(),
        wall_rate,
        run.server_cpu,
        per_cpu,
        per_cpu / bare,
        percentile(l, 0.5).as_secs_f64() * 1e3,
        percentile(l, 0.9).as_secs_f64() * 1e3,
        percentile(l, 0.99).as_secs_f64() * 1e3,
    );
    vec![format!(
        "| payee {}: payments per server CPU-second | {:.0}/s | bare verify {:.0}/s | {:.2} |",
        run.label,
        per_cpu,
        bare,
        per_cpu / bare
    )]
}

/// Median seconds per call of `f`, over several timed loops of `n` calls on this thread.
fn per_call(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let times = (0..7)
        .map(|round| {
            let t = Instant::now();
            for i in 0..n {
                f(round * n + i);
            }
            t.elapsed().as_secs_f64() / n as f64
        })
        .collect();
    median(times)
}

/// What authorisation and single-use tickets add to one paid request, in server CPU seconds:
/// (MAC check, reload nonce minted, ticket rows written), measured over `work`'s headers and
/// on `store`'s channels, with store writes run on `server`, `concurrency` at once, and counted
/// by thread CPU.
fn authorization_cost(
    server: &tokio::runtime::Runtime,
    store: &Arc<dyn ChannelStore>,
    work: &[Vec<(String, Option<String>)>],
    concurrency: usize,
) -> (f64, f64, f64) {
    let sigs: Vec<PaymentSignature> = work
        .iter()
        .flatten()
        .filter_map(|(_, h)| h.as_deref())
        .map(|h| PaymentSignature::from_header(h).expect("a header the bench made"))
        .collect();
    let mut keys = std::collections::HashMap::new();
    let derive = per_call(1, |_| {
        black_box(PaymentKey::derive(
            &key(CLIENT),
            &sigs[0].accepted.pay_to,
            &sigs[0].payload.channel,
        ));
    });
    for sig in &sigs {
        keys.entry(sig.payload.channel).or_insert_with(|| {
            PaymentKey::derive(&key(CLIENT), &sig.accepted.pay_to, &sig.payload.channel)
        });
    }
    let checks = per_call(sigs.len(), |i| {
        let sig = &sigs[i % sigs.len()];
        assert!(keys[&sig.payload.channel].check(black_box(sig)));
    });
    // The server derives a channel's key once, at its first payment.
    let mac = checks + derive * keys.len() as f64 / sigs.len() as f64;

    let nonces = NonceKey::new([7; 32]);
    let url = &sigs[0].resource.url;
    let nonce = per_call(10_000, |i| {
        let mut random = [0u8; NONCE_RANDOM_LEN];
        getrandom::getrandom(&mut random).expect("randomness");
        black_box(nonces.issue(random, i as u64, url));
    });

    // A pre-armed charge writes two ticket rows: its ticket and the nonce it mints. The writes
    // go as the paid load sends them: `concurrency` channels at once, so that the store's group
    // commit batches them as it batched the paid path's.
    let mut channels: Vec<(Txid, StoredChannel)> = server
        .block_on(store.channels())
        .expect("channels")
        .into_iter()
        .filter_map(|stored| Some((stored.txid()?, stored)))
        .collect();
    let mut next_ticket = 0usize;
    let mut writes = |with_tickets: bool, rounds: usize| -> f64 {
        let cpu = thread_cpu("payee-");
        let mut n = 0;
        for _ in 0..rounds {
            for group in channels.chunks_mut(concurrency) {
                let names: Vec<[String; 2]> = group
                    .iter()
                    .map(|_| {
                        next_ticket += 1;
                        [
                            format!("bench-{next_ticket}"),
                            format!("bench-{next_ticket}-n"),
                        ]
                    })
                    .collect();
                let charged: Vec<Vec<ChargedTicket>> = names
                    .iter()
                    .map(|names| {
                        names
                            .iter()
                            .map(|ticket| ChargedTicket {
                                ticket,
                                resource: url,
                                price: Amount::from_sat(PRICE),
                            })
                            .collect()
                    })
                    .collect();
                let updates = group.iter().zip(&charged).map(|((txid, stored), charged)| {
                    store.update_channel(
                        txid,
                        stored.revision,
                        ChannelUpdate::new(
                            &stored.state,
                            &stored.state,
                            stored.ledger,
                            if with_tickets { charged } else { &[] },
                        ),
                    )
                });
                let revisions = server.block_on(futures::future::join_all(updates));
                for ((_, stored), revision) in group.iter_mut().zip(revisions) {
                    stored.revision = revision.expect("write");
                    n += 1;
                }
            }
        }
        (thread_cpu("payee-") - cpu) / n as f64
    };
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        with.push(writes(true, 2));
        without.push(writes(false, 2));
    }
    let tickets = (median(with) - median(without)).max(0.0);
    (mac, nonce, tickets)
}

fn main() {
    let channels = env("CHANNELS", 1_000);
    let payments = env("PAYMENTS", 100_000);
    let concurrency = env("CONCURRENCY", 64).min(channels);
    let per_channel = payments.div_ceil(channels);

    let bare = bare_verify_rate();
    println!("bare secp256k1 ECDSA verify: {bare:.0}/s on one core");

    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("payee-rt")
        .enable_all()
        .build()
        .expect("server runtime");
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("load")
        .enable_all()
        .build()
        .expect("load runtime");

    let mut stores: Vec<(&str, Arc<dyn ChannelStore>)> = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = server
        .block_on(SqliteStore::open(dir.path().join("payee.sqlite3")))
        .expect("sqlite");
    stores.push(("SQLite", Arc::new(sqlite)));
    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("TRICKLE_TEST_POSTGRES_URL") {
        let pg = server
            .block_on(trickle_payee::store::PostgresStore::connect(&url))
            .expect("postgres");
        stores.push(("PostgreSQL", Arc::new(pg)));
    }

    let mut rows = Vec::new();
    for (name, store) in stores {
        let payee = server.block_on(Server::start(store.clone()));
        let base = payee.url.clone();
        let work = load.block_on(prepare(&base, channels, per_channel, concurrency));
        // The contracts confirm before the measurement: a channel used this much is confirmed.
        for txid in payee.chain.broadcast_txids() {
            payee.chain.confirm(txid);
        }
        server
            .block_on(payee.payee.chain_duties())
            .expect("chain duties");
        let free: Vec<Vec<(String, Option<String>)>> = work
            .iter()
            .map(|conn| {
                conn.iter()
                    .map(|(path, _)| (path.replace("/articles/", "/free?"), None))
                    .collect()
            })
            .collect();
        let unpaid = load.block_on(measure(&format!("{name}, free page"), &base, free));
        let headers = work.clone();
        let paid = load.block_on(measure(&format!("{name}, paid"), &base, work));
        // After the paid run, so that its writes do not disturb it.
        let (mac, nonce, tickets) = authorization_cost(&server, &store, &headers, concurrency);
        report(&unpaid, bare);
        rows.extend(report(&paid, bare));
        let per_request = paid.server_cpu / paid.payments as f64;
        let extra = mac + nonce + tickets;
        println!(
            "{name}: authorisation per paid request: MAC check {:.2} us, reload nonce {:.2} us, \
             ticket rows {:.2} us = {:.2} us of {:.1} us ({:.1} %); paid path without it {:.1} us",
            mac * 1e6,
            nonce * 1e6,
            tickets * 1e6,
            extra * 1e6,
            per_request * 1e6,
            extra / per_request * 100.0,
            (per_request - extra) * 1e6,
        );
        rows.push(format!(
            "| payee {name}: authorisation and single-use tickets, server CPU per paid request | {:.2} µs | paid path {:.1} µs | {:.3} |",
            extra * 1e6,
            per_request * 1e6,
            extra / per_request
        ));
        // The floor of a paid request: what the server spends on a free one, and the
        // payment's one signature check.
        let free_request = unpaid.server_cpu / unpaid.payments as f64;
        let floor = free_request + 1.0 / bare;
        rows.push(format!(
            "| payee {name}: server CPU per paid request | {:.1} µs | free page {:.1} µs + bare verify {:.1} µs = {:.1} µs | {:.2} |",
            per_request * 1e6,
            free_request * 1e6,
            1e6 / bare,
            floor * 1e6,
            per_request / floor
        ));
        let (lp, lu) = (&paid.latencies, &unpaid.latencies);
        for (p, tag) in [(0.5, "p50"), (0.99, "p99")] {
            let (a, b) = (percentile(lp, p), percentile(lu, p));
            rows.push(format!(
                "| payee {name}: {tag} latency, {concurrency} connections, {channels} channels | {:.2} ms | free page {:.2} ms | {:.2} |",
                a.as_secs_f64() * 1e3,
                b.as_secs_f64() * 1e3,
                a.as_secs_f64() / b.as_secs_f64()
            ));
        }
        rows.push(format!(
            "| payee {name}: paid requests per second (wall, {} payments) | {:.0}/s | free page {:.0}/s | {:.2} |",
            paid.payments,
            paid.payments as f64 / paid.wall.as_secs_f64(),
            unpaid.payments as f64 / unpaid.wall.as_secs_f64(),
            (paid.payments as f64 / paid.wall.as_secs_f64())
                / (unpaid.payments as f64 / unpaid.wall.as_secs_f64()),
        ));
    }
    println!();
    println!("| figure | value | baseline | ratio |");
    println!("|---|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    trickle_testkit::bench_rows::append(&rows);
}
