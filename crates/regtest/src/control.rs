//! Developer controls under `/regtest/`: mine, pay from the faucet, move
//! chain time, submit raw blocks, set the fee market, reorganise the chain,
//! and a summary of the node.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::consensus::deserialize;
use bitcoin::hex::FromHex;
use bitcoin::{Amount, Block, ScriptBuf};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::esplora::{parse_regtest_address, ApiError, MAX_BODY_BYTES};
use crate::node::{lock, Shared};
use crate::state::State as NodeState;

/// Most blocks one `/regtest/mine` call may ask for.
const MAX_BLOCKS_PER_CALL: u32 = 10_000;

/// Routes of the developer controls.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/regtest/info", get(info))
        .route("/regtest/mine", post(mine))
        .route("/regtest/faucet", post(faucet))
        .route("/regtest/time", post(time))
        .route("/regtest/block", post(submit_block))
        .route("/regtest/fees", post(fees))
        .route("/regtest/reorg", post(reorg))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Parses a JSON body; an empty body means all defaults.
fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn address_script(address: &str) -> Result<ScriptBuf, ApiError> {
    Ok(parse_regtest_address(address)?.script_pubkey())
}

/// Runs `f` on the state in a blocking thread: mining holds the lock a while.
async fn blocking<T, F>(state: Shared, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut NodeState) -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || f(&mut lock(&state)))
        .await
        .map_err(|e| ApiError::from(crate::Error::from(e)))?
}

async fn info(State(state): State<Shared>) -> Response {
    let state = lock(&state);
    let index = state.index();
    Json(json!({
        "height": index.height(),
        "tip": index.tip().map(|b| b.hash.to_string()),
        "median_time_past": index.median_time_past(index.height()),
        "next_block_time": state.next_block_time(),
        "mempool_size": state.mempool().len(),
        "mempool_min_fee_rate": state.mempool().min_fee_rate(),
        "fee_estimate": state.fee_estimate(),
        "faucet_address": state.faucet().address().to_string(),
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MineRequest {
    #[serde(default = "one")]
    blocks: u32,
    address: Option<String>,
}

impl Default for MineRequest {
    fn default() -> Self {
        MineRequest {
            blocks: one(),
            address: None,
        }
    }
}

fn one() -> u32 {
    1
}

async fn mine(State(state): State<Shared>, bytes: Bytes) -> Result<Response, ApiError> {
    let request: MineRequest = body(&bytes)?;
    if request.blocks > MAX_BLOCKS_PER_CALL {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_BLOCKS_PER_CALL} blocks per call"
        )));
    }
    let payout = request.address.as_deref().map(address_script).transpose()?;
    blocking(state, move |state| {
        let payout = payout.unwrap_or_else(|| state.faucet().script().clone());
        let hashes = state.mine(request.blocks, payout)?;
        Ok(Json(json!({
            "height": state.index().height(),
            "hashes": hashes.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        }))
        .into_response())
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FaucetRequest {
    address: String,
    amount_sat: u64,
    /// Mine a block after sending (default true).
    mine: Option<bool>,
}

async fn faucet(State(state): State<Shared>, bytes: Bytes) -> Result<Response, ApiError> {
    let request: FaucetRequest = body(&bytes)?;
    let destination = address_script(&request.address)?;
    let amount = Amount::from_sat(request.amount_sat);
    blocking(state, move |state| {
        let txid = state.faucet_send(destination, amount)?;
        let confirmed = request.mine.unwrap_or(true);
        if confirmed {
            let payout = state.faucet().script().clone();
            state.mine(1, payout)?;
        }
        Ok(Json(json!({ "txid": txid.to_string(), "confirmed": confirmed })).into_response())
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TimeRequest {
    advance_secs: u64,
}

async fn time(State(state): State<Shared>, bytes: Bytes) -> Result<Response, ApiError> {
    let request: TimeRequest = body(&bytes)?;
    let mut state = lock(&state);
    let next_block_time = state.advance_time(request.advance_secs)?;
    let index = state.index();
    Ok(Json(json!({
        "next_block_time": next_block_time,
        "median_time_past": index.median_time_past(index.height()),
    }))
    .into_response())
}

async fn submit_block(State(state): State<Shared>, bytes: Bytes) -> Result<Response, ApiError> {
    let invalid = || ApiError::bad_request("Block decode failed");
    let hex = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
    let raw = Vec::<u8>::from_hex(hex.trim()).map_err(|_| invalid())?;
    let block: Block = deserialize(&raw).map_err(|_| invalid())?;
    blocking(state, move |state| {
        state.submit_block(&block)?;
        Ok(block.block_hash().to_string().into_response())
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FeesRequest {
    /// The mempool's minimum fee rate, sat/vB (default: the relay fee, 1).
    #[serde(default)]
    min_fee_rate: u64,
    /// What other users pay for block space, sat/vB (default 0: blocks take everything).
    #[serde(default)]
    block_fee_rate: u64,
}

async fn fees(State(state): State<Shared>, bytes: Bytes) -> Result<Response, ApiError> {
    let request: FeesRequest = body(&bytes)?;
    let mut state = lock(&state);
    let evicted = state.set_fee_market(request.min_fee_rate, request.block_fee_rate);
    Ok(Json(json!({
        "mempool_min_fee_rate": state.mempool().min_fee_rate(),
        "block_fee_rate": request.block_fee_rate,
        "fee_estimate": state.fee_estimate(),
        "evicted": evicted,
    }))
    .into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReorgRequest {
    /// How many blocks to replace.
    blocks: u32,
    /// Transactions of the replaced blocks that do not return to the mempool.
    #[serde(default)]
    forget: Vec<bitcoin::Txid>,
}

async fn reorg(State(state): State<Shared>, bytes: Bytes) -> Result<Response, ApiError> {
    let request: ReorgRequest = body(&bytes)?;
    blocking(state, move |state| {
        let payout = state.faucet().script().clone();
        let forget = request.forget.into_iter().collect();
        let hashes = state.reorg(request.blocks, &forget, payout)?;
        Ok(Json(json!({
            "height": state.index().height(),
            "hashes": hashes.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        }))
        .into_response())
    })
    .await
}
