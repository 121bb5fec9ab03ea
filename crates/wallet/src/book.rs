//! The wallet's book of its channels: one record per site and payee key (`channel/<id>`), and
//! the signed increments waiting for the receipt that shows the payee holds them
//! (`payment/…`); with the wallet's memory of both as last committed, so that a paid request
//! reads neither from the store. The channel and site operations above it read and stage
//! these; the wallet's commit hands every durable batch to [`Book::committed`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, Transaction, Txid};
use serde::{Deserialize, Serialize};
use trickle_channel::http::PaymentRequirements;
use trickle_channel::{ChannelId, PayerState, Snapshot};

use crate::budget::{budget_key, ReservationId};
use crate::error::WalletError;
use crate::store::WriteBatch;

/// One channel with one site, as stored under `channel/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    /// The site the channel pays: its origin (scheme, host and port).
    pub site: String,
    /// The payee's channel key.
    pub payee_key: PublicKey,
    /// The payee's channel endpoint.
    pub endpoint: String,
    /// The session at the endpoint (the contract txid once open).
    pub session: String,
    /// Index of the client's channel key (`m/1017'/coin'/index'`).
    pub key_index: u32,
    /// The channel state.
    pub state: Snapshot<PayerState>,
    /// Paid but not yet consumed, per the payee's last receipt.
    pub credit: Amount,
    /// The site's last offer, answered by pre-armed payments.
    #[serde(default)]
    pub last_offer: Option<PaymentRequirements>,
    /// What the chain duties know of the contract's spend (`crate::closing`).
    #[serde(default)]
    pub chain: ChainWatch,
}

impl ChannelRecord {
    /// The channel's id.
    pub fn id(&self) -> ChannelId {
        ChannelId::new(&self.payee_key, &self.site)
    }

    /// What the payee can charge requests once it holds the latest payment: the credit of its
    /// last receipt plus what was signed since (reserved in the budget until consumed).
    pub fn available(&self) -> Amount {
        self.state
            .state
            .committed_channel()
            .map_or(Amount::ZERO, |c| {
                let unacknowledged = c.paid().checked_sub(c.acknowledged).unwrap_or(Amount::ZERO);
                self.credit + unacknowledged
            })
    }
}

/// What the chain duties know of a channel beyond its protocol state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainWatch {
    /// The settlement the payee returned on `CLOSE`, or the one the chain showed in a block:
    /// broadcast again while it is not in a block and the channel not final.
    #[serde(default)]
    pub settlement: Option<Transaction>,
    /// The transaction that spent the contract, final: the channel's chain duties are over.
    #[serde(default)]
    pub final_spend: Option<Txid>,
    /// No settlement was in a block [`SETTLEMENT_DUE_BLOCKS`](crate::SETTLEMENT_DUE_BLOCKS) before the expiry: the user is
    /// told, and the refund goes out once valid.
    #[serde(default)]
    pub settlement_overdue: bool,
}

impl ChainWatch {
    /// Whether the channel's chain duties are over: its contract's spend is final (or it was
    /// recorded closed, which earlier versions did at one confirmation).
    pub fn is_done(&self, state: &PayerState) -> bool {
        self.final_spend.is_some() || matches!(state, PayerState::Closed { .. })
    }
}

/// The store key prefix of channel records: `channel/<id>`.
pub(crate) const RECORD_PREFIX: &str = "channel/";

pub(crate) fn record_key(id: &ChannelId) -> String {
    format!("{RECORD_PREFIX}{id}")
}
pub(crate) fn decode_record(key: &str, bytes: &[u8]) -> Result<ChannelRecord, WalletError> {
    serde_json::from_slice(bytes).map_err(|e| WalletError::Corrupt(format!("{key}: {e}")))
}

/// `record` as a write of its store key.
pub(crate) fn stage_record(
    writes: &mut WriteBatch,
    record: &ChannelRecord,
) -> Result<(), WalletError> {
    let bytes = serde_json::to_vec(record).map_err(|e| WalletError::Corrupt(e.to_string()))?;
    writes.put(record_key(&record.id()), bytes);
    Ok(())
}

pub(crate) fn decode_outstanding(key: &str, bytes: &[u8]) -> Result<Outstanding, WalletError> {
    serde_json::from_slice(bytes).map_err(|e| WalletError::Corrupt(format!("{key}: {e}")))
}

pub(crate) const PAYMENT_PREFIX: &str = "payment/";

/// A signed increment waiting for the receipt that shows the payee holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Outstanding {
    /// The site, and its channel's key.
    pub(crate) origin: String,
    pub(crate) payee: PublicKey,
    pub(crate) reservation: ReservationId,
    /// The channel's total once the payee holds this payment.
    pub(crate) paid_after: Amount,
}

pub(crate) fn outstanding_key(origin: &str, id: ReservationId) -> String {
    format!("{PAYMENT_PREFIX}{}/{}", budget_key(origin), id.0)
}

/// What the wallet knows of its book as last committed.
#[derive(Debug, Default)]
pub(crate) struct Book {
    /// Channel records by store key: read from the store once, then kept as this wallet
    /// commits them. This wallet is its store's only writer of channel records.
    records: Mutex<BTreeMap<String, ChannelRecord>>,
    /// Whether `records` holds every stored channel record: listed once, then kept current.
    records_listed: AtomicBool,
    /// The increments waiting for their receipt, by store key, once read.
    outstanding: Mutex<Option<BTreeMap<String, Outstanding>>>,
}

impl Book {
    pub(crate) fn known_records(&self) -> MutexGuard<'_, BTreeMap<String, ChannelRecord>> {
        // A poisoned lock still holds records as they were last committed.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn records_listed(&self) -> bool {
        self.records_listed.load(Ordering::Acquire)
    }

    pub(crate) fn set_records_listed(&self) {
        self.records_listed.store(true, Ordering::Release);
    }

    pub(crate) fn known_outstanding(
        &self,
    ) -> MutexGuard<'_, Option<BTreeMap<String, Outstanding>>> {
        // A poisoned lock still holds the entries as they were last committed.
        self.outstanding.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `batch` is durable: takes its channel records and outstanding increments.
    pub(crate) fn committed(&self, batch: &WriteBatch) {
        self.committed_records(batch);
        self.committed_outstanding(batch);
    }
    fn committed_records(&self, batch: &WriteBatch) {
        let mut known = self.known_records();
        for (key, value) in batch.with_prefix(RECORD_PREFIX) {
            match value.map(|bytes| decode_record(key, bytes)) {
                Some(Ok(record)) => known.insert(key.to_owned(), record),
                // Removed, or not a record this crate wrote: read from the store next time.
                None | Some(Err(_)) => {
                    self.records_listed.store(false, Ordering::Release);
                    known.remove(key)
                }
            };
        }
    }
    /// Once the increments were read; before, they are read from the store.
    fn committed_outstanding(&self, batch: &WriteBatch) {
        let mut guard = self.known_outstanding();
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
}
