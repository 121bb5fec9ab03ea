//! Esplora's retry back-off sleeps on `setTimeout`: a worker has no other timer.

use core::future::Future;
use core::pin::Pin;
use core::time::Duration;

use send_wrapper::SendWrapper;
use trickle_wallet::esplora_client::Sleeper;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(callback: &js_sys::Function, millis: i32) -> JsValue;
}

/// A [`Sleeper`] over the global `setTimeout`.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutSleeper;

impl Sleeper for TimeoutSleeper {
    // bdk_esplora asks for a `Send` future; a JS host runs wasm on one thread, so the wrapper's
    // same-thread check always holds.
    type Sleep = SendWrapper<Pin<Box<dyn Future<Output = ()>>>>;

    fn sleep(dur: Duration) -> Self::Sleep {
        let millis = i32::try_from(dur.as_millis()).unwrap_or(i32::MAX);
        let promise = js_sys::Promise::new(&mut |resolve, _reject| {
            set_timeout(&resolve, millis);
        });
        SendWrapper::new(Box::pin(async move {
            // setTimeout never rejects.
            let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
        }))
    }
}
