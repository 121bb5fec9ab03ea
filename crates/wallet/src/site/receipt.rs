//! A paid request's receipt: applied, and the reservations it shows held committed.

use super::*;

/// A receipt, as applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptView {
    /// The site (origin).
    pub origin: String,
    /// Whether the payee accepted the payment.
    pub success: bool,
    /// The payee's reason for refusing, if it did.
    pub error_reason: Option<String>,
    /// What this request was charged, sat.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub consumed: Amount,
    /// What the payee holds in total, sat.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub paid: Amount,
    /// Paid and not yet consumed, sat.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub credit: Amount,
    /// Sat of the budget this receipt committed.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub committed: Amount,
    /// For a request paid by a pre-armed payment: the `PAYMENT-SIGNATURE` that reloads the URL
    /// without paying again (the receipt's nonce, no update).
    pub reload_header: Option<String>,
    /// The payee refused for lack of credit, with its account of the channel (now applied):
    /// the 402 that comes with it is paid, once (see [`pays_again`]).
    pub pay_again: bool,
}

/// Whether the 402 that comes with `response` is paid although the request carried a payment:
/// only when the payee refused it for lack of credit. It then counted less credit than this
/// wallet did (a receipt lost in a crash, a page paid twice at once), and its refusal carries
/// its account of the channel, from which the difference is paid. Any other 402 after a
/// payment is the site asking twice; and a 402 after the difference was paid is not paid.
pub fn pays_again(response: &PaymentResponse) -> bool {
    !response.success
        && response.error_reason.as_deref() == Some(Refusal::InsufficientCredit.as_str())
}

/// The payee's account that a response carries: its `PAYMENT-RESPONSE`, else, in a 402
/// without one, the account a resource server that cannot add that header to its 402 puts in
/// its offers (a corrective 402's `extra.channelState`,
/// [`trickle_channel::http::PaymentRequired::channel_state`]). A malformed `PAYMENT-RESPONSE` is
/// refused; offers that do not parse carry no account (their 402 is refused when answered).
pub fn receipt_in(
    status: u16,
    payment_response: Option<&str>,
    payment_required: Option<&str>,
) -> Result<Option<PaymentResponse>, PayError> {
    if let Some(header) = payment_response {
        return PaymentResponse::from_header(header)
            .map(Some)
            .map_err(|e| PayError::BadHeader(e.to_string()));
    }
    let corrective = payment_required
        .filter(|_| status == 402)
        .and_then(|header| PaymentRequired::from_header(header).ok())
        .and_then(|required| required.channel_state().cloned());
    Ok(corrective)
}

impl<S: Store> Wallet<S> {
    /// Applies the `PAYMENT-RESPONSE` header of a response from `url` and commits the budget
    /// reservations of the increments the payee now holds, staged as one write (commit it with
    /// `(&wallet, &approver)`). `None` when the receipt is about no channel of this wallet (a
    /// stray header is ignored, not trusted).
    pub async fn take_receipt<A: Approver>(
        &self,
        base: &WriteBatch,
        approver: &A,
        url: &str,
        header: &str,
        tip: ChainTip,
        now: u64,
    ) -> Result<Option<Staged<ReceiptView>>, PayError> {
        let response =
            PaymentResponse::from_header(header).map_err(|e| PayError::BadHeader(e.to_string()))?;
        self.take_response(base, approver, url, &response, tip, now)
            .await
    }

    /// [`Wallet::take_receipt`] of a settlement response already read: a `PAYMENT-RESPONSE`'s,
    /// or the payee's account of the channel in a corrective 402's offer
    /// ([`trickle_channel::http::PaymentRequired::channel_state`]).
    pub async fn take_response<A: Approver>(
        &self,
        base: &WriteBatch,
        approver: &A,
        url: &str,
        response: &PaymentResponse,
        tip: ChainTip,
        now: u64,
    ) -> Result<Option<Staged<ReceiptView>>, PayError> {
        let Some(receipt) = response.receipt.as_ref() else {
            return Ok(None);
        };
        let origin = crate::budget::site_origin(url).map_err(|_| OfferError::BadUrl(url.into()))?;
        let Some(record) = self
            .channels_in(base)
            .await?
            .into_iter()
            .find(|r| r.state.state.contract_txid() == Some(receipt.channel))
        else {
            return Ok(None);
        };
        if record.site != origin {
            return Err(ChannelClientError::BadReceipt("it is for another site's channel").into());
        }
        let mut writes = self
            .apply_receipt(base, &record.site, &record.payee_key, response, tip)
            .await?
            .into_writes();
        // In the same write as the receipt, so that the two agree after a crash.
        let committed = self
            .commit_acknowledged(base, &mut writes, approver, &record, receipt.paid, now)
            .await?;
        let reload_header = match (&receipt.nonce, &record.last_offer) {
            (Some(nonce), Some(offer)) => Some(
                crate::channels::signature_header(
                    &Resource {
                        url: url.to_owned(),
                        description: String::new(),
                        mime_type: String::new(),
                    },
                    offer,
                    receipt.channel,
                    receipt.paid,
                    None,
                    Some(nonce.clone()),
                    &self.channel_key(record.key_index)?,
                )
                .map_err(WalletError::from)?,
            ),
            _ => None,
        };
        let view = ReceiptView {
            origin,
            success: response.success,
            error_reason: response.error_reason.clone(),
            consumed: receipt.consumed,
            paid: receipt.paid,
            credit: receipt.credit,
            committed,
            reload_header,
            pay_again: pays_again(response),
        };
        Ok(Some(Staged::new(view, writes)))
    }

    /// Stages, in `writes` (and read through them), the commits of the budget reservations of
    /// `record`'s outstanding increments that the payee holds, now that it holds `paid` in
    /// total. Returns what is committed.
    pub(super) async fn commit_acknowledged<A: Approver>(
        &self,
        base: &WriteBatch,
        writes: &mut WriteBatch,
        approver: &A,
        record: &ChannelRecord,
        paid: Amount,
        now: u64,
    ) -> Result<Amount, PayError> {
        let mut committed = Amount::ZERO;
        let view = |writes: &WriteBatch| {
            let mut view = base.clone();
            view.merge(writes.clone());
            view
        };
        for (key, outstanding) in self.outstanding_in(&view(writes)).await? {
            if outstanding.origin != record.site
                || outstanding.payee != record.payee_key
                || outstanding.paid_after > paid
            {
                continue;
            }
            let staged = approval::stage(approver, &view(writes), &outstanding.origin, |b| {
                b.commit(outstanding.reservation, now)
            })
            .await;
            match staged {
                Ok(staged) => {
                    let (amount, change) = staged.into_parts();
                    writes.merge(change);
                    committed += amount;
                }
                // Committed before a crash that kept the record: nothing left to do.
                Err(BudgetError::UnknownReservation(_) | BudgetError::NoBudget { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            writes.remove(key);
        }
        Ok(committed)
    }
}
