//! MPP framing (docs/mpp.md): the challenge, credential and receipt of the examples in
//! `tests/vectors/http.json`, their round trips, and the checks a credential must pass.

mod common;

use bitcoin::Amount;
use common::examples::{self, all_examples, CHALLENGE_KEY, EXPIRES, REALM};
use proptest::prelude::*;
use trickle_channel::http::mpp::*;
use trickle_channel::http::*;

fn key() -> ChallengeKey {
    ChallengeKey::new(CHALLENGE_KEY)
}

#[test]
fn the_challenge_is_the_x402_offer() {
    let (required, ..) = all_examples();
    let challenge = examples::mpp_challenge(&required);
    let header = challenge.to_header();
    assert!(header.starts_with("Payment id=\""), "{header}");
    assert_eq!(
        PaymentChallenge::from_header(&header),
        Ok(vec![challenge.clone()])
    );
    assert!(key().verify(&challenge));
    let request = SessionRequest::decode(&challenge.request).expect("request");
    assert_eq!(
        request.offer(),
        Ok((required.resource.clone(), required.accepts[0].clone()))
    );
    assert_eq!(challenge.expires.as_deref(), Some("2023-11-14T22:18:20Z"));
    // Beside other schemes' and methods' challenges, in one value or several.
    let mut tempo = challenge.clone();
    tempo.method = "tempo".into();
    let value = format!(
        "Basic realm=\"x\", {}, {header}",
        tempo
            .to_header()
            .to_lowercase()
            .replacen("payment", "PAYMENT", 1)
    );
    let all = PaymentChallenge::from_header(&value).expect("parses");
    assert_eq!(all.len(), 2);
    assert!(!all[0].is_ours() && all[1].is_ours());
    assert_eq!(all[1], challenge);
}

#[test]
fn a_payment_challenge_needs_its_parameters() {
    for bad in [
        "Payment realm=\"r\", method=\"trickle\", intent=\"session\", request=\"e30\"",
        "Payment id=\"\", realm=\"r\", method=\"trickle\", intent=\"session\", request=\"e30\"",
        "Payment id=\"i\", method=\"trickle\", intent=\"session\", request=\"e30\"",
        "Payment id=\"i\", realm=\"r\", method=\"trickle\", intent=\"session\"",
        "Payment id=\"i\" realm=\"r\"",
    ] {
        assert!(PaymentChallenge::from_header(bad).is_err(), "{bad}");
    }
    // Another scheme alone: no Payment challenge, no error.
    assert_eq!(
        PaymentChallenge::from_header("Basic realm=\"x\""),
        Ok(vec![])
    );
}

#[test]
fn the_credential_is_the_x402_payment() {
    let (required, signature, pre_armed, _) = all_examples();
    let challenge = examples::mpp_challenge(&required);
    let credential = examples::mpp_credential(&challenge, &signature);
    let header = credential.to_header();
    assert!(header.starts_with("Payment ") && !header.contains('='));
    assert_eq!(
        PaymentCredential::from_header(&header),
        Ok(credential.clone())
    );
    // Any case of the scheme, padding or not.
    let token = header.trim_start_matches("Payment ");
    let padded = format!("pAyMeNt {token}{}", "=".repeat((4 - token.len() % 4) % 4));
    assert_eq!(
        PaymentCredential::from_header(&padded),
        Ok(credential.clone())
    );
    assert_eq!(credential.signature(&key(), REALM, EXPIRES), Ok(signature));

    // A pre-armed payment (a ticket) is x402's extension only.
    let ticketed = examples::mpp_credential(&challenge, &pre_armed);
    assert!(matches!(
        ticketed.signature(&key(), REALM, EXPIRES),
        Err(CredentialError::Malformed(_))
    ));
}

#[test]
fn a_credential_is_checked_before_its_payment() {
    let (required, signature, ..) = all_examples();
    let challenge = examples::mpp_challenge(&required);
    let good = examples::mpp_credential(&challenge, &signature);
    let check = |c: &PaymentCredential, realm: &str, now: u64| c.signature(&key(), realm, now);
    let challenge_error = |r: Result<PaymentSignature, CredentialError>| match r {
        Err(e @ CredentialError::Challenge(_)) => {
            assert_eq!(e.problem_type(), ProblemType::InvalidChallenge);
            assert_eq!(e.code(), "invalid_challenge");
        }
        other => panic!("expected an invalid challenge, got {other:?}"),
    };
    challenge_error(check(&good, "127.0.0.1:8081", EXPIRES));
    challenge_error(check(&good, REALM, EXPIRES + 1));
    // Good until the second it expires, included.
    assert_eq!(check(&good, REALM, EXPIRES), Ok(signature));
}

#[test]
fn changed_challenges_are_not_ours() {
    let (required, signature, ..) = all_examples();
    let challenge = examples::mpp_challenge(&required);
    let changes: [fn(&mut PaymentChallenge); 6] = [
        |c| c.realm.push('x'),
        |c| c.request.push('A'),
        |c| c.expires = Some("2030-01-01T00:00:00Z".into()),
        |c| c.expires = None,
        |c| c.digest = Some("sha-256=:AAAA:".into()),
        |c| c.id = "x".into(),
    ];
    for change in changes {
        let mut c = challenge.clone();
        change(&mut c);
        assert!(!key().verify(&c), "{c:?}");
        let credential = examples::mpp_credential(&c, &signature);
        let realm = c.realm.clone();
        assert!(matches!(
            credential.signature(&key(), &realm, EXPIRES),
            Err(CredentialError::Challenge(_))
        ));
    }
    // Another method or intent is told apart (method-unsupported, 400).
    for (method, intent) in [("tempo", "session"), ("trickle", "charge")] {
        let mut c = challenge.clone();
        c.method = method.into();
        c.intent = intent.into();
        let e = examples::mpp_credential(&c, &signature)
            .signature(&key(), REALM, EXPIRES)
            .expect_err("refused");
        assert_eq!(e.problem_type(), ProblemType::MethodUnsupported);
        assert_eq!(e.problem().status, 400);
    }
}

#[test]
fn the_receipt_round_trips() {
    let (required, _, _, response) = all_examples();
    let challenge = examples::mpp_challenge(&required);
    let receipt = examples::mpp_receipt(&response, &challenge);
    assert_eq!(receipt.timestamp, "2023-11-14T22:13:21Z");
    assert_eq!(receipt.reference, receipt.receipt.channel.to_string());
    assert_eq!(receipt.receipt.consumed, Amount::from_sat(10));
    let header = receipt.to_header();
    assert_eq!(SessionReceipt::from_header(&header), Ok(receipt.clone()));
    let mut failed = serde_json::to_value(&receipt).expect("json");
    failed["status"] = "failure".into();
    let value = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        failed.to_string(),
    );
    assert!(SessionReceipt::from_header(&value).is_err());
}

proptest! {
    #[test]
    fn any_authorization_value_is_read_or_refused(value in "\\PC{0,300}") {
        if let Ok(c) = PaymentCredential::from_header(&value) {
            let _ = c.signature(&key(), REALM, EXPIRES);
        }
    }

    #[test]
    fn any_challenge_value_is_read_or_refused(value in "[ -~]{0,300}") {
        if let Ok(all) = PaymentChallenge::from_header(&value) {
            for c in all {
                prop_assert_eq!(PaymentChallenge::from_header(&c.to_header()), Ok(vec![c.clone()]));
            }
        }
    }
}
