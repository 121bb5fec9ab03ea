//! `chrome.storage` behind the wallet's [`Store`] trait, and the session area that holds the
//! unlocked key while the browser runs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use js_sys::{Array, Object, Reflect};
use trickle_wallet::store::{Store, StoreError, WriteBatch};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = ["chrome", "storage", "local"], js_name = get, catch)]
    async fn local_get(key: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_namespace = ["chrome", "storage", "local"], js_name = set, catch)]
    async fn local_set(items: &Object) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_namespace = ["chrome", "storage", "local"], js_name = remove, catch)]
    async fn local_remove(keys: &JsValue) -> Result<JsValue, JsValue>;
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

    /// Every put in one `chrome.storage.local.set`, which Chrome applies as one write of its
    /// database (all the items or none), then every removal in one `remove`. Chrome has no
    /// call that sets and removes together, so a batch with both is two writes: a worker
    /// stopped between them keeps the puts without the removals. The wallet's only removals in
    /// a batch are of outstanding increments (`payment/`) whose reservation the same batch
    /// commits or releases; one left behind is settled again the next time (its reservation is
    /// gone from the budget, so it commits nothing twice) and removed then. A failed `set`
    /// writes nothing, and nothing is removed after it.
    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let items = Object::new();
        let removed = Array::new();
        let mut puts = 0;
        for (key, value) in batch {
            match value {
                Some(bytes) => {
                    let text = JsValue::from_str(&STANDARD.encode(bytes));
                    Reflect::set(&items, &JsValue::from_str(&key), &text)
                        .map_err(|e| failed("set", &key, e))?;
                    puts += 1;
                }
                None => {
                    removed.push(&JsValue::from_str(&key));
                }
            }
        }
        if puts > 0 {
            local_set(&items)
                .await
                .map_err(|e| failed("set", "a batch", e))?;
        }
        if removed.length() > 0 {
            local_remove(&removed)
                .await
                .map_err(|e| failed("remove", "a batch", e))?;
        }
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
