//! Any bytes: a message or a typed error; what decodes re-encodes to the same bytes, in both
//! the binary and the header form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trickle_channel::WireMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = WireMessage::decode(data) {
        assert_eq!(msg.encode(), data);
        assert_eq!(WireMessage::from_base64url(&msg.to_base64url()), Ok(msg));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(msg) = WireMessage::from_base64url(text) {
            assert_eq!(msg.to_base64url(), text);
        }
    }
});
