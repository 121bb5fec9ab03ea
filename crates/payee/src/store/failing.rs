//! A store that fails on demand, to show that nothing is signed or served when storage fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bitcoin::Txid;
use trickle_channel::credit::Ledger;
use trickle_channel::PayeeState;

use super::{ChannelStore, ChannelUpdate, StoreError, StoredChannel};

/// Wraps a store; while [`FailingStore::fail_writes`] is on, every write fails (and changes
/// nothing) and reads still work.
pub struct FailingStore {
    inner: Arc<dyn ChannelStore>,
    failing: AtomicBool,
}

impl FailingStore {
    /// Wraps `inner`; writes succeed until told otherwise.
    pub fn new(inner: Arc<dyn ChannelStore>) -> Self {
        Self {
            inner,
            failing: AtomicBool::new(false),
        }
    }

    /// Makes every following write fail (`true`) or succeed again (`false`).
    pub fn fail_writes(&self, fail: bool) {
        self.failing.store(fail, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("injected write failure".into()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ChannelStore for FailingStore {
    async fn insert_session(
        &self,
        id: &str,
        state: &PayeeState,
        created_at: u64,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert_session(id, state, created_at).await
    }

    async fn session(&self, id: &str) -> Result<Option<PayeeState>, StoreError> {
        self.inner.session(id).await
    }

    async fn update_session(&self, id: &str, state: &PayeeState) -> Result<(), StoreError> {
        self.check()?;
        self.inner.update_session(id, state).await
    }

    async fn open_channel(
        &self,
        session: &str,
        state: &PayeeState,
        ledger: Ledger,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.open_channel(session, state, ledger).await
    }

    async fn prune_sessions(&self, created_before: u64) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.prune_sessions(created_before).await
    }

    async fn channel(&self, txid: &Txid) -> Result<Option<StoredChannel>, StoreError> {
        self.inner.channel(txid).await
    }

    async fn channels(&self) -> Result<Vec<StoredChannel>, StoreError> {
        self.inner.channels().await
    }

    async fn update_channel(
        &self,
        txid: &Txid,
        revision: u64,
        update: ChannelUpdate<'_>,
    ) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.update_channel(txid, revision, update).await
    }

    async fn charged_at(&self, txid: &Txid, ticket: &str) -> Result<Option<String>, StoreError> {
        self.inner.charged_at(txid, ticket).await
    }
}
