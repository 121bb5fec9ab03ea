//! `chrome.storage` behind the wallet's [`Store`] trait, and the session area that holds the
//! unlocked key while the browser runs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use js_sys::{Array, Object, Reflect};
use trickle_wallet::store::{Store, StoreError};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = ["chrome", "storage", "local"], js_name = get, catch)]
    async fn local_get(key: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_namespace = ["chrome", "storage", "local"], js_name = set, catch)]
    async fn local_set(items: &Object) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_namespace = ["chrome", "storage", "local"], js_name = remove, catch)]
    async fn local_remove(key: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_namespace = ["chrome", "storage", "local"], js_name = getKeys, catch)]
    async fn local_get_keys() -> Result<JsValue, JsValue>;

    #[wasm_bindgen(js_namespace = ["chrome", "storage", "session"], js_name = get, catch)]
    async fn session_get(key: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_namespace = ["chrome", "storage", "session"], js_name = set, catch)]
    async fn session_set(items: &Object) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_namespace = ["chrome", "storage", "session"], js_name = remove, catch)]
    async fn session_remove(key: &str) -> Result<JsValue, JsValue>;
}

fn failed(what: &str, key: &str, e: JsValue) -> StoreError {
    let why = e
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"));
    StoreError(format!("{what} {key}: {why}"))
}

fn item(key: &str, value: &JsValue) -> Result<Object, StoreError> {
    let items = Object::new();
    Reflect::set(&items, &JsValue::from_str(key), value).map_err(|e| failed("set", key, e))?;
    Ok(items)
}

fn field(items: &JsValue, key: &str) -> Result<JsValue, StoreError> {
    Reflect::get(items, &JsValue::from_str(key)).map_err(|e| failed("get", key, e))
}

/// `chrome.storage.local`: values are stored as base64 strings; `set` resolves once Chrome has
/// committed the write.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChromeStore;

impl Store for ChromeStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let items = local_get(key).await.map_err(|e| failed("get", key, e))?;
        match field(&items, key)?.as_string() {
            None => Ok(None),
            Some(text) => STANDARD
                .decode(text)
                .map(Some)
                .map_err(|e| StoreError(format!("{key}: not base64: {e}"))),
        }
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let items = item(key, &JsValue::from_str(&STANDARD.encode(value)))?;
        local_set(&items).await.map_err(|e| failed("set", key, e))?;
        Ok(())
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let all = local_get_keys()
            .await
            .map_err(|e| failed("list", prefix, e))?;
        let mut keys: Vec<String> = Array::from(&all)
            .iter()
            .filter_map(|k| k.as_string())
            .filter(|k| k.starts_with(prefix))
            .collect();
        keys.sort();
        Ok(keys)
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        local_remove(key)
            .await
            .map_err(|e| failed("remove", key, e))?;
        Ok(())
    }
}

/// `chrome.storage.session`: memory only, gone when the browser closes, hidden from content
/// scripts. Holds JSON text.
pub struct Session;

impl Session {
    pub async fn get(key: &str) -> Result<Option<String>, StoreError> {
        let items = session_get(key).await.map_err(|e| failed("get", key, e))?;
        Ok(field(&items, key)?.as_string())
    }

    pub async fn set(key: &str, value: &str) -> Result<(), StoreError> {
        session_set(&item(key, &JsValue::from_str(value))?)
            .await
            .map_err(|e| failed("set", key, e))?;
        Ok(())
    }

    pub async fn remove(key: &str) -> Result<(), StoreError> {
        session_remove(key)
            .await
            .map_err(|e| failed("remove", key, e))?;
        Ok(())
    }
}
