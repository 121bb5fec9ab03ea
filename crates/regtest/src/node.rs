//! The running node: state behind a lock, served over HTTP on 127.0.0.1.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use bitcoin::{Address, Amount, Block, BlockHash, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::state::State;
use crate::Error;

/// Shared node state, as the HTTP handlers see it.
pub(crate) type Shared = Arc<Mutex<State>>;

/// Locks the state, recovering it if a panicking handler poisoned the lock.
pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// How to start a [`Node`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Keep the chain here across restarts; `None` keeps it in a temporary
    /// directory that is removed when the node stops.
    pub datadir: Option<PathBuf>,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Blocks mined to the faucet when the chain is new (101 gives it mature coins).
    pub initial_blocks: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            datadir: None,
            port: 0,
            initial_blocks: 101,
        }
    }
}

/// A running regtest node with its Esplora API.
///
/// Dropping the node stops the HTTP server; [`Node::shutdown`] also waits
/// until the chain is closed, which a restart on the same data directory needs.
pub struct Node {
    state: Shared,
    addr: SocketAddr,
    url: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl Node {
    /// Opens the chain (mining the initial blocks on a new one) and starts serving.
    pub async fn start(config: Config) -> Result<Node, Error> {
        let datadir = config.datadir.clone();
        let initial_blocks = config.initial_blocks;
        let state =
            tokio::task::spawn_blocking(move || State::open(datadir.as_deref(), initial_blocks))
                .await??;
        let state = Arc::new(Mutex::new(state));
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, config.port)).await?;
        let addr = listener.local_addr()?;
        let app =
            crate::esplora::router(state.clone()).merge(crate::control::router(state.clone()));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(err) = serve.await {
                eprintln!("trickle-regtest: http server stopped: {err}");
            }
        });
        Ok(Node {
            state,
            addr,
            url: format!("http://{addr}"),
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// Base URL of the Esplora API, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Address the HTTP server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the HTTP server and waits until the chain is flushed and closed.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await?;
        }
        Ok(())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Runs `f` on the state in a blocking thread (mining can take a while).
    async fn blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut State) -> Result<T, Error> + Send + 'static,
    {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || f(&mut lock(&state))).await?
    }

    /// Mines `count` blocks to the faucet, taking the mempool's transactions.
    pub async fn mine(&self, count: u32) -> Result<Vec<BlockHash>, Error> {
        self.blocking(move |state| {
            let payout = state.faucet().script().clone();
            state.mine(count, payout)
        })
        .await
    }

    /// Mines `count` blocks whose coinbase pays `payout`.
    pub async fn mine_to(&self, count: u32, payout: ScriptBuf) -> Result<Vec<BlockHash>, Error> {
        self.blocking(move |state| state.mine(count, payout)).await
    }

    /// Pays `amount` from the faucet to `address` and mines it into a block.
    pub async fn fund(&self, address: &Address, amount: Amount) -> Result<Txid, Error> {
        let destination = address.script_pubkey();
        self.blocking(move |state| {
            let txid = state.faucet_send(destination, amount)?;
            let payout = state.faucet().script().clone();
            state.mine(1, payout)?;
            Ok(txid)
        })
        .await
    }

    /// Pays `amount` from the faucet to `address`, leaving it unconfirmed.
    pub fn send(&self, address: &Address, amount: Amount) -> Result<Txid, Error> {
        self.state().faucet_send(address.script_pubkey(), amount)
    }

    /// Offers a transaction to the mempool; the error carries bitcoind's reason.
    pub fn broadcast(&self, tx: &Transaction) -> Result<Txid, Error> {
        self.state().broadcast(tx.clone())
    }

    /// Builds a block on the tip with `txs` after the coinbase (which pays the
    /// faucet), without submitting it. Tests may alter it before [`Node::submit_block`].
    pub fn build_block(&self, txs: Vec<Transaction>) -> Block {
        let state = self.state();
        let payout = state.faucet().script().clone();
        state.build_block(txs, payout)
    }

    /// Has the kernel validate `block`; the error carries the kernel's reason.
    pub fn submit_block(&self, block: &Block) -> Result<(), Error> {
        self.state().submit_block(block)
    }

    /// Sets the fee market (see [`State::set_fee_market`]); returns how many
    /// transactions left the mempool.
    pub fn set_fee_market(&self, min_fee_rate: u64, block_fee_rate: u64) -> usize {
        self.state().set_fee_market(min_fee_rate, block_fee_rate)
    }

    /// Replaces the last `blocks` blocks with a heavier branch of empty blocks
    /// (see [`State::reorg`]); `forget` do not return to the mempool.
    pub async fn reorg(&self, blocks: u32, forget: Vec<Txid>) -> Result<Vec<BlockHash>, Error> {
        self.blocking(move |state| {
            let payout = state.faucet().script().clone();
            state.reorg(blocks, &forget.into_iter().collect(), payout)
        })
        .await
    }

    /// Moves the chain clock forward for the next blocks; returns the next block's time.
    pub fn advance_time(&self, secs: u64) -> Result<u32, Error> {
        self.state().advance_time(secs)
    }

    /// Height of the chain tip.
    pub fn height(&self) -> u32 {
        self.state().index().height()
    }

    /// Hash of the chain tip.
    pub fn tip_hash(&self) -> Option<BlockHash> {
        self.state().index().tip().map(|b| b.hash)
    }

    /// Median time past of the tip, the cutoff for time-based lock times.
    pub fn median_time_past(&self) -> u32 {
        let state = self.state();
        state.index().median_time_past(state.index().height())
    }

    /// An unspent output of the chain or the mempool.
    pub fn utxo(&self, outpoint: &OutPoint) -> Option<TxOut> {
        let state = self.state();
        if state.mempool().spend(outpoint).is_some() {
            return None;
        }
        state
            .index()
            .coin(outpoint)
            .map(|coin| coin.output.clone())
            .or_else(|| state.mempool().output(outpoint).cloned())
    }

    /// Transaction ids of an active-chain block, coinbase first.
    pub fn block_txids(&self, hash: &BlockHash) -> Option<Vec<Txid>> {
        self.state()
            .index()
            .block_by_hash(hash)
            .map(|b| b.txids.clone())
    }

    /// A transaction of the chain or the mempool.
    pub fn transaction(&self, txid: &Txid) -> Option<Transaction> {
        let state = self.state();
        if let Some(confirmed) = state.index().tx(txid) {
            return Some((*confirmed.tx).clone());
        }
        state.mempool().get(txid).map(|entry| (*entry.tx).clone())
    }

    /// Whether the transaction is in the mempool.
    pub fn in_mempool(&self, txid: &Txid) -> bool {
        self.state().mempool().get(txid).is_some()
    }

    /// Height of the block that confirmed the transaction, if any.
    pub fn confirmation_height(&self, txid: &Txid) -> Option<u32> {
        self.state().index().tx(txid).map(|c| c.height)
    }

    /// The faucet's address (where mined coins go by default).
    pub fn faucet_address(&self) -> Address {
        self.state().faucet().address()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
