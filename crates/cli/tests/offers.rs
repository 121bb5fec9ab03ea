//! `trickle fetch` checks a site's offer with the wallet's one offer check before anything is
//! sent to a channel endpoint, and keeps channels, labels and pinned payee keys per origin
//! (scheme, host and port).
//!
//! The hostile site is a real payee on 127.0.0.3 whose genuine offers are altered on the way
//! out, one field per case; it records every request it receives, and so does a second server
//! on 127.0.0.2, where one altered offer places the channel endpoint.

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::Router;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, Network};
use common::*;
use trickle_channel::http::{asset, caip2, PaymentRequired, PAYMENT_REQUIRED, PAYMENT_SIGNATURE};
use trickle_payee::DEFAULT_ENDPOINT_PATH;
use trickle_regtest::{Config, Node};
use trickle_testkit::keys::{key, pubkey};
use trickle_wallet::offer::DEFAULT_MIN_EXPIRY_BLOCKS;

/// A request as a server received it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    method: String,
    path: String,
    /// Whether it carried a `PAYMENT-SIGNATURE`.
    paid: bool,
}

/// Every request a server received.
#[derive(Default)]
struct Recorder(Mutex<Vec<Seen>>);

impl Recorder {
    fn record(&self, req: &Request) {
        let seen = Seen {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            paid: req.headers().contains_key(PAYMENT_SIGNATURE),
        };
        self.0.lock().expect("recorder").push(seen);
    }

    /// The requests received since the last call.
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().expect("recorder"))
    }
}

/// How the hostile site alters its payee's genuine offer.
#[derive(Clone, Debug)]
enum Tamper {
    /// Passes everything through, channel endpoint included: an honest site.
    Nothing,
    Price(Amount),
    Network(Network),
    MinChannelValue(Amount),
    Endpoint(String),
    MaxExpiryBlocks(u32),
    PayeeKey(PublicKey),
}

impl Tamper {
    fn apply(&self, required: &mut PaymentRequired) {
        for offer in &mut required.accepts {
            match self {
                Self::Nothing => {}
                Self::Price(price) => offer.amount = *price,
                // Another network's offer names that network's bitcoin too.
                Self::Network(network) => {
                    offer.network = caip2(*network);
                    offer.asset = asset(&offer.network);
                }
                Self::MinChannelValue(min) => offer.extra.min_channel_value = *min,
                Self::Endpoint(endpoint) => offer.extra.endpoint = endpoint.clone(),
                Self::MaxExpiryBlocks(blocks) => offer.extra.max_expiry_blocks = *blocks,
                Self::PayeeKey(key) => offer.pay_to = *key,
            }
        }
    }
}

/// The hostile site: its URL (its origin), what it received, and how it alters offers now.
struct HostileSite {
    url: String,
    _payee: trickle_payee::Payee,
    seen: Arc<Recorder>,
    tamper: Arc<Mutex<Tamper>>,
}

impl HostileSite {
    fn set(&self, tamper: Tamper) {
        *self.tamper.lock().expect("tamper") = tamper;
    }
}

/// Records each request; while an offer is altered, the channel endpoint answers nothing but
/// 404 (a request to it is a failure the test reports, not a channel opened with the payee).
async fn hostile(
    seen: Arc<Recorder>,
    tamper: Arc<Mutex<Tamper>>,
    req: Request,
    next: Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    seen.record(&req);
    let tamper = tamper.lock().expect("tamper").clone();
    let honest = matches!(tamper, Tamper::Nothing);
    if !honest && req.uri().path().starts_with(DEFAULT_ENDPOINT_PATH) {
        return (axum::http::StatusCode::NOT_FOUND, "no channels here").into_response();
    }
    let mut resp = next.run(req).await;
    let offer = resp
        .headers()
        .get(PAYMENT_REQUIRED)
        .and_then(|h| h.to_str().ok())
        .map(|h| PaymentRequired::from_header(h).expect("the payee's offer parses"));
    if let Some(mut required) = offer {
        tamper.apply(&mut required);
        let header = HeaderValue::from_str(&required.to_header()).expect("header value");
        resp.headers_mut().insert(PAYMENT_REQUIRED, header);
    }
    resp
}

/// The payee of `common::proxy` in front of `upstream`, served on 127.0.0.3 behind
/// [`hostile`].
async fn hostile_site(node: &Node, upstream: &str, dir: &std::path::Path) -> HostileSite {
    let (seen, tamper) = (Arc::default(), Arc::new(Mutex::new(Tamper::Nothing)));
    let (payee, app) = payee_app(node.url(), upstream, policy(&[2], 144), dir, [42; 32]).await;
    let layer = {
        let (seen, tamper) = (Arc::clone(&seen), Arc::clone(&tamper));
        axum::middleware::from_fn(move |req: Request, next: Next| {
            hostile(Arc::clone(&seen), Arc::clone(&tamper), req, next)
        })
    };
    let url = serve_at("127.0.0.3:0", app.layer(layer)).await;
    HostileSite {
        url,
        _payee: payee,
        seen,
        tamper,
    }
}

/// A server on 127.0.0.2 that records every request and answers each with a 404.
async fn elsewhere() -> (String, Arc<Recorder>) {
    let seen = Arc::new(Recorder::default());
    let app = Router::new().fallback({
        let seen = Arc::clone(&seen);
        move |req: Request| {
            seen.record(&req);
            async { (axum::http::StatusCode::NOT_FOUND, "nothing here") }
        }
    });
    (serve_at("127.0.0.2:0", app).await, seen)
}

/// The limits of every fetch of a bad offer: `--max-price` and `--budget`, in sat.
const MAX_PRICE: &str = "100";
const BUDGET: &str = "50000";

/// One bad offer: how the site alters it, and the refusal expected.
struct Case {
    name: &'static str,
    tamper: Tamper,
    refusal: String,
    /// Pay a page first, with the site honest, so that a channel pins its payee key.
    pay_first: bool,
}

/// Runs `case` on a fresh funded wallet; returns what went wrong (nothing: refused as it must
/// be, with nothing sent and nothing spent).
async fn refusal_problems(
    node: &Node,
    site: &HostileSite,
    elsewhere: &Recorder,
    case: &Case,
    page: u32,
) -> Vec<String> {
    let wallet = funded_wallet(node).await;
    let w = wallet.path();
    site.set(Tamper::Nothing);
    if case.pay_first {
        let first = format!("{}/articles/{}", site.url, page + 1000);
        assert_eq!(
            trickle(node.url(), w, &["fetch", &first]).await,
            format!("article {}", page + 1000),
            "{}: the honest site is paid",
            case.name
        );
    }
    let balance = trickle(node.url(), w, &["wallet", "balance"]).await;
    let channels = trickle(node.url(), w, &["channels"]).await;
    site.set(case.tamper.clone());
    site.seen.take();

    let path = format!("/articles/{page}");
    let url = format!("{}{path}", site.url);
    let args = ["fetch", &url, "--max-price", MAX_PRICE, "--budget", BUDGET];
    let out = run_trickle(node.url(), w, &args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);

    let mut problems = Vec::new();
    if out.status.success() {
        problems.push("trickle fetch succeeded".to_owned());
    }
    if !out.stdout.is_empty() {
        problems.push(format!(
            "a body was printed: {:?}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    if !stderr.contains(&case.refusal) {
        problems.push(format!(
            "stderr lacks {:?}; it printed: {}",
            case.refusal,
            stderr.trim()
        ));
    }
    let seen = site.seen.take();
    let page_only = seen
        .iter()
        .all(|s| s.method == "GET" && s.path == path && !s.paid);
    if seen.is_empty() || !page_only {
        problems.push(format!(
            "the site received more than unpaid GETs of {path}: {seen:?}"
        ));
    }
    let seen_elsewhere = elsewhere.take();
    if !seen_elsewhere.is_empty() {
        problems.push(format!(
            "requests reached the other origin: {seen_elsewhere:?}"
        ));
    }
    let balance_after = trickle(node.url(), w, &["wallet", "balance"]).await;
    if balance_after != balance {
        problems.push(format!(
            "the balance changed: {balance:?} -> {balance_after:?}"
        ));
    }
    let channels_after = trickle(node.url(), w, &["channels"]).await;
    if channels_after != channels {
        problems.push(format!(
            "the channels changed:\n{channels}->\n{channels_after}"
        ));
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_offers_are_refused_before_anything_is_sent_or_spent() {
    let node = Node::start(Config::default()).await.expect("node");
    let upstream = static_site().await;
    let payee_dir = tempfile::tempdir().expect("dir");
    let site = hostile_site(&node, &upstream, payee_dir.path()).await;
    let (elsewhere_url, elsewhere_seen) = elsewhere().await;
    let other_endpoint = format!("{elsewhere_url}{DEFAULT_ENDPOINT_PATH}");
    let other_key = pubkey(&key(9));
    let short = DEFAULT_MIN_EXPIRY_BLOCKS - 1;
    let case = |name, tamper, refusal: String| Case {
        name,
        tamper,
        refusal,
        pay_first: false,
    };
    let cases = [
        case(
            "price above --max-price",
            Tamper::Price(Amount::from_sat(500)),
            "the price of 500 sat is above the max price of 100 sat per request".into(),
        ),
        case(
            "wrong network",
            Tamper::Network(Network::Signet),
            "the site offers no channel payment on regtest (only on signet)".into(),
        ),
        case(
            "minimum channel above --budget",
            Tamper::MinChannelValue(Amount::from_sat(80_000)),
            "50000 sat to lock is below the site's minimum channel of 80000 sat".into(),
        ),
        case(
            "channel endpoint on another origin",
            Tamper::Endpoint(other_endpoint.clone()),
            format!(
                "the channel endpoint {other_endpoint} is not on {}, and not allowed",
                site.url
            ),
        ),
        case(
            "expiry window too short",
            Tamper::MaxExpiryBlocks(short),
            format!(
                "the site offers channels of {short} blocks; at least {DEFAULT_MIN_EXPIRY_BLOCKS} are needed"
            ),
        ),
        Case {
            pay_first: true,
            ..case(
                "payee key changed on the same origin",
                Tamper::PayeeKey(other_key),
                "the site's payee key changed since its channel was opened; not paying".into(),
            )
        },
    ];

    let mut failed = Vec::new();
    for (page, case) in (0..).zip(&cases) {
        let problems = refusal_problems(&node, &site, &elsewhere_seen, case, page).await;
        if problems.is_empty() {
            eprintln!("{}: refused, nothing sent or spent", case.name);
        } else {
            eprintln!("{}: FAILED\n  {}", case.name, problems.join("\n  "));
            failed.push(case.name);
        }
    }
    assert!(failed.is_empty(), "cases failed (see above): {failed:?}");
}

/// Two payees on one host, at two ports: two sites, each with its own channel (labelled by its
/// origin) and its own payee key, and each reused by the next page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_payees_on_one_host_each_get_their_own_channel() {
    let node = Node::start(Config::default()).await.expect("node");
    let upstream = static_site().await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (payee_a, a) =
        proxy_with_seed(&node, &upstream, policy(&[2], 144), dir_a.path(), [42; 32]).await;
    let (payee_b, b) =
        proxy_with_seed(&node, &upstream, policy(&[2], 144), dir_b.path(), [43; 32]).await;
    assert_ne!(a, b);
    let wallet = funded_wallet(&node).await;
    let w = wallet.path();

    for url in [&a, &b] {
        let body = trickle(node.url(), w, &["fetch", &format!("{url}/articles/1")]).await;
        assert_eq!(body, "article 1", "{url}");
    }
    let table = trickle(node.url(), w, &["channels"]).await;
    assert_eq!(table.lines().count(), 3, "two channels:\n{table}");
    for url in [&a, &b] {
        let (state, value, ..) = channel_row(&table, url);
        assert_eq!((state.as_str(), value), ("Ready", 50_000), "{url}");
    }
    let contracts = [channel_txid(&table, &a), channel_txid(&table, &b)];
    assert_ne!(contracts[0], contracts[1]);

    // The next page of each site pays over that site's channel.
    for url in [&a, &b] {
        let (body, progress) =
            trickle_output(node.url(), w, &["fetch", &format!("{url}/articles/2")]).await;
        assert_eq!(body, "article 2", "{url}");
        assert!(!progress.contains("opening"), "no new channel: {progress}");
    }
    let table = trickle(node.url(), w, &["channels"]).await;
    assert_eq!(table.lines().count(), 3, "still two channels:\n{table}");
    assert_eq!(
        [channel_txid(&table, &a), channel_txid(&table, &b)],
        contracts
    );
    for (payee, contract) in [(payee_a, contracts[0]), (payee_b, contracts[1])] {
        let stored = payee.store().channels().await.expect("stored channels");
        let [channel] = stored.as_slice() else {
            panic!("one channel per payee, got {}", stored.len())
        };
        assert_eq!(channel.txid(), Some(contract));
        assert_eq!(channel.ledger.consumed.to_sat(), 20, "two pages of 10 sat");
    }
}
