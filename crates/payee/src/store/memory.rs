//! An in-memory store: for tests and demos, where losing everything on exit is fine.

use std::collections::HashMap;
use std::sync::Mutex;

use bitcoin::Txid;
use trickle_channel::credit::Ledger;
use trickle_channel::PayeeState;

use super::{contract_txid, ChannelStore, ChannelUpdate, StoreError, StoredChannel};

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, (PayeeState, u64)>,
    channels: Vec<StoredChannel>,
    tickets: HashMap<(Txid, String), String>,
}

/// Channels in memory; nothing survives the process.
#[derive(Default)]
pub struct MemoryStore(Mutex<Inner>);

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        self.0
            .lock()
            .map_err(|_| StoreError::Backend("store lock poisoned".into()))
    }
}

fn position(channels: &[StoredChannel], txid: &Txid) -> Option<usize> {
    channels
        .iter()
        .position(|c| c.txid().as_ref() == Some(txid))
}

#[async_trait::async_trait]
impl ChannelStore for MemoryStore {
    async fn insert_session(
        &self,
        id: &str,
        state: &PayeeState,
        created_at: u64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        if inner.sessions.contains_key(id) {
            return Err(StoreError::Conflict);
        }
        inner
            .sessions
            .insert(id.to_owned(), (state.clone(), created_at));
        Ok(())
    }

    async fn session(&self, id: &str) -> Result<Option<PayeeState>, StoreError> {
        Ok(self.lock()?.sessions.get(id).map(|(s, _)| s.clone()))
    }

    async fn update_session(&self, id: &str, state: &PayeeState) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        let entry = inner.sessions.get_mut(id).ok_or(StoreError::Conflict)?;
        entry.0 = state.clone();
        Ok(())
    }

    async fn open_channel(
        &self,
        session: &str,
        state: &PayeeState,
        ledger: Ledger,
    ) -> Result<(), StoreError> {
        let txid = contract_txid(state)?;
        let mut inner = self.lock()?;
        if !inner.sessions.contains_key(session) || position(&inner.channels, &txid).is_some() {
            return Err(StoreError::Conflict);
        }
        inner.sessions.remove(session);
        inner.channels.push(StoredChannel {
            state: state.clone(),
            ledger,
            revision: 0,
        });
        Ok(())
    }

    async fn prune_sessions(&self, created_before: u64) -> Result<u64, StoreError> {
        let mut inner = self.lock()?;
        let before = inner.sessions.len();
        inner.sessions.retain(|_, (_, t)| *t >= created_before);
        Ok((before - inner.sessions.len()) as u64)
    }

    async fn channel(&self, txid: &Txid) -> Result<Option<StoredChannel>, StoreError> {
        let inner = self.lock()?;
        Ok(position(&inner.channels, txid).map(|i| inner.channels[i].clone()))
    }

    async fn channels(&self) -> Result<Vec<StoredChannel>, StoreError> {
        Ok(self.lock()?.channels.clone())
    }

    async fn update_channel(
        &self,
        txid: &Txid,
        revision: u64,
        update: ChannelUpdate<'_>,
    ) -> Result<u64, StoreError> {
        if contract_txid(update.state)? != *txid {
            return Err(StoreError::InvalidState("state is for another channel"));
        }
        let mut inner = self.lock()?;
        let i = position(&inner.channels, txid).ok_or(StoreError::Conflict)?;
        if inner.channels[i].revision != revision {
            return Err(StoreError::Conflict);
        }
        let spent = |c: &super::ChargedTicket| (*txid, c.ticket.to_owned());
        if update
            .charged
            .iter()
            .any(|c| inner.tickets.contains_key(&spent(c)))
        {
            return Err(StoreError::Conflict);
        }
        for c in update.charged {
            inner.tickets.insert(spent(c), c.resource.to_owned());
        }
        inner.channels[i] = StoredChannel {
            state: update.state.clone(),
            ledger: update.ledger,
            revision: revision + 1,
        };
        Ok(revision + 1)
    }

    async fn charged_at(&self, txid: &Txid, ticket: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()?
            .tickets
            .get(&(*txid, ticket.to_owned()))
            .cloned())
    }
}
