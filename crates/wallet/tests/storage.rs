//! Stored data across versions and faults: a layout-1 wallet written by Trickle 0.1 migrates
//! and unlocks, a migration interrupted at any write finishes on the next open, and damaged
//! records give clear errors.

use std::cell::Cell;
use std::collections::BTreeMap;

use bitcoin::Network;
use trickle_wallet::layout::{self, LAYOUT};
use trickle_wallet::store::{MemoryStore, Store, StoreError};
use trickle_wallet::Wallet;

struct Fixture {
    password: String,
    phrase: String,
    first_address: String,
    store: BTreeMap<String, String>,
}

fn fixture() -> Fixture {
    let text = include_str!("fixtures/layout1.json");
    let json: serde_json::Value = serde_json::from_str(text).expect("fixture is JSON");
    let field = |name: &str| json[name].as_str().expect("fixture field").to_owned();
    Fixture {
        password: field("password"),
        phrase: field("phrase"),
        first_address: field("first_address"),
        store: serde_json::from_value(json["store"].clone()).expect("fixture store"),
    }
}

async fn load(fixture: &Fixture) -> MemoryStore {
    let store = MemoryStore::default();
    for (key, value) in &fixture.store {
        store
            .put(key, value.clone().into_bytes())
            .await
            .expect("put");
    }
    store
}

/// Unlocks the migrated regtest wallet and checks it is the fixture's wallet.
async fn check_migrated(store: &MemoryStore, fixture: &Fixture) {
    assert_eq!(layout::layout_of(store).await.expect("layout"), LAYOUT);
    assert!(
        store.keys("wallet/").await.expect("keys").is_empty(),
        "layout-1 records left at the root"
    );
    let scoped = layout::open(store, Network::Regtest).await.expect("open");
    let mut wallet = Wallet::unlock(scoped, Network::Regtest, &fixture.password)
        .await
        .expect("unlock migrated wallet");
    assert_eq!(
        wallet
            .export_phrase(&fixture.password)
            .await
            .expect("export"),
        fixture.phrase
    );
    // The address handed out before the migration is still the first unused one.
    assert_eq!(
        wallet.receive_address().await.expect("address").to_string(),
        fixture.first_address
    );
    let signet = layout::open(store, Network::Signet).await.expect("open");
    assert!(!Wallet::exists(&signet).await.expect("exists"));
}

#[tokio::test(flavor = "current_thread")]
async fn a_layout1_wallet_migrates_and_unlocks() {
    let fixture = fixture();
    let store = load(&fixture).await;
    assert_eq!(layout::layout_of(&store).await.expect("layout"), 1);
    layout::open(&store, Network::Regtest)
        .await
        .expect("migrate");
    check_migrated(&store, &fixture).await;
}

/// A store that fails every write after the first `budget` ones, like a process killed there.
struct DiesAfter<'a> {
    inner: &'a MemoryStore,
    budget: Cell<usize>,
}

impl DiesAfter<'_> {
    fn spend(&self) -> Result<(), StoreError> {
        match self.budget.get() {
            0 => Err(StoreError("killed".into())),
            n => {
                self.budget.set(n - 1);
                Ok(())
            }
        }
    }
}

impl Store for DiesAfter<'_> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.spend()?;
        self.inner.put(key, value).await
    }
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.keys(prefix).await
    }
    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.spend()?;
        self.inner.remove(key).await
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_migration_interrupted_at_any_write_finishes_on_the_next_open() {
    let fixture = fixture();
    let mut interrupted = 0;
    for budget in 0..20 {
        let store = load(&fixture).await;
        let dying = DiesAfter {
            inner: &store,
            budget: Cell::new(budget),
        };
        if layout::open(&dying, Network::Regtest).await.is_err() {
            interrupted += 1;
        }
        layout::open(&store, Network::Regtest)
            .await
            .expect("second open finishes the migration");
        check_migrated(&store, &fixture).await;
    }
    // Three copies, the layout record, three deletions: every one of those points was hit.
    assert_eq!(interrupted, 7);
}

#[tokio::test(flavor = "current_thread")]
async fn damaged_records_give_clear_errors() {
    let fixture = fixture();
    let store = load(&fixture).await;
    let scoped = layout::open(&store, Network::Regtest).await.expect("open");
    let seed = scoped.get("wallet/seed").await.expect("get").expect("seed");

    let err = Wallet::unlock(&scoped, Network::Regtest, "not the password")
        .await
        .err()
        .expect("wrong password refused");
    assert_eq!(err.code(), "wrong_password");
    assert_eq!(err.to_string(), "wrong password");

    let err = Wallet::unlock(&scoped, Network::Signet, &fixture.password)
        .await
        .err()
        .expect("wrong network refused");
    assert_eq!(err.code(), "wrong_network");

    // A flipped ciphertext byte fails authentication: no garbage phrase comes out.
    let mut sealed: serde_json::Value = serde_json::from_slice(&seed).expect("json");
    let ciphertext = sealed["ciphertext"].as_str().expect("hex").to_owned();
    let flipped = if ciphertext.starts_with('0') {
        "1"
    } else {
        "0"
    };
    sealed["ciphertext"] = format!("{flipped}{}", &ciphertext[1..]).into();
    scoped
        .put("wallet/seed", serde_json::to_vec(&sealed).expect("json"))
        .await
        .expect("put");
    let err = Wallet::unlock(&scoped, Network::Regtest, &fixture.password)
        .await
        .err()
        .expect("tampered seed refused");
    assert_eq!(err.code(), "wrong_password", "{err}");

    // A record cut short (a torn write) is reported as corrupt, naming the record.
    scoped
        .put("wallet/seed", seed[..seed.len() / 2].to_vec())
        .await
        .expect("put");
    let err = Wallet::unlock(&scoped, Network::Regtest, &fixture.password)
        .await
        .err()
        .expect("truncated seed refused");
    assert_eq!(err.code(), "corrupt");
    assert!(err.to_string().contains("seed"), "{err}");

    scoped.put("wallet/seed", seed).await.expect("put");
    let bdk = scoped.get("wallet/bdk").await.expect("get").expect("bdk");
    scoped
        .put("wallet/bdk", bdk[..bdk.len() - 3].to_vec())
        .await
        .expect("put");
    let err = Wallet::unlock(&scoped, Network::Regtest, &fixture.password)
        .await
        .err()
        .expect("truncated wallet data refused");
    assert_eq!(err.code(), "corrupt");
    assert!(err.to_string().contains("wallet data"), "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_forgotten_password_is_reset_with_the_wallets_own_phrase_only() {
    let fixture = fixture();
    let store = load(&fixture).await;
    let scoped = layout::open(&store, Network::Regtest).await.expect("open");
    let before = store.keys("").await.expect("keys");
    let seed = scoped.get("wallet/seed").await.expect("get");

    let other = trickle_wallet::new_phrase().expect("phrase");
    let err = Wallet::reset_password(&scoped, Network::Regtest, &other, "new password")
        .await
        .err()
        .expect("another wallet's phrase refused");
    assert_eq!(err.code(), "bad_phrase");
    assert!(err.to_string().contains("not the stored wallet's"), "{err}");
    assert_eq!(scoped.get("wallet/seed").await.expect("get"), seed);

    let mut wallet =
        Wallet::reset_password(&scoped, Network::Regtest, &fixture.phrase, "new password")
            .await
            .expect("reset with the wallet's phrase");
    assert_eq!(
        wallet.receive_address().await.expect("address").to_string(),
        fixture.first_address
    );
    assert_eq!(store.keys("").await.expect("keys"), before);
    let err = Wallet::unlock(&scoped, Network::Regtest, &fixture.password)
        .await
        .err()
        .expect("old password no longer opens it");
    assert_eq!(err.code(), "wrong_password");
    Wallet::unlock(&scoped, Network::Regtest, "new password")
        .await
        .expect("new password opens it");
}
