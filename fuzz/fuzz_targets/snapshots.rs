//! Any stored bytes: a snapshot of a payer or payee state, or an error — never a panic, and
//! a loaded state answers queries without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trickle_channel::{PayeeState, PayerState, Snapshot};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = serde_json::from_slice::<Snapshot<PayerState>>(data) {
        if let Ok(state) = s.into_state() {
            let _ = state.name();
            if let Some(ch) = state.committed_channel() {
                let _ = (ch.paid(), ch.remaining());
            }
            let _ = state.resend_latest();
            let json = serde_json::to_vec(&Snapshot::new(state.clone())).expect("serializes");
            let back: Snapshot<PayerState> = serde_json::from_slice(&json).expect("reloads");
            assert_eq!(back.state, state);
        }
    }
    if let Ok(s) = serde_json::from_slice::<Snapshot<PayeeState>>(data) {
        if let Ok(state) = s.into_state() {
            let _ = state.name();
            if let Some(ch) = state.channel() {
                let _ = ch.paid();
            }
            let json = serde_json::to_vec(&Snapshot::new(state.clone())).expect("serializes");
            let back: Snapshot<PayeeState> = serde_json::from_slice(&json).expect("reloads");
            assert_eq!(back.state, state);
        }
    }
});
