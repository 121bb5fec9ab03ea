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

use serde::Serialize;
use trickle_wallet::app::failure::Failure;
use wasm_bindgen::{JsCast, JsValue};

/// Now, ms since the epoch, by the host's clock.
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// `value` as a plain JS value (objects, not maps; numbers as JSON has them).
pub fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsValue::from_str(&e.to_string()))
}

/// A failure as the JS rejection `{ code, message, detail }`.
pub fn rejection(f: &Failure) -> JsValue {
    to_js(f).unwrap_or_else(|e| e)
}

/// A JS error's message, or the value as text.
pub fn describe(e: JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}
