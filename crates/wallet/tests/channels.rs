//! The channel client's bookkeeping against an in-process payee (the channel core's payee state
//! machine behind the endpoint's JSON), on a local chain: every signed payment is stored before
//! it leaves, once; receipts wait for the next write; a payment prepared ahead is
//! sent by the next request; a crash that loses a receipt or strands a prepared payment costs
//! no money and charges nothing twice.

mod common;

use bdk_esplora::esplora_client::{AsyncClient, Builder};
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, FeeRate, Network};
use common::{now, Counted, Payee, PRICE, SITE};
use trickle_channel::http::Resource;
use trickle_channel::{ChainTip, PayerState};
use trickle_channel::{Close, WireMessage};
use trickle_regtest::{Config, Node};
use trickle_wallet::store::WriteBatch;
use trickle_wallet::{ChannelLimits, OpenParams, Transport, Wallet, PREPAID_REQUESTS};

const PASSWORD: &str = "pw";

fn page(n: u32) -> Resource {
    Resource {
        url: format!("https://{SITE}/articles/{n}"),
        description: String::new(),
        mime_type: String::new(),
    }
}

/// A funded wallet over `store` with a channel open to `payee` (its first payment, 1,000 sat,
/// is credit), whose credit is then used up so that every further page needs a signature.
/// The receipt of that page is pending (see `common::pay`).
async fn open(
    node: &Node,
    store: Counted,
) -> (Wallet<Counted>, Payee, AsyncClient, ChainTip, WriteBatch) {
    let client = Builder::new(node.url()).build_async().expect("client");
    let (mut wallet, _) = Wallet::create(store, Network::Regtest, PASSWORD)
        .await
        .expect("wallet");
    let address = wallet.receive_address().await.expect("address");
    node.fund(&address, Amount::from_sat(200_000))
        .await
        .expect("funded");
    wallet.sync(&client, now()).await.expect("synced");
    let tip = Wallet::<Counted>::tip(&client).await.expect("tip");
    let payee = Payee::new(tip);
    let offer = payee.offer();
    wallet
        .open_channel(
            &payee,
            &client,
            OpenParams {
                site: SITE,
                offer: &offer,
                value: Amount::from_sat(50_000),
                first_payment: offer.extra.min_payment,
                limits: &ChannelLimits::default(),
                fee_rate: FeeRate::from_sat_per_vb_u32(2),
                now: now(),
            },
        )
        .await
        .expect("channel opened");
    let key = payee.public_key();
    let mut pending = WriteBatch::new();
    let header = common::pay(&wallet, &mut pending, SITE, &offer, &page(0), None, tip)
        .await
        .expect("paid");
    let receipt = payee.charge(&header, Amount::from_sat(1_000));
    common::apply_receipt(&wallet, &mut pending, SITE, &key, &receipt, tip)
        .await
        .expect("receipt");
    let record = wallet
        .channel_in(&pending, SITE, &key)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(
        (record.credit, record.available()),
        (Amount::ZERO, Amount::ZERO)
    );
    (wallet, payee, client, tip, pending)
}

fn paid(record: &trickle_wallet::ChannelRecord) -> Amount {
    record.state.state.committed_channel().expect("open").paid()
}

#[tokio::test(flavor = "current_thread")]
async fn one_write_per_signed_payment_none_per_receipt_and_nothing_charged_twice() {
    let node = Node::start(Config::default()).await.expect("node");
    let store = Counted::default();
    let (wallet, payee, _client, tip, mut pending) = open(&node, store.clone()).await;
    let key = payee.public_key();
    let before = payee.ledger();

    // Requests one after the other, each preparing the next payment while it is "in flight".
    let (writes, reads) = (store.channel_writes(), store.channel_reads());
    for n in 1..=20 {
        let header = common::pre_arm(&wallet, &mut pending, SITE, &key, &page(n), tip)
            .await
            .expect("pre-armed")
            .expect("a channel");
        // The first request signs for itself (one write); every later one was prepared.
        if n < 20 {
            common::prepare_next(&wallet, &mut pending, SITE, &key, tip)
                .await
                .expect("prepared");
        }
        let receipt = payee.charge(&header, PRICE);
        assert!(receipt.success, "page {n}: {receipt:?}");
        common::apply_receipt(&wallet, &mut pending, SITE, &key, &receipt, tip)
            .await
            .expect("receipt");
    }
    // Page 1 signs for itself; the payment prepared meanwhile pays PREPAID_REQUESTS pages
    // ahead, and so does the one prepared when that credit runs low (at page 11).
    assert_eq!(PREPAID_REQUESTS, 10, "the counts below assume 10");
    assert_eq!(
        store.channel_writes() - writes,
        3,
        "one write per signed payment, none for the 20 receipts"
    );
    assert_eq!(
        store.channel_reads(),
        reads,
        "the wallet reads the channel it wrote from memory"
    );
    let ledger = payee.ledger();
    assert_eq!(
        ledger.consumed - before.consumed,
        PRICE * 20,
        "20 pages, 20 charges"
    );
    assert_eq!(ledger.paid - before.paid, PRICE * 21, "three payments");
    assert_eq!(ledger.credit(), PRICE, "one page paid ahead is left over");
    // The last receipt is in memory until the run ends.
    let unflushed = Wallet::unlock(store.clone(), Network::Regtest, PASSWORD)
        .await
        .expect("unlocked")
        .channel(SITE, &key)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(
        paid(&unflushed),
        ledger.paid,
        "every signed payment is stored"
    );
    common::flush(&wallet, &mut pending).await.expect("flushed");
    assert_eq!(store.channel_writes() - writes, 4);
    let record = Wallet::unlock(store.clone(), Network::Regtest, PASSWORD)
        .await
        .expect("unlocked")
        .channel(SITE, &key)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(
        (paid(&record), record.credit),
        (ledger.paid, ledger.credit())
    );
    let PayerState::Ready { channel } = &record.state.state else {
        panic!("open channel")
    };
    assert_eq!(
        channel.acknowledged, ledger.paid,
        "the payee acknowledged all of it"
    );
}

/// The next page's pre-armed header, read back from the store of `wallet`.
async fn pre_arm(
    wallet: &Wallet<Counted>,
    pending: &mut WriteBatch,
    key: &PublicKey,
    n: u32,
    tip: ChainTip,
) -> String {
    common::pre_arm(wallet, pending, SITE, key, &page(n), tip)
        .await
        .expect("pre-armed")
        .expect("a channel")
}

#[tokio::test(flavor = "current_thread")]
async fn a_prepared_payment_stranded_by_a_crash_goes_with_the_next_request() {
    let node = Node::start(Config::default()).await.expect("node");
    let store = Counted::default();
    let (wallet, payee, _client, tip, mut pending) = open(&node, store.clone()).await;
    let key = payee.public_key();
    let before = payee.ledger();

    // Page 1 is paid and served and the next payment is prepared; then the client crashes
    // before its receipt is stored and before the prepared payment is sent.
    let header = pre_arm(&wallet, &mut pending, &key, 1, tip).await;
    common::prepare_next(&wallet, &mut pending, SITE, &key, tip)
        .await
        .expect("prepared");
    let receipt = payee.charge(&header, PRICE);
    assert!(receipt.success);
    common::apply_receipt(&wallet, &mut pending, SITE, &key, &receipt, tip)
        .await
        .expect("receipt");
    drop(wallet);
    // What was not stored is gone with the process.
    pending = WriteBatch::new();

    // The stored state is the last one signed: the prepared payment, which the payee never got.
    let wallet = Wallet::unlock(store.clone(), Network::Regtest, PASSWORD)
        .await
        .expect("unlocked");
    let record = wallet
        .channel_in(&pending, SITE, &key)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(
        paid(&record),
        payee.ledger().paid + PRICE * PREPAID_REQUESTS
    );
    // The next request sends it as it is: no new signature, no write.
    let writes = store.channel_writes();
    let header = pre_arm(&wallet, &mut pending, &key, 2, tip).await;
    assert_eq!(store.channel_writes(), writes);
    let receipt = payee.charge(&header, PRICE);
    assert!(receipt.success, "{receipt:?}");
    common::apply_receipt(&wallet, &mut pending, SITE, &key, &receipt, tip)
        .await
        .expect("receipt");
    common::flush(&wallet, &mut pending).await.expect("flushed");
    let ledger = payee.ledger();
    assert_eq!(
        ledger.consumed - before.consumed,
        PRICE * 2,
        "two pages, two charges"
    );
    assert_eq!(
        ledger.paid - before.paid,
        PRICE * (1 + PREPAID_REQUESTS),
        "the first page's payment and the prepared one, no more"
    );
    let record = wallet
        .channel_in(&pending, SITE, &key)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(
        (paid(&record), record.credit),
        (ledger.paid, ledger.credit())
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_late_receipt_changes_nothing() {
    let node = Node::start(Config::default()).await.expect("node");
    let (wallet, payee, _client, tip, mut pending) = open(&node, Counted::default()).await;
    let key = payee.public_key();
    let agrees = |record: &trickle_wallet::ChannelRecord| {
        let ledger = payee.ledger();
        let ours = record.state.state.committed_channel().expect("open");
        (ours.acknowledged, record.credit) == (ledger.paid, ledger.credit())
    };
    // A free page leaves the pre-armed increment as credit; the next page uses it up.
    let header = pre_arm(&wallet, &mut pending, &key, 1, tip).await;
    let first = payee.charge(&header, Amount::ZERO);
    assert_eq!(first.receipt.as_ref().map(|r| r.credit), Some(PRICE));
    common::apply_receipt(&wallet, &mut pending, SITE, &key, &first, tip)
        .await
        .expect("first");
    // Page 2 uses the credit: the same total as the first receipt, less credit. Page 3 adds
    // an increment: a higher total. After each, the first receipt comes again, late.
    for n in 2..=3 {
        let header = pre_arm(&wallet, &mut pending, &key, n, tip).await;
        let receipt = payee.charge(&header, PRICE);
        assert!(receipt.success, "page {n}: {receipt:?}");
        common::apply_receipt(&wallet, &mut pending, SITE, &key, &receipt, tip)
            .await
            .expect("receipt");
        common::apply_receipt(&wallet, &mut pending, SITE, &key, &first, tip)
            .await
            .expect("late");
        let record = wallet
            .channel_in(&pending, SITE, &key)
            .await
            .expect("read")
            .expect("record");
        assert!(
            agrees(&record),
            "page {n}: {record:?} against {:?}",
            payee.ledger()
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_receipt_lost_in_a_crash_is_corrected_by_the_payee_and_costs_nothing() {
    let node = Node::start(Config::default()).await.expect("node");
    let store = Counted::default();
    let (wallet, payee, _client, tip, mut pending) = open(&node, store.clone()).await;
    let key = payee.public_key();
    let before = payee.ledger();

    // A free page takes a pre-armed increment: 10 sat of credit, stored at the end of the run.
    let header = pre_arm(&wallet, &mut pending, &key, 1, tip).await;
    let receipt = payee.charge(&header, Amount::ZERO);
    assert_eq!(receipt.receipt.as_ref().map(|r| r.credit), Some(PRICE));
    common::apply_receipt(&wallet, &mut pending, SITE, &key, &receipt, tip)
        .await
        .expect("receipt");
    common::flush(&wallet, &mut pending).await.expect("flushed");
    // A priced page is paid from that credit; the client crashes before storing the receipt.
    let header = pre_arm(&wallet, &mut pending, &key, 2, tip).await;
    let receipt = payee.charge(&header, PRICE);
    assert!(receipt.success);
    common::apply_receipt(&wallet, &mut pending, SITE, &key, &receipt, tip)
        .await
        .expect("receipt");
    drop(wallet);
    // What was not stored is gone with the process.
    pending = WriteBatch::new();

    // After the restart the client counts on the credit page 2 used: the payee refuses the
    // next page with its account of the channel, and the client pays the difference, once.
    let wallet = Wallet::unlock(store.clone(), Network::Regtest, PASSWORD)
        .await
        .expect("unlocked");
    let header = pre_arm(&wallet, &mut pending, &key, 3, tip).await;
    let refused = payee.charge(&header, PRICE);
    assert!(!refused.success);
    common::apply_receipt(&wallet, &mut pending, SITE, &key, &refused, tip)
        .await
        .expect("refusal applied");
    let header = common::pay(
        &wallet,
        &mut pending,
        SITE,
        &payee.offer(),
        &page(3),
        None,
        tip,
    )
    .await
    .expect("paid");
    let receipt = payee.charge(&header, PRICE);
    assert!(receipt.success, "{receipt:?}");
    common::apply_receipt(&wallet, &mut pending, SITE, &key, &receipt, tip)
        .await
        .expect("receipt");
    common::flush(&wallet, &mut pending).await.expect("flushed");

    let ledger = payee.ledger();
    assert_eq!(
        ledger.consumed - before.consumed,
        PRICE * 2,
        "two priced pages, two charges"
    );
    assert_eq!(ledger.paid - before.paid, PRICE * 2, "and no more paid");
    assert_eq!(ledger.credit(), Amount::ZERO);
    let record = wallet
        .channel_in(&pending, SITE, &key)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(
        (paid(&record), record.credit),
        (ledger.paid, ledger.credit())
    );
}

/// The payee's endpoint, except that the settlement in its `CLOSE` carries a zeroed server
/// signature (the one under `SIGHASH_ALL`; the client's payment is `SINGLE|ANYONECANPAY`).
struct ZeroedSettlement<'a>(&'a Payee);

impl Transport for ZeroedSettlement<'_> {
    async fn post_json(&self, url: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        let (status, body) = self.0.post_json(url, body).await?;
        let mut answer: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        for m in answer["messages"].as_array_mut().ok_or("messages")? {
            let msg = WireMessage::from_base64url(m.as_str().ok_or("message")?)
                .map_err(|e| e.to_string())?;
            if let WireMessage::Close(Close {
                settlement: Some(mut tx),
            }) = msg
            {
                let mut witness: Vec<Vec<u8>> = tx.input[0].witness.to_vec();
                for item in witness
                    .iter_mut()
                    .filter(|i| i.len() > 64 && i.ends_with(&[1]))
                {
                    item.fill(0);
                }
                tx.input[0].witness = bitcoin::Witness::from_slice(&witness);
                let forged = WireMessage::Close(Close {
                    settlement: Some(tx),
                });
                *m = forged.to_base64url().into();
            }
        }
        Ok((status, answer.to_string().into_bytes()))
    }

    async fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String> {
        self.0.get(url).await
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_settlement_never_confirmed_does_not_cancel_the_refund() {
    for forged in [true, false] {
        let node = Node::start(Config::default()).await.expect("node");
        let (mut wallet, payee, client, tip, mut pending) = open(&node, Counted::default()).await;
        let key = payee.public_key();
        // The run that paid ends: its receipt is stored.
        common::flush(&wallet, &mut pending).await.expect("flushed");
        node.mine(1).await.expect("contract confirmed");
        let settlement = if forged {
            // A settlement that no node takes.
            let tx = wallet
                .close_channel(&ZeroedSettlement(&payee), SITE, &key, tip)
                .await
                .expect("close answered");
            assert!(
                node.broadcast(&tx).is_err(),
                "the forged settlement is invalid"
            );
            tx
        } else {
            // A settlement that waits in the mempool, never mined.
            let tx = wallet
                .close_channel(&payee, SITE, &key, tip)
                .await
                .expect("close answered");
            node.broadcast(&tx).expect("settlement relayed");
            tx
        };
        let seen = wallet
            .check_spent_contracts(&client)
            .await
            .expect("checked");
        assert!(seen.is_empty(), "forged {forged}: {seen:?}");

        // Past the expiry, with blocks that do not carry the settlement.
        for _ in 0..145 {
            node.submit_block(&node.build_block(Vec::new()))
                .expect("empty block");
        }
        wallet
            .check_spent_contracts(&client)
            .await
            .expect("checked");
        let broadcast = wallet
            .refund_expired(&client, FeeRate::from_sat_per_vb_u32(2))
            .await;
        let record = wallet
            .channel(SITE, &key)
            .await
            .expect("read")
            .expect("record");
        let PayerState::Refunded { refund, .. } = &record.state.state else {
            panic!("forged {forged}: no refund, {}", record.state.state.name())
        };
        if forged {
            assert_eq!(broadcast.expect("refund broadcast"), vec![refund.clone()]);
            node.mine(1).await.expect("mined");
        } else {
            // The settlement holds the contract in this mempool, which relays no
            // replacements; a miner takes the refund (a full-RBF node would relay it).
            assert!(broadcast.is_err(), "{broadcast:?}");
            node.submit_block(&node.build_block(vec![refund.clone()]))
                .expect("refund mined");
        }
        let status = client
            .get_tx_status(&refund.compute_txid())
            .await
            .expect("status");
        assert!(status.confirmed, "forged {forged}: the refund confirms");
        assert_ne!(refund.compute_txid(), settlement.compute_txid());
        wallet
            .check_spent_contracts(&client)
            .await
            .expect("checked");
        let record = wallet
            .channel(SITE, &key)
            .await
            .expect("read")
            .expect("record");
        assert!(
            matches!(record.state.state, PayerState::Refunded { .. }),
            "forged {forged}: {}",
            record.state.state.name()
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_channel_labelled_by_host_is_relabelled_by_origin_and_still_pays() {
    use trickle_wallet::layout;
    use trickle_wallet::store::{MemoryStore, Store};

    // A layout-2 wallet of the command-line payer: its channel labelled by the site's host.
    let node = Node::start(Config::default()).await.expect("node");
    let store = Counted::default();
    let (wallet, payee, _client, tip, mut pending) = open(&node, store.clone()).await;
    common::flush(&wallet, &mut pending).await.expect("stored");
    drop(wallet);
    let old = MemoryStore::default();
    for key in store.keys("").await.expect("keys") {
        let value = store.get(&key).await.expect("get").expect("value");
        old.put(&format!("regtest/{key}"), value)
            .await
            .expect("put");
    }
    old.put("layout", br#"{"layout":2}"#.to_vec())
        .await
        .expect("put");
    let host_keys = old.keys("regtest/channel/").await.expect("keys");
    assert_eq!(host_keys.len(), 1);

    let scoped = layout::open(&old, Network::Regtest)
        .await
        .expect("migrated");
    assert_eq!(
        layout::layout_of(&old).await.expect("layout"),
        layout::LAYOUT
    );
    let wallet = Wallet::unlock(scoped, Network::Regtest, PASSWORD)
        .await
        .expect("unlocked");
    let records = wallet.channels().await.expect("channels");
    let origin = format!("https://{SITE}");
    assert_eq!(
        records.iter().map(|r| r.site.as_str()).collect::<Vec<_>>(),
        [origin.as_str()],
        "one record, labelled by origin"
    );
    assert_ne!(
        old.keys("regtest/channel/").await.expect("keys"),
        host_keys,
        "stored under the origin's key, the host's gone"
    );
    // The channel pays on, as the site's origin.
    let mut pending = WriteBatch::new();
    let offer = payee.offer();
    let header = common::pay(&wallet, &mut pending, &origin, &offer, &page(1), None, tip)
        .await
        .expect("paid");
    assert!(payee.charge(&header, PRICE).success);
}
