//! The channel endpoint of `docs/protocol.md` section 3: open, session messages, status.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use bitcoin::Txid;
use serde::Serialize;
use trickle_channel::auth::{self, ChannelRequest};
use trickle_channel::credit::Ledger;
use trickle_channel::http::endpoint::{EndpointReply, MessageRequest, SessionState, SessionStatus};
use trickle_channel::{ChannelError, Close, ErrorCode, ErrorMessage, PayeeState, WireMessage};

use crate::chain::ChainError;
use crate::payee::{random, Metrics, Payee, MAX_ATTEMPTS};
use crate::store::{ChannelUpdate, StoreError};

/// Largest request body the endpoint reads; larger ones are refused with 413.
pub const MAX_BODY: usize = 1024 * 1024;

/// A refusal: a 4xx/5xx status and an `ERROR` message.
#[derive(Debug)]
pub(crate) struct Refused {
    status: StatusCode,
    error: ErrorMessage,
}

impl Refused {
    fn new(status: StatusCode, code: ErrorCode, explanation: impl Into<String>) -> Self {
        Self {
            status,
            error: ErrorMessage {
                code,
                explanation: explanation.into(),
                expected_value: None,
            },
        }
    }

    fn syntax(why: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::SyntaxError, why)
    }

    fn unknown_session() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownChannel,
            "no such session or channel",
        )
    }

    fn channel(e: &ChannelError) -> Self {
        let status = match e.code() {
            ErrorCode::SyntaxError => StatusCode::BAD_REQUEST,
            ErrorCode::UnknownChannel => StatusCode::NOT_FOUND,
            ErrorCode::UnexpectedMessage => StatusCode::CONFLICT,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self {
            status,
            error: e.to_message(),
        }
    }

    fn unavailable(why: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Other, why)
    }

    fn store(payee: &Payee, e: &StoreError) -> Self {
        tracing::error!(error = %e, "channel store failed");
        Metrics::bump(&payee.metrics().store_failures, 1);
        Self::unavailable("storage is unavailable; nothing was changed")
    }

    fn chain(e: &ChainError) -> Self {
        match e {
            ChainError::Rejected(why) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::BadTransaction,
                format!("the network refused the contract: {why}"),
            ),
            ChainError::Unavailable(_) => {
                tracing::warn!(error = %e, "cannot broadcast a contract");
                Self::unavailable("the chain backend is unavailable; try again")
            }
        }
    }
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let body = EndpointReply::new(None, &[WireMessage::Error(self.error)]);
        json(self.status, &body)
    }
}

fn reply(session: String, send: &[WireMessage]) -> Response {
    json(StatusCode::OK, &EndpointReply::new(Some(session), send))
}

fn parse_body(bytes: &[u8]) -> Result<(WireMessage, Option<String>), Refused> {
    let body: MessageRequest =
        serde_json::from_slice(bytes).map_err(|e| Refused::syntax(format!("body: {e}")))?;
    let msg = body
        .wire()
        .map_err(|e| Refused::syntax(format!("message: {e}")))?;
    Ok((msg, body.authorization))
}

/// Checks that the channel's client authorised `request` (see `trickle_channel::auth`).
fn authorized(
    stored: &PayeeState,
    request: ChannelRequest,
    authorization: Option<&str>,
) -> Result<(), Refused> {
    let channel = stored.channel().ok_or_else(Refused::unknown_session)?;
    auth::check(
        request,
        &channel.contract_txid(),
        &channel.funding.contract.client_key,
        authorization,
    )
    .map_err(|e| Refused {
        status: StatusCode::FORBIDDEN,
        error: e.to_message(),
    })
}

/// Session ids we issue: at most 64 characters of `[A-Za-z0-9_-]`.
fn valid_session_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The channel endpoint's routes, mounted at the configured endpoint path.
pub(crate) fn router(payee: Payee) -> Router {
    let base = payee
        .config()
        .endpoint_path
        .trim_end_matches('/')
        .to_owned();
    Router::new()
        .route(&format!("{base}/open"), post(open))
        .route(
            &format!("{base}/session/{{id}}"),
            post(session_message).get(session_status),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(payee)
}

async fn open(State(payee): State<Payee>, body: Bytes) -> Result<Response, Refused> {
    // Opening needs no payment: a flood is turned away here, not queued at the store.
    let Ok(_opening) = payee.0.opening.try_acquire() else {
        Metrics::bump(&payee.metrics().opens_refused, 1);
        return Err(Refused::unavailable(
            "too many channels are opening; try again",
        ));
    };
    let (msg, authorization) = parse_body(&body)?;
    let WireMessage::ClientVersion(hello) = msg else {
        return Err(Refused::channel(&ChannelError::UnexpectedMessage {
            state: "Open",
            message: msg.name(),
        }));
    };
    let store = payee.store();
    if let Some(prev) = hello.previous_contract {
        let stored = store
            .channel(&prev)
            .await
            .map_err(|e| Refused::store(&payee, &e))?;
        // An unknown previous contract opens a new channel, as in bitcoinj.
        if let Some(stored) = stored {
            // The resume answers the paid total: the client's to read, as the status is.
            authorized(
                &stored.state,
                ChannelRequest::Resume,
                authorization.as_deref(),
            )?;
            let step = stored
                .state
                .resume(&hello)
                .map_err(|e| Refused::channel(&e))?;
            return Ok(reply(prev.to_string(), &step.send));
        }
    }
    let step = payee
        .with_ctx(|ctx| PayeeState::start(ctx, &hello))
        .map_err(|e| Refused::channel(&e))?;
    let id = random::<16>()
        .map(|r| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r))
        .map_err(|e| Refused::unavailable(format!("no randomness: {e}")))?;
    store
        .insert_session(&id, &step.state, payee.now())
        .await
        .map_err(|e| Refused::store(&payee, &e))?;
    Ok(reply(id, &step.send))
}

async fn session_message(
    State(payee): State<Payee>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Refused> {
    if !valid_session_id(&id) {
        return Err(Refused::unknown_session());
    }
    let (msg, authorization) = parse_body(&body)?;
    let pending = payee
        .store()
        .session(&id)
        .await
        .map_err(|e| Refused::store(&payee, &e))?;
    if let Some(state) = pending {
        return pending_message(&payee, id, state, msg).await;
    }
    let txid: Txid = id.parse().map_err(|_| Refused::unknown_session())?;
    channel_message(&payee, txid, msg, authorization.as_deref()).await
}

async fn pending_message(
    payee: &Payee,
    id: String,
    state: PayeeState,
    msg: WireMessage,
) -> Result<Response, Refused> {
    let step = payee
        .with_ctx(|ctx| state.on_message(ctx, msg))
        .map_err(|e| Refused::channel(&e))?;
    let store = payee.store();
    let Some(channel) = step.state.channel() else {
        store
            .update_session(&id, &step.state)
            .await
            .map_err(|e| match e {
                StoreError::Conflict => Refused::unknown_session(),
                e => Refused::store(payee, &e),
            })?;
        return Ok(reply(id, &step.send));
    };
    // The contract goes to the network before the channel is stored: it carries no signature
    // of ours, and a contract the network refuses must never become a channel that requests
    // are served against. A crash in between leaves the session, so the client's retry of
    // PROVIDE_CONTRACT completes the open (a rebroadcast is accepted as known).
    for tx in &step.broadcast {
        payee
            .chain()
            .broadcast(tx)
            .await
            .map_err(|e| Refused::chain(&e))?;
    }
    let txid = channel.contract_txid();
    let ledger = Ledger::default().with_paid(channel.paid());
    match store.open_channel(&id, &step.state, ledger).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(Refused::channel(&ChannelError::UnexpectedMessage {
                state: "Ready",
                message: "PROVIDE_CONTRACT",
            }))
        }
        Err(e) => return Err(Refused::store(payee, &e)),
    }
    Metrics::bump(&payee.metrics().channels_opened, 1);
    tracing::info!(%txid, value = %channel.funding.contract.value, "channel opened");
    Ok(reply(txid.to_string(), &step.send))
}

async fn channel_message(
    payee: &Payee,
    txid: Txid,
    msg: WireMessage,
    authorization: Option<&str>,
) -> Result<Response, Refused> {
    let store = payee.store();
    for _ in 0..MAX_ATTEMPTS {
        let stored = store
            .channel(&txid)
            .await
            .map_err(|e| Refused::store(payee, &e))?
            .ok_or_else(Refused::unknown_session)?;
        // Anyone may learn a contract txid; only the client may close its channel. (A payment
        // carries the client's signature already.)
        if matches!(msg, WireMessage::Close(Close { settlement: None })) {
            authorized(&stored.state, ChannelRequest::Close, authorization)?;
        }
        let step = payee
            .with_ctx(|ctx| stored.state.on_message(ctx, msg.clone()))
            .map_err(|e| Refused::channel(&e))?;
        let paid = step.state.channel().map(|c| c.paid()).unwrap_or_default();
        let ledger = stored.ledger.with_paid(paid);
        if step.state != stored.state || ledger != stored.ledger {
            let update = ChannelUpdate::new(&stored.state, &step.state, ledger, &[]);
            payee.forget_hot_channel(&txid);
            match store.update_channel(&txid, stored.revision, update).await {
                Ok(_) => {}
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(Refused::store(payee, &e)),
            }
        }
        for tx in &step.broadcast {
            Metrics::bump(&payee.metrics().settlements_broadcast, 1);
            // Stored as Closing: the chain duties rebroadcast until the settlement confirms.
            if let Err(e) = payee.chain().broadcast(tx).await {
                tracing::warn!(%txid, error = %e, "settlement broadcast failed; will retry");
            }
        }
        return Ok(reply(txid.to_string(), &step.send));
    }
    Err(Refused::unavailable("the channel is busy; try again"))
}

async fn session_status(
    State(payee): State<Payee>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, Refused> {
    let txid: Txid = id.parse().map_err(|_| Refused::unknown_session())?;
    let stored = payee
        .store()
        .channel(&txid)
        .await
        .map_err(|e| Refused::store(&payee, &e))?
        .ok_or_else(Refused::unknown_session)?;
    // The totals are the client's to read: `?authorization=` of `ChannelRequest::Status`.
    let authorization = uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("authorization="))
    });
    authorized(&stored.state, ChannelRequest::Status, authorization)?;
    let channel = stored
        .state
        .channel()
        .ok_or_else(Refused::unknown_session)?;
    let state = match stored.state {
        PayeeState::Closing { .. } => SessionState::Closing,
        PayeeState::Closed { .. } => SessionState::Closed,
        _ => SessionState::Ready,
    };
    Ok(json(
        StatusCode::OK,
        &SessionStatus {
            session: txid.to_string(),
            state,
            paid: stored.ledger.paid,
            consumed: stored.ledger.consumed,
            credit: stored.ledger.credit(),
            channel_value: channel.funding.contract.value,
            expiry: channel.funding.contract.expiry.to_consensus_u32(),
        },
    ))
}
