//! The PostgreSQL store passes the shared suite and reads a database of the layout before
//! ledger rows. Needs `TRICKLE_TEST_POSTGRES_URL`
//! (for example `postgres://postgres@127.0.0.1:5432/postgres`); skipped with a notice without it.
//! Each run works in a fresh schema of its own, dropped at the end.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)] // tests may panic on what cannot happen

mod common;

use std::sync::Arc;

use bitcoin::Amount;
use common::{fetch, Client, Server};
use trickle_channel::credit::Ledger;
use trickle_channel::{Snapshot, Version};
use trickle_payee::store::{ChannelStore, ChannelUpdate, PostgresStore};

/// A URL whose connections use a new schema, and a guard that drops it.
async fn fresh_schema(test: &str) -> Option<(String, Schema)> {
    let Ok(url) = std::env::var("TRICKLE_TEST_POSTGRES_URL") else {
        // Straight to stderr: the test harness captures eprintln! of passing tests.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "skipping {test}: TRICKLE_TEST_POSTGRES_URL is not set"
        );
        return None;
    };
    let schema = format!("trickle_test_{}_{}", test, std::process::id());
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to TRICKLE_TEST_POSTGRES_URL");
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options=-csearch_path%3D{schema}");
    Some((
        scoped,
        Schema {
            client,
            name: schema,
        },
    ))
}

struct Schema {
    client: tokio_postgres::Client,
    name: String,
}

impl Schema {
    async fn drop(self) {
        self.client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn postgres_store_passes_the_suite() {
    let Some((url, schema)) = fresh_schema("suite").await else {
        return;
    };
    let store = PostgresStore::connect(&url).await.unwrap();
    common::suite::run(&store).await;
    // A second connection (another instance) migrates nothing and sees the same channels.
    let again = PostgresStore::connect(&url).await.unwrap();
    let seen = again.channels().await.unwrap();
    assert!(!seen.is_empty());
    assert_eq!(seen, store.channels().await.unwrap());
    schema.drop().await;
}

#[tokio::test]
async fn two_instances_share_one_database() {
    let Some((url, schema)) = fresh_schema("instances").await else {
        return;
    };
    let a: Arc<dyn ChannelStore> = Arc::new(PostgresStore::connect(&url).await.unwrap());
    let b: Arc<dyn ChannelStore> = Arc::new(PostgresStore::connect(&url).await.unwrap());
    let first = Server::start(a).await;
    let second = Server::start(b).await;
    let mut client = Client::open(&first.endpoint(), Version::V2, 95).await;
    let url_a = format!("{}/articles/1", first.url);
    let offer = fetch(&url_a, None).await.required.unwrap();
    let update = client.sign(Amount::from_sat(10));
    let paid = fetch(&url_a, Some(&client.header(&offer, Some(&update), true))).await;
    assert_eq!((paid.status, paid.consumed()), (200, 10));
    // The other instance knows the channel and its credit.
    let url_b = format!("{}/articles/2", second.url);
    let offer = fetch(&url_b, None).await.required.unwrap();
    let paid = fetch(&url_b, Some(&client.header(&offer, None, true))).await;
    assert_eq!(
        (paid.status, paid.consumed(), paid.credit()),
        (200, 10, 990)
    );
    schema.drop().await;
}

/// The schema of the builds before ledger rows (migrations 1 and 2), as they left a database.
const POSTGRES_SCHEMA_2: &str = "
    CREATE TABLE trickle_schema (version INTEGER NOT NULL);
    INSERT INTO trickle_schema (version) VALUES (2);
    CREATE TABLE pending_sessions (
        id TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL, created_at BIGINT NOT NULL);
    CREATE TABLE channels (
        txid TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL, status TEXT NOT NULL,
        paid BIGINT NOT NULL, consumed BIGINT NOT NULL, revision BIGINT NOT NULL,
        seq BIGSERIAL NOT NULL);
    CREATE TABLE charged_nonces (
        channel TEXT NOT NULL REFERENCES channels(txid), nonce TEXT NOT NULL,
        price BIGINT NOT NULL, resource TEXT NOT NULL DEFAULT '', PRIMARY KEY (channel, nonce));
    CREATE INDEX pending_sessions_created ON pending_sessions(created_at);";

#[tokio::test]
async fn postgres_reads_a_database_of_the_layout_before_ledger_rows() {
    let Some((url, schema)) = fresh_schema("layout2").await else {
        return;
    };
    let [_, ready, paid, closing] = common::memory_channel(Version::V2, 54);
    let txid = ready.channel().unwrap().contract_txid();
    let ledger = |paid, consumed| Ledger {
        paid: Amount::from_sat(paid),
        consumed: Amount::from_sat(consumed),
    };
    {
        let (old, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        old.batch_execute(POSTGRES_SCHEMA_2).await.unwrap();
        let document = serde_json::to_string(&Snapshot::new(&ready)).unwrap();
        old.execute(
            "INSERT INTO channels (txid, state, status, paid, consumed, revision)
             VALUES ($1, $2, 'Ready', 1000, 10, 3)",
            &[&txid.to_string(), &document],
        )
        .await
        .unwrap();
    }
    let store = PostgresStore::connect(&url).await.unwrap();
    let stored = store.channel(&txid).await.unwrap().expect("kept");
    assert_eq!(
        (&stored.state, stored.ledger, stored.revision),
        (&ready, ledger(1_000, 10), 3)
    );
    // A charge writes its ledger row, read back by another instance; a close the document.
    let update = ChannelUpdate::new(&ready, &paid, ledger(1_500, 20), &[]);
    assert_eq!(store.update_channel(&txid, 3, update).await, Ok(4));
    let other = PostgresStore::connect(&url).await.unwrap();
    let stored = other.channel(&txid).await.unwrap().expect("kept");
    assert_eq!(
        (&stored.state, stored.ledger, stored.revision),
        (&paid, ledger(1_500, 20), 4)
    );
    let update = ChannelUpdate::new(&paid, &closing, ledger(1_500, 20), &[]);
    assert_eq!(other.update_channel(&txid, 4, update).await, Ok(5));
    let all = store.channels().await.unwrap();
    assert_eq!(
        (all.len(), &all[0].state, all[0].revision),
        (1, &closing, 5)
    );
    schema.drop().await;
}
