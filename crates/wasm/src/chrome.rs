//! `chrome.storage` behind the wallet's [`Store`] trait, and the session area that holds the
//! unlocked key while the browser runs.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;

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

/// Writes held by a batch, by key: the value to set, or `None` to remove.
type Held = BTreeMap<String, Option<Vec<u8>>>;

/// `chrome.storage.local`: values are stored as base64 strings; `set` resolves once Chrome has
/// committed the write. Clones share one batch (see [`ChromeStore::batch`]).
#[derive(Clone, Debug, Default)]
pub struct ChromeStore {
    held: Rc<RefCell<Option<Held>>>,
}

impl ChromeStore {
    /// Runs `work` with this store's writes held (its reads see them), then hands them to
    /// Chrome in one `set`, which Chrome applies atomically, and one `remove`: every `put` in
    /// `work` is durable when `batch` returns, not before, so `work` must send nothing that
    /// needs them stored. What `work` wrote before failing is written too, as without a batch.
    /// Other writers of this store must wait meanwhile (the wallet's lock keeps them out).
    pub async fn batch<T, E: From<StoreError>>(
        &self,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        if self.held.borrow().is_some() {
            return work.await; // inside a batch already: part of it
        }
        *self.held.borrow_mut() = Some(Held::new());
        let out = work.await;
        let held = self.held.borrow_mut().take().unwrap_or_default();
        Self::write(held).await?;
        out
    }

    async fn write(held: Held) -> Result<(), StoreError> {
        let items = Object::new();
        let removed = Array::new();
        for (key, value) in &held {
            match value {
                Some(bytes) => {
                    let text = JsValue::from_str(&STANDARD.encode(bytes));
                    Reflect::set(&items, &JsValue::from_str(key), &text)
                        .map_err(|e| failed("set", key, e))?;
                }
                None => {
                    removed.push(&JsValue::from_str(key));
                }
            }
        }
        if held.values().any(Option::is_some) {
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

    /// Holds the write of `key` if a batch is open; else hands it back.
    fn hold(&self, key: &str, value: Option<Vec<u8>>) -> Option<Option<Vec<u8>>> {
        match self.held.borrow_mut().as_mut() {
            Some(held) => {
                held.insert(key.to_owned(), value);
                None
            }
            None => Some(value),
        }
    }
}

impl Store for ChromeStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(value) = self.held.borrow().as_ref().and_then(|h| h.get(key)) {
            return Ok(value.clone());
        }
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
        let Some(Some(value)) = self.hold(key, Some(value)) else {
            return Ok(());
        };
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
        if let Some(held) = self.held.borrow().as_ref() {
            keys.retain(|k| !held.contains_key(k));
            keys.extend(
                held.iter()
                    .filter(|(k, v)| v.is_some() && k.starts_with(prefix))
                    .map(|(k, _)| k.clone()),
            );
        }
        keys.sort();
        Ok(keys)
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        if self.hold(key, None).is_none() {
            return Ok(());
        }
        local_remove(&JsValue::from_str(key))
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
