//! Key derivation against published vectors: BIP84's own test vector for the wallet's
//! descriptors, and the channel keys' path derived independently with rust-bitcoin's BIP32.

use bitcoin::bip32::{DerivationPath, Xpriv};
use bitcoin::secp256k1::SECP256K1;
use bitcoin::{Address, Network};
use trickle_wallet::store::MemoryStore;
use trickle_wallet::Wallet;

const PHRASE: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

#[tokio::test(flavor = "current_thread")]
async fn bip84_test_vector() {
    let store = MemoryStore::default();
    let mut wallet = Wallet::restore(&store, Network::Bitcoin, PHRASE, "password")
        .await
        .expect("restore");
    // BIP84, "Test vectors": m/84'/0'/0'/0/0 and m/84'/0'/0'/1/0.
    assert_eq!(
        wallet.receive_address().await.expect("address").to_string(),
        "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    );
    let change = wallet.fresh_script().await.expect("change");
    assert_eq!(
        Address::from_script(&change, Network::Bitcoin)
            .expect("address")
            .to_string(),
        "bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn channel_keys_follow_their_path_and_are_never_reused() {
    let store = MemoryStore::default();
    let mut wallet = Wallet::restore(&store, Network::Regtest, PHRASE, "password")
        .await
        .expect("restore");
    let seed = bip39_seed(PHRASE);
    let master = Xpriv::new_master(Network::Regtest, &seed).expect("master");
    for expected_index in 0..3 {
        let (index, key) = wallet.next_channel_key().await.expect("key");
        assert_eq!(index, expected_index);
        let path: DerivationPath = format!("m/1017'/1'/{index}'").parse().expect("path");
        let derived = master.derive_priv(SECP256K1, &path).expect("derive");
        assert_eq!(key, derived.private_key);
    }
    // The counter is stored: a reopened wallet hands out the next index, not a used one.
    drop(wallet);
    let mut reopened = Wallet::unlock(&store, Network::Regtest, "password")
        .await
        .expect("unlock");
    assert_eq!(reopened.next_channel_key().await.expect("key").0, 3);
}

/// BIP39 seed (PBKDF2-HMAC-SHA512, 2048 rounds, empty passphrase) through BDK's bip39.
fn bip39_seed(phrase: &str) -> [u8; 64] {
    bdk_wallet::keys::bip39::Mnemonic::parse(phrase)
        .expect("phrase")
        .to_seed("")
}
