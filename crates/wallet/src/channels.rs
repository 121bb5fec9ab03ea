//! The client's channels with sites: opening one over the payee's channel endpoint, paying
//! priced requests, reading receipts, closing and refunding. Every state is stored before the
//! message it produced leaves ("persist, then act").

use core::fmt;

use bdk_esplora::esplora_client::{AsyncClient, Sleeper};
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, FeeRate, Transaction};
use serde::{Deserialize, Serialize};
use trickle_channel::http::{
    ChannelPayment, PaymentRequirements, PaymentResponse, PaymentSignature, Resource, X402_VERSION,
};
use trickle_channel::{
    ChainTip, ChannelError, ChannelId, PayerConfig, PayerContext, PayerState, PaymentAck, Snapshot,
    Version, WireMessage,
};

use crate::store::{Store, StoreError};
use crate::wallet::{Wallet, WalletError};

/// HTTP as the channel client needs it: a JSON POST that answers a status and a body.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// POSTs `body` (JSON) to `url`.
    async fn post_json(&self, url: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String>;
}

/// The client's limits for channels it opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelLimits {
    /// Longest the client locks funds, in blocks.
    pub max_expiry_blocks: u32,
    /// Largest first payment the client accepts.
    pub max_min_payment: Amount,
}

impl Default for ChannelLimits {
    fn default() -> Self {
        Self {
            max_expiry_blocks: 4 * 1008,
            max_min_payment: Amount::from_sat(5_000),
        }
    }
}

/// One channel with one site, as stored under `channel/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    /// The site (host) the channel pays.
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
    /// Paid but not yet consumed, per the last receipt.
    pub credit: Amount,
    /// The site's last offer, answered by pre-armed payments.
    #[serde(default)]
    pub last_offer: Option<PaymentRequirements>,
}

impl ChannelRecord {
    /// The channel's id.
    pub fn id(&self) -> ChannelId {
        ChannelId::new(&self.payee_key, &self.site)
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
}

impl fmt::Display for ChannelClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wallet(e) => write!(f, "{e}"),
            Self::Channel(e) => write!(f, "channel: {e}"),
            Self::Transport(e) => write!(f, "channel endpoint: {e}"),
            Self::NoChannel(site) => write!(f, "no open channel with {site}"),
            Self::PayeeKeyChanged => f.write_str("the site's payee key changed; not paying"),
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
}

#[derive(Deserialize)]
struct EndpointAnswer {
    #[serde(default)]
    session: Option<String>,
    messages: Vec<String>,
}

fn record_key(id: &ChannelId) -> String {
    format!("channel/{id}")
}

/// Sends `msg` to the endpoint and decodes the answer; an `ERROR` answer becomes an error.
async fn exchange<T: Transport>(
    transport: &T,
    url: &str,
    msg: &WireMessage,
) -> Result<(Option<String>, Vec<WireMessage>), ChannelClientError> {
    let body = serde_json::to_vec(&EndpointRequest {
        message: &msg.to_base64url(),
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

impl<S: Store> Wallet<S> {
    /// The stored channel with `site` paying `payee_key`, if any.
    pub async fn channel(
        &self,
        site: &str,
        payee_key: &PublicKey,
    ) -> Result<Option<ChannelRecord>, ChannelClientError> {
        let key = record_key(&ChannelId::new(payee_key, site));
        match self.store().get(&key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| WalletError::Corrupt(format!("{key}: {e}")).into()),
        }
    }

    /// Every stored channel.
    pub async fn channels(&self) -> Result<Vec<ChannelRecord>, ChannelClientError> {
        let mut out = Vec::new();
        for key in self.store().keys("channel/").await? {
            if let Some(bytes) = self.store().get(&key).await? {
                out.push(
                    serde_json::from_slice(&bytes)
                        .map_err(|e| WalletError::Corrupt(format!("{key}: {e}")))?,
                );
            }
        }
        Ok(out)
    }

    async fn save(&self, record: &ChannelRecord) -> Result<(), ChannelClientError> {
        let bytes = serde_json::to_vec(record).map_err(|e| WalletError::Corrupt(e.to_string()))?;
        self.store().put(&record_key(&record.id()), bytes).await?;
        Ok(())
    }

    fn context<'a>(
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

    /// Opens a channel of `value` with the payee of `offer` for `site`: negotiates over the
    /// channel endpoint, funds the contract from the wallet, and hands it over with a first
    /// payment of the server's minimum. The contract is broadcast once the channel is open.
    #[allow(clippy::too_many_arguments)]
    pub async fn open_channel<T: Transport, Z: Sleeper>(
        &mut self,
        transport: &T,
        client: &AsyncClient<Z>,
        site: &str,
        offer: &PaymentRequirements,
        value: Amount,
        limits: &ChannelLimits,
        fee_rate: FeeRate,
        now: u64,
    ) -> Result<ChannelRecord, ChannelClientError> {
        let version = offer
            .extra
            .versions
            .iter()
            .find_map(|v| Version::from_major(*v))
            .ok_or(ChannelError::NoAcceptableVersion { requested: 0 })?;
        let tip = Self::tip(client).await?;
        let (key_index, key) = self.next_channel_key().await?;
        let payout_script = self.fresh_script().await?;
        let ctx = Self::context(&key, tip, fee_rate);
        let start = PayerState::start(PayerConfig {
            version,
            channel_value: value,
            time_window_blocks: offer.extra.max_expiry_blocks.min(limits.max_expiry_blocks),
            max_expiry_blocks: limits.max_expiry_blocks,
            max_min_payment: limits.max_min_payment,
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
        };
        let mut outbox = start.send;
        let mut url = format!("{base}/open");
        let mut contract: Option<Transaction> = None;
        while let Some(msg) = outbox.pop() {
            let (session, replies) = exchange(transport, &url, &msg).await?;
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
                    let _ = client.broadcast(&tx).await;
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

    /// The `PAYMENT-SIGNATURE` header value that pays `offer` for `resource` over the channel
    /// with `site`: a new signed payment for what the known credit does not cover, stored
    /// before it is returned.
    pub async fn pay(
        &mut self,
        site: &str,
        offer: &PaymentRequirements,
        resource: &Resource,
        nonce: Option<String>,
        tip: ChainTip,
    ) -> Result<String, ChannelClientError> {
        let mut record = self
            .channel(site, &offer.pay_to)
            .await?
            .ok_or_else(|| ChannelClientError::NoChannel(site.to_owned()))?;
        if record.payee_key != offer.pay_to {
            return Err(ChannelClientError::PayeeKeyChanged);
        }
        let key = self.channel_key(record.key_index)?;
        let ctx = Self::context(&key, tip, FeeRate::BROADCAST_MIN);
        let increment = offer
            .amount
            .checked_sub(record.credit)
            .unwrap_or(Amount::ZERO);
        let update = if increment > Amount::ZERO {
            let step = record.state.state.pay(&ctx, increment)?;
            record.state = Snapshot::new(step.state);
            record.credit = Amount::ZERO;
            record.last_offer = Some(offer.clone());
            self.save(&record).await?;
            step.send.into_iter().next().map(|m| m.to_base64url())
        } else {
            if record.last_offer.as_ref() != Some(offer) {
                record.last_offer = Some(offer.clone());
                self.save(&record).await?;
            }
            None
        };
        let channel = record
            .state
            .state
            .committed_channel()
            .ok_or_else(|| ChannelClientError::NoChannel(site.to_owned()))?;
        Ok(PaymentSignature {
            x402_version: X402_VERSION,
            resource: resource.clone(),
            accepted: offer.clone(),
            payload: ChannelPayment {
                channel: channel.contract_txid(),
                amount: channel.paid(),
                update,
                nonce,
            },
        }
        .to_header())
    }

    /// A pre-armed `PAYMENT-SIGNATURE` for a request to `site` before it asks: answers the
    /// site's last offer without a nonce, paying from credit or with a new increment (the
    /// server keeps what the request does not need as credit). `None` without an open channel.
    pub async fn pre_arm(
        &mut self,
        site: &str,
        payee_key: &PublicKey,
        resource: &Resource,
        tip: ChainTip,
    ) -> Result<Option<String>, ChannelClientError> {
        let offer = self.channel(site, payee_key).await?.and_then(|r| {
            let open = matches!(r.state.state, PayerState::Ready { .. });
            r.last_offer.filter(|_| open)
        });
        match offer {
            Some(offer) => self.pay(site, &offer, resource, None, tip).await.map(Some),
            None => Ok(None),
        }
    }

    /// Applies a `PAYMENT-RESPONSE` receipt to the channel with `site`.
    pub async fn apply_receipt(
        &mut self,
        site: &str,
        payee_key: &PublicKey,
        response: &PaymentResponse,
        tip: ChainTip,
    ) -> Result<(), ChannelClientError> {
        let mut record = self
            .channel(site, payee_key)
            .await?
            .ok_or_else(|| ChannelClientError::NoChannel(site.to_owned()))?;
        let Some(receipt) = response.receipt.as_ref().filter(|_| response.success) else {
            return Ok(());
        };
        let key = self.channel_key(record.key_index)?;
        let ctx = Self::context(&key, tip, FeeRate::BROADCAST_MIN);
        let ack = WireMessage::PaymentAck(PaymentAck {
            amount_paid: receipt.paid,
        });
        let step = record.state.state.on_message(&ctx, ack)?;
        record.state = Snapshot::new(step.state);
        record.credit = receipt.credit;
        self.save(&record).await
    }

    /// Asks the payee to close the channel with `site` and checks the settlement it returns.
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
        let mut settlement = None;
        for msg in step.send {
            let (_, replies) = exchange(transport, &url, &msg).await?;
            for reply in replies {
                if let WireMessage::Close(c) = &reply {
                    settlement = c.settlement.clone();
                }
                let step = record.state.state.on_message(&ctx, reply)?;
                record.state = Snapshot::new(step.state);
                self.save(&record).await?;
            }
        }
        settlement.ok_or_else(|| ChannelClientError::Transport("no settlement in CLOSE".into()))
    }

    /// Chain duties for every channel: once a channel's expiry has passed without a
    /// settlement, store its refund, then broadcast it (again on later calls, until the chain
    /// has it). Returns the refunds broadcast for the first time.
    pub async fn refund_expired<Z: Sleeper>(
        &mut self,
        client: &AsyncClient<Z>,
        fee_rate: FeeRate,
    ) -> Result<Vec<Transaction>, ChannelClientError> {
        let tip = Self::tip(client).await?;
        let mut refunds = Vec::new();
        for mut record in self.channels().await? {
            let was_refunded = matches!(record.state.state, PayerState::Refunded { .. });
            let key = self.channel_key(record.key_index)?;
            let step = record
                .state
                .state
                .on_tip(&Self::context(&key, tip, fee_rate))?;
            record.state = Snapshot::new(step.state);
            self.save(&record).await?;
            for tx in step.broadcast {
                let sent = client.broadcast(&tx).await;
                if !was_refunded {
                    sent.map_err(WalletError::from)?;
                    refunds.push(tx);
                }
                // A rebroadcast fails once the refund is confirmed: nothing to do then.
            }
        }
        Ok(refunds)
    }
}
