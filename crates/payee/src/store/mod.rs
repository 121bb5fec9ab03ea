//! Durable storage of channels behind a small async trait.
//!
//! Write ordering is the caller's contract with the store: every method returns only once its
//! change is durable, and callers act (send a message, broadcast, serve a paid resource) only
//! after that. Channel writes are compare-and-swap on a revision number so that two requests
//! racing on one channel, even in two server instances sharing a database, never consume the
//! same credit twice.
//!
//! The SQL stores keep a channel as its state document (JSON of a versioned [`Snapshot`]) and a
//! narrow ledger row beside it: revision, paid and consumed totals and, once a charge has
//! written one, the best payment. A charge ([`ChannelUpdate::payment_only`]) writes that row
//! and its tickets only; any other change writes the document, which then holds the best
//! payment itself.

mod failing;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;

use core::fmt;

use bitcoin::{Amount, Txid};
use trickle_channel::credit::Ledger;
use trickle_channel::{PayeeChannel, PayeeState, Snapshot, UpdatePayment};

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
    /// The new state differs from the stored one in its best payment at most (a charge, or a
    /// payment kept as credit): a store may write that payment and the ledger alone, as a
    /// narrow row beside the state document, which stays as it was.
    payment_only: bool,
}

impl<'a> ChannelUpdate<'a> {
    /// A write of `state`, `ledger` and `charged` over a channel whose stored state is
    /// `before`.
    pub fn new(
        before: &PayeeState,
        state: &'a PayeeState,
        ledger: Ledger,
        charged: &'a [ChargedTicket<'a>],
    ) -> Self {
        let payment_only = match (before, state) {
            (PayeeState::Ready { channel: a }, PayeeState::Ready { channel: b }) => {
                // Every field but `best`, named so that a new one is not missed.
                let PayeeChannel {
                    funding,
                    contract_tx,
                    payout_script,
                    best: _,
                } = a;
                *funding == b.funding
                    && *contract_tx == b.contract_tx
                    && *payout_script == b.payout_script
            }
            _ => false,
        };
        Self {
            state,
            ledger,
            charged,
            payment_only,
        }
    }

    /// Whether only the best payment and the ledger change ([`ChannelUpdate::new`]): the
    /// write is a narrow ledger row, the state document is not rewritten.
    pub fn payment_only(&self) -> bool {
        self.payment_only
    }

    /// The best payment a narrow write stores: the new state's client change and signature;
    /// `None` when the whole document is written.
    fn narrow_best(&self) -> Option<(Amount, Vec<u8>)> {
        let best = &self.state.channel().filter(|_| self.payment_only)?.best;
        Some((best.client_change, best.signature.to_vec()))
    }
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

/// `state` with the best payment of its ledger row, if the row has one; a row without one
/// (written with the whole document, or before ledger rows had payments) keeps the
/// document's.
fn with_best(
    mut state: PayeeState,
    change: Option<Amount>,
    signature: Option<&[u8]>,
) -> Result<PayeeState, StoreError> {
    let (Some(client_change), Some(signature)) = (change, signature) else {
        return Ok(state);
    };
    let signature = bitcoin::ecdsa::Signature::from_slice(signature)
        .map_err(|e| StoreError::Corrupt(format!("best payment's signature: {e}")))?;
    match &mut state {
        PayeeState::Ready { channel }
        | PayeeState::Closing { channel, .. }
        | PayeeState::Closed { channel, .. } => {
            channel.best = UpdatePayment {
                client_change,
                signature,
            };
            Ok(state)
        }
        _ => Err(StoreError::Corrupt(
            "a ledger row's payment for a state without a channel".into(),
        )),
    }
}

fn contract_txid(state: &PayeeState) -> Result<Txid, StoreError> {
    state
        .channel()
        .map(|c| c.contract_txid())
        .ok_or(StoreError::InvalidState(
            "a channel needs an accepted contract",
        ))
}
