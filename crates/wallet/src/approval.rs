//! Who approves a site's payments, and counts them: the one parameter that tells the payers
//! apart.
//!
//! The payer ([`crate::site`]) asks an [`Approver`] for the site's [`Budget`] and changes it
//! as it pays: every first payment and increment is reserved in it before it is signed, in the
//! same write, and committed once a receipt shows the payee holds it. Two approvers:
//!
//! * [`Budgets`]: the budgets the user approved per site (the extension), stored with the
//!   wallet; a site without one is not paid until the user approves it.
//! * [`RunCaps`]: the caps of one run of the command-line payer (`--max-price`, `--budget`),
//!   the same for every site, counted in memory for the run.

use core::cell::RefCell;
use std::collections::BTreeMap;

use bitcoin::Amount;

use crate::budget::{
    budget_key, normalize_origin, staged_change, Budget, BudgetError, Budgets, Period, Terms,
    BUDGET_PREFIX,
};
use crate::store::{Commit, Mirror, Staged, Store, StoreError, WriteBatch};
use crate::wallet::Wallet;

/// Where a site's budget comes from and where its changes go (see the
/// [module documentation](self)).
#[allow(async_fn_in_trait)]
pub trait Approver: Mirror {
    /// The budget of `origin` as it is once `base` (staged, not yet committed) is; `None`
    /// when payments to it are not approved at all.
    async fn budget_in(
        &self,
        base: &WriteBatch,
        origin: &str,
    ) -> Result<Option<Budget>, BudgetError>;

    /// The most a new channel with a site whose budget is `budget` locks, before the payee's
    /// and the client's limits lower it.
    fn channel_wish(&self, budget: &Budget, min_channel: Amount) -> Amount;

    /// The part of a payment's writes that the wallet's store keeps with it.
    fn stored(&self, batch: &WriteBatch) -> WriteBatch;
}

/// Applies `change` to the budget of `origin` as it is once `base` is, and stages the result
/// (the staged writes are this change only). If `change` fails, nothing is staged.
pub async fn stage<A: Approver, T>(
    approver: &A,
    base: &WriteBatch,
    origin: &str,
    change: impl FnOnce(&mut Budget) -> Result<T, BudgetError>,
) -> Result<Staged<T>, BudgetError> {
    let origin = normalize_origin(origin)?;
    let budget = approver.budget_in(base, &origin).await?;
    staged_change(budget, origin, change)
}

/// The user's budgets: stored in the wallet's store, with the payments they pay for.
impl<S: Store> Approver for Budgets<S> {
    async fn budget_in(
        &self,
        base: &WriteBatch,
        origin: &str,
    ) -> Result<Option<Budget>, BudgetError> {
        self.load_in(base, origin).await
    }

    /// The budget's limit: what the user lets the site have in a period, and at least the
    /// payee's minimum (the budget, not the lock, bounds what is signed).
    fn channel_wish(&self, budget: &Budget, min_channel: Amount) -> Amount {
        budget.terms().limit.max(min_channel)
    }

    fn stored(&self, batch: &WriteBatch) -> WriteBatch {
        batch.clone()
    }
}

/// The caps of one run of a payer without a user to ask: at most `max_price` per request, at
/// most `lock` locked in a new channel with a site and signed to it in the run. Counted in
/// memory: a new run starts from nothing, and the channel itself bounds what a site can ever
/// be paid.
#[derive(Debug)]
pub struct RunCaps {
    terms: Terms,
    started: u64,
    budgets: RefCell<BTreeMap<String, Budget>>,
}

impl RunCaps {
    /// Caps of `max_price` per request and `lock` per site, for a run started at `now`.
    pub fn new(max_price: Amount, lock: Amount, now: u64) -> Result<Self, BudgetError> {
        let terms = Terms {
            limit: lock,
            // Longer than any run: the run's spending is never forgotten within it.
            period: Period::Month,
            max_price,
            auto_approve: Some(max_price),
        };
        terms.validate()?;
        Ok(Self {
            terms,
            started: now,
            budgets: RefCell::new(BTreeMap::new()),
        })
    }
}

impl Approver for RunCaps {
    async fn budget_in(
        &self,
        base: &WriteBatch,
        origin: &str,
    ) -> Result<Option<Budget>, BudgetError> {
        let origin = normalize_origin(origin)?;
        let key = budget_key(&origin);
        if let Some(Some(bytes)) = base.get(&key) {
            return Budget::from_bytes(bytes).map(Some);
        }
        if let Some(budget) = self.budgets.borrow().get(&origin) {
            return Ok(Some(budget.clone()));
        }
        Budget::new(&origin, self.terms, self.started).map(Some)
    }

    /// The run's lock, exactly: a payee asking for a larger channel is refused.
    fn channel_wish(&self, budget: &Budget, _min_channel: Amount) -> Amount {
        budget.terms().limit
    }

    fn stored(&self, batch: &WriteBatch) -> WriteBatch {
        let mut kept = WriteBatch::new();
        for (key, value) in batch.iter().filter(|(k, _)| !k.starts_with(BUDGET_PREFIX)) {
            match value {
                Some(bytes) => kept.put(key, bytes.to_vec()),
                None => kept.remove(key),
            }
        }
        kept
    }
}

impl Mirror for RunCaps {
    fn committed(&self, batch: &WriteBatch) {
        let mut budgets = self.budgets.borrow_mut();
        for (_, value) in batch.with_prefix(BUDGET_PREFIX) {
            // Only this run's own budgets are ever in its writes.
            if let Some(budget) = value.and_then(|b| Budget::from_bytes(b).ok()) {
                budgets.insert(budget.origin().to_owned(), budget);
            }
        }
    }
}

/// A site payment's writes change the approver's budgets and the wallet's channels together:
/// what the approver keeps in the wallet's store is written with the channels in one write,
/// then both memories take the change.
impl<S: Store, A: Approver> Commit for (&Wallet<S>, &A) {
    async fn commit_batch(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let (wallet, approver) = *self;
        wallet.store().write(approver.stored(&batch)).await?;
        wallet.committed(&batch);
        approver.committed(&batch);
        Ok(())
    }
}

/// Applies `change` to the budget of `origin` and commits it with `wallet` before returning:
/// for the steps of an opening, which act as they go.
pub async fn change<S: Store, A: Approver, T>(
    wallet: &Wallet<S>,
    approver: &A,
    origin: &str,
    change: impl FnOnce(&mut Budget) -> Result<T, BudgetError>,
) -> Result<T, BudgetError> {
    let staged = stage(approver, &WriteBatch::new(), origin, change).await?;
    Ok(staged.commit(&(wallet, approver)).await?)
}
