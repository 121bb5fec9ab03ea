//! The stores: one suite for every implementation, values that survive reopening, and a
//! file-backed wallet moved into SQLite without losing a key.

use bitcoin::Network;
use trickle_wallet::conformance::check_store;
use trickle_wallet::store::{FileStore, MemoryStore, SqliteStore, Store, WriteBatch, SQLITE_FILE};
use trickle_wallet::{Wallet, WalletError};

/// A fresh directory under the system's temporary directory.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("trickle-store-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// What every store must do (`trickle_wallet::conformance`), then values that outlive the
/// store: the suite leaves the store empty, so one key is written after it.
async fn suite(store: &impl Store) {
    let checks = check_store(store).await.expect("the store suite");
    assert!(checks > 15, "{checks} checks ran");
    store.put("channel/a", b"one".to_vec()).await.expect("put");
    store.put("channel/b", b"2".to_vec()).await.expect("put");
    store.put("wallet/meta", b"m".to_vec()).await.expect("put");
}

#[tokio::test(flavor = "current_thread")]
async fn every_store_passes_the_suite_and_keeps_its_values() {
    suite(&MemoryStore::default()).await;

    let dir = temp_dir("files");
    suite(&FileStore::open(&dir).expect("store")).await;
    let reopened = FileStore::open(&dir).expect("store");
    assert_eq!(
        reopened.get("channel/a").await.expect("get"),
        Some(b"one".to_vec())
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");

    let dir = temp_dir("sqlite");
    suite(&SqliteStore::open(&dir).expect("store")).await;
    let reopened = SqliteStore::open(&dir).expect("store");
    assert_eq!(
        reopened.get("channel/a").await.expect("get"),
        Some(b"one".to_vec())
    );
    assert_eq!(reopened.keys("").await.expect("keys").len(), 3);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[tokio::test(flavor = "current_thread")]
async fn a_file_backed_wallet_moves_into_sqlite_whole() {
    let dir = temp_dir("import");
    let (mut wallet, phrase) = Wallet::create(
        FileStore::open(&dir).expect("store"),
        Network::Regtest,
        "secret",
    )
    .await
    .expect("created");
    let address = wallet.receive_address().await.expect("address");
    let files = FileStore::open(&dir).expect("store");
    let keys = files.keys("").await.expect("keys");
    assert!(keys.len() >= 3, "{keys:?}");
    let mut values = Vec::new();
    for key in &keys {
        values.push(files.get(key).await.expect("get"));
    }
    drop(wallet);

    let store = SqliteStore::open(&dir).expect("store");
    assert_eq!(store.keys("").await.expect("keys"), keys, "every key moved");
    for (key, value) in keys.iter().zip(values) {
        assert_eq!(store.get(key).await.expect("get"), value, "{key}");
    }
    // The files are gone: the database is the only copy.
    assert!(FileStore::open(&dir)
        .expect("store")
        .keys("")
        .await
        .expect("keys")
        .iter()
        .all(|k| k.starts_with(SQLITE_FILE)));
    assert!(matches!(
        Wallet::unlock(
            FileStore::open(&dir).expect("store"),
            Network::Regtest,
            "secret"
        )
        .await,
        Err(WalletError::NotFound)
    ));
    // The wallet opens from the database as it was; opening again moves nothing twice.
    let mut wallet = Wallet::unlock(store, Network::Regtest, "secret")
        .await
        .expect("unlocked");
    assert_eq!(wallet.receive_address().await.expect("address"), address);
    let again = SqliteStore::open(&dir).expect("store");
    assert_eq!(again.keys("").await.expect("keys"), keys);
    // The phrase is not in the database in the clear.
    let db = std::fs::read(dir.join(SQLITE_FILE)).expect("database");
    let wal = std::fs::read(dir.join(format!("{SQLITE_FILE}-wal"))).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(!String::from_utf8_lossy(&bytes).contains(&phrase));
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// Round `n`'s batch: its `keys` keys in, round `n - 1`'s out.
fn round(n: usize, keys: usize) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for k in 0..keys {
        if n > 0 {
            batch.remove(format!("round/{:03}/{k:03}", n - 1));
        }
        batch.put(format!("round/{n:03}/{k:03}"), vec![1]);
    }
    batch
}

#[test]
fn another_connection_sees_a_sqlite_batch_whole_or_not_at_all() {
    const KEYS: usize = 50;
    const ROUNDS: usize = 40;
    let dir = temp_dir("atomic");
    let writer = SqliteStore::open(&dir).expect("store");
    writer.write_blocking(round(0, KEYS)).expect("first round");
    let reader = SqliteStore::open(&dir).expect("second connection");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watching = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut looks = 0;
            while !done.load(std::sync::atomic::Ordering::Acquire) || looks == 0 {
                // One query: a batch half written would show keys of two rounds, or fewer.
                let keys = reader.keys_blocking("round/").expect("keys");
                let rounds: std::collections::BTreeSet<&str> =
                    keys.iter().filter_map(|k| k.get(..9)).collect();
                looks += 1;
                if keys.len() != KEYS || rounds.len() != 1 {
                    return Err(format!("look {looks}: {} keys of {rounds:?}", keys.len()));
                }
            }
            Ok(looks)
        })
    };
    for n in 1..=ROUNDS {
        writer.write_blocking(round(n, KEYS)).expect("round");
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    let looks = watching.join().expect("reader");
    assert!(looks.is_ok(), "{looks:?}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
