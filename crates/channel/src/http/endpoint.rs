//! The channel endpoint's JSON bodies (`docs/protocol.md`, "The channel endpoint"), for both
//! sides: what the client POSTs (one channel message, base64url, with the authorization of a
//! request only the client may make), what the payee answers (its session and messages, or one
//! `ERROR`), and a channel's status (`GET {endpoint}/session/{txid}`).

use bitcoin::Amount;
use serde::{Deserialize, Serialize};

use super::sat_string;
use crate::{DecodeError, WireMessage};

/// A message to the endpoint: `POST {endpoint}` to open, `POST {endpoint}/session/{id}` after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRequest {
    /// One channel message, base64url.
    pub message: String,
    /// For a request only the channel's client may make (`CLOSE`, a resume):
    /// [`crate::auth::authorize`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<String>,
}

impl MessageRequest {
    /// `message`, with `authorization` if the request needs one.
    pub fn new(message: &WireMessage, authorization: Option<&str>) -> Self {
        Self {
            message: message.to_base64url(),
            authorization: authorization.map(str::to_owned),
        }
    }

    /// The message, decoded.
    pub fn wire(&self) -> Result<WireMessage, DecodeError> {
        WireMessage::from_base64url(&self.message)
    }
}

/// The endpoint's answer to a [`MessageRequest`]: the payee's messages, base64url; the session
/// the client addresses next (absent on a refusal, which carries one `ERROR`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointReply {
    /// The session id (the contract's txid once the channel is open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The payee's messages, in order.
    pub messages: Vec<String>,
}

impl EndpointReply {
    /// `messages` for `session` (`None` for a refusal).
    pub fn new(session: Option<String>, messages: &[WireMessage]) -> Self {
        Self {
            session,
            messages: messages.iter().map(WireMessage::to_base64url).collect(),
        }
    }

    /// The messages, decoded.
    pub fn wire(&self) -> Result<Vec<WireMessage>, DecodeError> {
        self.messages
            .iter()
            .map(|m| WireMessage::from_base64url(m))
            .collect()
    }
}

/// Where a channel is, as its payee reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Open: it takes payments.
    Ready,
    /// The payee has made its settlement; it takes no more payments.
    Closing,
    /// Settled.
    Closed,
}

/// A channel as its payee holds it (`GET {endpoint}/session/{txid}`, authorized by the
/// client). Only the payee's word: the client trusts none of it for money it has not seen on
/// chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionStatus {
    /// The session id (the contract's txid).
    pub session: String,
    /// Where the channel is.
    pub state: SessionState,
    /// What the payee holds in total, sat.
    #[serde(with = "sat_string")]
    pub paid: Amount,
    /// What it charged of that, sat.
    #[serde(with = "sat_string")]
    pub consumed: Amount,
    /// Paid and not yet consumed, sat.
    #[serde(with = "sat_string")]
    pub credit: Amount,
    /// The contract's value, sat.
    #[serde(with = "sat_string")]
    pub channel_value: Amount,
    /// The contract's expiry (nLockTime encoding).
    pub expiry: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bodies_are_the_protocols_json() {
        let status = SessionStatus {
            session: "ab".into(),
            state: SessionState::Closing,
            paid: Amount::from_sat(30),
            consumed: Amount::from_sat(20),
            credit: Amount::from_sat(10),
            channel_value: Amount::from_sat(50_000),
            expiry: 1_000,
        };
        let json = serde_json::to_value(&status).expect("json");
        assert_eq!(
            json,
            serde_json::json!({ "session": "ab", "state": "closing", "paid": "30", "consumed": "20",
                "credit": "10", "channelValue": "50000", "expiry": 1000 })
        );
        assert_eq!(
            serde_json::from_value::<SessionStatus>(json).ok(),
            Some(status)
        );
        let refusal = EndpointReply::new(None, &[]);
        assert_eq!(
            serde_json::to_string(&refusal).ok().as_deref(),
            Some(r#"{"messages":[]}"#)
        );
        let request: Result<MessageRequest, _> = serde_json::from_str(r#"{"message":"AA"}"#);
        assert_eq!(request.map(|r| r.authorization).ok(), Some(None));
        let unknown: Result<SessionState, _> = serde_json::from_str(r#""open""#);
        assert!(unknown.is_err());
    }
}
