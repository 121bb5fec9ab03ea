//! Asking the user: why a payment waits for them, and what approving it means.

use super::*;

/// Why the user is asked before a payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum AskReason {
    /// The site has no budget.
    NoBudget,
    /// The price is above the budget's auto-approve threshold.
    Confirm,
    /// No channel is open, and the one the payee asks for locks more than the budget's limit.
    LockAboveLimit {
        /// What the channel would lock, sat (it comes back, less what is paid, when the
        /// channel closes or is refunded).
        #[serde(with = "bitcoin::amount::serde::as_sat")]
        #[ts(type = "number")]
        lock: Amount,
        /// The budget's limit, sat.
        #[serde(with = "bitcoin::amount::serde::as_sat")]
        #[ts(type = "number")]
        limit: Amount,
    },
    /// The budget has too little left for this payment.
    BudgetExhausted {
        /// What is left this period, sat.
        #[serde(with = "bitcoin::amount::serde::as_sat")]
        #[ts(type = "number")]
        remaining: Amount,
        /// What the payment needs, sat.
        #[serde(with = "bitcoin::amount::serde::as_sat")]
        #[ts(type = "number")]
        needed: Amount,
    },
}

/// A payment the user is asked to approve, with what approving it means.
///
/// Serialized for the extension's pages; the terms are not (`Terms` serializes in its storage
/// form, and each view writes terms its own way).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Ask {
    /// Why.
    pub reason: AskReason,
    /// The site (origin).
    pub origin: String,
    /// The URL asking.
    pub url: String,
    /// The resource's description, from the site.
    pub description: String,
    /// The price, sat.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    #[ts(type = "number")]
    pub price: Amount,
    /// The site's current budget, if any.
    #[serde(skip)]
    pub current: Option<Terms>,
    /// A budget to offer the user.
    #[serde(skip)]
    pub suggested: Terms,
    /// Whether a channel with the site is open (else approving opens one).
    pub has_channel: bool,
    /// What a new channel would lock, sat (from the suggested budget).
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    #[ts(type = "number")]
    pub channel_value: Amount,
    /// What opening a new channel signs to the site at once, sat: the offer's first payment,
    /// counted in the budget (a payee asking more when the channel opens is refused). `None`
    /// when a channel is open.
    #[serde(with = "bitcoin::amount::serde::as_sat::opt")]
    #[ts(type = "number | null")]
    pub first_payment: Option<Amount>,
    /// The on-chain fee to open it at the current fee rate, if the wallet can fund it now.
    #[serde(with = "bitcoin::amount::serde::as_sat::opt")]
    #[ts(type = "number | null")]
    pub open_fee: Option<Amount>,
    /// Why the wallet cannot fund the channel now, if it cannot.
    pub cannot_fund: Option<String>,
    /// What the wallet has and needs, when it cannot fund the channel for lack of coins.
    pub shortfall: Option<Shortfall>,
}

/// The budget offered to a site the user has not approved yet: a hundred requests at this
/// price a week, each paid without asking.
pub fn suggested_terms(price: Amount) -> Terms {
    let limit = (price * 100).min(Amount::MAX_MONEY);
    Terms {
        limit,
        period: Period::Week,
        max_price: price,
        auto_approve: Some(price),
    }
}

impl<S: Store> Wallet<S> {
    /// The fee to fund a channel of `value` now, or why the wallet cannot.
    pub(super) fn open_fee(
        &mut self,
        value: Amount,
        fee_rate: FeeRate,
    ) -> Result<Amount, WalletError> {
        // A P2WSH output of the same size as the contract's.
        let contract = TxOut {
            value,
            script_pubkey: ScriptBuf::new_p2wsh(&WScriptHash::all_zeros()),
        };
        Ok(self.preview(vec![contract], fee_rate)?.fee)
    }

    pub(super) async fn exhausted<A: Approver>(
        &self,
        approver: &A,
        offer: &CheckedOffer,
        needed: Amount,
        now: u64,
    ) -> Result<AskReason, PayError> {
        let remaining = approver
            .budget_in(&WriteBatch::new(), offer.origin())
            .await?
            .map_or(Amount::ZERO, |b| b.status(now).remaining);
        Ok(AskReason::BudgetExhausted { remaining, needed })
    }

    pub(super) fn ask<T, C>(
        &mut self,
        offer: &CheckedOffer,
        url: &str,
        reason: AskReason,
        current: Option<Terms>,
        has_channel: bool,
        ctx: &PayContext<'_, T, C>,
    ) -> Answer {
        let suggested = match (&reason, current) {
            // Raising an exhausted budget: the same terms, twice the limit.
            (AskReason::BudgetExhausted { .. }, Some(t)) => Terms {
                limit: (t.limit * 2).min(Amount::MAX_MONEY),
                ..t
            },
            (_, Some(t)) => t,
            (_, None) => suggested_terms(offer.price()),
        };
        let channel_value = offer
            .channel_value(
                suggested.limit.max(offer.min_channel_value()),
                &ctx.policy.limits,
            )
            .unwrap_or(offer.min_channel_value());
        let (open_fee, cannot_fund, shortfall) = if has_channel {
            (None, None, None)
        } else {
            match self.open_fee(channel_value, ctx.fee_rate) {
                Ok(fee) => (Some(fee), None, None),
                Err(e) => (None, Some(e.to_string()), e.shortfall()),
            }
        };
        Answer::Ask(Box::new(Ask {
            reason,
            origin: offer.origin().to_owned(),
            url: url.to_owned(),
            description: offer.resource().description.clone(),
            price: offer.price(),
            current,
            suggested,
            has_channel,
            channel_value,
            first_payment: (!has_channel).then(|| offer.min_payment()),
            open_fee,
            cannot_fund,
            shortfall,
        }))
    }
}
