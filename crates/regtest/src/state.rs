//! The node's state: the kernel chain, the indexes over it, the mempool, the
//! chain clock and the faucet, and the operations that keep them in step.

use std::collections::HashSet;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::{Amount, Block, BlockHash, OutPoint, ScriptBuf, Transaction, TxOut, Txid};

use crate::chain::{BlockTemplate, Chain, ChainError, MAX_BLOCK_WEIGHT};
use crate::faucet::Faucet;
use crate::index::ChainIndex;
use crate::mempool::Mempool;
use crate::Error;

/// The kernel refuses blocks more than two hours ahead of the system clock
/// (`time-too-new`); keep a minute of margin.
pub const MAX_CLOCK_OFFSET_SECS: u64 = 2 * 60 * 60 - 60;

/// Weight kept free for the coinbase when filling a block.
const COINBASE_WEIGHT_RESERVE: u64 = 4_000;

/// Deepest reorganisation [`State::reorg`] makes.
pub const MAX_REORG_BLOCKS: u32 = 100;

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
    /// The fee rate (sat/vB) that other users' transactions pay for every block's space: the
    /// blocks mined here take only what pays at least this much (0: everything fits).
    block_fee_rate: u64,
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
            block_fee_rate: 0,
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

    /// Mines `count` blocks paying `payout`, each taking the mempool's transactions
    /// that pay the block fee rate.
    pub fn mine(&mut self, count: u32, payout: ScriptBuf) -> Result<Vec<BlockHash>, Error> {
        let mut hashes = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let block = self.build_block(self.block_candidates(), payout.clone());
            self.submit_block(&block)?;
            hashes.push(block.block_hash());
        }
        Ok(hashes)
    }

    /// What the next block takes: mempool transactions in arrival order, each
    /// with its unconfirmed ancestors when together they pay at least the block
    /// fee rate (so a child can pay for its parent), until the block is full.
    fn block_candidates(&self) -> Vec<Transaction> {
        let floor = self.block_fee_rate.saturating_mul(1_000);
        let mut chosen: HashSet<Txid> = HashSet::new();
        let mut weight = COINBASE_WEIGHT_RESERVE;
        for entry in self.mempool.iter() {
            if chosen.contains(&entry.txid) {
                continue;
            }
            let package: Vec<_> = self
                .mempool
                .with_ancestors(&entry.txid)
                .into_iter()
                .filter(|t| !chosen.contains(t))
                .filter_map(|t| self.mempool.get(&t))
                .collect();
            let fee: u64 = package.iter().map(|e| e.fee.to_sat()).sum();
            let vsize: u64 = package.iter().map(|e| e.vsize).sum();
            if fee.saturating_mul(1_000) / vsize.max(1) < floor {
                continue;
            }
            let added: u64 = package.iter().map(|e| e.tx.weight().to_wu()).sum();
            if weight + added > MAX_BLOCK_WEIGHT {
                break;
            }
            weight += added;
            chosen.extend(package.iter().map(|e| e.txid));
        }
        // Arrival order keeps parents before children.
        self.mempool
            .iter()
            .filter(|e| chosen.contains(&e.txid))
            .map(|e| (*e.tx).clone())
            .collect()
    }

    /// Sets the fee market: the mempool's minimum fee rate (sat/vB, at least
    /// the relay fee; what pays less leaves) and the rate other users pay for
    /// block space (what pays less is not mined). Returns how many
    /// transactions left the mempool.
    pub fn set_fee_market(&mut self, min_fee_rate: u64, block_fee_rate: u64) -> usize {
        self.block_fee_rate = block_fee_rate;
        self.mempool.set_min_fee_rate(min_fee_rate)
    }

    /// The fee rate (sat/vB) that gets a transaction into the next blocks, for
    /// `/fee-estimates`: the mempool's minimum, or the block fee rate if higher.
    pub fn fee_estimate(&self) -> u64 {
        self.mempool.min_fee_rate().max(self.block_fee_rate)
    }

    /// Replaces the last `blocks` blocks with `blocks + 1` empty blocks paying
    /// `payout`: a heavier branch, so the kernel reorganises onto it. The
    /// replaced blocks' transactions return to the mempool, as bitcoind returns
    /// them, except those in `forget` and their descendants, which leave it as
    /// if the network never saw them again.
    pub fn reorg(
        &mut self,
        blocks: u32,
        forget: &HashSet<Txid>,
        payout: ScriptBuf,
    ) -> Result<Vec<BlockHash>, Error> {
        let height = self.index.height();
        let max = height.min(MAX_REORG_BLOCKS);
        if blocks == 0 || blocks > max {
            return Err(Error::Reorg { max });
        }
        let fork = height - blocks;
        let mut prev = self.chain.hash_at(fork).ok_or(Error::Reorg { max })?;
        // Later than every block it follows, so that each is past its median time.
        let latest = (fork.saturating_sub(11)..=height)
            .filter_map(|h| self.index.block(h))
            .map(|b| b.header.time)
            .max()
            .unwrap_or(0);
        let start = self.next_block_time().max(latest + 1);
        let mut hashes = Vec::new();
        for i in 0..=blocks {
            let block = BlockTemplate {
                prev,
                height: fork + 1 + i,
                time: start + i,
                payout: payout.clone(),
                fees: Amount::ZERO,
                txs: Vec::new(),
            }
            .mine();
            prev = block.block_hash();
            hashes.push(prev);
            match self.submit_block(&block) {
                Ok(()) => {}
                // Not yet more work than the active chain: stored on the side.
                Err(Error::Chain(ChainError::Inconclusive)) if i < blocks => {}
                Err(e) => return Err(e),
            }
        }
        self.mempool.evict(forget);
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
