//! An in-process payee for the wallet's channel tests: the channel core's payee state machine
//! behind the endpoint's JSON, and the payment rules of `docs/protocol.md` section 2.
#![allow(dead_code)] // each test binary uses its own part

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use bdk_esplora::esplora_client::{AsyncClient, Builder};
use bitcoin::secp256k1::{PublicKey, SecretKey, SECP256K1};
use bitcoin::{Amount, FeeRate, Network};
use trickle_channel::credit::Ledger;
use trickle_channel::http::{
    asset, caip2, ChannelTerms, PaymentRequired, PaymentRequirements, PaymentResponse,
    PaymentSignature, Receipt, Resource, X402_VERSION,
};
use trickle_channel::{ChainTip, ExpiryKind, PayeeContext, PayeePolicy, PayeeState, WireMessage};
use trickle_regtest::Node;
use trickle_wallet::store::{Commit, MemoryStore, Store, StoreError, WriteBatch};
use trickle_wallet::{
    ChannelClientError, ChannelLimits, ChannelRecord, OpenParams, Transport, Wallet,
};

/// The site the payee serves (the channel endpoint is on it).
pub const SITE: &str = "site.example";
/// The price of a page.
pub const PRICE: Amount = Amount::from_sat(10);

/// A store shared with the test, counting what is asked of it.
#[derive(Clone, Default)]
pub struct Counted(Rc<(MemoryStore, Counts)>);

#[derive(Default)]
struct Counts {
    channel_writes: Cell<usize>,
    channel_reads: Cell<usize>,
    reads: Cell<usize>,
    listings: Cell<usize>,
}

fn bump(n: &Cell<usize>) {
    n.set(n.get() + 1);
}

impl Counted {
    /// Writes of channel records.
    pub fn channel_writes(&self) -> usize {
        self.0 .1.channel_writes.get()
    }

    /// Reads of channel records.
    pub fn channel_reads(&self) -> usize {
        self.0 .1.channel_reads.get()
    }

    /// Reads of any key, and listings of keys.
    pub fn reads_and_listings(&self) -> (usize, usize) {
        (self.0 .1.reads.get(), self.0 .1.listings.get())
    }
}

impl Store for Counted {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        bump(&self.0 .1.reads);
        if key.starts_with("channel/") {
            bump(&self.0 .1.channel_reads);
        }
        self.0 .0.get(key).await
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        bump(&self.0 .1.listings);
        self.0 .0.keys(prefix).await
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        for _ in batch.with_prefix("channel/").filter(|(_, v)| v.is_some()) {
            bump(&self.0 .1.channel_writes);
        }
        self.0 .0.write(batch).await
    }
}

/// Wraps a store; while [`FailingStore::fail_writes`] is on, every write fails (and changes
/// nothing) and reads still work.
#[derive(Clone, Default)]
pub struct FailingStore<S = MemoryStore>(Rc<(S, Cell<bool>)>);

impl<S: Store> FailingStore<S> {
    /// Wraps `inner`; writes succeed until told otherwise.
    pub fn new(inner: S) -> Self {
        Self(Rc::new((inner, Cell::new(false))))
    }

    /// Makes every following write fail (`true`) or succeed again (`false`).
    pub fn fail_writes(&self, fail: bool) {
        self.0 .1.set(fail);
    }

    /// The store underneath, for reading what it holds.
    pub fn inner(&self) -> &S {
        &self.0 .0
    }
}

impl<S: Store> Store for FailingStore<S> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0 .0.get(key).await
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.0 .0.keys(prefix).await
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if self.0 .1.get() {
            return Err(StoreError("injected write failure".into()));
        }
        self.0 .0.write(batch).await
    }
}

/// The command-line payer's way with staged payments: receipts wait in `pending` and are
/// stored with the next payment that writes anything ([`trickle_wallet::store::Staged::commit_carrying`]), or by
/// [`flush`].
pub async fn pay<S: Store>(
    wallet: &Wallet<S>,
    pending: &mut WriteBatch,
    site: &str,
    offer: &PaymentRequirements,
    resource: &Resource,
    nonce: Option<String>,
    tip: ChainTip,
) -> Result<String, ChannelClientError> {
    let staged = wallet
        .pay(pending, site, offer, resource, nonce, tip)
        .await?;
    Ok(staged.commit_carrying(wallet, pending).await?)
}

/// [`Wallet::pre_arm`], committed as [`pay`] commits.
pub async fn pre_arm<S: Store>(
    wallet: &Wallet<S>,
    pending: &mut WriteBatch,
    site: &str,
    payee: &PublicKey,
    resource: &Resource,
    tip: ChainTip,
) -> Result<Option<String>, ChannelClientError> {
    let staged = wallet.pre_arm(pending, site, payee, resource, tip).await?;
    Ok(staged.commit_carrying(wallet, pending).await?)
}

/// [`Wallet::prepare_next`], committed as [`pay`] commits.
pub async fn prepare_next<S: Store>(
    wallet: &Wallet<S>,
    pending: &mut WriteBatch,
    site: &str,
    payee: &PublicKey,
    tip: ChainTip,
) -> Result<(), ChannelClientError> {
    let staged = wallet.prepare_next(pending, site, payee, tip).await?;
    Ok(staged.commit_carrying(wallet, pending).await?)
}

/// [`Wallet::apply_receipt`], left pending.
pub async fn apply_receipt<S: Store>(
    wallet: &Wallet<S>,
    pending: &mut WriteBatch,
    site: &str,
    payee: &PublicKey,
    response: &PaymentResponse,
    tip: ChainTip,
) -> Result<(), ChannelClientError> {
    let staged = wallet
        .apply_receipt(pending, site, payee, response, tip)
        .await?;
    pending.merge(staged.into_writes());
    Ok(())
}

/// Stores the pending receipts (the end of a run); on failure they stay pending.
pub async fn flush<S: Store>(
    wallet: &Wallet<S>,
    pending: &mut WriteBatch,
) -> Result<(), StoreError> {
    wallet.commit_batch(pending.clone()).await?;
    *pending = WriteBatch::new();
    Ok(())
}

/// The payee: the channel core's state machine behind the channel endpoint's JSON, and the
/// payment rules of `docs/protocol.md` section 2 (without nonces) over one channel's ledger.
pub struct Payee {
    key: SecretKey,
    site: String,
    /// The payee's channel policy (tests may change it before the channel opens).
    pub policy: PayeePolicy,
    tip: ChainTip,
    sessions: RefCell<HashMap<String, PayeeState>>,
    channel: RefCell<Option<(PayeeState, Ledger)>>,
}

impl Payee {
    pub fn new(tip: ChainTip) -> Self {
        Self::on_site(tip, SITE)
    }

    /// A payee serving `site` (a host) instead of [`SITE`].
    pub fn on_site(tip: ChainTip, site: &str) -> Self {
        let key = SecretKey::from_slice(&[42; 32]).expect("key");
        Self {
            key,
            site: site.to_owned(),
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

    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_secret_key(SECP256K1, &self.key)
    }

    fn ctx(&self) -> PayeeContext<'_> {
        PayeeContext {
            policy: &self.policy,
            key: &self.key,
            tip: self.tip,
            close_fee_rate: FeeRate::from_sat_per_vb_u32(2),
            close_fee_ceiling: FeeRate::from_sat_per_vb_u32(2),
        }
    }

    pub fn offer(&self) -> PaymentRequirements {
        PaymentRequirements {
            scheme: trickle_channel::http::SCHEME.into(),
            network: caip2(Network::Regtest),
            amount: PRICE,
            asset: asset(&caip2(Network::Regtest)),
            pay_to: self.public_key(),
            max_timeout_seconds: 300,
            extra: ChannelTerms {
                endpoint: format!("https://{}/channel", self.site),
                versions: vec![2],
                min_channel_value: self.policy.min_channel_value,
                max_channel_value: self.policy.max_channel_value,
                min_payment: self.policy.min_payment,
                max_expiry_blocks: 144,
                nonce: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
                channel_state: None,
            },
        }
    }

    /// Takes a pre-armed `PAYMENT-SIGNATURE` for a request costing `price`: the update (if
    /// any) counts once, the price is charged to the credit; a refusal keeps the increment.
    pub fn charge(&self, header: &str, price: Amount) -> PaymentResponse {
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
            transaction: None,
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

    pub fn ledger(&self) -> Ledger {
        self.channel.borrow().as_ref().expect("open").1
    }

    /// The payee closes its channel: its settlement, with the latest payment.
    pub fn close(&self) -> bitcoin::Transaction {
        let mut slot = self.channel.borrow_mut();
        let (state, _) = slot.as_mut().expect("channel open");
        let step = state.close(&self.ctx()).expect("closed");
        *state = step.state;
        step.broadcast.into_iter().next().expect("a settlement")
    }

    /// The contract txid of the channel the payee holds.
    pub fn channel_txid(&self) -> bitcoin::Txid {
        let slot = self.channel.borrow();
        let (state, _) = slot.as_ref().expect("open");
        state.channel().expect("open").contract_txid()
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
            // A channel it holds is resumed by its contract, as the payee server does.
            let held = self.channel.borrow().clone();
            if let (Some(prev), Some((state, _))) = (hello.previous_contract, held) {
                if state.channel().map(|c| c.contract_txid()) == Some(prev) {
                    let step = state.resume(&hello).map_err(|e| e.to_string())?;
                    let messages: Vec<String> =
                        step.send.iter().map(WireMessage::to_base64url).collect();
                    let answer =
                        serde_json::json!({ "session": prev.to_string(), "messages": messages });
                    return Ok((200, answer.to_string().into_bytes()));
                }
            }
            let step = PayeeState::start(&self.ctx(), &hello).map_err(|e| e.to_string())?;
            let id = format!("s{}", self.sessions.borrow().len());
            self.sessions
                .borrow_mut()
                .insert(id.clone(), step.state.clone());
            (id, step)
        } else {
            let id = url.rsplit('/').next().unwrap_or_default().to_owned();
            // A message on the open channel's session (`CLOSE`).
            let mut held = self.channel.borrow_mut();
            if let Some((state, _)) = held.as_mut().filter(|(s, _)| {
                s.channel().map(|c| c.contract_txid().to_string()) == Some(id.clone())
            }) {
                let step = state
                    .on_message(&self.ctx(), msg)
                    .map_err(|e| e.to_string())?;
                *state = step.state;
                let messages: Vec<String> =
                    step.send.iter().map(WireMessage::to_base64url).collect();
                let answer = serde_json::json!({ "session": id, "messages": messages });
                return Ok((200, answer.to_string().into_bytes()));
            }
            drop(held);
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

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

pub const PASSWORD: &str = "pw";

pub fn page(n: u32) -> Resource {
    Resource {
        url: format!("https://{SITE}/articles/{n}"),
        description: String::new(),
        mime_type: String::new(),
    }
}

/// A new wallet over `store` (password [`PASSWORD`]) holding a 200,000 sat coin from `node`'s
/// faucet, synced through `client`; and the chain's tip.
pub async fn funded_wallet<S: Store>(
    node: &Node,
    client: &AsyncClient,
    store: S,
) -> (Wallet<S>, ChainTip) {
    let (mut wallet, _) = Wallet::create(store, Network::Regtest, PASSWORD)
        .await
        .expect("wallet");
    let address = wallet.receive_address().await.expect("address");
    node.fund(&address, Amount::from_sat(200_000))
        .await
        .expect("funded");
    wallet.sync(client, now()).await.expect("synced");
    let tip = Wallet::<S>::tip(client).await.expect("tip");
    (wallet, tip)
}

/// Opens a 50,000 sat channel for [`SITE`] to `payee` on its `offer`: the first payment the
/// offer's minimum, the default limits, 2 sat/vB.
pub async fn open_channel<S: Store>(
    wallet: &mut Wallet<S>,
    payee: &Payee,
    client: &AsyncClient,
    offer: &PaymentRequirements,
) -> Result<ChannelRecord, ChannelClientError> {
    wallet
        .open_channel(
            payee,
            client,
            OpenParams {
                site: SITE,
                offer,
                value: Amount::from_sat(50_000),
                first_payment: offer.extra.min_payment,
                limits: &ChannelLimits::default(),
                fee_rate: FeeRate::from_sat_per_vb_u32(2),
                now: now(),
            },
        )
        .await
}

/// A funded wallet over `store` with a channel open to `payee` (its first payment, 1,000 sat,
/// is credit), whose credit is then used up so that every further page needs a signature.
/// The receipt of that page is pending (see `common::pay`).
pub async fn open(
    node: &Node,
    store: Counted,
) -> (Wallet<Counted>, Payee, AsyncClient, ChainTip, WriteBatch) {
    let client = Builder::new(node.url()).build_async().expect("client");
    let (mut wallet, tip) = funded_wallet(node, &client, store).await;
    let payee = Payee::new(tip);
    let offer = payee.offer();
    open_channel(&mut wallet, &payee, &client, &offer)
        .await
        .expect("channel opened");
    let key = payee.public_key();
    let mut pending = WriteBatch::new();
    let header = pay(&wallet, &mut pending, SITE, &offer, &page(0), None, tip)
        .await
        .expect("paid");
    let receipt = payee.charge(&header, Amount::from_sat(1_000));
    apply_receipt(&wallet, &mut pending, SITE, &key, &receipt, tip)
        .await
        .expect("receipt");
    let record = wallet
        .channel_in(&pending, SITE, &key)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(
        (record.credit, record.available()),
        (Amount::ZERO, Amount::ZERO)
    );
    (wallet, payee, client, tip, pending)
}

/// The `PAYMENT-REQUIRED` header the payee answers `url` with. Its offer asks a first
/// payment of `first_payment`, whatever the payee's `INITIATE` then asks.
pub fn required(payee: &Payee, url: &str, first_payment: Amount) -> String {
    let mut offer = payee.offer();
    offer.extra.min_payment = first_payment;
    PaymentRequired {
        x402_version: X402_VERSION,
        error: None,
        resource: Resource {
            url: url.to_owned(),
            description: "an article".into(),
            mime_type: "text/html".into(),
        },
        accepts: vec![offer],
    }
    .to_header()
}
