//! Test harness: the keys, terms and funding coin of `trickle_testkit`, a recording chain, an
//! in-process server and an HTTP client built on `PayerState`.
#![allow(dead_code)]

pub mod process;
pub mod suite;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use bitcoin::secp256k1::SecretKey;
use bitcoin::{Amount, FeeRate, Network, OutPoint, Transaction, Txid};
use trickle_channel::http::{
    ChannelPayment, PaymentRequired, PaymentResponse, PaymentSignature, Resource, PAYMENT_REQUIRED,
    PAYMENT_RESPONSE, PAYMENT_SIGNATURE, X402_VERSION,
};
use trickle_channel::*;
use trickle_payee::chain::{Chain, ChainError, Spend};
use trickle_payee::store::{ChannelStore, StoredChannel};
use trickle_payee::{Keys, Payee, PayeeConfig, Price, Prices};

pub use trickle_testkit::funding::Coin;
pub use trickle_testkit::keys::*;
pub use trickle_testkit::terms::*;

pub const SEED: [u8; 32] = [9; 32];

pub fn server_key() -> SecretKey {
    // Not the derived key: tests only need it to sign in memory (see `memory_channel`).
    key(2)
}

/// A chain double: a settable tip, every broadcast recorded, spends and confirmations set by
/// the test.
pub struct RecordingChain {
    pub tip: Mutex<ChainTip>,
    pub broadcasts: Mutex<Vec<Transaction>>,
    pub spends: Mutex<HashMap<OutPoint, Spend>>,
    /// The height each confirmed transaction is at.
    pub confirmed: Mutex<HashMap<Txid, u32>>,
    pub reject: AtomicBool,
}

impl RecordingChain {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            tip: Mutex::new(TIP),
            broadcasts: Mutex::default(),
            spends: Mutex::default(),
            confirmed: Mutex::default(),
            reject: AtomicBool::new(false),
        })
    }

    pub fn broadcast_txids(&self) -> Vec<Txid> {
        self.broadcasts
            .lock()
            .unwrap()
            .iter()
            .map(|t| t.compute_txid())
            .collect()
    }

    pub fn set_height(&self, height: u32) {
        self.tip.lock().unwrap().height = height;
    }

    /// Puts `txid` in a block at the tip.
    pub fn confirm(&self, txid: Txid) {
        let height = self.tip.lock().unwrap().height;
        self.confirmed.lock().unwrap().insert(txid, height);
    }
}

#[async_trait::async_trait]
impl Chain for RecordingChain {
    async fn tip(&self) -> Result<ChainTip, ChainError> {
        Ok(*self.tip.lock().unwrap())
    }

    async fn broadcast(&self, tx: &Transaction) -> Result<(), ChainError> {
        if self.reject.load(Ordering::SeqCst) {
            return Err(ChainError::Rejected(
                "bad-txns-inputs-missingorspent".into(),
            ));
        }
        self.broadcasts.lock().unwrap().push(tx.clone());
        Ok(())
    }

    async fn confirmation_height(&self, txid: &Txid) -> Result<Option<u32>, ChainError> {
        Ok(self.confirmed.lock().unwrap().get(txid).copied())
    }

    /// No fee market here: settlements pay the configured floor.
    async fn fee_estimate(&self, _target: u32) -> Result<Option<FeeRate>, ChainError> {
        Ok(None)
    }

    async fn spend_of(&self, outpoint: &OutPoint) -> Result<Option<Spend>, ChainError> {
        Ok(self.spends.lock().unwrap().get(outpoint).cloned())
    }
}

pub fn payee_config() -> PayeeConfig {
    PayeeConfig::new(Network::Regtest, policy())
}

pub fn prices() -> Prices {
    Prices::new()
        .with("/articles", Price::sat(10))
        .with("/big", Price::sat(5_000))
}

/// The demo site: priced `/articles/{n}` (GET and POST) and `/big`, free `/free`.
pub fn site(payee: &Payee) -> Router {
    let site = Router::new()
        .route(
            "/articles/{n}",
            get(|Path(n): Path<String>| async move { format!("article {n}") })
                .post(|Path(n): Path<String>| async move { format!("posted {n}") }),
        )
        .route("/big", get(|| async { "big" }))
        .route("/free", get(|| async { "free" }))
        .layer(payee.layer(prices()));
    payee.endpoint().merge(site).merge(payee.operator())
}

/// The body of a GET of `url` (the operator's `/status`, `/metrics`...).
pub async fn get_text(url: &str) -> String {
    let answer = reqwest::get(url).await.expect("answered");
    answer.text().await.expect("a body")
}

/// A payee on 127.0.0.1, port 0, serving [`site`] until the test's runtime ends.
pub struct Server {
    pub url: String,
    pub payee: Payee,
    pub chain: Arc<RecordingChain>,
}

impl Server {
    pub async fn start(store: Arc<dyn ChannelStore>) -> Self {
        Self::start_with(store, RecordingChain::new()).await
    }

    pub async fn start_with(store: Arc<dyn ChannelStore>, chain: Arc<RecordingChain>) -> Self {
        Self::start_configured(payee_config(), store, chain).await
    }

    pub async fn start_configured(
        config: PayeeConfig,
        store: Arc<dyn ChannelStore>,
        chain: Arc<RecordingChain>,
    ) -> Self {
        let payee = start_payee_with(config, store, chain.clone()).await;
        let url = serve_site(&payee).await;
        Self { url, payee, chain }
    }

    /// Confirms the contract `txid` and lets the chain duties see it, so that its channel is
    /// served beyond the unconfirmed allowance.
    pub async fn confirm(&self, txid: Txid) {
        self.chain.confirm(txid);
        self.payee.chain_duties().await.expect("chain duties");
    }

    pub fn endpoint(&self) -> String {
        format!("{}{}", self.url, trickle_payee::DEFAULT_ENDPOINT_PATH)
    }
}

/// A payee with the test seed and configuration.
pub async fn start_payee(store: Arc<dyn ChannelStore>, chain: Arc<dyn Chain>) -> Payee {
    start_payee_with(payee_config(), store, chain).await
}

/// A payee with the test seed and `config`.
pub async fn start_payee_with(
    config: PayeeConfig,
    store: Arc<dyn ChannelStore>,
    chain: Arc<dyn Chain>,
) -> Payee {
    let keys = Keys::from_seed(&SEED).expect("keys");
    Payee::start(config, keys, store, chain)
        .await
        .expect("payee starts")
}

/// Serves [`site`] of `payee` on 127.0.0.1, port 0; returns its base URL.
pub async fn serve_site(payee: &Payee) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = site(payee);
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A paying client over HTTP, built on `PayerState`.
pub struct Client {
    pub http: reqwest::Client,
    pub endpoint: String,
    pub payer: PayerState,
    pub session: String,
    pub tip: ChainTip,
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub session: Option<String>,
    pub messages: Vec<WireMessage>,
}

impl Client {
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> Answer {
        let resp = self
            .http
            .post(format!("{}{path}", self.endpoint))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Answer {
            status,
            session: json["session"].as_str().map(str::to_owned),
            messages: json["messages"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|m| {
                            WireMessage::from_base64url(m.as_str().expect("string"))
                                .expect("decodes")
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    pub async fn post(&self, path: &str, msg: &WireMessage) -> Answer {
        let contract = self.payer.committed_channel().map(|c| c.contract_txid());
        self.post_raw(path, message_body(msg, contract)).await
    }

    fn feed(&mut self, messages: Vec<WireMessage>) -> Vec<WireMessage> {
        let k = key(CLIENT);
        let ctx = PayerContext {
            key: &k,
            tip: self.tip,
            refund_fee_rate: fee_rate(),
        };
        let mut out = Vec::new();
        for msg in messages {
            let step = self.payer.on_message(&ctx, msg).expect("payer accepts");
            self.payer = step.state;
            out.extend(step.send);
        }
        out
    }

    /// Opens a channel of `version` over the endpoint; the first payment is the minimum.
    pub async fn open(endpoint: &str, version: Version, coin_tag: u8) -> Self {
        Self::open_funded(endpoint, version, TIP, &Coin::made_up(coin_tag)).await
    }

    /// Opens a channel funded by `coin`, the client seeing the chain at `tip`.
    pub async fn open_funded(endpoint: &str, version: Version, tip: ChainTip, coin: &Coin) -> Self {
        match Self::try_open(endpoint, version, tip, coin).await {
            Ok(client) => client,
            Err(answer) => panic!("open refused: {answer:?}"),
        }
    }

    /// Opens a channel; the first answer that is not 200 is returned as the error.
    pub async fn try_open(
        endpoint: &str,
        version: Version,
        tip: ChainTip,
        coin: &Coin,
    ) -> Result<Self, Answer> {
        let hello = PayerState::start(payer_config(version));
        let mut client = Self {
            http: reqwest::Client::new(),
            endpoint: endpoint.to_owned(),
            payer: hello.state,
            session: String::new(),
            tip,
        };
        let answer = client.post("/open", &hello.send[0]).await;
        if answer.status != 200 {
            return Err(answer);
        }
        client.session = answer.session.expect("session");
        assert!(client.feed(answer.messages).is_empty());
        let PayerState::AwaitingFunding { contract, .. } = &client.payer else {
            panic!("payer awaits funding, is {}", client.payer.name())
        };
        let contract_tx = coin.fund(contract.output());
        let k = key(CLIENT);
        let ctx = PayerContext {
            key: &k,
            tip: client.tip,
            refund_fee_rate: fee_rate(),
        };
        let step = client
            .payer
            .contract_funded(&ctx, contract_tx, Amount::ZERO)
            .expect("funded");
        client.payer = step.state;
        let mut to_send = step.send;
        while let Some(msg) = to_send.pop() {
            let answer = client
                .post(&format!("/session/{}", client.session), &msg)
                .await;
            if answer.status != 200 {
                return Err(answer);
            }
            client.session = answer.session.expect("session");
            to_send.extend(client.feed(answer.messages));
        }
        assert!(
            matches!(client.payer, PayerState::Ready { .. }),
            "payer is {}",
            client.payer.name()
        );
        Ok(client)
    }

    pub fn txid(&self) -> Txid {
        self.payer
            .committed_channel()
            .expect("channel")
            .contract_txid()
    }

    pub fn paid(&self) -> Amount {
        self.payer.committed_channel().expect("channel").paid()
    }

    /// Signs `increment` more and returns the `UPDATE_PAYMENT`.
    pub fn sign(&mut self, increment: Amount) -> UpdatePayment {
        let k = key(CLIENT);
        let ctx = PayerContext {
            key: &k,
            tip: self.tip,
            refund_fee_rate: fee_rate(),
        };
        let step = self.payer.pay(&ctx, increment).expect("pay");
        self.payer = step.state;
        let Some(WireMessage::UpdatePayment(u)) = step.send.into_iter().next() else {
            panic!("pay sends UPDATE_PAYMENT")
        };
        u
    }

    /// A `PAYMENT-SIGNATURE` answering `offer` (nonce `Some`) or pre-armed (`None`).
    pub fn header(
        &self,
        offer: &PaymentRequired,
        update: Option<&UpdatePayment>,
        nonce: bool,
    ) -> String {
        let accepted = offer
            .channel_offer(Network::Regtest)
            .expect("offer")
            .clone();
        let value = self
            .payer
            .committed_channel()
            .expect("channel")
            .funding
            .contract
            .value;
        let amount = update.map_or(self.paid(), |u| value - u.client_change);
        let mut sig = PaymentSignature {
            x402_version: X402_VERSION,
            resource: Resource {
                url: offer.resource.url.clone(),
                description: String::new(),
                mime_type: String::new(),
            },
            payload: ChannelPayment {
                channel: self.txid(),
                amount,
                update: update.map(|u| WireMessage::UpdatePayment(u.clone()).to_base64url()),
                nonce: nonce.then(|| accepted.extra.nonce.clone()),
                ticket: None,
                authorization: None,
            },
            accepted,
        };
        trickle_channel::auth::authorize_payment(&mut sig, &key(CLIENT), fresh_ticket());
        sig.to_header()
    }
}

/// `sig` authorised again by the client's key, after a test changed it.
pub fn authorize(mut sig: PaymentSignature) -> String {
    trickle_channel::auth::authorize_payment(&mut sig, &key(CLIENT), fresh_ticket());
    sig.to_header()
}

/// Ticket bytes never handed out before in this test process.
pub fn fresh_ticket() -> [u8; trickle_channel::http::TICKET_LEN] {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut out = [0u8; trickle_channel::http::TICKET_LEN];
    out[..8].copy_from_slice(&n.to_be_bytes());
    out
}

/// A GET with an optional `PAYMENT-SIGNATURE`.
pub async fn fetch(url: &str, signature: Option<&str>) -> Fetched {
    request(reqwest::Method::GET, url, signature).await
}

/// A request of `method` with an optional `PAYMENT-SIGNATURE`.
pub async fn request(method: reqwest::Method, url: &str, signature: Option<&str>) -> Fetched {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(s) = signature {
        req = req.header(PAYMENT_SIGNATURE, s);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_owned())
    };
    let required =
        header(PAYMENT_REQUIRED).map(|h| PaymentRequired::from_header(&h).expect("valid offer"));
    let receipt =
        header(PAYMENT_RESPONSE).map(|h| PaymentResponse::from_header(&h).expect("valid receipt"));
    let body = resp.text().await.expect("body");
    Fetched {
        status,
        required,
        receipt,
        body,
    }
}

#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub required: Option<PaymentRequired>,
    pub receipt: Option<PaymentResponse>,
    pub body: String,
}

impl Fetched {
    pub fn reason(&self) -> Option<String> {
        self.receipt.as_ref().and_then(|r| r.error_reason.clone())
    }
    pub fn consumed(&self) -> u64 {
        self.receipt
            .as_ref()
            .and_then(|r| r.receipt.as_ref())
            .expect("receipt")
            .consumed
            .to_sat()
    }
    pub fn credit(&self) -> u64 {
        self.receipt
            .as_ref()
            .and_then(|r| r.receipt.as_ref())
            .expect("receipt")
            .credit
            .to_sat()
    }
}

/// Payee states of one channel driven in memory (no HTTP), for store tests:
/// (a pending session state, the open channel, the channel after a payment, the channel closing).
pub fn memory_channel(version: Version, tag: u8) -> [PayeeState; 4] {
    let pk = key(CLIENT);
    let sk = server_key();
    let policy = policy();
    let pctx = PayerContext {
        key: &pk,
        tip: TIP,
        refund_fee_rate: fee_rate(),
    };
    let sctx = PayeeContext {
        policy: &policy,
        key: &sk,
        tip: TIP,
        close_fee_rate: fee_rate(),
        close_fee_ceiling: fee_rate(),
    };
    let hello = PayerState::start(payer_config(version));
    let WireMessage::ClientVersion(cv) = &hello.send[0] else {
        panic!()
    };
    let start = PayeeState::start(&sctx, cv).expect("start");
    let pending = start.state.clone();
    let mut payer = hello.state;
    for m in start.send {
        payer = payer.on_message(&pctx, m).expect("payer").state;
    }
    let PayerState::AwaitingFunding { contract, .. } = &payer else {
        panic!()
    };
    let tx = Coin::made_up(tag).fund(contract.output());
    let step = payer
        .contract_funded(&pctx, tx, Amount::ZERO)
        .expect("funded");
    payer = step.state;
    let mut payee = start.state;
    let mut to_payee = step.send;
    while let Some(m) = to_payee.pop() {
        let s = payee.on_message(&sctx, m).expect("payee");
        payee = s.state;
        for r in s.send {
            let p = payer.on_message(&pctx, r).expect("payer");
            payer = p.state;
            to_payee.extend(p.send);
        }
    }
    let ready = payee.clone();
    let step = payer.pay(&pctx, Amount::from_sat(500)).expect("pay");
    let paid = payee
        .on_message(&sctx, step.send[0].clone())
        .expect("paid")
        .state;
    let closing = paid.close(&sctx).expect("close").state;
    [pending, ready, paid, closing]
}

/// `GET {endpoint}/session/{txid}` as JSON.
/// The endpoint body for `msg`; a `CLOSE` of the channel `contract`, and a resume, carry the
/// client's authorisation, as the wallet sends them.
pub fn message_body(msg: &WireMessage, contract: Option<Txid>) -> Vec<u8> {
    let mut body = serde_json::json!({ "message": msg.to_base64url() });
    let request = match (msg, contract) {
        (WireMessage::Close(Close { settlement: None }), Some(txid)) => {
            Some((auth::ChannelRequest::Close, txid))
        }
        (WireMessage::ClientVersion(hello), _) => hello
            .previous_contract
            .map(|txid| (auth::ChannelRequest::Resume, txid)),
        _ => None,
    };
    if let Some((request, txid)) = request {
        body["authorization"] = auth::authorize(request, &txid, &key(CLIENT)).into();
    }
    body.to_string().into_bytes()
}

/// `GET {endpoint}/session/{txid}`, authorised by the test client's key.
pub fn status_url(endpoint: &str, txid: Txid) -> String {
    let authorization = auth::authorize(auth::ChannelRequest::Status, &txid, &key(CLIENT));
    format!("{endpoint}/session/{txid}?authorization={authorization}")
}

/// The stored channel `txid`.
pub async fn stored(payee: &Payee, txid: Txid) -> StoredChannel {
    payee
        .store()
        .channel(&txid)
        .await
        .expect("store")
        .expect("channel")
}

/// What the store holds for the channel `txid`: (paid, consumed), in sat.
pub async fn stored_totals(payee: &Payee, txid: Txid) -> (u64, u64) {
    let stored = stored(payee, txid).await;
    (stored.ledger.paid.to_sat(), stored.ledger.consumed.to_sat())
}

/// The expiry height of the contract of the stored channel `txid`.
pub async fn stored_expiry(payee: &Payee, txid: Txid) -> u32 {
    let stored = stored(payee, txid).await;
    let channel = stored.state.channel().expect("open");
    channel.funding.contract.expiry.to_consensus_u32()
}

pub async fn session_status(server: &Server, txid: Txid) -> serde_json::Value {
    let text = reqwest::get(status_url(&server.endpoint(), txid))
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    serde_json::from_str(&text).expect("json")
}
