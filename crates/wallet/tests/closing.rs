//! The client's chain duties on a local chain (real Bitcoin Core validation): a channel near
//! its expiry is closed by asking its payee; the refund of a
//! channel the payee never closed goes out at the fee market of the moment and is replaced
//! while the market rises; a channel whose settlement is late is flagged; nothing is final
//! before its confirmations, and what a reorganisation takes out of the chain is broadcast
//! again.

mod common;

use bdk_esplora::esplora_client::AsyncClient;
use bitcoin::{Amount, FeeRate, Transaction};
use common::{open, Counted, SITE};
use trickle_channel::{PayerContext, PayerState};
use trickle_regtest::{Config, Node};
use trickle_wallet::{ChannelRecord, Wallet, CLOSE_MARGIN_BLOCKS, SETTLEMENT_DUE_BLOCKS};

async fn record(wallet: &Wallet<Counted>, payee: &common::Payee) -> ChannelRecord {
    wallet
        .channel(SITE, &payee.public_key())
        .await
        .expect("read")
        .expect("record")
}

/// What `tx`, spending a contract of `value`, pays in fees per vbyte.
fn sat_per_vb(value: Amount, tx: &Transaction) -> u64 {
    let out: Amount = tx.output.iter().map(|o| o.value).sum();
    (value - out).to_sat() / tx.vsize() as u64
}

/// Issue 20: a payee that never closes. The fee market rose above the rate the refund used
/// to be built at (2 sat/vB, refused now); at expiry the refund goes out at the chain's
/// estimate, is stored before it leaves, is replaced when the rate blocks are mined at rises
/// above it, and the replacement confirms: the channel's value, less that fee, is back in the
/// wallet.
#[tokio::test(flavor = "current_thread")]
async fn a_payee_that_never_closes_refund_confirms_at_the_current_fee_market() {
    let node = Node::start(Config::default()).await.expect("node");
    let (mut wallet, payee, client, _tip, mut pending) = open(&node, Counted::default()).await;
    common::flush(&wallet, &mut pending).await.expect("flushed");
    node.mine(1).await.expect("contract confirmed");
    wallet.sync(&client, common::now()).await.expect("synced");
    let before = wallet.balance().confirmed;
    node.set_fee_market(20, 0);

    let channel = record(&wallet, &payee)
        .await
        .state
        .state
        .committed_channel()
        .expect("open")
        .clone();
    let value = channel.funding.contract.value;
    let expiry = channel.funding.contract.expiry.to_consensus_u32();
    let due = expiry - u32::try_from(SETTLEMENT_DUE_BLOCKS).expect("small");
    node.mine(due - 1 - node.height()).await.expect("mined");
    wallet
        .check_spent_contracts(&client, 1)
        .await
        .expect("checked");
    assert!(!record(&wallet, &payee).await.chain.settlement_overdue);
    node.mine(1).await.expect("mined");
    wallet
        .check_spent_contracts(&client, 1)
        .await
        .expect("checked");
    assert!(
        record(&wallet, &payee).await.chain.settlement_overdue,
        "no settlement {SETTLEMENT_DUE_BLOCKS} blocks before the expiry: flagged"
    );
    node.mine(expiry - 1 - node.height()).await.expect("mined");
    let early = wallet.refund_expired(&client).await.expect("duties");
    assert!(early.is_empty(), "not valid before the expiry: {early:?}");

    node.mine(1).await.expect("at the expiry");
    // The rate it was built at before: no longer relayed.
    let key = wallet
        .channel_key(record(&wallet, &payee).await.key_index)
        .expect("key");
    let old = channel
        .refund(&PayerContext {
            key: &key,
            tip: Wallet::<Counted>::tip(&client).await.expect("tip"),
            refund_fee_rate: FeeRate::from_sat_per_vb_u32(2),
        })
        .expect("old refund");
    let refused = node.broadcast(&old).expect_err("2 sat/vB is refused");
    assert!(refused.to_string().contains("min fee not met"), "{refused}");

    let refunds = wallet.refund_expired(&client).await.expect("refund");
    let [refund] = refunds.as_slice() else {
        panic!("one refund: {refunds:?}")
    };
    let PayerState::Refunded { refund: stored, .. } = record(&wallet, &payee).await.state.state
    else {
        panic!("refunded")
    };
    assert_eq!(&stored, refund, "stored before it was broadcast");
    assert!(node.in_mempool(&refund.compute_txid()));
    assert!(sat_per_vb(value, refund) >= 20, "at the estimate");
    // Blocks now take only 50 sat/vB and above: the refund waits, and is replaced.
    node.set_fee_market(20, 50);
    node.mine(1).await.expect("mined");
    assert_eq!(node.confirmation_height(&refund.compute_txid()), None);
    wallet
        .check_spent_contracts(&client, 1)
        .await
        .expect("checked");
    let replaced = wallet.refund_expired(&client).await.expect("replaced");
    let [bumped] = replaced.as_slice() else {
        panic!("one replacement: {replaced:?}")
    };
    assert!(sat_per_vb(value, bumped) >= 50, "at the new estimate");
    let PayerState::Refunded { refund: stored, .. } = record(&wallet, &payee).await.state.state
    else {
        panic!("refunded")
    };
    assert_eq!(
        &stored, bumped,
        "the replacement stored before it was broadcast"
    );
    assert!(!node.in_mempool(&refund.compute_txid()), "replaced");
    // The same estimate again: the same refund, nothing new.
    let again = wallet.refund_expired(&client).await.expect("again");
    assert!(again.is_empty(), "{again:?}");

    node.mine(1).await.expect("mined");
    assert!(node.confirmation_height(&bumped.compute_txid()).is_some());
    let seen = wallet
        .check_spent_contracts(&client, 1)
        .await
        .expect("checked");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].1.as_ref().ok(), Some(&bumped.compute_txid()));
    let done = record(&wallet, &payee).await;
    assert_eq!(done.chain.final_spend, Some(bumped.compute_txid()));
    assert!(matches!(done.state.state, PayerState::Refunded { refund, .. } if &refund == bumped));
    // Final: no more broadcasts or replacements, whatever the market does.
    node.set_fee_market(1, 0);
    let after = wallet.refund_expired(&client).await.expect("nothing");
    assert!(after.is_empty(), "{after:?}");

    wallet.sync(&client, common::now()).await.expect("synced");
    assert_eq!(wallet.balance().confirmed, before + bumped.output[0].value);
}

async fn check(
    wallet: &mut Wallet<Counted>,
    client: &AsyncClient,
    final_confirmations: u32,
) -> Vec<(String, Result<bitcoin::Txid, trickle_channel::ChannelError>)> {
    wallet
        .check_spent_contracts(client, final_confirmations)
        .await
        .expect("checked")
}

/// Issue 20: a settlement is final only `final_confirmations` deep. Mined, then taken out of
/// the chain with its contract by a reorganisation (back to the mempool, or forgotten by the
/// network), the contract and the settlement are broadcast again by the wallet, which kept
/// them; the channel stays `Closing` until the settlement is that deep, then is `Closed`.
#[tokio::test(flavor = "current_thread")]
async fn a_settlement_reorganised_out_is_rebroadcast_and_the_channel_closes_only_at_depth() {
    const FINAL: u32 = 3;
    for forget in [false, true] {
        let node = Node::start(Config::default()).await.expect("node");
        let (mut wallet, payee, client, tip, mut pending) = open(&node, Counted::default()).await;
        common::flush(&wallet, &mut pending).await.expect("flushed");
        let key = payee.public_key();
        node.mine(1).await.expect("contract confirmed");
        let contract = record(&wallet, &payee)
            .await
            .state
            .state
            .contract_txid()
            .expect("contract");
        let settlement = wallet
            .close_channel(&payee, SITE, &key, tip)
            .await
            .expect("closed")
            .compute_txid();
        // The payee here broadcasts nothing: the wallet does, from what it kept.
        assert!(check(&mut wallet, &client, FINAL).await.is_empty());
        assert!(
            node.in_mempool(&settlement),
            "{forget}: the wallet broadcast it"
        );
        node.mine(1).await.expect("mined");
        assert!(
            check(&mut wallet, &client, FINAL).await.is_empty(),
            "{forget}: one deep"
        );
        let closing = record(&wallet, &payee).await;
        let signed = closing.state.state.paid();
        assert!(
            matches!(closing.state.state, PayerState::Closing { .. }),
            "{forget}: one deep is not final, {}",
            closing.state.state.name()
        );

        // Both blocks replaced by a heavier branch with neither the contract nor the
        // settlement.
        let forgotten = if forget {
            vec![contract, settlement]
        } else {
            vec![]
        };
        node.reorg(2, forgotten).await.expect("reorganised");
        assert_eq!(node.confirmation_height(&settlement), None);
        assert_eq!(node.in_mempool(&settlement), !forget);
        assert!(check(&mut wallet, &client, FINAL).await.is_empty());
        assert!(
            node.in_mempool(&contract) && node.in_mempool(&settlement),
            "{forget}: the wallet put both back"
        );
        let back = record(&wallet, &payee).await;
        assert!(
            matches!(back.state.state, PayerState::Closing { .. }),
            "{forget}: closing again, {}",
            back.state.state.name()
        );
        assert_eq!(back.chain.final_spend, None);

        for deep in 1..FINAL {
            node.mine(1).await.expect("mined");
            assert!(
                check(&mut wallet, &client, FINAL).await.is_empty(),
                "{forget}: {deep} deep"
            );
        }
        node.mine(1).await.expect("mined");
        let seen = check(&mut wallet, &client, FINAL).await;
        assert_eq!(seen.len(), 1, "{forget}: {seen:?}");
        assert_eq!(seen[0].1.as_ref().ok(), Some(&settlement));
        let closed = record(&wallet, &payee).await;
        assert_eq!(closed.chain.final_spend, Some(settlement));
        assert!(
            matches!(closed.state.state, PayerState::Closed { settlement: s, paid, .. }
                if s == settlement && paid == signed),
            "{forget}: {}",
            closed.state.state.name()
        );
    }
}

/// The duties both payers run (`Wallet::run_duties`): a channel is left to its payee until
/// [`CLOSE_MARGIN_BLOCKS`] before its expiry, then the payee is asked to close it; the
/// settlement goes out in the same round, and the channel is closed once it is final, without
/// asking again.
#[tokio::test(flavor = "current_thread")]
async fn the_duties_ask_the_payee_to_close_a_channel_near_its_expiry() {
    let node = Node::start(Config::default()).await.expect("node");
    let (mut wallet, payee, client, _tip, mut pending) = open(&node, Counted::default()).await;
    common::flush(&wallet, &mut pending).await.expect("flushed");
    node.mine(1).await.expect("contract confirmed");
    let expiry = record(&wallet, &payee)
        .await
        .state
        .state
        .contract()
        .expect("open")
        .expiry
        .to_consensus_u32();
    let margin = u32::try_from(CLOSE_MARGIN_BLOCKS).expect("small");
    node.mine(expiry - margin - 1 - node.height())
        .await
        .expect("mined");
    let early = wallet.run_duties(&client, &payee, 1).await.expect("duties");
    assert!(
        early.closed.is_empty() && early.settled.is_empty() && early.refunds.is_empty(),
        "{early:?}"
    );
    let open_still = record(&wallet, &payee).await;
    assert!(matches!(open_still.state.state, PayerState::Ready { .. }));

    node.mine(1).await.expect("mined");
    let asked = wallet.run_duties(&client, &payee, 1).await.expect("duties");
    assert_eq!(asked.closed.len(), 1, "{asked:?}");
    let (site, closed) = &asked.closed[0];
    assert_eq!(site, SITE);
    let settlement = *closed.as_ref().expect("closed by the payee");
    assert!(node.in_mempool(&settlement), "broadcast in the same round");

    node.mine(1).await.expect("mined");
    let done = wallet.run_duties(&client, &payee, 1).await.expect("duties");
    assert!(done.closed.is_empty(), "not asked again: {done:?}");
    assert_eq!(done.settled.len(), 1, "{done:?}");
    assert_eq!(done.settled[0].1.as_ref().ok(), Some(&settlement));
    assert!(done.refunds.is_empty());
    let closed = record(&wallet, &payee).await;
    assert!(
        matches!(closed.state.state, PayerState::Closed { settlement: s, .. } if s == settlement),
        "{}",
        closed.state.state.name()
    );
}
