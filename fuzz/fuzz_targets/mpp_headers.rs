//! Any MPP header value: a `WWW-Authenticate` challenge list, an `Authorization: Payment`
//! credential, a `Payment-Receipt`, a challenge's `request`: parsed or refused with a typed
//! error, never a panic; what parses survives its own encoding, and a credential is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trickle_channel::http::mpp::{
    params, ChallengeKey, PaymentChallenge, PaymentCredential, SessionReceipt, SessionRequest,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = params::parse_challenges(text);
    if let Ok(all) = PaymentChallenge::from_header(text) {
        for c in all {
            assert_eq!(
                PaymentChallenge::from_header(&c.to_header()),
                Ok(vec![c.clone()])
            );
            if let Ok(request) = SessionRequest::decode(&c.request) {
                let _ = request.offer();
                assert_eq!(SessionRequest::decode(&request.encode()), Ok(request));
            }
        }
    }
    if let Ok(c) = PaymentCredential::from_header(text) {
        assert_eq!(PaymentCredential::from_header(&c.to_header()), Ok(c.clone()));
        let _ = c.signature(&ChallengeKey::new([8; 32]), &c.challenge.realm, 0);
    }
    if let Ok(r) = SessionReceipt::from_header(text) {
        assert_eq!(SessionReceipt::from_header(&r.to_header()), Ok(r));
    }
});
