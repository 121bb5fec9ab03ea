//! Issue 20: the fee of the contract `trickle fetch` opens a channel with, on a local chain
//! with a fee market, and the preview of it on stderr.

mod common;

use std::path::Path;

use bitcoin::Txid;
use common::*;
use trickle_regtest::{Config, Node};

/// The stderr line of `trickle fetch` that previews the opening of a channel.
fn preview_line(progress: &str) -> &str {
    progress
        .lines()
        .find(|l| l.starts_with("opening a channel of "))
        .unwrap_or_else(|| panic!("no preview of the opening in\n{progress}"))
}

/// The contract of the wallet's channel with `site` and its fee, which pays at least
/// `rate` sat/vB on its size.
async fn contract_paying(node: &Node, wallet: &Path, site: &str, rate: u64) -> (Txid, u64) {
    let contract = channel_txid(&trickle(node.url(), wallet, &["channels"]).await, site);
    let tx = node.transaction(&contract).expect("contract");
    let fee = fee_of(node, &tx);
    assert!(
        fee >= rate * tx.vsize() as u64,
        "the contract pays at least {rate} sat/vB: {fee} sat for {} vB",
        tx.vsize()
    );
    (contract, fee)
}

/// With the local chain's mempool refusing less than 5 sat/vB (above the 2 sat/vB the CLI
/// used to pay), `trickle fetch` opens its channel at the chain's estimate: the contract is
/// accepted, pays at least the estimate, confirms, and the preview printed before it opened
/// gives the amount locked, its exact fee and rate, and where the rate came from. An explicit
/// `--fee-rate` overrides the estimate, and the preview says so.
#[tokio::test]
async fn fetch_opens_its_contract_at_the_chains_fee_estimate_and_previews_it() {
    let node = Node::start(Config::default()).await.expect("node");
    let site = static_site().await;
    let dir = tempfile::tempdir().expect("dir");
    let (_payee, url) = proxy(&node, &site, policy(&[2], 144), dir.path()).await;
    let wallet = funded_wallet(&node).await;
    let w = wallet.path();
    node.set_fee_market(5, 0);

    let (body, progress) =
        trickle_output(node.url(), w, &["fetch", &format!("{url}/articles/1")]).await;
    assert_eq!(body, "article 1");
    let (contract, fee) = contract_paying(&node, w, &url, 5).await;
    assert!(node.in_mempool(&contract), "the mempool took the contract");
    assert_eq!(
        preview_line(&progress),
        format!(
            "opening a channel of 50000 sat with {url}: contract fee {fee} sat at 5 sat/vB \
             (the chain's estimate for about 6 blocks) ..."
        ),
        "{progress}"
    );
    node.mine(1).await.expect("mined");
    assert!(
        node.confirmation_height(&contract).is_some(),
        "contract confirmed"
    );
    let (state, value, ..) = channel_row(&trickle(node.url(), w, &["channels"]).await, &url);
    assert_eq!((state.as_str(), value), ("Ready", 50_000));

    // Another site, with the rate set by hand.
    let other = tempfile::tempdir().expect("dir");
    let (_other_payee, other_url) = proxy(&node, &site, policy(&[2], 144), other.path()).await;
    let (_, progress) = trickle_output(
        node.url(),
        w,
        &[
            "--fee-rate",
            "7",
            "fetch",
            &format!("{other_url}/articles/1"),
        ],
    )
    .await;
    let (_, fee) = contract_paying(&node, w, &other_url, 7).await;
    assert_eq!(
        preview_line(&progress),
        format!(
            "opening a channel of 50000 sat with {other_url}: contract fee {fee} sat at 7 sat/vB \
             (set by --fee-rate) ..."
        ),
        "{progress}"
    );
}
