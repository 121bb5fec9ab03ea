//! Errors as the pages see them: `{ code, message, detail }`, as the wallet's application
//! layer makes them ([`trickle_wallet::app::failure`]).

pub(crate) use trickle_wallet::app::failure::{failure, Failure};
