//! The block chain itself: libbitcoinkernel validates and stores every block,
//! and this module builds (mines) the blocks it is given.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::{
    absolute, consensus, transaction, Amount, Block, BlockHash, CompactTarget, OutPoint, ScriptBuf,
    Sequence, Transaction, TxIn, TxMerkleNode, TxOut, Witness,
};
use bitcoinkernel::prelude::*;
use bitcoinkernel::{ChainType, ChainstateManager, Context, ContextBuilder, Log, Logger};
use tempfile::TempDir;

/// Compact proof-of-work target of every regtest block.
pub const REGTEST_BITS: u32 = 0x207f_ffff;

/// Blocks between subsidy halvings on regtest.
const HALVING_INTERVAL: u32 = 150;

/// Largest block weight that consensus allows.
pub const MAX_BLOCK_WEIGHT: u64 = 4_000_000;

/// Errors from opening the chain or from the kernel.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The kernel could not be set up or failed internally.
    #[error("kernel error: {0}")]
    Kernel(String),
    /// The kernel refused the block; the reason is the kernel's own (e.g. `bad-txns-nonfinal`).
    #[error("block rejected: {0}")]
    Rejected(String),
    /// The block was already known to the kernel.
    #[error("duplicate")]
    Duplicate,
    /// The block is stored on a side branch that has no more work than the
    /// active chain, so the kernel has not fully validated it yet (bitcoind's
    /// `submitblock` answers the same).
    #[error("inconclusive")]
    Inconclusive,
    /// Block data from the kernel could not be decoded.
    #[error("cannot decode block data: {0}")]
    Decode(#[from] consensus::encode::Error),
    /// The data directory could not be created.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
}

impl From<bitcoinkernel::KernelError> for ChainError {
    fn from(err: bitcoinkernel::KernelError) -> Self {
        ChainError::Kernel(err.to_string().to_lowercase())
    }
}

/// Kernel log lines captured while one block is processed.
///
/// The kernel's logging connection is process-wide, so block processing is
/// serialised across all chains in the process and the capture belongs to the
/// one block being processed.
static CAPTURE: Mutex<Option<Vec<String>>> = Mutex::new(None);
static PROCESSING: Mutex<()> = Mutex::new(());
static LOGGER: OnceLock<()> = OnceLock::new();

struct CaptureLog;

impl Log for CaptureLog {
    fn log(&self, message: &str) {
        if let Some(lines) = lock(&CAPTURE).as_mut() {
            lines.push(message.to_owned());
        }
    }
}

/// Locks a mutex, recovering it if a panicking thread poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Connects the kernel log to [`CAPTURE`] once per process.
///
/// The kernel's `Logger` handle is not `Send`, so a parked thread owns it for
/// the life of the process.
fn install_logger() {
    LOGGER.get_or_init(|| {
        let (ready_tx, ready_rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("kernel-log".into())
            .spawn(move || {
                let logger = Logger::new(CaptureLog);
                let _ = ready_tx.send(());
                if logger.is_ok() {
                    loop {
                        std::thread::park();
                    }
                }
            });
        if spawned.is_ok() {
            let _ = ready_rx.recv();
        }
    });
}

/// Picks the reject reason out of the kernel's log lines.
fn reject_reason(lines: &[String]) -> Option<String> {
    const MARKERS: [&str; 5] = [
        "Block validation error: ",
        " failed, ",
        "AcceptBlock FAILED (",
        "Consensus::CheckBlock: ",
        "AcceptBlock: ",
    ];
    MARKERS.iter().find_map(|marker| {
        lines.iter().find_map(|line| {
            let start = line.find(marker)? + marker.len();
            let reason = line[start..].trim_end();
            let reason = match marker.ends_with('(') {
                true => reason.strip_suffix(')').unwrap_or(reason),
                false => reason,
            };
            Some(reason.to_owned())
        })
    })
}

/// A regtest chain held by libbitcoinkernel.
pub struct Chain {
    // Field order is drop order: the chainstate manager must go before its context,
    // and both before the temporary directory they write to.
    chainman: ChainstateManager,
    _context: Context,
    _tempdir: Option<TempDir>,
}

impl Chain {
    /// Opens the chain kept in `datadir`, or a throw-away chain when `None`.
    pub fn open(datadir: Option<&Path>) -> Result<Chain, ChainError> {
        install_logger();
        let (tempdir, dir) = match datadir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                (None, dir.to_path_buf())
            }
            None => {
                let tempdir = tempfile::Builder::new()
                    .prefix("trickle-regtest-")
                    .tempdir()?;
                let dir = tempdir.path().to_path_buf();
                (Some(tempdir), dir)
            }
        };
        let in_memory = tempdir.is_some();
        let blocks = dir.join("blocks");
        let context = ContextBuilder::new()
            .chain_type(ChainType::Regtest)
            .build()?;
        let chainman = ChainstateManager::builder(
            &context,
            &dir.to_string_lossy(),
            &blocks.to_string_lossy(),
        )?
        .worker_threads(0)
        .block_tree_db_in_memory(in_memory)
        .chainstate_db_in_memory(in_memory)
        .build()?;
        chainman.import_blocks()?;
        Ok(Chain {
            chainman,
            _context: context,
            _tempdir: tempdir,
        })
    }

    /// Height of the active chain's tip.
    pub fn height(&self) -> u32 {
        u32::try_from(self.chainman.active_chain().height()).unwrap_or(0)
    }

    /// Hash of the active-chain block at `height`.
    pub fn hash_at(&self, height: u32) -> Option<BlockHash> {
        let entry = self.chainman.active_chain().at_height(height as usize)?;
        Some(BlockHash::from_byte_array(entry.block_hash().to_bytes()))
    }

    /// Whether the kernel knows a block with this hash, in the active chain or not.
    pub fn knows(&self, hash: &BlockHash) -> bool {
        let hash = bitcoinkernel::BlockHash::from(hash.to_byte_array());
        self.chainman.get_block_tree_entry(&hash).is_some()
    }

    /// Reads the active-chain block at `height` from the kernel's block files.
    pub fn block_at(&self, height: u32) -> Result<Block, ChainError> {
        let entry = self
            .chainman
            .active_chain()
            .at_height(height as usize)
            .ok_or_else(|| ChainError::Kernel(format!("no block at height {height}")))?;
        let raw = self.chainman.read_block_data(&entry)?.consensus_encode()?;
        Ok(consensus::deserialize(&raw)?)
    }

    /// Validates `block` with the kernel; it is kept only if it becomes the new tip.
    pub fn submit(&self, block: &Block) -> Result<(), ChainError> {
        let raw = consensus::serialize(block);
        let kernel_block = bitcoinkernel::Block::new(&raw)?;
        let hash = block.block_hash();

        let _serial = lock(&PROCESSING);
        *lock(&CAPTURE) = Some(Vec::new());
        let result = self.chainman.process_block(&kernel_block);
        let lines = lock(&CAPTURE).take().unwrap_or_default();

        if result.is_duplicate() {
            return Err(ChainError::Duplicate);
        }
        // `NewBlock` only means "stored": a block whose transactions fail is
        // stored, then refused when the kernel tries to connect it.
        if self.hash_at(self.height()) == Some(hash) {
            return Ok(());
        }
        match (reject_reason(&lines), result.is_new_block()) {
            (Some(reason), _) => Err(ChainError::Rejected(reason)),
            (None, true) => Err(ChainError::Inconclusive),
            (None, false) => Err(ChainError::Rejected("rejected by the kernel".to_owned())),
        }
    }
}

/// Block subsidy at `height` on regtest.
pub fn subsidy(height: u32) -> Amount {
    let halvings = height / HALVING_INTERVAL;
    match halvings {
        0..=63 => Amount::from_sat((50 * 100_000_000) >> halvings),
        _ => Amount::ZERO,
    }
}

/// Everything needed to build one block on top of a known tip.
pub struct BlockTemplate {
    /// Hash of the block to build on.
    pub prev: BlockHash,
    /// Height of the new block.
    pub height: u32,
    /// Timestamp of the new block.
    pub time: u32,
    /// Where the coinbase pays subsidy and fees.
    pub payout: ScriptBuf,
    /// Sum of the fees paid by `txs`.
    pub fees: Amount,
    /// Transactions after the coinbase, parents before children.
    pub txs: Vec<Transaction>,
}

impl BlockTemplate {
    /// Builds the block: BIP34 coinbase, witness commitment, then a nonce
    /// search at regtest difficulty (about two tries).
    pub fn mine(self) -> Block {
        let height_push = Builder::new().push_int(i64::from(self.height));
        // Heights up to 16 encode as one opcode; consensus wants 2..=100 bytes.
        let script_sig = height_push
            .push_opcode(bitcoin::opcodes::OP_0)
            .into_script();
        let coinbase = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig,
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[[0u8; 32]]),
            }],
            output: vec![TxOut {
                value: subsidy(self.height) + self.fees,
                script_pubkey: self.payout,
            }],
        };
        let mut txdata = Vec::with_capacity(self.txs.len() + 1);
        txdata.push(coinbase);
        txdata.extend(self.txs);
        let mut block = Block {
            header: Header {
                version: Version::from_consensus(0x2000_0000),
                prev_blockhash: self.prev,
                merkle_root: TxMerkleNode::all_zeros(),
                time: self.time,
                bits: CompactTarget::from_consensus(REGTEST_BITS),
                nonce: 0,
            },
            txdata,
        };
        if let Some(witness_root) = block.witness_root() {
            let commitment = Block::compute_witness_commitment(&witness_root, &[0u8; 32]);
            let mut data = PushBytesBuf::from([0xaa, 0x21, 0xa9, 0xed]);
            // Four magic bytes plus 32 hash bytes always fit a push.
            if data.extend_from_slice(commitment.as_byte_array()).is_ok() {
                block.txdata[0].output.push(TxOut {
                    value: Amount::ZERO,
                    script_pubkey: ScriptBuf::new_op_return(data),
                });
            }
        }
        if let Some(root) = block.compute_merkle_root() {
            block.header.merkle_root = root;
        }
        let target = block.header.target();
        while !target.is_met_by(block.header.block_hash()) {
            block.header.nonce = block.header.nonce.wrapping_add(1);
        }
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_reason_prefers_connect_failure() {
        let lines = vec![
            "UpdateTip: new best=00".to_owned(),
            "[error] ConnectTip: ConnectBlock 00ab failed, bad-txns-nonfinal, non-final transaction\n"
                .to_owned(),
        ];
        assert_eq!(
            reject_reason(&lines).as_deref(),
            Some("bad-txns-nonfinal, non-final transaction")
        );
        let lines = vec!["[error] ProcessNewBlock: AcceptBlock FAILED (time-too-new, block timestamp too far in the future)\n".to_owned()];
        assert_eq!(
            reject_reason(&lines).as_deref(),
            Some("time-too-new, block timestamp too far in the future")
        );
    }

    #[test]
    fn subsidy_halves_every_150_blocks() {
        assert_eq!(subsidy(0), Amount::from_btc(50.0).unwrap());
        assert_eq!(subsidy(150), Amount::from_btc(25.0).unwrap());
    }
}
