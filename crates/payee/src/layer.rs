//! The tower layer that prices routes: 402 offers, `PAYMENT-SIGNATURE` handling in the order of
//! `docs/protocol.md` section 2, and `PAYMENT-RESPONSE` receipts.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::OriginalUri;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use bitcoin::{Amount, Txid};
use tokio::sync::oneshot;
use tower::{Layer, Service};
use trickle_channel::credit::Ledger;
use trickle_channel::credit::NONCE_RANDOM_LEN;
use trickle_channel::http::{
    caip2, ChannelTerms, PaymentRequired, PaymentRequirements, PaymentResponse, PaymentSignature,
    Receipt, Refusal, Resource, ASSET, PAYMENT_REQUIRED, PAYMENT_RESPONSE, PAYMENT_SIGNATURE,
    SCHEME, X402_VERSION,
};
use trickle_channel::{ErrorCode, PayeeState, WireMessage};

use crate::payee::{random, Metrics, Payee, MAX_ATTEMPTS};
use crate::store::{ChannelUpdate, StoreError, StoredChannel};

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
    mut inner: S,
    req: Request<Body>,
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
    let origin = origin(&payee, &req);
    let url = resource_url(&origin, &req);
    let Some(signature) = signature else {
        return match price {
            None => inner.call(req).await,
            Some(price) => Ok(payment_required(&payee, &origin, &url, &price, None, None)),
        };
    };
    // A header that is not ASCII cannot be ours: it is refused as unparseable.
    let text = signature.to_str().unwrap_or_default().to_owned();
    let amount = price.as_ref().map_or(Amount::ZERO, |p| p.amount);
    // A safe request (GET, HEAD: RFC 9110 section 9.2.1, no effect at the site) is passed to
    // the site as soon as its payment is verified, while the payment is being stored: the
    // site's answer is held until the store has made the payment durable, and dropped if the
    // payment is not taken. Nothing reaches the client before the store returns. Any other
    // request reaches the site only once its payment is stored.
    let overlap = req.method() == Method::GET || req.method() == Method::HEAD;
    let (verified, go) = if overlap {
        let (tx, rx) = oneshot::channel::<()>();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let upstream = async move {
        // Signalled once the payment is verified; dropped if it is refused before that.
        let verified = match go {
            Some(go) => go.await.is_ok(),
            None => false,
        };
        if verified {
            Upstream::Called(inner.call(req).await)
        } else {
            Upstream::NotCalled(Box::new((inner, req)))
        }
    };
    let (charged, upstream) = tokio::join!(
        payee.charge(&url, &text, amount, overlap, verified),
        upstream
    );
    // The site's answer: the one fetched while storing, or one fetched now.
    let serve = |upstream: Upstream<S>| async move {
        match upstream {
            Upstream::Called(resp) => resp,
            Upstream::NotCalled(later) => {
                let (mut inner, req) = *later;
                inner.call(req).await
            }
        }
    };
    match charged {
        Ok(receipt) => {
            let mut resp = serve(upstream).await?;
            attach(&mut resp, &receipt);
            Ok(resp)
        }
        Err(Failure::Refused(refusal)) => match price {
            Some(price) => Ok(payment_required(
                &payee,
                &origin,
                &url,
                &price,
                Some(refusal.reason),
                Some(&refusal.response),
            )),
            // A free resource is served even when a pre-armed payment is refused; the receipt
            // says why the payment was not taken.
            None => {
                let mut resp = serve(upstream).await?;
                attach(&mut resp, &refusal.response);
                Ok(resp)
            }
        },
        Err(Failure::Unconfirmed(receipt)) => {
            let mut resp = match price {
                Some(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, UNCONFIRMED_RETRY_SECS)],
                    "the channel's contract is not confirmed yet; nothing was charged\n",
                )
                    .into_response(),
                None => serve(upstream).await?,
            };
            attach(&mut resp, &receipt);
            Ok(resp)
        }
        Err(Failure::Store(e)) => {
            tracing::error!(error = %e, %url, "payment not stored; not serving");
            Metrics::bump(&payee.metrics().store_failures, 1);
            // Every answer to a payment carries a receipt; this one says nothing was taken.
            let receipt = PaymentResponse {
                success: false,
                error_reason: Some(ErrorCode::Other.name().to_owned()),
                network: caip2(payee.config().network),
                payer: None,
                receipt: None,
            };
            let mut resp = match price {
                Some(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "payment storage is unavailable; nothing was charged\n",
                )
                    .into_response(),
                None => serve(upstream).await?,
            };
            attach(&mut resp, &receipt);
            Ok(resp)
        }
    }
}

/// The site's side of a paid request: already asked (while the payment was stored), or not.
enum Upstream<S: Service<Request<Body>>> {
    Called(Result<S::Response, S::Error>),
    NotCalled(Box<(S, Request<Body>)>),
}

fn attach(resp: &mut Response, receipt: &PaymentResponse) {
    if let Ok(v) = HeaderValue::from_str(&receipt.to_header()) {
        resp.headers_mut().insert(PAYMENT_RESPONSE, v);
    }
}

fn payment_required(
    payee: &Payee,
    origin: &str,
    url: &str,
    price: &Price,
    error: Option<Refusal>,
    receipt: Option<&PaymentResponse>,
) -> Response {
    let Ok(random) = random::<NONCE_RANDOM_LEN>() else {
        tracing::error!("no randomness for a nonce");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let config = payee.config();
    let policy = &config.policy;
    let versions = [(policy.accept_v2, 2), (policy.accept_v1, 1)]
        .into_iter()
        .filter_map(|(on, v)| on.then_some(v))
        .collect();
    let offer = PaymentRequired {
        x402_version: X402_VERSION,
        error: error.map(|e| e.as_str().to_owned()),
        resource: Resource {
            url: url.to_owned(),
            description: price.description.clone(),
            mime_type: price.mime_type.clone(),
        },
        accepts: vec![PaymentRequirements {
            scheme: SCHEME.to_owned(),
            network: caip2(config.network),
            amount: price.amount,
            asset: ASSET.to_owned(),
            pay_to: payee.server_key(),
            max_timeout_seconds: config.offer_timeout_secs,
            extra: ChannelTerms {
                endpoint: format!("{origin}{}", config.endpoint_path),
                versions,
                min_channel_value: policy.min_channel_value,
                max_channel_value: policy.max_channel_value,
                min_payment: policy.min_payment,
                max_expiry_blocks: policy.max_expiry_blocks,
                nonce: payee.nonce_key().issue(random, payee.now(), url),
            },
        }],
    };
    let body = serde_json::to_vec(&offer).unwrap_or_default();
    let mut resp = (
        StatusCode::PAYMENT_REQUIRED,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&offer.to_header()) {
        resp.headers_mut().insert(PAYMENT_REQUIRED, v);
    }
    if let Some(receipt) = receipt {
        attach(&mut resp, receipt);
    }
    resp
}

/// The `errorReason` of a payment deferred until the channel's contract confirms (503).
pub const CONTRACT_UNCONFIRMED: &str = "contract_unconfirmed";

/// How long a client is told to wait before retrying a deferred payment: about a block.
const UNCONFIRMED_RETRY_SECS: &str = "600";

/// A refused payment: why, and the `PAYMENT-RESPONSE` saying so.
pub(crate) struct Refused {
    reason: Refusal,
    response: PaymentResponse,
}

/// Why a payment was not taken.
pub(crate) enum Failure {
    /// Refused, with the reason for the client.
    Refused(Refused),
    /// The channel's unconfirmed allowance is spent: nothing was charged; try again once its
    /// contract confirms. The receipt says so.
    Unconfirmed(PaymentResponse),
    /// Storage failed: nothing was charged and nothing may be served.
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl Payee {
    fn response(
        &self,
        state: &PayeeState,
        ledger: Ledger,
        consumed: Amount,
        refusal: Option<Refusal>,
    ) -> PaymentResponse {
        let channel = state.channel();
        PaymentResponse {
            success: refusal.is_none(),
            error_reason: refusal.map(|r| r.as_str().to_owned()),
            network: caip2(self.config().network),
            payer: channel.map(|c| c.funding.contract.client_key),
            receipt: channel.map(|c| Receipt {
                channel: c.contract_txid(),
                paid: ledger.paid,
                consumed,
                credit: ledger.credit(),
                channel_value: c.funding.contract.value,
                expiry: c.funding.contract.expiry.to_consensus_u32(),
                nonce: None,
            }),
        }
    }

    /// A fresh nonce for `url` (see `docs/protocol.md`, section 1).
    fn mint_nonce(&self, url: &str) -> Result<String, StoreError> {
        let random = random::<NONCE_RANDOM_LEN>()
            .map_err(|e| StoreError::Backend(format!("no randomness: {e}")))?;
        Ok(self.nonce_key().issue(random, self.now(), url))
    }

    fn refuse(&self, reason: Refusal, why: &str, known: Option<(&PayeeState, Ledger)>) -> Failure {
        tracing::info!(reason = reason.as_str(), why, "payment refused");
        self.metrics().refused(reason.as_str());
        let response = match known {
            Some((state, ledger)) => self.response(state, ledger, Amount::ZERO, Some(reason)),
            None => PaymentResponse {
                success: false,
                error_reason: Some(reason.as_str().to_owned()),
                network: caip2(self.config().network),
                payer: None,
                receipt: None,
            },
        };
        Failure::Refused(Refused { reason, response })
    }

    fn unconfirmed(&self, state: &PayeeState, ledger: Ledger) -> Failure {
        tracing::info!("payment deferred: the contract is not confirmed yet");
        self.metrics().refused(CONTRACT_UNCONFIRMED);
        let mut response = self.response(state, ledger, Amount::ZERO, None);
        response.success = false;
        response.error_reason = Some(CONTRACT_UNCONFIRMED.to_owned());
        Failure::Unconfirmed(response)
    }

    /// Takes a `PAYMENT-SIGNATURE` for a request to `url` costing `price`, in the order of
    /// `docs/protocol.md` section 2. On success the payment, the consumed total and the nonce
    /// are durably stored, and the receipt is returned: only then may the resource be served.
    /// `safe`: the request's method is `GET` or `HEAD`, the only ones a charged nonce reloads.
    /// `verified`, if given, is signalled once the payment is verified and covers the price,
    /// before it is stored: the caller may start preparing the response (never send it).
    pub(crate) async fn charge(
        &self,
        url: &str,
        header: &str,
        price: Amount,
        safe: bool,
        mut verified: Option<oneshot::Sender<()>>,
    ) -> Result<PaymentResponse, Failure> {
        let mut signal = move || {
            if let Some(tx) = verified.take() {
                // The receiver is gone only if the request was dropped: nothing to prepare.
                let _ = tx.send(());
            }
        };
        let sig = PaymentSignature::from_header(header)
            .map_err(|e| self.refuse(Refusal::InvalidHeader, &e.to_string(), None))?;
        if sig.accepted.network != caip2(self.config().network) {
            return Err(self.refuse(Refusal::WrongNetwork, "another network", None));
        }
        if sig.accepted.pay_to != self.server_key() {
            return Err(self.refuse(Refusal::WrongPayee, "another payee key", None));
        }
        let payment = &sig.payload;
        let update = payment
            .update()
            .map_err(|e| self.refuse(Refusal::InvalidHeader, &e.to_string(), None))?;
        let issued_at = match &payment.nonce {
            Some(nonce) => Some(
                self.nonce_key()
                    .check(nonce, url)
                    .map_err(|e| self.refuse(Refusal::WrongResource, &e.to_string(), None))?,
            ),
            None => None,
        };
        // A charged nonce reloads its resource for free only within the offer's life, and only
        // for a request that changes nothing at the site.
        let offer_life = u64::from(self.config().offer_timeout_secs);
        let free_reload =
            safe && issued_at.is_some_and(|t| self.now() <= t.saturating_add(offer_life));
        let store = self.store();
        let txid = payment.channel;
        let unknown = || {
            self.refuse(
                Refusal::Channel(ErrorCode::UnknownChannel),
                "no channel with this contract",
                None,
            )
        };
        for _ in 0..MAX_ATTEMPTS {
            if let Some(nonce) = &payment.nonce {
                if store.is_charged(&txid, nonce).await? {
                    if !free_reload {
                        return Err(self.refuse(
                            Refusal::NonceSpent,
                            "nonce already charged; not a GET or HEAD within the offer's life",
                            None,
                        ));
                    }
                    // A reload: serve again, charge nothing.
                    let stored = store.channel(&txid).await?.ok_or_else(unknown)?;
                    signal();
                    Metrics::bump(&self.metrics().reloads, 1);
                    return Ok(self.response(&stored.state, stored.ledger, Amount::ZERO, None));
                }
            }
            // The state this instance last stored, if any: every write below names its
            // revision, so a state another writer has since replaced is caught by the store.
            let (stored, cached) = match self.hot_channel(&txid) {
                Some(stored) => (stored, true),
                None => match store.channel(&txid).await? {
                    Some(stored) => (Arc::new(stored), false),
                    None => return Err(unknown()),
                },
            };
            // A refusal is never decided on a remembered state: read the store and decide again.
            macro_rules! refuse {
                ($failure:expr) => {{
                    if cached {
                        self.forget_hot_channel(&txid);
                        continue;
                    }
                    return Err($failure);
                }};
            }
            let known = Some((&stored.state, stored.ledger));
            let PayeeState::Ready { channel } = &stored.state else {
                let code = match stored.state {
                    PayeeState::Closing { .. } | PayeeState::Closed { .. } => {
                        ErrorCode::ChannelClosed
                    }
                    _ => ErrorCode::UnknownChannel,
                };
                refuse!(self.refuse(Refusal::Channel(code), "channel is not open", known));
            };
            let mut state = stored.state.clone();
            if let Some(update) = &update {
                let value = channel.funding.contract.value;
                if value.checked_sub(update.client_change) != Some(payment.amount) {
                    refuse!(self.refuse(
                        Refusal::InvalidHeader,
                        "amount is not the channel value minus the update's change",
                        known,
                    ));
                }
                let msg = WireMessage::UpdatePayment(update.clone());
                // The PAYMENT_ACK the step would send is answered by the receipt instead.
                match self.with_ctx(|ctx| stored.state.on_message(ctx, msg)) {
                    Ok(step) => state = step.state,
                    Err(e) => {
                        refuse!(self.refuse(Refusal::Channel(e.code()), &e.to_string(), known))
                    }
                }
            }
            let paid = state.channel().map(|c| c.paid()).unwrap_or_default();
            let ledger = stored.ledger.with_paid(paid);
            let changed = state != stored.state || ledger != stored.ledger;
            let charged = ledger.charge(price).ok();
            // Until its contract confirms, a channel consumes no more than the allowance: the
            // client can still double-spend the contract's inputs.
            let over = charged.is_some_and(|c| c.consumed > self.config().unconfirmed_credit);
            let unconfirmed = over && !self.confirmed_enough(&txid).await;
            let Some(charged) = charged.filter(|_| !unconfirmed) else {
                // The increment, if any, stays as credit: store it before refusing.
                if changed {
                    let update = ChannelUpdate {
                        state: &state,
                        ledger,
                        charged_nonce: None,
                    };
                    let revision = self.update_channel(&txid, &stored, update).await?;
                    if revision.is_none() {
                        continue;
                    }
                } else if cached {
                    self.forget_hot_channel(&txid);
                    continue;
                }
                if unconfirmed {
                    return Err(self.unconfirmed(&state, ledger));
                }
                return Err(self.refuse(
                    Refusal::InsufficientCredit,
                    "credit does not cover the price",
                    Some((&state, ledger)),
                ));
            };
            signal();
            // A pre-armed payment charged for this URL: issue a nonce for it and count it as
            // charged, so the client can reload the URL with it (step 2) without paying again.
            let minted = match (&payment.nonce, charged != ledger) {
                (None, true) => Some(self.mint_nonce(url)?),
                _ => None,
            };
            let nonce = payment
                .nonce
                .as_deref()
                .or(minted.as_deref())
                .map(|n| (n, price));
            if changed || nonce.is_some() || charged != ledger {
                let update = ChannelUpdate {
                    state: &state,
                    ledger: charged,
                    charged_nonce: nonce,
                };
                if self.update_channel(&txid, &stored, update).await?.is_none() {
                    continue;
                }
            }
            Metrics::bump(&self.metrics().paid_requests, 1);
            Metrics::bump(&self.metrics().sat_consumed, price.to_sat());
            let mut response = self.response(&state, charged, price, None);
            if let Some(receipt) = response.receipt.as_mut() {
                receipt.nonce = minted;
            }
            return Ok(response);
        }
        Err(Failure::Store(StoreError::Conflict))
    }

    /// Writes `update` over `stored` and remembers the result for the channel's next request;
    /// `None` if another writer got there first (the remembered state is dropped: reload).
    async fn update_channel(
        &self,
        txid: &Txid,
        stored: &StoredChannel,
        update: ChannelUpdate<'_>,
    ) -> Result<Option<u64>, StoreError> {
        match self
            .store()
            .update_channel(txid, stored.revision, update)
            .await
        {
            Ok(revision) => {
                self.remember_hot_channel(
                    *txid,
                    StoredChannel {
                        state: update.state.clone(),
                        ledger: update.ledger,
                        revision,
                    },
                );
                Ok(Some(revision))
            }
            Err(StoreError::Conflict) => {
                self.forget_hot_channel(txid);
                Ok(None)
            }
            Err(e) => {
                self.forget_hot_channel(txid);
                Err(e)
            }
        }
    }
}
