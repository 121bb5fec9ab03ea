//! The client's side of MPP framing: the offer a challenge makes, in x402's terms, so that a
//! client answers it as it answers `PAYMENT-REQUIRED`; the credential of that answer; and a
//! receipt as the settlement response it stands for.

use super::{PaymentChallenge, PaymentCredential, SessionReceipt, SessionRequest};
use crate::http::{HeaderError, PaymentRequired, PaymentResponse, PaymentSignature, X402_VERSION};

impl PaymentChallenge {
    /// The first challenge of this method and intent in a `WWW-Authenticate` value, if any
    /// (others, and values that do not parse, are another method's business).
    pub fn ours_in(www_authenticate: &str) -> Option<Self> {
        Self::from_header(www_authenticate)
            .ok()?
            .into_iter()
            .find(Self::is_ours)
    }

    /// The `PAYMENT-REQUIRED` value of this challenge's offer: the same resource and offer
    /// (`SessionRequest::offer` validates it).
    pub fn offer_header(&self) -> Result<String, HeaderError> {
        let (resource, offer) = SessionRequest::decode(&self.request)?.offer()?;
        Ok(PaymentRequired {
            x402_version: X402_VERSION,
            error: None,
            resource,
            accepts: vec![offer],
        }
        .to_header())
    }
}

impl PaymentCredential {
    /// The credential answering `challenge` with the payment of the `PAYMENT-SIGNATURE`
    /// value `signature` (made for [`PaymentChallenge::offer_header`]).
    pub fn answering(challenge: PaymentChallenge, signature: &str) -> Result<Self, HeaderError> {
        let signature = PaymentSignature::from_header(signature)?;
        Ok(Self {
            challenge,
            source: None,
            payload: signature.payload,
        })
    }
}

impl SessionReceipt {
    /// The settlement response this receipt stands for, on `network` (CAIP-2): a success,
    /// with the same receipt.
    pub fn as_response(&self, network: &str) -> PaymentResponse {
        PaymentResponse {
            success: true,
            error_reason: None,
            network: network.to_owned(),
            payer: None,
            transaction: self.transaction,
            receipt: Some(self.receipt.clone()),
        }
    }
}
