//! Every store passes the shared suite; SQLite keeps everything across a reopen, reads a store
//! of the layout before ledger rows and refuses a newer schema.
#![allow(clippy::unwrap_used)] // tests may panic on what cannot happen

mod common;

use std::sync::Arc;

use bitcoin::Amount;
use trickle_channel::credit::Ledger;
use trickle_channel::{Snapshot, Version};
use trickle_payee::store::{
    ChannelStore, ChannelUpdate, FailingStore, MemoryStore, SqliteStore, StoreError,
};

#[tokio::test]
async fn memory_store_passes_the_suite() {
    common::suite::run(&MemoryStore::new()).await;
}

#[tokio::test]
async fn sqlite_store_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("payee.sqlite3"))
        .await
        .unwrap();
    common::suite::run(&store).await;
}

#[tokio::test]
async fn sqlite_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payee.sqlite3");
    let [pending, ready, ..] = common::memory_channel(Version::V2, 50);
    let txid = ready.channel().unwrap().contract_txid();
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.insert_session("s", &pending, 1).await.unwrap();
        store.insert_session("p", &pending, 1).await.unwrap();
        let ledger = Ledger {
            paid: Amount::from_sat(1_000),
            consumed: Amount::ZERO,
        };
        store.open_channel("s", &ready, ledger).await.unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.session("p").await.unwrap(), Some(pending));
    let stored = store.channel(&txid).await.unwrap().expect("kept");
    assert_eq!(stored.state, ready);
    assert_eq!(stored.ledger.paid, Amount::from_sat(1_000));
}

/// The schema of the builds before ledger rows (migrations 1 and 2), as they left a file.
const SQLITE_SCHEMA_2: &str = "
    CREATE TABLE pending_sessions (
        id TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL, created_at INTEGER NOT NULL);
    CREATE TABLE channels (
        txid TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL, status TEXT NOT NULL,
        paid INTEGER NOT NULL, consumed INTEGER NOT NULL, revision INTEGER NOT NULL,
        seq INTEGER NOT NULL);
    CREATE TABLE charged_nonces (
        channel TEXT NOT NULL REFERENCES channels(txid), nonce TEXT NOT NULL,
        price INTEGER NOT NULL, resource TEXT NOT NULL DEFAULT '', PRIMARY KEY (channel, nonce));
    CREATE INDEX pending_sessions_created ON pending_sessions(created_at);
    PRAGMA user_version = 2;";

#[tokio::test]
async fn sqlite_reads_a_store_of_the_layout_before_ledger_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payee.sqlite3");
    let [_, ready, paid, closing] = common::memory_channel(Version::V2, 53);
    let txid = ready.channel().unwrap().contract_txid();
    let ledger = |paid, consumed| Ledger {
        paid: Amount::from_sat(paid),
        consumed: Amount::from_sat(consumed),
    };
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(SQLITE_SCHEMA_2).unwrap();
        let document = serde_json::to_string(&Snapshot::new(&ready)).unwrap();
        conn.execute(
            "INSERT INTO channels (txid, state, status, paid, consumed, revision, seq)
             VALUES (?1, ?2, 'Ready', 1000, 10, 3, 1)",
            rusqlite::params![txid.to_string(), document],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO charged_nonces (channel, nonce, price, resource)
             VALUES (?1, 'n1', 10, 'http://127.0.0.1/a')",
            [txid.to_string()],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let stored = store.channel(&txid).await.unwrap().expect("kept");
    assert_eq!(
        (&stored.state, stored.ledger, stored.revision),
        (&ready, ledger(1_000, 10), 3)
    );
    assert_eq!(
        store.charged_at(&txid, "n1").await.unwrap().as_deref(),
        Some("http://127.0.0.1/a")
    );
    // A charge writes its ledger row; the best payment it carries is read back, across a
    // reopen, until a close writes the whole document.
    let update = ChannelUpdate::new(&ready, &paid, ledger(1_500, 20), &[]);
    assert!(update.payment_only());
    assert_eq!(store.update_channel(&txid, 3, update).await, Ok(4));
    drop(store);
    let store = SqliteStore::open(&path).await.unwrap();
    let stored = store.channel(&txid).await.unwrap().expect("kept");
    assert_eq!(
        (&stored.state, stored.ledger, stored.revision),
        (&paid, ledger(1_500, 20), 4)
    );
    let update = ChannelUpdate::new(&paid, &closing, ledger(1_500, 20), &[]);
    assert!(!update.payment_only());
    assert_eq!(store.update_channel(&txid, 4, update).await, Ok(5));
    let all = store.channels().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((&all[0].state, all[0].revision), (&closing, 5));
}

#[tokio::test]
async fn sqlite_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payee.sqlite3");
    drop(SqliteStore::open(&path).await.unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    match SqliteStore::open(&path).await {
        Err(StoreError::Corrupt(why)) => assert!(why.contains("newer"), "{why}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
}

#[tokio::test]
async fn sqlite_refuses_a_corrupt_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payee.sqlite3");
    let [pending, ..] = common::memory_channel(Version::V2, 51);
    let store = SqliteStore::open(&path).await.unwrap();
    store.insert_session("s", &pending, 1).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE pending_sessions SET state = '{\"format\":7,\"state\":null}'",
        [],
    )
    .unwrap();
    assert!(matches!(
        store.session("s").await,
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test]
async fn failing_store_changes_nothing() {
    let inner: Arc<dyn ChannelStore> = Arc::new(MemoryStore::new());
    let store = FailingStore::new(inner.clone());
    let [pending, ..] = common::memory_channel(Version::V2, 52);
    store.fail_writes(true);
    assert!(matches!(
        store.insert_session("s", &pending, 1).await,
        Err(StoreError::Backend(_))
    ));
    assert_eq!(inner.session("s").await.unwrap(), None);
    store.fail_writes(false);
    store.insert_session("s", &pending, 1).await.unwrap();
    assert_eq!(store.session("s").await.unwrap(), Some(pending));
}
