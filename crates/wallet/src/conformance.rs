//! What every [`Store`] must do, as one suite: run natively over each store the command-line
//! payer can use (`crates/wallet/tests/store.rs`), and inside the extension's worker over the
//! browser's own storage (the worker's `storeSuite` request, `tests/browser/wallet.test.mjs`).
//! A failed check is an error naming it, not a panic, so that it reaches the test from a
//! wasm worker too.

use crate::store::{Store, StoreError, WriteBatch};

/// Why the suite failed.
#[derive(Debug, PartialEq, Eq)]
pub struct SuiteFailure(pub String);

impl From<StoreError> for SuiteFailure {
    fn from(e: StoreError) -> Self {
        Self(format!("the store failed: {}", e.0))
    }
}

struct Checks(u32);

impl Checks {
    fn equal<T: PartialEq + core::fmt::Debug>(
        &mut self,
        what: &str,
        have: T,
        want: T,
    ) -> Result<(), SuiteFailure> {
        self.0 += 1;
        if have == want {
            Ok(())
        } else {
            Err(SuiteFailure(format!("{what}: {have:?}, not {want:?}")))
        }
    }
}

fn strings(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

/// Runs the suite over `store`, which must be empty, and leaves it empty; the number of checks
/// that passed.
pub async fn check_store<S: Store>(store: &S) -> Result<u32, SuiteFailure> {
    let mut c = Checks(0);
    c.equal("an empty store's keys", store.keys("").await?, vec![])?;
    c.equal("an absent key", store.get("channel/a").await?, None)?;
    store.put("channel/b", b"2".to_vec()).await?;
    store.put("channel/a", b"1".to_vec()).await?;
    store.put("wallet/meta", b"m".to_vec()).await?;
    c.equal("a put", store.get("channel/a").await?, Some(b"1".to_vec()))?;
    store.put("channel/a", b"one".to_vec()).await?;
    let one = Some(b"one".to_vec());
    c.equal("an overwrite", store.get("channel/a").await?, one)?;
    let listed = store.keys("channel/").await?;
    c.equal(
        "keys by prefix, sorted",
        listed,
        strings(&["channel/a", "channel/b"]),
    )?;
    c.equal("every key", store.keys("").await?.len(), 3)?;
    c.equal("a prefix of nothing", store.keys("nothing/").await?, vec![])?;
    // Bytes that are not text, and every byte value, come back as they went.
    let bytes: Vec<u8> = (0..=255).collect();
    store.put("bytes", bytes.clone()).await?;
    c.equal("every byte value", store.get("bytes").await?, Some(bytes))?;
    store.put("empty", Vec::new()).await?;
    c.equal(
        "an empty value",
        store.get("empty").await?,
        Some(Vec::new()),
    )?;
    store.put("gone/x", b"x".to_vec()).await?;
    store.remove("gone/x").await?;
    store.remove("gone/x").await?;
    c.equal("a removed key", store.get("gone/x").await?, None)?;
    c.equal(
        "a removed key's listing",
        store.keys("gone/").await?,
        vec![],
    )?;
    store.remove("bytes").await?;
    store.remove("empty").await?;
    c.equal("every key, after removals", store.keys("").await?.len(), 3)?;

    // A batch: puts and removes together, a later change of a key winning.
    let mut batch = WriteBatch::new();
    batch.put("batch/a", b"first".to_vec());
    batch.put("batch/b", b"b".to_vec());
    batch.remove("channel/b");
    batch.put("batch/a", b"a".to_vec());
    let mut later = WriteBatch::new();
    later.remove("batch/b");
    later.put("batch/c", b"c".to_vec());
    batch.merge(later);
    store.write(batch).await?;
    let all = strings(&["batch/a", "batch/c", "channel/a", "wallet/meta"]);
    c.equal("a batch's keys", store.keys("").await?, all)?;
    c.equal(
        "a batch's last put",
        store.get("batch/a").await?,
        Some(b"a".to_vec()),
    )?;
    c.equal("a batch's removal", store.get("channel/b").await?, None)?;
    store.write(WriteBatch::new()).await?;
    c.equal("an empty batch", store.keys("").await?.len(), 4)?;

    let mut clear = WriteBatch::new();
    for key in store.keys("").await? {
        clear.remove(key);
    }
    store.write(clear).await?;
    c.equal("a batch of removals", store.keys("").await?, vec![])?;
    Ok(c.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    /// A store that loses every removal: the suite must notice.
    #[derive(Default)]
    struct NoRemovals(MemoryStore);

    impl Store for NoRemovals {
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.0.get(key).await
        }
        async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            self.0.keys(prefix).await
        }
        async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
            let mut puts = WriteBatch::new();
            for (key, value) in batch.with_prefix("") {
                if let Some(value) = value {
                    puts.put(key, value.to_vec());
                }
            }
            self.0.write(puts).await
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_good_store_passes_and_a_store_that_forgets_removals_fails() {
        let checks = check_store(&MemoryStore::default()).await;
        assert!(checks.as_ref().is_ok_and(|n| *n > 15), "{checks:?}");
        let failed = check_store(&NoRemovals::default()).await;
        let Err(SuiteFailure(why)) = failed else {
            panic!("a store that keeps removed keys passed: {failed:?}");
        };
        assert!(why.starts_with("a removed key"), "{why}");
    }
}
