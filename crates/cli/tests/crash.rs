//! Crash injection on the payer: `trickle fetch` over many priced pages is killed with SIGKILL at
//! random moments (seeded; `TRICKLE_CRASH_SEED` replays a run) — while it unlocks the wallet,
//! opens its channel, pays after a 402 or pre-armed — and run again for the pages it did not
//! print. After every run the test checks the wallet's stored channel against the payee's:
//!
//! * no double payment: the payee charged each page it served once (its consumed total is the
//!   price times the pages printed, plus at most the one page in flight per killed run), and the
//!   client's stored signed total ≥ the payee's ≥ what the client stored as acknowledged;
//! * no budget overrun: one channel, of at most `--budget`, and nothing signed beyond it;
//! * the refund still works: the payee stops answering, the chain passes the expiry, and
//!   `trickle refund` takes the channel's funds back; the wallet's balance adds up.

mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;

use bitcoin::{Network, Txid};
use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::Notify;
use trickle_regtest::{Config, Node};
use trickle_testkit::crash_seed::{seed, Rng};
use trickle_wallet::store::{SqliteStore as WalletStore, Store as _};
use trickle_wallet::ChannelRecord;

const PRICE: u64 = 10;
const BUDGET: u64 = 20_000;
/// Kills of `trickle fetch`; the first ones come while it opens the channel.
const KILLS: u32 = 16;
const OPEN_KILLS: u32 = 3;
/// Pages per run.
const PAGES: u32 = 40;
/// The channel's life, in blocks.
const EXPIRY_BLOCKS: u32 = 30;
/// Every wait gives up after this (a loaded machine is slow, not stuck).
const PATIENCE: Duration = Duration::from_secs(120);

/// When a run is killed.
enum Kill {
    /// This long after the run prints that it opens a channel (or completes an opening).
    AfterOpening(Duration),
    /// This long after the run starts.
    After(Duration),
    /// When the payee's trap holds the opening's `PROVIDE_CONTRACT` (see [`trap`]).
    Trapped(Arc<Notify>),
    /// Not at all.
    Never,
}

// Where the payee's trap holds the opening's `PROVIDE_CONTRACT` (the one session message of
// a v2 opening) while the test kills the payer.
const OPEN: u8 = 0;
/// Before the payee sees it: the payee never gets the contract.
const BEFORE: u8 = 1;
/// After the payee stored the channel, before the answer leaves.
const AFTER: u8 = 2;

/// A layer in front of the payee that holds the first `POST .../session/...` as `mode` says,
/// and tells `trapped`.
fn trap(mode: Arc<AtomicU8>, trapped: Arc<Notify>) -> impl FnOnce(Router) -> Router {
    move |app: Router| {
        app.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let (mode, trapped) = (mode.clone(), trapped.clone());
                async move {
                    let session = req.method() == axum::http::Method::POST
                        && req.uri().path().contains("/session/");
                    let how = if session {
                        mode.swap(OPEN, Ordering::SeqCst)
                    } else {
                        OPEN
                    };
                    if how == BEFORE {
                        trapped.notify_one();
                        std::future::pending::<()>().await;
                    }
                    let response = next.run(req).await;
                    if how == AFTER {
                        trapped.notify_one();
                        std::future::pending::<()>().await;
                    }
                    response
                }
            },
        ))
    }
}

/// How a run ended: what it printed and whether it was killed before it finished.
struct Run {
    stdout: String,
    stderr: String,
    killed: bool,
    success: bool,
    elapsed: Duration,
}

/// Runs `trickle fetch` on `urls` with the wallet in `dir`, killed as `kill` says.
async fn fetch(node: &Node, dir: &std::path::Path, urls: &[String], kill: Kill) -> Run {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_trickle"))
        .arg("fetch")
        .args(urls)
        .args(["--budget", &BUDGET.to_string(), "--max-price", "10"])
        .env("TRICKLE_DIR", dir)
        .env("TRICKLE_PASSWORD", PASSWORD)
        .env("TRICKLE_NETWORK", "regtest")
        .env("TRICKLE_ESPLORA", node.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("trickle runs");
    let mut stdout = child.stdout.take().expect("stdout");
    let stdout = tokio::spawn(async move {
        let mut out = String::new();
        stdout.read_to_string(&mut out).await.expect("stdout");
        out
    });
    // Stderr line by line: the "opening a channel" line is a moment to kill at.
    let (opening_tx, opening_rx) = tokio::sync::oneshot::channel::<()>();
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let stderr = tokio::spawn(async move {
        let mut opening_tx = Some(opening_tx);
        let mut all = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("opening") {
                if let Some(tx) = opening_tx.take() {
                    let _ = tx.send(());
                }
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let moment = async {
        match kill {
            Kill::AfterOpening(delay) => {
                if opening_rx.await.is_err() {
                    // The run ended without opening a channel.
                    return std::future::pending().await;
                }
                tokio::time::sleep(delay).await
            }
            Kill::After(delay) => tokio::time::sleep(delay).await,
            Kill::Trapped(trapped) => trapped.notified().await,
            Kill::Never => std::future::pending().await,
        }
    };
    let (status, killed) = tokio::time::timeout(PATIENCE, async {
        tokio::select! {
            status = child.wait() => (status.expect("wait"), false),
            () = moment => {
                child.start_kill().expect("kill");
                (child.wait().await.expect("wait"), true)
            }
        }
    })
    .await
    .expect("trickle finishes within the patience");
    Run {
        stdout: stdout.await.expect("stdout"),
        stderr: stderr.await.expect("stderr"),
        killed,
        success: status.success(),
        elapsed: started.elapsed(),
    }
}

/// The pages a run printed, in order from `first`: every body must be the next page's.
fn printed(stdout: &str, first: u32) -> u32 {
    let mut rest = stdout;
    let mut n = first;
    while !rest.is_empty() {
        let body = format!("article {n}");
        rest = rest
            .strip_prefix(&body)
            .unwrap_or_else(|| panic!("expected {body:?}, printed {rest:?}"));
        n += 1;
    }
    n - first
}

/// The wallet's channel records, read from its database as the next run will.
async fn wallet_channels(dir: &std::path::Path) -> Vec<ChannelRecord> {
    let store = trickle_wallet::layout::open(
        WalletStore::open(dir).expect("wallet store"),
        Network::Regtest,
    )
    .await
    .expect("layout");
    let mut out = Vec::new();
    for key in store.keys("channel/").await.expect("keys") {
        let bytes = store.get(&key).await.expect("get").expect("record");
        out.push(serde_json::from_slice(&bytes).expect("record"));
    }
    out
}

/// Checks the wallet against the payee after a run; `printed` pages were printed in all, by
/// runs of which `killed` were killed. Returns the channel's contract, once there is one.
async fn check(
    wallet: &std::path::Path,
    site: &str,
    payee: &std::path::Path,
    printed: u64,
    killed: u64,
    when: &str,
) -> Option<Txid> {
    let records: Vec<_> = wallet_channels(wallet)
        .await
        .into_iter()
        .filter(|r| r.site == site)
        .collect();
    let stored = stored_channels(payee).await;
    assert!(records.len() <= 1, "{when}: one channel record per site");
    // No budget overrun: every channel the payee knows is the wallet's one channel, within
    // the budget, and nothing is signed beyond its value.
    let locked: u64 = stored
        .iter()
        .filter_map(|c| c.state.channel())
        .map(|c| c.funding.contract.value.to_sat())
        .sum();
    assert!(
        locked <= BUDGET,
        "{when}: {locked} sat locked with the site, budget {BUDGET} ({} channels)",
        stored.len()
    );
    assert!(
        stored.len() <= 1,
        "{when}: {} channels opened",
        stored.len()
    );
    let Some(record) = records.first() else {
        assert!(stored.is_empty(), "{when}: a channel the wallet lost");
        return None;
    };
    let Some(client) = record.state.state.committed_channel() else {
        // Opening: nothing handed over yet.
        assert!(stored.is_empty(), "{when}: {}", record.state.state.name());
        return None;
    };
    let value = client.funding.contract.value.to_sat();
    let signed = client.paid().to_sat();
    let acked = client.acknowledged.to_sat();
    assert!(
        value <= BUDGET,
        "{when}: channel of {value}, budget {BUDGET}"
    );
    assert!(signed <= value, "{when}: signed {signed} of {value}");
    let Some(channel) = stored.first() else {
        // The contract was handed over but the payee never got it.
        assert_eq!(
            acked, 0,
            "{when}: acknowledged by a payee without the channel"
        );
        return Some(client.contract_txid());
    };
    assert_eq!(channel.txid(), Some(client.contract_txid()), "{when}");
    let (paid, consumed) = (
        channel.ledger.paid.to_sat(),
        channel.ledger.consumed.to_sat(),
    );
    assert!(
        signed >= paid && paid >= acked,
        "{when}: client signed {signed} ≥ payee holds {paid} ≥ client acknowledged {acked}"
    );
    assert!(consumed <= paid, "{when}: consumed {consumed} of {paid}");
    // No page charged twice: each page printed was charged once; a killed run may have had a
    // page charged and not printed (it is fetched again by the next run).
    assert!(
        consumed >= printed * PRICE && consumed <= (printed + killed) * PRICE,
        "{when}: consumed {consumed} for {printed} pages printed, {killed} runs killed"
    );
    Some(client.contract_txid())
}

/// Runs `trickle fetch` of `pages` articles at `url`, killed as `kill` says; returns how many
/// pages it printed and whether it was killed.
async fn fetch_pages(
    node: &Node,
    wallet: &std::path::Path,
    url: &str,
    pages: std::ops::Range<u32>,
    kill: Kill,
) -> (u32, Run) {
    let first = pages.start;
    let urls: Vec<String> = pages.map(|n| format!("{url}/articles/{n}")).collect();
    let run = fetch(node, wallet, &urls, kill).await;
    (printed(&run.stdout, first), run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payer_killed_at_random_never_pays_twice_nor_beyond_its_budget_and_can_refund() {
    let started = Instant::now();
    let mut rng = Rng(seed());
    let node = Node::start(Config::default()).await.expect("node");
    let site = static_site().await;
    // Two sites, each with its payee: 127.0.0.1 and localhost (a channel per site).
    let (dir1, dir2) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (mode1, mode2) = (Arc::new(AtomicU8::new(OPEN)), Arc::new(AtomicU8::new(OPEN)));
    let (trapped1, trapped2) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let payee1 = PayeeProcess::start(
        &node,
        &site,
        policy(&[2], EXPIRY_BLOCKS),
        dir1.path(),
        "127.0.0.1:0",
        trap(mode1.clone(), trapped1.clone()),
    )
    .await;
    let payee2 = PayeeProcess::start(
        &node,
        &site,
        policy(&[2], EXPIRY_BLOCKS),
        dir2.path(),
        "127.0.0.1:0",
        trap(mode2.clone(), trapped2.clone()),
    )
    .await;
    let url1 = payee1.url.clone();
    let url2 = payee2.url.replace("127.0.0.1", "localhost");
    let wallet = funded_wallet(&node).await;
    let w = wallet.path();

    // Killed while opening, after the payee stored the channel and before its answer: the
    // next run resumes the channel by its id and pays over it.
    mode2.store(AFTER, Ordering::SeqCst);
    let (pages, run) = fetch_pages(&node, w, &url2, 0..10, Kill::Trapped(trapped2)).await;
    assert!(run.killed && pages == 0, "{}", run.stderr);
    check(w, &url2, dir2.path(), 0, 1, "killed after the payee opened").await;
    let (pages, run) = fetch_pages(&node, w, &url2, 0..10, Kill::Never).await;
    assert!(run.success, "{}", run.stderr);
    assert!(
        run.stderr.contains("completing the opening"),
        "{}",
        run.stderr
    );
    assert_eq!(pages, 10);
    let contract2 = check(w, &url2, dir2.path(), 10, 1, "after the resumed open")
        .await
        .expect("a channel");

    // Killed while opening, before the payee got the contract: the next run hands it over.
    mode1.store(BEFORE, Ordering::SeqCst);
    let (pages, run) = fetch_pages(&node, w, &url1, 0..10, Kill::Trapped(trapped1)).await;
    assert!(run.killed && pages == 0, "{}", run.stderr);
    check(
        w,
        &url1,
        dir1.path(),
        0,
        1,
        "killed before the payee opened",
    )
    .await;

    // Then killed at random moments: while it unlocks the wallet, opens, pays after a 402 or
    // pre-armed. The first kills come shortly after a run says it is opening.
    let (mut next, mut printed_total, mut killed_runs, mut kills) = (0u32, 0u64, 1u64, 2u32);
    let mut open_attempts = 0;
    // Runs that finished an interrupted opening, and payments of a difference after a 402.
    let (mut completed_opens, mut paid_differences) = (0, 0);
    // How long a whole run takes, once one has finished.
    let mut run_time = Duration::from_secs(2);
    let mut runs = 0;
    let contract1 = loop {
        let kill = if kills == KILLS {
            Kill::Never
        } else if open_attempts < OPEN_KILLS {
            open_attempts += 1;
            Kill::AfterOpening(Duration::from_millis(rng.below(300)))
        } else {
            Kill::After(Duration::from_millis(
                rng.below(run_time.as_millis() as u64),
            ))
        };
        let (pages, run) = fetch_pages(&node, w, &url1, next..next + PAGES, kill).await;
        runs += 1;
        completed_opens += run.stderr.matches("completing the opening").count();
        paid_differences += run.stderr.matches("the payee had less credit").count();
        next += pages;
        printed_total += u64::from(pages);
        if run.killed {
            kills += 1;
            killed_runs += 1;
        } else {
            assert!(run.success, "run {runs} failed: {}", run.stderr);
            assert_eq!(pages, PAGES, "run {runs} printed every page");
            run_time = run.elapsed;
        }
        let when = format!(
            "after run {runs} ({}, {pages} pages printed)",
            if run.killed { "killed" } else { "finished" }
        );
        let contract = check(w, &url1, dir1.path(), printed_total, killed_runs, &when).await;
        if kills == KILLS && !run.killed {
            break contract.expect("a channel");
        }
    };
    node.mine(1).await.expect("mined");
    for contract in [contract1, contract2] {
        assert!(
            node.confirmation_height(&contract).is_some(),
            "contract {contract} confirmed"
        );
    }

    // The localhost payee closes its channel; the 127.0.0.1 one stops answering and the
    // channel's funds come back by the refund after expiry.
    let settlement: Txid = trickle(node.url(), w, &["close", &url2])
        .await
        .trim()
        .parse()
        .expect("settlement txid");
    payee1.kill();
    let record = wallet_channels(w)
        .await
        .into_iter()
        .find(|r| r.site == url1)
        .expect("a channel");
    let channel = record
        .state
        .state
        .committed_channel()
        .expect("open")
        .clone();
    let expiry = channel.funding.contract.expiry.to_consensus_u32();
    let none = trickle(node.url(), w, &["refund"]).await;
    assert!(
        none.trim().is_empty(),
        "nothing to refund before expiry: {none}"
    );
    let height = node.height();
    node.mine(expiry.saturating_sub(height) + 1)
        .await
        .expect("mined");
    let refund: Txid = trickle(node.url(), w, &["refund"])
        .await
        .trim()
        .parse()
        .expect("one refund txid");
    node.mine(1).await.expect("mined");
    for txid in [settlement, refund] {
        assert!(
            node.confirmation_height(&txid).is_some(),
            "{txid} confirmed"
        );
    }
    let refund_tx = node.transaction(&refund).expect("refund");
    assert_eq!(refund_tx.input[0].previous_output.txid, contract1);
    let table = trickle(node.url(), w, &["channels"]).await;
    assert_eq!(channel_row(&table, &url1).0, "Refunded");
    assert_eq!(channel_row(&table, &url2).0, "Closed");
    // The balance adds up: the funding, less the fees of both contracts and of the refund, and
    // less what the localhost channel paid (its payee pays the settlement's fee); the
    // 127.0.0.1 payee never settled, so what was paid over its channel comes back.
    let balance = trickle(node.url(), w, &["wallet", "balance"]).await;
    let confirmed: u64 = balance
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("balance");
    let paid2 = stored_channels(dir2.path())
        .await
        .first()
        .expect("the localhost channel")
        .ledger
        .paid
        .to_sat();
    let tx = |txid: &Txid| node.transaction(txid).expect("transaction");
    let fees =
        fee_of(&node, &tx(&contract1)) + fee_of(&node, &tx(&contract2)) + fee_of(&node, &refund_tx);
    assert_eq!(
        confirmed,
        500_000 - fees - paid2,
        "500,000 funded, fees {fees}, paid {paid2} to localhost: {balance}"
    );
    eprintln!(
        "{kills} kills in {} runs ({completed_opens} completed an interrupted opening, \
         {paid_differences} paid a difference after a 402), {printed_total} pages printed at \
         127.0.0.1, channel of {} sat, signed {} sat, in {:.1?}",
        runs + 3,
        channel.funding.contract.value.to_sat(),
        channel.paid().to_sat(),
        started.elapsed()
    );
}

/// A layer in front of the payee that, once `armed`, lets the next paid request be charged
/// and stored, then holds its answer and tells `trapped`: the payee is then killed with the
/// charge stored and the answer never sent.
fn hold_paid_answer(armed: Arc<AtomicU8>, trapped: Arc<Notify>) -> impl FnOnce(Router) -> Router {
    move |app: Router| {
        app.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let (armed, trapped) = (armed.clone(), trapped.clone());
                async move {
                    let paid = req
                        .headers()
                        .contains_key(trickle_channel::http::PAYMENT_SIGNATURE);
                    let hold = paid && armed.swap(0, Ordering::SeqCst) == 1;
                    let response = next.run(req).await;
                    if hold {
                        trapped.notify_one();
                        std::future::pending::<()>().await;
                    }
                    response
                }
            },
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_killed_after_charging_and_before_answering_charges_once_and_the_page_arrives() {
    let node = Node::start(Config::default()).await.expect("node");
    let site = static_site().await;
    let dir = tempfile::tempdir().expect("dir");
    let (armed, trapped) = (Arc::new(AtomicU8::new(0)), Arc::new(Notify::new()));
    let payee = PayeeProcess::start(
        &node,
        &site,
        policy(&[2], 144),
        dir.path(),
        "127.0.0.1:0",
        hold_paid_answer(armed.clone(), trapped.clone()),
    )
    .await;
    let url = payee.url.clone();
    let wallet = funded_wallet(&node).await;
    let w = wallet.path().to_owned();
    let first = trickle(node.url(), &w, &["fetch", &format!("{url}/articles/1")]).await;
    assert!(first.contains("article 1"), "{first}");
    let consumed = |channels: Vec<trickle_payee::store::StoredChannel>| {
        channels
            .iter()
            .map(|c| c.ledger.consumed.to_sat())
            .sum::<u64>()
    };
    assert_eq!(consumed(stored_channels(dir.path()).await), PRICE);

    // The next paid request is charged and stored; the payee dies before it answers.
    armed.store(1, Ordering::SeqCst);
    let run = {
        let (node_url, w, page) = (
            node.url().to_owned(),
            w.clone(),
            format!("{url}/articles/2"),
        );
        tokio::spawn(async move { run_trickle(&node_url, &w, &["fetch", &page]).await })
    };
    tokio::time::timeout(PATIENCE, trapped.notified())
        .await
        .expect("the paid request reached the payee");
    assert_eq!(
        consumed(stored_channels(dir.path()).await),
        2 * PRICE,
        "the charge was stored before the payee died"
    );
    payee.kill();
    let addr = url.trim_start_matches("http://").to_owned();
    let _restarted =
        PayeeProcess::start(&node, &site, policy(&[2], 144), dir.path(), &addr, |app| {
            app
        })
        .await;

    // The payer sent the same header again, and got the page without a second charge.
    let out = run.await.expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("article 2"));
    assert!(stderr.contains("sending the request again"), "{stderr}");
    assert_eq!(consumed(stored_channels(dir.path()).await), 2 * PRICE);
}
