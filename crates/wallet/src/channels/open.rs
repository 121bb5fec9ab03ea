//! Opening a channel: negotiated over the payee's endpoint, funded from the wallet's coins,
//! each step stored before the message it produced leaves.

use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, FeeRate, Transaction};
use trickle_channel::auth::{self, ChannelRequest};
use trickle_channel::{
    ChannelError, ClientVersion, PayerConfig, PayerState, ProvideContract, Snapshot, Version,
    WireMessage,
};

use super::endpoint::exchange;
use super::{
    ChainWatch, ChannelClientError, ChannelRecord, OpenParams, Transport, EXPIRY_TIP_SKEW_BLOCKS,
};
use crate::chain::ChainSource;
use crate::store::Store;
use crate::wallet::Wallet;

impl<S: Store> Wallet<S> {
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
}
