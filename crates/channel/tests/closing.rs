//! The server's settlement as the expiry nears: fees that rise block by block, replacements
//! that relay accepts, and in the last blocks the whole share. Every settlement is checked by
//! Bitcoin Core's script interpreter (libbitcoinconsensus).

mod common;

use bitcoin::{Amount, Transaction};
use common::*;
use trickle_channel::*;

/// The height at which the channel's refund becomes valid.
fn expiry(pair: &Pair) -> u32 {
    pair.payee_channel()
        .funding
        .contract
        .expiry
        .to_consensus_u32()
}

fn fee(value: Amount, tx: &Transaction) -> Amount {
    value - tx.output.iter().map(|o| o.value).sum::<Amount>()
}

#[test]
fn a_settlement_left_unconfirmed_is_replaced_at_rising_fees_until_the_expiry() {
    for version in [Version::V1, Version::V2] {
        let mut pair = Pair::open(version);
        pair.pay(Amount::from_sat(20_000)).expect("pays");
        let channel = pair.payee_channel().clone();
        let value = channel.funding.contract.value;
        let expiry = channel.funding.contract.expiry.to_consensus_u32();
        let margin = pair.policy.close_margin_blocks;
        let mut settlements: Vec<Transaction> = Vec::new();
        // The server closes at the margin; nothing confirms; each new tip is one block closer.
        for left in (0..=margin).rev() {
            pair.tip = ChainTip {
                height: expiry - left,
                ..TIP
            };
            let step = pair
                .with_payee(|ctx| pair.payee.on_tip(ctx))
                .expect("on tip");
            pair.payee = step.state;
            let [tx] = step.broadcast.as_slice() else {
                panic!(
                    "{left} blocks before expiry: one settlement, got {:?}",
                    step.broadcast
                )
            };
            let PayeeState::Closing { settlement, .. } = &pair.payee else {
                panic!("closing, is {}", pair.payee.name())
            };
            assert_eq!(settlement, tx, "the state holds what is broadcast");
            pair.wallet
                .utxos
                .verify(tx)
                .expect("valid under Core's interpreter");
            assert_eq!(
                tx.output[0].value, channel.best.client_change,
                "client change kept"
            );
            if let Some(previous) = settlements.last() {
                if previous != tx {
                    // BIP125: a higher fee rate, and at least 1 sat/vB of its size more in fee.
                    let more = fee(value, tx) - fee(value, previous);
                    assert!(more.to_sat() >= tx.vsize() as u64, "{left}: {more}");
                    settlements.push(tx.clone());
                }
            } else {
                settlements.push(tx.clone());
            }
            let rate = fee(value, tx).to_sat() as f64 / tx.vsize() as f64;
            if i64::from(left) > LAST_RESORT_BLOCKS {
                assert!(
                    rate <= fee_ceiling().to_sat_per_vb_ceil() as f64,
                    "{left}: {rate}"
                );
            } else {
                // The last resort: the server keeps only a dust-free output.
                let server = tx.output.last().expect("server output");
                assert_eq!(server.value, dust_limit(&server.script_pubkey), "{left}");
            }
        }
        let first = fee(value, &settlements[0]).to_sat() as f64 / settlements[0].vsize() as f64;
        assert!(
            first < 3.0,
            "the first settlement pays the estimate: {first}"
        );
        assert!(
            settlements.len() >= 4,
            "replaced {} times",
            settlements.len() - 1
        );
    }
}

#[test]
fn a_settlement_at_its_best_rate_is_not_replaced() {
    let mut pair = Pair::open(Version::V2);
    pair.pay(Amount::from_sat(20_000)).expect("pays");
    let expiry = expiry(&pair);
    // A cooperative close well before the margin, then more tips that are still far from it.
    let step = pair.with_payee(|ctx| pair.payee.close(ctx)).expect("close");
    pair.payee = step.state;
    let first = step.broadcast[0].clone();
    for height in [TIP.height + 1, expiry - pair.policy.close_margin_blocks - 1] {
        pair.tip = ChainTip { height, ..TIP };
        let step = pair
            .with_payee(|ctx| pair.payee.on_tip(ctx))
            .expect("on tip");
        pair.payee = step.state;
        assert_eq!(step.broadcast, vec![first.clone()], "rebroadcast as it is");
    }
}

#[test]
fn within_the_margin_a_share_too_small_for_the_rate_pays_what_it_can() {
    let mut pair = Pair::open(Version::V2);
    let expiry = expiry(&pair);
    // Four blocks late at 2 sat/vB, 1.25⁴ × 2 ≈ 4.9 sat/vB: about 830 sat of fee would leave the
    // server's 1,000 sat share below dust.
    pair.tip = ChainTip {
        height: expiry - pair.policy.close_margin_blocks + 4,
        ..TIP
    };
    let step = pair
        .with_payee(|ctx| pair.payee.on_tip(ctx))
        .expect("closes");
    let [tx] = step.broadcast.as_slice() else {
        panic!("one settlement: {:?}", step.broadcast)
    };
    pair.wallet
        .utxos
        .verify(tx)
        .expect("valid under Core's interpreter");
    let server = tx.output.last().expect("server output");
    assert_eq!(server.value, dust_limit(&server.script_pubkey));
}
