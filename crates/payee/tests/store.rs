//! Every store passes the shared suite; SQLite keeps everything across a reopen and refuses a
//! newer schema.
#![allow(clippy::unwrap_used)] // tests may panic on what cannot happen

mod common;

use std::sync::Arc;

use bitcoin::Amount;
use trickle_channel::credit::Ledger;
use trickle_channel::Version;
use trickle_payee::store::{ChannelStore, FailingStore, MemoryStore, SqliteStore, StoreError};

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
