//! Paying over an open channel, ahead of need, and taking the payee's receipts.

use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, FeeRate};
use trickle_channel::http::{PaymentRequirements, PaymentResponse, Resource};
use trickle_channel::{ChainTip, PayerState, PaymentAck, Snapshot, WireMessage};

use super::endpoint::payment_header;
use super::{ChannelClientError, ChannelRecord, PREPAID_REQUESTS};
use crate::book::stage_record;
use crate::error::WalletError;
use crate::store::{Staged, Store, WriteBatch};
use crate::wallet::Wallet;

impl<S: Store> Wallet<S> {
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
            record.last_offer = Some(offer.as_accepted());
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
}
