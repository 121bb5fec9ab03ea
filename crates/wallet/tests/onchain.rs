//! The wallet against a local chain validated by Bitcoin Core's kernel: create, fund, sync,
//! withdraw; restore from the phrase; the sealed secret and wrong passwords.

use std::time::{SystemTime, UNIX_EPOCH};

use bdk_esplora::esplora_client::{AsyncClient, Builder};
use bitcoin::{Amount, FeeRate, Network};
use trickle_regtest::{Config, Node};
use trickle_wallet::store::{FileStore, MemoryStore, Store};
use trickle_wallet::vault::VaultError;
use trickle_wallet::{Wallet, WalletError};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn esplora(node: &Node) -> AsyncClient {
    Builder::new(node.url()).build_async().expect("client")
}

#[tokio::test(flavor = "current_thread")]
async fn create_fund_sync_withdraw_and_restore() {
    let node = Node::start(Config::default()).await.expect("node");
    let client = esplora(&node);
    let (mut wallet, phrase) = Wallet::create(MemoryStore::default(), Network::Regtest, "pw")
        .await
        .expect("created");
    assert_eq!(phrase.split(' ').count(), 12);
    let address = wallet.receive_address().await.expect("address");

    // Unconfirmed first, then confirmed.
    node.send(&address, Amount::from_sat(250_000))
        .expect("sent");
    wallet.sync(&client, now()).await.expect("sync");
    assert_eq!(wallet.balance().pending, Amount::from_sat(250_000));
    assert_eq!(wallet.balance().confirmed, Amount::ZERO);
    node.mine(1).await.expect("mined");
    wallet.sync(&client, now()).await.expect("sync");
    assert_eq!(wallet.balance().confirmed, Amount::from_sat(250_000));

    // Withdraw to the chain's faucet address; the kernel-validated chain accepts and mines it.
    let tx = wallet
        .send(
            &client,
            &node.faucet_address(),
            Amount::from_sat(100_000),
            FeeRate::from_sat_per_vb_u32(2),
            now(),
        )
        .await
        .expect("withdrawn");
    node.mine(1).await.expect("mined");
    assert!(node.confirmation_height(&tx.compute_txid()).is_some());
    wallet.sync(&client, now()).await.expect("sync");
    let left = wallet.balance().confirmed;
    assert!(
        left < Amount::from_sat(150_000) && left > Amount::from_sat(149_000),
        "{left}"
    );

    // The phrase restores the same funds into a new store.
    let mut restored = Wallet::restore(MemoryStore::default(), Network::Regtest, &phrase, "other")
        .await
        .expect("restored");
    restored.sync(&client, now()).await.expect("sync");
    assert_eq!(restored.balance().confirmed, left);
    assert_eq!(
        restored.export_phrase("other").await.expect("export"),
        phrase
    );
}

#[tokio::test(flavor = "current_thread")]
async fn unlock_needs_the_password_and_the_right_network() {
    let dir = std::env::temp_dir().join(format!("trickle-wallet-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = || FileStore::open(&dir).expect("store");
    let (mut wallet, phrase) = Wallet::create(store(), Network::Regtest, "secret")
        .await
        .expect("created");
    let address = wallet.receive_address().await.expect("address");
    // The phrase is not stored in the clear anywhere.
    for key in store().keys("").await.expect("keys") {
        let bytes = store().get(&key).await.expect("get").expect("value");
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&phrase), "{key} holds the phrase");
    }
    assert!(matches!(
        Wallet::unlock(store(), Network::Regtest, "wrong").await,
        Err(WalletError::Vault(VaultError::WrongPassword))
    ));
    assert!(matches!(
        Wallet::unlock(store(), Network::Bitcoin, "secret").await,
        Err(WalletError::WrongNetwork { .. })
    ));
    assert!(matches!(
        Wallet::restore(store(), Network::Regtest, &phrase, "secret").await,
        Err(WalletError::AlreadyExists)
    ));
    let mut again = Wallet::unlock(store(), Network::Regtest, "secret")
        .await
        .expect("unlocked");
    // The unused address shown before is still the one to show (its reveal was stored).
    assert_eq!(again.receive_address().await.expect("address"), address);
    assert!(matches!(
        Wallet::unlock(
            FileStore::open(dir.join("empty")).expect("store"),
            Network::Regtest,
            "x"
        )
        .await,
        Err(WalletError::NotFound)
    ));
    assert!(matches!(
        Wallet::restore(
            MemoryStore::default(),
            Network::Regtest,
            "not a phrase",
            "x"
        )
        .await,
        Err(WalletError::BadPhrase(_))
    ));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
