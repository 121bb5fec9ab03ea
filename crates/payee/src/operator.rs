//! The operator's view: channel list as JSON and HTML, and Prometheus metrics.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use trickle_channel::PayeeState;

use crate::payee::Payee;
use crate::store::StoredChannel;

/// One channel in `/status`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ChannelView {
    channel: String,
    state: &'static str,
    version: u8,
    channel_value: u64,
    paid: u64,
    consumed: u64,
    credit: u64,
    expiry: u32,
    blocks_to_expiry: i64,
    /// Past the close margin with no settlement in a block: the fee rate (sat/vB) of the
    /// settlement last broadcast, raised block by block until it confirms.
    #[serde(skip_serializing_if = "Option::is_none")]
    close_at_risk_fee_rate: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusView {
    network: String,
    server_key: String,
    tip_height: u32,
    open_channels: usize,
    /// Channels past their close margin with no settlement in a block yet.
    closes_at_risk: usize,
    total_paid: u64,
    total_consumed: u64,
    channels: Vec<ChannelView>,
}

fn view(payee: &Payee, stored: &StoredChannel) -> Option<ChannelView> {
    let channel = stored.state.channel()?;
    let contract = &channel.funding.contract;
    Some(ChannelView {
        channel: channel.contract_txid().to_string(),
        state: match stored.state {
            PayeeState::Closing { .. } => "closing",
            PayeeState::Closed { .. } => "closed",
            _ => "ready",
        },
        version: contract.version.major(),
        channel_value: contract.value.to_sat(),
        paid: stored.ledger.paid.to_sat(),
        consumed: stored.ledger.consumed.to_sat(),
        credit: stored.ledger.credit().to_sat(),
        expiry: contract.expiry.to_consensus_u32(),
        blocks_to_expiry: payee.tip().blocks_until(contract.expiry),
        close_at_risk_fee_rate: payee
            .close_at_risk(&channel.contract_txid())
            .map(|risk| risk.fee_rate_sat_vb),
    })
}

async fn status_view(payee: &Payee) -> Result<StatusView, Response> {
    let stored = payee.store().channels().await.map_err(|e| {
        tracing::error!(error = %e, "status: store failed");
        (StatusCode::SERVICE_UNAVAILABLE, "storage is unavailable\n").into_response()
    })?;
    let channels: Vec<ChannelView> = stored.iter().filter_map(|s| view(payee, s)).collect();
    Ok(StatusView {
        network: trickle_channel::http::caip2(payee.config().network),
        server_key: payee.server_key().to_string(),
        tip_height: payee.tip().height,
        open_channels: channels.iter().filter(|c| c.state == "ready").count(),
        closes_at_risk: channels
            .iter()
            .filter(|c| c.close_at_risk_fee_rate.is_some())
            .count(),
        total_paid: channels.iter().map(|c| c.paid).sum(),
        total_consumed: channels.iter().map(|c| c.consumed).sum(),
        channels,
    })
}

async fn status_json(State(payee): State<Payee>) -> Response {
    match status_view(&payee).await {
        Ok(v) => match serde_json::to_vec_pretty(&v) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        },
        Err(resp) => resp,
    }
}

async fn status_html(State(payee): State<Payee>) -> Response {
    let v = match status_view(&payee).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let mut rows = String::new();
    for c in &v.channels {
        let state = match c.close_at_risk_fee_rate {
            Some(rate) => format!("{} <strong>at risk</strong> ({rate} sat/vB)", c.state),
            None => c.state.to_string(),
        };
        // Every value is a number, a hex txid or a fixed word: nothing needs escaping.
        let _ = write!(
            rows,
            "<tr><td><code>{}</code></td><td>{state}</td><td>v{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({} blocks)</td></tr>",
            c.channel, c.version, c.channel_value, c.paid, c.consumed, c.credit, c.expiry, c.blocks_to_expiry
        );
    }
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Trickle payee</title>\
         <style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;text-align:right}}</style></head><body>\
         <h1>Trickle payee</h1><p>Network {} · tip {} · key <code>{}</code></p>\
         <p>{} open channels · {} closes at risk · earned {} sat · consumed {} sat</p>\
         <table><tr><th>channel</th><th>state</th><th>version</th><th>value</th><th>paid</th><th>consumed</th><th>credit</th><th>expiry</th></tr>{rows}</table>\
         </body></html>",
        v.network, v.tip_height, v.server_key, v.open_channels, v.closes_at_risk, v.total_paid, v.total_consumed
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

async fn metrics(State(payee): State<Payee>) -> Response {
    let v = match status_view(&payee).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let m = payee.metrics();
    let mut out = String::new();
    let counter = |out: &mut String, name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    counter(
        &mut out,
        "trickle_payee_paid_requests_total",
        "Requests served against a payment.",
        m.paid_requests.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "trickle_payee_reloads_total",
        "Paid requests served again without charge.",
        m.reloads.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "trickle_payee_consumed_sat_total",
        "Satoshis charged to requests since start.",
        m.sat_consumed.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "trickle_payee_channels_opened_total",
        "Channels opened since start.",
        m.channels_opened.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "trickle_payee_opens_refused_total",
        "Channel opens answered 503 because max_concurrent_opens were in progress.",
        m.opens_refused.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "trickle_payee_settlements_broadcast_total",
        "Settlement broadcasts since start.",
        m.settlements_broadcast.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "trickle_payee_store_failures_total",
        "Storage failures since start.",
        m.store_failures.load(Ordering::Relaxed),
    );
    let _ = writeln!(out, "# HELP trickle_payee_refusals_total Payments refused, by reason.\n# TYPE trickle_payee_refusals_total counter");
    if let Ok(refusals) = m.refusals.lock() {
        for (reason, n) in refusals.iter() {
            let _ = writeln!(
                out,
                "trickle_payee_refusals_total{{reason=\"{reason}\"}} {n}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP trickle_payee_channels Channels by state.\n# TYPE trickle_payee_channels gauge"
    );
    for state in ["ready", "closing", "closed"] {
        let n = v.channels.iter().filter(|c| c.state == state).count();
        let _ = writeln!(out, "trickle_payee_channels{{state=\"{state}\"}} {n}");
    }
    let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    gauge(
        &mut out,
        "trickle_payee_paid_sat",
        "Satoshis paid over all stored channels.",
        v.total_paid,
    );
    gauge(
        &mut out,
        "trickle_payee_consumed_sat",
        "Satoshis consumed over all stored channels.",
        v.total_consumed,
    );
    gauge(
        &mut out,
        "trickle_payee_closes_at_risk",
        "Channels past their close margin with no settlement in a block yet.",
        v.closes_at_risk as u64,
    );
    gauge(
        &mut out,
        "trickle_payee_tip_height",
        "Chain tip height last read.",
        u64::from(v.tip_height),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Routes `/status` (JSON), `/status.html` and `/metrics` (Prometheus text).
pub(crate) fn router(payee: Payee) -> Router {
    Router::new()
        .route("/status", get(status_json))
        .route("/status.html", get(status_html))
        .route("/metrics", get(metrics))
        .with_state(payee)
}
