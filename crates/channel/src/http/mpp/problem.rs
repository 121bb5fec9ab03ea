//! Refusals of MPP credentials as RFC 9457 problem details, with the core draft's problem
//! types (`https://paymentauth.org/problems/...`) and Trickle's refusal code as `code`.

use serde::{Deserialize, Serialize};

use crate::http::Refusal;

/// The media type of a problem details body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The base of the core draft's problem type URIs.
const PROBLEMS: &str = "https://paymentauth.org/problems/";

/// The core draft's problem types this method answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemType {
    /// `malformed-credential` (402): the credential does not decode, or a field is invalid.
    MalformedCredential,
    /// `invalid-challenge` (402): the challenge is not one this server issued for this
    /// resource, has expired, was already used, or is no longer the resource's offer.
    InvalidChallenge,
    /// `method-unsupported` (400): a credential for another method or intent.
    MethodUnsupported,
    /// `payment-insufficient` (402): the payment and the channel's credit do not cover the price.
    PaymentInsufficient,
    /// `verification-failed` (402): the payment is not the channel client's, or the channel
    /// refuses it.
    VerificationFailed,
}

impl ProblemType {
    /// The last segment of its URI.
    fn slug(self) -> &'static str {
        match self {
            Self::MalformedCredential => "malformed-credential",
            Self::InvalidChallenge => "invalid-challenge",
            Self::MethodUnsupported => "method-unsupported",
            Self::PaymentInsufficient => "payment-insufficient",
            Self::VerificationFailed => "verification-failed",
        }
    }

    /// Its URI, the problem's `type`.
    pub fn uri(self) -> String {
        format!("{PROBLEMS}{}", self.slug())
    }

    /// Its title, as the draft's problem registry names it.
    pub fn title(self) -> &'static str {
        match self {
            Self::MalformedCredential => "Malformed Credential",
            Self::InvalidChallenge => "Invalid Challenge",
            Self::MethodUnsupported => "Method Unsupported",
            Self::PaymentInsufficient => "Payment Insufficient",
            Self::VerificationFailed => "Verification Failed",
        }
    }

    /// The HTTP status it is answered with.
    pub fn status(self) -> u16 {
        match self {
            Self::MethodUnsupported => 400,
            _ => 402,
        }
    }

    /// The problem type of a payment refused in the order of `docs/protocol.md` section 2.
    pub fn of_refusal(refusal: Refusal) -> Self {
        match refusal {
            Refusal::InvalidHeader | Refusal::InvalidX402Version => Self::MalformedCredential,
            Refusal::UnsupportedScheme => Self::MethodUnsupported,
            Refusal::InvalidPaymentRequirements | Refusal::WrongResource | Refusal::NonceSpent => {
                Self::InvalidChallenge
            }
            Refusal::InsufficientCredit => Self::PaymentInsufficient,
            Refusal::WrongNetwork
            | Refusal::WrongPayee
            | Refusal::BadAuthorization
            | Refusal::Channel(_) => Self::VerificationFailed,
        }
    }
}

/// An RFC 9457 problem details object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// The problem type's URI; `about:blank` for a plain HTTP status.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// The problem type's title (the status phrase for `about:blank`).
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened, for people.
    pub detail: String,
    /// Trickle's reason: a refusal's `errorReason` (`docs/protocol.md` section 5), or
    /// `invalid_challenge` for the challenge checks only MPP has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The id of the fresh challenge sent with the problem, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge_id: Option<String>,
}

impl Problem {
    /// A problem of a draft type.
    pub fn new(problem_type: ProblemType, detail: &str, code: &str) -> Self {
        Self {
            problem_type: problem_type.uri(),
            title: problem_type.title().to_owned(),
            status: problem_type.status(),
            detail: detail.to_owned(),
            code: Some(code.to_owned()),
            challenge_id: None,
        }
    }

    /// A problem that is only its HTTP status (`about:blank`): `title` is the status phrase.
    pub fn blank(status: u16, title: &str, detail: &str, code: &str) -> Self {
        Self {
            problem_type: "about:blank".to_owned(),
            title: title.to_owned(),
            status,
            detail: detail.to_owned(),
            code: Some(code.to_owned()),
            challenge_id: None,
        }
    }

    /// The body.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing this plain struct cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_draft_problem() {
        for refusal in Refusal::all() {
            let t = ProblemType::of_refusal(refusal);
            assert!(t.uri().starts_with(PROBLEMS));
            let problem = Problem::new(t, "why", refusal.as_str());
            let json: serde_json::Value = serde_json::from_slice(&problem.to_json()).expect("json");
            assert_eq!(json["type"], t.uri());
            assert_eq!(json["status"], t.status());
            assert_eq!(json["code"], refusal.as_str());
            assert!(json.get("challengeId").is_none());
        }
        assert_eq!(
            ProblemType::of_refusal(Refusal::InsufficientCredit).uri(),
            "https://paymentauth.org/problems/payment-insufficient"
        );
        assert_eq!(ProblemType::MethodUnsupported.status(), 400);
    }
}
