//! The wallet's records behind its [`Store`] trait, in the store the worker hands over
//! (`extension/src/background/storage.ts` picks it per browser), and the session area that holds the
//! unlocked key while the browser runs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use js_sys::{Array, Object, Reflect};
use trickle_wallet::store::{Store, StoreError, WriteBatch};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const WALLET_STORE: &str = r#"
/** Where the worker keeps the wallet's records: text under keys (extension/src/background/storage.ts). */
export interface WalletStore {
  /** The value under `key`, or undefined. */
  get(key: string): Promise<string | undefined>;
  /** Every key. */
  keys(): Promise<string[]>;
  /** Sets `puts` and deletes `removes`; resolves once that is durable. */
  write(puts: Record<string, string>, removes: string[]): Promise<void>;
}
"#;

#[wasm_bindgen]
extern "C" {
    /// The worker's [`WalletStore`](self): Chrome's `storage.local`, Firefox's IndexedDB.
    #[wasm_bindgen(typescript_type = "WalletStore")]
    #[derive(Clone, Debug)]
    pub type WalletStore;
    #[wasm_bindgen(method, js_name = get, catch)]
    async fn get_item(this: &WalletStore, key: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, js_name = keys, catch)]
    async fn all_keys(this: &WalletStore) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, js_name = write, catch)]
    async fn write_items(
        this: &WalletStore,
        puts: &Object,
        removes: &Array,
    ) -> Result<JsValue, JsValue>;

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

/// The wallet's records in the worker's [`WalletStore`], as base64 text. How atomic and
/// durable a write is, is the store's: `storage.ts` says it for each browser.
#[derive(Clone, Debug)]
pub struct BrowserStore(WalletStore);

impl BrowserStore {
    pub fn new(store: WalletStore) -> Self {
        Self(store)
    }
}

impl Store for BrowserStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self
            .0
            .get_item(key)
            .await
            .map_err(|e| failed("get", key, e))?;
        match value.as_string() {
            None => Ok(None),
            Some(text) => STANDARD
                .decode(text)
                .map(Some)
                .map_err(|e| StoreError(format!("{key}: not base64: {e}"))),
        }
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let all = self
            .0
            .all_keys()
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

    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let puts = Object::new();
        let removes = Array::new();
        for (key, value) in batch {
            match value {
                Some(bytes) => {
                    let text = JsValue::from_str(&STANDARD.encode(bytes));
                    Reflect::set(&puts, &JsValue::from_str(&key), &text)
                        .map_err(|e| failed("set", &key, e))?;
                }
                None => {
                    removes.push(&JsValue::from_str(&key));
                }
            }
        }
        self.0
            .write_items(&puts, &removes)
            .await
            .map_err(|e| failed("write", "a batch", e))?;
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
