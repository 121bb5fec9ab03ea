//! Crash injection at the close: the real `trickle-payee` binary on a regtest chain, killed with
//! SIGKILL between storing a replacement settlement (a fee spike evicted the first) and
//! broadcasting it, broadcasts the stored replacement when it comes back, and it confirms before
//! the expiry, paying each side what the payments say.
#![allow(clippy::unwrap_used)] // tests may panic on what cannot happen

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bitcoin::{Amount, Transaction};
use common::process::{
    coin, free_port, payout_address, serve, site, write_config, PayeeProcess, PATIENCE,
};
use common::{fetch, payer_config, Client};
use trickle_channel::{ChainTip, PayeeState, Version};
use trickle_payee::store::{ChannelStore, SqliteStore};
use trickle_regtest::{Config, Node};

const PRICE: u64 = 10;
/// The binary's `close_margin_blocks` (`write_config`).
const CLOSE_MARGIN: u32 = 12;

/// The chain's Esplora API as the payee sees it: every request goes on to the node, but a
/// transaction broadcast while `hold` is set is kept and never answered, as if the payee died
/// in the middle of it.
#[derive(Clone)]
struct Gate {
    node: String,
    http: reqwest::Client,
    hold: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<Transaction>>>,
    /// The broadcasts passed on.
    sent: Arc<Mutex<Vec<Transaction>>>,
}

impl Gate {
    fn router(&self) -> Router {
        Router::new().fallback(pass).with_state(self.clone())
    }

    /// Waits for the first broadcast held.
    async fn first_held(&self) -> Transaction {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(tx) = self.held.lock().unwrap().first() {
                return tx.clone();
            }
            assert!(Instant::now() < deadline, "the payee broadcast nothing");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

async fn pass(State(gate): State<Gate>, method: Method, uri: Uri, body: Bytes) -> Response {
    if method == Method::POST && uri.path() == "/tx" {
        let hex = String::from_utf8(body.to_vec()).unwrap();
        let tx = bitcoin::consensus::encode::deserialize_hex(hex.trim()).unwrap();
        if gate.hold.load(Ordering::SeqCst) {
            gate.held.lock().unwrap().push(tx);
            return std::future::pending().await;
        }
        gate.sent.lock().unwrap().push(tx);
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let sent = gate
        .http
        .request(method, format!("{}{path}", gate.node))
        .body(body)
        .send()
        .await;
    match sent {
        Ok(answer) => {
            let status = answer.status();
            (status, answer.bytes().await.unwrap_or_default()).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// Waits until `check` holds, polling.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within the patience");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_killed_between_storing_and_broadcasting_a_replacement_sends_it_on_restart() {
    let node = Node::start(Config::default()).await.unwrap();
    let gate = Gate {
        node: node.url().to_owned(),
        http: reqwest::Client::new(),
        hold: Arc::default(),
        held: Arc::default(),
        sent: Arc::default(),
    };
    let gate_url = serve(gate.router()).await;
    let site_url = serve(site()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), free_port(), &site_url, &gate_url, PRICE);
    let mut payee = PayeeProcess::start(&config).await;

    // A channel paid enough for the payee's share to cover a spike's fee.
    let endpoint = format!("{}{}", payee.url, trickle_payee::DEFAULT_ENDPOINT_PATH);
    let tip = ChainTip {
        height: node.height(),
        median_time_past: node.median_time_past(),
    };
    let wallet = coin(&node, Amount::from_sat(200_000)).await;
    let mut client = Client::open_funded(&endpoint, Version::V2, tip, &wallet).await;
    let contract = client.txid();
    node.mine(1).await.unwrap();
    let article = format!("{}/articles/1", payee.url);
    let offer = fetch(&article, None).await.required.unwrap();
    let update = client.sign(Amount::from_sat(20_000));
    let paid = client.paid();
    let answer = fetch(&article, Some(&client.header(&offer, Some(&update), true))).await;
    assert_eq!(answer.status, 200);
    let channel = client.payer.contract().unwrap().clone();
    let expiry = channel.expiry.to_consensus_u32();
    let spends_contract =
        |tx: &Transaction| tx.input.iter().any(|i| i.previous_output.txid == contract);

    // At the margin the payee's duties (every second) close at the quiet rate.
    node.mine(expiry - CLOSE_MARGIN - node.height())
        .await
        .unwrap();
    let mut quiet = None;
    until("the quiet settlement in the mempool", || {
        let sent = gate.sent.lock().unwrap();
        quiet = sent.iter().find(|tx| spends_contract(tx)).cloned();
        quiet
            .as_ref()
            .is_some_and(|tx| node.in_mempool(&tx.compute_txid()))
    })
    .await;
    let quiet = quiet.unwrap();

    // Fees spike: the quiet settlement is evicted. The next block's duties store a replacement
    // and die broadcasting it.
    assert!(node.set_fee_market(10, 40) >= 1);
    assert!(!node.in_mempool(&quiet.compute_txid()));
    gate.hold.store(true, Ordering::SeqCst);
    node.mine(1).await.unwrap();
    let replacement = gate.first_held().await;
    payee.kill().await;
    assert!(spends_contract(&replacement));
    assert_ne!(replacement.compute_txid(), quiet.compute_txid());
    assert!(!node.in_mempool(&replacement.compute_txid()), "never sent");
    {
        let store = SqliteStore::open(dir.path().join("payee.sqlite3"))
            .await
            .unwrap();
        let stored = store.channel(&contract).await.unwrap().unwrap();
        let PayeeState::Closing { settlement, .. } = stored.state else {
            panic!("closing, is {}", stored.state.name())
        };
        assert_eq!(settlement, replacement, "stored before it was broadcast");
    }

    // Back on the same database, with the chain reachable: the stored replacement goes out.
    gate.hold.store(false, Ordering::SeqCst);
    let _payee = PayeeProcess::start(&config).await;
    let txid = replacement.compute_txid();
    until("the stored replacement in the mempool", || {
        node.in_mempool(&txid)
    })
    .await;
    node.mine(1).await.unwrap();
    let height = node
        .confirmation_height(&txid)
        .expect("mined at the going rate");
    assert!(
        height < expiry,
        "confirmed at {height}, before the expiry {expiry}"
    );
    let fee = channel.value - replacement.output.iter().map(|o| o.value).sum::<Amount>();
    let to = |script: &bitcoin::ScriptBuf| -> Amount {
        replacement
            .output
            .iter()
            .filter(|o| &o.script_pubkey == script)
            .map(|o| o.value)
            .sum()
    };
    assert_eq!(
        to(&payer_config(Version::V2).payout_script),
        channel.value - paid
    );
    assert_eq!(to(&payout_address().script_pubkey()) + fee, paid);
    let rate = fee.to_sat() / replacement.vsize() as u64;
    assert!(rate >= 40, "pays the spike's rate: {rate} sat/vB");
}
