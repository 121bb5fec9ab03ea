//! End to end on a local chain validated by Bitcoin Core's kernel: the `trickle` binary pays a
//! static site behind the payee proxy over v2 and v1 channels, both sides agree on what was
//! paid, the settlement confirms and pays what the receipts say; and when the payee vanishes,
//! `trickle refund` takes the funds back after expiry.

mod common;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use bitcoin::{Amount, Network, Txid};
use common::*;
use trickle_regtest::{Config, Node};
use trickle_testkit::keys::{key, pubkey};
use trickle_wallet::PREPAID_REQUESTS;

async fn pay_many_and_close(versions: &[u8], fetches: u32) {
    let node = Node::start(Config::default()).await.expect("node");
    let site = static_site().await;
    let payee_dir = tempfile::tempdir().expect("dir");
    let (payee, url) = proxy(&node, &site, policy(versions, 144), payee_dir.path()).await;
    let wallet = funded_wallet(&node).await;
    let w = wallet.path();

    // Free pages pass straight through.
    assert_eq!(
        trickle(node.url(), w, &["fetch", &format!("{url}/")]).await,
        "home"
    );
    // The first priced page opens a channel and pays; the rest pay over it.
    for n in 0..=fetches {
        let body = trickle(node.url(), w, &["fetch", &format!("{url}/articles/{n}")]).await;
        assert_eq!(body, format!("article {n}"));
    }
    // Many pages in one run: after the first, each request carries its payment up front
    // (pre-armed), so none needs a 402 round trip.
    let urls: Vec<String> = (1000..1000 + fetches)
        .map(|n| format!("{url}/articles/{n}"))
        .collect();
    let mut args = vec!["fetch"];
    args.extend(urls.iter().map(String::as_str));
    let (bodies, progress) = trickle_output(node.url(), w, &args).await;
    let expected: String = (1000..1000 + fetches)
        .map(|n| format!("article {n}"))
        .collect();
    assert_eq!(bodies, expected);
    // Only the first page of the run was asked for payment (before the wallet was unlocked).
    assert_eq!(progress.matches("paying").count(), 1, "{progress}");
    let (state, value, paid, credit) =
        channel_row(&trickle(node.url(), w, &["channels"]).await, &url);
    assert_eq!(state, "Ready");
    assert_eq!(value, 50_000);
    // The first payment is the payee's minimum (1,000 sat, of which the first page took 10 and
    // the rest stayed credit for the next pages); 10 sat per page after the credit ran out.
    let consumed = 10 * u64::from(2 * fetches + 1);
    assert_eq!(paid - credit, consumed, "paid {paid}, credit {credit}");
    // Once the credit ran out, each payment paid PREPAID_REQUESTS pages ahead.
    let ahead = 10 * PREPAID_REQUESTS;
    assert!(
        paid >= consumed.max(1_000) && paid <= consumed.max(1_000) + ahead,
        "never more than the pages and the first payment, and the pages paid ahead: {paid}"
    );
    let stored = payee.store().channels().await.expect("stored channels");
    let [channel] = stored.as_slice() else {
        panic!("one channel stored, got {}", stored.len())
    };
    let server_paid = channel.state.channel().expect("open").paid();
    assert_eq!(
        server_paid.to_sat(),
        paid,
        "the payee holds what the client signed"
    );

    // Close: the payee broadcasts the settlement, the chain confirms it.
    let txid: Txid = trickle(node.url(), w, &["close", &url])
        .await
        .trim()
        .parse()
        .expect("txid");
    node.mine(1).await.expect("mined");
    assert!(
        node.confirmation_height(&txid).is_some(),
        "settlement confirmed"
    );
    let settlement = node.transaction(&txid).expect("settlement");
    assert_eq!(
        settlement.output[0].value.to_sat(),
        value - paid,
        "client change"
    );
    let fee = value
        - settlement
            .output
            .iter()
            .map(|o| o.value.to_sat())
            .sum::<u64>();
    assert_eq!(
        settlement.output[1].value.to_sat() + fee,
        paid,
        "payee's share"
    );
    // A closed channel shows what its settlement paid the payee, its fee included.
    let (state, _, settled, _) = channel_row(&trickle(node.url(), w, &["channels"]).await, &url);
    assert_eq!((state.as_str(), settled), ("Closed", paid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_channel_pays_a_hundred_pages_and_settles() {
    pay_many_and_close(&[2, 1], 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_channel_pays_and_settles() {
    pay_many_and_close(&[1], 20).await;
}

// How the hostile channel endpoint of `hostile_close` answers session messages.
const HONEST: u8 = 0;
const REFUSES: u8 = 1;
const CHEATS: u8 = 2;
const BREAKS: u8 = 3;

/// A channel endpoint that answers session messages as `mode` says: an `ERROR`, a settlement
/// that takes the client's change, or an HTTP 500 with no message.
fn hostile_close(mode: Arc<std::sync::atomic::AtomicU8>) -> impl FnOnce(Router) -> Router {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use trickle_channel::{Close, ErrorCode, ErrorMessage, WireMessage};
    move |app: Router| {
        app.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let mode = mode.load(std::sync::atomic::Ordering::SeqCst);
                async move {
                    let path = req.uri().path().to_owned();
                    let Some(session) = path.strip_prefix("/.well-known/trickle/channel/session/")
                    else {
                        return next.run(req).await;
                    };
                    let reply = |status, msg: WireMessage| {
                        let body = format!(r#"{{"messages":["{}"]}}"#, msg.to_base64url());
                        (status, [("content-type", "application/json")], body).into_response()
                    };
                    match mode {
                        REFUSES => reply(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            WireMessage::Error(ErrorMessage {
                                code: ErrorCode::Other,
                                explanation: "not closing today".into(),
                                expected_value: None,
                            }),
                        ),
                        CHEATS => {
                            // Spends the contract (whichever output it is) and pays everything
                            // elsewhere: the client's change is missing.
                            let contract: Txid = session.parse().expect("contract txid");
                            let input = |vout| bitcoin::TxIn {
                                previous_output: bitcoin::OutPoint::new(contract, vout),
                                ..Default::default()
                            };
                            let output = bitcoin::TxOut {
                                value: Amount::from_sat(1_000),
                                script_pubkey: bitcoin::ScriptBuf::new_op_return([]),
                            };
                            let settlement = bitcoin::Transaction {
                                version: bitcoin::transaction::Version::TWO,
                                lock_time: bitcoin::absolute::LockTime::ZERO,
                                input: vec![input(0), input(1)],
                                output: vec![output.clone(), output],
                            };
                            reply(
                                StatusCode::OK,
                                WireMessage::Close(Close {
                                    settlement: Some(settlement),
                                }),
                            )
                        }
                        BREAKS => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
                        _ => next.run(req).await,
                    }
                }
            },
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_after_the_payee_refuses_to_close_and_vanishes() {
    let node = Node::start(Config::default()).await.expect("node");
    let site = static_site().await;
    let payee_dir = tempfile::tempdir().expect("dir");
    let mode = Arc::new(std::sync::atomic::AtomicU8::new(HONEST));
    let payee = PayeeProcess::start(
        &node,
        &site,
        policy(&[2], 20),
        payee_dir.path(),
        "127.0.0.1:0",
        hostile_close(mode.clone()),
    )
    .await;
    let wallet = funded_wallet(&node).await;
    let w = wallet.path();
    let url = payee.url.clone();
    trickle(
        node.url(),
        w,
        &["fetch", &format!("{}/articles/1", payee.url)],
    )
    .await;
    node.mine(1).await.expect("contract confirmed");
    let row = |table: &str| {
        let (state, value, paid, _) = channel_row(table, &url);
        (state, value, paid, channel_txid(table, &url))
    };
    let (_, value, paid, contract) = row(&trickle(node.url(), w, &["channels"]).await);
    assert_eq!((value, paid), (50_000, 1_000));

    // The payee refuses to close, in three ways: an ERROR, a settlement that does not pay
    // the client its change, an answer that is no answer. Each time the client says so
    // clearly, signs nothing and keeps the channel.
    for (how, expected) in [
        (REFUSES, "peer refused (Other): not closing today"),
        (CHEATS, "bad settlement: does not pay the client its change"),
        (BREAKS, "status 500"),
    ] {
        mode.store(how, std::sync::atomic::Ordering::SeqCst);
        let err = trickle_fails(node.url(), w, &["close", &url]).await;
        assert!(
            err.contains(&format!("the payee did not close the channel with {url}")),
            "{err}"
        );
        assert!(err.contains(expected), "{err}");
        assert!(
            err.contains("`trickle refund` takes its funds back"),
            "{err}"
        );
        assert_eq!(
            row(&trickle(node.url(), w, &["channels"]).await),
            ("Ready".to_owned(), value, paid, contract),
            "the channel is kept as it was, open"
        );
    }
    // Then the payee stops altogether (and its chain duties never run): closing fails too.
    payee.kill();
    let err = trickle_fails(node.url(), w, &["close", &url]).await;
    assert!(
        err.contains(&format!("the payee did not close the channel with {url}")),
        "{err}"
    );
    assert!(err.contains("channel endpoint: "), "{err}");

    // Nothing to refund before expiry.
    let none = trickle(node.url(), w, &["refund"]).await;
    assert!(none.trim().is_empty(), "{none}");
    // The fee market rises above the rate the contract paid (the quiet chain's) and the
    // chain passes the expiry: the channel is flagged, and the refund, at the chain's
    // estimate, takes everything back.
    node.set_fee_market(3, 0);
    node.mine(20).await.expect("mined");
    let table = trickle(node.url(), w, &["channels"]).await;
    let flagged = table.lines().find(|l| l.starts_with(&url));
    assert!(
        flagged.is_some_and(|l| l.contains(" overdue ")),
        "the settlement is overdue:\n{table}"
    );
    let txid: Txid = trickle(node.url(), w, &["refund"])
        .await
        .trim()
        .parse()
        .expect("one refund txid");
    let fee = value
        - node.transaction(&txid).expect("refund").output[0]
            .value
            .to_sat();
    assert!(fee >= 3 * node.transaction(&txid).expect("refund").vsize() as u64);
    node.mine(1).await.expect("mined");
    assert!(
        node.confirmation_height(&txid).is_some(),
        "refund confirmed"
    );
    let refund = node.transaction(&txid).expect("refund");
    assert_eq!(refund.input[0].previous_output.txid, contract);
    let (state, ..) = channel_row(&trickle(node.url(), w, &["channels"]).await, &url);
    assert_eq!(state, "Refunded");
    let balance = trickle(node.url(), w, &["wallet", "balance"]).await;
    let confirmed: u64 = balance
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("balance");
    // The payee never settled, so even the first payment (1,000 sat) comes back: all but the
    // contract's and the refund's fees.
    assert!(confirmed > 500_000 - 1_000, "{balance}");
    assert!(confirmed < 500_000, "{balance}");
}

/// A local chain, the payee process in front of a static site (v2 channels of 20 blocks), and a
/// funded wallet that has paid `/articles/1` over a channel whose contract is in a block.
struct OnePaidChannel {
    node: Node,
    payee: PayeeProcess,
    wallet: tempfile::TempDir,
    _payee_dir: tempfile::TempDir,
}

impl OnePaidChannel {
    async fn open() -> Self {
        let node = Node::start(Config::default()).await.expect("node");
        let site = static_site().await;
        let payee_dir = tempfile::tempdir().expect("dir");
        let payee = PayeeProcess::start(
            &node,
            &site,
            policy(&[2], 20),
            payee_dir.path(),
            "127.0.0.1:0",
            |router| router,
        )
        .await;
        let wallet = funded_wallet(&node).await;
        let page = format!("{}/articles/1", payee.url);
        trickle(node.url(), wallet.path(), &["fetch", &page]).await;
        node.mine(1).await.expect("contract confirmed");
        Self {
            node,
            payee,
            wallet,
            _payee_dir: payee_dir,
        }
    }
}

/// Issue 20: a settlement taken out of the chain by a reorganisation, and forgotten by the
/// network, before the CLI saw it: `trickle channels` shows the channel `Closing` again and
/// broadcasts the settlement it kept from the payee's `CLOSE` (the payee is gone, its duties
/// with it), which confirms; the record ends `Closed` by that settlement.
#[tokio::test]
async fn a_settlement_reorganised_out_is_rebroadcast_by_the_cli_and_its_record_ends_closed() {
    let paid = OnePaidChannel::open().await;
    let (node, w) = (&paid.node, paid.wallet.path());
    let url = paid.payee.url.clone();
    let settlement: Txid = trickle(node.url(), w, &["close", &url])
        .await
        .trim()
        .parse()
        .expect("txid");
    paid.payee.kill();
    node.mine(1).await.expect("mined");
    assert!(node.confirmation_height(&settlement).is_some());
    node.reorg(1, vec![settlement]).await.expect("reorganised");
    assert!(!node.in_mempool(&settlement) && node.confirmation_height(&settlement).is_none());

    let (state, ..) = channel_row(&trickle(node.url(), w, &["channels"]).await, &url);
    assert_eq!(
        state, "Closing",
        "not closed by a settlement out of the chain"
    );
    assert!(node.in_mempool(&settlement), "the CLI broadcast it again");
    node.mine(1).await.expect("mined");
    let table = trickle(node.url(), w, &["channels"]).await;
    let (state, ..) = channel_row(&table, &url);
    assert_eq!(state, "Closed", "{table}");
    assert!(node.confirmation_height(&settlement).is_some());
}

/// `trickle duties`, the extension's round of channel duties for cron: a channel is left to its
/// payee until `CLOSE_MARGIN_BLOCKS` before its expiry (the payee's own margin is smaller
/// here), then the payee is asked to close it; the next round sees the settlement in a block
/// and the record ends closed, with nothing refunded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duties_ask_the_payee_to_close_near_the_expiry_and_the_record_ends_closed() {
    let paid = OnePaidChannel::open().await;
    let (node, w) = (&paid.node, paid.wallet.path());
    let url = paid.payee.url.clone();
    let expiry = channel_expiry(&trickle(node.url(), w, &["channels"]).await, &url);
    let margin = u32::try_from(trickle_wallet::CLOSE_MARGIN_BLOCKS).expect("small");

    node.mine(expiry - margin - 1 - node.height())
        .await
        .expect("mined");
    let (refunds, said) = trickle_output(node.url(), w, &["duties"]).await;
    assert!(!said.contains("closed by"), "too early to ask: {said}");
    assert_eq!(refunds, "");
    assert_eq!(
        channel_row(&trickle(node.url(), w, &["channels"]).await, &url).0,
        "Ready"
    );

    node.mine(1).await.expect("mined");
    let (_, said) = trickle_output(node.url(), w, &["duties"]).await;
    let settlement: Txid = said
        .split("closed by ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the payee was asked to close: {said}"))
        .parse()
        .expect("a txid");
    assert!(node.in_mempool(&settlement), "broadcast");

    node.mine(1).await.expect("mined");
    let (refunds, said) = trickle_output(node.url(), w, &["duties"]).await;
    assert!(said.contains(&format!("settled by {settlement}")), "{said}");
    assert_eq!(refunds, "", "nothing refunded");
    assert_eq!(
        channel_row(&trickle(node.url(), w, &["channels"]).await, &url).0,
        "Closed"
    );
}

/// The real payee refuses a close whose share cannot pay the settlement's fee (a first payment
/// of 10 sat): the channel stays open on both sides, the next pages pay over it, and once they
/// cover the fee the close goes through and confirms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_the_payee_refuses_leaves_the_channel_payable() {
    let node = Node::start(Config::default()).await.expect("node");
    let site = static_site().await;
    let payee_dir = tempfile::tempdir().expect("dir");
    let small_first_payment = trickle_channel::PayeePolicy {
        min_payment: Amount::from_sat(10),
        ..policy(&[2], 144)
    };
    let (payee, url) = proxy(&node, &site, small_first_payment, payee_dir.path()).await;
    let wallet = funded_wallet(&node).await;
    let w = wallet.path();
    trickle(node.url(), w, &["fetch", &format!("{url}/articles/0")]).await;
    let (_, _, paid, _) = channel_row(&trickle(node.url(), w, &["channels"]).await, &url);
    assert_eq!(paid, 10);

    let err = trickle_fails(node.url(), w, &["close", &url]).await;
    assert!(
        err.contains("close fee exceeds the server's share"),
        "{err}"
    );
    assert!(err.contains("it still pays the site"), "{err}");
    let (state, ..) = channel_row(&trickle(node.url(), w, &["channels"]).await, &url);
    assert_eq!(
        state, "Ready",
        "the client agrees with the payee: the channel is open"
    );
    let stored = payee.store().channels().await.expect("stored");
    assert!(
        matches!(stored[0].state, trickle_channel::PayeeState::Ready { .. }),
        "the payee kept it open"
    );

    // The next pages pay over the same channel.
    let urls: Vec<String> = (1..=100).map(|n| format!("{url}/articles/{n}")).collect();
    let mut args = vec!["fetch"];
    args.extend(urls.iter().map(String::as_str));
    let (bodies, _) = trickle_output(node.url(), w, &args).await;
    assert!(bodies.ends_with("article 100"), "{bodies}");
    let (state, _, paid, _) = channel_row(&trickle(node.url(), w, &["channels"]).await, &url);
    assert_eq!(state, "Ready");
    assert!(paid >= 10 * 101, "{paid}");
    let stored = payee.store().channels().await.expect("stored");
    assert_eq!(stored.len(), 1, "no second channel");
    assert_eq!(
        stored[0].state.channel().expect("open").paid().to_sat(),
        paid
    );

    // Now the share pays the fee: the close goes through and confirms.
    let txid: Txid = trickle(node.url(), w, &["close", &url])
        .await
        .trim()
        .parse()
        .expect("txid");
    node.mine(1).await.expect("mined");
    assert!(
        node.confirmation_height(&txid).is_some(),
        "settlement confirmed"
    );
    let (state, _, settled, _) = channel_row(&trickle(node.url(), w, &["channels"]).await, &url);
    assert_eq!((state.as_str(), settled), ("Closed", paid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sites_get_nothing() {
    let node = Node::start(Config::default()).await.expect("node");
    let site = static_site().await;
    let payee_dir = tempfile::tempdir().expect("dir");
    let (_payee, url) = proxy(&node, &site, policy(&[2], 144), payee_dir.path()).await;
    let wallet = funded_wallet(&node).await;
    let w = wallet.path();
    let article = format!("{url}/articles/1");

    // A price above the limit: refused before any channel is opened.
    let err = trickle_fails(node.url(), w, &["fetch", &article, "--max-price", "5"]).await;
    // In sat, as the flags take them, with the flag that decides.
    assert!(
        err.contains(
            "the price of 10 sat is above the max price of 5 sat per request; raise --max-price"
        ),
        "{err}"
    );
    // A budget below the site's minimum channel: refused too.
    let err = trickle_fails(node.url(), w, &["fetch", &article, "--budget", "5000"]).await;
    assert!(
        err.contains(
            "5000 sat to lock is below the site's minimum channel of 10000 sat; raise --budget"
        ),
        "{err}"
    );
    let table = trickle(node.url(), w, &["channels"]).await;
    assert_eq!(table.lines().count(), 1, "no channel opened:\n{table}");

    // An offer for another network is not paid.
    let mut signet = trickle_channel::http::PaymentRequired {
        x402_version: 2,
        error: None,
        resource: trickle_channel::http::Resource {
            url: "http://127.0.0.1/".into(),
            description: String::new(),
            mime_type: String::new(),
        },
        accepts: vec![],
    };
    let payee_key = pubkey(&key(9));
    signet
        .accepts
        .push(trickle_channel::http::PaymentRequirements {
            scheme: trickle_channel::http::SCHEME.into(),
            network: trickle_channel::http::caip2(Network::Signet),
            amount: Amount::from_sat(10),
            asset: trickle_channel::http::asset(&trickle_channel::http::caip2(Network::Signet)),
            pay_to: payee_key,
            max_timeout_seconds: 60,
            extra: trickle_channel::http::ChannelTerms {
                endpoint: format!("{url}/.well-known/trickle/channel"),
                versions: vec![2],
                min_channel_value: Amount::from_sat(10_000),
                max_channel_value: Amount::from_sat(100_000),
                min_payment: Amount::from_sat(1_000),
                max_expiry_blocks: 144,
                nonce: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
                channel_state: None,
            },
        });
    let header = signet.to_header();
    let wrong_network = serve(Router::new().route(
        "/",
        get(move || {
            let header = header.clone();
            async move {
                (
                    axum::http::StatusCode::PAYMENT_REQUIRED,
                    [("payment-required", header)],
                    "pay me",
                )
            }
        }),
    ))
    .await;
    let err = trickle_fails(node.url(), w, &["fetch", &format!("{wrong_network}/")]).await;
    assert!(err.contains("no channel payment on regtest"), "{err}");

    // A channel with the site; then another payee, with another key, on another port of the
    // same host: another site (an origin), so its own channel, and neither is refused.
    trickle(node.url(), w, &["fetch", &article]).await;
    let other_dir = tempfile::tempdir().expect("dir");
    let (_other, other_url) =
        proxy_with_seed(&node, &site, policy(&[2], 144), other_dir.path(), [43; 32]).await;
    trickle(
        node.url(),
        w,
        &["fetch", &format!("{other_url}/articles/2")],
    )
    .await;
    let table = trickle(node.url(), w, &["channels"]).await;
    assert_ne!(channel_txid(&table, &url), channel_txid(&table, &other_url));
    let (_, value, paid, _) = channel_row(&table, &url);
    assert_eq!((value, paid), (50_000, 1_000), "nothing more was signed");
}

/// Fetches `/articles/{n}` for `pages` from the site at `url` in one `trickle fetch` run.
async fn fetch_articles(
    node: &Node,
    wallet: &std::path::Path,
    url: &str,
    pages: std::ops::Range<u32>,
) -> std::process::Output {
    let urls: Vec<String> = pages.map(|n| format!("{url}/articles/{n}")).collect();
    let mut args = vec!["fetch"];
    args.extend(urls.iter().map(String::as_str));
    run_trickle(node.url(), wallet, &args).await
}

/// The bodies of `/articles/{n}` for `pages`, as `trickle fetch` prints them.
fn articles(pages: std::ops::Range<u32>) -> String {
    pages.map(|n| format!("article {n}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_restart_mid_stream_resumes_the_channel_and_charges_nothing_twice() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let node = Node::start(Config::default()).await.expect("node");
    let site = static_site().await;
    let payee_dir = tempfile::tempdir().expect("dir");
    // A kill switch in front of the payee: once armed, a request for `/articles/104` never
    // reaches it, and the test kills the payee while that request waits.
    let armed = Arc::new(AtomicBool::new(false));
    let dying = Arc::new(tokio::sync::Notify::new());
    let switch = {
        let (armed, dying) = (armed.clone(), dying.clone());
        move |app: Router| {
            app.layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    let (armed, dying) = (armed.clone(), dying.clone());
                    async move {
                        if armed.load(Ordering::SeqCst) && req.uri().path() == "/articles/104" {
                            dying.notify_one();
                            std::future::pending::<()>().await;
                        }
                        next.run(req).await
                    }
                },
            ))
        }
    };
    let first = PayeeProcess::start(
        &node,
        &site,
        policy(&[2], 144),
        payee_dir.path(),
        "127.0.0.1:0",
        switch,
    )
    .await;
    let url = first.url.clone();
    let wallet = funded_wallet(&node).await;
    let w = wallet.path();

    // 101 pages use up the first payment's credit: from then on every page signs a payment.
    let out = fetch_articles(&node, w, &url, 0..101).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = trickle(node.url(), w, &["channels"]).await;
    let contract = channel_txid(&table, &url);
    let (_, _, paid_before, credit_before) = channel_row(&table, &url);
    assert_eq!(paid_before - credit_before, 1_010);
    assert!(credit_before <= 10 * PREPAID_REQUESTS, "{credit_before}");

    // The payee dies mid-stream: the next run's fourth page reaches a payee that is killed
    // before it reads it; the run stops there with a clear error.
    armed.store(true, Ordering::SeqCst);
    let run = tokio::spawn({
        let (node_url, w, url) = (node.url().to_owned(), w.to_owned(), url.clone());
        async move {
            let urls: Vec<String> = (101..111).map(|n| format!("{url}/articles/{n}")).collect();
            let mut args = vec!["fetch"];
            args.extend(urls.iter().map(String::as_str));
            run_trickle(&node_url, &w, &args).await
        }
    });
    dying.notified().await;
    first.kill();
    let out = run.await.expect("run");
    assert!(!out.status.success(), "the run fails with its payee");
    assert_eq!(String::from_utf8_lossy(&out.stdout), articles(101..104));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("trickle: "), "{err}");
    let stored = stored_channels(payee_dir.path()).await;
    let [channel] = stored.as_slice() else {
        panic!("one channel stored, got {}", stored.len())
    };
    assert_eq!(
        channel.ledger.consumed.to_sat(),
        10 * 104,
        "the three pages served were charged once each; the fourth never reached the payee"
    );
    let paid_at_kill = channel.ledger.paid.to_sat();
    assert!(paid_at_kill >= 1_040, "paid {paid_at_kill}");

    // While it is down, a fetch fails clearly and pays nothing.
    let err = trickle_fails(node.url(), w, &["fetch", &format!("{url}/articles/104")]).await;
    assert!(err.contains("trickle: "), "{err}");
    let table = trickle(node.url(), w, &["channels"]).await;
    let (_, _, paid_down, _) = channel_row(&table, &url);

    // The payee comes back at the same address with the same database and key: the channel
    // resumes by its id, amounts grow from where they were, and no page is charged twice.
    let second = PayeeProcess::start(
        &node,
        &site,
        policy(&[2], 144),
        payee_dir.path(),
        url.trim_start_matches("http://"),
        |app| app,
    )
    .await;
    assert_eq!(second.url, url);
    let out = fetch_articles(&node, w, &url, 104..120).await;
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{progress}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), articles(104..120));
    assert!(!progress.contains("opening"), "no new channel: {progress}");
    assert_eq!(progress.matches("paying").count(), 1, "{progress}");

    let table = trickle(node.url(), w, &["channels"]).await;
    assert_eq!(table.lines().count(), 2, "still one channel:\n{table}");
    assert_eq!(channel_txid(&table, &url), contract, "the same channel");
    let (state, value, paid, credit) = channel_row(&table, &url);
    assert_eq!(state, "Ready");
    assert!(
        paid > paid_down && paid_down >= paid_before,
        "{paid_before} {paid_down} {paid}"
    );
    let stored = stored_channels(payee_dir.path()).await;
    let [channel] = stored.as_slice() else {
        panic!("one channel stored, got {}", stored.len())
    };
    assert_eq!(channel.txid(), Some(contract));
    assert_eq!(
        channel.ledger.consumed.to_sat(),
        10 * 120,
        "every page served was charged exactly once"
    );
    assert_eq!(
        channel.ledger.paid.to_sat(),
        paid,
        "the payee holds what the client signed"
    );
    assert_eq!(
        channel.ledger.credit().to_sat(),
        credit,
        "and both agree on the credit"
    );

    // The restarted payee closes with the best payment.
    let txid: Txid = trickle(node.url(), w, &["close", &url])
        .await
        .trim()
        .parse()
        .expect("txid");
    node.mine(1).await.expect("mined");
    assert!(
        node.confirmation_height(&txid).is_some(),
        "settlement confirmed"
    );
    let settlement = node.transaction(&txid).expect("settlement");
    assert_eq!(
        settlement.output[0].value.to_sat(),
        value - paid,
        "client change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fetches_on_one_wallet_at_once_both_finish_and_nothing_is_charged_twice() {
    let node = Node::start(Config::default()).await.expect("node");
    let site = static_site().await;
    let payee_dir = tempfile::tempdir().expect("dir");
    let (payee, url) = proxy(&node, &site, policy(&[2], 144), payee_dir.path()).await;
    let wallet = funded_wallet(&node).await;
    let w = wallet.path();
    // The channel exists before the race: both runs pay over it.
    let body = trickle(node.url(), w, &["fetch", &format!("{url}/articles/0")]).await;
    assert_eq!(body, "article 0");
    let run = |first: u32| {
        let (node_url, w, url) = (node.url().to_owned(), w.to_owned(), url.clone());
        tokio::spawn(async move {
            let urls: Vec<String> = (first..first + 10)
                .map(|n| format!("{url}/articles/{n}"))
                .collect();
            let mut args = vec!["fetch"];
            args.extend(urls.iter().map(String::as_str));
            run_trickle(&node_url, &w, &args).await
        })
    };
    // While another process holds the wallet, a run waits, and says so.
    let lock = std::fs::File::options()
        .write(true)
        .open(w.join("wallet.lock"))
        .expect("the wallet's lock file");
    fs4::FileExt::lock(&lock).expect("lock");
    let waiting = run(300);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        !waiting.is_finished(),
        "a run waits while the wallet is in use"
    );
    drop(lock);
    let waited = waiting.await.expect("join");
    assert!(waited.status.success());
    let stderr = String::from_utf8_lossy(&waited.stderr);
    assert!(stderr.contains("in use by another trickle"), "{stderr}");

    let (a, b) = (run(100), run(200));
    let (a, b) = (a.await.expect("join"), b.await.expect("join"));
    for (out, first) in [(&a, 100), (&b, 200)] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let expected: String = (first..first + 10)
            .map(|n| format!("article {n}"))
            .collect();
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    }
    // 31 pages, each charged once; the wallet and the payee agree.
    let stored = payee.store().channels().await.expect("channels");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].ledger.consumed.to_sat(), 31 * 10);
    let (state, _, paid, credit) = channel_row(&trickle(node.url(), w, &["channels"]).await, &url);
    assert_eq!(state, "Ready");
    assert!(
        paid >= stored[0].ledger.paid.to_sat(),
        "the payee holds no more than was signed"
    );
    assert_eq!(paid - credit, 31 * 10, "paid {paid}, credit {credit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_within_the_site_only() {
    let node = Node::start(Config::default()).await.expect("node");
    // Whatever reaches the other site is recorded.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let elsewhere = serve_at(
        "127.0.0.2:0",
        Router::new().fallback(move |request: axum::extract::Request| {
            let record = record.clone();
            async move {
                let payment = request.headers().contains_key("payment-signature");
                record
                    .lock()
                    .expect("lock")
                    .push(format!("{} payment: {payment}", request.uri()));
                "not yours"
            }
        }),
    )
    .await;
    let redirect = |to: String| async move {
        (
            axum::http::StatusCode::FOUND,
            [(axum::http::header::LOCATION, to)],
        )
    };
    let away = format!("{elsewhere}/steal");
    let site = serve(
        Router::new()
            .route(
                "/articles/{n}",
                get(
                    |axum::extract::Path(n): axum::extract::Path<u32>| async move {
                        format!("article {n}")
                    },
                ),
            )
            .route("/articles/old", get(move || redirect("/articles/1".into())))
            .route("/articles/away", get(move || redirect(away.clone()))),
    )
    .await;
    let payee_dir = tempfile::tempdir().expect("dir");
    let (_payee, url) = proxy(&node, &site, policy(&[2], 144), payee_dir.path()).await;
    let wallet = funded_wallet(&node).await;
    let w = wallet.path();

    // Within the site: followed, and the page it leads to is paid.
    let body = trickle(node.url(), w, &["fetch", &format!("{url}/articles/old")]).await;
    assert_eq!(body, "article 1");
    let (_, _, paid, credit) = channel_row(&trickle(node.url(), w, &["channels"]).await, &url);

    // To another site: not followed, in a run that has a payment armed for the site.
    let out = run_trickle(
        node.url(),
        w,
        &[
            "fetch",
            &format!("{url}/articles/2"),
            &format!("{url}/articles/away"),
        ],
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "article 2");
    assert!(
        err.contains(&format!(
            "{url}/articles/away redirects to another site ({elsewhere}/steal); not following it"
        )),
        "{err}"
    );
    assert!(
        seen.lock().expect("lock").is_empty(),
        "nothing reached the other site: {:?}",
        seen.lock().expect("lock")
    );
    let (_, _, paid_after, credit_after) =
        channel_row(&trickle(node.url(), w, &["channels"]).await, &url);
    assert_eq!(
        (paid_after - credit_after) - (paid - credit),
        10,
        "one page charged (article 2); the redirect nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_paid_in_a_run_is_reloaded_not_paid_again() {
    let node = Node::start(Config::default()).await.expect("node");
    let site = static_site().await;
    let payee_dir = tempfile::tempdir().expect("dir");
    let (_payee, url) = proxy(&node, &site, policy(&[2], 144), payee_dir.path()).await;
    let wallet = funded_wallet(&node).await;
    let w = wallet.path();
    // Article 1 answers the offer, article 2 goes with the pre-armed payment: each is sent
    // again later in the run, and each is charged once.
    let (one, two) = (format!("{url}/articles/1"), format!("{url}/articles/2"));
    let out = trickle(node.url(), w, &["fetch", &one, &one, &two, &one, &two]).await;
    assert_eq!(out, "article 1article 1article 2article 1article 2");
    let (_, _, paid, credit) = channel_row(&trickle(node.url(), w, &["channels"]).await, &url);
    assert_eq!(paid - credit, 20, "two pages charged, at 10 sat");
}
