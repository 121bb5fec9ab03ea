//! The client's channels with sites: opening one over the payee's channel endpoint, paying
//! priced requests, reading receipts, closing and refunding. Every state is stored before the
//! message it produced leaves ("persist, then act"): a payment is returned [`Staged`], its
//! header had only once the signed state is committed. Receipts produce no message; a caller
//! may commit them with the next payment ([`Staged::commit_carrying`]), so that a paid page
//! costs one durable write, which [`Wallet::prepare_next`] lets the caller make while the
//! previous request is in flight. The wallet's memory of its channels is what was last
//! committed; the operations that take a `base` batch read through writes staged but not yet
//! committed.

use core::fmt;

use bitcoin::secp256k1::{PublicKey, SecretKey};
use bitcoin::{Amount, FeeRate, Transaction};
use serde::{Deserialize, Serialize};
use trickle_channel::auth::{self, ChannelRequest};
use trickle_channel::http::{
    ChannelPayment, PaymentRequirements, PaymentResponse, PaymentSignature, Resource, TICKET_LEN,
    X402_VERSION,
};
use trickle_channel::{
    ChainTip, ChannelError, ChannelId, ClientVersion, PayerConfig, PayerContext, PayerState,
    PaymentAck, ProvideContract, Snapshot, Version, WireMessage,
};

use crate::chain::ChainSource;
use crate::closing::ChainWatch;
use crate::error::WalletError;
use crate::store::{Commit, Staged, Store, StoreError, WriteBatch};
use crate::vault::{self, VaultError};
use crate::wallet::Wallet;

/// How many requests at a site's price one prepared payment pays ahead
/// ([`Wallet::prepare_next`]): one signature and one durable write then serve this many
/// requests. The cost: a payee that vanishes, or a channel closed before they are used, keeps
/// up to this many prices unused.
pub const PREPAID_REQUESTS: u64 = 10;

/// How long a call to a channel endpoint may take, answer read included: a transport gives up
/// after this (a payee that never answers must not hold the wallet).
pub const ENDPOINT_TIMEOUT: core::time::Duration = core::time::Duration::from_secs(10);

/// The largest answer a transport reads from a channel endpoint, in bytes (the largest real
/// one, a `CLOSE` with its settlement, is under 2 KiB).
pub const MAX_ENDPOINT_BODY_BYTES: usize = 64 * 1024;

/// HTTP as the channel client needs it: a JSON POST, and a GET, each answering a status and a
/// body. Every call fails after [`ENDPOINT_TIMEOUT`], and with an answer longer than
/// [`MAX_ENDPOINT_BODY_BYTES`].
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// POSTs `body` (JSON) to `url`.
    async fn post_json(&self, url: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String>;
    /// GETs `url`.
    async fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String>;
}

/// The client's limits for channels it opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelLimits {
    /// Longest the client locks funds, in blocks.
    pub max_expiry_blocks: u32,
    /// Largest first payment the client accepts.
    pub max_min_payment: Amount,
    /// Most the client locks in one channel, whatever the payee's minimum: a payee must not
    /// decide how much of the wallet is locked.
    pub max_channel_value: Amount,
}

impl Default for ChannelLimits {
    fn default() -> Self {
        Self {
            max_expiry_blocks: 4 * 1008,
            max_min_payment: Amount::from_sat(5_000),
            max_channel_value: Amount::from_sat(100_000),
        }
    }
}

/// What [`Wallet::open_channel`] opens.
#[derive(Clone, Copy, Debug)]
pub struct OpenParams<'a> {
    /// The site the channel pays.
    pub site: &'a str,
    /// The payee's offer.
    pub offer: &'a PaymentRequirements,
    /// The channel's value (at most `limits.max_channel_value`).
    pub value: Amount,
    /// The most the first payment may sign: what the caller set aside for it.
    pub first_payment: Amount,
    /// The client's limits.
    pub limits: &'a ChannelLimits,
    /// The contract's fee rate.
    pub fee_rate: FeeRate,
    /// Now, in Unix seconds (the contract is recorded as pending from then).
    pub now: u64,
}

/// Blocks the payee's chain tip may be ahead of the client's when it sets a channel's expiry:
/// an `INITIATE` expiry up to this much beyond the offer's `maxExpiryBlocks` is accepted.
const EXPIRY_TIP_SKEW_BLOCKS: u32 = 6;

/// One channel with one site, as stored under `channel/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    /// The site the channel pays: its origin (scheme, host and port).
    pub site: String,
    /// The payee's channel key.
    pub payee_key: PublicKey,
    /// The payee's channel endpoint.
    pub endpoint: String,
    /// The session at the endpoint (the contract txid once open).
    pub session: String,
    /// Index of the client's channel key (`m/1017'/coin'/index'`).
    pub key_index: u32,
    /// The channel state.
    pub state: Snapshot<PayerState>,
    /// Paid but not yet consumed, per the payee's last receipt.
    pub credit: Amount,
    /// The site's last offer, answered by pre-armed payments.
    #[serde(default)]
    pub last_offer: Option<PaymentRequirements>,
    /// What the chain duties know of the contract's spend (`crate::closing`).
    #[serde(default)]
    pub chain: ChainWatch,
}

impl ChannelRecord {
    /// The channel's id.
    pub fn id(&self) -> ChannelId {
        ChannelId::new(&self.payee_key, &self.site)
    }

    /// What the payee can charge requests once it holds the latest payment: the credit of its
    /// last receipt plus what was signed since (reserved in the budget until consumed).
    pub fn available(&self) -> Amount {
        self.state
            .state
            .committed_channel()
            .map_or(Amount::ZERO, |c| {
                let unacknowledged = c.paid().checked_sub(c.acknowledged).unwrap_or(Amount::ZERO);
                self.credit + unacknowledged
            })
    }
}

/// Why a channel operation failed.
#[derive(Debug)]
pub enum ChannelClientError {
    /// The wallet or its storage failed.
    Wallet(WalletError),
    /// The channel protocol refused (locally or by the peer).
    Channel(ChannelError),
    /// The endpoint could not be reached or answered nonsense.
    Transport(String),
    /// No channel with this site.
    NoChannel(String),
    /// The site's payee key differs from the channel's: refuse to pay a different key.
    PayeeKeyChanged,
    /// A receipt that cannot be about this channel.
    BadReceipt(&'static str),
    /// The site's channel with this payee is not settled yet: another would replace its
    /// record, and with it the way to check its settlement or take its refund.
    ChannelUnsettled(String),
}

impl fmt::Display for ChannelClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wallet(e) => write!(f, "{e}"),
            Self::Channel(e) => write!(f, "channel: {e}"),
            Self::Transport(e) => write!(f, "channel endpoint: {e}"),
            Self::NoChannel(site) => write!(f, "no open channel with {site}"),
            Self::PayeeKeyChanged => f.write_str("the site's payee key changed; not paying"),
            Self::BadReceipt(why) => write!(f, "bad receipt: {why}"),
            Self::ChannelUnsettled(site) => write!(
                f,
                "the channel with {site} is not settled yet; not opening another"
            ),
        }
    }
}

impl std::error::Error for ChannelClientError {}

impl From<WalletError> for ChannelClientError {
    fn from(e: WalletError) -> Self {
        Self::Wallet(e)
    }
}

impl From<StoreError> for ChannelClientError {
    fn from(e: StoreError) -> Self {
        Self::Wallet(WalletError::Store(e))
    }
}

impl From<ChannelError> for ChannelClientError {
    fn from(e: ChannelError) -> Self {
        Self::Channel(e)
    }
}

#[derive(Serialize)]
struct EndpointRequest<'a> {
    message: &'a str,
    /// For requests only the client may make (`CLOSE`, a resume): `trickle_channel::auth`.
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization: Option<&'a str>,
}

#[derive(Deserialize)]
struct EndpointAnswer {
    #[serde(default)]
    session: Option<String>,
    messages: Vec<String>,
}

/// The store key prefix of channel records: `channel/<id>`.
const RECORD_PREFIX: &str = "channel/";

fn record_key(id: &ChannelId) -> String {
    format!("{RECORD_PREFIX}{id}")
}

/// Sends `msg` to the endpoint and decodes the answer; an `ERROR` answer becomes an error.
async fn exchange<T: Transport>(
    transport: &T,
    url: &str,
    msg: &WireMessage,
    authorization: Option<&str>,
) -> Result<(Option<String>, Vec<WireMessage>), ChannelClientError> {
    let body = serde_json::to_vec(&EndpointRequest {
        message: &msg.to_base64url(),
        authorization,
    })
    .map_err(|e| ChannelClientError::Transport(e.to_string()))?;
    let (status, bytes) = transport
        .post_json(url, body)
        .await
        .map_err(ChannelClientError::Transport)?;
    let answer: EndpointAnswer = serde_json::from_slice(&bytes).map_err(|e| {
        ChannelClientError::Transport(format!("status {status}, unreadable answer: {e}"))
    })?;
    let messages = answer
        .messages
        .iter()
        .map(|m| WireMessage::from_base64url(m).map_err(ChannelError::from))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(WireMessage::Error(e)) = messages.first() {
        return Err(ChannelError::Peer(e.clone()).into());
    }
    if !(200..300).contains(&status) {
        return Err(ChannelClientError::Transport(format!("status {status}")));
    }
    Ok((answer.session, messages))
}

fn decode_record(key: &str, bytes: &[u8]) -> Result<ChannelRecord, WalletError> {
    serde_json::from_slice(bytes).map_err(|e| WalletError::Corrupt(format!("{key}: {e}")))
}

/// Layout 3 (see [`crate::layout`]): a record the command-line payer labelled with its site's
/// host, relabelled with the site's origin, which is its channel endpoint's (the payee serves
/// the endpoint on the site's own origin). The record under its new key, the one to remove, or
/// `None` when the record is labelled by origin already, or cannot be read (left as it is).
pub(crate) fn relabelled_by_origin(bytes: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut record: ChannelRecord = serde_json::from_slice(bytes).ok()?;
    if crate::budget::normalize_origin(&record.site).is_ok_and(|o| o == record.site) {
        return None;
    }
    record.site = crate::budget::site_origin(&record.endpoint).ok()?;
    let bytes = serde_json::to_vec(&record).ok()?;
    Some((record_key(&record.id()), bytes))
}

/// `record` as a write of its store key.
fn stage_record(writes: &mut WriteBatch, record: &ChannelRecord) -> Result<(), WalletError> {
    let bytes = serde_json::to_vec(record).map_err(|e| WalletError::Corrupt(e.to_string()))?;
    writes.put(record_key(&record.id()), bytes);
    Ok(())
}

/// Takes the committed channel records of `batch` into the wallet's memory.
pub(crate) fn mirror<S: Store>(wallet: &Wallet<S>, batch: &WriteBatch) {
    let mut known = wallet.known_records();
    for (key, value) in batch.with_prefix(RECORD_PREFIX) {
        match value.map(|bytes| decode_record(key, bytes)) {
            Some(Ok(record)) => known.insert(key.to_owned(), record),
            // Removed, or not a record this crate wrote: read from the store next time.
            None | Some(Err(_)) => {
                wallet
                    .records_listed
                    .store(false, std::sync::atomic::Ordering::Release);
                known.remove(key)
            }
        };
    }
}

/// The `PAYMENT-SIGNATURE` header that pays `offer` for `resource` from `record`'s channel:
/// the channel's total, and the latest payment until a receipt acknowledges it (a payee that
/// already holds it counts it once, one that missed it counts it now). `None` when the channel
/// is not open.
pub(crate) fn payment_header(
    record: &ChannelRecord,
    offer: &PaymentRequirements,
    resource: &Resource,
    nonce: Option<String>,
    key: &SecretKey,
) -> Result<Option<String>, VaultError> {
    let Some(channel) = record.state.state.committed_channel() else {
        return Ok(None);
    };
    let update = (channel.paid() > channel.acknowledged)
        .then(|| WireMessage::UpdatePayment(channel.latest.clone()).to_base64url());
    signature_header(
        resource,
        offer,
        channel.contract_txid(),
        channel.paid(),
        update,
        nonce,
        key,
    )
    .map(Some)
}

/// A `PAYMENT-SIGNATURE` header: `amount` in total over `channel`, for `resource` as `offer`
/// priced it, with the payment `update` if the payee may lack it and the offer's `nonce`,
/// authorised by the client's channel `key` (`trickle_channel::auth::authorize_payment`). A
/// header answering an offer spends the offer's nonce as its ticket; a pre-armed one (no nonce)
/// a fresh random one. Every header the wallet sends for a priced request is built here.
pub(crate) fn signature_header(
    resource: &Resource,
    offer: &PaymentRequirements,
    channel: bitcoin::Txid,
    amount: Amount,
    update: Option<String>,
    nonce: Option<String>,
    key: &SecretKey,
) -> Result<String, VaultError> {
    let fresh = if nonce.is_none() {
        vault::random()?
    } else {
        [0; TICKET_LEN]
    };
    let mut sig = PaymentSignature {
        x402_version: X402_VERSION,
        resource: resource.clone(),
        accepted: offer.clone(),
        payload: ChannelPayment {
            channel,
            amount,
            update,
            nonce,
            ticket: None,
            authorization: None,
        },
    };
    auth::authorize_payment(&mut sig, key, fresh);
    Ok(sig.to_header())
}

impl<S: Store> Wallet<S> {
    /// The channel with `site` paying `payee_key`, if any, as last committed.
    pub async fn channel(
        &self,
        site: &str,
        payee_key: &PublicKey,
    ) -> Result<Option<ChannelRecord>, ChannelClientError> {
        self.record(record_key(&ChannelId::new(payee_key, site)))
            .await
    }

    /// The channel with `site` paying `payee_key` as it is once `base` (staged, not yet
    /// committed) is.
    pub async fn channel_in(
        &self,
        base: &WriteBatch,
        site: &str,
        payee_key: &PublicKey,
    ) -> Result<Option<ChannelRecord>, ChannelClientError> {
        let key = record_key(&ChannelId::new(payee_key, site));
        match base.get(&key) {
            Some(Some(bytes)) => Ok(Some(decode_record(&key, bytes)?)),
            Some(None) => Ok(None),
            None => self.record(key).await,
        }
    }

    /// Every channel, as last committed.
    pub async fn channels(&self) -> Result<Vec<ChannelRecord>, ChannelClientError> {
        use std::sync::atomic::Ordering;
        // Listed once: from then on every record this wallet commits is in `records` too.
        if !self.records_listed.load(Ordering::Acquire) {
            for key in self.store().keys(RECORD_PREFIX).await? {
                self.record(key).await?;
            }
            self.records_listed.store(true, Ordering::Release);
        }
        Ok(self.known_records().values().cloned().collect())
    }

    /// Every channel as it is once `base` (staged, not yet committed) is.
    pub async fn channels_in(
        &self,
        base: &WriteBatch,
    ) -> Result<Vec<ChannelRecord>, ChannelClientError> {
        let mut records: std::collections::BTreeMap<String, ChannelRecord> = self
            .channels()
            .await?
            .into_iter()
            .map(|r| (record_key(&r.id()), r))
            .collect();
        for (key, value) in base.with_prefix(RECORD_PREFIX) {
            match value {
                Some(bytes) => records.insert(key.to_owned(), decode_record(key, bytes)?),
                None => records.remove(key),
            };
        }
        Ok(records.into_values().collect())
    }

    /// The record under `key` as last committed: from memory, else from the store.
    async fn record(&self, key: String) -> Result<Option<ChannelRecord>, ChannelClientError> {
        if let Some(record) = self.known_records().get(&key) {
            return Ok(Some(record.clone()));
        }
        let Some(bytes) = self.store().get(&key).await? else {
            return Ok(None);
        };
        let record = decode_record(&key, &bytes)?;
        self.known_records()
            .entry(key)
            .or_insert_with(|| record.clone());
        Ok(Some(record))
    }

    fn known_records(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, ChannelRecord>> {
        // A poisoned lock still holds records as they were last committed.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `record`; durable when it returns, and only then the wallet's view of it. For
    /// steps of this wallet's own that act (send, fund) right after.
    pub(crate) async fn save(&self, record: &ChannelRecord) -> Result<(), ChannelClientError> {
        let mut writes = WriteBatch::new();
        stage_record(&mut writes, record)?;
        // On failure the record stays as it was: the payment signed in `record` never leaves.
        self.commit_batch(writes).await?;
        Ok(())
    }

    pub(crate) fn context<'a>(
        key: &'a bitcoin::secp256k1::SecretKey,
        tip: ChainTip,
        fee_rate: FeeRate,
    ) -> PayerContext<'a> {
        PayerContext {
            key,
            tip,
            refund_fee_rate: fee_rate,
        }
    }

    /// Opens a channel of `params.value` (at most `limits.max_channel_value`) with the payee of
    /// `params.offer` for `params.site`: negotiates over the channel endpoint, funds the
    /// contract from the wallet, and hands it over with a first payment of the server's
    /// minimum. The contract is broadcast once the channel is open. Each step is stored before
    /// the message it produced leaves.
    ///
    /// The payee's `INITIATE` is held to its offer and to the caller: a first payment above the
    /// offer's `minPayment` or above `first_payment` (what the caller set aside for it, dust
    /// swept into it included), or an expiry beyond the offer's `maxExpiryBlocks`, is refused
    /// before anything is funded.
    pub async fn open_channel<T: Transport, C: ChainSource>(
        &mut self,
        transport: &T,
        chain: &C,
        params: OpenParams<'_>,
    ) -> Result<ChannelRecord, ChannelClientError> {
        let OpenParams {
            site,
            offer,
            value,
            first_payment,
            limits,
            fee_rate,
            now,
        } = params;
        let version = offer
            .extra
            .versions
            .iter()
            .find_map(|v| Version::from_major(*v))
            .ok_or(ChannelError::NoAcceptableVersion { requested: 0 })?;
        if self
            .channel(site, &offer.pay_to)
            .await?
            .is_some_and(|r| r.state.state.committed_channel().is_some())
        {
            return Err(ChannelClientError::ChannelUnsettled(site.to_owned()));
        }
        let tip = chain.tip().await?;
        let (key_index, key) = self.next_channel_key().await?;
        let payout_script = self.fresh_script().await?;
        let ctx = Self::context(&key, tip, fee_rate);
        let time_window_blocks = offer.extra.max_expiry_blocks.min(limits.max_expiry_blocks);
        let start = PayerState::start(PayerConfig {
            version,
            channel_value: value.min(limits.max_channel_value),
            time_window_blocks,
            max_expiry_blocks: time_window_blocks
                .saturating_add(EXPIRY_TIP_SKEW_BLOCKS)
                .min(limits.max_expiry_blocks),
            max_min_payment: first_payment
                .min(offer.extra.min_payment)
                .min(limits.max_min_payment),
            payout_script,
        });
        let base = offer.extra.endpoint.trim_end_matches('/').to_owned();
        let mut record = ChannelRecord {
            site: site.to_owned(),
            payee_key: offer.pay_to,
            endpoint: base.clone(),
            session: String::new(),
            key_index,
            state: Snapshot::new(start.state),
            credit: Amount::ZERO,
            last_offer: None,
            chain: ChainWatch::default(),
        };
        let mut outbox = start.send;
        let mut url = format!("{base}/open");
        let mut contract: Option<Transaction> = None;
        while let Some(msg) = outbox.pop() {
            let (session, replies) = exchange(transport, &url, &msg, None).await?;
            if let Some(s) = session {
                record.session = s;
                url = format!("{base}/session/{}", record.session);
            }
            for reply in replies {
                let step = record.state.state.on_message(&ctx, reply)?;
                record.state = Snapshot::new(step.state);
                self.save(&record).await?;
                outbox.extend(step.send);
                for tx in step.broadcast {
                    // The server broadcasts the contract too; ours is a backstop.
                    let _ = chain.broadcast(&tx).await;
                }
            }
            if let PayerState::AwaitingFunding {
                contract: terms, ..
            } = &record.state.state
            {
                let tx = self
                    .build_and_sign(vec![terms.output()], fee_rate, now)
                    .await?;
                let step = record
                    .state
                    .state
                    .contract_funded(&ctx, tx.clone(), Amount::ZERO)?;
                record.state = Snapshot::new(step.state);
                self.save(&record).await?;
                outbox.extend(step.send);
                contract = Some(tx);
            }
        }
        if let PayerState::Ready { channel } = &record.state.state {
            // The first payment is the channel's first credit: the server counts it paid and
            // not yet consumed (docs/protocol.md, section 2).
            record.credit = channel.acknowledged;
            self.save(&record).await?;
            return Ok(record);
        }
        // A contract that never left stays ours: forget it so its coins are spendable again.
        if let (Some(tx), None) = (&contract, record.state.state.committed_channel()) {
            self.forget_tx(tx, now).await?;
        }
        Err(ChannelError::UnexpectedMessage {
            state: record.state.state.name(),
            message: "end of opening",
        }
        .into())
    }

    /// Completes the opening of the channel with `site` if it was interrupted after the
    /// contract was handed over (a process killed before the payee's `CHANNEL_OPEN` was
    /// stored): the payee that holds the channel resumes it by its contract
    /// (`CLIENT_VERSION` with `previous_contract`); one that never got the contract receives it
    /// again on the opening session. Does nothing for a channel that is not opening.
    pub async fn complete_open<T: Transport, C: ChainSource>(
        &mut self,
        transport: &T,
        chain: &C,
        site: &str,
        payee_key: &PublicKey,
    ) -> Result<ChannelRecord, ChannelClientError> {
        let mut record = self
            .channel(site, payee_key)
            .await?
            .ok_or_else(|| ChannelClientError::NoChannel(site.to_owned()))?;
        let PayerState::AwaitingOpen { channel } = &record.state.state else {
            return Ok(record);
        };
        let channel = channel.clone();
        let key = self.channel_key(record.key_index)?;
        let tip = chain.tip().await?;
        let ctx = Self::context(&key, tip, FeeRate::BROADCAST_MIN);
        let base = record.endpoint.clone();
        let hello = WireMessage::ClientVersion(ClientVersion {
            major: channel.funding.contract.version.major(),
            minor: 0,
            time_window_blocks: 0,
            previous_contract: Some(channel.contract_txid()),
        });
        let authorization = auth::authorize(ChannelRequest::Resume, &channel.contract_txid(), &key);
        let (_, replies) = exchange(
            transport,
            &format!("{base}/open"),
            &hello,
            Some(&authorization),
        )
        .await?;
        let replies = match replies
            .into_iter()
            .find(|m| matches!(m, WireMessage::ChannelOpen(_)))
        {
            Some(open) => vec![open],
            // The payee does not know the channel: hand the contract over again.
            None => {
                let provide = WireMessage::ProvideContract(ProvideContract {
                    contract: channel.contract_tx.clone(),
                    client_key: PublicKey::from_secret_key(bitcoin::secp256k1::SECP256K1, &key),
                    payout_script: channel.payout_script.clone(),
                    initial_payment: channel.latest.clone(),
                });
                let url = format!("{base}/session/{}", record.session);
                exchange(transport, &url, &provide, None).await?.1
            }
        };
        for reply in replies {
            let step = record.state.state.on_message(&ctx, reply)?;
            record.state = Snapshot::new(step.state);
            for tx in step.broadcast {
                // The server broadcasts the contract too; ours is a backstop.
                let _ = chain.broadcast(&tx).await;
            }
        }
        let PayerState::Ready { channel } = &record.state.state else {
            return Err(ChannelError::UnexpectedMessage {
                state: record.state.state.name(),
                message: "end of opening",
            }
            .into());
        };
        record.session = channel.contract_txid().to_string();
        record.credit = channel.acknowledged;
        self.save(&record).await?;
        Ok(record)
    }

    /// The `PAYMENT-SIGNATURE` header value that pays `offer` for `resource` over the channel
    /// with `site` as it is once `base` is: from what the payee can already charge if that
    /// covers the price, else with a new signed payment for the rest. Staged: the new payment
    /// (or the new offer) is in the writes, and the header is had only once they are committed.
    /// The writes are this payment's only; `base` is read, not included.
    pub async fn pay(
        &self,
        base: &WriteBatch,
        site: &str,
        offer: &PaymentRequirements,
        resource: &Resource,
        nonce: Option<String>,
        tip: ChainTip,
    ) -> Result<Staged<String>, ChannelClientError> {
        let mut record = self
            .channel_in(base, site, &offer.pay_to)
            .await?
            .ok_or_else(|| ChannelClientError::NoChannel(site.to_owned()))?;
        if record.payee_key != offer.pay_to {
            return Err(ChannelClientError::PayeeKeyChanged);
        }
        let new_offer = record.last_offer.as_ref() != Some(offer);
        if new_offer {
            record.last_offer = Some(offer.clone());
        }
        let signed = self.cover(&mut record, offer.amount, offer.amount, tip)?;
        let mut writes = WriteBatch::new();
        if signed || new_offer {
            // Persist, then act: a new signature leaves only once it is stored.
            stage_record(&mut writes, &record)?;
        }
        let key = self.channel_key(record.key_index)?;
        let header = payment_header(&record, offer, resource, nonce, &key)
            .map_err(WalletError::from)?
            .ok_or_else(|| ChannelClientError::NoChannel(site.to_owned()))?;
        Ok(Staged::new(header, writes))
    }

    /// Unless the payee can already charge `needed` (see [`ChannelRecord::available`]), signs
    /// a payment so that it can charge `wanted` (at least `needed`, as far as the channel
    /// allows). Returns whether it signed; the caller stores `record` before the payment leaves.
    fn cover(
        &self,
        record: &mut ChannelRecord,
        needed: Amount,
        wanted: Amount,
        tip: ChainTip,
    ) -> Result<bool, ChannelClientError> {
        let available = record.available();
        let Some(short) = needed.checked_sub(available).filter(|i| *i > Amount::ZERO) else {
            return Ok(false);
        };
        let remaining = record
            .state
            .state
            .committed_channel()
            .map_or(Amount::ZERO, |c| c.remaining());
        let increment = wanted
            .checked_sub(available)
            .unwrap_or(Amount::ZERO)
            .min(remaining)
            .max(short);
        let key = self.channel_key(record.key_index)?;
        let ctx = Self::context(&key, tip, FeeRate::BROADCAST_MIN);
        let step = record.state.state.pay(&ctx, increment)?;
        record.state = Snapshot::new(step.state);
        Ok(true)
    }

    /// A pre-armed `PAYMENT-SIGNATURE` for a request to `site` before it asks: answers the
    /// site's last offer without a nonce, paying from what the payee can charge or with a new
    /// increment (the payee keeps what the request does not need as credit). `None` without an
    /// open channel. Staged on top of `base` as [`Wallet::pay`] is.
    pub async fn pre_arm(
        &self,
        base: &WriteBatch,
        site: &str,
        payee_key: &PublicKey,
        resource: &Resource,
        tip: ChainTip,
    ) -> Result<Staged<Option<String>>, ChannelClientError> {
        let offer = self.channel_in(base, site, payee_key).await?.and_then(|r| {
            let open = matches!(r.state.state, PayerState::Ready { .. });
            r.last_offer.filter(|_| open)
        });
        match offer {
            Some(offer) => Ok(self
                .pay(base, site, &offer, resource, None, tip)
                .await?
                .map(Some)),
            None => Ok(Staged::new(None, WriteBatch::new())),
        }
    }

    /// Prepares the payment for the next request to `site` while one is in flight: unless the
    /// payee can already charge both the request in flight and one more at the site's last
    /// price, signs a payment that tops its credit up to [`PREPAID_REQUESTS`] more at that
    /// price (as far as the channel allows), staged on top of `base`. Call it after the
    /// in-flight request's payment was made and before its receipt is applied, and commit it
    /// before the next [`Wallet::pre_arm`], which then sends the prepared payment with no
    /// signing or storing of its own.
    ///
    /// Until it is sent, a prepared payment is only in this wallet: a payee never holds more
    /// than the client sent. If no request follows, the next one to the site, in this run or a
    /// later one, sends it.
    pub async fn prepare_next(
        &self,
        base: &WriteBatch,
        site: &str,
        payee_key: &PublicKey,
        tip: ChainTip,
    ) -> Result<Staged<()>, ChannelClientError> {
        let mut writes = WriteBatch::new();
        let Some(mut record) = self.channel_in(base, site, payee_key).await? else {
            return Ok(Staged::new((), writes));
        };
        let Some(price) = record.last_offer.as_ref().map(|o| o.amount) else {
            return Ok(Staged::new((), writes));
        };
        if !matches!(record.state.state, PayerState::Ready { .. }) {
            return Ok(Staged::new((), writes));
        }
        let wanted = price
            .checked_mul(PREPAID_REQUESTS + 1)
            .unwrap_or(Amount::MAX_MONEY);
        if self.cover(&mut record, price + price, wanted, tip)? {
            stage_record(&mut writes, &record)?;
        }
        Ok(Staged::new((), writes))
    }

    /// Applies the `PAYMENT-RESPONSE` receipt of a request to `site`, on top of `base`: what
    /// the payee now holds and its credit. A refusal that carries the channel's state counts
    /// too: it is the payee's account of the channel, from which the next payment is computed.
    ///
    /// A receipt older than one already applied changes nothing. The changed record is staged;
    /// the caller commits it now (the extension, with the budget it commits) or carries it into
    /// the next payment's write ([`Staged::commit_carrying`], the command-line payer), so that a paid
    /// page costs one durable write. Nothing is signed here, and no money depends on a receipt
    /// being stored: a receipt lost in a crash leaves the last stored one, by which the client
    /// counts on more credit than the payee has; the payee then answers 402 and the client pays
    /// the difference, as it would have. Every signed payment is stored before it leaves,
    /// whatever happens to receipts.
    pub async fn apply_receipt(
        &self,
        base: &WriteBatch,
        site: &str,
        payee_key: &PublicKey,
        response: &PaymentResponse,
        tip: ChainTip,
    ) -> Result<Staged<()>, ChannelClientError> {
        let mut record = self
            .channel_in(base, site, payee_key)
            .await?
            .ok_or_else(|| ChannelClientError::NoChannel(site.to_owned()))?;
        let mut writes = WriteBatch::new();
        let Some(receipt) = response.receipt.as_ref() else {
            return Ok(Staged::new((), writes));
        };
        if Some(receipt.channel) != record.state.state.contract_txid() {
            return Err(ChannelClientError::BadReceipt("it is for another channel"));
        }
        let key = self.channel_key(record.key_index)?;
        let ctx = Self::context(&key, tip, FeeRate::BROADCAST_MIN);
        let held = record
            .state
            .state
            .committed_channel()
            .map_or(Amount::ZERO, |c| c.acknowledged);
        let ack = WireMessage::PaymentAck(PaymentAck {
            amount_paid: receipt.paid,
        });
        let step = record.state.state.on_message(&ctx, ack)?;
        record.state = Snapshot::new(step.state);
        // Receipts may arrive out of order. One for less than the payee is known to hold is
        // older than the credit we have; at the same total, credit only goes down.
        if receipt.paid > held {
            record.credit = receipt.credit;
        } else if receipt.paid == held {
            record.credit = record.credit.min(receipt.credit);
        }
        stage_record(&mut writes, &record)?;
        Ok(Staged::new((), writes))
    }

    /// Asks the payee to close the channel with `site` and checks the settlement it returns.
    /// The channel is then `Closing`, its refund armed and the settlement kept (broadcast
    /// again while it is not in a block), until [`Wallet::check_spent_contracts`] sees the
    /// contract's spend final. A close the payee refuses leaves the
    /// channel `Ready`: it still pays, and may be closed again.
    pub async fn close_channel<T: Transport>(
        &mut self,
        transport: &T,
        site: &str,
        payee_key: &PublicKey,
        tip: ChainTip,
    ) -> Result<Transaction, ChannelClientError> {
        let mut record = self
            .channel(site, payee_key)
            .await?
            .ok_or_else(|| ChannelClientError::NoChannel(site.to_owned()))?;
        let key = self.channel_key(record.key_index)?;
        let ctx = Self::context(&key, tip, FeeRate::BROADCAST_MIN);
        let step = record.state.state.close()?;
        record.state = Snapshot::new(step.state);
        self.save(&record).await?;
        let url = format!("{}/session/{}", record.endpoint, record.session);
        // Only the channel's client may close it: the payee checks this signature.
        let authorization = record
            .state
            .state
            .contract_txid()
            .map(|txid| auth::authorize(ChannelRequest::Close, &txid, &key));
        let mut settlement = None;
        for msg in step.send {
            let (_, replies) = exchange(transport, &url, &msg, authorization.as_deref()).await?;
            for reply in replies {
                if let WireMessage::Close(c) = &reply {
                    settlement = c.settlement.clone();
                }
                let step = record.state.state.on_message(&ctx, reply)?;
                record.state = Snapshot::new(step.state);
                // Checked by the step: the settlement pays the client what it must.
                if let Some(tx) = &settlement {
                    record.chain.settlement = Some(tx.clone());
                }
                self.save(&record).await?;
            }
        }
        settlement.ok_or_else(|| ChannelClientError::Transport("no settlement in CLOSE".into()))
    }
}
