//! Full channel lifecycles for v1 and v2, every transaction checked by Bitcoin Core's script
//! interpreter (libbitcoinconsensus).

mod common;

use bitcoin::absolute::LockTime;
use bitcoin::Amount;
use common::*;
use trickle_channel::*;

const VERSIONS: [Version; 2] = [Version::V1, Version::V2];

#[test]
fn open_pay_many_times_and_close_cooperatively() {
    for version in VERSIONS {
        let mut pair = Pair::open(version);
        let value = pair.payer_channel().funding.contract.value;
        assert_eq!(pair.payee_channel().paid(), Amount::from_sat(1_000));
        for i in 1..=50u64 {
            let acked = pair
                .pay(Amount::from_sat(100 + i))
                .expect("payment accepted");
            assert_eq!(acked, pair.payer_channel().paid());
            assert_eq!(pair.payer_channel().acknowledged, acked);
        }
        let paid = pair.payer_channel().paid();
        assert_eq!(paid, Amount::from_sat(1_000 + 50 * 100 + 50 * 51 / 2));

        let step = pair.payer.close().expect("close requested");
        pair.payer = step.state;
        let broadcast = pair.exchange(step.send).expect("close completes");
        let [settlement] = broadcast.as_slice() else {
            panic!("one settlement broadcast, got {}", broadcast.len())
        };
        // The settlement in the CLOSE reply is a candidate: closed once the chain shows it.
        assert!(matches!(pair.payer, PayerState::Closing { .. }));
        let spent = pair.payer.on_contract_spent(settlement).expect("settled");
        let PayerState::Closed {
            settlement: seen, ..
        } = &spent.state
        else {
            panic!("payer closed, is {}", spent.state.name())
        };
        assert_eq!(*seen, settlement.compute_txid());
        pair.wallet
            .utxos
            .verify(settlement)
            .unwrap_or_else(|e| panic!("{version:?} settlement valid under consensus: {e:?}"));
        assert_eq!(settlement.output[0].value, value - paid, "client change");
        assert_eq!(
            settlement.output[0].script_pubkey,
            p2wpkh(&key(CLIENT_PAYOUT))
        );
        let fee = value - settlement.output.iter().map(|o| o.value).sum::<Amount>();
        assert_eq!(
            settlement.output[1].value,
            paid - fee,
            "server pays the close fee"
        );
        assert!(fee >= fee_rate().fee_vb(settlement.vsize() as u64).expect("fee"));
        // A payee that sees its settlement on chain is closed.
        let step = pair.payee.on_contract_spent(settlement).expect("spent");
        assert!(matches!(step.state, PayeeState::Closed { .. }));
    }
}

#[test]
fn paying_the_whole_channel_leaves_no_dust() {
    for version in VERSIONS {
        let mut pair = Pair::open(version);
        let value = pair.payer_channel().funding.contract.value;
        // Leave 200 sat: below the P2WPKH dust limit (294), so the payer pays it all.
        let increment = value - Amount::from_sat(1_000) - Amount::from_sat(200);
        let acked = pair.pay(increment).expect("payment accepted");
        assert_eq!(acked, value);
        assert_eq!(pair.payer_channel().latest.client_change, Amount::ZERO);
        assert_eq!(
            pair.payer_channel().latest.signature.sighash_type,
            bitcoin::EcdsaSighashType::NonePlusAnyoneCanPay
        );
        let err = pair.pay(Amount::ONE_SAT).expect_err("nothing left to pay");
        assert_eq!(err.code(), ErrorCode::PaymentExceedsValue);
        let step = pair.with_payee(|ctx| pair.payee.close(ctx)).expect("close");
        let settlement = &step.broadcast[0];
        assert_eq!(settlement.output.len(), 1, "only the server's output");
        pair.wallet
            .utxos
            .verify(settlement)
            .expect("valid settlement");
    }
}

#[test]
fn server_closes_within_its_margin_before_expiry() {
    for version in VERSIONS {
        let mut pair = Pair::open(version);
        pair.pay(Amount::from_sat(500)).expect("paid");
        let expiry = pair.payee_channel().funding.contract.expiry;
        let LockTime::Blocks(h) = expiry else {
            panic!("height expiry")
        };
        let margin = pair.policy.close_margin_blocks;
        pair.tip.height = h.to_consensus_u32() - margin - 1;
        let step = pair.with_payee(|ctx| pair.payee.on_tip(ctx)).expect("tip");
        assert!(step.broadcast.is_empty(), "too early to close");
        assert!(matches!(step.state, PayeeState::Ready { .. }));

        pair.tip.height += 1;
        let step = pair.with_payee(|ctx| pair.payee.on_tip(ctx)).expect("tip");
        let PayeeState::Closing { settlement, .. } = &step.state else {
            panic!("payee closing")
        };
        assert_eq!(step.broadcast, vec![settlement.clone()]);
        pair.wallet
            .utxos
            .verify(settlement)
            .expect("valid settlement");
        // Payments are refused from the margin on.
        pair.payee = step.state.clone();
        let err = pair.pay(Amount::from_sat(10)).expect_err("closing");
        assert_eq!(err.code(), ErrorCode::ChannelClosed);
        // The client learns of the settlement from the server's CLOSE, and counts it only once
        // the chain shows it.
        let step2 = pair
            .with_payer(|ctx| pair.payer.on_message(ctx, step.send[0].clone()))
            .expect("settlement accepted");
        assert!(matches!(step2.state, PayerState::Closing { .. }));
        let step3 = step2.state.on_contract_spent(settlement).expect("settled");
        assert!(matches!(step3.state, PayerState::Closed { .. }));
    }
}

#[test]
fn refund_after_expiry_when_the_server_vanishes() {
    for version in VERSIONS {
        let mut pair = Pair::open(version);
        pair.pay(Amount::from_sat(5_000)).expect("paid");
        let expiry = pair.payer_channel().funding.contract.expiry;
        let LockTime::Blocks(h) = expiry else {
            panic!("height expiry")
        };

        // Before expiry: the payer does not broadcast, and a refund would not be final.
        pair.tip.height = h.to_consensus_u32() - 1;
        let step = pair.with_payer(|ctx| pair.payer.on_tip(ctx)).expect("tip");
        assert!(step.broadcast.is_empty());
        assert!(!pair.tip.is_final(expiry));

        pair.tip.height = h.to_consensus_u32();
        let step = pair.with_payer(|ctx| pair.payer.on_tip(ctx)).expect("tip");
        let [refund] = step.broadcast.as_slice() else {
            panic!("refund broadcast")
        };
        assert!(matches!(step.state, PayerState::Refunded { .. }));
        assert_eq!(refund.lock_time, expiry);
        assert!(pair.tip.is_final(refund.lock_time));
        pair.wallet
            .utxos
            .verify(refund)
            .unwrap_or_else(|e| panic!("{version:?} refund valid: {e:?}"));
        let value = pair.payer_channel().funding.contract.value;
        let fee = value - refund.output[0].value;
        assert!(fee > Amount::ZERO && fee < Amount::from_sat(1_000));

        // The time lock is part of what is signed: a refund with an earlier lock time is invalid.
        let mut early = refund.clone();
        early.lock_time = LockTime::from_consensus(h.to_consensus_u32() - 100);
        assert!(
            pair.wallet.utxos.verify(&early).is_err(),
            "{version:?} early refund must fail"
        );
        // And with a final sequence the lock time would not apply: also invalid.
        let mut unlocked = refund.clone();
        unlocked.input[0].sequence = bitcoin::Sequence::MAX;
        assert!(pair.wallet.utxos.verify(&unlocked).is_err());

        // Seeing its own refund spent the contract keeps the payer refunded.
        let again = step.state.on_contract_spent(refund).expect("own refund");
        assert!(matches!(again.state, PayerState::Refunded { .. }));
    }
}

/// Issue 20: the refund follows the fee market. The client alone rebuilds it, in v1 (whose
/// server signature signs `NONE|ANYONECANPAY`, not the outputs) as in v2: a higher rate
/// replaces it with one that pays at least the relay increment more; a rate that is not
/// higher broadcasts the same refund again; the fee never exceeds half the channel.
#[test]
fn a_refund_is_replaced_at_a_higher_fee_rate_by_the_client_alone() {
    let fee_of = |value: Amount, tx: &bitcoin::Transaction| {
        value - tx.output.iter().map(|o| o.value).sum::<Amount>()
    };
    for version in VERSIONS {
        let mut pair = Pair::open(version);
        pair.pay(Amount::from_sat(5_000)).expect("paid");
        let channel = pair.payer_channel().clone();
        let value = channel.funding.contract.value;
        pair.tip.height = channel.funding.contract.expiry.to_consensus_u32();
        let key = key(CLIENT);
        let at = |sat_vb: u32| PayerContext {
            key: &key,
            tip: pair.tip,
            refund_fee_rate: bitcoin::FeeRate::from_sat_per_vb_u32(sat_vb),
        };
        let first = pair.payer.on_tip(&at(2)).expect("refund");
        let [refund] = first.broadcast.as_slice() else {
            panic!("refund broadcast")
        };
        let vsize = refund.vsize() as u64;
        assert!(fee_of(value, refund) >= Amount::from_sat(2 * vsize));

        // The same rate, or a lower one: the same refund again.
        for sat_vb in [2, 1] {
            let again = first.state.on_tip(&at(sat_vb)).expect("again");
            assert_eq!(again.state, first.state, "{version:?}");
            assert_eq!(again.broadcast, vec![refund.clone()]);
        }

        let bumped = first.state.on_tip(&at(20)).expect("bumped");
        let PayerState::Refunded { refund: stored, .. } = &bumped.state else {
            panic!("still refunded")
        };
        assert_eq!(
            bumped.broadcast,
            vec![stored.clone()],
            "the stored one leaves"
        );
        assert_ne!(stored.compute_txid(), refund.compute_txid());
        assert_eq!(stored.lock_time, refund.lock_time);
        assert!(fee_of(value, stored) >= Amount::from_sat(20 * vsize));
        assert!(fee_of(value, stored) >= fee_of(value, refund) + Amount::from_sat(vsize));
        pair.wallet
            .utxos
            .verify(stored)
            .unwrap_or_else(|e| panic!("{version:?} replacement valid: {e:?}"));

        // A rate the channel cannot pay: half the channel, and no replacement beyond it.
        let capped = bumped.state.on_tip(&at(100_000)).expect("capped");
        let PayerState::Refunded { refund: top, .. } = &capped.state else {
            panic!("still refunded")
        };
        assert_eq!(fee_of(value, top), value / MAX_REFUND_FEE_SHARE);
        pair.wallet.utxos.verify(top).expect("valid at the ceiling");
        let more = capped.state.on_tip(&at(200_000)).expect("at the ceiling");
        assert_eq!(more.state, capped.state);

        // Whichever of them confirms is recognised as the client's refund.
        for tx in [refund, stored] {
            let spent = capped.state.on_contract_spent(tx).expect("own refund");
            assert_eq!(
                spent.state,
                PayerState::Refunded {
                    channel: channel.clone(),
                    refund: tx.clone()
                }
            );
        }
    }
}

#[test]
fn v2_refund_with_timestamp_expiry_checks_cltv_against_lock_time() {
    let mut policy = policy();
    policy.expiry_kind = ExpiryKind::Time;
    let mut pair = Pair::open_with(payer_config(Version::V2), policy);
    let expiry = pair.payer_channel().funding.contract.expiry;
    assert!(matches!(expiry, LockTime::Seconds(_)));
    pair.tip.median_time_past = expiry.to_consensus_u32();
    let step = pair.with_payer(|ctx| pair.payer.on_tip(ctx)).expect("tip");
    assert!(
        step.broadcast.is_empty(),
        "median-time-past must pass the expiry"
    );
    pair.tip.median_time_past += 1;
    let step = pair.with_payer(|ctx| pair.payer.on_tip(ctx)).expect("tip");
    let refund = &step.broadcast[0];
    pair.wallet.utxos.verify(refund).expect("valid refund");
    // CLTV compares kinds: a height lock time cannot satisfy a timestamp expiry.
    let mut wrong_kind = refund.clone();
    wrong_kind.lock_time = LockTime::from_consensus(pair.tip.height);
    assert!(pair.wallet.utxos.verify(&wrong_kind).is_err());
}

#[test]
fn resume_after_restart_from_snapshots() {
    for version in VERSIONS {
        let mut pair = Pair::open(version);
        pair.pay(Amount::from_sat(300)).expect("paid");
        // A payment the server never received (lost on the way).
        let lost = pair
            .with_payer(|ctx| pair.payer.pay(ctx, Amount::from_sat(700)))
            .expect("signed");
        pair.payer = lost.state;

        // Both sides restart from their stored snapshots.
        let payer_json = serde_json::to_string(&Snapshot::new(pair.payer.clone())).expect("json");
        let payee_json = serde_json::to_string(&Snapshot::new(pair.payee.clone())).expect("json");
        let payer: Snapshot<PayerState> = serde_json::from_str(&payer_json).expect("payer loads");
        let payee: Snapshot<PayeeState> = serde_json::from_str(&payee_json).expect("payee loads");
        pair.payer = payer.into_state().expect("format");
        pair.payee = payee.into_state().expect("format");

        let step = pair.payer.resume().expect("resume");
        pair.payer = step.state;
        let WireMessage::ClientVersion(hello) = &step.send[0] else {
            panic!("resume starts with CLIENT_VERSION")
        };
        assert_eq!(
            hello.previous_contract,
            Some(pair.payee_channel().contract_txid())
        );
        let answer = pair.payee.resume(hello).expect("payee knows the channel");
        assert_eq!(answer.send.len(), 2);
        // The payer answers CHANNEL_OPEN by resending the payment the server missed.
        let mut resend = Vec::new();
        for msg in answer.send {
            let s = pair
                .with_payer(|ctx| pair.payer.on_message(ctx, msg))
                .expect("payer resumes");
            pair.payer = s.state;
            resend.extend(s.send);
        }
        assert!(matches!(pair.payer, PayerState::Ready { .. }));
        assert_eq!(resend.len(), 1);
        pair.exchange(resend).expect("resent payment accepted");
        assert_eq!(pair.payee_channel().paid(), Amount::from_sat(2_000));
        assert_eq!(pair.payer_channel().acknowledged, Amount::from_sat(2_000));
        // Sending the same payment again is acknowledged without charging twice.
        let again = pair.payer_channel().latest.clone();
        pair.exchange(vec![WireMessage::UpdatePayment(again)])
            .expect("idempotent");
        assert_eq!(pair.payee_channel().paid(), Amount::from_sat(2_000));
    }
}

#[test]
fn snapshot_of_a_newer_format_is_refused() {
    let pair = Pair::open(Version::V2);
    let mut snap = Snapshot::new(pair.payee.clone());
    snap.format = SNAPSHOT_FORMAT + 1;
    let json = serde_json::to_string(&snap).expect("json");
    let back: Snapshot<PayeeState> = serde_json::from_str(&json).expect("parses");
    assert_eq!(
        back.into_state(),
        Err(SnapshotError::UnsupportedFormat(SNAPSHOT_FORMAT + 1))
    );
}

#[test]
fn channel_id_is_stable_and_separates_sites() {
    let k = pubkey(&key(SERVER));
    assert_eq!(
        ChannelId::new(&k, "example.com"),
        ChannelId::new(&k, "example.com")
    );
    assert_ne!(
        ChannelId::new(&k, "example.com"),
        ChannelId::new(&k, "example.org")
    );
    assert_ne!(
        ChannelId::new(&k, "example.com"),
        ChannelId::new(&pubkey(&key(9)), "example.com")
    );
}

#[test]
fn a_close_the_payee_refuses_leaves_the_channel_payable() {
    for version in VERSIONS {
        // A first payment too small for the close fee: the payee refuses to close on it.
        let policy = PayeePolicy {
            min_payment: Amount::from_sat(10),
            ..policy()
        };
        let mut pair = Pair::open_with(payer_config(version), policy);
        let step = pair.payer.close().expect("close requested");
        // The payer persists this state before CLOSE leaves, as any step.
        pair.payer = step.state;
        let err = pair.exchange(step.send).expect_err("close refused");
        assert_eq!(err.code(), ErrorCode::BadTransaction, "{err}");
        assert!(matches!(pair.payee, PayeeState::Ready { .. }));
        // The refusal reaches the payer as an ERROR: it is reported, the channel kept as is.
        let refusal = WireMessage::Error(err.to_message());
        let reported = pair
            .with_payer(|ctx| pair.payer.on_message(ctx, refusal))
            .expect_err("reported");
        assert_eq!(reported.code(), ErrorCode::BadTransaction);
        assert!(
            matches!(pair.payer, PayerState::Ready { .. }),
            "the payer agrees with the payee: {}",
            pair.payer.name()
        );

        // The next payment pays, and then the close succeeds.
        let acked = pair
            .pay(Amount::from_sat(2_000))
            .expect("pays after a refusal");
        assert_eq!(acked, Amount::from_sat(2_010));
        let step = pair.payer.close().expect("close requested again");
        pair.payer = step.state;
        let broadcast = pair.exchange(step.send).expect("close completes");
        let [settlement] = broadcast.as_slice() else {
            panic!("one settlement, got {}", broadcast.len())
        };
        assert!(matches!(pair.payer, PayerState::Closing { .. }));
        pair.wallet
            .utxos
            .verify(settlement)
            .expect("valid settlement");
        let spent = pair.payer.on_contract_spent(settlement).expect("settled");
        let PayerState::Closed { paid, .. } = spent.state else {
            panic!("closed, is {}", spent.state.name())
        };
        assert_eq!(paid, acked);
    }
}
