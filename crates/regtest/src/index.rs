//! In-memory indexes over the active chain: blocks, transactions, the UTXO
//! set, who spent what, and each script's history.
//!
//! The kernel keeps blocks and its own UTXO set but answers none of these
//! questions, so the index is rebuilt from the kernel's blocks at start and
//! after a reorganisation, and extended block by block otherwise.

use std::collections::HashMap;
use std::sync::Arc;

use bitcoin::block::Header;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::{Block, BlockHash, OutPoint, Script, Transaction, TxOut, Txid};

/// Hash that Esplora uses to name a script: its SHA256.
pub fn script_hash(script: &Script) -> sha256::Hash {
    sha256::Hash::hash(script.as_bytes())
}

/// What the index remembers of a block.
#[derive(Debug, Clone)]
pub struct BlockMeta {
    /// Block hash.
    pub hash: BlockHash,
    /// Block header.
    pub header: Header,
    /// Height in the active chain.
    pub height: u32,
    /// Serialized size in bytes.
    pub size: usize,
    /// Block weight.
    pub weight: u64,
    /// Transaction ids in block order.
    pub txids: Vec<Txid>,
    /// Median time of this block and the ten before it.
    pub median_time: u32,
}

/// A transaction in the active chain.
#[derive(Debug, Clone)]
pub struct ConfirmedTx {
    /// The transaction.
    pub tx: Arc<Transaction>,
    /// Height of its block.
    pub height: u32,
}

/// An unspent output of the active chain.
#[derive(Debug, Clone)]
pub struct Coin {
    /// The output.
    pub output: TxOut,
    /// Height of the block that created it.
    pub height: u32,
    /// Whether a coinbase created it (such coins mature after 100 blocks).
    pub is_coinbase: bool,
}

/// The confirmed input that spent an output.
#[derive(Debug, Clone, Copy)]
pub struct Spend {
    /// Spending transaction.
    pub txid: Txid,
    /// Input index in the spending transaction.
    pub vin: u32,
    /// Height of the spending transaction's block.
    pub height: u32,
}

/// Indexes over the active chain, genesis first.
#[derive(Debug, Default)]
pub struct ChainIndex {
    blocks: Vec<BlockMeta>,
    heights: HashMap<BlockHash, u32>,
    txs: HashMap<Txid, ConfirmedTx>,
    utxos: HashMap<OutPoint, Coin>,
    spends: HashMap<OutPoint, Spend>,
    history: HashMap<sha256::Hash, Vec<Txid>>,
}

impl ChainIndex {
    /// Appends `block` as the next block of the active chain.
    pub fn connect(&mut self, block: &Block) {
        let height = u32::try_from(self.blocks.len()).unwrap_or(u32::MAX);
        let hash = block.block_hash();
        for tx in &block.txdata {
            let txid = tx.compute_txid();
            let tx = Arc::new(tx.clone());
            let mut touched = Vec::new();
            if !tx.is_coinbase() {
                for (vin, input) in tx.input.iter().enumerate() {
                    let prevout = input.previous_output;
                    if let Some(coin) = self.utxos.remove(&prevout) {
                        touched.push(script_hash(&coin.output.script_pubkey));
                    }
                    let vin = u32::try_from(vin).unwrap_or(u32::MAX);
                    self.spends.insert(prevout, Spend { txid, vin, height });
                }
            }
            for (vout, output) in tx.output.iter().enumerate() {
                touched.push(script_hash(&output.script_pubkey));
                if output.script_pubkey.is_op_return() {
                    continue;
                }
                let vout = u32::try_from(vout).unwrap_or(u32::MAX);
                self.utxos.insert(
                    OutPoint { txid, vout },
                    Coin {
                        output: output.clone(),
                        height,
                        is_coinbase: tx.is_coinbase(),
                    },
                );
            }
            for hash in touched {
                let list = self.history.entry(hash).or_default();
                if list.last() != Some(&txid) {
                    list.push(txid);
                }
            }
            self.txs.insert(txid, ConfirmedTx { tx, height });
        }
        let mut times: Vec<u32> = self
            .blocks
            .iter()
            .rev()
            .take(10)
            .map(|b| b.header.time)
            .chain(std::iter::once(block.header.time))
            .collect();
        times.sort_unstable();
        let median_time = times[times.len() / 2];
        self.heights.insert(hash, height);
        self.blocks.push(BlockMeta {
            hash,
            header: block.header,
            height,
            size: bitcoin::consensus::serialize(block).len(),
            weight: block.weight().to_wu(),
            txids: block.txdata.iter().map(|tx| tx.compute_txid()).collect(),
            median_time,
        });
    }

    /// Height of the tip (0 when only genesis, or nothing, is indexed).
    pub fn height(&self) -> u32 {
        u32::try_from(self.blocks.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// The tip block, if any block is indexed.
    pub fn tip(&self) -> Option<&BlockMeta> {
        self.blocks.last()
    }

    /// The active-chain block at `height`.
    pub fn block(&self, height: u32) -> Option<&BlockMeta> {
        self.blocks.get(height as usize)
    }

    /// The active-chain block with this hash.
    pub fn block_by_hash(&self, hash: &BlockHash) -> Option<&BlockMeta> {
        self.block(*self.heights.get(hash)?)
    }

    /// Rebuilds the full block from indexed transactions.
    pub fn full_block(&self, meta: &BlockMeta) -> Option<Block> {
        let txdata = meta
            .txids
            .iter()
            .map(|txid| self.txs.get(txid).map(|c| (*c.tx).clone()))
            .collect::<Option<Vec<_>>>()?;
        Some(Block {
            header: meta.header,
            txdata,
        })
    }

    /// A transaction of the active chain.
    pub fn tx(&self, txid: &Txid) -> Option<&ConfirmedTx> {
        self.txs.get(txid)
    }

    /// An unspent output of the active chain.
    pub fn coin(&self, outpoint: &OutPoint) -> Option<&Coin> {
        self.utxos.get(outpoint)
    }

    /// Any output created in the active chain, spent or not.
    pub fn output(&self, outpoint: &OutPoint) -> Option<&TxOut> {
        self.txs
            .get(&outpoint.txid)?
            .tx
            .output
            .get(outpoint.vout as usize)
    }

    /// The confirmed input that spent `outpoint`.
    pub fn spend(&self, outpoint: &OutPoint) -> Option<&Spend> {
        self.spends.get(outpoint)
    }

    /// Confirmed transactions that pay to or spend from the script, oldest first.
    pub fn history(&self, hash: &sha256::Hash) -> &[Txid] {
        self.history
            .get(hash)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Unspent outputs locked to the script.
    pub fn utxos_of(&self, hash: &sha256::Hash) -> Vec<(OutPoint, &Coin)> {
        let mut found = Vec::new();
        for txid in self.history(hash) {
            let Some(confirmed) = self.txs.get(txid) else {
                continue;
            };
            for (vout, output) in confirmed.tx.output.iter().enumerate() {
                if script_hash(&output.script_pubkey) != *hash {
                    continue;
                }
                let vout = u32::try_from(vout).unwrap_or(u32::MAX);
                let outpoint = OutPoint { txid: *txid, vout };
                if let Some(coin) = self.utxos.get(&outpoint) {
                    found.push((outpoint, coin));
                }
            }
        }
        found
    }

    /// Median time past of the block at `height` (of the tip when beyond it).
    pub fn median_time_past(&self, height: u32) -> u32 {
        self.block(height.min(self.height()))
            .map(|b| b.median_time)
            .unwrap_or(0)
    }
}
