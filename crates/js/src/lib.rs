//! The wallet's edges in a JS host, the extension's worker or Node: the channel endpoint over
//! `fetch` ([`FetchTransport`]), Esplora's back-off over `setTimeout` ([`TimeoutSleeper`]), and
//! the records in a store the host hands over ([`JsStore`]). Imports only: the crates that
//! export to JS (`trickle-wasm`, `trickle-node`) build on these.

mod http;
mod sleep;
mod store;

pub use http::FetchTransport;
pub use sleep::TimeoutSleeper;
pub use store::{failed, JsStore, WalletStore};

use wasm_bindgen::{JsCast, JsValue};

/// A JS error's message, or the value as text.
pub fn describe(e: JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}
