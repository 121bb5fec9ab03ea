//! The channel endpoint on the wire: a channel message POSTed as JSON, the payee's messages
//! back; and the `PAYMENT-SIGNATURE` headers that carry payments to a site.

use bitcoin::secp256k1::SecretKey;
use bitcoin::{Amount, FeeRate};
use trickle_channel::auth;
use trickle_channel::http::endpoint::{EndpointReply, MessageRequest};
use trickle_channel::http::{
    ChannelPayment, PaymentRequirements, PaymentSignature, Resource, TICKET_LEN, X402_VERSION,
};
use trickle_channel::{ChainTip, ChannelError, PayerContext, WireMessage};

use super::{ChannelClientError, ChannelRecord, Transport};
use crate::store::Store;
use crate::vault::{self, VaultError};
use crate::wallet::Wallet;

/// Sends `msg` to the endpoint and decodes the answer; an `ERROR` answer becomes an error.
pub(super) async fn exchange<T: Transport>(
    transport: &T,
    url: &str,
    msg: &WireMessage,
    authorization: Option<&str>,
) -> Result<(Option<String>, Vec<WireMessage>), ChannelClientError> {
    let body = serde_json::to_vec(&MessageRequest::new(msg, authorization))
        .map_err(|e| ChannelClientError::Transport(e.to_string()))?;
    let (status, bytes) = transport
        .post_json(url, body)
        .await
        .map_err(ChannelClientError::Transport)?;
    let answer: EndpointReply = serde_json::from_slice(&bytes).map_err(|e| {
        ChannelClientError::Transport(format!("status {status}, unreadable answer: {e}"))
    })?;
    let messages = answer.wire().map_err(ChannelError::from)?;
    if let Some(WireMessage::Error(e)) = messages.first() {
        return Err(ChannelError::Peer(e.clone()).into());
    }
    if !(200..300).contains(&status) {
        return Err(ChannelClientError::Transport(format!("status {status}")));
    }
    Ok((answer.session, messages))
}

/// The `PAYMENT-SIGNATURE` header that pays `offer` for `resource` from `record`'s channel:
/// the channel's total, and the latest payment until a receipt acknowledges it (a payee that
/// already holds it counts it once, one that missed it counts it now). `None` when the channel
/// is not open.
pub(super) fn payment_header(
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
        accepted: offer.as_accepted(),
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
}
