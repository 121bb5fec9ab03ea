//! Durable storage of channels behind a small async trait.
//!
//! Write ordering is the caller's contract with the store: every method returns only once its
//! change is durable, and callers act (send a message, broadcast, serve a paid resource) only
//! after that. Channel writes are compare-and-swap on a revision number so that two requests
//! racing on one channel, even in two server instances sharing a database, never consume the
//! same credit twice.

mod failing;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;

use core::fmt;

use bitcoin::{Amount, Txid};
use trickle_channel::credit::Ledger;
use trickle_channel::{PayeeState, Snapshot};

pub use failing::FailingStore;
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// A channel as stored: its state, its ledger and the revision a writer must name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredChannel {
    /// The channel's state (always one with a contract: `Ready`, `Closing` or `Closed`).
    pub state: PayeeState,
    /// What the channel has paid and what requests have consumed of it.
    pub ledger: Ledger,
    /// Bumped by every write; [`ChannelStore::update_channel`] must name the current one.
    pub revision: u64,
}

impl StoredChannel {
    /// The contract txid, the channel's key in the store.
    pub fn txid(&self) -> Option<Txid> {
        self.state.channel().map(|c| c.contract_txid())
    }
}

/// One write to a channel: the new state, the new ledger and, for a charged request, the
/// tickets it spent. All of it is stored in one transaction, or none of it.
#[derive(Clone, Copy, Debug)]
pub struct ChannelUpdate<'a> {
    /// The new state.
    pub state: &'a PayeeState,
    /// The new ledger.
    pub ledger: Ledger,
    /// Tickets (nonces, pre-armed tickets) charged by this write; each is charged once, ever.
    pub charged: &'a [ChargedTicket<'a>],
}

/// A ticket spent by a charge: the header's nonce or pre-armed ticket, or the nonce issued for
/// a pre-armed charge's reloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChargedTicket<'a> {
    /// The nonce or ticket, as the header carries it.
    pub ticket: &'a str,
    /// The absolute URL it paid for: the only one it reloads.
    pub resource: &'a str,
    /// The price charged.
    pub price: Amount,
}

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The database could not be read or written.
    Backend(String),
    /// Stored data cannot be decoded (or was written by a newer build).
    Corrupt(String),
    /// Another writer got there first: the revision moved, the nonce is already charged, the
    /// session is gone or the channel already exists. Reload and try again.
    Conflict,
    /// The state handed to the store does not fit the operation (for example, no contract).
    InvalidState(&'static str),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Backend(e) => write!(f, "storage failed: {e}"),
            Self::Corrupt(e) => write!(f, "stored data is corrupt: {e}"),
            Self::Conflict => f.write_str("concurrent write conflict"),
            Self::InvalidState(why) => write!(f, "invalid state for storage: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Where the payee keeps its channels.
///
/// Pending sessions hold a `PayeeState` before its contract is accepted; channels are keyed by
/// contract txid. Times are Unix seconds supplied by the caller (they only age out sessions;
/// channel logic runs on chain time).
#[async_trait::async_trait]
pub trait ChannelStore: Send + Sync {
    /// Stores a new pending session.
    async fn insert_session(
        &self,
        id: &str,
        state: &PayeeState,
        created_at: u64,
    ) -> Result<(), StoreError>;

    /// A pending session, if it exists.
    async fn session(&self, id: &str) -> Result<Option<PayeeState>, StoreError>;

    /// Replaces a pending session's state ([`StoreError::Conflict`] if it is gone).
    async fn update_session(&self, id: &str, state: &PayeeState) -> Result<(), StoreError>;

    /// Turns a pending session into a channel in one transaction: the session is removed and
    /// the channel stored with `ledger` at revision 0. [`StoreError::Conflict`] if the session
    /// is gone or the channel exists.
    async fn open_channel(
        &self,
        session: &str,
        state: &PayeeState,
        ledger: Ledger,
    ) -> Result<(), StoreError>;

    /// Forgets pending sessions created before `created_before`; returns how many.
    async fn prune_sessions(&self, created_before: u64) -> Result<u64, StoreError>;

    /// A channel by contract txid.
    async fn channel(&self, txid: &Txid) -> Result<Option<StoredChannel>, StoreError>;

    /// Every channel, oldest first.
    async fn channels(&self) -> Result<Vec<StoredChannel>, StoreError>;

    /// Writes `update` if the channel is still at `revision`; returns the new revision.
    /// [`StoreError::Conflict`] if the revision moved or a ticket was already charged.
    async fn update_channel(
        &self,
        txid: &Txid,
        revision: u64,
        update: ChannelUpdate<'_>,
    ) -> Result<u64, StoreError>;

    /// The resource `ticket` was charged at on this channel, if it was (`""` for a nonce
    /// charged before resources were recorded).
    async fn charged_at(&self, txid: &Txid, ticket: &str) -> Result<Option<String>, StoreError>;
}

/// The state as stored: JSON of a versioned [`Snapshot`].
fn encode_state(state: &PayeeState) -> Result<String, StoreError> {
    serde_json::to_string(&Snapshot::new(state)).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode_state(text: &str) -> Result<PayeeState, StoreError> {
    serde_json::from_str::<Snapshot<PayeeState>>(text)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?
        .into_state()
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn contract_txid(state: &PayeeState) -> Result<Txid, StoreError> {
    state
        .channel()
        .map(|c| c.contract_txid())
        .ok_or(StoreError::InvalidState(
            "a channel needs an accepted contract",
        ))
}
