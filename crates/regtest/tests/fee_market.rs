//! The local chain's fee market: full-RBF replacement by Bitcoin Core's rules, a mempool
//! minimum fee rate, blocks that take only what pays the going rate (child pays for parent),
//! fee estimates that follow, and reorganisations.

mod common;

use bitcoin::{Amount, OutPoint, Transaction, TxIn};
use common::{find_output, fund_script, spend, start, Key};
use trickle_regtest::{Error, Rejection};

fn rejection(result: Result<bitcoin::Txid, Error>) -> Rejection {
    match result {
        Err(Error::Rejected(rejection)) => rejection,
        other => panic!("expected a mempool rejection, got {other:?}"),
    }
}

/// `tx` spending one more input (unsigned; the caller signs every input).
fn with_input(mut tx: Transaction, outpoint: OutPoint) -> Transaction {
    tx.input.push(TxIn {
        previous_output: outpoint,
        ..tx.input[0].clone()
    });
    tx
}

#[tokio::test]
async fn replacements_follow_bitcoin_cores_rules() {
    let node = start().await;
    let key = Key::new(21);
    let (coin, output) = fund_script(&node, &key.script(), Amount::from_sat(100_000)).await;
    let signed = |value: u64| {
        let mut tx = spend(coin, key.script(), Amount::from_sat(value));
        key.sign_p2wpkh(&mut tx, 0, output.value);
        tx
    };
    // The original pays 1,000 sat (about 9 sat/vB); a child of it pays 5,000 more.
    let first = signed(99_000);
    let first_txid = node.broadcast(&first).unwrap();
    let mut child = spend(
        OutPoint::new(first_txid, 0),
        key.script(),
        Amount::from_sat(94_000),
    );
    key.sign_p2wpkh(&mut child, 0, Amount::from_sat(99_000));
    let child_txid = node.broadcast(&child).unwrap();

    // The same fee rate does not replace.
    let mut same_rate = spend(coin, Key::new(99).script(), Amount::from_sat(99_000));
    key.sign_p2wpkh(&mut same_rate, 0, output.value);
    assert!(matches!(
        rejection(node.broadcast(&same_rate)),
        Rejection::ReplacementFeeRate { .. }
    ));
    // A higher rate that pays less than the original and its child together does not either.
    assert!(matches!(
        rejection(node.broadcast(&signed(98_000))),
        Rejection::ReplacementFee { .. }
    ));
    // Paying exactly what it evicts is not enough: it must add the relay fee for its own size.
    assert!(matches!(
        rejection(node.broadcast(&signed(94_000))),
        Rejection::ReplacementRelayFee { .. }
    ));
    // It may not bring in another unconfirmed coin...
    let other = node.send(&key.address(), Amount::from_sat(20_000)).unwrap();
    let (other_coin, other_output) = find_output(&node, other, &key.script());
    let mut adds = with_input(
        spend(coin, key.script(), Amount::from_sat(100_000)),
        other_coin,
    );
    key.sign_p2wpkh(&mut adds, 0, output.value);
    key.sign_p2wpkh(&mut adds, 1, other_output.value);
    assert_eq!(
        rejection(node.broadcast(&adds)),
        Rejection::ReplacementAddsUnconfirmed
    );
    // ...nor spend what it replaces.
    let mut spends_conflict = with_input(
        spend(coin, key.script(), Amount::from_sat(90_000)),
        OutPoint::new(first_txid, 0),
    );
    key.sign_p2wpkh(&mut spends_conflict, 0, output.value);
    key.sign_p2wpkh(&mut spends_conflict, 1, Amount::from_sat(99_000));
    assert_eq!(
        rejection(node.broadcast(&spends_conflict)),
        Rejection::SpendsConflicting
    );

    // Enough: it evicts the original and its child, and is what gets mined.
    let replacement = signed(93_000);
    let txid = node.broadcast(&replacement).unwrap();
    assert!(node.in_mempool(&txid));
    assert!(!node.in_mempool(&first_txid) && !node.in_mempool(&child_txid));
    node.mine(1).await.unwrap();
    assert!(node.confirmation_height(&txid).is_some());
    assert!(node.confirmation_height(&first_txid).is_none());
}

#[tokio::test]
async fn the_fee_market_sets_what_enters_and_what_is_mined() {
    let node = start().await;
    let key = Key::new(22);
    let (coin, output) = fund_script(&node, &key.script(), Amount::from_sat(100_000)).await;
    let (coin2, output2) = fund_script(&node, &key.script(), Amount::from_sat(100_000)).await;
    let estimate = || async {
        let body = reqwest::get(format!("{}/fee-estimates", node.url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        (json["1"].as_f64().unwrap(), json["144"].as_f64().unwrap())
    };
    assert_eq!(estimate().await, (1.0, 1.0));

    // About 2 sat/vB enters a quiet mempool, and leaves it when the minimum rises to 5.
    let mut low = spend(coin, key.script(), Amount::from_sat(99_780));
    key.sign_p2wpkh(&mut low, 0, output.value);
    let low_txid = node.broadcast(&low).unwrap();
    assert_eq!(node.set_fee_market(5, 0), 1);
    assert!(!node.in_mempool(&low_txid));
    assert!(matches!(
        rejection(node.broadcast(&low)),
        Rejection::MempoolMinFee { .. }
    ));
    assert_eq!(estimate().await, (5.0, 5.0));

    // With blocks going at 20 sat/vB (set over HTTP), 10 sat/vB waits...
    let set = reqwest::Client::new()
        .post(format!("{}/regtest/fees", node.url()))
        .body(r#"{"min_fee_rate": 1, "block_fee_rate": 20}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(estimate().await, (20.0, 20.0));
    let mut waiting = spend(coin, key.script(), Amount::from_sat(98_900));
    key.sign_p2wpkh(&mut waiting, 0, output.value);
    let waiting_txid = node.broadcast(&waiting).unwrap();
    let mut going = spend(coin2, key.script(), Amount::from_sat(97_000));
    key.sign_p2wpkh(&mut going, 0, output2.value);
    let going_txid = node.broadcast(&going).unwrap();
    node.mine(1).await.unwrap();
    assert!(node.confirmation_height(&going_txid).is_some());
    assert!(node.in_mempool(&waiting_txid));
    // ...until a child pays for both.
    let mut child = spend(
        OutPoint::new(waiting_txid, 0),
        key.script(),
        Amount::from_sat(94_000),
    );
    key.sign_p2wpkh(&mut child, 0, Amount::from_sat(98_900));
    let child_txid = node.broadcast(&child).unwrap();
    node.mine(1).await.unwrap();
    assert!(node.confirmation_height(&waiting_txid).is_some());
    assert!(node.confirmation_height(&child_txid).is_some());
}

#[tokio::test]
async fn a_reorg_replaces_blocks_and_returns_their_transactions() {
    let node = start().await;
    let key = Key::new(23);
    let (coin, output) = fund_script(&node, &key.script(), Amount::from_sat(100_000)).await;
    let mut tx = spend(coin, key.script(), Amount::from_sat(99_000));
    key.sign_p2wpkh(&mut tx, 0, output.value);
    let txid = node.broadcast(&tx).unwrap();
    node.mine(1).await.unwrap();
    let height = node.height();
    let mined_in = node.tip_hash();
    assert_eq!(node.confirmation_height(&txid), Some(height));

    // Replacing the block puts the transaction back in the mempool.
    let hashes = node.reorg(1, Vec::new()).await.unwrap();
    assert_eq!(hashes.len(), 2);
    assert_eq!(node.height(), height + 1);
    assert_ne!(node.tip_hash(), mined_in);
    assert!(node.confirmation_height(&txid).is_none());
    assert!(node.in_mempool(&txid));
    node.mine(1).await.unwrap();
    assert_eq!(node.confirmation_height(&txid), Some(height + 2));

    // Over HTTP, two blocks deep, forgetting it: it is gone until sent again.
    let answer = reqwest::Client::new()
        .post(format!("{}/regtest/reorg", node.url()))
        .body(format!(r#"{{"blocks": 2, "forget": ["{txid}"]}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    assert!(node.confirmation_height(&txid).is_none());
    assert!(!node.in_mempool(&txid));
    assert_eq!(node.utxo(&coin), Some(output.clone()));
    node.broadcast(&tx).unwrap();
    node.mine(1).await.unwrap();
    assert!(node.confirmation_height(&txid).is_some());

    // Nothing, or deeper than the chain, is refused.
    assert!(matches!(
        node.reorg(0, Vec::new()).await,
        Err(Error::Reorg { .. })
    ));
    assert!(matches!(
        node.reorg(10_000, Vec::new()).await,
        Err(Error::Reorg { .. })
    ));
}
