//! The storage layout, versioned.
//!
//! * Layout 1 (Trickle 0.1's command-line payer) kept one wallet at the root of the store:
//!   `wallet/meta`, `wallet/seed`, `wallet/bdk`, `channel/<id>`.
//! * Layout 2 keeps each network's wallet under its own prefix (`regtest/wallet/meta`, ...), so
//!   one extension profile or one directory holds a wallet per network and the user can switch.
//! * Layout 3 labels every channel by its site's origin (scheme, host and port), as budgets
//!   are: the command-line payer labelled its channels by host, so that two sites on one host
//!   shared a label and a pinned payee key.
//!
//! [`open`] migrates an older layout in place and returns the store scoped to one network. The
//! migration copies, then records the new layout, then deletes the originals, so a crash at any
//! point leaves data that the next [`open`] finishes migrating; nothing is lost.

use bitcoin::Network;
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, WriteBatch};
use crate::WalletError;

/// The current layout.
pub const LAYOUT: u16 = 3;
const LAYOUT_KEY: &str = "layout";
/// The record that marks a layout-1 wallet at the root.
const LAYOUT1_META: &str = "wallet/meta";

#[derive(Serialize, Deserialize)]
struct LayoutRecord {
    layout: u16,
}

/// The part of a layout-1 wallet record the migration needs.
#[derive(Deserialize)]
struct Layout1Meta {
    network: Network,
}

/// A store seen through a key prefix: one network's share of the underlying store.
#[derive(Debug, Clone)]
pub struct Scoped<S> {
    inner: S,
    prefix: String,
}

impl<S: Store> Scoped<S> {
    /// `inner` seen through `<network>/`.
    pub fn new(inner: S, network: Network) -> Self {
        Self {
            inner,
            prefix: format!("{}/", network_prefix(network)),
        }
    }

    /// `inner` seen through `<prefix>/`: a share apart from every network's.
    pub fn under(inner: S, prefix: &str) -> Self {
        Self {
            inner,
            prefix: format!("{prefix}/"),
        }
    }

    /// The whole store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

fn network_prefix(network: Network) -> &'static str {
    match network {
        Network::Bitcoin => "bitcoin",
        Network::Testnet => "testnet",
        Network::Testnet4 => "testnet4",
        Network::Signet => "signet",
        Network::Regtest => "regtest",
    }
}

/// What a layout-1 wallet kept at the root: its records and its channels.
const LAYOUT1_PREFIXES: [&str; 2] = ["wallet/", "channel/"];

impl<S: Store> Store for Scoped<S> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(&format!("{}{key}", self.prefix)).await
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let keys = self.inner.keys(&format!("{}{prefix}", self.prefix)).await?;
        Ok(keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_owned))
            .collect())
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.inner.write(batch.prefixed(&self.prefix)).await
    }
}

/// Brings `store` to the current layout and returns its `network` share.
pub async fn open<S: Store>(store: S, network: Network) -> Result<Scoped<S>, WalletError> {
    migrate(&store).await?;
    Ok(Scoped::new(store, network))
}

/// The layout `store` is in: 0 when empty, 1 for a root wallet without a layout record.
pub async fn layout_of<S: Store>(store: &S) -> Result<u16, WalletError> {
    if let Some(bytes) = store.get(LAYOUT_KEY).await? {
        let record: LayoutRecord = serde_json::from_slice(&bytes)
            .map_err(|e| WalletError::Corrupt(format!("layout: {e}")))?;
        return Ok(record.layout);
    }
    Ok(u16::from(store.get(LAYOUT1_META).await?.is_some()))
}

async fn migrate<S: Store>(store: &S) -> Result<(), WalletError> {
    let layout = layout_of(store).await?;
    if layout > LAYOUT {
        return Err(WalletError::Corrupt(format!(
            "storage layout {layout} is newer than this version understands ({LAYOUT})"
        )));
    }
    if layout == 1 {
        let meta: Layout1Meta = serde_json::from_slice(
            &store
                .get(LAYOUT1_META)
                .await?
                .ok_or(WalletError::NotFound)?,
        )
        .map_err(|e| WalletError::Corrupt(format!("layout-1 wallet record: {e}")))?;
        let target = Scoped::new(store, meta.network);
        for key in layout1_keys(store).await? {
            if let Some(value) = store.get(&key).await? {
                target.put(&key, value).await?;
            }
        }
    }
    if layout < 3 {
        relabel_channels_by_origin(store).await?;
    }
    if layout != LAYOUT {
        let record = serde_json::to_vec(&LayoutRecord { layout: LAYOUT })
            .map_err(|e| WalletError::Corrupt(e.to_string()))?;
        store.put(LAYOUT_KEY, record).await?;
    }
    // Originals go only once the copies and the layout record are stored; this also finishes a
    // migration that stopped half way through its deletions.
    for key in layout1_keys(store).await? {
        store.remove(&key).await?;
    }
    Ok(())
}

/// Relabels each network's channel records by origin (layout 3), one record per write: the
/// new record and the removal of the old one go together, so a migration cut short leaves
/// every record once, and the next [`open`] relabels the rest.
async fn relabel_channels_by_origin<S: Store>(store: &S) -> Result<(), WalletError> {
    for network in [
        Network::Bitcoin,
        Network::Testnet,
        Network::Testnet4,
        Network::Signet,
        Network::Regtest,
    ] {
        let scoped = Scoped::new(store, network);
        for key in scoped.keys("channel/").await? {
            let Some(bytes) = scoped.get(&key).await? else {
                continue;
            };
            if let Some((new_key, record)) = crate::channels::relabelled_by_origin(&bytes) {
                let mut batch = WriteBatch::new();
                batch.remove(key);
                batch.put(new_key, record);
                scoped.write(batch).await?;
            }
        }
    }
    Ok(())
}

/// The keys a layout-1 wallet kept at the root.
async fn layout1_keys<S: Store>(store: &S) -> Result<Vec<String>, StoreError> {
    let mut keys = Vec::new();
    for prefix in LAYOUT1_PREFIXES {
        keys.extend(store.keys(prefix).await?);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn scoped_stores_do_not_see_each_other() {
        {
            let store = MemoryStore::default();
            let regtest = Scoped::new(&store, Network::Regtest);
            let signet = Scoped::new(&store, Network::Signet);
            regtest.put("channel/a", b"1".to_vec()).await.expect("put");
            assert_eq!(regtest.keys("channel/").await.expect("keys"), ["channel/a"]);
            assert!(signet.keys("").await.expect("keys").is_empty());
            assert_eq!(signet.get("channel/a").await.expect("get"), None);
            assert_eq!(
                store.get("regtest/channel/a").await.expect("get"),
                Some(b"1".to_vec())
            );
            regtest.remove("channel/a").await.expect("remove");
            assert!(store.keys("").await.expect("keys").is_empty());
        }
    }

    #[tokio::test]
    async fn an_empty_store_starts_at_the_current_layout() {
        {
            let store = MemoryStore::default();
            assert_eq!(layout_of(&store).await.expect("layout"), 0);
            open(&store, Network::Regtest).await.expect("open");
            assert_eq!(layout_of(&store).await.expect("layout"), LAYOUT);
        }
    }

    #[tokio::test]
    async fn a_newer_layout_is_refused() {
        {
            let store = MemoryStore::default();
            store
                .put(LAYOUT_KEY, br#"{"layout":4}"#.to_vec())
                .await
                .expect("put");
            let err = open(&store, Network::Regtest).await.expect_err("refused");
            assert!(err.to_string().contains("newer"), "{err}");
        }
    }
}
