//! The real `trickle-payee` binary in a test: its configuration, a process to start and
//! SIGKILL, the site it fronts, and a coin to fund a channel with.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::extract::Path as UrlPath;
use axum::routing::get;
use axum::Router;
use bitcoin::{Address, Amount, CompressedPublicKey, Network, OutPoint};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use trickle_regtest::Node;

use super::{key, pubkey, Coin, SERVER_PAYOUT, WALLET};

/// Every wait for the payee gives up after this (a loaded machine is slow, not stuck).
pub const PATIENCE: Duration = Duration::from_secs(60);

pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

pub fn site() -> Router {
    Router::new()
        .route(
            "/articles/{n}",
            get(|UrlPath(n): UrlPath<u32>| async move { format!("article {n}") }),
        )
        .route("/", get(|| async { "home" }))
}

pub fn payout_address() -> Address {
    Address::p2wpkh(
        &CompressedPublicKey(pubkey(&key(SERVER_PAYOUT))),
        Network::Regtest,
    )
}

/// A free port on 127.0.0.1 for the payee to listen on, restart after restart.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The payee binary's configuration: the site at `upstream`, the chain at `esplora`, SQLite
/// and the key seed in `dir`.
pub fn write_config(dir: &Path, port: u16, upstream: &str, esplora: &str, price: u64) -> PathBuf {
    let config = format!(
        r#"listen = "127.0.0.1:{port}"
upstream = "{upstream}"
network = "regtest"
esplora = "{esplora}"
database = "payee.sqlite3"
key_file = "payee.key"
payout_address = "{payout}"
poll_interval_secs = 1

[policy]
versions = [2, 1]
min_payment = 1000
close_margin_blocks = 12

[[price]]
path = "/articles"
sat = {price}
description = "An article"
"#,
        payout = payout_address(),
    );
    let path = dir.join("payee.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// The payee process. Dropping it kills it.
pub struct PayeeProcess {
    child: Child,
    _stdout: Lines<BufReader<ChildStdout>>,
    pub url: String,
}

impl PayeeProcess {
    /// Starts `trickle-payee --config config` and waits for its "listening" line. A port still
    /// held by the process just killed makes the new one exit at once: it is started again.
    pub async fn start(config: &Path) -> Self {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_trickle-payee"))
                .arg("--config")
                .arg(config)
                .env("RUST_LOG", "error")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let first = tokio::time::timeout(PATIENCE, lines.next_line())
                .await
                .expect("the payee starts within the patience")
                .unwrap();
            if let Some(url) = first
                .as_deref()
                .and_then(|l| l.strip_prefix("trickle-payee listening on "))
            {
                return Self {
                    url: url.to_owned(),
                    child,
                    _stdout: lines,
                };
            }
            let status = child.wait().await.unwrap();
            assert!(
                Instant::now() < deadline,
                "the payee does not start: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, and waits until the process is gone.
    pub async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// A coin of `value` to the test wallet's key, from the chain's faucet.
pub async fn coin(node: &Node, value: Amount) -> Coin {
    let address = Address::p2wpkh(&CompressedPublicKey(pubkey(&key(WALLET))), Network::Regtest);
    let funding = node.fund(&address, value).await.unwrap();
    let tx = node.transaction(&funding).unwrap();
    let vout = tx
        .output
        .iter()
        .position(|o| o.script_pubkey == address.script_pubkey())
        .unwrap();
    Coin {
        outpoint: OutPoint::new(funding, vout as u32),
        value: tx.output[vout].value,
    }
}
