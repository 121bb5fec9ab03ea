//! The channel endpoint over the worker's `fetch`.

use js_sys::{Object, Reflect, Uint8Array};
use trickle_wallet::Transport;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = fetch)]
    fn fetch_with_init(url: &str, init: &Object) -> js_sys::Promise;
}

/// `fetch`, as the wallet's [`Transport`].
#[derive(Clone, Copy, Debug, Default)]
pub struct FetchTransport;

fn describe(e: JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

fn set(o: &Object, k: &str, v: &JsValue) -> Result<(), String> {
    Reflect::set(o, &JsValue::from_str(k), v)
        .map(drop)
        .map_err(describe)
}

/// `fetch(url)` with a JSON `body` (POST) or without (GET).
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
    let response = JsFuture::from(fetch_with_init(url, &init))
        .await
        .map_err(describe)?;
    let status = Reflect::get(&response, &"status".into())
        .map_err(describe)?
        .as_f64()
        .unwrap_or_default() as u16;
    let buffer = Reflect::get(&response, &"arrayBuffer".into())
        .map_err(describe)?
        .dyn_into::<js_sys::Function>()
        .map_err(describe)?
        .call0(&response)
        .map_err(describe)?;
    let bytes = JsFuture::from(js_sys::Promise::from(buffer))
        .await
        .map_err(describe)?;
    Ok((status, Uint8Array::new(&bytes).to_vec()))
}

impl Transport for FetchTransport {
    async fn post_json(&self, url: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        request(url, Some(body)).await
    }

    async fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String> {
        request(url, None).await
    }
}
