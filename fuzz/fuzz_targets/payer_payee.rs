//! Drives a payer and a payee through fuzzer-chosen payments, message drops, duplicates,
//! reorders and payer restarts, checking the money invariants after every step and a
//! consensus-valid settlement at the end.
#![no_main]

#[path = "../../crates/channel/tests/common/mod.rs"]
mod common;

use std::collections::VecDeque;

use bitcoin::Amount;
use common::{Pair, TIP};
use libfuzzer_sys::fuzz_target;
use trickle_channel::{PayeeState, PayerState, Version, WireMessage};

fn deliver_to_payee(pair: &mut Pair, msg: WireMessage, to_payer: &mut VecDeque<WireMessage>) {
    let result = match &msg {
        WireMessage::ClientVersion(hello) => pair.payee.resume(hello),
        _ => pair.with_payee(|ctx| pair.payee.on_message(ctx, msg.clone())),
    };
    match result {
        Ok(step) => {
            pair.payee = step.state;
            to_payer.extend(step.send);
        }
        // A refusal leaves the payee as it was; the payer learns of it.
        Err(e) => to_payer.push_back(WireMessage::Error(e.to_message())),
    }
}

fn deliver_to_payer(pair: &mut Pair, msg: WireMessage, to_payee: &mut VecDeque<WireMessage>) {
    if let Ok(step) = pair.with_payer(|ctx| pair.payer.on_message(ctx, msg)) {
        pair.payer = step.state;
        to_payee.extend(step.send);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, ops)) = data.split_first() else {
        return;
    };
    let mut pair = Pair::open(if first & 1 == 0 { Version::V1 } else { Version::V2 });
    pair.tip = TIP;
    let value = pair.payer_channel().funding.contract.value;
    let mut to_payee = VecDeque::new();
    let mut to_payer = VecDeque::new();
    let (mut payer_paid, mut payee_paid) = (pair.payer_channel().paid(), pair.payee_channel().paid());
    for chunk in ops.chunks(3).take(200) {
        let arg = u64::from(*chunk.get(1).unwrap_or(&0)) << 8 | u64::from(*chunk.get(2).unwrap_or(&0));
        match chunk[0] % 8 {
            0 => {
                if let Ok(step) = pair.with_payer(|ctx| pair.payer.pay(ctx, Amount::from_sat(arg * 8))) {
                    pair.payer = step.state;
                    to_payee.extend(step.send);
                }
            }
            1 => {
                if let Some(m) = to_payee.pop_front() {
                    deliver_to_payee(&mut pair, m, &mut to_payer);
                }
            }
            2 => {
                to_payee.pop_front();
            }
            3 => {
                if let Some(m) = to_payee.front().cloned() {
                    deliver_to_payee(&mut pair, m, &mut to_payer);
                }
            }
            4 => {
                if let Some(m) = to_payer.pop_front() {
                    deliver_to_payer(&mut pair, m, &mut to_payee);
                }
            }
            5 => {
                to_payer.pop_front();
            }
            6 => {
                // The payer restarts: in-flight messages are lost, the channel is resumed.
                to_payee.clear();
                to_payer.clear();
                if let Ok(step) = pair.payer.resume() {
                    pair.payer = step.state;
                    to_payee.extend(step.send);
                }
            }
            _ => {
                if let Some(m) = to_payee.pop_back() {
                    deliver_to_payee(&mut pair, m, &mut to_payer);
                }
            }
        }
        let payer = pair.payer_channel();
        let payee = pair.payee_channel();
        assert_eq!(payer.funding.contract.value, value);
        assert!(payer.paid() >= payer_paid, "payer total never decreases");
        assert!(payee.paid() >= payee_paid, "payee total never decreases");
        assert!(payee.paid() <= payer.paid(), "payee never holds more than was signed");
        assert!(payer.acknowledged <= payee.paid(), "acks come from the payee");
        let change = payer.latest.client_change;
        assert!(change == Amount::ZERO || change >= payer.payout_script.minimal_non_dust());
        payer_paid = payer.paid();
        payee_paid = payee.paid();
    }
    let step = pair.with_payee(|ctx| pair.payee.close(ctx)).expect("payee can always close");
    let PayeeState::Closing { settlement, .. } = &step.state else {
        panic!("closing")
    };
    pair.wallet.utxos.verify(settlement).expect("settlement valid under consensus");
    let fee = value - settlement.output.iter().map(|o| o.value).sum::<Amount>();
    assert_eq!(settlement.output.last().expect("server output").value + fee, payee_paid);
    let _ = PayerState::name(&pair.payer);
});
