//! The layer's MPP framing (`docs/mpp.md`): the `WWW-Authenticate: Payment` challenge beside
//! every x402 offer, `Authorization: Payment` credentials read into the payment they carry,
//! `Payment-Receipt` on a paid 2xx, problem details on a refusal.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use axum::response::IntoResponse;
use trickle_channel::http::mpp::{
    time, CredentialError, PaymentChallenge, PaymentCredential, Problem, SessionReceipt,
    SessionRequest, INTENT, METHOD, PAYMENT_RECEIPT, PROBLEM_JSON,
};
use trickle_channel::http::{PaymentRequirements, PaymentResponse, PaymentSignature, Resource};

use crate::payee::Payee;

/// How a request presented its payment, and so how the answer tells what became of it.
pub(crate) enum Framing {
    /// `PAYMENT-SIGNATURE`: `PAYMENT-RESPONSE` on every answer.
    X402,
    /// `Authorization: Payment`, answering the challenge of this id: `Payment-Receipt` on a
    /// paid 2xx, problem details on a refusal.
    Mpp(String),
}

/// The protection space of an origin (`scheme://host[:port]`): its host and port.
pub(crate) fn realm(origin: &str) -> &str {
    origin.split_once("://").map_or(origin, |(_, host)| host)
}

/// The `Authorization` values of the `Payment` scheme; the site's own schemes are not ours.
pub(crate) fn credentials(headers: &HeaderMap) -> Vec<HeaderValue> {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter(|v| is_payment(v))
        .cloned()
        .collect()
}

fn is_payment(value: &HeaderValue) -> bool {
    // Judged on the text as far as it is text: a `Payment` value with stray bytes is still ours
    // (and refused as malformed), not passed to the site.
    trickle_channel::http::mpp::is_payment_scheme(&String::from_utf8_lossy(value.as_bytes()))
}

/// Removes the `Payment` credentials: they are the payee's, not the site's, and bearer secrets
/// the site has no use for. Other `Authorization` values stay.
pub(crate) fn strip(headers: &mut HeaderMap) {
    let others: Vec<HeaderValue> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter(|v| !is_payment(v))
        .cloned()
        .collect();
    headers.remove(header::AUTHORIZATION);
    for value in others {
        headers.append(header::AUTHORIZATION, value);
    }
}

/// Reads a credential: checked against this server's challenge key, the request's realm and
/// the time, it is the payment it carries and the id of the challenge it answers.
pub(crate) fn read(
    payee: &Payee,
    value: &HeaderValue,
    realm: &str,
) -> Result<(PaymentSignature, String), CredentialError> {
    let text = value
        .to_str()
        .map_err(|_| CredentialError::Malformed("not ASCII".into()))?;
    let credential = PaymentCredential::from_header(text)?;
    let sig = credential.signature(payee.challenge_key(), realm, payee.now())?;
    Ok((sig, credential.challenge.id))
}

/// The challenge of the x402 offer `offer` for `resource`, expiring with its nonce.
pub(crate) fn challenge(
    payee: &Payee,
    realm: &str,
    resource: &Resource,
    offer: &PaymentRequirements,
) -> PaymentChallenge {
    let life = u64::from(offer.max_timeout_seconds);
    let mut challenge = PaymentChallenge {
        id: String::new(),
        realm: realm.to_owned(),
        method: METHOD.to_owned(),
        intent: INTENT.to_owned(),
        request: SessionRequest::new(resource, offer).encode(),
        expires: Some(time::timestamp(payee.now().saturating_add(life))),
        description: None,
        digest: None,
        opaque: None,
    };
    payee.challenge_key().bind(&mut challenge);
    challenge
}

/// Adds the `Payment-Receipt` of `receipt` to a 2xx answer that paid (or reloaded) the
/// challenge `challenge_id`. Nothing on any other answer: the draft sends receipts on success
/// only. Such an answer is private to the client (`Cache-Control: private`, unless it says
/// `private` or `no-store` already).
pub(crate) fn attach_receipt(
    payee: &Payee,
    resp: &mut Response<Body>,
    challenge_id: &str,
    receipt: &PaymentResponse,
) {
    let Some(channel_receipt) = receipt.receipt.clone() else {
        return;
    };
    if !(receipt.success && resp.status().is_success()) {
        return;
    }
    let value = SessionReceipt::new(
        channel_receipt,
        receipt.transaction,
        challenge_id,
        payee.now(),
    )
    .to_header();
    let Ok(value) = HeaderValue::from_str(&value) else {
        return;
    };
    let headers = resp.headers_mut();
    headers.insert(PAYMENT_RECEIPT, value);
    let private = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| {
            let d = d.trim();
            d.eq_ignore_ascii_case("private") || d.eq_ignore_ascii_case("no-store")
        });
    if !private {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    }
}

/// A problem details answer.
pub(crate) fn problem_response(problem: &Problem) -> Response<Body> {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::PAYMENT_REQUIRED);
    (
        status,
        [(header::CONTENT_TYPE, PROBLEM_JSON)],
        problem.to_json(),
    )
        .into_response()
}

/// The answer to a request carrying a payment twice (`PAYMENT-SIGNATURE` and `Authorization:
/// Payment`, or two credentials): 400, nothing charged, the site not asked.
pub(crate) fn two_payments() -> Response<Body> {
    problem_response(&Problem::blank(
        400,
        "Bad Request",
        "a request carries one payment: PAYMENT-SIGNATURE or one Authorization: Payment",
        trickle_channel::http::Refusal::InvalidHeader.as_str(),
    ))
}

/// A 503's problem (`about:blank`), with the refusal code x402 would send.
pub(crate) fn unavailable(detail: &str, code: &str) -> Problem {
    Problem::blank(503, "Service Unavailable", detail, code)
}
