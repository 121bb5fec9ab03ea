//! The channel endpoint over the host's `fetch`.

use js_sys::{Function, Object, Reflect, Uint8Array};
use trickle_wallet::{Transport, ENDPOINT_TIMEOUT, MAX_ENDPOINT_BODY_BYTES};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::describe;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = fetch)]
    fn fetch_with_init(url: &str, init: &Object) -> js_sys::Promise;
}

/// `fetch`, as the wallet's [`Transport`].
#[derive(Clone, Copy, Debug, Default)]
pub struct FetchTransport;

fn set(o: &Object, k: &str, v: &JsValue) -> Result<(), String> {
    Reflect::set(o, &JsValue::from_str(k), v)
        .map(drop)
        .map_err(describe)
}

/// The method `name` of `target`, called with `args`.
fn call(target: &JsValue, name: &str, args: &[JsValue]) -> Result<JsValue, String> {
    let method = Reflect::get(target, &name.into())
        .map_err(describe)?
        .dyn_into::<Function>()
        .map_err(describe)?;
    let args: js_sys::Array = args.iter().collect();
    method.apply(target, &args).map_err(describe)
}

/// `AbortSignal.timeout(ENDPOINT_TIMEOUT)`: aborts the request and the reading of its body.
fn timeout_signal() -> Result<JsValue, String> {
    let abort_signal = Reflect::get(&js_sys::global(), &"AbortSignal".into()).map_err(describe)?;
    let millis = JsValue::from_f64(ENDPOINT_TIMEOUT.as_secs_f64() * 1000.0);
    call(&abort_signal, "timeout", &[millis])
}

/// The body of `response`, read chunk by chunk and refused beyond
/// [`MAX_ENDPOINT_BODY_BYTES`].
async fn bounded_body(response: &JsValue) -> Result<Vec<u8>, String> {
    let body = Reflect::get(response, &"body".into()).map_err(describe)?;
    if body.is_null() || body.is_undefined() {
        return Ok(Vec::new());
    }
    let reader = call(&body, "getReader", &[])?;
    let mut bytes = Vec::new();
    loop {
        let chunk = JsFuture::from(js_sys::Promise::from(call(&reader, "read", &[])?))
            .await
            .map_err(describe)?;
        if Reflect::get(&chunk, &"done".into())
            .map_err(describe)?
            .is_truthy()
        {
            return Ok(bytes);
        }
        let value = Uint8Array::new(&Reflect::get(&chunk, &"value".into()).map_err(describe)?);
        if bytes.len() + value.length() as usize > MAX_ENDPOINT_BODY_BYTES {
            // Stop the download; the answer is refused either way.
            let _ = call(&reader, "cancel", &[]);
            return Err(format!(
                "the answer is longer than {MAX_ENDPOINT_BODY_BYTES} bytes"
            ));
        }
        bytes.extend(value.to_vec());
    }
}

/// `fetch(url)` with a JSON `body` (POST) or without (GET), given up after
/// [`ENDPOINT_TIMEOUT`] and refused with an answer beyond [`MAX_ENDPOINT_BODY_BYTES`].
async fn request(url: &str, body: Option<Vec<u8>>) -> Result<(u16, Vec<u8>), String> {
    let init = Object::new();
    if let Some(body) = body {
        let headers = Object::new();
        set(&headers, "content-type", &"application/json".into())?;
        set(&init, "method", &"POST".into())?;
        set(&init, "headers", &headers)?;
        set(&init, "body", &Uint8Array::from(body.as_slice()).into())?;
    }
    // Never send the site's cookies to its channel endpoint: the channel is the credential.
    set(&init, "credentials", &"omit".into())?;
    set(&init, "signal", &timeout_signal()?)?;
    let response = JsFuture::from(fetch_with_init(url, &init))
        .await
        .map_err(describe)?;
    let status = Reflect::get(&response, &"status".into())
        .map_err(describe)?
        .as_f64()
        .unwrap_or_default() as u16;
    Ok((status, bounded_body(&response).await?))
}

impl Transport for FetchTransport {
    async fn post_json(&self, url: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        request(url, Some(body)).await
    }

    async fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String> {
        request(url, None).await
    }
}
