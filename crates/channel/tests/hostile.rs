//! A hostile peer on either side: every bad message is refused with its code, the state is left
//! as it was, and nothing is signed.

mod common;

use bitcoin::absolute::LockTime;
use bitcoin::{Amount, EcdsaSighashType, ScriptBuf};
use common::*;
use trickle_channel::*;

/// Feeds `msg` to the payee and checks it is refused with `code`, nothing sent or broadcast.
fn payee_refuses(pair: &Pair, msg: WireMessage, code: ErrorCode) {
    let before = pair.payee.clone();
    let err = pair
        .with_payee(|ctx| pair.payee.on_message(ctx, msg))
        .expect_err("payee must refuse");
    assert_eq!(err.code(), code, "{err}");
    assert_eq!(pair.payee, before, "state unchanged");
    // The refusal is itself a well-formed wire message.
    let wire = WireMessage::Error(err.to_message());
    assert_eq!(WireMessage::decode(&wire.encode()), Ok(wire));
}

fn payer_refuses(pair: &Pair, msg: WireMessage, code: ErrorCode) {
    let err = pair
        .with_payer(|ctx| pair.payer.on_message(ctx, msg))
        .expect_err("payer must refuse");
    assert_eq!(err.code(), code, "{err}");
}

fn update_with_change(pair: &Pair, change: Amount) -> UpdatePayment {
    let ch = pair.payer_channel();
    ch.funding
        .sign_payment(&ch.payout_script, change, &key(CLIENT))
        .expect("sign")
}

#[test]
fn decreasing_payment_is_refused() {
    for version in [Version::V1, Version::V2] {
        let mut pair = Pair::open(version);
        pair.pay(Amount::from_sat(5_000)).expect("paid");
        let value = pair.payer_channel().funding.contract.value;
        let lower = update_with_change(&pair, value - Amount::from_sat(3_000));
        payee_refuses(
            &pair,
            WireMessage::UpdatePayment(lower),
            ErrorCode::PaymentDecreased,
        );
    }
}

#[test]
fn payment_above_channel_value_is_refused() {
    let pair = Pair::open(Version::V2);
    let value = pair.payer_channel().funding.contract.value;
    // The payer itself will not sign it.
    let err = pair
        .with_payer(|ctx| pair.payer.pay(ctx, value))
        .expect_err("over value");
    assert_eq!(err.code(), ErrorCode::PaymentExceedsValue);
    // A change above the value means a negative payment: a malformed transaction.
    let mut bogus = update_with_change(&pair, Amount::from_sat(500));
    bogus.client_change = value + Amount::ONE_SAT;
    payee_refuses(
        &pair,
        WireMessage::UpdatePayment(bogus),
        ErrorCode::BadTransaction,
    );
}

#[test]
fn bad_payment_signature_is_refused() {
    let pair = Pair::open(Version::V1);
    let mut update = update_with_change(&pair, Amount::from_sat(50_000));
    // Signed for a different change than claimed.
    update.client_change = Amount::from_sat(49_000);
    payee_refuses(
        &pair,
        WireMessage::UpdatePayment(update),
        ErrorCode::BadSignature,
    );
    // Signed by someone else.
    let ch = pair.payer_channel();
    let forged = ch
        .funding
        .sign_payment(&ch.payout_script, Amount::from_sat(40_000), &key(9))
        .expect("sign");
    payee_refuses(
        &pair,
        WireMessage::UpdatePayment(forged),
        ErrorCode::BadSignature,
    );
}

#[test]
fn wrong_sighash_flags_are_refused() {
    let pair = Pair::open(Version::V2);
    let ch = pair.payer_channel();
    let change = Amount::from_sat(50_000);
    let tx = ch.funding.payment(&ch.payout_script, change);
    for ty in [
        EcdsaSighashType::All,
        EcdsaSighashType::Single,
        EcdsaSighashType::NonePlusAnyoneCanPay,
    ] {
        let signature = ch.funding.sign(&tx, ty, &key(CLIENT)).expect("sign");
        let update = UpdatePayment {
            client_change: change,
            signature,
        };
        payee_refuses(
            &pair,
            WireMessage::UpdatePayment(update),
            ErrorCode::WrongSighash,
        );
    }
}

#[test]
fn dust_change_is_refused() {
    let pair = Pair::open(Version::V2);
    let update = update_with_change(&pair, Amount::from_sat(100));
    payee_refuses(
        &pair,
        WireMessage::UpdatePayment(update),
        ErrorCode::DustOutput,
    );
}

#[test]
fn payment_on_an_expired_channel_is_refused() {
    let mut pair = Pair::open(Version::V2);
    let LockTime::Blocks(h) = pair.payer_channel().funding.contract.expiry else {
        panic!("height")
    };
    pair.tip.height = h.to_consensus_u32() - pair.policy.close_margin_blocks;
    let update = update_with_change(&pair, Amount::from_sat(90_000));
    payee_refuses(
        &pair,
        WireMessage::UpdatePayment(update),
        ErrorCode::ChannelExpired,
    );
    pair.tip.height = h.to_consensus_u32();
    let err = pair
        .with_payer(|ctx| pair.payer.pay(ctx, Amount::from_sat(10)))
        .expect_err("payer refuses too");
    assert_eq!(err.code(), ErrorCode::ChannelExpired);
}

/// Drives a fresh pair up to the payee awaiting the contract; returns the payer's funded state.
fn until_contract(version: Version) -> (Pair, WireMessage) {
    let pair = Pair::open(version);
    // Re-run the opening with a fresh payee, stopping before PROVIDE_CONTRACT is delivered.
    let mut fresh = Pair {
        payer: PayerState::start(payer_config(version)).state,
        payee: pair.payee.clone(),
        policy: pair.policy.clone(),
        tip: pair.tip,
        wallet: Wallet::new(),
        contract_tx: None,
        transcript: Vec::new(),
    };
    let hello = ClientVersion {
        major: version.major(),
        minor: 0,
        time_window_blocks: 144,
        previous_contract: None,
    };
    let start = fresh
        .with_payee(|ctx| PayeeState::start(ctx, &hello))
        .expect("start");
    fresh.payee = start.state;
    for msg in start.send {
        fresh.payer = fresh
            .with_payer(|ctx| fresh.payer.on_message(ctx, msg))
            .expect("ok")
            .state;
    }
    let PayerState::AwaitingFunding { contract, .. } = &fresh.payer else {
        panic!("awaiting funding")
    };
    let tx = fresh.wallet.fund(contract.output());
    let step = fresh
        .with_payer(|ctx| fresh.payer.contract_funded(ctx, tx, Amount::ZERO))
        .expect("funded");
    fresh.payer = step.state;
    let mut msg = step.send[0].clone();
    if version == Version::V1 {
        let s = fresh
            .with_payee(|ctx| fresh.payee.on_message(ctx, msg))
            .expect("refund signed");
        fresh.payee = s.state;
        let p = fresh
            .with_payer(|ctx| fresh.payer.on_message(ctx, s.send[0].clone()))
            .expect("ok");
        fresh.payer = p.state;
        msg = p.send[0].clone();
    }
    (fresh, msg)
}

#[test]
fn contract_to_the_wrong_script_is_refused() {
    for version in [Version::V1, Version::V2] {
        let (pair, msg) = until_contract(version);
        let WireMessage::ProvideContract(mut m) = msg else {
            panic!("PROVIDE_CONTRACT")
        };
        // Same value, but to a script the server has no key in.
        m.contract.output[0].script_pubkey = p2wpkh(&key(CLIENT));
        payee_refuses(
            &pair,
            WireMessage::ProvideContract(m),
            ErrorCode::BadTransaction,
        );
    }
}

#[test]
fn contract_with_the_wrong_value_or_too_large_is_refused() {
    let (pair, msg) = until_contract(Version::V1);
    let WireMessage::ProvideContract(mut m) = msg else {
        panic!("PROVIDE_CONTRACT")
    };
    m.contract.output[0].value += Amount::ONE_SAT;
    payee_refuses(
        &pair,
        WireMessage::ProvideContract(m),
        ErrorCode::BadTransaction,
    );

    let (pair, msg) = until_contract(Version::V2);
    let WireMessage::ProvideContract(mut m) = msg else {
        panic!("PROVIDE_CONTRACT")
    };
    m.contract.output[0].value = pair.policy.max_channel_value + Amount::ONE_SAT;
    payee_refuses(
        &pair,
        WireMessage::ProvideContract(m),
        ErrorCode::ChannelValueTooLarge,
    );
}

#[test]
fn first_payment_below_minimum_is_refused() {
    let (pair, msg) = until_contract(Version::V2);
    let WireMessage::ProvideContract(mut m) = msg else {
        panic!("PROVIDE_CONTRACT")
    };
    let contract = pair.payer.contract().expect("contract").clone();
    let funding = Funding::locate(contract.clone(), &m.contract).expect("locate");
    m.initial_payment = funding
        .sign_payment(
            &m.payout_script,
            contract.value - Amount::from_sat(999),
            &key(CLIENT),
        )
        .expect("sign");
    payee_refuses(
        &pair,
        WireMessage::ProvideContract(m),
        ErrorCode::PaymentTooSmall,
    );
}

#[test]
fn bad_refund_signature_is_refused_and_nothing_is_handed_over() {
    // Rebuild the v1 opening up to the payer awaiting the refund signature.
    let (mut fresh, _) = until_contract(Version::V1);
    let PayerState::AwaitingOpen { channel } = &fresh.payer else {
        panic!("awaiting open")
    };
    let funding = channel.funding.clone();
    let refund = funding
        .refund(channel.payout_script.clone(), Amount::ZERO)
        .expect("refund");
    fresh.payer = PayerState::AwaitingRefundSignature {
        funding: funding.clone(),
        contract_tx: channel.contract_tx.clone(),
        payout_script: channel.payout_script.clone(),
        refund: refund.clone(),
        first_payment: Amount::from_sat(1_000),
    };
    // Signed by the wrong key, with the wrong flags, and over another lock time.
    let wrong_key = funding
        .sign(&refund, EcdsaSighashType::NonePlusAnyoneCanPay, &key(9))
        .expect("sign");
    payer_refuses(
        &fresh,
        WireMessage::ReturnRefund(ReturnRefund {
            signature: wrong_key,
        }),
        ErrorCode::BadSignature,
    );
    let wrong_flags = funding
        .sign(&refund, EcdsaSighashType::All, &key(SERVER))
        .expect("sign");
    payer_refuses(
        &fresh,
        WireMessage::ReturnRefund(ReturnRefund {
            signature: wrong_flags,
        }),
        ErrorCode::WrongSighash,
    );
    let mut other = refund.clone();
    other.lock_time = LockTime::from_consensus(5);
    let other_lock = funding
        .sign(&other, EcdsaSighashType::NonePlusAnyoneCanPay, &key(SERVER))
        .expect("sign");
    payer_refuses(
        &fresh,
        WireMessage::ReturnRefund(ReturnRefund {
            signature: other_lock,
        }),
        ErrorCode::BadSignature,
    );
}

#[test]
fn refund_without_lock_time_is_not_signed_by_the_server() {
    let pair = Pair::open(Version::V1);
    let hello = ClientVersion {
        major: 1,
        minor: 0,
        time_window_blocks: 144,
        previous_contract: None,
    };
    let start = pair
        .with_payee(|ctx| PayeeState::start(ctx, &hello))
        .expect("start");
    let mut p2 = Pair {
        payee: start.state,
        ..Pair::open(Version::V1)
    };
    let channel = pair.payer_channel();
    let mut refund = channel
        .funding
        .refund(channel.payout_script.clone(), Amount::ZERO)
        .expect("refund");
    let lock_time = refund.lock_time;
    refund.lock_time = LockTime::ZERO;
    let provide = |refund| {
        WireMessage::ProvideRefund(ProvideRefund {
            client_key: pubkey(&key(CLIENT)),
            channel_value: channel.funding.contract.value,
            refund,
        })
    };
    payee_refuses(&p2, provide(refund.clone()), ErrorCode::BadTransaction);
    refund.lock_time = lock_time;
    refund.input[0].sequence = bitcoin::Sequence::MAX;
    payee_refuses(&p2, provide(refund.clone()), ErrorCode::BadTransaction);
    refund.input.clear();
    payee_refuses(&p2, provide(refund), ErrorCode::BadTransaction);
    p2.policy.max_channel_value = Amount::from_sat(50_000);
    let ok_refund = channel
        .funding
        .refund(channel.payout_script.clone(), Amount::ZERO)
        .expect("refund");
    payee_refuses(&p2, provide(ok_refund), ErrorCode::ChannelValueTooLarge);
}

#[test]
fn unknown_version_is_refused_by_both_sides() {
    let pair = Pair::open(Version::V2);
    for major in [0u8, 3, 255] {
        let hello = ClientVersion {
            major,
            minor: 0,
            time_window_blocks: 144,
            previous_contract: None,
        };
        let err = pair
            .with_payee(|ctx| PayeeState::start(ctx, &hello))
            .expect_err("no such version");
        assert_eq!(err.code(), ErrorCode::NoAcceptableVersion);
    }
    // A server that only speaks v1 refuses v2.
    let mut v1_only = policy();
    v1_only.accept_v2 = false;
    let k = key(SERVER);
    let ctx = PayeeContext {
        policy: &v1_only,
        key: &k,
        tip: TIP,
        close_fee_rate: fee_rate(),
        close_fee_ceiling: fee_ceiling(),
    };
    let hello = ClientVersion {
        major: 2,
        minor: 0,
        time_window_blocks: 144,
        previous_contract: None,
    };
    let err = PayeeState::start(&ctx, &hello).expect_err("v2 refused");
    assert_eq!(err.code(), ErrorCode::NoAcceptableVersion);

    // A payer asking for v2 refuses a server answering v1.
    let payer = PayerState::start(payer_config(Version::V2)).state;
    let p = Pair { payer, ..pair };
    payer_refuses(
        &p,
        WireMessage::ServerVersion(ServerVersion { major: 1, minor: 0 }),
        ErrorCode::NoAcceptableVersion,
    );
    // Bytes of a future encoding format do not decode at all.
    let mut bytes = WireMessage::ServerVersion(ServerVersion { major: 2, minor: 0 }).encode();
    bytes[0] = FORMAT + 1;
    assert_eq!(
        WireMessage::decode(&bytes),
        Err(DecodeError::UnknownFormat(FORMAT + 1))
    );
}

#[test]
fn payer_refuses_unacceptable_terms() {
    let pair = Pair::open(Version::V2);
    let mut payer = Pair {
        payer: PayerState::AwaitingInitiate {
            config: payer_config(Version::V2),
        },
        ..pair
    };
    let good = Initiate {
        server_key: pubkey(&key(SERVER)),
        min_channel_value: Amount::from_sat(10_000),
        max_channel_value: Amount::from_sat(1_000_000),
        min_payment: Amount::from_sat(1_000),
        expiry: LockTime::from_consensus(TIP.height + 144),
    };
    let cases = [
        (
            Initiate {
                expiry: LockTime::from_consensus(TIP.height + 10_000),
                ..good.clone()
            },
            ErrorCode::TimeWindowUnacceptable,
        ),
        (
            Initiate {
                expiry: LockTime::from_consensus(TIP.height),
                ..good.clone()
            },
            ErrorCode::TimeWindowUnacceptable,
        ),
        (
            Initiate {
                min_payment: Amount::from_sat(50_000),
                ..good.clone()
            },
            ErrorCode::MinPaymentTooLarge,
        ),
        (
            Initiate {
                min_channel_value: Amount::from_sat(500_000),
                ..good.clone()
            },
            ErrorCode::ChannelValueTooLarge,
        ),
    ];
    for (init, code) in cases {
        payer_refuses(&payer, WireMessage::Initiate(init), code);
    }
    // The good terms are accepted.
    payer.payer = payer
        .with_payer(|ctx| payer.payer.on_message(ctx, WireMessage::Initiate(good)))
        .expect("accepted")
        .state;
    assert!(matches!(payer.payer, PayerState::AwaitingFunding { .. }));
}

#[test]
fn settlement_that_shortchanges_the_client_is_refused() {
    let mut pair = Pair::open(Version::V2);
    pair.pay(Amount::from_sat(1_000)).expect("paid");
    let step = pair.with_payee(|ctx| pair.payee.close(ctx)).expect("close");
    let WireMessage::Close(Close {
        settlement: Some(good),
    }) = &step.send[0]
    else {
        panic!("CLOSE with settlement")
    };
    let mut short = good.clone();
    short.output[0].value -= Amount::ONE_SAT;
    payer_refuses(
        &pair,
        WireMessage::Close(Close {
            settlement: Some(short.clone()),
        }),
        ErrorCode::BadSettlement,
    );
    let mut elsewhere = good.clone();
    elsewhere.output[0].script_pubkey = ScriptBuf::new_op_return([0u8; 4]);
    payer_refuses(
        &pair,
        WireMessage::Close(Close {
            settlement: Some(elsewhere),
        }),
        ErrorCode::BadSettlement,
    );
    let mut unrelated = good.clone();
    unrelated.input[0].previous_output.vout += 1;
    assert_eq!(
        pair.payer
            .on_contract_spent(&unrelated)
            .map(|s| s.state.name()),
        Err(ChannelError::BadSettlement("does not spend the contract"))
    );
}

#[test]
fn messages_out_of_order_are_refused() {
    let pair = Pair::open(Version::V2);
    payee_refuses(
        &pair,
        WireMessage::ProvideRefund(ProvideRefund {
            client_key: pubkey(&key(CLIENT)),
            channel_value: Amount::from_sat(100_000),
            refund: pair.contract_tx.clone().expect("contract"),
        }),
        ErrorCode::UnexpectedMessage,
    );
    payer_refuses(
        &pair,
        WireMessage::Initiate(Initiate {
            server_key: pubkey(&key(SERVER)),
            min_channel_value: Amount::ZERO,
            max_channel_value: Amount::ZERO,
            min_payment: Amount::ZERO,
            expiry: LockTime::ZERO,
        }),
        ErrorCode::UnexpectedMessage,
    );
    // The server cannot claim more than the client signed.
    payer_refuses(
        &pair,
        WireMessage::PaymentAck(PaymentAck {
            amount_paid: Amount::from_sat(1_001),
        }),
        ErrorCode::PaymentExceedsValue,
    );
}

#[test]
fn wrong_key_is_refused_before_signing() {
    let pair = Pair::open(Version::V2);
    let k = key(9);
    let ctx = PayerContext {
        key: &k,
        tip: TIP,
        refund_fee_rate: fee_rate(),
    };
    let err = pair
        .payer
        .pay(&ctx, Amount::from_sat(10))
        .expect_err("wrong key");
    assert_eq!(err.code(), ErrorCode::WrongKey);
}

#[test]
fn peer_error_after_commitment_keeps_the_channel_for_refund() {
    let pair = Pair::open(Version::V2);
    let e = ErrorMessage {
        code: ErrorCode::Other,
        explanation: "going away".into(),
        expected_value: None,
    };
    let err = pair
        .with_payer(|ctx| pair.payer.on_message(ctx, WireMessage::Error(e.clone())))
        .expect_err("surfaced");
    assert_eq!(err, ChannelError::Peer(e.clone()));
    // Before commitment it simply fails.
    let fresh = PayerState::start(payer_config(Version::V2)).state;
    let step = pair
        .with_payer(|ctx| fresh.on_message(ctx, WireMessage::Error(e.clone())))
        .expect("failed state");
    assert_eq!(step.state, PayerState::Failed { reason: e });
}
