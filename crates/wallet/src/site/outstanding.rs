//! Signed increments waiting for the receipt that shows the payee holds them (`payment/`).

use super::*;
use crate::book::{decode_outstanding, outstanding_key, Outstanding, PAYMENT_PREFIX};

impl<S: Store> Wallet<S> {
    /// The increments waiting for their receipt as last committed: read from the store once,
    /// then kept in memory as this wallet commits them.
    pub(super) async fn outstanding(&self) -> Result<Vec<(String, Outstanding)>, PayError> {
        if let Some(known) = self.book.known_outstanding().as_ref() {
            return Ok(known.iter().map(|(k, o)| (k.clone(), o.clone())).collect());
        }
        let mut read = std::collections::BTreeMap::new();
        for key in self.store().keys(PAYMENT_PREFIX).await? {
            if let Some(bytes) = self.store().get(&key).await? {
                read.insert(key.clone(), decode_outstanding(&key, &bytes)?);
            }
        }
        let mut known = self.book.known_outstanding();
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
