//! Esplora's REST API (the subset wallets and payee servers use), with the
//! JSON shapes, texts and status codes of Blockstream's Esplora.

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::{sha256, sha256d, Hash};
use bitcoin::hex::{DisplayHex, FromHex};
use bitcoin::{
    Address, BlockHash, MerkleBlock, Network, OutPoint, Script, Transaction, TxOut, Txid,
};
use serde_json::{json, Value};

use crate::index::{script_hash, BlockMeta};
use crate::node::{lock, Shared};
use crate::state::State as NodeState;
use crate::Error;

/// Largest request body accepted (a hex transaction of 500 kB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Confirmed transactions per page of a script's history, as Esplora pages them.
const CHAIN_TXS_PER_PAGE: usize = 25;
/// Mempool transactions listed before the confirmed ones.
const MEMPOOL_TXS_LISTED: usize = 50;
/// Blocks per page of `/blocks`.
const BLOCKS_PER_PAGE: u32 = 10;
/// Transactions per page of `/block/:hash/txs`.
const BLOCK_TXS_PER_PAGE: usize = 25;

/// An error answered as plain text with a 4xx status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, self.message).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        match err {
            Error::Task(_) | Error::Io(_) => ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: err.to_string(),
            },
            Error::Rejected(rejection) => {
                ApiError::bad_request(rpc_error(rejection.rpc_code(), &rejection.to_string()))
            }
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

type ApiResult = Result<Response, ApiError>;

/// The error text Esplora passes on from bitcoind's `sendrawtransaction`.
fn rpc_error(code: i32, message: &str) -> String {
    format!(
        "sendrawtransaction RPC error: {}",
        json!({ "code": code, "message": message })
    )
}

/// Routes of the Esplora API.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/blocks/tip/height", get(tip_height))
        .route("/blocks/tip/hash", get(tip_hash))
        .route("/blocks", get(recent_blocks))
        .route("/blocks/{start_height}", get(blocks_from))
        .route("/block-height/{height}", get(block_at_height))
        .route("/block/{hash}", get(block_info))
        .route("/block/{hash}/header", get(block_header))
        .route("/block/{hash}/status", get(block_status))
        .route("/block/{hash}/txids", get(block_txids))
        .route("/block/{hash}/txid/{index}", get(block_txid))
        .route("/block/{hash}/txs", get(block_txs))
        .route("/block/{hash}/txs/{start}", get(block_txs_from))
        .route("/block/{hash}/raw", get(block_raw))
        .route("/tx", post(broadcast))
        .route("/tx/{txid}", get(tx_info))
        .route("/tx/{txid}/hex", get(tx_hex))
        .route("/tx/{txid}/raw", get(tx_raw))
        .route("/tx/{txid}/status", get(tx_status_route))
        .route("/tx/{txid}/merkle-proof", get(merkle_proof))
        .route("/tx/{txid}/merkleblock-proof", get(merkleblock_proof))
        .route("/tx/{txid}/outspend/{vout}", get(outspend))
        .route("/tx/{txid}/outspends", get(outspends))
        .route("/address/{address}", get(address_stats))
        .route("/address/{address}/txs", get(address_txs))
        .route("/address/{address}/txs/chain", get(address_txs_chain))
        .route(
            "/address/{address}/txs/chain/{last_seen}",
            get(address_txs_after),
        )
        .route("/address/{address}/txs/mempool", get(address_txs_mempool))
        .route("/address/{address}/utxo", get(address_utxo))
        .route("/scripthash/{hash}", get(scripthash_stats))
        .route("/scripthash/{hash}/txs", get(scripthash_txs))
        .route("/scripthash/{hash}/txs/chain", get(scripthash_txs_chain))
        .route(
            "/scripthash/{hash}/txs/chain/{last_seen}",
            get(scripthash_txs_after),
        )
        .route(
            "/scripthash/{hash}/txs/mempool",
            get(scripthash_txs_mempool),
        )
        .route("/scripthash/{hash}/utxo", get(scripthash_utxo))
        .route("/mempool", get(mempool_info))
        .route("/mempool/txids", get(mempool_txids))
        .route("/mempool/recent", get(mempool_recent))
        .route("/fee-estimates", get(fee_estimates))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("Not found")
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

fn octets(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response()
}

fn parse_txid(s: &str) -> Result<Txid, ApiError> {
    Txid::from_str(s).map_err(|_| ApiError::bad_request("Invalid hex string"))
}

fn parse_block_hash(s: &str) -> Result<BlockHash, ApiError> {
    BlockHash::from_str(s).map_err(|_| ApiError::bad_request("Invalid hex string"))
}

fn parse_number<T: FromStr>(s: &str) -> Result<T, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("Invalid number: {s}")))
}

/// A regtest address, refusing other networks' addresses.
pub fn parse_regtest_address(s: &str) -> Result<Address, ApiError> {
    Address::from_str(s)
        .ok()
        .and_then(|a| a.require_network(Network::Regtest).ok())
        .ok_or_else(|| ApiError::bad_request("Invalid Bitcoin address"))
}

fn parse_address(s: &str) -> Result<sha256::Hash, ApiError> {
    Ok(script_hash(&parse_regtest_address(s)?.script_pubkey()))
}

fn parse_scripthash(s: &str) -> Result<sha256::Hash, ApiError> {
    sha256::Hash::from_str(s).map_err(|_| ApiError::bad_request("Invalid hex string"))
}

// ----- JSON shapes -----

fn status_json(state: &NodeState, txid: &Txid) -> Value {
    let index = state.index();
    match index
        .tx(txid)
        .and_then(|confirmed| index.block(confirmed.height))
    {
        Some(block) => confirmed_status(block),
        None => json!({ "confirmed": false }),
    }
}

fn confirmed_status(block: &BlockMeta) -> Value {
    json!({
        "confirmed": true,
        "block_height": block.height,
        "block_hash": block.hash.to_string(),
        "block_time": block.header.time,
    })
}

fn script_type(script: &Script) -> &'static str {
    if script.is_p2pkh() {
        "p2pkh"
    } else if script.is_p2sh() {
        "p2sh"
    } else if script.is_p2wpkh() {
        "v0_p2wpkh"
    } else if script.is_p2wsh() {
        "v0_p2wsh"
    } else if script.is_p2tr() {
        "v1_p2tr"
    } else if script.is_op_return() {
        "op_return"
    } else if script.is_p2pk() {
        "p2pk"
    } else if script.is_multisig() {
        "multisig"
    } else if script.is_empty() {
        "empty"
    } else {
        "unknown"
    }
}

fn output_json(output: &TxOut) -> Value {
    let script = &output.script_pubkey;
    let mut value = json!({
        "scriptpubkey": script.to_hex_string(),
        "scriptpubkey_asm": script.to_asm_string(),
        "scriptpubkey_type": script_type(script),
        "value": output.value.to_sat(),
    });
    if let Ok(address) = Address::from_script(script, Network::Regtest) {
        value["scriptpubkey_address"] = json!(address.to_string());
    }
    value
}

/// An output spent by a transaction the node knows: confirmed or in the mempool.
fn find_output(state: &NodeState, outpoint: &OutPoint) -> Option<TxOut> {
    state
        .index()
        .output(outpoint)
        .or_else(|| state.mempool().output(outpoint))
        .cloned()
}

fn tx_json(state: &NodeState, tx: &Transaction) -> Value {
    let txid = tx.compute_txid();
    let mut value_in = 0u64;
    let vin: Vec<Value> = tx
        .input
        .iter()
        .map(|input| {
            let is_coinbase = input.previous_output.is_null();
            let prevout = match is_coinbase {
                true => None,
                false => find_output(state, &input.previous_output),
            };
            value_in += prevout.as_ref().map_or(0, |o| o.value.to_sat());
            let mut value = json!({
                "txid": input.previous_output.txid.to_string(),
                "vout": input.previous_output.vout,
                "prevout": prevout.as_ref().map(output_json),
                "scriptsig": input.script_sig.to_hex_string(),
                "scriptsig_asm": input.script_sig.to_asm_string(),
                "is_coinbase": is_coinbase,
                "sequence": input.sequence.0,
            });
            if !input.witness.is_empty() {
                let items: Vec<String> = input
                    .witness
                    .iter()
                    .map(|item| item.to_lower_hex_string())
                    .collect();
                value["witness"] = json!(items);
            }
            let is_p2wsh = prevout.as_ref().is_some_and(|o| o.script_pubkey.is_p2wsh());
            if let (true, Some(script)) = (is_p2wsh, input.witness.last()) {
                value["inner_witnessscript_asm"] =
                    json!(Script::from_bytes(script).to_asm_string());
            }
            value
        })
        .collect();
    let value_out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    let fee = match tx.is_coinbase() {
        true => 0,
        false => value_in.saturating_sub(value_out),
    };
    json!({
        "txid": txid.to_string(),
        "version": tx.version.0,
        "locktime": tx.lock_time.to_consensus_u32(),
        "vin": vin,
        "vout": tx.output.iter().map(output_json).collect::<Vec<_>>(),
        "size": tx.total_size(),
        "weight": tx.weight().to_wu(),
        "fee": fee,
        "status": status_json(state, &txid),
    })
}

fn block_json(meta: &BlockMeta) -> Value {
    let previous = match meta.height {
        0 => Value::Null,
        _ => json!(meta.header.prev_blockhash.to_string()),
    };
    json!({
        "id": meta.hash.to_string(),
        "height": meta.height,
        "version": meta.header.version.to_consensus(),
        "timestamp": meta.header.time,
        "tx_count": meta.txids.len(),
        "size": meta.size,
        "weight": meta.weight,
        "merkle_root": meta.header.merkle_root.to_string(),
        "previousblockhash": previous,
        "mediantime": meta.median_time,
        "nonce": meta.header.nonce,
        "bits": meta.header.bits.to_consensus(),
        "difficulty": meta.header.difficulty_float(),
    })
}

// ----- lookups -----

fn find_tx(state: &NodeState, txid: &Txid) -> Result<Transaction, ApiError> {
    if let Some(confirmed) = state.index().tx(txid) {
        return Ok((*confirmed.tx).clone());
    }
    match state.mempool().get(txid) {
        Some(entry) => Ok((*entry.tx).clone()),
        None => Err(ApiError::not_found("Transaction not found")),
    }
}

fn find_block<'a>(state: &'a NodeState, hash: &str) -> Result<&'a BlockMeta, ApiError> {
    let hash = parse_block_hash(hash)?;
    state
        .index()
        .block_by_hash(&hash)
        .ok_or_else(|| ApiError::not_found("Block not found"))
}

// ----- chain -----

async fn tip_height(State(state): State<Shared>) -> Response {
    text(lock(&state).index().height().to_string())
}

async fn tip_hash(State(state): State<Shared>) -> ApiResult {
    let state = lock(&state);
    let tip = state
        .index()
        .tip()
        .ok_or_else(|| ApiError::not_found("Block not found"))?;
    Ok(text(tip.hash.to_string()))
}

fn blocks_page(state: &NodeState, start: u32) -> Response {
    let index = state.index();
    let start = start.min(index.height());
    let blocks: Vec<Value> = (0..=start)
        .rev()
        .take(BLOCKS_PER_PAGE as usize)
        .filter_map(|height| index.block(height).map(block_json))
        .collect();
    Json(blocks).into_response()
}

async fn recent_blocks(State(state): State<Shared>) -> Response {
    let state = lock(&state);
    let height = state.index().height();
    blocks_page(&state, height)
}

async fn blocks_from(State(state): State<Shared>, Path(start): Path<String>) -> ApiResult {
    let start = parse_number(&start)?;
    Ok(blocks_page(&lock(&state), start))
}

async fn block_at_height(State(state): State<Shared>, Path(height): Path<String>) -> ApiResult {
    let height = parse_number(&height)?;
    let state = lock(&state);
    let block = state
        .index()
        .block(height)
        .ok_or_else(|| ApiError::not_found("Block not found"))?;
    Ok(text(block.hash.to_string()))
}

async fn block_info(State(state): State<Shared>, Path(hash): Path<String>) -> ApiResult {
    let state = lock(&state);
    Ok(Json(block_json(find_block(&state, &hash)?)).into_response())
}

async fn block_header(State(state): State<Shared>, Path(hash): Path<String>) -> ApiResult {
    let state = lock(&state);
    let block = find_block(&state, &hash)?;
    Ok(text(serialize(&block.header).to_lower_hex_string()))
}

async fn block_status(State(state): State<Shared>, Path(hash): Path<String>) -> ApiResult {
    let hash = parse_block_hash(&hash)?;
    let state = lock(&state);
    let index = state.index();
    if let Some(block) = index.block_by_hash(&hash) {
        let next = index.block(block.height + 1).map(|b| b.hash.to_string());
        return Ok(Json(json!({
            "in_best_chain": true,
            "height": block.height,
            "next_best": next,
        }))
        .into_response());
    }
    match state.chain().knows(&hash) {
        true => Ok(Json(json!({ "in_best_chain": false })).into_response()),
        false => Err(ApiError::not_found("Block not found")),
    }
}

async fn block_txids(State(state): State<Shared>, Path(hash): Path<String>) -> ApiResult {
    let state = lock(&state);
    let block = find_block(&state, &hash)?;
    let txids: Vec<String> = block.txids.iter().map(Txid::to_string).collect();
    Ok(Json(txids).into_response())
}

async fn block_txid(
    State(state): State<Shared>,
    Path((hash, index)): Path<(String, String)>,
) -> ApiResult {
    let index: usize = parse_number(&index)?;
    let state = lock(&state);
    let block = find_block(&state, &hash)?;
    let txid = block
        .txids
        .get(index)
        .ok_or_else(|| ApiError::not_found("Transaction not found"))?;
    Ok(text(txid.to_string()))
}

fn block_txs_page(state: &NodeState, hash: &str, start: usize) -> ApiResult {
    let block = find_block(state, hash)?;
    if start % BLOCK_TXS_PER_PAGE != 0 {
        return Err(ApiError::bad_request(format!(
            "start index must be a multiple of {BLOCK_TXS_PER_PAGE}"
        )));
    }
    if start >= block.txids.len() {
        return Err(ApiError::bad_request("start index out of range"));
    }
    let txs: Vec<Value> = block
        .txids
        .iter()
        .skip(start)
        .take(BLOCK_TXS_PER_PAGE)
        .filter_map(|txid| state.index().tx(txid))
        .map(|confirmed| tx_json(state, &confirmed.tx))
        .collect();
    Ok(Json(txs).into_response())
}

async fn block_txs(State(state): State<Shared>, Path(hash): Path<String>) -> ApiResult {
    block_txs_page(&lock(&state), &hash, 0)
}

async fn block_txs_from(
    State(state): State<Shared>,
    Path((hash, start)): Path<(String, String)>,
) -> ApiResult {
    let start = parse_number(&start)?;
    block_txs_page(&lock(&state), &hash, start)
}

async fn block_raw(State(state): State<Shared>, Path(hash): Path<String>) -> ApiResult {
    let state = lock(&state);
    let meta = find_block(&state, &hash)?;
    let block = state
        .index()
        .full_block(meta)
        .ok_or_else(|| ApiError::not_found("Block not found"))?;
    Ok(octets(serialize(&block)))
}

// ----- transactions -----

async fn broadcast(State(state): State<Shared>, body: Bytes) -> ApiResult {
    let decode_failed = || ApiError::bad_request(rpc_error(-22, "TX decode failed"));
    let hex = std::str::from_utf8(&body).map_err(|_| decode_failed())?;
    let raw = Vec::<u8>::from_hex(hex.trim()).map_err(|_| decode_failed())?;
    let tx: Transaction = deserialize(&raw).map_err(|_| decode_failed())?;
    let txid = lock(&state).broadcast(tx)?;
    Ok(text(txid.to_string()))
}

async fn tx_info(State(state): State<Shared>, Path(txid): Path<String>) -> ApiResult {
    let txid = parse_txid(&txid)?;
    let state = lock(&state);
    let tx = find_tx(&state, &txid)?;
    Ok(Json(tx_json(&state, &tx)).into_response())
}

async fn tx_hex(State(state): State<Shared>, Path(txid): Path<String>) -> ApiResult {
    let txid = parse_txid(&txid)?;
    let tx = find_tx(&lock(&state), &txid)?;
    Ok(text(serialize(&tx).to_lower_hex_string()))
}

async fn tx_raw(State(state): State<Shared>, Path(txid): Path<String>) -> ApiResult {
    let txid = parse_txid(&txid)?;
    let tx = find_tx(&lock(&state), &txid)?;
    Ok(octets(serialize(&tx)))
}

/// Unknown transactions are reported unconfirmed, as Esplora does.
async fn tx_status_route(State(state): State<Shared>, Path(txid): Path<String>) -> ApiResult {
    let txid = parse_txid(&txid)?;
    Ok(Json(status_json(&lock(&state), &txid)).into_response())
}

/// Merkle branch of the transaction at `pos`, deepest pairing first.
fn merkle_branch(txids: &[Txid], mut pos: usize) -> Vec<Txid> {
    let mut level: Vec<sha256d::Hash> = txids.iter().map(|t| t.to_raw_hash()).collect();
    let mut branch = Vec::new();
    while level.len() > 1 {
        if level.len() % 2 == 1 {
            if let Some(&last) = level.last() {
                level.push(last);
            }
        }
        branch.push(Txid::from_raw_hash(level[pos ^ 1]));
        level = level
            .chunks(2)
            .map(|pair| {
                let mut engine = sha256d::Hash::engine();
                for hash in pair {
                    bitcoin::hashes::HashEngine::input(&mut engine, hash.as_byte_array());
                }
                sha256d::Hash::from_engine(engine)
            })
            .collect();
        pos /= 2;
    }
    branch
}

fn confirmed_position(state: &NodeState, txid: &Txid) -> Result<(BlockMeta, usize), ApiError> {
    let unconfirmed = || ApiError::not_found("Transaction not found or is unconfirmed");
    let confirmed = state.index().tx(txid).ok_or_else(unconfirmed)?;
    let block = state
        .index()
        .block(confirmed.height)
        .ok_or_else(unconfirmed)?;
    let pos = block
        .txids
        .iter()
        .position(|t| t == txid)
        .ok_or_else(unconfirmed)?;
    Ok((block.clone(), pos))
}

async fn merkle_proof(State(state): State<Shared>, Path(txid): Path<String>) -> ApiResult {
    let txid = parse_txid(&txid)?;
    let state = lock(&state);
    let (block, pos) = confirmed_position(&state, &txid)?;
    let merkle: Vec<String> = merkle_branch(&block.txids, pos)
        .iter()
        .map(Txid::to_string)
        .collect();
    Ok(Json(json!({
        "block_height": block.height,
        "merkle": merkle,
        "pos": pos,
    }))
    .into_response())
}

async fn merkleblock_proof(State(state): State<Shared>, Path(txid): Path<String>) -> ApiResult {
    let txid = parse_txid(&txid)?;
    let state = lock(&state);
    let (meta, _) = confirmed_position(&state, &txid)?;
    let block = state
        .index()
        .full_block(&meta)
        .ok_or_else(|| ApiError::not_found("Block not found"))?;
    let proof = MerkleBlock::from_block_with_predicate(&block, |t| *t == txid);
    Ok(text(serialize(&proof).to_lower_hex_string()))
}

fn outspend_json(state: &NodeState, outpoint: &OutPoint) -> Value {
    if let Some(spend) = state.index().spend(outpoint) {
        let status = state
            .index()
            .block(spend.height)
            .map(confirmed_status)
            .unwrap_or_else(|| json!({ "confirmed": false }));
        return json!({
            "spent": true,
            "txid": spend.txid.to_string(),
            "vin": spend.vin,
            "status": status,
        });
    }
    match state.mempool().spend(outpoint) {
        Some((txid, vin)) => json!({
            "spent": true,
            "txid": txid.to_string(),
            "vin": vin,
            "status": { "confirmed": false },
        }),
        None => json!({ "spent": false }),
    }
}

async fn outspend(
    State(state): State<Shared>,
    Path((txid, vout)): Path<(String, String)>,
) -> ApiResult {
    let txid = parse_txid(&txid)?;
    let vout = parse_number(&vout)?;
    // Like Esplora, an output it does not know is simply unspent.
    Ok(Json(outspend_json(&lock(&state), &OutPoint { txid, vout })).into_response())
}

async fn outspends(State(state): State<Shared>, Path(txid): Path<String>) -> ApiResult {
    let txid = parse_txid(&txid)?;
    let state = lock(&state);
    let tx = find_tx(&state, &txid)?;
    let spends: Vec<Value> = (0..tx.output.len())
        .map(|vout| {
            let vout = u32::try_from(vout).unwrap_or(u32::MAX);
            outspend_json(&state, &OutPoint { txid, vout })
        })
        .collect();
    Ok(Json(spends).into_response())
}

// ----- addresses and script hashes -----

/// Mempool transactions paying to or spending from the script, newest first.
fn mempool_history(state: &NodeState, hash: &sha256::Hash) -> Vec<Transaction> {
    state
        .mempool()
        .iter()
        .rev()
        .filter(|entry| {
            entry
                .tx
                .output
                .iter()
                .any(|o| script_hash(&o.script_pubkey) == *hash)
                || entry.tx.input.iter().any(|i| {
                    find_output(state, &i.previous_output)
                        .is_some_and(|o| script_hash(&o.script_pubkey) == *hash)
                })
        })
        .map(|entry| (*entry.tx).clone())
        .collect()
}

/// Confirmed history newest first, after `last_seen` when given.
fn chain_history(state: &NodeState, hash: &sha256::Hash, last_seen: Option<Txid>) -> Vec<Value> {
    let history = state.index().history(hash);
    let newest_first = history.iter().rev();
    let page: Vec<&Txid> = match last_seen {
        None => newest_first.take(CHAIN_TXS_PER_PAGE).collect(),
        // An unknown `last_seen` gives an empty page, so clients stop paging.
        Some(seen) => newest_first
            .skip_while(|t| **t != seen)
            .skip(1)
            .take(CHAIN_TXS_PER_PAGE)
            .collect(),
    };
    page.into_iter()
        .filter_map(|txid| state.index().tx(txid))
        .map(|confirmed| tx_json(state, &confirmed.tx))
        .collect()
}

fn history_json(state: &Shared, hash: &sha256::Hash) -> Response {
    let state = lock(state);
    let mut txs: Vec<Value> = mempool_history(&state, hash)
        .iter()
        .take(MEMPOOL_TXS_LISTED)
        .map(|tx| tx_json(&state, tx))
        .collect();
    txs.extend(chain_history(&state, hash, None));
    Json(txs).into_response()
}

fn chain_history_json(state: &Shared, hash: &sha256::Hash, last_seen: Option<Txid>) -> Response {
    let state = lock(state);
    Json(chain_history(&state, hash, last_seen)).into_response()
}

fn mempool_history_json(state: &Shared, hash: &sha256::Hash) -> Response {
    let state = lock(state);
    let txs: Vec<Value> = mempool_history(&state, hash)
        .iter()
        .take(MEMPOOL_TXS_LISTED)
        .map(|tx| tx_json(&state, tx))
        .collect();
    Json(txs).into_response()
}

fn utxo_json(state: &Shared, hash: &sha256::Hash) -> Response {
    let state = lock(state);
    let mempool = state.mempool();
    let mut utxos: Vec<Value> = state
        .index()
        .utxos_of(hash)
        .into_iter()
        .filter(|(outpoint, _)| mempool.spend(outpoint).is_none())
        .map(|(outpoint, coin)| {
            let status = state
                .index()
                .block(coin.height)
                .map(confirmed_status)
                .unwrap_or_else(|| json!({ "confirmed": false }));
            json!({
                "txid": outpoint.txid.to_string(),
                "vout": outpoint.vout,
                "status": status,
                "value": coin.output.value.to_sat(),
            })
        })
        .collect();
    for entry in mempool.iter() {
        for (vout, output) in entry.tx.output.iter().enumerate() {
            let vout = u32::try_from(vout).unwrap_or(u32::MAX);
            let outpoint = OutPoint {
                txid: entry.txid,
                vout,
            };
            if script_hash(&output.script_pubkey) == *hash && mempool.spend(&outpoint).is_none() {
                utxos.push(json!({
                    "txid": entry.txid.to_string(),
                    "vout": vout,
                    "status": { "confirmed": false },
                    "value": output.value.to_sat(),
                }));
            }
        }
    }
    Json(utxos).into_response()
}

/// Funded / spent totals of the script, as Esplora's `chain_stats` and `mempool_stats`.
fn stats_json(state: &NodeState, hash: &sha256::Hash) -> (Value, Value) {
    let summarize = |txs: &mut dyn Iterator<Item = &Transaction>| {
        let (mut funded, mut funded_sum, mut spent, mut spent_sum, mut count) = (0, 0, 0, 0, 0);
        for tx in txs {
            count += 1;
            for output in &tx.output {
                if script_hash(&output.script_pubkey) == *hash {
                    funded += 1;
                    funded_sum += output.value.to_sat();
                }
            }
            for input in &tx.input {
                if let Some(prev) = find_output(state, &input.previous_output) {
                    if script_hash(&prev.script_pubkey) == *hash {
                        spent += 1;
                        spent_sum += prev.value.to_sat();
                    }
                }
            }
        }
        json!({
            "funded_txo_count": funded,
            "funded_txo_sum": funded_sum,
            "spent_txo_count": spent,
            "spent_txo_sum": spent_sum,
            "tx_count": count,
        })
    };
    let chain_txs: Vec<&Transaction> = state
        .index()
        .history(hash)
        .iter()
        .filter_map(|txid| state.index().tx(txid).map(|c| c.tx.as_ref()))
        .collect();
    let mempool_txs = mempool_history(state, hash);
    (
        summarize(&mut chain_txs.into_iter()),
        summarize(&mut mempool_txs.iter()),
    )
}

async fn address_stats(State(state): State<Shared>, Path(address): Path<String>) -> ApiResult {
    let hash = parse_address(&address)?;
    let state = lock(&state);
    let (chain_stats, mempool_stats) = stats_json(&state, &hash);
    Ok(Json(json!({
        "address": address,
        "chain_stats": chain_stats,
        "mempool_stats": mempool_stats,
    }))
    .into_response())
}

async fn scripthash_stats(State(state): State<Shared>, Path(hash): Path<String>) -> ApiResult {
    let parsed = parse_scripthash(&hash)?;
    let state = lock(&state);
    let (chain_stats, mempool_stats) = stats_json(&state, &parsed);
    Ok(Json(json!({
        "scripthash": hash,
        "chain_stats": chain_stats,
        "mempool_stats": mempool_stats,
    }))
    .into_response())
}

async fn address_txs(State(state): State<Shared>, Path(address): Path<String>) -> ApiResult {
    Ok(history_json(&state, &parse_address(&address)?))
}

async fn address_txs_chain(State(state): State<Shared>, Path(address): Path<String>) -> ApiResult {
    Ok(chain_history_json(&state, &parse_address(&address)?, None))
}

async fn address_txs_after(
    State(state): State<Shared>,
    Path((address, last_seen)): Path<(String, String)>,
) -> ApiResult {
    let hash = parse_address(&address)?;
    let last_seen = parse_txid(&last_seen)?;
    Ok(chain_history_json(&state, &hash, Some(last_seen)))
}

async fn address_txs_mempool(
    State(state): State<Shared>,
    Path(address): Path<String>,
) -> ApiResult {
    Ok(mempool_history_json(&state, &parse_address(&address)?))
}

async fn address_utxo(State(state): State<Shared>, Path(address): Path<String>) -> ApiResult {
    Ok(utxo_json(&state, &parse_address(&address)?))
}

async fn scripthash_txs(State(state): State<Shared>, Path(hash): Path<String>) -> ApiResult {
    Ok(history_json(&state, &parse_scripthash(&hash)?))
}

async fn scripthash_txs_chain(State(state): State<Shared>, Path(hash): Path<String>) -> ApiResult {
    Ok(chain_history_json(&state, &parse_scripthash(&hash)?, None))
}

async fn scripthash_txs_after(
    State(state): State<Shared>,
    Path((hash, last_seen)): Path<(String, String)>,
) -> ApiResult {
    let hash = parse_scripthash(&hash)?;
    let last_seen = parse_txid(&last_seen)?;
    Ok(chain_history_json(&state, &hash, Some(last_seen)))
}

async fn scripthash_txs_mempool(
    State(state): State<Shared>,
    Path(hash): Path<String>,
) -> ApiResult {
    Ok(mempool_history_json(&state, &parse_scripthash(&hash)?))
}

async fn scripthash_utxo(State(state): State<Shared>, Path(hash): Path<String>) -> ApiResult {
    Ok(utxo_json(&state, &parse_scripthash(&hash)?))
}

// ----- mempool and fees -----

async fn mempool_info(State(state): State<Shared>) -> Response {
    let state = lock(&state);
    let mempool = state.mempool();
    let vsize: u64 = mempool.iter().map(|e| e.vsize).sum();
    let total_fee: u64 = mempool.iter().map(|e| e.fee.to_sat()).sum();
    // One histogram bucket per distinct fee rate, highest first.
    let mut rates: Vec<(f64, u64)> = mempool
        .iter()
        .map(|e| (e.fee.to_sat() as f64 / e.vsize.max(1) as f64, e.vsize))
        .collect();
    rates.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut histogram: Vec<(f64, u64)> = Vec::new();
    for (rate, size) in rates {
        match histogram.last_mut() {
            Some(last) if last.0 == rate => last.1 += size,
            _ => histogram.push((rate, size)),
        }
    }
    Json(json!({
        "count": mempool.len(),
        "vsize": vsize,
        "total_fee": total_fee,
        "fee_histogram": histogram,
    }))
    .into_response()
}

async fn mempool_txids(State(state): State<Shared>) -> Response {
    let state = lock(&state);
    let txids: Vec<String> = state.mempool().iter().map(|e| e.txid.to_string()).collect();
    Json(txids).into_response()
}

async fn mempool_recent(State(state): State<Shared>) -> Response {
    let state = lock(&state);
    let recent: Vec<Value> = state
        .mempool()
        .iter()
        .rev()
        .take(10)
        .map(|e| {
            json!({
                "txid": e.txid.to_string(),
                "fee": e.fee.to_sat(),
                "vsize": e.vsize,
                "value": e.tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>(),
            })
        })
        .collect();
    Json(recent).into_response()
}

/// Every target Esplora estimates for, all at the minimum relay fee: a
/// regtest chain has no fee market, and an empty answer breaks wallets.
/// Every target gets the rate that is mined now (see `/regtest/fees`).
async fn fee_estimates(State(state): State<Shared>) -> Response {
    let rate = lock(&state).fee_estimate() as f64;
    let targets = (1..=25).chain([144, 504, 1008]);
    let estimates: serde_json::Map<String, Value> =
        targets.map(|t: u32| (t.to_string(), json!(rate))).collect();
    Json(Value::Object(estimates)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merkle_branch_of_two_transactions_is_the_sibling() {
        let a = Txid::from_byte_array([1; 32]);
        let b = Txid::from_byte_array([2; 32]);
        assert_eq!(merkle_branch(&[a, b], 0), vec![b]);
        assert_eq!(merkle_branch(&[a, b], 1), vec![a]);
        assert!(merkle_branch(&[a], 0).is_empty());
    }
}
