//! On a real regtest chain (blocks validated by libbitcoinkernel, Esplora API): the payee's
//! contract broadcasts are accepted, its settlements are accepted and confirm, and a contract
//! double-spent before it confirms serves nothing.
#![allow(clippy::unwrap_used)] // tests may panic on what cannot happen

mod common;

use std::sync::Arc;

use bitcoin::{Amount, EcdsaSighashType, OutPoint, TxOut, Txid, Witness};
use common::process::coin;
use common::{
    fetch, get_text, key, p2wpkh, serve_site, start_payee_with, Client, Coin, CLIENT_PAYOUT,
};
use trickle_channel::{
    ClientVersion, Close, Contract, Funding, PayeeState, ProvideRefund, Version, WireMessage,
};
use trickle_payee::chain::{Chain, ChainError, Esplora, Spend};
use trickle_payee::store::{ChannelStore, SqliteStore};
use trickle_payee::Payee;
use trickle_regtest::{Config, Node};

struct Setup {
    node: Node,
    payee: Payee,
    url: String,
    wallet: Coin,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    setup_with(common::payee_config(), |esplora| Arc::new(esplora)).await
}

/// A payee of `config` on a fresh chain, which it reaches through `chain` (given the chain's
/// Esplora API).
async fn setup_with(
    config: trickle_payee::PayeeConfig,
    chain: impl FnOnce(Esplora) -> Arc<dyn Chain>,
) -> Setup {
    let node = Node::start(Config::default()).await.unwrap();
    let wallet = coin(&node, Amount::from_sat(1_000_000)).await;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ChannelStore> = Arc::new(
        SqliteStore::open(dir.path().join("payee.sqlite3"))
            .await
            .unwrap(),
    );
    let payee = start_payee_with(config, store, chain(Esplora::new(node.url()).unwrap())).await;
    let url = serve_site(&payee).await;
    Setup {
        node,
        payee,
        url,
        wallet,
        dir,
    }
}

async fn open_and_pay(s: &Setup, version: Version) -> Client {
    let endpoint = format!("{}{}", s.url, trickle_payee::DEFAULT_ENDPOINT_PATH);
    let mut client = Client::open_funded(&endpoint, version, s.payee.tip(), &s.wallet).await;
    let contract = client.txid();
    assert!(
        s.node.in_mempool(&contract),
        "the payee broadcast the contract"
    );
    s.node.mine(1).await.unwrap();
    assert!(s.node.confirmation_height(&contract).is_some());

    let article = format!("{}/articles/1", s.url);
    let offer = fetch(&article, None).await.required.unwrap();
    let update = client.sign(Amount::from_sat(2_000));
    let paid = fetch(&article, Some(&client.header(&offer, Some(&update), true))).await;
    assert_eq!((paid.status, paid.consumed()), (200, 10));
    client
}

async fn assert_closed_by(s: &Setup, contract: Txid, settlement: Txid) {
    assert!(
        s.node.in_mempool(&settlement),
        "the settlement is valid and standard"
    );
    s.node.mine(1).await.unwrap();
    assert!(s.node.confirmation_height(&settlement).is_some());
    s.payee.chain_duties().await.unwrap();
    let stored = s.payee.store().channel(&contract).await.unwrap().unwrap();
    assert!(
        matches!(stored.state, PayeeState::Closed { spent_by, .. } if spent_by == settlement),
        "closed by the settlement, is {}",
        stored.state.name()
    );
}

#[tokio::test]
async fn v2_channel_opens_pays_and_settles_on_chain() {
    let s = setup().await;
    let client = open_and_pay(&s, Version::V2).await;
    let contract = client.txid();
    let close = WireMessage::Close(Close { settlement: None });
    let answer = client.post(&format!("/session/{contract}"), &close).await;
    let [WireMessage::Close(Close {
        settlement: Some(settlement),
    })] = answer.messages.as_slice()
    else {
        panic!("CLOSE with the settlement: {answer:?}")
    };
    assert_closed_by(&s, contract, settlement.compute_txid()).await;
}

#[tokio::test]
async fn v1_channel_is_closed_by_the_payee_before_expiry() {
    let s = setup().await;
    let client = open_and_pay(&s, Version::V1).await;
    let contract = client.txid();
    let expiry = common::stored_expiry(&s.payee, contract).await;
    let margin = common::policy().close_margin_blocks;
    // One block short of the margin: still open.
    let height = s.node.height();
    s.node.mine(expiry - margin - height - 1).await.unwrap();
    s.payee.chain_duties().await.unwrap();
    let stored = s.payee.store().channel(&contract).await.unwrap().unwrap();
    assert!(matches!(stored.state, PayeeState::Ready { .. }));
    s.node.mine(1).await.unwrap();
    s.payee.chain_duties().await.unwrap();
    let stored = s.payee.store().channel(&contract).await.unwrap().unwrap();
    let PayeeState::Closing { settlement, .. } = &stored.state else {
        panic!("closing at the margin, is {}", stored.state.name())
    };
    assert_closed_by(&s, contract, settlement.compute_txid()).await;
}

/// Security review C2: a second v1 session asks the server to sign a refund, with an earlier
/// lock time, for the outpoint of a channel that is already open. Whatever the server signs
/// must not spend that channel: a v1 server key is bound to its channel's expiry.
#[tokio::test]
async fn a_second_v1_session_cannot_refund_an_open_channel() {
    let s = setup().await;
    let client = open_and_pay(&s, Version::V1).await;
    let channel = client.payer.committed_channel().unwrap().funding.clone();

    // Session B: the shortest channel life the payee offers, so the earliest refund.
    let hello = WireMessage::ClientVersion(ClientVersion {
        major: 1,
        minor: 0,
        time_window_blocks: 0,
        previous_contract: None,
    });
    let answer = client.post("/open", &hello).await;
    assert_eq!(answer.status, 200);
    let Some(WireMessage::Initiate(initiate)) = answer.messages.get(1) else {
        panic!("INITIATE: {answer:?}")
    };
    let session = answer.session.clone().unwrap();
    assert!(initiate.expiry.to_consensus_u32() < channel.contract.expiry.to_consensus_u32());

    // A refund of channel A's outpoint, locked at session B's expiry.
    let early = Funding {
        contract: Contract {
            expiry: initiate.expiry,
            ..channel.contract.clone()
        },
        outpoint: channel.outpoint,
    };
    let refund_script = p2wpkh(&key(CLIENT_PAYOUT));
    let mut refund = early
        .refund(refund_script, Amount::from_sat(1_000))
        .unwrap();
    let provide = WireMessage::ProvideRefund(ProvideRefund {
        client_key: channel.contract.client_key,
        channel_value: channel.contract.value,
        refund: refund.clone(),
    });
    let answer = client.post(&format!("/session/{session}"), &provide).await;
    let server_sig = match answer.messages.as_slice() {
        [WireMessage::ReturnRefund(r)] => r.signature,
        // Refusing outright is as good.
        _ => return assert!(answer.status >= 400, "{answer:?}"),
    };

    // Complete it as the attacker would, for channel A's script, once it is final.
    let client_sig = early
        .sign(&refund, EcdsaSighashType::All, &key(common::CLIENT))
        .unwrap();
    let script = channel.contract.witness_script();
    refund.input[0].witness = Witness::from_slice(&[
        &[][..],
        &client_sig.serialize(),
        &server_sig.serialize(),
        script.as_bytes(),
    ]);
    let height = s.node.height();
    s.node
        .mine(initiate.expiry.to_consensus_u32() - height)
        .await
        .unwrap();
    let refused = s.node.broadcast(&refund).unwrap_err().to_string();
    assert!(refused.contains("script-verify-flag-failed"), "{refused}");
    let block = s.node.build_block(vec![refund.clone()]);
    let refused = s.node.submit_block(&block).unwrap_err().to_string();
    assert!(refused.contains("script-verify-flag-failed"), "{refused}");
    assert!(
        s.node.utxo(&channel.outpoint).is_some(),
        "channel A is still open"
    );
}

/// A client opens a channel, then mines a transaction spending the contract's coin elsewhere
/// before the contract confirms. The unconfirmed channel is not served beyond its allowance,
/// and once the chain duties see the conflict it is closed and serves nothing at all.
#[tokio::test]
async fn a_double_spent_contract_serves_nothing() {
    let s = setup().await;
    let endpoint = format!("{}{}", s.url, trickle_payee::DEFAULT_ENDPOINT_PATH);
    let mut client = Client::open_funded(&endpoint, Version::V2, s.payee.tip(), &s.wallet).await;
    let contract = client.txid();
    assert!(s.node.in_mempool(&contract));

    let conflict = s.wallet.fund(TxOut {
        value: Amount::from_sat(500_000),
        script_pubkey: p2wpkh(&key(CLIENT_PAYOUT)),
    });
    let block = s.node.build_block(vec![conflict.clone()]);
    s.node.submit_block(&block).unwrap();
    assert!(s
        .node
        .confirmation_height(&conflict.compute_txid())
        .is_some());
    assert!(
        !s.node.in_mempool(&contract),
        "the contract can never confirm"
    );

    let consumed = || async {
        let stored = s.payee.store().channel(&contract).await.unwrap().unwrap();
        stored.ledger.consumed
    };
    // A valid payment on the dead contract, beyond the unconfirmed allowance: not served.
    let big = format!("{}/big", s.url);
    let offer = fetch(&big, None).await.required.unwrap();
    let update = client.sign(Amount::from_sat(5_000));
    let paid = fetch(&big, Some(&client.header(&offer, Some(&update), true))).await;
    assert_eq!(
        (paid.status, paid.reason().as_deref()),
        (503, Some(trickle_payee::CONTRACT_UNCONFIRMED))
    );
    assert_eq!(consumed().await, Amount::ZERO);

    // The chain duties see the contract's coin spent elsewhere: the channel is closed.
    s.payee.chain_duties().await.unwrap();
    let stored = s.payee.store().channel(&contract).await.unwrap().unwrap();
    assert!(
        matches!(stored.state, PayeeState::Closed { spent_by, .. } if spent_by == conflict.compute_txid()),
        "closed by the conflict, is {}",
        stored.state.name()
    );
    // Not even a page within the allowance is served now.
    let article = format!("{}/articles/1", s.url);
    let offer = fetch(&article, None).await.required.unwrap();
    let update = client.sign(Amount::from_sat(10));
    let paid = fetch(&article, Some(&client.header(&offer, Some(&update), true))).await;
    assert_eq!(
        (paid.status, paid.reason().as_deref()),
        (402, Some("channel_closed"))
    );
    assert_eq!(consumed().await, Amount::ZERO);
}

/// Issue: closes that confirm in any fee market. The payee closes at the margin at the quiet
/// rate; then fees spike and its settlement drops out of the mempool. Block by block it
/// replaces the settlement at the new estimate, rising as the expiry nears, and it confirms
/// before the client's refund is valid, paying the payee what the receipts say less its fee.
#[tokio::test]
async fn a_settlement_under_a_fee_spike_is_replaced_and_confirms_before_expiry() {
    let s = setup().await;
    let mut client = open_and_pay(&s, Version::V2).await;
    let contract = client.txid();
    // Enough paid for the payee's share to cover a high fee.
    let article = format!("{}/articles/2", s.url);
    let offer = fetch(&article, None).await.required.unwrap();
    let update = client.sign(Amount::from_sat(20_000));
    let paid = fetch(&article, Some(&client.header(&offer, Some(&update), true))).await;
    assert_eq!(paid.status, 200);
    let stored = s.payee.store().channel(&contract).await.unwrap().unwrap();
    let channel = stored.state.channel().unwrap().clone();
    let expiry = channel.funding.contract.expiry.to_consensus_u32();
    let value = channel.funding.contract.value;
    let margin = common::policy().close_margin_blocks;
    let fee = |tx: &bitcoin::Transaction| value - tx.output.iter().map(|o| o.value).sum::<Amount>();

    s.node
        .mine(expiry - margin - s.node.height())
        .await
        .unwrap();
    s.payee.chain_duties().await.unwrap();
    let stored = s.payee.store().channel(&contract).await.unwrap().unwrap();
    let PayeeState::Closing {
        settlement: quiet, ..
    } = stored.state
    else {
        panic!("closing at the margin, is {}", stored.state.name())
    };
    assert!(s.node.in_mempool(&quiet.compute_txid()));

    // Blocks now go at 40 sat/vB, and the mempool takes nothing under 10: the quiet settlement
    // is evicted and would never confirm.
    assert!(s.node.set_fee_market(10, 40) >= 1);
    assert!(!s.node.in_mempool(&quiet.compute_txid()));
    // At the margin the close has just begun: not yet at risk.
    let status = operator_status(&s.url).await;
    assert_eq!(status["closesAtRisk"], 0, "{status}");
    let mut risk_seen = Vec::new();
    let settled = loop {
        s.node.mine(1).await.unwrap();
        assert!(
            s.node.height() < expiry,
            "the settlement did not confirm before the expiry"
        );
        s.payee.chain_duties().await.unwrap();
        let stored = s.payee.store().channel(&contract).await.unwrap().unwrap();
        if let PayeeState::Closed { spent_by, .. } = stored.state {
            break spent_by;
        }
        // Past the margin and not in a block: /status and /metrics say so, with the rate
        // of the settlement last broadcast.
        let status = operator_status(&s.url).await;
        if let Some(rate) = status["channels"][0]["closeAtRiskFeeRate"].as_u64() {
            assert_eq!(status["closesAtRisk"], 1, "{status}");
            risk_seen.push(rate);
        }
    };
    assert!(!risk_seen.is_empty(), "the close was shown at risk");
    assert!(
        risk_seen.windows(2).all(|w| w[0] <= w[1]),
        "its fee rate rose: {risk_seen:?}"
    );
    let metrics = get_text(&format!("{}/metrics", s.url)).await;
    // Once the settlement is in a block, no close is at risk.
    assert!(
        metrics.contains("trickle_payee_closes_at_risk 0"),
        "{metrics}"
    );
    assert_eq!(operator_status(&s.url).await["closesAtRisk"], 0);
    let tx = s.node.transaction(&settled).unwrap();
    let height = s.node.confirmation_height(&settled).unwrap();
    // It followed the fee market: it confirmed before its last resort (the whole share).
    let last_resort = expiry - trickle_channel::LAST_RESORT_BLOCKS as u32;
    assert!(
        height < last_resort,
        "confirmed at {height}, last resort from {last_resort}"
    );
    assert_ne!(settled, quiet.compute_txid(), "a replacement confirmed");
    let rate = fee(&tx).to_sat() / tx.vsize() as u64;
    assert!(rate >= 40, "pays the going rate: {rate} sat/vB");
    // The client gets its change; the payee what it was paid, less the fee it chose.
    let paid = channel.paid();
    let client_change = tx.output[0].value;
    assert_eq!(client_change, value - paid);
    assert_eq!(tx.output[1].value + fee(&tx), paid);
    println!(
        "settlement fee: quiet {} sat ({} sat/vB), under the spike {} sat ({rate} sat/vB)",
        fee(&quiet).to_sat(),
        fee(&quiet).to_sat() / quiet.vsize() as u64,
        fee(&tx).to_sat()
    );
}

/// Issue 20: a settlement is final only `final_confirmations` deep. Mined, then taken out of the
/// chain by a reorganisation (back to the mempool, or forgotten by the network, as when the
/// node restarts), it is rebroadcast from the stored channel and confirms again; the channel is
/// recorded closed only once its settlement is that deep.
#[tokio::test]
async fn a_settlement_reorganised_out_is_rebroadcast_and_closes_only_at_depth() {
    for forget in [false, true] {
        let s = setup_with(
            trickle_payee::PayeeConfig {
                final_confirmations: 3,
                ..common::payee_config()
            },
            |esplora| Arc::new(esplora),
        )
        .await;
        let client = open_and_pay(&s, Version::V2).await;
        let contract = client.txid();
        let close = WireMessage::Close(Close { settlement: None });
        let answer = client.post(&format!("/session/{contract}"), &close).await;
        let [WireMessage::Close(Close {
            settlement: Some(settlement),
        })] = answer.messages.as_slice()
        else {
            panic!("CLOSE with the settlement: {answer:?}")
        };
        let settlement = settlement.compute_txid();
        let state = || async {
            s.payee.chain_duties().await.unwrap();
            let stored = s.payee.store().channel(&contract).await.unwrap().unwrap();
            stored.state
        };
        s.node.mine(2).await.unwrap();
        assert!(s.node.confirmation_height(&settlement).is_some());
        assert!(
            matches!(state().await, PayeeState::Closing { .. }),
            "{forget}: two blocks deep is not final"
        );

        // Both blocks replaced by a heavier branch without the settlement.
        let forgotten = if forget { vec![settlement] } else { vec![] };
        s.node.reorg(2, forgotten).await.unwrap();
        assert!(s.node.confirmation_height(&settlement).is_none());
        assert_eq!(s.node.in_mempool(&settlement), !forget);
        let PayeeState::Closing {
            settlement: kept, ..
        } = state().await
        else {
            panic!("{forget}: still closing after the reorganisation")
        };
        assert_eq!(kept.compute_txid(), settlement, "the stored settlement");
        assert!(
            s.node.in_mempool(&settlement),
            "{forget}: the payee rebroadcast it"
        );

        s.node.mine(1).await.unwrap();
        assert!(s.node.confirmation_height(&settlement).is_some());
        for deep in [1, 2] {
            assert!(
                matches!(state().await, PayeeState::Closing { .. }),
                "{forget}: {deep} deep is not final"
            );
            s.node.mine(1).await.unwrap();
        }
        assert!(
            matches!(state().await, PayeeState::Closed { spent_by, .. } if spent_by == settlement),
            "{forget}: closed three deep"
        );
    }
}

/// A contract taken out of the chain by a reorganisation, and forgotten by the network, is
/// no longer counted confirmed: the payee rebroadcasts it, and serves the channel beyond its
/// unconfirmed allowance only once it is in a block again.
#[tokio::test]
async fn a_contract_reorganised_out_is_rebroadcast_and_counted_unconfirmed() {
    let s = setup_with(
        trickle_payee::PayeeConfig {
            final_confirmations: 3,
            ..common::payee_config()
        },
        |esplora| Arc::new(esplora),
    )
    .await;
    let mut client = open_and_pay(&s, Version::V2).await;
    let contract = client.txid();
    s.payee.chain_duties().await.unwrap();
    s.node.reorg(1, vec![contract]).await.unwrap();
    assert!(!s.node.in_mempool(&contract) && s.node.confirmation_height(&contract).is_none());
    s.payee.chain_duties().await.unwrap();
    assert!(
        s.node.in_mempool(&contract),
        "the payee rebroadcast the contract"
    );

    // Beyond the allowance: deferred while the contract is out of the chain.
    let big = format!("{}/big", s.url);
    let offer = fetch(&big, None).await.required.unwrap();
    let update = client.sign(Amount::from_sat(5_000));
    let header = client.header(&offer, Some(&update), true);
    let deferred = fetch(&big, Some(&header)).await;
    assert_eq!(
        (deferred.status, deferred.reason().as_deref()),
        (503, Some(trickle_payee::CONTRACT_UNCONFIRMED))
    );
    s.node.mine(1).await.unwrap();
    s.payee.chain_duties().await.unwrap();
    let paid = fetch(&big, Some(&header)).await;
    assert_eq!(paid.status, 200);
}

/// The chain through which a payee is "killed": once `cut` is set, a broadcast never returns,
/// and the duties waiting on it are dropped, as a process killed before the transaction left.
struct CutOff {
    chain: Esplora,
    cut: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait::async_trait]
impl Chain for CutOff {
    async fn tip(&self) -> Result<trickle_channel::ChainTip, ChainError> {
        self.chain.tip().await
    }
    async fn broadcast(&self, tx: &bitcoin::Transaction) -> Result<(), ChainError> {
        if self.cut.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.chain.broadcast(tx).await
    }
    async fn confirmation_height(&self, txid: &Txid) -> Result<Option<u32>, ChainError> {
        self.chain.confirmation_height(txid).await
    }
    async fn spend_of(&self, outpoint: &OutPoint) -> Result<Option<Spend>, ChainError> {
        self.chain.spend_of(outpoint).await
    }
    async fn fee_estimate(&self, target: u32) -> Result<Option<bitcoin::FeeRate>, ChainError> {
        self.chain.fee_estimate(target).await
    }
}

/// Issue 20: a replacement of the settlement is crash-safe. Fees spike after the payee closed at
/// the quiet rate; its duties store a replacement and are killed before it is broadcast. The
/// payee restarted on the same database broadcasts the stored replacement, which confirms.
#[tokio::test]
async fn a_payee_killed_before_broadcasting_a_stored_replacement_broadcasts_it_on_restart() {
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = setup_with(common::payee_config(), {
        let cut = Arc::clone(&cut);
        move |chain| Arc::new(CutOff { chain, cut })
    })
    .await;
    let mut client = open_and_pay(&s, Version::V2).await;
    let contract = client.txid();
    let article = format!("{}/articles/2", s.url);
    let offer = fetch(&article, None).await.required.unwrap();
    let update = client.sign(Amount::from_sat(20_000));
    let paid = fetch(&article, Some(&client.header(&offer, Some(&update), true))).await;
    assert_eq!(paid.status, 200);
    let settlement_of =
        |stored: Option<trickle_payee::store::StoredChannel>| match stored.unwrap().state {
            PayeeState::Closing { settlement, .. } => settlement,
            other => panic!("closing, is {}", other.name()),
        };
    let expiry = common::stored_expiry(&s.payee, contract).await;
    let margin = common::policy().close_margin_blocks;
    s.node
        .mine(expiry - margin - s.node.height())
        .await
        .unwrap();
    s.payee.chain_duties().await.unwrap();
    let quiet = settlement_of(s.payee.store().channel(&contract).await.unwrap());
    assert!(s.node.in_mempool(&quiet.compute_txid()));

    // The spike evicts the quiet settlement; the next block's duties replace it, and are
    // killed in the broadcast.
    assert!(s.node.set_fee_market(10, 40) >= 1);
    s.node.mine(1).await.unwrap();
    cut.store(true, std::sync::atomic::Ordering::SeqCst);
    let killed =
        tokio::time::timeout(std::time::Duration::from_secs(20), s.payee.chain_duties()).await;
    assert!(killed.is_err(), "the duties were cut off in a broadcast");
    let replacement = settlement_of(s.payee.store().channel(&contract).await.unwrap());
    assert_ne!(
        replacement.compute_txid(),
        quiet.compute_txid(),
        "the replacement was stored first"
    );
    assert!(
        !s.node.in_mempool(&replacement.compute_txid()),
        "and never left"
    );

    // Restarted on the same database, with the chain reachable again.
    let store = SqliteStore::open(s.dir.path().join("payee.sqlite3"))
        .await
        .unwrap();
    let restarted = start_payee_with(
        common::payee_config(),
        Arc::new(store),
        Arc::new(Esplora::new(s.node.url()).unwrap()),
    )
    .await;
    restarted.chain_duties().await.unwrap();
    let sent = settlement_of(restarted.store().channel(&contract).await.unwrap());
    assert_ne!(sent.compute_txid(), quiet.compute_txid());
    assert!(
        s.node.in_mempool(&sent.compute_txid()),
        "the restarted payee broadcast the stored settlement"
    );
    s.node.mine(1).await.unwrap();
    restarted.chain_duties().await.unwrap();
    let stored = restarted.store().channel(&contract).await.unwrap().unwrap();
    assert!(
        matches!(stored.state, PayeeState::Closed { spent_by, .. } if spent_by == sent.compute_txid()),
        "closed by it, is {}",
        stored.state.name()
    );
    assert!(s.node.height() < expiry, "before the expiry");
}

/// The payee's `/status`, as JSON.
async fn operator_status(url: &str) -> serde_json::Value {
    serde_json::from_str(&get_text(&format!("{url}/status")).await).unwrap()
}
