//! Chain duties against a recording chain: close at the margin before expiry, rebroadcast until
//! confirmed, mark a channel closed once its contract is spent on chain, and serve an
//! unconfirmed channel no further than its allowance.
#![allow(clippy::unwrap_used)] // tests may panic on what cannot happen

mod common;

use std::sync::Arc;

use bitcoin::Amount;
use common::{fetch, get_text, Client, Server};
use trickle_channel::{PayeeState, Version};
use trickle_payee::chain::Spend;
use trickle_payee::store::MemoryStore;

#[tokio::test]
async fn channels_close_before_expiry_and_are_closed_when_spent() {
    let server = Server::start(Arc::new(MemoryStore::new())).await;
    let mut client = Client::open(&server.endpoint(), Version::V2, 80).await;
    let txid = client.txid();
    let update = client.sign(Amount::from_sat(500));
    let a = client
        .post(
            &format!("/session/{txid}"),
            &trickle_channel::WireMessage::UpdatePayment(update),
        )
        .await;
    assert_eq!(a.status, 200);

    // Unconfirmed contract: rebroadcast every round; confirmed: left alone.
    server.payee.chain_duties().await.unwrap();
    assert_eq!(server.chain.broadcast_txids(), vec![txid, txid]);
    server.chain.confirm(txid);
    server.payee.chain_duties().await.unwrap();
    assert_eq!(server.chain.broadcast_txids(), vec![txid, txid]);

    // Expiry at 1000 + 144; close margin 12: at 1132 the server closes on its own.
    let expiry = common::stored_expiry(&server.payee, txid).await;
    assert_eq!(expiry, 1_144);
    server.chain.set_height(1_131);
    server.payee.chain_duties().await.unwrap();
    assert!(matches!(
        server
            .payee
            .store()
            .channel(&txid)
            .await
            .unwrap()
            .unwrap()
            .state,
        PayeeState::Ready { .. }
    ));
    server.chain.set_height(1_132);
    server.payee.chain_duties().await.unwrap();
    let stored = server.payee.store().channel(&txid).await.unwrap().unwrap();
    let PayeeState::Closing { settlement, .. } = &stored.state else {
        panic!("closing, is {}", stored.state.name())
    };
    let settlement_txid = settlement.compute_txid();
    assert_eq!(
        server.chain.broadcast_txids().last(),
        Some(&settlement_txid)
    );
    // The settlement pays the server what it was paid, less the close fee.
    let payout = common::policy().payout_script;
    let ours = settlement
        .output
        .iter()
        .find(|o| o.script_pubkey == payout)
        .unwrap();
    assert!(ours.value < Amount::from_sat(1_500) && ours.value > Amount::from_sat(1_000));

    // Rebroadcast while unconfirmed; a spend only in the mempool changes nothing.
    let outpoint = stored.state.channel().unwrap().funding.outpoint;
    server.chain.spends.lock().unwrap().insert(
        outpoint,
        Spend {
            tx: settlement.clone(),
            height: None,
        },
    );
    server.payee.chain_duties().await.unwrap();
    let n = server
        .chain
        .broadcast_txids()
        .iter()
        .filter(|t| **t == settlement_txid)
        .count();
    assert_eq!(n, 2);
    server.chain.spends.lock().unwrap().insert(
        outpoint,
        Spend {
            tx: settlement.clone(),
            height: Some(1_132),
        },
    );
    server.payee.chain_duties().await.unwrap();
    let stored = server.payee.store().channel(&txid).await.unwrap().unwrap();
    assert!(
        matches!(stored.state, PayeeState::Closed { spent_by, .. } if spent_by == settlement_txid)
    );
    let before = server.chain.broadcast_txids().len();
    server.payee.chain_duties().await.unwrap();
    assert_eq!(
        server.chain.broadcast_txids().len(),
        before,
        "a closed channel is left alone"
    );
    assert_eq!(
        common::session_status(&server, txid).await["state"],
        "closed"
    );
}

#[tokio::test]
async fn operator_view_lists_channels_and_metrics() {
    let server = Server::start(Arc::new(MemoryStore::new())).await;
    let client = Client::open(&server.endpoint(), Version::V1, 81).await;
    let status: serde_json::Value =
        serde_json::from_str(&get_text(&format!("{}/status", server.url)).await).unwrap();
    assert_eq!(status["openChannels"], 1);
    assert_eq!(status["totalPaid"], 1_000);
    assert_eq!(status["channels"][0]["channel"], client.txid().to_string());
    assert_eq!(status["channels"][0]["version"], 1);
    let html = get_text(&format!("{}/status.html", server.url)).await;
    assert!(html.contains(&client.txid().to_string()));
    let metrics = get_text(&format!("{}/metrics", server.url)).await;
    assert!(
        metrics.contains("trickle_payee_channels_opened_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("trickle_payee_channels{state=\"ready\"} 1"),
        "{metrics}"
    );
}

/// Until its contract confirms, a channel consumes at most `unconfirmed_credit` (the policy's
/// `min_payment` by default); a payment beyond it is answered 503 and its increment kept as
/// credit, and the same payment is served once the chain duties have seen the contract in a
/// block.
#[tokio::test]
async fn an_unconfirmed_contract_is_served_up_to_its_allowance() {
    let server = Server::start(Arc::new(MemoryStore::new())).await;
    assert_eq!(
        server.payee.config().unconfirmed_credit,
        common::policy().min_payment
    );
    let mut client = Client::open(&server.endpoint(), Version::V2, 82).await;
    let txid = client.txid();
    let article = format!("{}/articles/1", server.url);
    let offer = fetch(&article, None).await.required.unwrap();
    let paid = fetch(&article, Some(&client.header(&offer, None, true))).await;
    assert_eq!((paid.status, paid.consumed()), (200, 10));

    let big = format!("{}/big", server.url);
    let offer = fetch(&big, None).await.required.unwrap();
    let update = client.sign(Amount::from_sat(4_010));
    let header = client.header(&offer, Some(&update), true);
    let deferred = fetch(&big, Some(&header)).await;
    assert_eq!(
        (deferred.status, deferred.reason().as_deref()),
        (503, Some(trickle_payee::CONTRACT_UNCONFIRMED))
    );
    let stored = server.payee.store().channel(&txid).await.unwrap().unwrap();
    assert_eq!(
        (stored.ledger.consumed, stored.ledger.credit()),
        (Amount::from_sat(10), Amount::from_sat(5_000))
    );

    // In a block: served at once, before the duties look (the payee asks the chain itself
    // when the allowance is reached, as after a restart).
    server.chain.confirm(txid);
    let paid = fetch(&big, Some(&header)).await;
    assert_eq!(
        (paid.status, paid.consumed(), paid.credit()),
        (200, 5_000, 0)
    );
    let stored = server.payee.store().channel(&txid).await.unwrap().unwrap();
    assert_eq!(stored.ledger.consumed, Amount::from_sat(5_010));
}
