//! The payment layer: 402 offers, payments in PAYMENT-SIGNATURE in the order of
//! docs/protocol.md section 2, receipts, and nothing served unless the payment is stored.
#![allow(clippy::unwrap_used)] // tests may panic on what cannot happen

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bitcoin::Amount;
use common::{fetch, request, Client, Server};
use reqwest::Method;
use trickle_channel::http::PaymentSignature;
use trickle_channel::Version;
use trickle_payee::store::{ChannelStore, FailingStore, MemoryStore, SqliteStore};
use trickle_payee::Clock;

async fn setup(version: Version, tag: u8) -> (Server, Client) {
    let server = Server::start(Arc::new(MemoryStore::new())).await;
    let client = Client::open(&server.endpoint(), version, tag).await;
    (server, client)
}

#[tokio::test]
async fn priced_routes_answer_402_and_free_routes_pass() {
    let (server, _) = setup(Version::V2, 70).await;
    let free = fetch(&format!("{}/free", server.url), None).await;
    assert_eq!((free.status, free.body.as_str()), (200, "free"));
    assert!(free.receipt.is_none());

    let offer = fetch(&format!("{}/articles/1", server.url), None).await;
    assert_eq!(offer.status, 402);
    let required = offer.required.expect("PAYMENT-REQUIRED");
    assert_eq!(required.resource.url, format!("{}/articles/1", server.url));
    let terms = required
        .channel_offer(bitcoin::Network::Regtest)
        .expect("channel offer");
    assert_eq!(terms.amount, Amount::from_sat(10));
    assert_eq!(terms.pay_to, server.payee.server_key());
    assert_eq!(terms.extra.endpoint, server.endpoint());
    assert_eq!(terms.extra.versions, vec![2, 1]);
    let again = fetch(&format!("{}/articles/1", server.url), None).await;
    assert_ne!(
        again.required.unwrap().accepts[0].extra.nonce,
        terms.extra.nonce,
        "every offer has a fresh nonce"
    );
}

async fn pay_flow(version: Version, tag: u8) {
    let (server, mut client) = setup(version, tag).await;
    let url = format!("{}/articles/1", server.url);
    let offer = fetch(&url, None).await.required.unwrap();

    // The channel's opening payment (1000 sat) is credit: pay from it without an update.
    let header = client.header(&offer, None, true);
    let paid = fetch(&url, Some(&header)).await;
    assert_eq!((paid.status, paid.body.as_str()), (200, "article 1"));
    let receipt = paid.receipt.as_ref().expect("receipt");
    assert!(receipt.success);
    assert_eq!(receipt.receipt.as_ref().unwrap().channel, client.txid());
    assert_eq!((paid.consumed(), paid.credit()), (10, 990));

    // A reload with the same header is served again, not charged.
    let reload = fetch(&url, Some(&header)).await;
    assert_eq!(
        (reload.status, reload.consumed(), reload.credit()),
        (200, 0, 990)
    );

    // The same payment at another URL: wrong_resource.
    let other = fetch(&format!("{}/articles/2", server.url), Some(&header)).await;
    assert_eq!(
        (other.status, other.reason().as_deref()),
        (402, Some("wrong_resource"))
    );
    assert!(
        other.required.is_some(),
        "a refusal comes with a fresh offer"
    );

    // An increment with the next offer.
    let offer = fetch(&url, None).await.required.unwrap();
    let update = client.sign(Amount::from_sat(10));
    let paid = fetch(&url, Some(&client.header(&offer, Some(&update), true))).await;
    assert_eq!(
        (paid.status, paid.consumed(), paid.credit()),
        (200, 10, 990)
    );
    assert_eq!(
        paid.receipt.unwrap().receipt.unwrap().paid,
        Amount::from_sat(1_010)
    );

    let status = common::session_status(&server, client.txid()).await;
    assert_eq!(
        (status["paid"].as_str(), status["consumed"].as_str()),
        (Some("1010"), Some("20"))
    );
}

#[tokio::test]
async fn v2_channel_pays_for_articles() {
    pay_flow(Version::V2, 71).await;
}

#[tokio::test]
async fn v1_channel_pays_for_articles() {
    pay_flow(Version::V1, 72).await;
}

#[tokio::test]
async fn pre_armed_payments_leave_credit() {
    let (server, mut client) = setup(Version::V2, 73).await;
    let url = format!("{}/articles/1", server.url);
    let offer = fetch(&url, None).await.required.unwrap();
    // Spend the opening credit down below the price of /big.
    let update = client.sign(Amount::from_sat(100));
    // Pre-armed on a free route: stored as credit, the page served.
    let free = fetch(
        &format!("{}/free", server.url),
        Some(&client.header(&offer, Some(&update), false)),
    )
    .await;
    assert_eq!(
        (free.status, free.consumed(), free.credit()),
        (200, 0, 1_100)
    );
    // Pre-armed on priced routes: served at once from credit, no nonce needed.
    let header = client.header(&offer, None, false);
    let a = fetch(&url, Some(&header)).await;
    assert_eq!((a.status, a.consumed(), a.credit()), (200, 10, 1_090));
    // The same header at another URL: refused with a fresh offer, nothing charged.
    let url2 = format!("{}/articles/2", server.url);
    let replayed = fetch(&url2, Some(&header)).await;
    assert_eq!(
        (replayed.status, replayed.reason().as_deref()),
        (402, Some("wrong_resource"))
    );
    assert!(replayed.required.is_some(), "a fresh offer comes with it");
    assert_eq!(
        common::stored_totals(&server.payee, client.txid()).await,
        (1_100, 10)
    );
    // Each pre-armed request has its own header.
    let b = fetch(&url2, Some(&client.header(&offer, None, false))).await;
    assert_eq!((b.status, b.consumed(), b.credit()), (200, 10, 1_080));

    // The receipt of a pre-armed charge carries a nonce issued for the URL: with it (and no
    // update) the URL reloads free; at another URL it is refused.
    let issued = a
        .receipt
        .as_ref()
        .unwrap()
        .receipt
        .as_ref()
        .unwrap()
        .nonce
        .clone();
    let nonce = issued.expect("a pre-armed charge's receipt carries a nonce");
    let mut reload = PaymentSignature::from_header(&header).unwrap();
    reload.payload.update = None;
    reload.payload.nonce = Some(nonce);
    reload.payload.ticket = None;
    let reload = common::authorize(reload);
    let again = fetch(&url, Some(&reload)).await;
    assert_eq!(
        (again.status, again.consumed(), again.credit()),
        (200, 0, 1_080)
    );
    let elsewhere = fetch(&format!("{}/articles/3", server.url), Some(&reload)).await;
    assert_eq!(
        (elsewhere.status, elsewhere.reason().as_deref()),
        (402, Some("wrong_resource"))
    );
    let b_nonce = b
        .receipt
        .as_ref()
        .unwrap()
        .receipt
        .as_ref()
        .unwrap()
        .nonce
        .clone();
    assert!(
        b_nonce.is_some(),
        "every pre-armed charge gets its own nonce"
    );

    // Not enough credit: 402 insufficient_credit, the increment kept as credit.
    server.confirm(client.txid()).await;
    let big = format!("{}/big", server.url);
    let update = client.sign(Amount::from_sat(20));
    let refused = fetch(&big, Some(&client.header(&offer, Some(&update), false))).await;
    assert_eq!(
        (refused.status, refused.reason().as_deref()),
        (402, Some("insufficient_credit"))
    );
    assert_eq!(
        refused.required.as_ref().unwrap().error.as_deref(),
        Some("insufficient_credit")
    );
    assert_eq!(refused.credit(), 1_100);
    // The same increment again adds nothing; a larger one covers the price.
    let again = fetch(&big, Some(&client.header(&offer, Some(&update), false))).await;
    assert_eq!((again.status, again.credit()), (402, 1_100));
    let update = client.sign(Amount::from_sat(3_900));
    let paid = fetch(&big, Some(&client.header(&offer, Some(&update), false))).await;
    assert_eq!(
        (paid.status, paid.consumed(), paid.credit()),
        (200, 5_000, 0)
    );
}

#[tokio::test]
async fn bad_payments_are_refused_with_their_reason() {
    let (server, mut client) = setup(Version::V2, 74).await;
    let url = format!("{}/articles/1", server.url);
    let offer = fetch(&url, None).await.required.unwrap();

    for junk in ["", "!!!", "eyJ4IjoxfQ", &"A".repeat(20_000)] {
        let r = fetch(&url, Some(junk)).await;
        assert_eq!(
            (r.status, r.reason().as_deref()),
            (402, Some("invalid_header")),
            "{junk:.20}"
        );
    }

    let newer = client.sign(Amount::from_sat(20));
    let older_header = {
        // An older update than the one stored: sign two, send the second first.
        let newest = client.sign(Amount::from_sat(20));
        let r = fetch(&url, Some(&client.header(&offer, Some(&newest), true))).await;
        assert_eq!(r.status, 200);
        client.header(
            &fetch(&url, None).await.required.unwrap(),
            Some(&newer),
            true,
        )
    };
    let r = fetch(&url, Some(&older_header)).await;
    assert_eq!(
        (r.status, r.reason().as_deref()),
        (402, Some("payment_decreased"))
    );

    // A forged signature.
    let mut forged = client.sign(Amount::from_sat(20));
    forged.client_change -= Amount::from_sat(1);
    let offer = fetch(&url, None).await.required.unwrap();
    let header = client.header(&offer, Some(&forged), true);
    let r = fetch(&url, Some(&header)).await;
    assert_eq!(
        (r.status, r.reason().as_deref()),
        (402, Some("bad_signature"))
    );

    // Tampered headers: amount, network, payee, channel.
    let good = client.sign(Amount::from_sat(1));
    let base = PaymentSignature::from_header(&client.header(&offer, Some(&good), true)).unwrap();
    let mut wrong_amount = base.clone();
    wrong_amount.payload.amount += Amount::from_sat(1);
    // Changed after it was authorised: refused before anything else is looked at.
    let r = fetch(&url, Some(&wrong_amount.to_header())).await;
    assert_eq!(
        (r.status, r.reason().as_deref()),
        (402, Some("bad_authorization"))
    );
    // Authorised as changed: the amount does not match the update.
    let wrong_amount = PaymentSignature::from_header(&common::authorize(wrong_amount)).unwrap();
    let mut wrong_network = base.clone();
    wrong_network.accepted.network = trickle_channel::http::caip2(bitcoin::Network::Signet);
    wrong_network.accepted.asset = trickle_channel::http::asset(&wrong_network.accepted.network);
    let mut wrong_payee = base.clone();
    wrong_payee.accepted.pay_to = common::pubkey(&common::key(77));
    let mut unknown = base.clone();
    unknown.payload.channel = "11".repeat(32).parse().unwrap();
    for (sig, reason) in [
        (wrong_amount, "invalid_header"),
        (wrong_network, "wrong_network"),
        (wrong_payee, "wrong_payee"),
        (unknown, "unknown_channel"),
    ] {
        let r = fetch(&url, Some(&sig.to_header())).await;
        assert_eq!((r.status, r.reason().as_deref()), (402, Some(reason)));
    }
    // After all that, the good one still pays.
    let r = fetch(&url, Some(&base.to_header())).await;
    assert_eq!(r.status, 200);
}

/// x402's own codes: a payment of another scheme or x402 version is no malformed header, and a
/// payment answering an offer must name the offer as x402 matches it (its nonce aside). None
/// of them charges anything.
#[tokio::test]
async fn payments_x402_refuses_get_x402s_codes() {
    let (server, mut client) = setup(Version::V2, 79).await;
    let url = format!("{}/articles/1", server.url);
    let offer = fetch(&url, None).await.required.unwrap();
    let update = client.sign(Amount::from_sat(10));
    let header = client.header(&offer, Some(&update), true);
    let good = PaymentSignature::from_header(&header).unwrap();
    let json = serde_json::to_value(&good).unwrap();
    let encode = |v: &serde_json::Value| STANDARD.encode(serde_json::to_vec(v).unwrap());
    let mut exact = json.clone();
    exact["accepted"]["scheme"] = "exact".into();
    exact["payload"] = serde_json::json!({ "signature": "0x00", "authorization": {} });
    let mut v3 = json.clone();
    v3["x402Version"] = 3.into();
    // The offer of another price (its authorisation does not cover `accepted.amount`).
    let mut repriced = good.clone();
    repriced.accepted.amount = Amount::from_sat(11);
    for (header, reason) in [
        (encode(&exact), "unsupported_scheme"),
        (encode(&v3), "invalid_x402_version"),
        (repriced.to_header(), "invalid_payment_requirements"),
    ] {
        let r = fetch(&url, Some(&header)).await;
        assert_eq!((r.status, r.reason().as_deref()), (402, Some(reason)));
        assert!(r.required.is_some(), "a fresh offer comes with the refusal");
    }
    // Nothing was charged or credited: the header still pays exactly the price.
    let r = fetch(&url, Some(&header)).await;
    assert_eq!((r.status, r.consumed()), (200, 10));
    assert_eq!(r.credit(), client.paid().to_sat() - 10);
}

#[tokio::test]
async fn a_failing_store_serves_nothing() {
    let store = Arc::new(FailingStore::new(Arc::new(MemoryStore::new())));
    let server = Server::start(store.clone()).await;
    let mut client = Client::open(&server.endpoint(), Version::V2, 75).await;
    let url = format!("{}/articles/1", server.url);
    let offer = fetch(&url, None).await.required.unwrap();
    let update = client.sign(Amount::from_sat(10));
    let header = client.header(&offer, Some(&update), true);
    store.fail_writes(true);
    let r = fetch(&url, Some(&header)).await;
    assert_eq!((r.status, r.reason().as_deref()), (503, Some("other")));
    assert!(!r.body.contains("article"), "nothing served: {}", r.body);
    // The endpoint signs nothing either: CLOSE needs its state stored first.
    let close = trickle_channel::WireMessage::Close(trickle_channel::Close { settlement: None });
    let a = client
        .post(&format!("/session/{}", client.txid()), &close)
        .await;
    assert_eq!(a.status, 503);
    assert!(a
        .messages
        .iter()
        .all(|m| !matches!(m, trickle_channel::WireMessage::Close(_))));
    assert_eq!(
        server.chain.broadcast_txids().len(),
        1,
        "only the contract was broadcast"
    );
    store.fail_writes(false);
    let r = fetch(&url, Some(&header)).await;
    assert_eq!((r.status, r.consumed()), (200, 10));
}

#[tokio::test]
async fn a_restarted_server_resumes_without_charging_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payee.sqlite3");
    let chain = common::RecordingChain::new();
    let store: Arc<dyn ChannelStore> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let server = Server::start_with(store, chain.clone()).await;
    let mut client = Client::open(&server.endpoint(), Version::V2, 76).await;
    let url = format!("{}/articles/1", server.url);
    let offer = fetch(&url, None).await.required.unwrap();
    let update = client.sign(Amount::from_sat(10));
    let header = client.header(&offer, Some(&update), true);
    assert_eq!(fetch(&url, Some(&header)).await.consumed(), 10);
    let old_url = server.url.clone();
    drop(server);

    // A new server on the same file (and, as a new process would, a new port).
    let store: Arc<dyn ChannelStore> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let server = Server::start_with(store, chain).await;
    assert_ne!(server.url, old_url);
    client.endpoint = server.endpoint();
    let hello = client.payer.resume().unwrap();
    client.payer = hello.state;
    let a = client.post("/open", &hello.send[0]).await;
    assert_eq!(
        (a.status, a.session.clone()),
        (200, Some(client.txid().to_string()))
    );

    // The ledger survived: nothing paid before the restart is charged or credited again.
    let status = common::session_status(&server, client.txid()).await;
    assert_eq!(
        (status["paid"].as_str(), status["consumed"].as_str()),
        (Some("1010"), Some("10"))
    );
    let url = format!("{}/articles/1", server.url);
    let offer = fetch(&url, None).await.required.unwrap();
    let r = fetch(&url, Some(&client.header(&offer, None, true))).await;
    assert_eq!((r.status, r.consumed(), r.credit()), (200, 10, 990));
    let r = fetch(&url, Some(&client.header(&offer, None, true))).await;
    assert_eq!(
        (r.status, r.consumed(), r.credit()),
        (200, 0, 990),
        "reload after restart"
    );
}

#[tokio::test]
async fn concurrent_requests_never_spend_credit_twice() {
    let (server, client) = setup(Version::V2, 77).await;
    let url = format!("{}/articles/1", server.url);
    let offer = fetch(&url, None).await.required.unwrap();
    // 1000 sat of opening credit at 10 sat a request: at most 100 of these are served.
    let requests = (0..120).map(|_| {
        let (url, header) = (url.clone(), client.header(&offer, None, false));
        tokio::spawn(async move { fetch(&url, Some(&header)).await.status })
    });
    let mut served = 0;
    for r in requests {
        match r.await.unwrap() {
            200 => served += 1,
            402 | 503 => {}
            other => panic!("status {other}"),
        }
    }
    assert!(served <= 100, "{served} served from credit for 100");
    let status = common::session_status(&server, client.txid()).await;
    assert_eq!(
        status["consumed"].as_str(),
        Some((served * 10).to_string().as_str())
    );
}

/// A store whose channel writes wait until [`GatedStore::open`]; everything else passes.
struct GatedStore {
    inner: Arc<dyn ChannelStore>,
    gate: tokio::sync::watch::Sender<bool>,
}

impl GatedStore {
    fn new(inner: Arc<dyn ChannelStore>) -> Self {
        Self {
            inner,
            gate: tokio::sync::watch::channel(true).0,
        }
    }

    fn open(&self, open: bool) {
        self.gate.send_replace(open);
    }
}

#[async_trait::async_trait]
impl ChannelStore for GatedStore {
    async fn insert_session(
        &self,
        id: &str,
        state: &trickle_channel::PayeeState,
        created_at: u64,
    ) -> Result<(), trickle_payee::store::StoreError> {
        self.inner.insert_session(id, state, created_at).await
    }
    async fn session(
        &self,
        id: &str,
    ) -> Result<Option<trickle_channel::PayeeState>, trickle_payee::store::StoreError> {
        self.inner.session(id).await
    }
    async fn update_session(
        &self,
        id: &str,
        state: &trickle_channel::PayeeState,
    ) -> Result<(), trickle_payee::store::StoreError> {
        self.inner.update_session(id, state).await
    }
    async fn open_channel(
        &self,
        session: &str,
        state: &trickle_channel::PayeeState,
        ledger: trickle_channel::credit::Ledger,
    ) -> Result<(), trickle_payee::store::StoreError> {
        self.inner.open_channel(session, state, ledger).await
    }
    async fn prune_sessions(
        &self,
        created_before: u64,
    ) -> Result<u64, trickle_payee::store::StoreError> {
        self.inner.prune_sessions(created_before).await
    }
    async fn channel(
        &self,
        txid: &bitcoin::Txid,
    ) -> Result<Option<trickle_payee::store::StoredChannel>, trickle_payee::store::StoreError> {
        self.inner.channel(txid).await
    }
    async fn channels(
        &self,
    ) -> Result<Vec<trickle_payee::store::StoredChannel>, trickle_payee::store::StoreError> {
        self.inner.channels().await
    }
    async fn update_channel(
        &self,
        txid: &bitcoin::Txid,
        revision: u64,
        update: trickle_payee::store::ChannelUpdate<'_>,
    ) -> Result<u64, trickle_payee::store::StoreError> {
        let mut gate = self.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
        self.inner.update_channel(txid, revision, update).await
    }
    async fn charged_at(
        &self,
        txid: &bitcoin::Txid,
        ticket: &str,
    ) -> Result<Option<String>, trickle_payee::store::StoreError> {
        self.inner.charged_at(txid, ticket).await
    }
}

#[tokio::test]
async fn a_paid_get_is_asked_of_the_site_before_its_charge_is_stored_and_sent_only_after() {
    use std::sync::atomic::AtomicUsize;
    let gated = Arc::new(GatedStore::new(Arc::new(MemoryStore::new())));
    let failing = Arc::new(FailingStore::new(gated.clone()));
    let payee = common::start_payee(failing.clone(), common::RecordingChain::new()).await;
    // A site that counts what it is asked.
    let (gets, posts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let site = axum::Router::new()
        .route(
            "/articles/{n}",
            axum::routing::get({
                let gets = gets.clone();
                move || async move {
                    gets.fetch_add(1, Ordering::SeqCst);
                    "article"
                }
            })
            .post({
                let posts = posts.clone();
                move || async move {
                    posts.fetch_add(1, Ordering::SeqCst);
                    "posted"
                }
            }),
        )
        .layer(payee.layer(common::prices()));
    let app = payee.endpoint().merge(site);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let endpoint = format!("{base}{}", trickle_payee::DEFAULT_ENDPOINT_PATH);
    let mut client = Client::open(&endpoint, Version::V2, 77).await;
    let url = format!("{base}/articles/1");

    // The store holds the write: the site is asked meanwhile, the client gets nothing yet.
    gated.open(false);
    let offer = fetch(&url, None).await.required.unwrap();
    let update = client.sign(Amount::from_sat(10));
    let header = client.header(&offer, Some(&update), true);
    let pending = tokio::spawn({
        let (url, header) = (url.clone(), header.clone());
        async move { fetch(&url, Some(&header)).await }
    });
    for _ in 0..500 {
        if gets.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(gets.load(Ordering::SeqCst), 1, "the site is asked");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        !pending.is_finished(),
        "nothing is sent before the payment is stored"
    );
    let stored = payee
        .store()
        .channel(&client.txid())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.ledger.consumed, Amount::ZERO);
    gated.open(true);
    let r = pending.await.unwrap();
    assert_eq!(
        (r.status, r.body.as_str(), r.consumed()),
        (200, "article", 10)
    );

    // A payment that is not stored: the site's answer is dropped.
    let offer = fetch(&url, None).await.required.unwrap();
    let update = client.sign(Amount::from_sat(10));
    let header = client.header(&offer, Some(&update), true);
    failing.fail_writes(true);
    let r = fetch(&url, Some(&header)).await;
    assert_eq!((r.status, r.reason().as_deref()), (503, Some("other")));
    assert!(!r.body.contains("article"), "nothing served: {}", r.body);
    // A refused payment never reaches the site.
    let asked = gets.load(Ordering::SeqCst);
    let r = fetch(&format!("{base}/articles/2"), Some(&header)).await;
    assert_eq!(
        (r.status, r.reason().as_deref()),
        (402, Some("wrong_resource"))
    );
    assert_eq!(gets.load(Ordering::SeqCst), asked);
    // Nor does a POST whose payment is not stored: other methods wait for the store.
    let post = reqwest::Client::new()
        .post(&url)
        .header(trickle_channel::http::PAYMENT_SIGNATURE, &header)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 503);
    assert_eq!(
        posts.load(Ordering::SeqCst),
        0,
        "the site never saw the POST"
    );
    failing.fail_writes(false);
    let post = reqwest::Client::new()
        .post(&url)
        .header(trickle_channel::http::PAYMENT_SIGNATURE, &header)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 200);
    assert_eq!(posts.load(Ordering::SeqCst), 1);
}

/// Two payees on one store, as two instances behind a load balancer: each remembers the
/// channels it charged, and a state the other has since moved on is never acted upon (the
/// store refuses a write at an old revision, and no refusal is decided on a remembered state).
#[tokio::test]
async fn two_payees_on_one_store_never_act_on_a_stale_channel() {
    let store: Arc<dyn ChannelStore> = Arc::new(MemoryStore::new());
    let a = Server::start(store.clone()).await;
    let b = Server::start(store).await;
    let mut client = Client::open(&a.endpoint(), Version::V2, 74).await;
    let at = |server: &Server, path: &str| format!("{}{path}", server.url);
    let offer = fetch(&at(&a, "/articles/1"), None).await.required.unwrap();

    // A charges the opening credit and remembers the channel.
    let paid = fetch(
        &at(&a, "/articles/1"),
        Some(&client.header(&offer, None, false)),
    )
    .await;
    assert_eq!((paid.status, paid.credit()), (200, 990));
    // B takes the rest of the credit (both have seen the contract confirmed).
    a.confirm(client.txid()).await;
    b.confirm(client.txid()).await;
    let update = client.sign(Amount::from_sat(4_010));
    let paid = fetch(
        &at(&b, "/big"),
        Some(&client.header(&offer, Some(&update), false)),
    )
    .await;
    assert_eq!(
        (paid.status, paid.consumed(), paid.credit()),
        (200, 5_000, 0)
    );
    // A remembers 990 of credit: its write is refused, it reads the channel again and finds
    // the 5-sat increment short of the price.
    let update = client.sign(Amount::from_sat(5));
    let short = fetch(
        &at(&a, "/articles/2"),
        Some(&client.header(&offer, Some(&update), false)),
    )
    .await;
    assert_eq!(
        (short.status, short.reason().as_deref(), short.credit()),
        (402, Some("insufficient_credit"), 5)
    );
    // B adds credit; A, remembering 5 sat, reads again before refusing and serves.
    let update = client.sign(Amount::from_sat(100));
    let free = fetch(
        &at(&b, "/free"),
        Some(&client.header(&offer, Some(&update), false)),
    )
    .await;
    assert_eq!((free.status, free.credit()), (200, 105));
    let paid = fetch(
        &at(&a, "/articles/3"),
        Some(&client.header(&offer, None, false)),
    )
    .await;
    assert_eq!((paid.status, paid.consumed(), paid.credit()), (200, 10, 95));

    let status = common::session_status(&a, client.txid()).await;
    assert_eq!(
        (status["paid"].as_str(), status["consumed"].as_str()),
        (Some("5115"), Some("5020"))
    );
}

/// A charged nonce reloads its resource for free only for `GET` and `HEAD`, and only within
/// `offer_timeout_secs` of its issue: a replayed `POST`, or a reload after the offer's life, gets
/// a fresh 402 (`nonce_spent`) and is charged nothing.
#[tokio::test]
async fn a_reload_is_free_only_for_safe_methods_and_only_within_the_offer_life() {
    let now = Arc::new(AtomicU64::new(1_700_000_000));
    let mut config = common::payee_config();
    config.clock = Clock::new({
        let now = now.clone();
        move || now.load(Ordering::SeqCst)
    });
    let life = u64::from(config.offer_timeout_secs);
    let store = Arc::new(MemoryStore::new());
    let server = Server::start_configured(config, store, common::RecordingChain::new()).await;
    let client = Client::open(&server.endpoint(), Version::V2, 78).await;
    let consumed = || async {
        let stored = server.payee.store().channel(&client.txid()).await.unwrap();
        stored.unwrap().ledger.consumed.to_sat()
    };
    let url = format!("{}/articles/1", server.url);

    // A paid POST, replayed: a fresh offer, nothing charged.
    let offer = fetch(&url, None).await.required.unwrap();
    let header = client.header(&offer, None, true);
    let post = request(Method::POST, &url, Some(&header)).await;
    assert_eq!(
        (post.status, post.body.as_str(), post.consumed()),
        (200, "posted 1", 10)
    );
    let replay = request(Method::POST, &url, Some(&header)).await;
    assert_eq!(
        (replay.status, replay.reason().as_deref()),
        (402, Some("nonce_spent"))
    );
    assert_eq!(
        replay.required.unwrap().error.as_deref(),
        Some("nonce_spent")
    );
    assert_eq!(consumed().await, 10);

    // A paid GET: reloaded free until the offer's life is over, then a fresh offer.
    let offer = fetch(&url, None).await.required.unwrap();
    let header = client.header(&offer, None, true);
    let paid = fetch(&url, Some(&header)).await;
    assert_eq!((paid.status, paid.consumed()), (200, 10));
    now.fetch_add(life, Ordering::SeqCst);
    let reload = fetch(&url, Some(&header)).await;
    assert_eq!((reload.status, reload.consumed()), (200, 0));
    let head = request(Method::HEAD, &url, Some(&header)).await;
    assert_eq!((head.status, head.consumed()), (200, 0));
    now.fetch_add(1, Ordering::SeqCst);
    let late = fetch(&url, Some(&header)).await;
    assert_eq!(
        (late.status, late.reason().as_deref()),
        (402, Some("nonce_spent"))
    );
    assert_eq!(consumed().await, 20);
}
