//! Stored data across versions and faults: a layout-1 wallet written by Trickle 0.1 migrates
//! and unlocks, a migration interrupted at any write finishes on the next open, damaged
//! records give clear errors, and a disk that fills up while paying gives a clear error and
//! lets no signature out, or while opening a channel, locks no coins.

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bitcoin::Network;
use trickle_wallet::layout::{self, LAYOUT};
use trickle_wallet::store::{MemoryStore, Store, StoreError, WriteBatch};
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
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.keys(prefix).await
    }
    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.spend()?;
        self.inner.write(batch).await
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

/// A wallet store on a disk that can fill up: once full, every write fails as a full disk
/// fails (`ENOSPC`) and changes nothing.
#[derive(Clone, Default)]
struct Disk(Rc<(MemoryStore, Cell<Option<usize>>)>);

const ENOSPC: &str = "wallet.sqlite3: No space left on device (os error 28)";

impl Disk {
    fn fill(&self, full: bool) {
        self.0 .1.set(full.then_some(0));
    }

    /// The disk is full after `writes` more writes.
    fn fill_after(&self, writes: usize) {
        self.0 .1.set(Some(writes));
    }

    fn take_space(&self) -> Result<(), StoreError> {
        match self.0 .1.get() {
            Some(0) => Err(StoreError(ENOSPC.into())),
            Some(n) => {
                self.0 .1.set(Some(n - 1));
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl Store for Disk {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0 .0.get(key).await
    }
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.0 .0.keys(prefix).await
    }
    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.take_space()?;
        self.0 .0.write(batch).await
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_disk_while_paying_gives_a_clear_error_and_lets_no_signature_out() {
    use bitcoin::Amount;
    use common::{funded_wallet, open_channel, page, Payee, PASSWORD, PRICE, SITE};
    use trickle_channel::http::PaymentSignature;
    use trickle_regtest::{Config, Node};

    let node = Node::start(Config::default()).await.expect("node");
    let client = bdk_esplora::esplora_client::Builder::new(node.url())
        .build_async()
        .expect("client");
    let disk = Disk::default();
    let (mut wallet, tip) = funded_wallet(&node, &client, disk.clone()).await;
    let payee = Payee::new(tip);
    let key = payee.public_key();
    let offer = payee.offer();

    // Opening a channel on a full disk: refused before anything is signed or sent.
    disk.fill(true);
    let err = open_channel(&mut wallet, &payee, &client, &offer)
        .await
        .expect_err("no channel opened on a full disk");
    assert!(err.to_string().contains(ENOSPC), "{err}");
    assert!(wallet.channels().await.expect("channels").is_empty());
    disk.fill(false);
    open_channel(&mut wallet, &payee, &client, &offer)
        .await
        .expect("channel opened");
    // The first payment's credit is used up: from now on every page needs a signature.
    let mut pending = WriteBatch::new();
    let header = common::pay(&wallet, &mut pending, SITE, &offer, &page(0), None, tip)
        .await
        .expect("paid");
    let receipt = payee.charge(&header, Amount::from_sat(1_000));
    common::apply_receipt(&wallet, &mut pending, SITE, &key, &receipt, tip)
        .await
        .expect("receipt");
    let paid = |record: &trickle_wallet::ChannelRecord| {
        record.state.state.committed_channel().expect("open").paid()
    };
    let before = payee.ledger();

    // The disk fills up. Paying after a 402, pre-armed, or preparing the next payment each
    // fail with the disk's error and return no header: no new signature leaves.
    disk.fill(true);
    let err = common::pay(
        &wallet,
        &mut pending,
        SITE,
        &offer,
        &page(1),
        Some(offer.extra.nonce.clone()),
        tip,
    )
    .await
    .expect_err("no payment on a full disk");
    assert_eq!(
        err.to_string(),
        format!("storage failed: {ENOSPC}"),
        "the disk's own error"
    );
    let err = common::pre_arm(&wallet, &mut pending, SITE, &key, &page(1), tip)
        .await
        .expect_err("no pre-armed payment on a full disk");
    assert!(err.to_string().contains(ENOSPC), "{err}");
    let err = common::prepare_next(&wallet, &mut pending, SITE, &key, tip)
        .await
        .expect_err("nothing prepared on a full disk");
    assert!(err.to_string().contains(ENOSPC), "{err}");
    // The receipt kept in memory cannot be stored either; it stays pending.
    let err = common::flush(&wallet, &mut pending)
        .await
        .expect_err("flush fails");
    assert!(err.to_string().contains(ENOSPC), "{err}");
    let record = wallet
        .channel_in(&pending, SITE, &key)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(
        paid(&record),
        before.paid,
        "nothing signed in memory either"
    );
    assert_eq!(payee.ledger(), before, "the payee got nothing");

    // Space again: the next payment is exactly one price more than the last stored one (the
    // failed attempts left no signature behind to skip or reuse), and the payee takes it.
    disk.fill(false);
    let header = common::pay(
        &wallet,
        &mut pending,
        SITE,
        &offer,
        &page(1),
        Some(offer.extra.nonce.clone()),
        tip,
    )
    .await
    .expect("paid");
    assert_eq!(
        PaymentSignature::from_header(&header)
            .expect("header")
            .payload
            .amount,
        before.paid + PRICE
    );
    let stored = Wallet::unlock(disk.clone(), Network::Regtest, PASSWORD)
        .await
        .expect("unlocked")
        .channel(SITE, &key)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(paid(&stored), before.paid + PRICE, "stored before it left");
    let receipt = payee.charge(&header, PRICE);
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(payee.ledger().paid, before.paid + PRICE);
    assert_eq!(payee.ledger().consumed, before.consumed + PRICE);
    common::apply_receipt(&wallet, &mut pending, SITE, &key, &receipt, tip)
        .await
        .expect("receipt");
    common::flush(&wallet, &mut pending).await.expect("flushed");
}

#[tokio::test(flavor = "current_thread")]
async fn a_disk_filling_up_at_any_write_of_an_opening_locks_no_coins() {
    use bitcoin::Amount;
    use common::{funded_wallet, now, open_channel, Payee, PASSWORD};
    use trickle_regtest::{Config, Node};

    let node = Node::start(Config::default()).await.expect("node");
    let client = bdk_esplora::esplora_client::Builder::new(node.url())
        .build_async()
        .expect("client");
    let disk = Disk::default();
    let (mut wallet, tip) = funded_wallet(&node, &client, disk.clone()).await;
    let mut failures = 0;
    for writes in 0.. {
        let payee = Payee::new(tip);
        disk.fill_after(writes);
        let opened = open_channel(&mut wallet, &payee, &client, &payee.offer()).await;
        disk.fill(false);
        let Err(err) = opened else { break };
        failures += 1;
        assert!(err.to_string().contains(ENOSPC), "write {writes}: {err}");
        // The process ends there; the next one reads what the disk holds.
        wallet = Wallet::unlock(disk.clone(), Network::Regtest, PASSWORD)
            .await
            .expect("unlocked");
        wallet.sync(&client, now()).await.expect("synced");
        let handed_over = wallet
            .channels()
            .await
            .expect("channels")
            .iter()
            .any(|r| r.state.state.committed_channel().is_some());
        if handed_over {
            // The contract went to the payee: its coins are the channel's now.
            break;
        }
        let balance = wallet.balance();
        assert_eq!(
            balance.confirmed + balance.pending,
            Amount::from_sat(200_000),
            "disk full after {writes} writes of an opening: coins locked by a contract that \
             never left the wallet"
        );
    }
    assert!(failures > 2, "the disk filled at {failures} points");
}
