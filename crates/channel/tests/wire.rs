//! The wire encoding: every message round-trips; every malformation is a typed error.

mod common;

use bitcoin::Amount;
use common::*;
use trickle_channel::*;

/// One of every message, taken from a real v1 opening, payment and close.
fn all_messages() -> Vec<WireMessage> {
    let pair = Pair::open(Version::V1);
    let ch = pair.payer_channel();
    let refund = ch
        .funding
        .refund(ch.payout_script.clone(), Amount::ZERO)
        .expect("refund");
    let close = pair.with_payee(|ctx| pair.payee.close(ctx)).expect("close");
    vec![
        WireMessage::ClientVersion(ClientVersion {
            major: 1,
            minor: 0,
            time_window_blocks: 144,
            previous_contract: Some(ch.contract_txid()),
        }),
        WireMessage::ServerVersion(ServerVersion { major: 1, minor: 0 }),
        WireMessage::Initiate(Initiate {
            server_key: pubkey(&key(SERVER)),
            min_channel_value: Amount::from_sat(10_000),
            max_channel_value: Amount::from_sat(1_000_000),
            min_payment: Amount::from_sat(1_000),
            expiry: ch.funding.contract.expiry,
        }),
        WireMessage::ProvideRefund(ProvideRefund {
            client_key: pubkey(&key(CLIENT)),
            channel_value: ch.funding.contract.value,
            refund,
        }),
        WireMessage::ReturnRefund(ReturnRefund {
            signature: ch.server_refund_signature.expect("v1 refund signature"),
        }),
        WireMessage::ProvideContract(ProvideContract {
            contract: ch.contract_tx.clone(),
            client_key: pubkey(&key(CLIENT)),
            payout_script: ch.payout_script.clone(),
            initial_payment: ch.latest.clone(),
        }),
        WireMessage::ChannelOpen(ChannelOpen {
            contract_txid: ch.contract_txid(),
            amount_paid: ch.paid(),
        }),
        WireMessage::UpdatePayment(ch.latest.clone()),
        close.send[0].clone(),
        WireMessage::Close(Close { settlement: None }),
        WireMessage::Error(
            ChannelError::PaymentDecreased {
                previous: Amount::from_sat(5),
                proposed: Amount::from_sat(4),
            }
            .to_message(),
        ),
        WireMessage::PaymentAck(PaymentAck {
            amount_paid: ch.paid(),
        }),
    ]
}

#[test]
fn every_message_round_trips_in_binary_and_base64url() {
    let msgs = all_messages();
    let mut types: Vec<u8> = msgs.iter().map(|m| m.type_id()).collect();
    types.dedup();
    assert_eq!(
        types,
        (1..=11).collect::<Vec<_>>(),
        "all eleven message types covered"
    );
    for m in msgs {
        let bytes = m.encode();
        assert_eq!(bytes[0], FORMAT);
        assert_eq!(bytes[1], m.type_id());
        assert_eq!(WireMessage::decode(&bytes).as_ref(), Ok(&m), "{}", m.name());
        let text = m.to_base64url();
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(WireMessage::from_base64url(&text), Ok(m));
    }
}

#[test]
fn every_truncation_and_extension_is_refused() {
    for m in all_messages() {
        let bytes = m.encode();
        for cut in 0..bytes.len() {
            assert!(
                WireMessage::decode(&bytes[..cut]).is_err(),
                "{} truncated to {cut} bytes decoded",
                m.name()
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            WireMessage::decode(&longer),
            Err(DecodeError::TrailingBytes)
        );
    }
}

/// Found by the `wire_message` fuzzer: an ERROR with an unknown code (0) re-encoded as OTHER.
#[test]
fn unknown_error_codes_survive_a_round_trip() {
    let bytes = [FORMAT, 10, 0, 0, 0, 0, 0, 0, 0];
    let msg = WireMessage::decode(&bytes).expect("decodes");
    assert_eq!(msg.encode(), bytes);
}

#[test]
fn malformed_fields_have_typed_errors() {
    assert_eq!(WireMessage::decode(&[]), Err(DecodeError::Truncated));
    assert_eq!(
        WireMessage::decode(&[FORMAT, 0]),
        Err(DecodeError::UnknownType(0))
    );
    assert_eq!(
        WireMessage::decode(&[FORMAT, 12]),
        Err(DecodeError::UnknownType(12))
    );
    assert_eq!(
        WireMessage::decode(&[9, 1]),
        Err(DecodeError::UnknownFormat(9))
    );
    // INITIATE with a key that is not on the curve.
    let mut init = vec![FORMAT, 3, 0x02];
    init.extend([0xff; 32]);
    assert_eq!(
        WireMessage::decode(&init),
        Err(DecodeError::InvalidField("server_key"))
    );
    // PAYMENT_ACK above 21 million BTC.
    let mut ack = vec![FORMAT, 11];
    ack.extend(u64::MAX.to_le_bytes());
    assert_eq!(
        WireMessage::decode(&ack),
        Err(DecodeError::InvalidField("amount_paid"))
    );
    // A length prefix far beyond the limit is refused before anything is allocated.
    let mut close = vec![FORMAT, 9, 1];
    close.extend(u32::MAX.to_le_bytes());
    assert_eq!(
        WireMessage::decode(&close),
        Err(DecodeError::TooLong("settlement"))
    );
    // Option flag other than 0 or 1.
    assert_eq!(
        WireMessage::decode(&[FORMAT, 9, 2]),
        Err(DecodeError::InvalidField("option flag"))
    );
    // Garbage where a transaction should be.
    let mut bad_tx = vec![FORMAT, 9, 1];
    bad_tx.extend(3u32.to_le_bytes());
    bad_tx.extend([1, 2, 3]);
    assert_eq!(
        WireMessage::decode(&bad_tx),
        Err(DecodeError::InvalidField("settlement"))
    );
    assert_eq!(WireMessage::from_base64url("!!"), Err(DecodeError::Base64));
    assert_eq!(
        WireMessage::from_base64url("AQI="),
        Err(DecodeError::Base64),
        "padding refused"
    );
    // An unknown error code from a newer peer still decodes, as OTHER.
    let mut err = WireMessage::Error(ErrorMessage {
        code: ErrorCode::Timeout,
        explanation: String::new(),
        expected_value: None,
    })
    .encode();
    err[2] = 0xff;
    let Ok(WireMessage::Error(e)) = WireMessage::decode(&err) else {
        panic!("decodes")
    };
    assert_eq!(e.code, ErrorCode::Unknown(0xff));
}

#[test]
fn error_codes_are_stable() {
    // The numbers on the wire, written out: bitcoinj's 1-8, then ours. Never renumber.
    let expected = [
        (ErrorCode::Timeout, 1),
        (ErrorCode::SyntaxError, 2),
        (ErrorCode::NoAcceptableVersion, 3),
        (ErrorCode::BadTransaction, 4),
        (ErrorCode::TimeWindowUnacceptable, 5),
        (ErrorCode::ChannelValueTooLarge, 6),
        (ErrorCode::MinPaymentTooLarge, 7),
        (ErrorCode::Other, 8),
        (ErrorCode::BadSignature, 9),
        (ErrorCode::WrongSighash, 10),
        (ErrorCode::PaymentDecreased, 11),
        (ErrorCode::PaymentExceedsValue, 12),
        (ErrorCode::ChannelExpired, 13),
        (ErrorCode::UnexpectedMessage, 14),
        (ErrorCode::ChannelValueTooSmall, 15),
        (ErrorCode::DustOutput, 16),
        (ErrorCode::PaymentTooSmall, 17),
        (ErrorCode::UnknownChannel, 18),
        (ErrorCode::ChannelClosed, 19),
        (ErrorCode::WrongKey, 20),
        (ErrorCode::BadSettlement, 21),
    ];
    assert_eq!(expected.len(), ErrorCode::ALL.len());
    for (code, n) in expected {
        assert_eq!(code.to_u16(), n, "{code:?}");
    }
    assert_eq!(ErrorCode::from_u16(0), ErrorCode::Unknown(0));
    assert_eq!(ErrorCode::from_u16(22).to_u16(), 22);
    for (i, c) in ErrorCode::ALL.iter().enumerate() {
        assert_eq!(usize::from(c.to_u16()), i + 1);
        assert_eq!(ErrorCode::from_u16(c.to_u16()), *c);
    }
}

#[test]
fn refusals_name_amounts_in_sat() {
    let refusal = ChannelError::PaymentTooSmall {
        proposed: Amount::from_sat(5),
        min: Amount::from_sat(1_000),
    };
    assert_eq!(
        refusal.to_message().explanation,
        "payment 5 sat is below the minimum 1000 sat"
    );
    let refusal = ChannelError::MinPaymentTooLarge {
        min_payment: Amount::from_sat(2_000),
        max: Amount::from_sat(500),
    };
    assert_eq!(
        refusal.to_string(),
        "minimum payment 2000 sat is above the accepted 500 sat"
    );
}
