//! The application layer both payers share, over the wallet: what the extension and the
//! command-line payer keep beside the channels and budgets. Sans-I/O where it can be: time is
//! passed in, storage is the [`crate::store::Store`] trait.
//!
//! * [`history`]: the payments made, as the user sees them.
//! * [`session`]: auto-lock of an unlocked wallet, and the wait after wrong passwords.
//! * [`send`]: the amount and fee rate a user asks to send, checked.

pub mod history;
pub mod send;
pub mod session;
