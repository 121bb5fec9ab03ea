//! Signed increments waiting for the receipt that shows the payee holds them (`payment/`).

use super::*;

pub(super) const PAYMENT_PREFIX: &str = "payment/";

/// A signed increment waiting for the receipt that shows the payee holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Outstanding {
    /// The site, and its channel's key.
    pub(super) origin: String,
    pub(super) payee: PublicKey,
    pub(super) reservation: ReservationId,
    /// The channel's total once the payee holds this payment.
    pub(super) paid_after: Amount,
}

pub(super) fn outstanding_key(origin: &str, id: ReservationId) -> String {
    format!("{PAYMENT_PREFIX}{}/{}", budget_key(origin), id.0)
}

impl<S: Store> Wallet<S> {
    /// The increments waiting for their receipt as last committed: read from the store once,
    /// then kept in memory as this wallet commits them.
    pub(super) async fn outstanding(&self) -> Result<Vec<(String, Outstanding)>, PayError> {
        if let Some(known) = self.known_outstanding().as_ref() {
            return Ok(known.iter().map(|(k, o)| (k.clone(), o.clone())).collect());
        }
        let mut read = std::collections::BTreeMap::new();
        for key in self.store().keys(PAYMENT_PREFIX).await? {
            if let Some(bytes) = self.store().get(&key).await? {
                read.insert(key.clone(), decode_outstanding(&key, &bytes)?);
            }
        }
        let mut known = self.known_outstanding();
        // Another call may have read them, and this wallet committed more, meanwhile.
        let known = known.get_or_insert(read);
        Ok(known.iter().map(|(k, o)| (k.clone(), o.clone())).collect())
    }

    /// The increments waiting for their receipt once `base` (staged, not yet committed) is.
    pub(super) async fn outstanding_in(
        &self,
        base: &WriteBatch,
    ) -> Result<Vec<(String, Outstanding)>, PayError> {
        let mut all: std::collections::BTreeMap<String, Outstanding> =
            self.outstanding().await?.into_iter().collect();
        for (key, value) in base.with_prefix(PAYMENT_PREFIX) {
            match value {
                Some(bytes) => all.insert(key.to_owned(), decode_outstanding(key, bytes)?),
                None => all.remove(key),
            };
        }
        Ok(all.into_iter().collect())
    }

    pub(crate) fn known_outstanding(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<std::collections::BTreeMap<String, Outstanding>>> {
        // A poisoned lock still holds the entries as they were last committed.
        self.outstanding.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stages, in `writes`, the outstanding increment of `reservation`: the channel's latest
    /// total once `view` is, which a receipt must reach for the reservation to be committed.
    pub(super) async fn stage_outstanding(
        &self,
        view: &WriteBatch,
        writes: &mut WriteBatch,
        origin: &str,
        payee: &PublicKey,
        reservation: ReservationId,
    ) -> Result<(), PayError> {
        let paid_after = self
            .channel_in(view, origin, payee)
            .await?
            .and_then(|r| r.state.state.committed_channel().map(|c| c.paid()))
            .unwrap_or(Amount::MAX_MONEY);
        let outstanding = Outstanding {
            origin: origin.to_owned(),
            payee: *payee,
            reservation,
            paid_after,
        };
        let bytes =
            serde_json::to_vec(&outstanding).map_err(|e| WalletError::Corrupt(e.to_string()))?;
        writes.put(outstanding_key(origin, reservation), bytes);
        Ok(())
    }

    /// Stores the outstanding increment of `reservation` now (an opening, which acts as it
    /// goes).
    pub(super) async fn record_outstanding(
        &self,
        origin: &str,
        payee: &PublicKey,
        reservation: ReservationId,
    ) -> Result<(), PayError> {
        let mut writes = WriteBatch::new();
        self.stage_outstanding(&WriteBatch::new(), &mut writes, origin, payee, reservation)
            .await?;
        Ok(Staged::new((), writes).commit(self).await?)
    }
}

pub(super) fn decode_outstanding(key: &str, bytes: &[u8]) -> Result<Outstanding, WalletError> {
    serde_json::from_slice(bytes).map_err(|e| WalletError::Corrupt(format!("{key}: {e}")))
}

/// Takes the committed outstanding increments of `batch` into the wallet's memory (once it
/// has read them; before, it reads them from the store).
pub(crate) fn mirror<S: Store>(wallet: &Wallet<S>, batch: &WriteBatch) {
    let mut guard = wallet.known_outstanding();
    let Some(known) = guard.as_mut() else {
        return;
    };
    for (key, value) in batch.with_prefix(PAYMENT_PREFIX) {
        match value.map(|bytes| decode_outstanding(key, bytes)) {
            Some(Ok(outstanding)) => {
                known.insert(key.to_owned(), outstanding);
            }
            None => {
                known.remove(key);
            }
            // Not an entry this crate wrote: read them all from the store next time.
            Some(Err(_)) => {
                *guard = None;
                return;
            }
        }
    }
}
