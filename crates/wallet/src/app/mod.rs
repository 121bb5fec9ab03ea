//! The application layer both payers share, over the wallet: what the extension and the
//! command-line payer keep beside the channels and budgets, and how they show it. Sans-I/O
//! where it can be: time is passed in, storage is the [`crate::store::Store`] trait, the chain
//! the [`crate::chain::ChainSource`] trait.
//!
//! * [`sites`]: the payer of a browser, told of the offers and receipts pages get.
//! * [`history`]: the payments made, as the user sees them.
//! * [`session`]: auto-lock of an unlocked wallet, and the wait after wrong passwords.
//! * [`send`]: the amount and fee rate a user asks to send, checked.
//! * [`chain_view`]: the chain tip and fee rate, reused for a while.
//! * [`view`] and [`failure`]: what a user interface or a program is shown, errors included.

pub mod chain_view;
pub mod failure;
pub mod history;
pub mod send;
pub mod session;
pub mod sites;
pub mod view;
