//! The mempool and its acceptance rules, checked in the order bitcoind checks
//! them and refused with bitcoind's reject reasons.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bitcoin::{consensus, Amount, OutPoint, Transaction, TxOut, Txid};
use bitcoinkernel::{
    PrecomputedTransactionData, ScriptPubkey, VERIFY_ALL, VERIFY_CHECKLOCKTIMEVERIFY,
    VERIFY_CHECKSEQUENCEVERIFY,
};

use crate::index::ChainIndex;

/// Confirmations a coinbase output needs before it can be spent.
pub const COINBASE_MATURITY: u32 = 100;

/// Minimum relay fee rate in sat/vB.
pub const MIN_RELAY_SAT_PER_VB: u64 = 1;

const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;
const MIN_STANDARD_TX_NONWITNESS_SIZE: usize = 65;
const LOCKTIME_THRESHOLD: u32 = 500_000_000;
const SEQUENCE_DISABLE_FLAG: u32 = 1 << 31;
const SEQUENCE_TYPE_FLAG: u32 = 1 << 22;
const SEQUENCE_MASK: u32 = 0x0000_ffff;

/// Why the mempool refused a transaction, worded as bitcoind words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A coinbase cannot enter the mempool.
    #[error("coinbase")]
    Coinbase,
    /// The transaction has no inputs.
    #[error("bad-txns-vin-empty")]
    NoInputs,
    /// The transaction has no outputs.
    #[error("bad-txns-vout-empty")]
    NoOutputs,
    /// Two inputs spend the same output.
    #[error("bad-txns-inputs-duplicate")]
    DuplicateInputs,
    /// Output values overflow the money supply.
    #[error("bad-txns-txouttotal-toolarge")]
    OutputsTooLarge,
    /// Version outside the standard range.
    #[error("version")]
    Version,
    /// Heavier than a standard transaction may be.
    #[error("tx-size")]
    TooLarge,
    /// Smaller than 65 bytes without witness.
    #[error("tx-size-small")]
    TooSmall,
    /// An output is below the dust threshold.
    #[error("dust")]
    Dust,
    /// nLockTime is not yet reached for the next block.
    #[error("non-final")]
    NonFinal,
    /// The same transaction is already in the mempool.
    #[error("txn-already-in-mempool")]
    AlreadyInMempool,
    /// A transaction with the same txid but another witness is in the mempool.
    #[error("txn-same-nonwitness-data-in-mempool")]
    SameNonWitnessData,
    /// The transaction's outputs already exist in the chain.
    #[error("txn-already-known")]
    AlreadyKnown,
    /// An input is already spent by a mempool transaction.
    #[error("txn-mempool-conflict")]
    MempoolConflict,
    /// An input does not exist or is already spent in the chain.
    #[error("bad-txns-inputs-missingorspent")]
    MissingOrSpent,
    /// A relative lock time (BIP68) is not yet reached.
    #[error("non-BIP68-final")]
    NonBip68Final,
    /// A coinbase output is spent before maturity.
    #[error("bad-txns-premature-spend-of-coinbase, tried to spend coinbase at depth {depth}")]
    PrematureCoinbaseSpend {
        /// Confirmations the coinbase had for the next block.
        depth: u32,
    },
    /// Outputs are worth more than inputs.
    #[error("bad-txns-in-belowout, value in ({}) < value out ({})", .value_in.to_btc(), .value_out.to_btc())]
    InBelowOut {
        /// Sum of the inputs.
        value_in: Amount,
        /// Sum of the outputs.
        value_out: Amount,
    },
    /// The fee is below the minimum relay fee.
    #[error("min relay fee not met, {} < {}", .fee.to_sat(), .minimum.to_sat())]
    MinRelayFee {
        /// Fee paid.
        fee: Amount,
        /// Fee required.
        minimum: Amount,
    },
    /// An input's script does not verify under Bitcoin Core's interpreter.
    #[error("mandatory-script-verify-flag-failed ({detail}), input {input}")]
    Script {
        /// What failed, as far as the kernel reveals.
        detail: &'static str,
        /// Index of the failing input.
        input: usize,
    },
}

impl Rejection {
    /// The JSON-RPC error code bitcoind's `sendrawtransaction` returns for this reason.
    pub fn rpc_code(&self) -> i32 {
        match self {
            Rejection::MissingOrSpent => -25,
            Rejection::AlreadyKnown => -27,
            _ => -26,
        }
    }
}

/// A transaction in the mempool.
#[derive(Debug, Clone)]
pub struct MempoolEntry {
    /// The transaction.
    pub tx: Arc<Transaction>,
    /// Its txid.
    pub txid: Txid,
    /// Fee it pays.
    pub fee: Amount,
    /// Virtual size in vbytes.
    pub vsize: u64,
    /// When it entered the mempool (unix seconds).
    pub time: u64,
}

/// Unconfirmed transactions that are valid for the next block, in arrival
/// order (which keeps parents before children).
#[derive(Debug, Default)]
pub struct Mempool {
    order: Vec<Txid>,
    entries: HashMap<Txid, MempoolEntry>,
    spends: HashMap<OutPoint, (Txid, u32)>,
}

impl Mempool {
    /// Checks `tx` against the chain and the mempool and adds it.
    pub fn accept(
        &mut self,
        tx: Transaction,
        chain: &ChainIndex,
        now: u64,
    ) -> Result<Txid, Rejection> {
        let (txid, fee) = self.check(&tx, chain)?;
        let vsize = tx.vsize() as u64;
        for (vin, input) in tx.input.iter().enumerate() {
            let vin = u32::try_from(vin).unwrap_or(u32::MAX);
            self.spends.insert(input.previous_output, (txid, vin));
        }
        self.order.push(txid);
        self.entries.insert(
            txid,
            MempoolEntry {
                tx: Arc::new(tx),
                txid,
                fee,
                vsize,
                time: now,
            },
        );
        Ok(txid)
    }

    /// Runs every acceptance check; returns the txid and the fee.
    fn check(&self, tx: &Transaction, chain: &ChainIndex) -> Result<(Txid, Amount), Rejection> {
        check_transaction(tx)?;
        check_standard(tx)?;

        let next_height = chain.height() + 1;
        let tip_mtp = chain.median_time_past(chain.height());
        if !is_final(tx, next_height, tip_mtp) {
            return Err(Rejection::NonFinal);
        }

        let txid = tx.compute_txid();
        if let Some(entry) = self.entries.get(&txid) {
            return Err(match entry.tx.compute_wtxid() == tx.compute_wtxid() {
                true => Rejection::AlreadyInMempool,
                false => Rejection::SameNonWitnessData,
            });
        }
        if tx
            .input
            .iter()
            .any(|input| self.spends.contains_key(&input.previous_output))
        {
            return Err(Rejection::MempoolConflict);
        }

        // Spent outputs with the height they were created at (next block for mempool parents).
        let mut spent = Vec::with_capacity(tx.input.len());
        for input in &tx.input {
            let prevout = input.previous_output;
            if let Some(coin) = chain.coin(&prevout) {
                spent.push((coin.output.clone(), coin.height, coin.is_coinbase));
            } else if let Some(output) = self.output(&prevout) {
                spent.push((output.clone(), next_height, false));
            } else {
                let known = (0..tx.output.len()).any(|vout| {
                    let vout = u32::try_from(vout).unwrap_or(u32::MAX);
                    chain.coin(&OutPoint { txid, vout }).is_some()
                });
                return Err(match known {
                    true => Rejection::AlreadyKnown,
                    false => Rejection::MissingOrSpent,
                });
            }
        }

        if !sequence_locks_met(tx, &spent, chain, next_height, tip_mtp) {
            return Err(Rejection::NonBip68Final);
        }

        let mut value_in = Amount::ZERO;
        for (output, height, is_coinbase) in &spent {
            let depth = next_height.saturating_sub(*height);
            if *is_coinbase && depth < COINBASE_MATURITY {
                return Err(Rejection::PrematureCoinbaseSpend { depth });
            }
            value_in += output.value;
        }
        let value_out: Amount = tx.output.iter().map(|o| o.value).sum();
        let fee = value_in
            .checked_sub(value_out)
            .ok_or(Rejection::InBelowOut {
                value_in,
                value_out,
            })?;
        let minimum = Amount::from_sat(tx.vsize() as u64 * MIN_RELAY_SAT_PER_VB);
        if fee < minimum {
            return Err(Rejection::MinRelayFee { fee, minimum });
        }

        let outputs: Vec<TxOut> = spent.into_iter().map(|(output, _, _)| output).collect();
        verify_scripts(tx, &outputs)?;
        Ok((txid, fee))
    }

    /// Removes every transaction and returns them in arrival order.
    pub fn drain(&mut self) -> Vec<MempoolEntry> {
        self.spends.clear();
        let mut entries = std::mem::take(&mut self.entries);
        std::mem::take(&mut self.order)
            .into_iter()
            .filter_map(|txid| entries.remove(&txid))
            .collect()
    }

    /// A mempool transaction.
    pub fn get(&self, txid: &Txid) -> Option<&MempoolEntry> {
        self.entries.get(txid)
    }

    /// Transactions in arrival order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &MempoolEntry> + '_ {
        self.order.iter().filter_map(|txid| self.entries.get(txid))
    }

    /// Number of transactions.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// The mempool input that spends `outpoint`.
    pub fn spend(&self, outpoint: &OutPoint) -> Option<(Txid, u32)> {
        self.spends.get(outpoint).copied()
    }

    /// An output created by a mempool transaction.
    pub fn output(&self, outpoint: &OutPoint) -> Option<&TxOut> {
        self.entries
            .get(&outpoint.txid)?
            .tx
            .output
            .get(outpoint.vout as usize)
    }
}

/// Consensus checks that need no context (bitcoind's `CheckTransaction`).
fn check_transaction(tx: &Transaction) -> Result<(), Rejection> {
    if tx.input.is_empty() {
        return Err(Rejection::NoInputs);
    }
    if tx.output.is_empty() {
        return Err(Rejection::NoOutputs);
    }
    let total = tx
        .output
        .iter()
        .try_fold(Amount::ZERO, |sum, o| sum.checked_add(o.value));
    if total.is_none_or(|total| total > Amount::MAX_MONEY) {
        return Err(Rejection::OutputsTooLarge);
    }
    let mut seen = HashSet::with_capacity(tx.input.len());
    if !tx.input.iter().all(|i| seen.insert(i.previous_output)) {
        return Err(Rejection::DuplicateInputs);
    }
    if tx.is_coinbase() {
        return Err(Rejection::Coinbase);
    }
    Ok(())
}

/// The standardness rules a payment channel can run into.
fn check_standard(tx: &Transaction) -> Result<(), Rejection> {
    if !(1..=3).contains(&tx.version.0) {
        return Err(Rejection::Version);
    }
    if tx.weight().to_wu() > MAX_STANDARD_TX_WEIGHT {
        return Err(Rejection::TooLarge);
    }
    if tx.base_size() < MIN_STANDARD_TX_NONWITNESS_SIZE {
        return Err(Rejection::TooSmall);
    }
    let dust = tx
        .output
        .iter()
        .any(|o| !o.script_pubkey.is_op_return() && o.value < o.script_pubkey.minimal_non_dust());
    if dust {
        return Err(Rejection::Dust);
    }
    Ok(())
}

/// bitcoind's `IsFinalTx` for a block at `height` whose lock-time cutoff is `mtp`.
fn is_final(tx: &Transaction, height: u32, mtp: u32) -> bool {
    let lock_time = tx.lock_time.to_consensus_u32();
    if lock_time == 0 {
        return true;
    }
    let cutoff = match lock_time < LOCKTIME_THRESHOLD {
        true => height,
        false => mtp,
    };
    lock_time < cutoff || tx.input.iter().all(|i| i.sequence.is_final())
}

/// BIP68 relative lock times for a block at `next_height` on a tip with median time `tip_mtp`.
fn sequence_locks_met(
    tx: &Transaction,
    spent: &[(TxOut, u32, bool)],
    chain: &ChainIndex,
    next_height: u32,
    tip_mtp: u32,
) -> bool {
    if tx.version.0 < 2 {
        return true;
    }
    let mut min_height: i64 = -1;
    let mut min_time: i64 = -1;
    for (input, (_, coin_height, _)) in tx.input.iter().zip(spent) {
        let sequence = input.sequence.0;
        if sequence & SEQUENCE_DISABLE_FLAG != 0 {
            continue;
        }
        let value = i64::from(sequence & SEQUENCE_MASK);
        if sequence & SEQUENCE_TYPE_FLAG != 0 {
            let base = chain.median_time_past(coin_height.saturating_sub(1));
            min_time = min_time.max(i64::from(base) + (value << 9) - 1);
        } else {
            min_height = min_height.max(i64::from(*coin_height) + value - 1);
        }
    }
    min_height < i64::from(next_height) && min_time < i64::from(tip_mtp)
}

/// Verifies every input with Bitcoin Core's script interpreter (all consensus
/// flags: P2SH, DERSIG, NULLDUMMY, CLTV, CSV, WITNESS, TAPROOT).
fn verify_scripts(tx: &Transaction, spent: &[TxOut]) -> Result<(), Rejection> {
    let failed = |input| Rejection::Script {
        detail: "Script verification failed",
        input,
    };
    let kernel_tx =
        bitcoinkernel::Transaction::new(&consensus::serialize(tx)).map_err(|_| failed(0))?;
    let mut scripts = Vec::with_capacity(spent.len());
    let mut outputs = Vec::with_capacity(spent.len());
    for (input, output) in spent.iter().enumerate() {
        let script =
            ScriptPubkey::new(output.script_pubkey.as_bytes()).map_err(|_| failed(input))?;
        let value = i64::try_from(output.value.to_sat()).map_err(|_| failed(input))?;
        outputs.push(bitcoinkernel::TxOut::new(&script, value));
        scripts.push((script, value));
    }
    let data = PrecomputedTransactionData::new(&kernel_tx, &outputs).map_err(|_| failed(0))?;
    for (input, (script, value)) in scripts.iter().enumerate() {
        let verify = |flags| {
            bitcoinkernel::verify(script, Some(*value), &kernel_tx, input, Some(flags), &data)
        };
        if verify(VERIFY_ALL).is_err() {
            // The kernel does not say which rule failed; telling lock-time
            // failures apart is cheap and is what channel refunds run into.
            let without_locks =
                VERIFY_ALL & !(VERIFY_CHECKLOCKTIMEVERIFY | VERIFY_CHECKSEQUENCEVERIFY);
            let detail = match verify(without_locks).is_ok() {
                true => "Locktime requirement not satisfied",
                false => "Script verification failed",
            };
            return Err(Rejection::Script { detail, input });
        }
    }
    Ok(())
}
