//! Crash injection: the real `trickle-payee` binary, as a proxy in front of a site on a regtest
//! chain, is killed with SIGKILL at random moments (seeded; `TRICKLE_CRASH_SEED` replays a run)
//! while a client opens a channel, pays pages (after a 402 and pre-armed) and closes it. Each
//! time the payee comes back on the same database and port, the client resumes the channel by
//! its id, and the test checks what the restarted payee holds against what the client saw:
//!
//! (a) nothing served without a stored payment: the payee's consumed total covers every paid
//!     page the client received;
//! (b) no payment lost: the payee holds at least every amount a receipt acknowledged, and never
//!     more than the client signed;
//! (c) the channel closes with the best state: the settlement on chain pays the payee exactly
//!     the best stored amount (less the close fee it pays) and the client the rest.
#![allow(clippy::unwrap_used)] // tests may panic on what cannot happen

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::{Amount, Transaction, Txid};
use common::process::{
    coin, free_port, payout_address, serve, site, write_config, PayeeProcess, PATIENCE,
};
use common::{key, payer_config, Client, Coin, CLIENT};
use trickle_channel::http::{
    PaymentRequired, PaymentResponse, PAYMENT_REQUIRED, PAYMENT_RESPONSE, PAYMENT_SIGNATURE,
};
use trickle_channel::{
    ChainTip, ClientVersion, Close, PayerContext, PayerState, UpdatePayment, Version, WireMessage,
};
use trickle_regtest::{Config, Node};
use trickle_testkit::crash_seed::{seed, Rng};

const PRICE: u64 = 10;
/// Random kills while the channel opens and pays; the close adds its own.
const KILLS: u32 = 24;

/// What the client has seen, shared with the killer, which checks it against the payee after
/// every restart.
#[derive(Clone, Debug, Default)]
struct Seen {
    /// The channel, once open.
    channel: Option<Txid>,
    /// The total the client signed (grows before each payment leaves).
    signed: u64,
    /// The highest `paid` any receipt or `CHANNEL_OPEN` acknowledged.
    acked: u64,
    /// The payee's credit by the last receipt.
    credit: u64,
    /// Paid pages received (each once).
    served: u64,
    /// Pages served as a reload of a payment whose answer was lost in a kill.
    reloads: u64,
    /// Pre-armed pages received.
    pre_armed: u64,
    /// Requests that failed because the payee died under them.
    interrupted: u64,
    /// Pre-armed payments sent again after the payee died under them: the one case where a
    /// page may be charged twice (a pre-armed payment has no nonce to reload it with).
    pre_armed_retries: u64,
}

/// The payee's account of the channel (`GET {endpoint}/session/{txid}`).
#[derive(Debug)]
struct Status {
    state: String,
    paid: u64,
    consumed: u64,
}

async fn status(http: &reqwest::Client, endpoint: &str, txid: Txid) -> Status {
    let text = http
        .get(common::status_url(endpoint, txid))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let n = |f: &str| {
        json[f]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("status of {txid} has no {f}: {text}"))
    };
    Status {
        state: json["state"].as_str().unwrap().to_owned(),
        paid: n("paid"),
        consumed: n("consumed"),
    }
}

/// Checks (a) and (b): the client's view is read first, then the payee's, then what the client
/// signed — each only grows, so the order makes every comparison sound while the client runs.
async fn check(seen: &Mutex<Seen>, http: &reqwest::Client, endpoint: &str, when: &str) {
    let before = seen.lock().unwrap().clone();
    let Some(txid) = before.channel else {
        return;
    };
    let stored = status(http, endpoint, txid).await;
    let signed = seen.lock().unwrap().signed;
    assert!(
        stored.consumed >= before.served * PRICE,
        "{when}: pages served without a stored payment: {} pages, {} consumed",
        before.served,
        stored.consumed
    );
    assert!(
        stored.paid >= before.acked,
        "{when}: a payment was lost: acknowledged {}, stored {}",
        before.acked,
        stored.paid
    );
    assert!(
        stored.paid <= signed,
        "{when}: the payee holds {} but the client signed {signed}",
        stored.paid
    );
    assert!(stored.consumed <= stored.paid, "{when}: {stored:?}");
}

/// Why a request did not get an answer: the payee died under it.
#[derive(Debug)]
struct Down;

struct Answer {
    status: u16,
    required: Option<PaymentRequired>,
    receipt: Option<PaymentResponse>,
    body: String,
}

/// A client paying over one channel, surviving payee deaths.
struct Payer {
    client: Client,
    http: reqwest::Client,
    site: String,
    endpoint: String,
    seen: Arc<Mutex<Seen>>,
    wallet: Coin,
    offer: Option<PaymentRequired>,
}

impl Payer {
    fn ctx_key() -> bitcoin::secp256k1::SecretKey {
        key(CLIENT)
    }

    fn feed(&mut self, messages: Vec<WireMessage>) -> Vec<WireMessage> {
        let k = Self::ctx_key();
        let ctx = PayerContext {
            key: &k,
            tip: self.client.tip,
            refund_fee_rate: common::fee_rate(),
        };
        let mut out = Vec::new();
        for msg in messages {
            let step = self
                .client
                .payer
                .on_message(&ctx, msg.clone())
                .unwrap_or_else(|e| panic!("payer refuses {msg:?}: {e}"));
            self.client.payer = step.state;
            out.extend(step.send);
        }
        out
    }

    async fn post(
        &self,
        path: &str,
        msg: &WireMessage,
    ) -> Result<(u16, Option<String>, Vec<WireMessage>), Down> {
        let contract = self
            .client
            .payer
            .committed_channel()
            .map(|c| c.contract_txid());
        let body = common::message_body(msg, contract);
        let resp = self
            .http
            .post(format!("{}{path}", self.endpoint))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|_| Down)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|_| Down)?;
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let messages = json["messages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| WireMessage::from_base64url(m.as_str().unwrap()).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        Ok((
            status,
            json["session"].as_str().map(str::to_owned),
            messages,
        ))
    }

    async fn get(&self, url: &str, signature: Option<&str>) -> Result<Answer, Down> {
        let mut req = self.http.get(url);
        if let Some(s) = signature {
            req = req.header(PAYMENT_SIGNATURE, s);
        }
        let resp = req.send().await.map_err(|_| Down)?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let required = header(PAYMENT_REQUIRED).map(|h| PaymentRequired::from_header(&h).unwrap());
        let receipt = header(PAYMENT_RESPONSE).map(|h| PaymentResponse::from_header(&h).unwrap());
        let body = resp.text().await.map_err(|_| Down)?;
        Ok(Answer {
            status,
            required,
            receipt,
            body,
        })
    }

    fn interrupted(&self) {
        self.seen.lock().unwrap().interrupted += 1;
    }

    /// Opens the channel over the endpoint, carrying on after payee deaths: an interrupted
    /// `/open` starts again; an interrupted message of a session is sent again; a session that
    /// became the channel before its answer was lost is resumed by the contract's id.
    async fn open(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        'open: loop {
            assert!(Instant::now() < deadline, "the channel never opened");
            let hello = PayerState::start(payer_config(Version::V2));
            self.client.payer = hello.state;
            let Ok((200, Some(session), messages)) = self.post("/open", &hello.send[0]).await
            else {
                self.interrupted();
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue 'open;
            };
            self.client.session = session;
            assert!(self.feed(messages).is_empty());
            let PayerState::AwaitingFunding { contract, .. } = &self.client.payer else {
                panic!("payer awaits funding, is {}", self.client.payer.name())
            };
            let contract_tx = self.wallet.fund(contract.output());
            let k = Self::ctx_key();
            let ctx = PayerContext {
                key: &k,
                tip: self.client.tip,
                refund_fee_rate: common::fee_rate(),
            };
            let step = self
                .client
                .payer
                .contract_funded(&ctx, contract_tx.clone(), Amount::ZERO)
                .unwrap();
            self.client.payer = step.state;
            let mut outbox = step.send;
            while let Some(msg) = outbox.pop() {
                loop {
                    assert!(Instant::now() < deadline, "the channel never opened");
                    let path = format!("/session/{}", self.client.session);
                    match self.post(&path, &msg).await {
                        Ok((200, session, messages)) => {
                            self.client.session = session.unwrap();
                            outbox.extend(self.feed(messages));
                            break;
                        }
                        Ok((404, ..)) if matches!(msg, WireMessage::ProvideContract(_)) => {
                            // The session is gone: it became the channel and the answer was
                            // lost. The channel is found again by its contract.
                            let txid = contract_tx.compute_txid();
                            let resume = WireMessage::ClientVersion(ClientVersion {
                                major: Version::V2.major(),
                                minor: 0,
                                time_window_blocks: 0,
                                previous_contract: Some(txid),
                            });
                            match self.post("/open", &resume).await {
                                Ok((200, Some(session), messages)) => {
                                    assert_eq!(session, txid.to_string(), "resumed by id");
                                    self.client.session = session;
                                    let open: Vec<_> = messages
                                        .into_iter()
                                        .filter(|m| matches!(m, WireMessage::ChannelOpen(_)))
                                        .collect();
                                    assert_eq!(open.len(), 1, "CHANNEL_OPEN for a resume");
                                    outbox.extend(self.feed(open));
                                    break;
                                }
                                Ok(other) => panic!("resume after a lost open: {other:?}"),
                                Err(Down) => self.interrupted(),
                            }
                        }
                        Ok(other) => panic!("open refused: {other:?}"),
                        Err(Down) => self.interrupted(),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            assert!(
                matches!(self.client.payer, PayerState::Ready { .. }),
                "payer is {}",
                self.client.payer.name()
            );
            let mut seen = self.seen.lock().unwrap();
            seen.channel = Some(self.client.txid());
            seen.signed = self.client.paid().to_sat();
            // The first payment is the channel's first credit.
            seen.acked = seen.signed;
            seen.credit = seen.signed;
            return;
        }
    }

    /// After a payee death: resumes the channel by its id (`CLIENT_VERSION` with the contract),
    /// and sends the latest payment again if the payee does not hold it.
    async fn resume(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        'resume: loop {
            assert!(Instant::now() < deadline, "the channel never resumed");
            let step = self.client.payer.resume().unwrap();
            let txid = self.client.txid();
            match self.post("/open", &step.send[0]).await {
                Ok((200, Some(session), messages)) => {
                    assert_eq!(session, txid.to_string(), "the same channel, by its id");
                    self.client.payer = step.state;
                    for m in &messages {
                        if let WireMessage::ChannelOpen(open) = m {
                            let acked = self.seen.lock().unwrap().acked;
                            assert!(
                                open.amount_paid.to_sat() >= acked,
                                "a payment was lost: acknowledged {acked}, resumed at {}",
                                open.amount_paid
                            );
                        }
                    }
                    let resend = self.feed(messages);
                    self.note_acked();
                    for msg in resend {
                        match self.post(&format!("/session/{txid}"), &msg).await {
                            Ok((200, _, messages)) => {
                                assert!(self.feed(messages).is_empty());
                                self.note_acked();
                            }
                            Ok(other) => panic!("resent payment refused: {other:?}"),
                            Err(Down) => {
                                self.interrupted();
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                continue 'resume;
                            }
                        }
                    }
                    return;
                }
                Ok(other) => panic!("resume refused: {other:?}"),
                Err(Down) => {
                    self.interrupted();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn note_acked(&self) {
        let acked = self
            .client
            .payer
            .committed_channel()
            .unwrap()
            .acknowledged
            .to_sat();
        let mut seen = self.seen.lock().unwrap();
        seen.acked = seen.acked.max(acked);
    }

    /// Signs what the payee needs to charge `price`, beyond its credit and what it was sent
    /// and has not acknowledged yet.
    fn cover(&mut self, price: u64) {
        let (credit, acked) = {
            let seen = self.seen.lock().unwrap();
            (seen.credit, seen.acked)
        };
        let unacked = self.client.paid().to_sat() - acked;
        if credit + unacked < price {
            let _: UpdatePayment = self.client.sign(Amount::from_sat(price - credit - unacked));
            // Counted as signed before it can leave.
            self.seen.lock().unwrap().signed = self.client.paid().to_sat();
        }
    }

    /// The `PAYMENT-SIGNATURE` for `offer`: the latest payment while it is unacknowledged.
    fn header(&self, offer: &PaymentRequired, nonce: bool) -> String {
        let acked = self.seen.lock().unwrap().acked;
        let channel = self.client.payer.committed_channel().unwrap();
        let update = (channel.paid().to_sat() > acked).then(|| channel.latest.clone());
        self.client.header(offer, update.as_ref(), nonce)
    }

    /// Takes a receipt in: checks it and counts what it says.
    fn receipt(&mut self, answer: &Answer, page: u32) -> bool {
        let response = answer.receipt.as_ref().expect("a receipt");
        let receipt = response.receipt.as_ref().expect("the channel's state");
        assert_eq!(receipt.channel, self.client.txid());
        let mut seen = self.seen.lock().unwrap();
        assert!(
            receipt.paid.to_sat() <= seen.signed,
            "the payee acknowledged {} but the client signed {}",
            receipt.paid,
            seen.signed
        );
        seen.acked = seen.acked.max(receipt.paid.to_sat());
        seen.credit = receipt.credit.to_sat();
        if answer.status != 200 {
            return false;
        }
        assert_eq!(answer.body, format!("article {page}"));
        seen.served += 1;
        match receipt.consumed.to_sat() {
            PRICE => {}
            0 => seen.reloads += 1,
            other => panic!("page {page} charged {other}"),
        }
        true
    }

    /// Pays for page `page`: pre-armed, or after a 402; retries after payee deaths with the
    /// same payment (a reload is not charged twice).
    async fn pay_page(&mut self, page: u32, pre_armed: bool) {
        let url = format!("{}/articles/{page}", self.site);
        let mut pre_armed = pre_armed && self.offer.is_some();
        for _ in 0..20 {
            let offer = if pre_armed {
                self.offer.clone().unwrap()
            } else {
                let answer = loop {
                    match self.get(&url, None).await {
                        Ok(answer) => break answer,
                        Err(Down) => {
                            self.interrupted();
                            self.resume().await;
                        }
                    }
                };
                assert_eq!(answer.status, 402, "an unpaid page: {}", answer.body);
                answer.required.unwrap()
            };
            self.cover(PRICE);
            let header = self.header(&offer, !pre_armed);
            let answer = loop {
                match self.get(&url, Some(&header)).await {
                    Ok(answer) => break answer,
                    Err(Down) => {
                        self.interrupted();
                        if pre_armed {
                            self.seen.lock().unwrap().pre_armed_retries += 1;
                        }
                        self.resume().await;
                    }
                }
            };
            if self.receipt(&answer, page) {
                if pre_armed {
                    self.seen.lock().unwrap().pre_armed += 1;
                }
                self.offer = Some(offer);
                return;
            }
            assert_eq!(answer.status, 402, "refused: {:?}", answer.receipt);
            assert_eq!(
                answer.receipt.as_ref().unwrap().error_reason.as_deref(),
                Some("insufficient_credit")
            );
            // The payee has less credit than the client counted (a receipt lost in a kill):
            // pay the difference after this 402.
            pre_armed = false;
        }
        panic!("page {page} never paid");
    }

    /// Asks the payee to close; returns the settlement. Retries after payee deaths: a payee
    /// that stored the close re-sends the same settlement, and so does one asked again after
    /// the client has it.
    async fn close(&mut self, txid: Txid) -> Transaction {
        let msg = match self.client.payer.close() {
            Ok(step) => {
                self.client.payer = step.state;
                step.send[0].clone()
            }
            Err(_) => WireMessage::Close(Close { settlement: None }),
        };
        let closing = matches!(self.client.payer, PayerState::Closing { .. });
        let deadline = Instant::now() + PATIENCE;
        loop {
            assert!(Instant::now() < deadline, "the channel never closed");
            match self.post(&format!("/session/{txid}"), &msg).await {
                Ok((200, _, messages)) => {
                    let [WireMessage::Close(Close {
                        settlement: Some(settlement),
                    })] = messages.as_slice()
                    else {
                        panic!("CLOSE with the settlement: {messages:?}")
                    };
                    let settlement = settlement.clone();
                    if closing {
                        // The payer checks the settlement pays it its change.
                        assert!(self.feed(messages).is_empty());
                    }
                    return settlement;
                }
                Ok(other) => panic!("close refused: {other:?}"),
                Err(Down) => {
                    self.interrupted();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// A coin of `key(WALLET)` on the chain, to fund one contract.
/// The test's world: the chain, the site, the payee's files and its HTTP address.
struct World {
    node: Node,
    http: reqwest::Client,
    url: String,
    endpoint: String,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    async fn payer(&self) -> Payer {
        let tip = ChainTip {
            height: self.node.height(),
            median_time_past: self.node.median_time_past(),
        };
        Payer {
            client: Client {
                http: self.http.clone(),
                endpoint: self.endpoint.clone(),
                payer: PayerState::start(payer_config(Version::V2)).state,
                session: String::new(),
                tip,
            },
            http: self.http.clone(),
            site: self.url.clone(),
            endpoint: self.endpoint.clone(),
            seen: Arc::new(Mutex::new(Seen::default())),
            wallet: coin(&self.node, Amount::from_sat(200_000)).await,
            offer: None,
        }
    }

    /// Runs `task` and kills the payee `delay` after it starts; restarts the payee and lets
    /// `task` finish. Returns the task's result and whether the kill interrupted it.
    async fn kill_during<T: Send + 'static>(
        &self,
        payee: &mut PayeeProcess,
        delay: Duration,
        seen: &Mutex<Seen>,
        task: impl std::future::Future<Output = T> + Send + 'static,
    ) -> (T, bool) {
        let before = seen.lock().unwrap().interrupted;
        let task = tokio::spawn(task);
        tokio::time::sleep(delay).await;
        payee.kill().await;
        *payee = PayeeProcess::start(&self.config).await;
        let out = task.await.unwrap();
        (out, seen.lock().unwrap().interrupted > before)
    }

    /// Checks the settlement `txid` of `channel` on chain: the client gets `value - paid`,
    /// the payee `paid` less the close fee (which it pays).
    fn check_settlement(&self, settlement: Txid, channel: Txid, value: u64, paid: u64) -> u64 {
        assert!(
            self.node.confirmation_height(&settlement).is_some(),
            "settlement {settlement} confirmed"
        );
        let tx = self.node.transaction(&settlement).unwrap();
        assert_eq!(tx.input.len(), 1);
        assert_eq!(tx.input[0].previous_output.txid, channel);
        let fee = value - tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
        let to = |script: &bitcoin::ScriptBuf| -> u64 {
            tx.output
                .iter()
                .filter(|o| &o.script_pubkey == script)
                .map(|o| o.value.to_sat())
                .sum()
        };
        assert_eq!(
            to(&payer_config(Version::V2).payout_script),
            value - paid,
            "the client's change"
        );
        assert_eq!(
            to(&payout_address().script_pubkey()) + fee,
            paid,
            "the payee's share is the best stored payment, less the close fee it pays"
        );
        fee
    }
}

/// Opens a channel (for the `open` phase).
async fn open(mut payer: Payer) -> Payer {
    payer.open().await;
    payer
}

/// Closes the channel `txid`; returns the settlement.
async fn close(mut payer: Payer, txid: Txid) -> (Payer, Transaction) {
    let settlement = payer.close(txid).await;
    (payer, settlement)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_killed_at_random_loses_no_payment_and_serves_nothing_unpaid() {
    let started = Instant::now();
    let mut rng = Rng(seed());
    let node = Node::start(Config::default()).await.unwrap();
    let site_url = serve(site()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), free_port(), &site_url, node.url(), PRICE);
    let mut payee = PayeeProcess::start(&config).await;
    let url = payee.url.clone();
    let w = World {
        endpoint: format!("{url}{}", trickle_payee::DEFAULT_ENDPOINT_PATH),
        url,
        http: reqwest::Client::builder()
            .timeout(PATIENCE)
            .build()
            .unwrap(),
        node,
        config,
        _dir: dir,
    };
    let mut kills = 0;

    // Open: a first channel undisturbed, to time an open; then three more, each with the payee
    // killed at a random moment within that time. Each completes after the restart.
    let t = Instant::now();
    let mut first = open(w.payer().await).await;
    let open_time = t.elapsed();
    let mut others = Vec::new();
    let mut opens_interrupted = 0;
    for _ in 0..3 {
        let payer = w.payer().await;
        let seen = payer.seen.clone();
        let delay = Duration::from_micros(rng.below(open_time.as_micros() as u64 + 1));
        let (payer, hit) = w.kill_during(&mut payee, delay, &seen, open(payer)).await;
        kills += 1;
        opens_interrupted += u32::from(hit);
        let txid = payer.client.txid();
        let stored = status(&w.http, &w.endpoint, txid).await;
        assert_eq!(stored.state, "ready");
        assert_eq!(
            stored.paid,
            payer.client.paid().to_sat(),
            "the first payment is stored"
        );
        others.push(payer);
    }
    w.node.mine(1).await.unwrap();
    for payer in std::iter::once(&first).chain(&others) {
        let contract = payer.client.txid();
        assert!(
            w.node.confirmation_height(&contract).is_some(),
            "contract {contract} confirmed"
        );
    }

    // Pay: the first channel pays pages (pre-armed or after a 402, at random) while the killer
    // kills the payee at random moments, restarts it and checks it against the client.
    let seen = first.seen.clone();
    let mut killer_rng = Rng(rng.next_u64());
    let killer = {
        let (seen, http, endpoint, config) = (
            seen.clone(),
            w.http.clone(),
            w.endpoint.clone(),
            w.config.clone(),
        );
        tokio::spawn(async move {
            for kill in 1..=KILLS {
                // Anywhere from a few milliseconds (while the client resumes) to a few hundred.
                let delay = 5 + killer_rng.below(300);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                payee.kill().await;
                payee = PayeeProcess::start(&config).await;
                check(&seen, &http, &endpoint, &format!("after kill {kill}")).await;
            }
            payee
        })
    };
    let mut page = 0;
    // Pay pages until the killer is done, and at least a hundred.
    while page < 100 || !killer.is_finished() {
        let pre_armed = rng.below(2) == 0;
        first.pay_page(page, pre_armed).await;
        page += 1;
    }
    let mut payee = killer.await.unwrap();
    kills += KILLS;
    check(&seen, &w.http, &w.endpoint, "after the kills").await;
    let served = seen.lock().unwrap().clone();
    first.resume().await;

    // Close: one channel undisturbed, to time a close; then the others, each with the payee
    // killed at a random moment within that time. A close the kill interrupted completes after
    // the restart; asked again, the payee answers with the same settlement.
    let mut channels = Vec::new();
    let mut closes_interrupted = 0;
    let mut to_close = others;
    to_close.push(first);
    let mut close_time = None;
    for payer in to_close {
        let txid = payer.client.txid();
        let channel = payer.client.payer.committed_channel().unwrap();
        let (value, signed) = (
            channel.funding.contract.value.to_sat(),
            channel.paid().to_sat(),
        );
        let stored = status(&w.http, &w.endpoint, txid).await;
        assert_eq!(
            stored.paid, signed,
            "after a resume the payee holds everything the client signed"
        );
        let (mut payer, settlement) = match close_time {
            None => {
                let t = Instant::now();
                let out = close(payer, txid).await;
                close_time = Some(t.elapsed());
                out
            }
            Some(time) => {
                let seen = payer.seen.clone();
                let delay = Duration::from_micros(rng.below(time.as_micros() as u64 + 1));
                let (out, hit) = w
                    .kill_during(&mut payee, delay, &seen, close(payer, txid))
                    .await;
                kills += 1;
                closes_interrupted += u32::from(hit);
                out
            }
        };
        let again = payer.close(txid).await;
        assert_eq!(again.compute_txid(), settlement.compute_txid());
        let stored = status(&w.http, &w.endpoint, txid).await;
        assert_eq!(stored.state, "closing");
        assert_eq!(stored.paid, signed, "closed with the best payment");
        channels.push((txid, settlement.compute_txid(), value, stored));
    }
    // The payee broadcast every settlement (a restarted one again when asked to close again,
    // and its chain duties until it confirms).
    let deadline = Instant::now() + PATIENCE;
    for (_, settlement, ..) in &channels {
        while !w.node.in_mempool(settlement) {
            assert!(
                Instant::now() < deadline,
                "settlement {settlement} never broadcast"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    w.node.mine(1).await.unwrap();
    let mut fee = 0;
    for (txid, settlement, value, stored) in &channels {
        fee = w.check_settlement(*settlement, *txid, *value, stored.paid);
    }
    // The payee's chain duties see the settlements confirmed.
    let deadline = Instant::now() + PATIENCE;
    for (txid, ..) in &channels {
        while status(&w.http, &w.endpoint, *txid).await.state != "closed" {
            assert!(Instant::now() < deadline, "the payee never saw the close");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(payee);

    let (_, _, _, stored) = channels.last().unwrap();
    eprintln!(
        "{kills} kills ({opens_interrupted} of 3 opens and {closes_interrupted} of 3 closes \
         interrupted), {page} pages ({} pre-armed, {} reloads after a lost answer), {} requests \
         interrupted, {} pre-armed payments sent again, paid {}, consumed {}, close fee {fee}, \
         in {:.1?}",
        served.pre_armed,
        served.reloads,
        served.interrupted,
        served.pre_armed_retries,
        stored.paid,
        stored.consumed,
        started.elapsed()
    );
    assert_eq!(served.served, u64::from(page));
    assert!(stored.consumed >= served.served * PRICE);
    // Charged and not received: only a pre-armed payment sent again after a kill can be
    // charged twice, once per such retry at most.
    assert!(
        stored.consumed - served.served * PRICE <= served.pre_armed_retries * PRICE,
        "pages charged twice: consumed {}, served {}, pre-armed retries {}",
        stored.consumed,
        served.served,
        served.pre_armed_retries
    );
}
