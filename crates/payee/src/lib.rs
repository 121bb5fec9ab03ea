//! Trickle's payee: the site side of Bitcoin payment channels.
//!
//! * [`Payee`] holds the keys, the policy, a [`store::ChannelStore`] and a [`chain::Chain`].
//! * [`Payee::endpoint`] is the channel endpoint of `docs/protocol.md` section 3.
//! * [`PaymentLayer`] prices routes of any axum/tower service (section 2).
//! * [`Payee::chain_duties`] follows the chain: closes before expiry, rebroadcasts, notices spends.
//! * [`Payee::facilitator`] is an x402 facilitator for resource servers such as `@x402/express`.
//! * [`Payee::operator`] serves `/status` and `/metrics`.
//! * The `trickle-payee` binary ([`config`], [`proxy`], [`serve`]) puts prices in front of any
//!   site.
//!
//! Persist, then act: every state change is durably stored before a message carrying its
//! result is sent, a transaction is broadcast or a paid resource is served.
#![deny(missing_docs)]

pub mod chain;
mod charge;
pub mod config;
mod endpoint;
mod facilitator;
mod layer;
mod mpp;
mod operator;
pub mod path;
mod payee;
pub mod proxy;
pub mod serve;
pub mod store;
mod watcher;

pub use endpoint::MAX_BODY;
pub use facilitator::MAX_FACILITATOR_BODY;
pub use layer::{PaymentLayer, PaymentService, Price, Prices, CONTRACT_UNCONFIRMED};
pub use payee::{Clock, InvalidSeed, Keys, Payee, PayeeConfig, DEFAULT_ENDPOINT_PATH};
pub use watcher::DutyError;

impl Payee {
    /// The channel endpoint's routes (`POST {endpoint}/open`, `POST|GET {endpoint}/session/{id}`).
    pub fn endpoint(&self) -> axum::Router {
        endpoint::router(self.clone())
    }

    /// The x402 facilitator's routes for Trickle's scheme (`batch-settlement`): `GET /supported`,
    /// `POST /nonce`, `POST /verify`, `POST /settle` (`docs/facilitator.md`).
    pub fn facilitator(&self) -> axum::Router {
        facilitator::router(self.clone())
    }

    /// The operator's routes: `/status`, `/status.html`, `/metrics`.
    pub fn operator(&self) -> axum::Router {
        operator::router(self.clone())
    }

    /// A layer charging `prices` to this payee's channels.
    pub fn layer(&self, prices: Prices) -> PaymentLayer {
        PaymentLayer::new(self.clone(), prices)
    }
}
