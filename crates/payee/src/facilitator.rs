//! An x402 facilitator for Trickle's scheme (`batch-settlement` on `bip122:`) (`docs/facilitator.md`): `GET /supported`,
//! `POST /verify` (decides, charges nothing), `POST /settle` (decides again and stores the
//! charge with the same compare-and-swap write as the layer), and `POST /nonce`, which gives a
//! resource server the nonce of an offer for a URL. x402's flow is verify, handler, settle: a
//! handler that fails is never settled, so it is never charged.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use bitcoin::Amount;
use serde::Deserialize;
use serde_json::{json, Value};
use trickle_channel::charge::{Decision, PricedRequest};
use trickle_channel::credit::NONCE_RANDOM_LEN;
use trickle_channel::http::{
    asset, caip2, PaymentRequirements, PaymentSignature, Refusal, SCHEME, X402_VERSION,
};

use crate::charge::Failure;
use crate::payee::{random, Payee, MAX_ATTEMPTS};
use crate::store::StoreError;

/// Largest `/verify` or `/settle` body read; larger ones get 413. A payment header is at most
/// 16 KiB of base64; its requirements are smaller.
pub const MAX_FACILITATOR_BODY: usize = 64 * 1024;

/// The facilitator's routes, at the root of the router (mount it on its own listener).
pub(crate) fn router(payee: Payee) -> Router {
    Router::new()
        .route("/supported", get(supported))
        .route("/nonce", post(nonce))
        .route("/verify", post(verify))
        .route("/settle", post(settle))
        // The body is read by the handlers below, which answer an oversize one in x402's form.
        .layer(DefaultBodyLimit::disable())
        .with_state(payee)
}

async fn supported(State(payee): State<Payee>) -> Response {
    let config = payee.config();
    let policy = &config.policy;
    let network = caip2(config.network);
    let versions: Vec<u8> = [(policy.accept_v2, 2), (policy.accept_v1, 1)]
        .into_iter()
        .filter_map(|(on, v)| on.then_some(v))
        .collect();
    let pay_to = payee.server_key().to_string();
    answer(
        StatusCode::OK,
        &json!({
            "kinds": [{
                "x402Version": X402_VERSION,
                "scheme": SCHEME,
                "network": network,
                "extra": {
                    "payTo": pay_to,
                    "asset": asset(&network),
                    "endpointPath": config.endpoint_path,
                    "versions": versions,
                    "minChannelValue": policy.min_channel_value.to_sat().to_string(),
                    "maxChannelValue": policy.max_channel_value.to_sat().to_string(),
                    "minPayment": policy.min_payment.to_sat().to_string(),
                    "maxExpiryBlocks": policy.max_expiry_blocks,
                    "maxTimeoutSeconds": config.offer_timeout_secs,
                },
            }],
            "extensions": [],
            "signers": { network: [pay_to] },
        }),
    )
}

/// A JSON answer.
fn answer(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct NonceRequest {
    resource: String,
}

/// A fresh nonce for an offer of `resource` (the resource server's absolute URL).
async fn nonce(State(payee): State<Payee>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<NonceRequest>(&body) else {
        let why = json!({ "error": "body must be {\"resource\": <absolute URL>}" });
        return answer(StatusCode::BAD_REQUEST, &why);
    };
    let Ok(random) = random::<NONCE_RANDOM_LEN>() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let nonce = payee
        .nonce_key()
        .issue(random, payee.now(), &request.resource);
    answer(StatusCode::OK, &json!({ "nonce": nonce }))
}

/// A `/verify` or `/settle` body: x402's `{x402Version, paymentPayload, paymentRequirements}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    payment_payload: Value,
    payment_requirements: Value,
}

/// Why a request was not taken, in x402's terms.
struct Invalid {
    status: StatusCode,
    reason: String,
    message: String,
    /// The settle response our receipt would carry, when the channel is known.
    response: Option<Value>,
}

impl Invalid {
    fn new(status: StatusCode, reason: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.to_owned(),
            message: message.into(),
            response: None,
        }
    }
}

/// What both routes check first: the body, the payment and the resource it is for.
struct Checked {
    sig: PaymentSignature,
    requirements: PaymentRequirements,
    /// The URL the resource server is serving: the requirements' `extra.resource` (as x402 v1
    /// named it), else the payment's `resource.url`. A pre-armed payment names only the site,
    /// so its resource server must say which URL it serves.
    url: String,
}

fn read(body: &[u8]) -> Result<Checked, Invalid> {
    if body.len() > MAX_FACILITATOR_BODY {
        return Err(Invalid::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_payload",
            format!("body is larger than {MAX_FACILITATOR_BODY} bytes"),
        ));
    }
    let bad = |why: String| Invalid::new(StatusCode::BAD_REQUEST, "invalid_payload", why);
    let body: Body = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    // The payment is read exactly as the `PAYMENT-SIGNATURE` header it came in.
    let json = serde_json::to_vec(&body.payment_payload).map_err(|e| bad(e.to_string()))?;
    let header = base64::engine::general_purpose::STANDARD.encode(json);
    let sig = PaymentSignature::from_header(&header).map_err(|e| Invalid {
        status: StatusCode::OK,
        reason: e.refusal().as_str().to_owned(),
        message: e.to_string(),
        response: None,
    })?;
    let served = body.payment_requirements["extra"]["resource"].as_str();
    let url = served.map_or_else(|| sig.resource.url.clone(), str::to_owned);
    let requirements: PaymentRequirements = serde_json::from_value(body.payment_requirements)
        .map_err(|e| Invalid {
            status: StatusCode::OK,
            reason: Refusal::InvalidPaymentRequirements.as_str().to_owned(),
            message: format!("paymentRequirements: {e}"),
            response: None,
        })?;
    Ok(Checked {
        sig,
        requirements,
        url,
    })
}

impl Payee {
    /// Decides on a checked payment, as the layer does for a `GET`: `Ok` with what to store.
    async fn facilitate(&self, checked: &Checked, settle: bool) -> Result<Value, Invalid> {
        let (sig, requirements) = (&checked.sig, &checked.requirements);
        let url = checked.url.as_str();
        let refused = |reason: Refusal, why: &str| {
            Invalid::new(StatusCode::OK, reason.as_str(), why.to_owned())
        };
        if requirements.network != caip2(self.config().network) {
            return Err(refused(
                Refusal::WrongNetwork,
                "requirements for another network",
            ));
        }
        if requirements.pay_to != self.server_key() {
            return Err(refused(
                Refusal::WrongPayee,
                "requirements for another payee key",
            ));
        }
        // The resource server's requirements carry the nonce this facilitator issued for the
        // URL it is serving: the payment is decided for that URL.
        if self
            .nonce_key()
            .check(&requirements.extra.nonce, url)
            .is_err()
        {
            return Err(refused(
                Refusal::WrongResource,
                "the requirements' nonce was not issued for the resource served",
            ));
        }
        let request = PricedRequest {
            url,
            // x402 settles after the handler ran, as the layer does for a safe request.
            safe: true,
            price: requirements.amount,
            offer: Some(requirements),
        };
        for attempt in 0..MAX_ATTEMPTS {
            let (stored, charge) = match self.decide(sig, &request, attempt > 0).await {
                Ok((stored, Decision::Reload)) => {
                    return Ok(receipt_json(&self.response(
                        &stored.state,
                        stored.ledger,
                        Amount::ZERO,
                        None,
                    )))
                }
                Ok((stored, Decision::Serve(charge))) => (stored, charge),
                Err(failure) => return Err(failed(failure)),
            };
            if !settle {
                let ledger = charge.credited;
                return Ok(receipt_json(&self.response(
                    &charge.state,
                    ledger,
                    Amount::ZERO,
                    None,
                )));
            }
            match self.store_charge(&stored, &charge, true, &request).await {
                Ok(Some(receipt)) => return Ok(receipt_json(&receipt)),
                Ok(None) => continue,
                Err(e) => return Err(failed(Failure::Store(e))),
            }
        }
        Err(failed(Failure::Store(StoreError::Conflict)))
    }
}

fn receipt_json(response: &trickle_channel::http::PaymentResponse) -> Value {
    serde_json::to_value(response).unwrap_or_default()
}

fn failed(failure: Failure) -> Invalid {
    match failure {
        Failure::Refused(r) => Invalid {
            status: StatusCode::OK,
            reason: r.reason.as_str().to_owned(),
            message: r.why,
            response: Some(receipt_json(&r.response)),
        },
        Failure::Unconfirmed(response) => Invalid {
            status: StatusCode::OK,
            reason: crate::CONTRACT_UNCONFIRMED.to_owned(),
            message: "the channel's contract is not confirmed yet".to_owned(),
            response: Some(receipt_json(&response)),
        },
        Failure::Store(e) => Invalid::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unexpected_settle_error",
            format!("payment storage is unavailable; nothing was charged ({e})"),
        ),
    }
}

async fn verify(State(payee): State<Payee>, body: Bytes) -> Response {
    let result = match read(&body) {
        Ok(checked) => payee.facilitate(&checked, false).await,
        Err(invalid) => Err(invalid),
    };
    match result {
        Ok(receipt) => answer(
            StatusCode::OK,
            &json!({ "isValid": true, "payer": receipt["payer"] }),
        ),
        Err(invalid) => {
            let mut body = json!({
                "isValid": false,
                "invalidReason": invalid.reason,
                "invalidMessage": invalid.message,
            });
            // The payee's account of a known channel: the resource server's scheme sends it in
            // its corrective 402 (`extra.channelState`), as the refusal's receipt would be.
            if let Some(mut state) = invalid.response {
                if !state["payer"].is_null() {
                    body["payer"] = state["payer"].clone();
                }
                state["success"] = Value::Bool(false);
                state["errorReason"] = Value::String(invalid.reason);
                body["extra"] = json!({ "channelState": state });
            }
            answer(invalid.status, &body)
        }
    }
}

async fn settle(State(payee): State<Payee>, body: Bytes) -> Response {
    let network = caip2(payee.config().network);
    let result = match read(&body) {
        Ok(checked) => payee.facilitate(&checked, true).await,
        Err(invalid) => Err(invalid),
    };
    match result {
        Ok(receipt) => answer(StatusCode::OK, &receipt),
        Err(invalid) => {
            let mut body = invalid.response.unwrap_or_else(
                || json!({ "success": false, "transaction": "", "network": network }),
            );
            body["success"] = Value::Bool(false);
            body["errorReason"] = Value::String(invalid.reason);
            body["errorMessage"] = Value::String(invalid.message);
            answer(invalid.status, &body)
        }
    }
}
