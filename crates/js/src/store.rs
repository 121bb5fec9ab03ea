//! The wallet's records behind its [`Store`] trait, in a store the JS host hands over: the
//! extension worker's (`extension/src/background/storage.ts` picks it per browser) or a Node
//! process's file (`packages/x402-client/store.js`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use js_sys::{Array, Object, Reflect};
use trickle_wallet::store::{Store, StoreError, WriteBatch};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const WALLET_STORE: &str = r#"
/** Where the host keeps the wallet's records: text under keys. */
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
    /// The host's [`WalletStore`](self).
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
}

/// `what` of `key` failed with the JS error `e`.
pub fn failed(what: &str, key: &str, e: JsValue) -> StoreError {
    StoreError(format!("{what} {key}: {}", crate::describe(e)))
}

/// The wallet's records in the host's [`WalletStore`], as base64 text. How atomic and durable
/// a write is, is the store's to say.
#[derive(Clone, Debug)]
pub struct JsStore(WalletStore);

impl JsStore {
    pub fn new(store: WalletStore) -> Self {
        Self(store)
    }
}

impl Store for JsStore {
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
