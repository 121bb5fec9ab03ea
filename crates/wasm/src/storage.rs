//! The session area that holds the unlocked key while the browser runs; the wallet's records
//! are in the store the worker hands over ([`trickle_js::JsStore`]).

use js_sys::{Object, Reflect};
use trickle_js::failed;
use trickle_wallet::store::StoreError;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = ["chrome", "storage", "session"], js_name = get, catch)]
    async fn session_get(key: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_namespace = ["chrome", "storage", "session"], js_name = set, catch)]
    async fn session_set(items: &Object) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_namespace = ["chrome", "storage", "session"], js_name = remove, catch)]
    async fn session_remove(key: &str) -> Result<JsValue, JsValue>;
}

fn item(key: &str, value: &JsValue) -> Result<Object, StoreError> {
    let items = Object::new();
    Reflect::set(&items, &JsValue::from_str(key), value).map_err(|e| failed("set", key, e))?;
    Ok(items)
}

fn field(items: &JsValue, key: &str) -> Result<JsValue, StoreError> {
    Reflect::get(items, &JsValue::from_str(key)).map_err(|e| failed("get", key, e))
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
