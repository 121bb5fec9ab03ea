//! Trickle's wallet: keys, coins, chain sync and payment channels, over small traits.
//!
//! * [`Wallet`]: a BIP39 phrase and BIP84 descriptors, coin selection and signing through BDK,
//!   chain sync over Esplora, the phrase sealed at rest ([`vault`]) under the user's password.
//! * [`store::Store`]: where everything is kept — `chrome.storage.local` in the extension, one
//!   SQLite file for the command-line payer. State is stored before it is acted on.
//!
//! The same code runs natively and in the extension's wasm worker.

#![deny(missing_docs)]

pub mod app;
pub mod approval;
mod book;
pub mod budget;
pub mod chain;
mod channels;
mod closing;
pub mod conformance;
mod error;
pub mod layout;
pub mod offer;
pub mod payer;
pub mod settings;
pub mod site;
pub mod store;
pub mod vault;
mod wallet;

pub use bdk_esplora::esplora_client;
pub use chain::FeeRates;
pub use channels::{
    ChainWatch, ChannelClientError, ChannelLimits, ChannelRecord, OpenParams, Transport,
    ENDPOINT_TIMEOUT, MAX_ENDPOINT_BODY_BYTES, PREPAID_REQUESTS,
};
pub use closing::{final_confirmations, Duties, CLOSE_MARGIN_BLOCKS, SETTLEMENT_DUE_BLOCKS};
pub use error::{Shortfall, WalletError};
pub use wallet::{
    new_phrase, Balance, SendPreview, TxSummary, Wallet, CHANNEL_KEY_PURPOSE, STORAGE_FORMAT,
};
