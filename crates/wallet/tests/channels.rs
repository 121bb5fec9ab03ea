//! The channel client's bookkeeping against an in-process payee (the channel core's payee state
//! machine behind the endpoint's JSON), on a local chain: every signed payment is stored before
//! it leaves, once; receipts stay in memory until the next write; a payment prepared ahead is
//! sent by the next request; a crash that loses a receipt or strands a prepared payment costs
//! no money and charges nothing twice.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use bdk_esplora::esplora_client::{AsyncClient, Builder};
use bitcoin::secp256k1::{PublicKey, SecretKey, SECP256K1};
use bitcoin::{Amount, FeeRate, Network};
use trickle_channel::credit::Ledger;
use trickle_channel::http::{
    caip2, ChannelTerms, PaymentRequirements, PaymentResponse, PaymentSignature, Receipt, Resource,
};
use trickle_channel::{
    ChainTip, ExpiryKind, PayeeContext, PayeePolicy, PayeeState, PayerState, WireMessage,
};
use trickle_regtest::{Config, Node};
use trickle_wallet::store::{MemoryStore, Store, StoreError};
use trickle_wallet::{ChannelLimits, Transport, Wallet};

const SITE: &str = "site.example";
const PRICE: Amount = Amount::from_sat(10);
const PASSWORD: &str = "pw";

/// A store shared with the test, counting writes of channel records.
#[derive(Clone, Default)]
struct Counted(Rc<(MemoryStore, Cell<usize>)>);

impl Counted {
    fn channel_writes(&self) -> usize {
        self.0 .1.get()
    }
}

impl Store for Counted {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0 .0.get(key).await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        if key.starts_with("channel/") {
            self.0 .1.set(self.0 .1.get() + 1);
        }
        self.0 .0.put(key, value).await
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.0 .0.keys(prefix).await
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.0 .0.remove(key).await
    }
}

/// The payee: the channel core's state machine behind the channel endpoint's JSON, and the
/// payment rules of `docs/protocol.md` section 2 (without nonces) over one channel's ledger.
struct Payee {
    key: SecretKey,
    policy: PayeePolicy,
    tip: ChainTip,
    sessions: RefCell<HashMap<String, PayeeState>>,
    channel: RefCell<Option<(PayeeState, Ledger)>>,
}

impl Payee {
    fn new(tip: ChainTip) -> Self {
        let key = SecretKey::from_slice(&[42; 32]).expect("key");
        Self {
            key,
            policy: PayeePolicy {
                accept_v1: false,
                accept_v2: true,
                min_channel_value: Amount::from_sat(10_000),
                max_channel_value: Amount::from_sat(1_000_000),
                min_payment: Amount::from_sat(1_000),
                min_expiry_blocks: 144,
                max_expiry_blocks: 144,
                expiry_kind: ExpiryKind::Height,
                close_margin_blocks: 3,
                payout_script: bitcoin::ScriptBuf::new_op_return([]),
            },
            tip,
            sessions: RefCell::default(),
            channel: RefCell::default(),
        }
    }

    fn public_key(&self) -> PublicKey {
        PublicKey::from_secret_key(SECP256K1, &self.key)
    }

    fn ctx(&self) -> PayeeContext<'_> {
        PayeeContext {
            policy: &self.policy,
            key: &self.key,
            tip: self.tip,
            close_fee_rate: FeeRate::from_sat_per_vb_u32(2),
        }
    }

    fn offer(&self) -> PaymentRequirements {
        PaymentRequirements {
            scheme: "channel".into(),
            network: caip2(Network::Regtest),
            amount: PRICE,
            asset: "sat".into(),
            pay_to: self.public_key(),
            max_timeout_seconds: 300,
            extra: ChannelTerms {
                endpoint: "memory://payee/channel".into(),
                versions: vec![2],
                min_channel_value: self.policy.min_channel_value,
                max_channel_value: self.policy.max_channel_value,
                min_payment: self.policy.min_payment,
                max_expiry_blocks: 144,
                nonce: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            },
        }
    }

    /// Takes a pre-armed `PAYMENT-SIGNATURE` for a request costing `price`: the update (if
    /// any) counts once, the price is charged to the credit; a refusal keeps the increment.
    fn charge(&self, header: &str, price: Amount) -> PaymentResponse {
        let sig = PaymentSignature::from_header(header).expect("header");
        let mut slot = self.channel.borrow_mut();
        let (state, ledger) = slot.as_mut().expect("channel open");
        if let Some(update) = sig.payload.update().expect("update") {
            let step = state
                .on_message(&self.ctx(), WireMessage::UpdatePayment(update))
                .expect("payment accepted");
            *state = step.state;
        }
        let channel = state.channel().expect("open");
        *ledger = ledger.with_paid(channel.paid());
        let charged = ledger.charge(price);
        if let Ok(l) = charged {
            *ledger = l;
        }
        PaymentResponse {
            success: charged.is_ok(),
            error_reason: charged.err().map(|_| "insufficient_credit".to_owned()),
            network: caip2(Network::Regtest),
            payer: Some(channel.funding.contract.client_key),
            receipt: Some(Receipt {
                channel: channel.contract_txid(),
                paid: ledger.paid,
                consumed: if charged.is_ok() { price } else { Amount::ZERO },
                credit: ledger.credit(),
                channel_value: channel.funding.contract.value,
                expiry: channel.funding.contract.expiry.to_consensus_u32(),
                nonce: None,
            }),
        }
    }

    fn ledger(&self) -> Ledger {
        self.channel.borrow().as_ref().expect("open").1
    }
}

impl Transport for Payee {
    /// `GET {endpoint}/session/{txid}`: what the payee holds.
    async fn get(&self, _url: &str) -> Result<(u16, Vec<u8>), String> {
        let (state, ledger) = self.channel.borrow().clone().ok_or("no channel")?;
        let channel = state.channel().ok_or("not open")?;
        let status = serde_json::json!({
            "session": channel.contract_txid().to_string(),
            "state": "ready",
            "paid": ledger.paid.to_sat().to_string(),
            "consumed": ledger.consumed.to_sat().to_string(),
            "credit": ledger.credit().to_sat().to_string(),
            "channelValue": channel.funding.contract.value.to_sat().to_string(),
            "expiry": channel.funding.contract.expiry.to_consensus_u32(),
        });
        Ok((200, status.to_string().into_bytes()))
    }

    async fn post_json(&self, url: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        let body: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let text = body["message"].as_str().ok_or("no message")?;
        let msg = WireMessage::from_base64url(text).map_err(|e| e.to_string())?;
        let (session, step) = if url.ends_with("/open") {
            let WireMessage::ClientVersion(hello) = msg else {
                return Err("not CLIENT_VERSION".into());
            };
            let step = PayeeState::start(&self.ctx(), &hello).map_err(|e| e.to_string())?;
            let id = format!("s{}", self.sessions.borrow().len());
            self.sessions
                .borrow_mut()
                .insert(id.clone(), step.state.clone());
            (id, step)
        } else {
            let id = url.rsplit('/').next().unwrap_or_default().to_owned();
            let state = self.sessions.borrow_mut().remove(&id).ok_or("no session")?;
            let step = state
                .on_message(&self.ctx(), msg)
                .map_err(|e| e.to_string())?;
            match step.state.channel() {
                Some(channel) => {
                    let ledger = Ledger::default().with_paid(channel.paid());
                    *self.channel.borrow_mut() = Some((step.state.clone(), ledger));
                    (channel.contract_txid().to_string(), step)
                }
                None => {
                    self.sessions
                        .borrow_mut()
                        .insert(id.clone(), step.state.clone());
                    (id, step)
                }
            }
        };
        let messages: Vec<String> = step.send.iter().map(WireMessage::to_base64url).collect();
        let answer = serde_json::json!({ "session": session, "messages": messages });
        Ok((200, answer.to_string().into_bytes()))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn page(n: u32) -> Resource {
    Resource {
        url: format!("https://{SITE}/articles/{n}"),
        description: String::new(),
        mime_type: String::new(),
    }
}

/// A funded wallet over `store` with a channel open to `payee` (its first payment, 1,000 sat,
/// is credit), whose credit is then used up so that every further page needs a signature.
async fn open(node: &Node, store: Counted) -> (Wallet<Counted>, Payee, AsyncClient, ChainTip) {
    let client = Builder::new(node.url()).build_async().expect("client");
    let (mut wallet, _) = Wallet::create(store, Network::Regtest, PASSWORD)
        .await
        .expect("wallet");
    let address = wallet.receive_address().await.expect("address");
    node.fund(&address, Amount::from_sat(200_000))
        .await
        .expect("funded");
    wallet.sync(&client, now()).await.expect("synced");
    let tip = Wallet::<Counted>::tip(&client).await.expect("tip");
    let payee = Payee::new(tip);
    let offer = payee.offer();
    wallet
        .open_channel(
            &payee,
            &client,
            SITE,
            &offer,
            Amount::from_sat(50_000),
            &ChannelLimits::default(),
            FeeRate::from_sat_per_vb_u32(2),
            now(),
        )
        .await
        .expect("channel opened");
    let key = payee.public_key();
    let header = wallet
        .pay(SITE, &offer, &page(0), None, tip)
        .await
        .expect("paid");
    let receipt = payee.charge(&header, Amount::from_sat(1_000));
    wallet
        .apply_receipt(SITE, &key, &receipt, tip)
        .await
        .expect("receipt");
    let record = wallet
        .channel(SITE, &key)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(
        (record.credit, record.available()),
        (Amount::ZERO, Amount::ZERO)
    );
    (wallet, payee, client, tip)
}

fn paid(record: &trickle_wallet::ChannelRecord) -> Amount {
    record.state.state.committed_channel().expect("open").paid()
}

#[tokio::test(flavor = "current_thread")]
async fn one_write_per_signed_payment_none_per_receipt_and_nothing_charged_twice() {
    let node = Node::start(Config::default()).await.expect("node");
    let store = Counted::default();
    let (mut wallet, payee, _client, tip) = open(&node, store.clone()).await;
    let key = payee.public_key();
    let before = payee.ledger();

    // Requests one after the other, each preparing the next payment while it is "in flight".
    let writes = store.channel_writes();
    for n in 1..=20 {
        let header = wallet
            .pre_arm(SITE, &key, &page(n), tip)
            .await
            .expect("pre-armed")
            .expect("a channel");
        // The first request signs for itself (one write); every later one was prepared.
        if n < 20 {
            wallet
                .prepare_next(SITE, &key, tip)
                .await
                .expect("prepared");
        }
        let receipt = payee.charge(&header, PRICE);
        assert!(receipt.success, "page {n}: {receipt:?}");
        wallet
            .apply_receipt(SITE, &key, &receipt, tip)
            .await
            .expect("receipt");
    }
    assert_eq!(
        store.channel_writes() - writes,
        20,
        "one write per signed payment, none for the 20 receipts"
    );
    let ledger = payee.ledger();
    assert_eq!(
        ledger.consumed - before.consumed,
        PRICE * 20,
        "20 pages, 20 charges"
    );
    assert_eq!(
        ledger.credit(),
        Amount::ZERO,
        "nothing signed ahead is left over"
    );
    // The last receipt is in memory until the run ends.
    let unflushed = Wallet::unlock(store.clone(), Network::Regtest, PASSWORD)
        .await
        .expect("unlocked")
        .channel(SITE, &key)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(
        paid(&unflushed),
        ledger.paid,
        "every signed payment is stored"
    );
    wallet.flush().await.expect("flushed");
    assert_eq!(store.channel_writes() - writes, 21);
    let record = Wallet::unlock(store.clone(), Network::Regtest, PASSWORD)
        .await
        .expect("unlocked")
        .channel(SITE, &key)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(
        (paid(&record), record.credit),
        (ledger.paid, ledger.credit())
    );
    let PayerState::Ready { channel } = &record.state.state else {
        panic!("open channel")
    };
    assert_eq!(
        channel.acknowledged, ledger.paid,
        "the payee acknowledged all of it"
    );
}

/// The next page's pre-armed header, read back from the store of `wallet`.
async fn pre_arm(wallet: &mut Wallet<Counted>, key: &PublicKey, n: u32, tip: ChainTip) -> String {
    wallet
        .pre_arm(SITE, key, &page(n), tip)
        .await
        .expect("pre-armed")
        .expect("a channel")
}

#[tokio::test(flavor = "current_thread")]
async fn a_prepared_payment_stranded_by_a_crash_goes_with_the_next_request() {
    let node = Node::start(Config::default()).await.expect("node");
    let store = Counted::default();
    let (mut wallet, payee, _client, tip) = open(&node, store.clone()).await;
    let key = payee.public_key();
    let before = payee.ledger();

    // Page 1 is paid and served and the next payment is prepared; then the client crashes
    // before its receipt is stored and before the prepared payment is sent.
    let header = pre_arm(&mut wallet, &key, 1, tip).await;
    wallet
        .prepare_next(SITE, &key, tip)
        .await
        .expect("prepared");
    let receipt = payee.charge(&header, PRICE);
    assert!(receipt.success);
    wallet
        .apply_receipt(SITE, &key, &receipt, tip)
        .await
        .expect("receipt");
    drop(wallet);

    // The stored state is the last one signed: the prepared payment, which the payee never got.
    let mut wallet = Wallet::unlock(store.clone(), Network::Regtest, PASSWORD)
        .await
        .expect("unlocked");
    let record = wallet
        .channel(SITE, &key)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(paid(&record), payee.ledger().paid + PRICE);
    // The next request sends it as it is: no new signature, no write.
    let writes = store.channel_writes();
    let header = pre_arm(&mut wallet, &key, 2, tip).await;
    assert_eq!(store.channel_writes(), writes);
    let receipt = payee.charge(&header, PRICE);
    assert!(receipt.success, "{receipt:?}");
    wallet
        .apply_receipt(SITE, &key, &receipt, tip)
        .await
        .expect("receipt");
    wallet.flush().await.expect("flushed");
    let ledger = payee.ledger();
    assert_eq!(
        ledger.consumed - before.consumed,
        PRICE * 2,
        "two pages, two charges"
    );
    assert_eq!(ledger.paid - before.paid, PRICE * 2, "and no more paid");
    let record = wallet
        .channel(SITE, &key)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(
        (paid(&record), record.credit),
        (ledger.paid, ledger.credit())
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_receipt_lost_in_a_crash_is_corrected_by_the_payee_and_costs_nothing() {
    let node = Node::start(Config::default()).await.expect("node");
    let store = Counted::default();
    let (mut wallet, payee, _client, tip) = open(&node, store.clone()).await;
    let key = payee.public_key();
    let before = payee.ledger();

    // A free page takes a pre-armed increment: 10 sat of credit, stored at the end of the run.
    let header = pre_arm(&mut wallet, &key, 1, tip).await;
    let receipt = payee.charge(&header, Amount::ZERO);
    assert_eq!(receipt.receipt.as_ref().map(|r| r.credit), Some(PRICE));
    wallet
        .apply_receipt(SITE, &key, &receipt, tip)
        .await
        .expect("receipt");
    wallet.flush().await.expect("flushed");
    // A priced page is paid from that credit; the client crashes before storing the receipt.
    let header = pre_arm(&mut wallet, &key, 2, tip).await;
    let receipt = payee.charge(&header, PRICE);
    assert!(receipt.success);
    wallet
        .apply_receipt(SITE, &key, &receipt, tip)
        .await
        .expect("receipt");
    drop(wallet);

    // After the restart the client counts on the credit page 2 used: the payee refuses the
    // next page with its account of the channel, and the client pays the difference, once.
    let mut wallet = Wallet::unlock(store.clone(), Network::Regtest, PASSWORD)
        .await
        .expect("unlocked");
    let header = pre_arm(&mut wallet, &key, 3, tip).await;
    let refused = payee.charge(&header, PRICE);
    assert!(!refused.success);
    wallet
        .apply_receipt(SITE, &key, &refused, tip)
        .await
        .expect("refusal applied");
    let header = wallet
        .pay(SITE, &payee.offer(), &page(3), None, tip)
        .await
        .expect("paid");
    let receipt = payee.charge(&header, PRICE);
    assert!(receipt.success, "{receipt:?}");
    wallet
        .apply_receipt(SITE, &key, &receipt, tip)
        .await
        .expect("receipt");
    wallet.flush().await.expect("flushed");

    let ledger = payee.ledger();
    assert_eq!(
        ledger.consumed - before.consumed,
        PRICE * 2,
        "two priced pages, two charges"
    );
    assert_eq!(ledger.paid - before.paid, PRICE * 2, "and no more paid");
    assert_eq!(ledger.credit(), Amount::ZERO);
    let record = wallet
        .channel(SITE, &key)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(
        (paid(&record), record.credit),
        (ledger.paid, ledger.credit())
    );
}
