//! Property tests: random payment sequences keep the money invariants.

mod common;

use bitcoin::Amount;
use common::*;
use proptest::prelude::*;
use trickle_channel::*;

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V1), Just(Version::V2)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// For any sequence of payments (some refused for exceeding the channel), amounts never
    /// decrease, the server's best is the client's latest, no change output is dust, and the
    /// settlement pays the server at least the last acknowledged amount, with outputs plus fee
    /// summing to the channel value — all valid under Bitcoin Core's interpreter.
    #[test]
    fn payments_keep_the_money_invariants(
        version in version(),
        increments in prop::collection::vec(1u64..30_000, 1..40),
        close_by_server in any::<bool>(),
    ) {
        let mut pair = Pair::open(version);
        let value = pair.payer_channel().funding.contract.value;
        let dust = dust_limit(&pair.payer_channel().payout_script);
        let mut last = pair.payee_channel().paid();
        for inc in increments {
            match pair.pay(Amount::from_sat(inc)) {
                Ok(acked) => {
                    prop_assert!(acked >= last + Amount::from_sat(inc) || acked == value);
                    prop_assert!(acked <= value);
                    last = acked;
                }
                Err(e) => {
                    prop_assert_eq!(e.code(), ErrorCode::PaymentExceedsValue);
                    prop_assert!(last + Amount::from_sat(inc) > value);
                }
            }
            let change = pair.payer_channel().latest.client_change;
            prop_assert!(change == Amount::ZERO || change >= dust);
            prop_assert_eq!(pair.payee_channel().paid(), pair.payer_channel().paid());
            prop_assert_eq!(pair.payer_channel().acknowledged, last);
        }
        let step = if close_by_server {
            pair.with_payee(|ctx| pair.payee.close(ctx)).expect("close")
        } else {
            let s = pair.payer.close().expect("close");
            pair.payer = s.state;
            let WireMessage::Close(_) = &s.send[0] else { panic!("CLOSE") };
            pair.with_payee(|ctx| pair.payee.on_message(ctx, s.send[0].clone())).expect("close")
        };
        let settlement = &step.broadcast[0];
        pair.wallet.utxos.verify(settlement).expect("valid under consensus");
        let outputs: Amount = settlement.output.iter().map(|o| o.value).sum();
        let fee = value - outputs;
        let server_out = settlement.output.last().expect("server output");
        prop_assert_eq!(&server_out.script_pubkey, &pair.policy.payout_script);
        prop_assert_eq!(server_out.value + fee, last, "server gets what was acknowledged, minus its fee");
        prop_assert!(settlement.output.iter().all(|o| o.value >= o.script_pubkey.minimal_non_dust()));
    }

    /// Any byte string decodes to a message or a typed error, never a panic; what decodes
    /// re-encodes to the same bytes.
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(msg) = WireMessage::decode(&bytes) {
            prop_assert_eq!(msg.encode(), bytes);
        }
    }

    /// Arbitrary bytes behind a valid header (format and type) exercise every field decoder.
    #[test]
    fn decoding_any_body_never_panics(ty in 0u8..13, body in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut bytes = vec![FORMAT, ty];
        bytes.extend(body);
        if let Ok(msg) = WireMessage::decode(&bytes) {
            prop_assert_eq!(msg.encode(), bytes);
        }
    }

    /// Any header text decodes or fails cleanly.
    #[test]
    fn decoding_arbitrary_header_text_never_panics(text in ".{0,200}") {
        let _ = WireMessage::from_base64url(&text);
    }
}
