//! Trickle's channel transactions on a chain whose blocks Bitcoin Core's kernel validates:
//! contracts confirm, settlements confirm, and a refund is refused by the mempool and by the
//! kernel until its lock time has passed, then confirms.

mod common;

use bitcoin::absolute::LockTime;
use bitcoin::{Amount, FeeRate, Transaction, TxOut};
use common::{fund_script, start, Key};
use trickle_channel::{ChainTip, CloseFee, Contract, Funding, Version};
use trickle_regtest::Node;

const VALUE: Amount = Amount::from_sat(100_000);

/// Funds a contract of `version` expiring at `expiry` and confirms it.
async fn open(node: &Node, version: Version, expiry: LockTime) -> (Funding, Key, Key) {
    let (client, server, wallet) = (Key::new(11), Key::new(12), Key::new(13));
    let (coin, coin_out) = fund_script(node, &wallet.script(), Amount::from_sat(1_000_000)).await;
    let contract = Contract {
        version,
        client_key: client.public.0,
        server_key: server.public.0,
        expiry,
        value: VALUE,
    };
    let mut tx = common::spend(coin, contract.script_pubkey(), VALUE);
    tx.output.push(TxOut {
        value: coin_out.value - VALUE - Amount::from_sat(500),
        script_pubkey: wallet.script(),
    });
    wallet.sign_p2wpkh(&mut tx, 0, coin_out.value);
    let funding = Funding::locate(contract, &tx).expect("contract output");
    node.broadcast(&tx).expect("contract accepted");
    node.mine(1).await.expect("mined");
    assert!(node.confirmation_height(&tx.compute_txid()).is_some());
    (funding, client, server)
}

fn tip(node: &Node) -> ChainTip {
    ChainTip {
        height: node.height(),
        median_time_past: node.median_time_past(),
    }
}

fn refund(funding: &Funding, client: &Key, server: &Key) -> Transaction {
    let script = client.script();
    let fee = funding.refund_fee(script.clone(), FeeRate::from_sat_per_vb_u32(2));
    let server_sig = match funding.contract.version {
        Version::V1 => {
            let unsigned = funding
                .refund(script.clone(), Amount::ZERO)
                .expect("refund");
            Some(
                funding
                    .sign_refund_v1(&unsigned, &server.secret)
                    .expect("server signs"),
            )
        }
        Version::V2 => None,
    };
    funding
        .signed_refund(script, fee, server_sig.as_ref(), &client.secret)
        .expect("client signs")
}

#[tokio::test]
async fn cooperative_close_confirms_for_both_versions() {
    let node = start().await;
    for version in [Version::V1, Version::V2] {
        let expiry = LockTime::from_consensus(node.height() + 50);
        let (funding, client, server) = open(&node, version, expiry).await;
        let payout = client.script();
        let mut best = None;
        for paid in [1_000u64, 2_500, 40_000] {
            best = Some(
                funding
                    .sign_payment(&payout, VALUE - Amount::from_sat(paid), &client.secret)
                    .expect("payment"),
            );
        }
        let best = best.expect("paid");
        funding
            .verify_payment(&payout, &best)
            .expect("server verifies");
        let settlement = funding
            .close(
                &payout,
                &best,
                server.script(),
                CloseFee::Rate(FeeRate::from_sat_per_vb_u32(2)),
                &server.secret,
            )
            .expect("settlement");
        node.broadcast(&settlement)
            .unwrap_or_else(|e| panic!("{version:?} settlement refused: {e}"));
        node.mine(1).await.expect("mined");
        assert!(node
            .confirmation_height(&settlement.compute_txid())
            .is_some());
        assert_eq!(settlement.output[0].value, VALUE - Amount::from_sat(40_000));
    }
}

#[tokio::test]
async fn refund_is_refused_until_its_lock_time_then_confirms() {
    let node = start().await;
    for version in [Version::V1, Version::V2] {
        let expiry = LockTime::from_consensus(node.height() + 5);
        let (funding, client, server) = open(&node, version, expiry).await;
        let refund = refund(&funding, &client, &server);
        assert!(!tip(&node).is_final(expiry));

        // Mempool: not final for the next block.
        let err = node.broadcast(&refund).expect_err("refund before expiry");
        assert!(err.to_string().contains("non-final"), "{version:?}: {err}");
        // Kernel: a block holding it is invalid and is not kept.
        let height = node.height();
        let block = node.build_block(vec![refund.clone()]);
        let err = node
            .submit_block(&block)
            .expect_err("block with early refund");
        assert!(
            err.to_string().contains("bad-txns-nonfinal"),
            "{version:?}: {err}"
        );
        assert_eq!(node.height(), height);

        // Exactly when our own finality rule says so, the chain agrees.
        while !tip(&node).is_final(expiry) {
            assert!(node.broadcast(&refund).is_err());
            node.mine(1).await.expect("mined");
        }
        node.broadcast(&refund)
            .unwrap_or_else(|e| panic!("{version:?} refund after expiry refused: {e}"));
        node.mine(1).await.expect("mined");
        assert!(node.confirmation_height(&refund.compute_txid()).is_some());
    }
}
