//! Any header value: parsed and validated, or refused with a typed error; what parses
//! survives its own encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trickle_channel::http::{PaymentRequired, PaymentResponse, PaymentSignature};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(h) = PaymentRequired::from_header(text) {
        assert_eq!(PaymentRequired::from_header(&h.to_header()), Ok(h));
    }
    if let Ok(h) = PaymentSignature::from_header(text) {
        let _ = h.payload.update();
        assert_eq!(PaymentSignature::from_header(&h.to_header()), Ok(h));
    }
    if let Ok(h) = PaymentResponse::from_header(text) {
        assert_eq!(PaymentResponse::from_header(&h.to_header()), Ok(h));
    }
});
