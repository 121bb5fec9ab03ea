//! Trickle's payment channels: the sans-I/O core.
//!
//! Unidirectional payment channels in bitcoinj's design, on segwit (P2WSH) outputs:
//!
//! * **v1**: the contract is a 2-of-2 multisig of (client, server); before the client hands over
//!   the contract, the server co-signs a refund locked by `nLockTime`.
//! * **v2**: the contract script lets client and server spend together, or the client alone after
//!   an absolute expiry (`OP_CHECKLOCKTIMEVERIFY`); no refund round trip.
//!
//! The client pays by signing ever smaller change for itself (`SIGHASH_SINGLE|ANYONECANPAY`), the
//! server keeps the best signature and closes with it before the expiry, and the client takes
//! its refund if the server never does.
//!
//! Nothing here does I/O, reads a clock or is async: [`PayerState`] and [`PayeeState`] take
//! messages ([`WireMessage`]) and chain events in, and give a [`Step`] out — the state to
//! persist, messages to send and transactions to broadcast, to be acted on in that order.

#![deny(missing_docs)]

pub mod auth;
pub mod charge;
mod contract;
pub mod credit;
mod error;
pub mod http;
mod id;
mod message;
mod payee;
mod payer;
mod snapshot;
mod tx;

pub use contract::{ChainTip, Contract, ExpiryKind, Version, SECONDS_PER_BLOCK};
pub use error::{ChannelError, ErrorCode};
pub use id::ChannelId;
pub use message::{
    ChannelOpen, ClientVersion, Close, DecodeError, ErrorMessage, Initiate, PaymentAck,
    ProvideContract, ProvideRefund, ReturnRefund, ServerVersion, UpdatePayment, WireMessage,
    FORMAT, MAX_EXPLANATION_LEN, MAX_FIELD_LEN,
};
pub use payee::{Offer, PayeeChannel, PayeeContext, PayeePolicy, PayeeState, LAST_RESORT_BLOCKS};
pub use payer::{PayerChannel, PayerConfig, PayerContext, PayerState, MAX_REFUND_FEE_SHARE};
pub use snapshot::{Snapshot, SnapshotError, SNAPSHOT_FORMAT};
pub use tx::{dust_limit, payment_sighash_type, CloseFee, Funding};

/// The outcome of a transition. Persist `state` first; only then send `send` (in order) and
/// broadcast `broadcast`: a signature never leaves before the state that produced it is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "persist the state, then send and broadcast"]
pub struct Step<S> {
    /// The next state.
    pub state: S,
    /// Messages for the peer.
    pub send: Vec<WireMessage>,
    /// Transactions for the network.
    pub broadcast: Vec<bitcoin::Transaction>,
}

impl<S> Step<S> {
    fn new(state: S) -> Self {
        Self {
            state,
            send: Vec::new(),
            broadcast: Vec::new(),
        }
    }

    fn send(state: S, msg: WireMessage) -> Self {
        Self {
            state,
            send: vec![msg],
            broadcast: Vec::new(),
        }
    }

    fn and_broadcast(mut self, tx: bitcoin::Transaction) -> Self {
        self.broadcast.push(tx);
        self
    }
}
