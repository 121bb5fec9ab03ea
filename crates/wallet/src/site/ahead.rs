//! Payments made before the site asks: the next page's pre-armed payment, and the top-up
//! prepared while a request is in flight.

use super::*;

impl<S: Store> Wallet<S> {
    /// A pre-armed `PAYMENT-SIGNATURE` for the next page of `origin`, sent before the site
    /// asks, as it is once `base` (a receipt staged before it) is: it answers the site's last
    /// offer and adds the increment that price needs, reserved in the budget in the same write
    /// (and committed once a receipt shows the payee holds it). `None` when the site's budget
    /// would not pay its last price without asking, when the budget has too little left, or
    /// without an open channel. The writes are this payment's only; commit them with `base`'s
    /// (see [`Staged::and`]) and `(&wallet, &approver)`.
    pub async fn pre_arm_site<A: Approver>(
        &self,
        base: &WriteBatch,
        approver: &A,
        origin: &str,
        tip: ChainTip,
        now: u64,
    ) -> Result<Staged<Option<String>>, PayError> {
        let none = || Ok(Staged::new(None, WriteBatch::new()));
        let Some(record) = self.open_channel_with(base, origin).await? else {
            return none();
        };
        let Some(offer) = record.last_offer.clone() else {
            return none();
        };
        let Some(budget) = approver.budget_in(base, origin).await? else {
            return none();
        };
        let auto = budget.state() == crate::budget::BudgetState::Enabled
            && offer.amount <= budget.terms().max_price
            && !budget.needs_approval(offer.amount);
        if !auto {
            return none();
        }
        let resource = Resource {
            url: format!("{origin}/"),
            description: String::new(),
            mime_type: String::new(),
        };
        let (header, paid) = self
            .pre_arm(base, origin, &record.payee_key, &resource, tip)
            .await?
            .into_parts();
        let Some(header) = header else {
            return none();
        };
        match self
            .reserve_signed(base, approver, origin, &record.payee_key, paid, now)
            .await?
        {
            Reserved::Writes { writes, .. } => Ok(Staged::new(Some(header), writes)),
            Reserved::TooLittleLeft { .. } => none(),
        }
    }

    /// [`Wallet::prepare_next`] within the approver's allowance: the top-up it signs for the
    /// next requests to `origin` is reserved in the same write (and committed as receipts show
    /// the payee holds it); when the budget has too little left, nothing is prepared, and the
    /// next request pays as it goes. Staged on top of `base` as [`Wallet::pre_arm_site`] is.
    pub async fn prepare_site<A: Approver>(
        &self,
        base: &WriteBatch,
        approver: &A,
        origin: &str,
        tip: ChainTip,
        now: u64,
    ) -> Result<Staged<()>, PayError> {
        let none = || Ok(Staged::new((), WriteBatch::new()));
        let Some(record) = self.open_channel_with(base, origin).await? else {
            return none();
        };
        let (_, signed) = self
            .prepare_next(base, origin, &record.payee_key, tip)
            .await?
            .into_parts();
        match self
            .reserve_signed(base, approver, origin, &record.payee_key, signed, now)
            .await?
        {
            Reserved::Writes { writes, .. } => Ok(Staged::new((), writes)),
            // Not prepared: the next request pays as it goes, within what is left.
            Reserved::TooLittleLeft { .. } => none(),
        }
    }
}
