//! Channel records in the store: one per site and payee key, read through the wallet's
//! memory of what was last committed, or through a batch staged and not yet committed.

use bitcoin::secp256k1::PublicKey;
use trickle_channel::ChannelId;

use super::{ChannelClientError, ChannelRecord};
use crate::book::{decode_record, record_key, stage_record, RECORD_PREFIX};
use crate::store::{Commit, Store, WriteBatch};
use crate::wallet::Wallet;

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
        // Listed once: from then on every record this wallet commits is in the book too.
        if !self.book.records_listed() {
            for key in self.store().keys(RECORD_PREFIX).await? {
                self.record(key).await?;
            }
            self.book.set_records_listed();
        }
        Ok(self.book.known_records().values().cloned().collect())
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
        if let Some(record) = self.book.known_records().get(&key) {
            return Ok(Some(record.clone()));
        }
        let Some(bytes) = self.store().get(&key).await? else {
            return Ok(None);
        };
        let record = decode_record(&key, &bytes)?;
        self.book
            .known_records()
            .entry(key)
            .or_insert_with(|| record.clone());
        Ok(Some(record))
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
