//! The tower layer that prices routes: 402 offers, `PAYMENT-SIGNATURE` handling in the order of
//! `docs/protocol.md` section 2, and `PAYMENT-RESPONSE` receipts; the same in MPP framing
//! (`docs/mpp.md`, [`crate::mpp`]): every 402 carries both challenges, a payment is read from
//! either header, and its answer is framed as it came.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::OriginalUri;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use bitcoin::Amount;
use tower::{Layer, Service};
use trickle_channel::charge::{Decision, PricedRequest};
use trickle_channel::credit::NONCE_RANDOM_LEN;
use trickle_channel::http::mpp::{Problem, ProblemType};
use trickle_channel::http::{
    asset, caip2, ChannelTerms, PaymentRequired, PaymentRequirements, PaymentResponse,
    PaymentSignature, Refusal, Resource, PAYMENT_REQUIRED, PAYMENT_RESPONSE, PAYMENT_SIGNATURE,
    SCHEME, X402_VERSION,
};
use trickle_channel::ErrorCode;

use crate::charge::Failure;
use crate::mpp::{self, Framing};
use crate::payee::{random, Metrics, Payee, MAX_ATTEMPTS};
use crate::store::StoreError;

/// What a resource costs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Price {
    /// The price of one request.
    pub amount: Amount,
    /// What is sold, for people (`resource.description`).
    pub description: String,
    /// Its media type (`resource.mimeType`).
    pub mime_type: String,
}

impl Price {
    /// A price of `sat` satoshis, with no description.
    pub fn sat(sat: u64) -> Self {
        Self {
            amount: Amount::from_sat(sat),
            description: String::new(),
            mime_type: String::new(),
        }
    }
}

/// Prices by path prefix; the longest prefix that matches whole path segments wins, and a path
/// no prefix matches is free. ASCII letters match in any case (`/Articles/1` costs what
/// `/articles/1` costs), for sites that route without regard to case.
#[derive(Clone, Debug, Default)]
pub struct Prices(Vec<(String, Price)>);

impl Prices {
    /// No prices: everything is free.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every path costs `price`.
    pub fn flat(price: Price) -> Self {
        Self::new().with("/", price)
    }

    /// Adds a price for `prefix` (`/articles` prices `/articles` and `/articles/1`, not
    /// `/articles2`).
    pub fn with(mut self, prefix: &str, price: Price) -> Self {
        self.0.push((prefix.to_owned(), price));
        // Longest first, so that the first match is the most specific.
        self.0.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        self
    }

    /// The price of `path`, if it has one.
    pub fn get(&self, path: &str) -> Option<&Price> {
        self.0
            .iter()
            .find(|(prefix, _)| {
                let Some((head, rest)) = path.split_at_checked(prefix.len()) else {
                    return false;
                };
                head.eq_ignore_ascii_case(prefix)
                    && (rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'))
            })
            .map(|(_, price)| price)
    }
}

/// Adds payment to a service: priced paths answer 402 until paid.
#[derive(Clone)]
pub struct PaymentLayer {
    payee: Payee,
    prices: Arc<Prices>,
}

impl PaymentLayer {
    /// A layer charging `prices` to channels of `payee`.
    pub fn new(payee: Payee, prices: Prices) -> Self {
        Self {
            payee,
            prices: Arc::new(prices),
        }
    }
}

impl<S> Layer<S> for PaymentLayer {
    type Service = PaymentService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PaymentService {
            inner,
            payee: self.payee.clone(),
            prices: Arc::clone(&self.prices),
        }
    }
}

/// The service [`PaymentLayer`] makes.
#[derive(Clone)]
pub struct PaymentService<S> {
    inner: S,
    payee: Payee,
    prices: Arc<Prices>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<Request<Body>> for PaymentService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's usual dance).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (payee, prices) = (self.payee.clone(), Arc::clone(&self.prices));
        Box::pin(handle(payee, prices, inner, req))
    }
}

/// The request's origin (`scheme://host`), as the client sees it.
fn origin(payee: &Payee, req: &Request<Body>) -> String {
    if let Some(public) = &payee.config().public_url {
        return public.trim_end_matches('/').to_owned();
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_owned());
    format!("http://{host}")
}

/// The absolute URL a nonce is bound to.
fn resource_url(origin: &str, req: &Request<Body>) -> String {
    // Under a nested router the URI is stripped of its prefix; the original one is the URL.
    let uri = req
        .extensions()
        .get::<OriginalUri>()
        .map_or(req.uri(), |o| &o.0);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    format!("{origin}{path}")
}

async fn handle<S>(
    payee: Payee,
    prices: Arc<Prices>,
    inner: S,
    mut req: Request<Body>,
) -> Result<Response, S::Error>
where
    S: Service<Request<Body>, Response = Response>,
{
    let path = req
        .extensions()
        .get::<OriginalUri>()
        .map_or(req.uri().path(), |o| o.0.path());
    // Priced and served must be the same path: one the site could read as another is refused.
    if let Err(why) = crate::path::check(path) {
        return Ok((StatusCode::BAD_REQUEST, format!("ambiguous path: {why}\n")).into_response());
    }
    let price = prices.get(path).cloned();
    let signature = req.headers().get(PAYMENT_SIGNATURE).cloned();
    let mut credentials = mpp::credentials(req.headers());
    let origin = origin(&payee, &req);
    let url = resource_url(&origin, &req);
    if credentials.len() > usize::from(signature.is_none()) {
        return Ok(mpp::two_payments());
    }
    // A header that is not ASCII cannot be ours: it is refused as unparseable.
    let (parsed, framing) = match (signature, credentials.pop()) {
        (None, None) => {
            let mut inner = inner;
            return match price {
                None => inner.call(req).await,
                Some(price) => Ok(payment_required(&payee, &origin, &url, &price, Why::Asked)),
            };
        }
        (Some(signature), _) => (
            PaymentSignature::from_header(signature.to_str().unwrap_or_default())
                .map_err(|e| payee.refuse_header(&e)),
            Framing::X402,
        ),
        (None, Some(credential)) => {
            mpp::strip(req.headers_mut());
            match mpp::read(&payee, &credential, mpp::realm(&origin)) {
                Ok((sig, id)) => (Ok(sig), Framing::Mpp(id)),
                Err(e) => {
                    tracing::info!(reason = e.code(), why = %e, "credential refused");
                    payee.metrics().refused(e.code());
                    let mut inner = inner;
                    return match price {
                        // A free resource is served whatever its credential, as for x402.
                        None => inner.call(req).await,
                        Some(price) => {
                            let why = Why::Problem(e.problem());
                            Ok(payment_required(&payee, &origin, &url, &price, why))
                        }
                    };
                }
            }
        }
    };
    // The offer this request would get, nonce aside: a payment answering an offer must name it.
    let offer = price
        .as_ref()
        .map(|p| requirements(&payee, &origin, p, String::new()));
    let request = PricedRequest {
        url: &url,
        // GET and HEAD (RFC 9110 section 9.2.1) change nothing at the site.
        safe: req.method() == Method::GET || req.method() == Method::HEAD,
        price: price.as_ref().map_or(Amount::ZERO, |p| p.amount),
        offer: offer.as_ref(),
    };
    let answer = Answer {
        payee: &payee,
        price: price.as_ref(),
        origin: &origin,
        url: &url,
        framing,
    };
    let mut site = Site::Waiting(inner, req);
    let sig = match parsed {
        Ok(sig) => sig,
        Err(failure) => return answer.not_taken(failure, site).await,
    };
    for attempt in 0..MAX_ATTEMPTS {
        let (stored, charge) = match payee.decide(&sig, &request, attempt > 0).await {
            Ok((stored, Decision::Serve(charge))) => (stored, charge),
            Ok((stored, Decision::Reload)) => {
                let mut resp = site.answer().await?;
                Metrics::bump(&payee.metrics().reloads, 1);
                let receipt = payee.response(&stored.state, stored.ledger, Amount::ZERO, None);
                answer.attach(&mut resp, &receipt);
                return Ok(resp);
            }
            Err(failure) => return answer.not_taken(failure, site).await,
        };
        if request.safe {
            // The site's answer decides what is stored: a charge for a success, else only the
            // payment as credit. Nothing of the answer is sent before the store returns.
            let mut resp = site.answer().await?;
            let served = resp.status().is_success();
            match payee.store_charge(&stored, &charge, served, &request).await {
                Ok(Some(receipt)) => {
                    answer.attach(&mut resp, &receipt);
                    return Ok(resp);
                }
                // Another request changed the channel: decide again, with this answer.
                Ok(None) => site = Site::Answered(resp),
                Err(e) => return answer.not_taken(e.into(), Site::<S>::Answered(resp)).await,
            }
        } else {
            // The site acts on this request: the charge is durable before it sees it, and
            // given back if its answer is not a success.
            match payee.store_charge(&stored, &charge, true, &request).await {
                Ok(Some(receipt)) => {
                    let mut resp = site.answer().await?;
                    let receipt = if resp.status().is_success() {
                        receipt
                    } else {
                        payee.refund(&sig.payload.channel, &charge, receipt).await
                    };
                    answer.attach(&mut resp, &receipt);
                    return Ok(resp);
                }
                Ok(None) => {}
                Err(e) => return answer.not_taken(e.into(), site).await,
            }
        }
    }
    answer
        .not_taken(Failure::Store(StoreError::Conflict), site)
        .await
}

/// The site's side of a paid request: not asked yet, or its answer.
enum Site<S: Service<Request<Body>>> {
    Waiting(S, Request<Body>),
    Answered(Response),
}

impl<S: Service<Request<Body>, Response = Response>> Site<S> {
    /// The site's answer, asking it if it was not asked yet.
    async fn answer(self) -> Result<Response, S::Error> {
        match self {
            Self::Waiting(mut inner, req) => inner.call(req).await,
            Self::Answered(resp) => Ok(resp),
        }
    }
}

/// What an answer to a paid request needs: the resource, its price, and the framing the
/// payment came in.
struct Answer<'a> {
    payee: &'a Payee,
    price: Option<&'a Price>,
    origin: &'a str,
    url: &'a str,
    framing: Framing,
}

impl Answer<'_> {
    /// Tells the client what became of its payment: `PAYMENT-RESPONSE` for x402, a
    /// `Payment-Receipt` on a paid 2xx for MPP.
    fn attach(&self, resp: &mut Response, receipt: &PaymentResponse) {
        match &self.framing {
            Framing::X402 => attach(resp, receipt),
            Framing::Mpp(id) => mpp::attach_receipt(self.payee, resp, id, receipt),
        }
    }

    /// The answer to a payment that was not taken: a fresh offer for a priced resource (or a
    /// 503 for a deferral or a store failure), the site's answer for a free one; with the
    /// receipt, or for MPP the refusal as problem details.
    async fn not_taken<S>(&self, failure: Failure, site: Site<S>) -> Result<Response, S::Error>
    where
        S: Service<Request<Body>, Response = Response>,
    {
        let payee = self.payee;
        let mpp = matches!(self.framing, Framing::Mpp(_));
        let (unavailable, receipt) = match failure {
            Failure::Refused(refused) => {
                let Some(price) = self.price else {
                    // A free resource is served even when a pre-armed payment is refused; the
                    // receipt says why the payment was not taken.
                    let mut resp = site.answer().await?;
                    self.attach(&mut resp, &refused.response);
                    return Ok(resp);
                };
                let why = if mpp {
                    let kind = ProblemType::of_refusal(refused.reason);
                    Why::Problem(Problem::new(kind, &refused.why, refused.reason.as_str()))
                } else {
                    Why::Refused(refused.reason, &refused.response)
                };
                return Ok(payment_required(payee, self.origin, self.url, price, why));
            }
            Failure::Unconfirmed(receipt) => {
                let detail = "the channel's contract is not confirmed yet; nothing was charged";
                let mut resp = if mpp {
                    mpp::problem_response(&mpp::unavailable(detail, CONTRACT_UNCONFIRMED))
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, format!("{detail}\n")).into_response()
                };
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(UNCONFIRMED_RETRY_SECS),
                );
                (resp, receipt)
            }
            Failure::Store(e) => {
                tracing::error!(error = %e, url = self.url, "payment not stored; not serving");
                Metrics::bump(&payee.metrics().store_failures, 1);
                // Every answer to a payment carries a receipt; this one says nothing was taken.
                let code = ErrorCode::Other.name();
                let receipt = PaymentResponse {
                    success: false,
                    error_reason: Some(code.to_owned()),
                    network: caip2(payee.config().network),
                    payer: None,
                    transaction: None,
                    receipt: None,
                };
                let detail = "payment storage is unavailable; nothing was charged";
                let resp = if mpp {
                    mpp::problem_response(&mpp::unavailable(detail, code))
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, format!("{detail}\n")).into_response()
                };
                (resp, receipt)
            }
        };
        let mut resp = match self.price {
            Some(_) => unavailable,
            None => site.answer().await?,
        };
        self.attach(&mut resp, &receipt);
        Ok(resp)
    }
}

pub(crate) fn attach(resp: &mut Response, receipt: &PaymentResponse) {
    if let Ok(v) = HeaderValue::from_str(&receipt.to_header()) {
        resp.headers_mut().insert(PAYMENT_RESPONSE, v);
    }
}

/// Why a 402 is sent.
enum Why<'a> {
    /// The request carried no payment.
    Asked,
    /// An x402 payment was refused: the offer's `error`, and the receipt saying so.
    Refused(Refusal, &'a PaymentResponse),
    /// An MPP credential was refused: the problem, as the body.
    Problem(Problem),
}

/// A fresh offer for `url`, in both framings: `PAYMENT-REQUIRED` and `WWW-Authenticate:
/// Payment`, of one nonce. The body is the x402 offer, or an MPP refusal's problem (whose
/// status, 400 for another method, is the answer's).
fn payment_required(payee: &Payee, origin: &str, url: &str, price: &Price, why: Why) -> Response {
    let Ok(random) = random::<NONCE_RANDOM_LEN>() else {
        tracing::error!("no randomness for a nonce");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let nonce = payee.nonce_key().issue(random, payee.now(), url);
    let resource = Resource {
        url: url.to_owned(),
        description: price.description.clone(),
        mime_type: price.mime_type.clone(),
    };
    let requirements = requirements(payee, origin, price, nonce);
    let challenge = mpp::challenge(payee, mpp::realm(origin), &resource, &requirements);
    let offer = PaymentRequired {
        x402_version: X402_VERSION,
        error: match &why {
            Why::Refused(reason, _) => Some(reason.as_str().to_owned()),
            _ => None,
        },
        resource,
        accepts: vec![requirements],
    };
    let offered = || {
        let body = serde_json::to_vec(&offer).unwrap_or_default();
        let json = [(header::CONTENT_TYPE, "application/json")];
        (StatusCode::PAYMENT_REQUIRED, json, body).into_response()
    };
    let (mut resp, receipt) = match why {
        Why::Asked => (offered(), None),
        Why::Refused(_, receipt) => (offered(), Some(receipt)),
        Why::Problem(mut problem) => {
            problem.challenge_id = Some(challenge.id.clone());
            (mpp::problem_response(&problem), None)
        }
    };
    let headers = resp.headers_mut();
    // An offer is for one client, once: no cache may keep it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&offer.to_header()) {
        headers.insert(PAYMENT_REQUIRED, v);
    }
    if let Ok(v) = HeaderValue::from_str(&challenge.to_header()) {
        headers.insert(header::WWW_AUTHENTICATE, v);
    }
    if let Some(receipt) = receipt {
        attach(&mut resp, receipt);
    }
    resp
}

/// The channel offer for a resource at `price` on `origin`, with `nonce`.
fn requirements(payee: &Payee, origin: &str, price: &Price, nonce: String) -> PaymentRequirements {
    let config = payee.config();
    let policy = &config.policy;
    let versions = [(policy.accept_v2, 2), (policy.accept_v1, 1)]
        .into_iter()
        .filter_map(|(on, v)| on.then_some(v))
        .collect();
    let network = caip2(config.network);
    PaymentRequirements {
        scheme: SCHEME.to_owned(),
        asset: asset(&network),
        network,
        amount: price.amount,
        pay_to: payee.server_key(),
        max_timeout_seconds: config.offer_timeout_secs,
        extra: ChannelTerms {
            endpoint: format!("{origin}{}", config.endpoint_path),
            versions,
            min_channel_value: policy.min_channel_value,
            max_channel_value: policy.max_channel_value,
            min_payment: policy.min_payment,
            max_expiry_blocks: policy.max_expiry_blocks,
            nonce,
            channel_state: None,
        },
    }
}

/// The `errorReason` of a payment deferred until the channel's contract confirms (503).
pub const CONTRACT_UNCONFIRMED: &str = "contract_unconfirmed";

/// How long a client is told to wait before retrying a deferred payment: about a block.
const UNCONFIRMED_RETRY_SECS: &str = "600";
