//! The PostgreSQL store passes the shared suite. Needs `TRICKLE_TEST_POSTGRES_URL`
//! (for example `postgres://postgres@127.0.0.1:5432/postgres`); skipped with a notice without it.
//! Each run works in a fresh schema of its own, dropped at the end.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)] // tests may panic on what cannot happen

mod common;

use std::sync::Arc;

use bitcoin::Amount;
use common::{fetch, Client, Server};
use trickle_channel::Version;
use trickle_payee::store::{ChannelStore, PostgresStore};

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
