//! Drives a payer and a payee through fuzzer-chosen payments, message drops, duplicates,
//! reorders and payer restarts, and through `PAYMENT-SIGNATURE` headers decided by
//! `trickle_channel::charge::decide` (the server's own decision) and applied as the server
//! applies them; checks the money invariants after every step — a header built without the
//! client's key never moves money or serves anything, a ticket is charged at most once — and a
//! consensus-valid settlement at the end.
#![no_main]

#[path = "../../crates/channel/tests/common/mod.rs"]
mod common;

use std::collections::{HashMap, VecDeque};

use bitcoin::Amount;
use common::{key, pubkey, Pair, CLIENT, SERVER, TIP};
use libfuzzer_sys::fuzz_target;
use trickle_channel::auth::{authorize_payment, PaymentKey};
use trickle_channel::charge::{decide, ChargeContext, Decision, PricedRequest, Stored};
use trickle_channel::credit::{Ledger, NonceKey};
use trickle_channel::http::{
    caip2, ChannelPayment, ChannelTerms, PaymentRequirements, PaymentSignature, Resource, asset,
    SCHEME, X402_VERSION,
};
use trickle_channel::{PayeeState, PayerState, Version, WireMessage};

/// What the server's store holds besides the channel state.
#[derive(Default)]
struct Books {
    ledger: Ledger,
    /// Charged tickets and the URL each paid for.
    tickets: HashMap<String, String>,
}

const URLS: [&str; 2] = ["http://site.example/a", "http://site.example/b"];
const NOW: u64 = 1_700_000_000;

/// A header for the payer's channel, chosen by `arg`: with or without its latest update, a
/// nonce or one of a few tickets, one of two URLs; `forged` headers are authorised with
/// another key, carry a garbled authorisation, or none.
fn header(pair: &Pair, nonces: &NonceKey, arg: u64, forged: bool) -> (PaymentSignature, &'static str) {
    let ch = pair.payer_channel();
    let url = URLS[(arg & 1) as usize];
    let accepted = PaymentRequirements {
        scheme: SCHEME.into(),
        network: caip2(bitcoin::Network::Regtest),
        amount: Amount::from_sat(10),
        asset: asset(&caip2(bitcoin::Network::Regtest)),
        pay_to: pubkey(&key(SERVER)),
        max_timeout_seconds: 300,
        extra: ChannelTerms {
            endpoint: "http://site.example/channel".into(),
            versions: vec![2, 1],
            min_channel_value: Amount::from_sat(10_000),
            max_channel_value: Amount::from_sat(1_000_000),
            min_payment: Amount::from_sat(1_000),
            max_expiry_blocks: 1_008,
            nonce: nonces.issue([7; 16], NOW, url),
            channel_state: None,
        },
    };
    let with_nonce = arg & 4 != 0;
    let mut sig = PaymentSignature {
        x402_version: X402_VERSION,
        resource: Resource { url: url.into(), description: String::new(), mime_type: String::new() },
        payload: ChannelPayment {
            channel: ch.contract_txid(),
            amount: ch.paid(),
            update: (arg & 2 != 0).then(|| WireMessage::UpdatePayment(ch.latest.clone()).to_base64url()),
            nonce: with_nonce.then(|| accepted.extra.nonce.clone()),
            ticket: None,
            authorization: None,
        },
        accepted,
    };
    // Few distinct tickets, so that the fuzzer replays them.
    let ticket = [((arg >> 3) & 3) as u8; 16];
    if !forged {
        authorize_payment(&mut sig, &key(CLIENT), ticket);
        return (sig, url);
    }
    match (arg >> 5) % 3 {
        0 => authorize_payment(&mut sig, &key(SERVER), ticket),
        1 => {
            authorize_payment(&mut sig, &key(CLIENT), ticket);
            // One field changed after authorising.
            sig.payload.amount = sig.payload.amount + Amount::from_sat(1);
        }
        _ => sig.payload.ticket = (!with_nonce).then(|| "BQUFBQUFBQUFBQUFBQUFBQ".into()),
    }
    (sig, url)
}

/// Presents `sig` at `url` as the server does: decide, then (for a charge) store the outcome
/// the site's answer leads to. Returns whether money moved or the resource was served.
fn present(pair: &mut Pair, books: &mut Books, nonces: &NonceKey, sig: &PaymentSignature, url: &str, arg: u64) -> bool {
    let server_key = pubkey(&key(SERVER));
    let network = caip2(bitcoin::Network::Regtest);
    let ticket = sig.payload.nonce.clone().or(sig.payload.ticket.clone()).unwrap_or_default();
    // The offer the header accepted: a payment answering it always matches it.
    let request = PricedRequest { url, safe: arg & 64 == 0, price: Amount::from_sat(arg >> 8), offer: Some(&sig.accepted) };
    let decided = pair.with_payee(|payee| {
        let ctx = ChargeContext {
            payee,
            server_key: &server_key,
            payment_key: &|txid, client| PaymentKey::derive(&key(SERVER), client, txid),
            network: &network,
            nonces,
            now: NOW,
            offer_life: 300,
            unconfirmed_allowance: None,
        };
        let stored = Stored {
            state: &pair.payee,
            ledger: books.ledger,
            ticket_charged_at: books.tickets.get(&ticket).map(String::as_str),
        };
        decide(Some(stored), sig, &request, &ctx)
    });
    match decided {
        Ok(Decision::Reload) => {
            assert_eq!(books.tickets.get(&ticket).map(String::as_str), Some(url), "a reload is of the URL the ticket paid");
            true
        }
        Ok(Decision::Serve(charge)) => {
            assert!(!books.tickets.contains_key(&ticket), "a charged ticket is never charged again");
            // The site answers a success or not (fuzzer's choice).
            let served = arg & 128 == 0;
            books.ledger = if served { charge.charged } else { charge.credited };
            if served && charge.ticket.is_some() {
                books.tickets.insert(ticket, url.to_owned());
            }
            pair.payee = charge.state.clone();
            true
        }
        Err(refused) => {
            if refused.keep {
                if let Some(account) = refused.account {
                    (pair.payee, books.ledger) = *account;
                }
                return true;
            }
            false
        }
    }
}

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
    let nonces = NonceKey::new([9; 32]);
    let mut books = Books { ledger: Ledger::default().with_paid(payee_paid), ..Books::default() };
    for chunk in ops.chunks(3).take(200) {
        let arg = u64::from(*chunk.get(1).unwrap_or(&0)) << 8 | u64::from(*chunk.get(2).unwrap_or(&0));
        match chunk[0] % 10 {
            8 => {
                let (sig, url) = header(&pair, &nonces, arg, false);
                present(&mut pair, &mut books, &nonces, &sig, url, arg);
            }
            9 => {
                let before = (pair.payee.clone(), books.ledger, books.tickets.len());
                let (sig, url) = header(&pair, &nonces, arg, true);
                assert!(
                    !present(&mut pair, &mut books, &nonces, &sig, url, arg),
                    "a header built without the client's key moves no money and serves nothing"
                );
                assert!(before == (pair.payee.clone(), books.ledger, books.tickets.len()));
            }
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
        assert!(books.ledger.consumed <= books.ledger.paid, "nothing is consumed that was not paid");
        assert!(books.ledger.paid <= payee.paid(), "the ledger counts only payments held");
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
