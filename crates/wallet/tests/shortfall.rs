//! A transaction the wallet's coins cannot pay for is refused with the amounts, so that no
//! caller reads them out of BDK's message.

use bitcoin::{Amount, FeeRate, Network};
use trickle_wallet::store::MemoryStore;
use trickle_wallet::{Shortfall, Wallet, WalletError};

const PHRASE: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

#[tokio::test(flavor = "current_thread")]
async fn a_send_beyond_the_coins_is_refused_with_what_the_wallet_has_and_needs() {
    let store = MemoryStore::default();
    let mut wallet = Wallet::restore(&store, Network::Regtest, PHRASE, "password")
        .await
        .expect("restore");
    let to = wallet.receive_address().await.expect("address");
    let amount = Amount::from_sat(50_000);
    let refused = wallet
        .preview_send(&to, amount, FeeRate::from_sat_per_vb_u32(2))
        .expect_err("a wallet without coins cannot send");
    assert_eq!(refused.code(), "cannot_fund");
    let Some(Shortfall { available, needed }) = refused.shortfall() else {
        panic!("no shortfall in {refused:?}");
    };
    assert_eq!(available, Amount::ZERO);
    assert!(needed > amount, "the fee is needed too: {needed}");
    assert!(matches!(refused, WalletError::InsufficientFunds(_)));
    assert_eq!(
        refused.to_string(),
        format!(
            "not enough funds: 0 sat available, {} sat needed with the fee",
            needed.to_sat()
        )
    );
}
