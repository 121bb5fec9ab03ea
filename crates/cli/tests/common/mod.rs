//! Helpers shared by the `trickle` end-to-end tests (`e2e.rs`, `crash.rs`): the regtest chain,
//! the payee proxy in process, and the `trickle` binary.
#![allow(dead_code)] // each test binary uses its own part

use std::process::Command;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use bitcoin::{Address, Amount, FeeRate, Network, Txid};
use trickle_channel::{ExpiryKind, PayeePolicy};
use trickle_payee::chain::Esplora;
use trickle_payee::proxy::{self, Upstream};
use trickle_payee::store::SqliteStore;
use trickle_payee::{Keys, Payee, PayeeConfig, Price, Prices};
use trickle_regtest::Node;

pub const PASSWORD: &str = "correct horse battery staple";

pub async fn serve(app: Router) -> String {
    serve_at("127.0.0.1:0", app).await
}

/// Serves `app` at `addr` on the current runtime; returns its URL. A server that was just
/// stopped may hold the address for a moment: binding is retried for a few seconds.
pub async fn serve_at(addr: &str, app: Router) -> String {
    let mut tries = 0;
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => break listener,
            Err(e) if tries < 100 => {
                tries += 1;
                eprintln!("bind {addr}: {e}; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    };
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    // As the payee binary does: responses go out as soon as they are written.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        tcp.set_nodelay(true).expect("nodelay");
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The site behind the proxy: articles, and a free home page.
pub async fn static_site() -> String {
    serve(
        Router::new()
            .route("/", get(|| async { "home" }))
            .route(
                "/articles/{n}",
                get(|axum::extract::Path(n): axum::extract::Path<u32>| async move {
                    format!("article {n}")
                }),
            ),
    )
    .await
}

pub fn policy(versions: &[u8], expiry_blocks: u32) -> PayeePolicy {
    PayeePolicy {
        accept_v1: versions.contains(&1),
        accept_v2: versions.contains(&2),
        min_channel_value: Amount::from_sat(10_000),
        max_channel_value: Amount::from_sat(1_000_000),
        min_payment: Amount::from_sat(1_000),
        min_expiry_blocks: expiry_blocks,
        max_expiry_blocks: expiry_blocks,
        expiry_kind: ExpiryKind::Height,
        close_margin_blocks: 3,
        payout_script: bitcoin::ScriptBuf::new(), // replaced by the key's payout script below
    }
}

/// The payee proxy in front of `upstream`, pricing `/articles` at 10 sat.
pub async fn proxy(
    node: &Node,
    upstream: &str,
    policy: PayeePolicy,
    dir: &std::path::Path,
) -> (Payee, String) {
    proxy_with_seed(node, upstream, policy, dir, [42; 32]).await
}

/// The same proxy with the payee key of `seed`.
pub async fn proxy_with_seed(
    node: &Node,
    upstream: &str,
    policy: PayeePolicy,
    dir: &std::path::Path,
    seed: [u8; 32],
) -> (Payee, String) {
    let (payee, app) = payee_app(node.url(), upstream, policy, dir, seed).await;
    (payee, serve(app).await)
}

/// The payee of `seed` with its database in `dir`, and its proxy in front of `upstream`,
/// pricing `/articles` at 10 sat.
pub async fn payee_app(
    esplora: &str,
    upstream: &str,
    policy: PayeePolicy,
    dir: &std::path::Path,
    seed: [u8; 32],
) -> (Payee, Router) {
    let keys = Keys::from_seed(&seed).expect("keys");
    let policy = PayeePolicy {
        payout_script: keys.default_payout_script(),
        ..policy
    };
    let mut config = PayeeConfig::new(Network::Regtest, policy);
    config.close_fee_rate = FeeRate::from_sat_per_vb_u32(2);
    // The tests pay a hundred pages on a channel as it opens, before any block is mined.
    config.confirmations = 0;
    let store = SqliteStore::open(dir.join("payee.sqlite3"))
        .await
        .expect("store");
    let payee = Payee::start(
        config,
        keys,
        Arc::new(store),
        Arc::new(Esplora::new(esplora).expect("esplora")),
    )
    .await
    .expect("payee");
    let prices = Prices::new().with("/articles", Price::sat(10));
    let app = proxy::app(&payee, prices, Upstream::new(upstream).expect("upstream"));
    (payee, app)
}

/// A payee proxy that runs as if in a process of its own: on a runtime of its own, so that
/// [`PayeeProcess::kill`] stops it at once — its connections dropped mid-request, everything
/// it held in memory gone — and only its database and key stay behind (the key is the fixed
/// seed of [`proxy`]).
pub struct PayeeProcess {
    runtime: Option<tokio::runtime::Runtime>,
    pub url: String,
}

impl PayeeProcess {
    /// Starts the proxy at `addr` (`127.0.0.1:0` for any port) with its database in `dir`;
    /// `wrap` may put a layer in front of it.
    pub async fn start(
        node: &Node,
        upstream: &str,
        policy: PayeePolicy,
        dir: &std::path::Path,
        addr: &str,
        wrap: impl FnOnce(Router) -> Router + Send + 'static,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (esplora, upstream, dir, addr) = (
            node.url().to_owned(),
            upstream.to_owned(),
            dir.to_owned(),
            addr.to_owned(),
        );
        let url = runtime
            .spawn(async move {
                let (_, app) = payee_app(&esplora, &upstream, policy, &dir, [42; 32]).await;
                serve_at(&addr, wrap(app)).await
            })
            .await
            .expect("payee started");
        Self {
            runtime: Some(runtime),
            url,
        }
    }

    /// Stops the payee at once, as a killed process stops.
    pub fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for PayeeProcess {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The channels stored in the payee database in `dir`, read as an operator would.
pub async fn stored_channels(dir: &std::path::Path) -> Vec<trickle_payee::store::StoredChannel> {
    use trickle_payee::store::ChannelStore as _;
    SqliteStore::open(dir.join("payee.sqlite3"))
        .await
        .expect("store")
        .channels()
        .await
        .expect("stored channels")
}

/// Runs `trickle` with a wallet in `dir`; returns stdout, panics with stderr on failure.
pub async fn trickle(node_url: &str, dir: &std::path::Path, args: &[&str]) -> String {
    trickle_output(node_url, dir, args).await.0
}

/// Runs `trickle` with a wallet in `dir` against the chain at `node_url`.
pub async fn run_trickle(
    node_url: &str,
    dir: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trickle"));
    cmd.args(args)
        .env("TRICKLE_DIR", dir)
        .env("TRICKLE_PASSWORD", PASSWORD)
        .env("TRICKLE_NETWORK", "regtest")
        .env("TRICKLE_ESPLORA", node_url);
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("trickle runs")
}

/// Runs `trickle`; returns stdout and stderr, panics on failure.
pub async fn trickle_output(
    node_url: &str,
    dir: &std::path::Path,
    args: &[&str],
) -> (String, String) {
    let out = run_trickle(node_url, dir, args).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "trickle {args:?} failed: {stderr}");
    (String::from_utf8(out.stdout).expect("utf-8"), stderr)
}

/// Runs `trickle`, expecting it to fail; returns its stderr.
pub async fn trickle_fails(node_url: &str, dir: &std::path::Path, args: &[&str]) -> String {
    let out = run_trickle(node_url, dir, args).await;
    assert!(!out.status.success(), "trickle {args:?} should have failed");
    assert!(out.stdout.is_empty(), "nothing printed as a body");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A funded `trickle` wallet in a fresh directory.
pub async fn funded_wallet(node: &Node) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    let phrase = trickle(node.url(), dir.path(), &["wallet", "create"]).await;
    assert_eq!(phrase.split_whitespace().count(), 12);
    let address: Address<_> = trickle(node.url(), dir.path(), &["wallet", "address"])
        .await
        .trim()
        .parse()
        .expect("address");
    let address = address.require_network(Network::Regtest).expect("regtest");
    node.fund(&address, Amount::from_sat(500_000))
        .await
        .expect("funded");
    let balance = trickle(node.url(), dir.path(), &["wallet", "balance"]).await;
    assert!(balance.contains("confirmed 500000 sat"), "{balance}");
    dir
}

/// The contract txid (the channel's id) in the `trickle channels` row of `site`.
pub fn channel_txid(table: &str, site: &str) -> Txid {
    let row = site_row(table, site);
    row.split_whitespace()
        .last()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no contract txid in {row}"))
}

/// Parses the `trickle channels` row of `site`: (state, value, paid, credit).
pub fn channel_row(table: &str, site: &str) -> (String, u64, u64, u64) {
    let row = site_row(table, site);
    let f: Vec<&str> = row.split_whitespace().collect();
    let n = |i: usize| f[i].parse::<u64>().expect("number");
    (f[1].to_owned(), n(2), n(3), n(4))
}

/// The expiry height in the `trickle channels` row of `site`.
pub fn channel_expiry(table: &str, site: &str) -> u32 {
    let row = site_row(table, site);
    let expiry = row.split_whitespace().nth(5).expect("an expiry column");
    expiry.parse().expect("a height")
}

/// The `trickle channels` row whose site column is exactly `site` (so that one origin's port
/// is not taken for a prefix of another's).
fn site_row<'t>(table: &'t str, site: &str) -> &'t str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(site))
        .unwrap_or_else(|| panic!("no channel row for {site} in\n{table}"))
}

/// What `tx` pays in fees, from the outputs it spends (looked up on `node`).
pub fn fee_of(node: &Node, tx: &bitcoin::Transaction) -> u64 {
    let spent: Amount = tx
        .input
        .iter()
        .map(|i| {
            let prev = node
                .transaction(&i.previous_output.txid)
                .expect("the spent transaction");
            prev.output[i.previous_output.vout as usize].value
        })
        .sum();
    let paid: Amount = tx.output.iter().map(|o| o.value).sum();
    (spent - paid).to_sat()
}
