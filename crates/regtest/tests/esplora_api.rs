//! The Esplora API as clients see it: shapes parsed by `esplora-client`,
//! developer controls, and bad requests.

mod common;

use bdk_esplora::esplora_client::{self, AsyncClient};
use bitcoin::hashes::{sha256, Hash};
use bitcoin::{Amount, Txid};
use common::{spend, start, Key};
use serde_json::{json, Value};

fn client(url: &str) -> AsyncClient {
    esplora_client::Builder::new(url)
        .build_async()
        .expect("client builds")
}

async fn post_json(url: &str, body: Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("request sent");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn esplora_client_reads_chain_and_transactions() {
    let node = start().await;
    let esplora = client(node.url());
    let key = Key::new(20);

    assert_eq!(esplora.get_height().await.unwrap(), 101);
    let tip = esplora.get_tip_hash().await.unwrap();
    assert_eq!(esplora.get_block_hash(101).await.unwrap(), tip);
    let header = esplora.get_header_by_hash(&tip).await.unwrap();
    assert_eq!(header.block_hash(), tip);
    let status = esplora.get_block_status(&tip).await.unwrap();
    assert!(status.in_best_chain);
    assert_eq!(status.height, Some(101));
    let blocks = esplora.get_block_infos(None).await.unwrap();
    assert_eq!(blocks.len(), 10);
    assert_eq!(blocks[0].id, tip);
    assert_eq!(blocks[0].height, 101);
    let block = esplora.get_block_by_hash(&tip).await.unwrap().unwrap();
    assert_eq!(block.block_hash(), tip);
    assert_eq!(esplora.get_block_txids(&tip).await.unwrap().len(), 1);
    let coinbase = &esplora.get_block_txs(&tip, None).await.unwrap()[0];
    assert!(coinbase.vin[0].is_coinbase && coinbase.vin[0].prevout.is_none());
    let page = esplora.get_block_infos(Some(50)).await.unwrap();
    assert_eq!(page.first().map(|b| b.height), Some(50));
    assert_eq!(page.len(), 10);
    assert_eq!(
        esplora.get_fee_estimates().await.unwrap().get(&6),
        Some(&1.0)
    );

    // Unconfirmed payment from the faucet, seen by address and by script hash.
    let (status, body) = post_json(
        &format!("{}/regtest/faucet", node.url()),
        json!({ "address": key.address().to_string(), "amount_sat": 50_000, "mine": false }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let txid: Txid = serde_json::from_str::<Value>(&body).unwrap()["txid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(esplora.get_mempool_txids().await.unwrap(), vec![txid]);
    let info = esplora.get_tx_info(&txid).await.unwrap().unwrap();
    assert!(!info.status.confirmed);
    assert!(info.fee > 0);
    assert!(info.vin.iter().all(|vin| vin.prevout.is_some()));
    let txs = esplora.get_address_txs(&key.address(), None).await.unwrap();
    assert_eq!(txs.len(), 1);
    let by_script = esplora.scripthash_txs(&key.script(), None).await.unwrap();
    assert_eq!(by_script[0].txid, txid);
    let utxos = esplora.get_address_utxos(&key.address()).await.unwrap();
    assert_eq!(utxos.len(), 1);
    assert_eq!(utxos[0].value, Amount::from_sat(50_000));
    assert!(!utxos[0].status.confirmed);
    let stats = esplora.get_address_stats(&key.address()).await.unwrap();
    assert_eq!(stats.mempool_stats.funded_txo_sum, 50_000);

    // Confirmed after mining through the control API.
    let (status, body) = post_json(
        &format!("{}/regtest/mine", node.url()),
        json!({ "blocks": 2 }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let status = esplora.get_tx_status(&txid).await.unwrap();
    assert!(status.confirmed);
    assert_eq!(status.block_height, Some(102));
    let proof = esplora.get_merkle_proof(&txid).await.unwrap().unwrap();
    assert_eq!(proof.block_height, 102);
    assert_eq!(proof.pos, 1);
    assert!(esplora.get_merkle_block(&txid).await.unwrap().is_some());
    assert_eq!(
        esplora.get_tx(&txid).await.unwrap().unwrap().compute_txid(),
        txid
    );

    // Spend it and watch the outspend.
    let vout = utxos[0].vout;
    let mut tx = spend(
        bitcoin::OutPoint { txid, vout },
        key.script(),
        Amount::from_sat(49_000),
    );
    key.sign_p2wpkh(&mut tx, 0, Amount::from_sat(50_000));
    esplora.broadcast(&tx).await.unwrap();
    let outspend = esplora
        .get_output_status(&txid, u64::from(vout))
        .await
        .unwrap()
        .unwrap();
    assert!(outspend.spent);
    assert_eq!(outspend.txid, Some(tx.compute_txid()));
    assert_eq!(esplora.get_tx_outspends(&txid).await.unwrap().len(), 2);
    let mempool = esplora.get_mempool_stats().await.unwrap();
    assert_eq!(mempool.count, 1);

    // Refused broadcasts carry bitcoind's reason.
    let err = esplora.broadcast(&tx).await;
    assert!(err.is_ok(), "same transaction again is accepted");
    // A conflict paying less than the transaction it would replace.
    let mut conflict = spend(
        bitcoin::OutPoint { txid, vout },
        key.script(),
        Amount::from_sat(49_500),
    );
    key.sign_p2wpkh(&mut conflict, 0, Amount::from_sat(50_000));
    match esplora.broadcast(&conflict).await {
        Err(esplora_client::Error::HttpResponse { status, message }) => {
            assert_eq!(status, 400);
            assert!(message.contains("insufficient fee"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let scripthash = sha256::Hash::hash(key.script().as_bytes());
    let (status, body) = get(&format!("{}/scripthash/{scripthash}/utxo", node.url())).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn bad_requests_get_4xx_with_a_message() {
    let node = start().await;
    let url = node.url();
    let cases = [
        ("/nope", 404),
        ("/tx/xyz", 400),
        (
            "/tx/0000000000000000000000000000000000000000000000000000000000000000",
            404,
        ),
        ("/tx/00/status", 400),
        ("/block/zz", 400),
        ("/block-height/-1", 400),
        ("/block-height/99999", 404),
        ("/address/notanaddress/utxo", 400),
        (
            "/address/bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq/txs",
            400,
        ),
        ("/scripthash/12/txs", 400),
        (
            "/tx/0000000000000000000000000000000000000000000000000000000000000000/outspend/x",
            400,
        ),
    ];
    for (path, expected) in cases {
        let (status, body) = get(&format!("{url}{path}")).await;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(!body.is_empty(), "{path} has a message");
    }

    let http = reqwest::Client::new();
    let garbage = http
        .post(format!("{url}/tx"))
        .body("zz-not-hex")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status().as_u16(), 400);
    assert!(garbage.text().await.unwrap().contains("TX decode failed"));
    let truncated = http
        .post(format!("{url}/tx"))
        .body("0200000001")
        .send()
        .await
        .unwrap();
    assert_eq!(truncated.status().as_u16(), 400);

    let oversize = http
        .post(format!("{url}/tx"))
        .body("00".repeat(2 * 1024 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(oversize.status().as_u16(), 413);
    assert!(!oversize.text().await.unwrap().is_empty());

    let (status, body) =
        post_json(&format!("{url}/regtest/mine"), json!({ "blocks": "many" })).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post_json(
        &format!("{url}/regtest/faucet"),
        json!({ "address": "nope", "amount_sat": 1 }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post_json(
        &format!("{url}/regtest/time"),
        json!({ "advance_secs": 365 * 24 * 3600 }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let block = http
        .post(format!("{url}/regtest/block"))
        .body("00")
        .send()
        .await
        .unwrap();
    assert_eq!(block.status().as_u16(), 400);

    // Still serving.
    let (status, body) = get(&format!("{url}/blocks/tip/height")).await;
    assert_eq!((status, body.as_str()), (200, "101"));
}

#[tokio::test]
async fn time_control_moves_next_block_time() {
    let node = start().await;
    let (status, body) = get(&format!("{}/regtest/info", node.url())).await;
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["height"], 101);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (status, body) = post_json(
        &format!("{}/regtest/time", node.url()),
        json!({ "advance_secs": 3_000 }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let next = serde_json::from_str::<Value>(&body).unwrap()["next_block_time"]
        .as_u64()
        .unwrap();
    assert!(next >= now + 3_000);
    node.mine(1).await.unwrap();
    let esplora = client(node.url());
    let tip = esplora.get_tip_hash().await.unwrap();
    let block = esplora.get_block_info(&tip).await.unwrap();
    assert!(block.timestamp >= now + 3_000);
}
