//! A BDK wallet syncs against the node through `bdk_esplora`, receives from
//! the faucet, and spends.

use bdk_esplora::esplora_client;
use bdk_esplora::EsploraAsyncExt;
use bdk_wallet::{KeychainKind, SignOptions, Wallet};
use bitcoin::bip32::Xpriv;
use bitcoin::{Amount, FeeRate, Network};
use serde_json::{json, Value};
use trickle_regtest::{Config, Node};

const STOP_GAP: usize = 10;
const PARALLEL_REQUESTS: usize = 2;

async fn sync(wallet: &mut Wallet, client: &esplora_client::AsyncClient) {
    let request = wallet.start_sync_with_revealed_spks().build();
    let update = client.sync(request, PARALLEL_REQUESTS).await.expect("sync");
    wallet.apply_update(update).expect("update applies");
}

#[tokio::test]
async fn bdk_wallet_receives_and_spends() {
    let node = Node::start(Config::default()).await.unwrap();
    let xprv = Xpriv::new_master(Network::Regtest, &[42; 32]).unwrap();
    let mut wallet = Wallet::create(
        format!("wpkh({xprv}/84'/1'/0'/0/*)"),
        format!("wpkh({xprv}/84'/1'/0'/1/*)"),
    )
    .network(Network::Regtest)
    .create_wallet_no_persist()
    .unwrap();
    let client = esplora_client::Builder::new(node.url())
        .build_async()
        .unwrap();

    let update = client
        .full_scan(
            wallet.start_full_scan().build(),
            STOP_GAP,
            PARALLEL_REQUESTS,
        )
        .await
        .unwrap();
    wallet.apply_update(update).unwrap();
    assert_eq!(wallet.latest_checkpoint().height(), 101);
    assert_eq!(wallet.balance().total(), Amount::ZERO);

    // Faucet payment, first unconfirmed.
    let address = wallet.reveal_next_address(KeychainKind::External).address;
    let response = reqwest::Client::new()
        .post(format!("{}/regtest/faucet", node.url()))
        .body(
            json!({ "address": address.to_string(), "amount_sat": 1_000_000, "mine": false })
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let funding_txid = body["txid"].as_str().unwrap().to_owned();

    sync(&mut wallet, &client).await;
    let balance = wallet.balance();
    assert_eq!(balance.untrusted_pending, Amount::from_sat(1_000_000));
    assert_eq!(balance.confirmed, Amount::ZERO);

    node.mine(1).await.unwrap();
    sync(&mut wallet, &client).await;
    let balance = wallet.balance();
    assert_eq!(balance.confirmed, Amount::from_sat(1_000_000));
    assert_eq!(wallet.latest_checkpoint().height(), 102);
    let funding = wallet
        .transactions()
        .find(|t| t.tx_node.txid.to_string() == funding_txid)
        .expect("wallet knows the funding transaction");
    assert!(funding.chain_position.is_confirmed());

    // Spend to the faucet and confirm.
    let mut builder = wallet.build_tx();
    builder
        .add_recipient(
            node.faucet_address().script_pubkey(),
            Amount::from_sat(300_000),
        )
        .fee_rate(FeeRate::from_sat_per_vb(2).unwrap());
    let mut psbt = builder.finish().unwrap();
    psbt.sign(&xprv, wallet.secp_ctx()).expect("inputs signed");
    assert!(wallet
        .finalize_psbt(&mut psbt, SignOptions::default())
        .unwrap());
    let tx = psbt.extract_tx().unwrap();
    client.broadcast(&tx).await.unwrap();
    let fee = wallet.calculate_fee(&tx).unwrap();

    sync(&mut wallet, &client).await;
    assert_eq!(
        wallet.balance().trusted_pending,
        Amount::from_sat(700_000) - fee
    );

    node.mine(1).await.unwrap();
    sync(&mut wallet, &client).await;
    assert_eq!(wallet.balance().confirmed, Amount::from_sat(700_000) - fee);
    let status = client.get_tx_status(&tx.compute_txid()).await.unwrap();
    assert_eq!(status.block_height, Some(103));
}
