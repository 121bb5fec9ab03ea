//! A chain kept in a data directory survives a restart, blocks and UTXOs.

mod common;

use bitcoin::Amount;
use common::{fund_script, spend, Key};
use trickle_regtest::{Config, Node};

#[tokio::test]
async fn datadir_keeps_chain_and_utxos() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        datadir: Some(dir.path().to_path_buf()),
        ..Config::default()
    };
    let key = Key::new(30);

    let node = Node::start(config.clone()).await.unwrap();
    let (outpoint, output) = fund_script(&node, &key.script(), Amount::from_sat(250_000)).await;
    node.mine(3).await.unwrap();
    let height = node.height();
    let tip = node.tip_hash();
    node.shutdown().await.unwrap();

    let node = Node::start(config.clone()).await.unwrap();
    assert_eq!(node.height(), height, "no new initial blocks on restart");
    assert_eq!(node.tip_hash(), tip);
    assert_eq!(node.utxo(&outpoint), Some(output.clone()));

    // The kept UTXO is spendable, and the faucet still has coins.
    let mut tx = spend(outpoint, key.script(), Amount::from_sat(249_000));
    key.sign_p2wpkh(&mut tx, 0, output.value);
    node.broadcast(&tx).unwrap();
    node.fund(&Key::new(31).address(), Amount::from_sat(10_000))
        .await
        .unwrap();
    assert_eq!(node.height(), height + 1);
    assert!(node.confirmation_height(&tx.compute_txid()).is_some());
    node.shutdown().await.unwrap();

    let node = Node::start(config).await.unwrap();
    assert_eq!(node.height(), height + 1);
    assert_eq!(node.utxo(&outpoint), None);
    node.shutdown().await.unwrap();
}
