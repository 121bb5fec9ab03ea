//! The reverse proxy: prices in front of any site, like Aperture does for L402.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use trickle_channel::http::PAYMENT_SIGNATURE;

use crate::{Payee, Prices};

/// The site behind the proxy.
pub struct Upstream {
    base: String,
    /// The path of `base` (empty for a bare origin), which every forwarded path follows.
    base_path: String,
    http: reqwest::Client,
}

/// The upstream client cannot be built.
#[derive(Debug)]
pub struct UpstreamError(String);

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upstream client: {}", self.0)
    }
}

impl std::error::Error for UpstreamError {}

impl Upstream {
    /// A proxy target at `base` (`http://127.0.0.1:3000`); paths are appended to it.
    pub fn new(base: &str) -> Result<Self, UpstreamError> {
        let http = reqwest::Client::builder()
            // The browser follows redirects, not the proxy.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| UpstreamError(e.to_string()))?;
        let base = base.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base).map_err(|e| UpstreamError(e.to_string()))?;
        let base_path = parsed.path().trim_end_matches('/').to_owned();
        Ok(Self {
            base,
            base_path,
            http,
        })
    }
}

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn end_to_end(headers: &HeaderMap, drop: &[HeaderName]) -> HeaderMap {
    let mut out = headers.clone();
    for name in HOP_BY_HOP {
        out.remove(name);
    }
    for name in drop {
        out.remove(name);
    }
    out
}

async fn forward(State(up): State<Arc<Upstream>>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", up.base);
    // The layer priced `parts.uri.path()`; the site must be asked for exactly that path. The
    // layer refuses paths a URL parser would rewrite, so this only catches what it missed.
    let sent_path = reqwest::Url::parse(&url).ok().map(|u| u.path().to_owned());
    if sent_path.as_deref() != Some(format!("{}{}", up.base_path, parts.uri.path()).as_str()) {
        tracing::warn!(%url, "the site would see another path; refused");
        return (StatusCode::BAD_REQUEST, "ambiguous path\n").into_response();
    }
    // The payment is for this proxy; the site sees a plain request.
    let headers = end_to_end(
        &parts.headers,
        &[header::HOST, HeaderName::from_static(PAYMENT_SIGNATURE)],
    );
    let sent = up
        .http
        .request(parts.method, &url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    let resp = match sent {
        Ok(resp) => resp,
        Err(e) => {
            tracing::warn!(%url, error = %e, "upstream failed");
            return (StatusCode::BAD_GATEWAY, "upstream unavailable\n").into_response();
        }
    };
    let mut out = Response::builder().status(resp.status());
    if let Some(h) = out.headers_mut() {
        *h = end_to_end(resp.headers(), &[]);
    }
    out.body(Body::from_stream(resp.bytes_stream()))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

/// The proxy's routes: the channel endpoint, then every other path forwarded to `upstream`,
/// priced by `prices`.
pub fn app(payee: &Payee, prices: Prices, upstream: Upstream) -> Router {
    let priced = Router::new()
        .fallback(forward)
        .with_state(Arc::new(upstream))
        .layer(payee.layer(prices));
    payee.endpoint().merge(priced)
}
