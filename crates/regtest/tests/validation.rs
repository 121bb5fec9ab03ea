//! Consensus and mempool rules, checked both through the mempool and by
//! submitting blocks to the kernel directly.

mod common;

use bitcoin::blockdata::opcodes::all::{
    OP_CHECKMULTISIG, OP_CHECKSIG, OP_CLTV, OP_DROP, OP_PUSHNUM_2,
};
use bitcoin::script::Builder;
use bitcoin::{absolute, Amount, ScriptBuf, Sequence, Witness};
use common::{fund_script, spend, start, Key};
use trickle_regtest::{ChainError, Error, Rejection};

fn rejection(result: Result<bitcoin::Txid, Error>) -> Rejection {
    match result {
        Err(Error::Rejected(rejection)) => rejection,
        other => panic!("expected a mempool rejection, got {other:?}"),
    }
}

fn block_reason(result: Result<(), Error>) -> String {
    match result {
        Err(Error::Chain(ChainError::Rejected(reason))) => reason,
        other => panic!("expected a block rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn coinbase_spend_needs_100_confirmations() {
    let node = start().await;
    let key = Key::new(1);
    node.mine_to(1, key.script()).await.unwrap();
    let coinbase_height = node.height();
    let block = node.tip_hash().unwrap();
    let coinbase = node.block_txids(&block).unwrap()[0];
    let (outpoint, output) = common::find_output(&node, coinbase, &key.script());

    let mut tx = spend(
        outpoint,
        key.script(),
        output.value - Amount::from_sat(1_000),
    );
    key.sign_p2wpkh(&mut tx, 0, output.value);

    // 99 blocks on top: the next block would give the coinbase depth 99.
    node.mine(98).await.unwrap();
    assert_eq!(node.height(), coinbase_height + 98);
    let refused = rejection(node.broadcast(&tx));
    assert_eq!(refused, Rejection::PrematureCoinbaseSpend { depth: 99 });
    assert!(refused
        .to_string()
        .starts_with("bad-txns-premature-spend-of-coinbase"));
    let reason = block_reason(node.submit_block(&node.build_block(vec![tx.clone()])));
    assert!(
        reason.contains("bad-txns-premature-spend-of-coinbase"),
        "{reason}"
    );

    node.mine(1).await.unwrap();
    let txid = node.broadcast(&tx).unwrap();
    node.mine(1).await.unwrap();
    assert_eq!(node.confirmation_height(&txid), Some(node.height()));
}

#[tokio::test]
async fn height_locktime_refused_until_reached() {
    let node = start().await;
    let key = Key::new(2);
    let (outpoint, output) = fund_script(&node, &key.script(), Amount::from_sat(100_000)).await;

    let lock_height = node.height() + 5;
    let mut tx = spend(outpoint, key.script(), Amount::from_sat(99_000));
    tx.lock_time = absolute::LockTime::from_height(lock_height).unwrap();
    tx.input[0].sequence = Sequence::ENABLE_LOCKTIME_NO_RBF;
    key.sign_p2wpkh(&mut tx, 0, output.value);

    assert_eq!(rejection(node.broadcast(&tx)), Rejection::NonFinal);
    let reason = block_reason(node.submit_block(&node.build_block(vec![tx.clone()])));
    assert!(reason.contains("bad-txns-nonfinal"), "{reason}");

    // Final once the next block's height exceeds the lock time.
    node.mine(lock_height - node.height()).await.unwrap();
    assert_eq!(node.height(), lock_height);
    let block = node.build_block(vec![tx.clone()]);
    node.submit_block(&block).unwrap();
    assert_eq!(
        node.confirmation_height(&tx.compute_txid()),
        Some(lock_height + 1)
    );
}

#[tokio::test]
async fn time_locktime_refused_until_median_time_passes() {
    let node = start().await;
    let key = Key::new(3);
    let (outpoint, output) = fund_script(&node, &key.script(), Amount::from_sat(100_000)).await;

    let lock_time = node.median_time_past() + 1_800;
    let mut tx = spend(outpoint, key.script(), Amount::from_sat(99_000));
    tx.lock_time = absolute::LockTime::from_time(lock_time).unwrap();
    tx.input[0].sequence = Sequence::ENABLE_LOCKTIME_NO_RBF;
    key.sign_p2wpkh(&mut tx, 0, output.value);

    assert_eq!(rejection(node.broadcast(&tx)), Rejection::NonFinal);
    let reason = block_reason(node.submit_block(&node.build_block(vec![tx.clone()])));
    assert!(reason.contains("bad-txns-nonfinal"), "{reason}");

    // Median time past follows the last 11 block times.
    node.advance_time(3_600).unwrap();
    node.mine(11).await.unwrap();
    assert!(node.median_time_past() > lock_time);
    let txid = node.broadcast(&tx).unwrap();
    node.mine(1).await.unwrap();
    assert!(node.confirmation_height(&txid).is_some());
}

#[tokio::test]
async fn cltv_p2wsh_spend_waits_for_its_height() {
    let node = start().await;
    let key = Key::new(4);
    let expiry = i64::from(node.height() + 10);
    let witness_script = Builder::new()
        .push_int(expiry)
        .push_opcode(OP_CLTV)
        .push_opcode(OP_DROP)
        .push_key(&key.public.into())
        .push_opcode(OP_CHECKSIG)
        .into_script();
    let script = ScriptBuf::new_p2wsh(&witness_script.wscript_hash());
    let (outpoint, output) = fund_script(&node, &script, Amount::from_sat(200_000)).await;

    let signed = |lock: u32| {
        let mut tx = spend(outpoint, key.script(), Amount::from_sat(199_000));
        tx.lock_time = absolute::LockTime::from_height(lock).unwrap();
        tx.input[0].sequence = Sequence::ENABLE_LOCKTIME_NO_RBF;
        let signature = key.sign_segwit(&tx, 0, &witness_script, output.value);
        tx.input[0].witness = Witness::from_slice(&[signature, witness_script.to_bytes()]);
        tx
    };

    // nLockTime at the expiry: not final yet.
    let at_expiry = signed(expiry as u32);
    assert_eq!(rejection(node.broadcast(&at_expiry)), Rejection::NonFinal);
    let reason = block_reason(node.submit_block(&node.build_block(vec![at_expiry.clone()])));
    assert!(reason.contains("bad-txns-nonfinal"), "{reason}");

    // nLockTime below the expiry: final, but OP_CHECKLOCKTIMEVERIFY fails.
    let early = signed(node.height());
    let refused = rejection(node.broadcast(&early));
    assert_eq!(
        refused.to_string(),
        "mandatory-script-verify-flag-failed (Locktime requirement not satisfied), input 0"
    );
    let reason = block_reason(node.submit_block(&node.build_block(vec![early])));
    assert!(
        reason.contains("script-verify-flag-failed (Locktime requirement not satisfied)"),
        "{reason}"
    );

    node.mine(expiry as u32 - node.height()).await.unwrap();
    let txid = node.broadcast(&at_expiry).unwrap();
    node.mine(1).await.unwrap();
    assert!(node.confirmation_height(&txid).is_some());
}

#[tokio::test]
async fn double_spends_are_refused() {
    let node = start().await;
    let key = Key::new(5);
    let other = Key::new(6);
    let (outpoint, output) = fund_script(&node, &key.script(), Amount::from_sat(100_000)).await;

    let mut first = spend(outpoint, key.script(), Amount::from_sat(99_000));
    key.sign_p2wpkh(&mut first, 0, output.value);
    let mut second = spend(outpoint, other.script(), Amount::from_sat(98_000));
    key.sign_p2wpkh(&mut second, 0, output.value);

    // Both in one block: the kernel refuses the second spend.
    let reason =
        block_reason(node.submit_block(&node.build_block(vec![first.clone(), second.clone()])));
    assert!(
        reason.contains("bad-txns-inputs-missingorspent"),
        "{reason}"
    );

    // In the mempool the second replaces the first (it pays more: full RBF, see fee_market.rs);
    // the first cannot come back, and sending the same transaction again is not an error.
    node.broadcast(&first).unwrap();
    node.broadcast(&second).unwrap();
    assert!(matches!(
        rejection(node.broadcast(&first)),
        Rejection::ReplacementFeeRate { .. }
    ));
    assert_eq!(node.broadcast(&second).unwrap(), second.compute_txid());

    node.mine(1).await.unwrap();
    assert_eq!(rejection(node.broadcast(&first)), Rejection::MissingOrSpent);
    let reason = block_reason(node.submit_block(&node.build_block(vec![first])));
    assert!(
        reason.contains("bad-txns-inputs-missingorspent"),
        "{reason}"
    );
}

#[tokio::test]
async fn tampered_signature_is_refused() {
    let node = start().await;
    let key = Key::new(7);
    let (outpoint, output) = fund_script(&node, &key.script(), Amount::from_sat(100_000)).await;

    let mut tx = spend(outpoint, key.script(), Amount::from_sat(99_000));
    key.sign_p2wpkh(&mut tx, 0, output.value);
    let mut items: Vec<Vec<u8>> = tx.input[0].witness.iter().map(<[u8]>::to_vec).collect();
    // Flip a bit inside the signature's S value; DER stays valid.
    let last_before_hashtype = items[0].len() - 2;
    items[0][last_before_hashtype] ^= 0x01;
    let mut tampered = tx.clone();
    tampered.input[0].witness = Witness::from_slice(&items);

    let refused = rejection(node.broadcast(&tampered));
    assert!(
        refused
            .to_string()
            .starts_with("mandatory-script-verify-flag-failed ("),
        "{refused}"
    );
    let reason = block_reason(node.submit_block(&node.build_block(vec![tampered])));
    assert!(reason.contains("script-verify-flag-failed"), "{reason}");

    // The untampered transaction still goes through.
    node.broadcast(&tx).unwrap();
}

#[tokio::test]
async fn two_of_two_p2wsh_multisig_spend_is_accepted() {
    let node = start().await;
    let (alice, bob) = (Key::new(8), Key::new(9));
    let witness_script = Builder::new()
        .push_opcode(OP_PUSHNUM_2)
        .push_key(&alice.public.into())
        .push_key(&bob.public.into())
        .push_opcode(OP_PUSHNUM_2)
        .push_opcode(OP_CHECKMULTISIG)
        .into_script();
    let script = ScriptBuf::new_p2wsh(&witness_script.wscript_hash());
    let (outpoint, output) = fund_script(&node, &script, Amount::from_sat(500_000)).await;

    let mut tx = spend(outpoint, alice.script(), Amount::from_sat(499_000));
    let sig_alice = alice.sign_segwit(&tx, 0, &witness_script, output.value);
    let sig_bob = bob.sign_segwit(&tx, 0, &witness_script, output.value);

    // Signatures in the wrong order fail CHECKMULTISIG.
    let mut swapped = tx.clone();
    swapped.input[0].witness = Witness::from_slice(&[
        vec![],
        sig_bob.clone(),
        sig_alice.clone(),
        witness_script.to_bytes(),
    ]);
    assert!(matches!(
        rejection(node.broadcast(&swapped)),
        Rejection::Script { .. }
    ));

    tx.input[0].witness =
        Witness::from_slice(&[vec![], sig_alice, sig_bob, witness_script.to_bytes()]);
    // Valid as a block on its own, and through the mempool.
    let block = node.build_block(vec![tx.clone()]);
    node.submit_block(&block).unwrap();
    assert_eq!(node.tip_hash(), Some(block.block_hash()));
    assert!(node.confirmation_height(&tx.compute_txid()).is_some());
}

#[tokio::test]
async fn fee_below_minimum_relay_fee_is_refused() {
    let node = start().await;
    let key = Key::new(10);
    let (outpoint, output) = fund_script(&node, &key.script(), Amount::from_sat(100_000)).await;

    let mut tx = spend(outpoint, key.script(), Amount::from_sat(99_990));
    key.sign_p2wpkh(&mut tx, 0, output.value);
    let refused = rejection(node.broadcast(&tx));
    assert!(
        refused
            .to_string()
            .starts_with("min relay fee not met, 10 < "),
        "{refused}"
    );

    let mut overspend = spend(outpoint, key.script(), Amount::from_sat(100_001));
    key.sign_p2wpkh(&mut overspend, 0, output.value);
    assert!(matches!(
        rejection(node.broadcast(&overspend)),
        Rejection::InBelowOut { .. }
    ));
}

#[tokio::test]
async fn invalid_blocks_are_not_kept() {
    let node = start().await;
    let height = node.height();

    let mut greedy = node.build_block(vec![]);
    greedy.txdata[0].output[0].value += Amount::from_sat(1);
    greedy.header.merkle_root = greedy.compute_merkle_root().unwrap();
    let target = greedy.header.target();
    while !target.is_met_by(greedy.header.block_hash()) {
        greedy.header.nonce += 1;
    }
    let reason = block_reason(node.submit_block(&greedy));
    assert!(reason.contains("bad-cb-amount"), "{reason}");

    let mut bad_pow = node.build_block(vec![]);
    while target.is_met_by(bad_pow.header.block_hash()) {
        bad_pow.header.nonce += 1;
    }
    let reason = block_reason(node.submit_block(&bad_pow));
    assert!(reason.contains("high-hash"), "{reason}");

    assert_eq!(node.height(), height);
    let good = node.build_block(vec![]);
    node.submit_block(&good).unwrap();
    assert!(matches!(
        node.submit_block(&good),
        Err(Error::Chain(ChainError::Duplicate))
    ));
    assert_eq!(node.height(), height + 1);
}

/// A block like the node would mine, but on `parent` at `height`.
fn block_on(node: &trickle_regtest::Node, parent: &bitcoin::Block, height: u32) -> bitcoin::Block {
    let mut block = node.build_block(vec![]);
    block.header.prev_blockhash = parent.block_hash();
    block.header.time = parent.header.time + 1;
    block.txdata[0].input[0].script_sig = Builder::new()
        .push_int(i64::from(height))
        .push_opcode(bitcoin::opcodes::OP_0)
        .into_script();
    block.header.merkle_root = block.compute_merkle_root().expect("block has transactions");
    remine(&mut block);
    block
}

fn remine(block: &mut bitcoin::Block) {
    let target = block.header.target();
    while !target.is_met_by(block.header.block_hash()) {
        block.header.nonce += 1;
    }
}

#[tokio::test]
async fn heavier_side_branch_reorganises_the_chain() {
    let node = start().await;
    let key = Key::new(11);
    let base = node.height();

    // Two competing blocks at the same height.
    let first = node.build_block(vec![]);
    node.submit_block(&first).unwrap();
    let mut rival = first.clone();
    rival.header.time += 1;
    remine(&mut rival);

    // Pay `key` in a block on `first`; the reorganisation must not lose it.
    let txid = node.send(&key.address(), Amount::from_sat(20_000)).unwrap();
    node.mine(1).await.unwrap();
    assert_eq!(node.confirmation_height(&txid), Some(base + 2));

    assert!(matches!(
        node.submit_block(&rival),
        Err(Error::Chain(ChainError::Inconclusive))
    ));
    let next = block_on(&node, &rival, base + 2);
    assert!(matches!(
        node.submit_block(&next),
        Err(Error::Chain(ChainError::Inconclusive))
    ));
    assert_eq!(node.height(), base + 2);

    // A third block makes the rival branch heavier.
    let heavier = block_on(&node, &next, base + 3);
    node.submit_block(&heavier).unwrap();
    assert_eq!(node.height(), base + 3);
    assert_eq!(node.tip_hash(), Some(heavier.block_hash()));
    assert_eq!(node.confirmation_height(&txid), None);
    // As bitcoind does, the disconnected payment is back in the mempool.
    assert!(node.in_mempool(&txid));
    node.mine(1).await.unwrap();
    assert_eq!(node.confirmation_height(&txid), Some(base + 4));
}
