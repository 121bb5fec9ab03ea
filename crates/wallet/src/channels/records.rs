//! Channel records in the store: one per site and payee key, read through the wallet's
//! memory of what was last committed, or through a batch staged and not yet committed.

use bitcoin::secp256k1::PublicKey;
use trickle_channel::ChannelId;

use super::{ChannelClientError, ChannelRecord};
use crate::error::WalletError;
use crate::store::{Commit, Store, WriteBatch};
use crate::wallet::Wallet;

/// The store key prefix of channel records: `channel/<id>`.
const RECORD_PREFIX: &str = "channel/";

pub(super) fn record_key(id: &ChannelId) -> String {
    format!("{RECORD_PREFIX}{id}")
}
fn decode_record(key: &str, bytes: &[u8]) -> Result<ChannelRecord, WalletError> {
    serde_json::from_slice(bytes).map_err(|e| WalletError::Corrupt(format!("{key}: {e}")))
}

/// Layout 3 (see [`crate::layout`]): a record the command-line payer labelled with its site's
/// host, relabelled with the site's origin, which is its channel endpoint's (the payee serves
/// the endpoint on the site's own origin). The record under its new key, the one to remove, or
/// `None` when the record is labelled by origin already, or cannot be read (left as it is).
pub(crate) fn relabelled_by_origin(bytes: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut record: ChannelRecord = serde_json::from_slice(bytes).ok()?;
    if crate::budget::normalize_origin(&record.site).is_ok_and(|o| o == record.site) {
        return None;
    }
    record.site = crate::budget::site_origin(&record.endpoint).ok()?;
    let bytes = serde_json::to_vec(&record).ok()?;
    Some((record_key(&record.id()), bytes))
}

/// `record` as a write of its store key.
pub(super) fn stage_record(
    writes: &mut WriteBatch,
    record: &ChannelRecord,
) -> Result<(), WalletError> {
    let bytes = serde_json::to_vec(record).map_err(|e| WalletError::Corrupt(e.to_string()))?;
    writes.put(record_key(&record.id()), bytes);
    Ok(())
}

/// Takes the committed channel records of `batch` into the wallet's memory.
pub(crate) fn mirror<S: Store>(wallet: &Wallet<S>, batch: &WriteBatch) {
    let mut known = wallet.known_records();
    for (key, value) in batch.with_prefix(RECORD_PREFIX) {
        match value.map(|bytes| decode_record(key, bytes)) {
            Some(Ok(record)) => known.insert(key.to_owned(), record),
            // Removed, or not a record this crate wrote: read from the store next time.
            None | Some(Err(_)) => {
                wallet
                    .records_listed
                    .store(false, std::sync::atomic::Ordering::Release);
                known.remove(key)
            }
        };
    }
}
impl<S: Store> Wallet<S> {
    /// The channel with `site` paying `payee_key`, if any, as last committed.
    pub async fn channel(
        &self,
        site: &str,
        payee_key: &PublicKey,
    ) -> Result<Option<ChannelRecord>, ChannelClientError> {
        self.record(record_key(&ChannelId::new(payee_key, site)))
            .await
    }

    /// The channel with `site` paying `payee_key` as it is once `base` (staged, not yet
    /// committed) is.
    pub async fn channel_in(
        &self,
        base: &WriteBatch,
        site: &str,
        payee_key: &PublicKey,
    ) -> Result<Option<ChannelRecord>, ChannelClientError> {
        let key = record_key(&ChannelId::new(payee_key, site));
        match base.get(&key) {
            Some(Some(bytes)) => Ok(Some(decode_record(&key, bytes)?)),
            Some(None) => Ok(None),
            None => self.record(key).await,
        }
    }

    /// Every channel, as last committed.
    pub async fn channels(&self) -> Result<Vec<ChannelRecord>, ChannelClientError> {
        use std::sync::atomic::Ordering;
        // Listed once: from then on every record this wallet commits is in `records` too.
        if !self.records_listed.load(Ordering::Acquire) {
            for key in self.store().keys(RECORD_PREFIX).await? {
                self.record(key).await?;
            }
            self.records_listed.store(true, Ordering::Release);
        }
        Ok(self.known_records().values().cloned().collect())
    }

    /// Every channel as it is once `base` (staged, not yet committed) is.
    pub async fn channels_in(
        &self,
        base: &WriteBatch,
    ) -> Result<Vec<ChannelRecord>, ChannelClientError> {
        let mut records: std::collections::BTreeMap<String, ChannelRecord> = self
            .channels()
            .await?
            .into_iter()
            .map(|r| (record_key(&r.id()), r))
            .collect();
        for (key, value) in base.with_prefix(RECORD_PREFIX) {
            match value {
                Some(bytes) => records.insert(key.to_owned(), decode_record(key, bytes)?),
                None => records.remove(key),
            };
        }
        Ok(records.into_values().collect())
    }

    /// The record under `key` as last committed: from memory, else from the store.
    async fn record(&self, key: String) -> Result<Option<ChannelRecord>, ChannelClientError> {
        if let Some(record) = self.known_records().get(&key) {
            return Ok(Some(record.clone()));
        }
        let Some(bytes) = self.store().get(&key).await? else {
            return Ok(None);
        };
        let record = decode_record(&key, &bytes)?;
        self.known_records()
            .entry(key)
            .or_insert_with(|| record.clone());
        Ok(Some(record))
    }

    fn known_records(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, ChannelRecord>> {
        // A poisoned lock still holds records as they were last committed.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `record`; durable when it returns, and only then the wallet's view of it. For
    /// steps of this wallet's own that act (send, fund) right after.
    pub(crate) async fn save(&self, record: &ChannelRecord) -> Result<(), ChannelClientError> {
        let mut writes = WriteBatch::new();
        stage_record(&mut writes, record)?;
        // On failure the record stays as it was: the payment signed in `record` never leaves.
        self.commit_batch(writes).await?;
        Ok(())
    }
}
