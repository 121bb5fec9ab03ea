//! The node's state: the kernel chain, the indexes over it, the mempool, the
//! chain clock and the faucet, and the operations that keep them in step.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::{Amount, Block, BlockHash, OutPoint, ScriptBuf, Transaction, TxOut, Txid};

use crate::chain::{BlockTemplate, Chain, MAX_BLOCK_WEIGHT};
use crate::faucet::Faucet;
use crate::index::ChainIndex;
use crate::mempool::Mempool;
use crate::Error;

/// The kernel refuses blocks more than two hours ahead of the system clock
/// (`time-too-new`); keep a minute of margin.
pub const MAX_CLOCK_OFFSET_SECS: u64 = 2 * 60 * 60 - 60;

/// Weight kept free for the coinbase when filling a block.
const COINBASE_WEIGHT_RESERVE: u64 = 4_000;

/// Seconds since the Unix epoch by the system clock.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Chain, indexes, mempool, clock and faucet of one node.
pub struct State {
    chain: Chain,
    index: ChainIndex,
    mempool: Mempool,
    clock_offset: u64,
    faucet: Faucet,
}

impl State {
    /// Opens the chain and indexes it; a fresh chain gets `initial_blocks`
    /// blocks paying the faucet, so that it has mature coins.
    pub fn open(datadir: Option<&Path>, initial_blocks: u32) -> Result<State, Error> {
        let chain = Chain::open(datadir)?;
        let mut state = State {
            chain,
            index: ChainIndex::default(),
            mempool: Mempool::default(),
            clock_offset: 0,
            faucet: Faucet::new()?,
        };
        state.reindex()?;
        if state.index.height() == 0 && initial_blocks > 0 {
            let payout = state.faucet.script().clone();
            state.mine(initial_blocks, payout)?;
        }
        Ok(state)
    }

    /// Rebuilds the indexes from the kernel's active chain.
    fn reindex(&mut self) -> Result<(), Error> {
        let mut index = ChainIndex::default();
        for height in 0..=self.chain.height() {
            index.connect(&self.chain.block_at(height)?);
        }
        self.index = index;
        Ok(())
    }

    /// The indexes over the active chain.
    pub fn index(&self) -> &ChainIndex {
        &self.index
    }

    /// The mempool.
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// The kernel chain.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The faucet.
    pub fn faucet(&self) -> &Faucet {
        &self.faucet
    }

    /// Timestamp the next block gets: the chain clock, but always past the
    /// tip's median time as consensus requires.
    pub fn next_block_time(&self) -> u32 {
        let clock = u32::try_from(unix_now() + self.clock_offset).unwrap_or(u32::MAX);
        clock.max(self.index.median_time_past(self.index.height()) + 1)
    }

    /// Moves the chain clock forward by `secs` for the blocks mined from now on.
    pub fn advance_time(&mut self, secs: u64) -> Result<u32, Error> {
        let offset = self.clock_offset.saturating_add(secs);
        if offset > MAX_CLOCK_OFFSET_SECS {
            return Err(Error::ClockTooFar {
                max_secs: MAX_CLOCK_OFFSET_SECS - self.clock_offset,
            });
        }
        self.clock_offset = offset;
        Ok(self.next_block_time())
    }

    /// Builds (but does not submit) a block on the tip holding `txs` after
    /// the coinbase, which pays subsidy and fees to `payout`.
    pub fn build_block(&self, txs: Vec<Transaction>, payout: ScriptBuf) -> Block {
        let mut created: Vec<(Txid, &Transaction)> = Vec::new();
        let mut fees = Amount::ZERO;
        for tx in &txs {
            let value_in: Amount = tx
                .input
                .iter()
                .filter_map(|input| self.find_output(&input.previous_output, &created))
                .map(|output| output.value)
                .sum();
            let value_out: Amount = tx.output.iter().map(|o| o.value).sum();
            fees += value_in.checked_sub(value_out).unwrap_or(Amount::ZERO);
            created.push((tx.compute_txid(), tx));
        }
        BlockTemplate {
            prev: self.chain_tip_hash(),
            height: self.index.height() + 1,
            time: self.next_block_time(),
            payout,
            fees,
            txs,
        }
        .mine()
    }

    fn chain_tip_hash(&self) -> BlockHash {
        self.chain
            .hash_at(self.chain.height())
            .unwrap_or_else(|| BlockHash::from_raw_hash(bitcoin::hashes::Hash::all_zeros()))
    }

    /// An output the block being built may spend: unspent in the chain, in
    /// the mempool, or created earlier in the same block.
    fn find_output<'a>(
        &'a self,
        outpoint: &OutPoint,
        created: &[(Txid, &'a Transaction)],
    ) -> Option<&'a TxOut> {
        if let Some(coin) = self.index.coin(outpoint) {
            return Some(&coin.output);
        }
        if let Some(output) = self.mempool.output(outpoint) {
            return Some(output);
        }
        created
            .iter()
            .find(|(txid, _)| *txid == outpoint.txid)
            .and_then(|(_, tx)| tx.output.get(outpoint.vout as usize))
    }

    /// Has the kernel validate `block`; on success the indexes and mempool follow.
    pub fn submit_block(&mut self, block: &Block) -> Result<(), Error> {
        self.chain.submit(block)?;
        // The block is now the kernel's tip; anything but a one-block
        // extension of the indexed chain is a reorganisation.
        let mut disconnected = Vec::new();
        if self.index.tip().map(|b| b.hash) == Some(block.header.prev_blockhash) {
            self.index.connect(block);
        } else {
            let old = std::mem::take(&mut self.index);
            self.reindex()?;
            disconnected = self.disconnected_txs(&old);
        }
        self.refresh_mempool(disconnected);
        Ok(())
    }

    /// Transactions of `old` blocks that the new active chain no longer has,
    /// in chain order (coinbases cannot return to the mempool).
    fn disconnected_txs(&self, old: &ChainIndex) -> Vec<Transaction> {
        let fork = (0..=old.height().min(self.index.height()))
            .rev()
            .find(|&h| old.block(h).map(|b| b.hash) == self.index.block(h).map(|b| b.hash))
            .unwrap_or(0);
        ((fork + 1)..=old.height())
            .filter_map(|h| old.block(h))
            .flat_map(|block| block.txids.iter().skip(1))
            .filter(|txid| self.index.tx(txid).is_none())
            .filter_map(|txid| old.tx(txid).map(|c| (*c.tx).clone()))
            .collect()
    }

    /// Re-checks the mempool against the new tip: transactions from
    /// disconnected blocks first, then the mempool's own; whatever the chain
    /// confirmed or made invalid is dropped.
    fn refresh_mempool(&mut self, disconnected: Vec<Transaction>) {
        let now = unix_now();
        let pending = self.mempool.drain();
        let candidates = disconnected
            .into_iter()
            .map(|tx| (tx, now))
            .chain(pending.into_iter().map(|e| ((*e.tx).clone(), e.time)));
        for (tx, time) in candidates {
            if self.index.tx(&tx.compute_txid()).is_none() {
                let _ = self.mempool.accept(tx, &self.index, time);
            }
        }
    }

    /// Mines `count` blocks paying `payout`, each taking the mempool's transactions.
    pub fn mine(&mut self, count: u32, payout: ScriptBuf) -> Result<Vec<BlockHash>, Error> {
        let mut hashes = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let mut weight = COINBASE_WEIGHT_RESERVE;
            let txs = self
                .mempool
                .iter()
                .map(|entry| (*entry.tx).clone())
                // Arrival order keeps parents first, so stopping at the first
                // transaction that does not fit never orphans a child.
                .take_while(|tx| {
                    weight += tx.weight().to_wu();
                    weight <= MAX_BLOCK_WEIGHT
                })
                .collect();
            let block = self.build_block(txs, payout.clone());
            self.submit_block(&block)?;
            hashes.push(block.block_hash());
        }
        Ok(hashes)
    }

    /// Offers `tx` to the mempool, as `sendrawtransaction` does: a
    /// transaction already in the mempool is accepted again without error.
    pub fn broadcast(&mut self, tx: Transaction) -> Result<Txid, Error> {
        let txid = tx.compute_txid();
        if let Some(entry) = self.mempool.get(&txid) {
            if entry.tx.compute_wtxid() == tx.compute_wtxid() {
                return Ok(txid);
            }
        }
        Ok(self.mempool.accept(tx, &self.index, unix_now())?)
    }

    /// Pays `amount` from the faucet to `destination` through the mempool.
    pub fn faucet_send(&mut self, destination: ScriptBuf, amount: Amount) -> Result<Txid, Error> {
        let tx = self
            .faucet
            .pay(&self.index, &self.mempool, destination, amount)?;
        self.broadcast(tx)
    }
}
