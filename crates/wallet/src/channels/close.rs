//! A cooperative close: the payee asked to close, its settlement checked and kept.

use bitcoin::secp256k1::PublicKey;
use bitcoin::{FeeRate, Transaction};
use trickle_channel::auth::{self, ChannelRequest};
use trickle_channel::{ChainTip, Snapshot, WireMessage};

use super::endpoint::exchange;
use super::{ChannelClientError, ChannelRecord, Transport};
use crate::budget::site_origin;
use crate::store::Store;
use crate::wallet::Wallet;

impl<S: Store> Wallet<S> {
    /// The open channel (one that can still be closed) named by `name`: a site's origin, or a
    /// host with one such channel.
    pub async fn channel_to_close(&self, name: &str) -> Result<ChannelRecord, ChannelClientError> {
        let origin = site_origin(name).ok();
        let host = |site: &str| url::Url::parse(site).is_ok_and(|u| u.host_str() == Some(name));
        let mut open: Vec<ChannelRecord> = self
            .channels()
            .await?
            .into_iter()
            .filter(|r| r.state.state.committed_channel().is_some())
            .filter(|r| Some(&r.site) == origin.as_ref() || host(&r.site))
            .collect();
        match open.len() {
            0 => Err(ChannelClientError::NoChannel(name.to_owned())),
            1 => Ok(open.remove(0)),
            _ => Err(ChannelClientError::SeveralChannels {
                name: name.to_owned(),
                sites: open.into_iter().map(|r| r.site).collect(),
            }),
        }
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
