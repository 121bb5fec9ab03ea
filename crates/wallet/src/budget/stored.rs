//! The budgets in a store: read once, kept in memory as last committed, changed only by
//! staged writes.

use core::cell::RefCell;
use std::collections::BTreeMap;

use super::*;
use crate::store::{Commit, Mirror, Staged, Store, StoreError, WriteBatch};

/// The budgets in a [`Store`], one record per site under `budget/`, and in memory as last
/// committed.
///
/// [`Budgets::reserve`], [`Budgets::commit`], [`Budgets::release`] and [`Budgets::modify`]
/// change a budget and store it before they return, so the caller can act (sign, send) as soon
/// as they succeed; [`Budgets::stage`] makes the same change as a [`Staged`] value, to be
/// committed with other writes (the payment it pays for) in one atomic write. The in-memory
/// copy changes only once the store has the change. Changes through one `Budgets` are made one
/// at a time (read, change, write), so concurrent calls never lose each other's changes; a
/// staged change must be committed before the same budget is changed again. Use one `Budgets`
/// per store.
#[derive(Debug)]
pub struct Budgets<S> {
    store: S,
    cache: RefCell<BTreeMap<String, Budget>>,
    /// Held from the read of a change to its write.
    writer: futures::lock::Mutex<()>,
}

impl<S: Store> Budgets<S> {
    /// The budgets kept in `store`.
    pub fn new(store: S) -> Self {
        Self {
            store,
            cache: RefCell::new(BTreeMap::new()),
            writer: futures::lock::Mutex::new(()),
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    async fn read(&self, origin: &str) -> Result<Option<Budget>, BudgetError> {
        let key = budget_key(origin);
        let Some(bytes) = self.store.get(&key).await? else {
            return Ok(None);
        };
        decode(&key, &bytes, origin).map(Some)
    }

    /// The budget of `origin` (any spelling [`normalize_origin`] accepts), if it has one.
    pub async fn load(&self, origin: &str) -> Result<Option<Budget>, BudgetError> {
        let origin = normalize_origin(origin)?;
        if let Some(b) = self.cache.borrow().get(&origin) {
            return Ok(Some(b.clone()));
        }
        let loaded = self.read(&origin).await?;
        let mut cache = self.cache.borrow_mut();
        // Another call may have loaded and changed it while this one waited for the store.
        if let Some(b) = cache.get(&origin) {
            return Ok(Some(b.clone()));
        }
        if let Some(b) = &loaded {
            cache.insert(origin, b.clone());
        }
        Ok(loaded)
    }

    /// The budget of `origin` as it is once `base` (staged, not yet committed) is: `base`'s
    /// change of it, else the committed budget.
    pub async fn load_in(
        &self,
        base: &WriteBatch,
        origin: &str,
    ) -> Result<Option<Budget>, BudgetError> {
        let origin = normalize_origin(origin)?;
        let key = budget_key(&origin);
        match base.get(&key) {
            Some(Some(bytes)) => decode(&key, bytes, &origin).map(Some),
            Some(None) => Ok(None),
            None => self.load(&origin).await,
        }
    }

    /// Applies `change` to the budget of `origin` as it is once `base` is, and stages the
    /// result (the staged writes are this change only). If `change` fails, nothing is staged.
    pub async fn stage<T>(
        &self,
        base: &WriteBatch,
        origin: &str,
        change: impl FnOnce(&mut Budget) -> Result<T, BudgetError>,
    ) -> Result<Staged<T>, BudgetError> {
        let origin = normalize_origin(origin)?;
        let budget = self.load_in(base, &origin).await?;
        staged_change(budget, origin, change)
    }

    /// Stores `budget` (a new one, or one changed by the caller), replacing the site's.
    /// Prefer [`Budgets::modify`] for changes: it cannot lose a concurrent reservation.
    pub async fn save(&self, budget: &Budget) -> Result<(), BudgetError> {
        let _writer = self.writer.lock().await;
        let mut writes = WriteBatch::new();
        writes.put(budget_key(&budget.origin), budget.to_bytes());
        Ok(self.commit_batch(writes).await?)
    }

    /// Every stored budget, by origin.
    pub async fn list(&self) -> Result<Vec<Budget>, BudgetError> {
        let mut out = Vec::new();
        for key in self.store.keys(BUDGET_PREFIX).await? {
            let origin = origin_from_key(&key)
                .ok_or_else(|| BudgetError::Corrupt(format!("{key} is not a budget key")))?;
            if let Some(budget) = self.load(&origin).await? {
                out.push(budget);
            }
        }
        out.sort_by(|a, b| a.origin.cmp(&b.origin));
        Ok(out)
    }

    /// Forgets the budget of `origin`.
    pub async fn remove(&self, origin: &str) -> Result<(), BudgetError> {
        let origin = normalize_origin(origin)?;
        let _writer = self.writer.lock().await;
        let mut writes = WriteBatch::new();
        writes.remove(budget_key(&origin));
        Ok(self.commit_batch(writes).await?)
    }

    /// Applies `change` to the budget of `origin` and stores the result before returning. If
    /// `change` fails, nothing changes.
    pub async fn modify<T>(
        &self,
        origin: &str,
        change: impl FnOnce(&mut Budget) -> Result<T, BudgetError>,
    ) -> Result<T, BudgetError> {
        let _writer = self.writer.lock().await;
        let staged = self.stage(&WriteBatch::new(), origin, change).await?;
        Ok(staged.commit(self).await?)
    }

    /// [`Budget::reserve`], stored before it returns.
    pub async fn reserve(
        &self,
        origin: &str,
        amount: Amount,
        now: u64,
    ) -> Result<ReservationId, BudgetError> {
        self.modify(origin, |b| b.reserve(amount, now)).await
    }

    /// [`Budget::commit`], stored before it returns.
    pub async fn commit(
        &self,
        origin: &str,
        id: ReservationId,
        now: u64,
    ) -> Result<Amount, BudgetError> {
        self.modify(origin, |b| b.commit(id, now)).await
    }

    /// [`Budget::commit_part`], stored before it returns.
    pub async fn commit_part(
        &self,
        origin: &str,
        id: ReservationId,
        amount: Amount,
        now: u64,
    ) -> Result<Amount, BudgetError> {
        self.modify(origin, |b| b.commit_part(id, amount, now))
            .await
    }

    /// [`Budget::release`], stored before it returns.
    pub async fn release(&self, origin: &str, id: ReservationId) -> Result<Amount, BudgetError> {
        self.modify(origin, |b| b.release(id)).await
    }
}

/// `change` applied to `budget` (the budget of `origin`, if it has one), staged as the write
/// of the changed budget; nothing staged if it fails.
pub(crate) fn staged_change<T>(
    budget: Option<Budget>,
    origin: String,
    change: impl FnOnce(&mut Budget) -> Result<T, BudgetError>,
) -> Result<Staged<T>, BudgetError> {
    let mut budget = budget.ok_or(BudgetError::NoBudget { origin })?;
    let out = change(&mut budget)?;
    let mut writes = WriteBatch::new();
    writes.put(budget_key(&budget.origin), budget.to_bytes());
    Ok(Staged::new(out, writes))
}

/// The budget stored under `key`, which must be `origin`'s.
fn decode(key: &str, bytes: &[u8], origin: &str) -> Result<Budget, BudgetError> {
    let budget =
        Budget::from_bytes(bytes).map_err(|e| BudgetError::Corrupt(format!("{key}: {e}")))?;
    if budget.origin != origin {
        return Err(BudgetError::Corrupt(format!(
            "{key} holds the budget of {}",
            budget.origin
        )));
    }
    Ok(budget)
}

impl<S> Mirror for Budgets<S> {
    fn committed(&self, batch: &WriteBatch) {
        let mut cache = self.cache.borrow_mut();
        for (key, value) in batch.with_prefix(BUDGET_PREFIX) {
            let Some(origin) = origin_from_key(key) else {
                continue;
            };
            match value.map(|bytes| decode(key, bytes, &origin)) {
                Some(Ok(budget)) => cache.insert(origin, budget),
                // Removed, or not a budget this crate wrote: read from the store next time.
                None | Some(Err(_)) => cache.remove(&origin),
            };
        }
    }
}

/// Budget changes only: a batch that changes anything else is refused, and nothing written
/// (a payment's writes are committed to `(&wallet, &budgets)`, whose memory they change).
impl<S: Store> Commit for Budgets<S> {
    async fn commit_batch(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if let Some((key, _)) = batch.iter().find(|(k, _)| !k.starts_with(BUDGET_PREFIX)) {
            return Err(StoreError(format!(
                "{key} is not a budget: commit it with the wallet"
            )));
        }
        self.store.write(batch.clone()).await?;
        self.committed(&batch);
        Ok(())
    }
}
