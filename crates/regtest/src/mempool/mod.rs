//! The mempool and its acceptance rules, checked in the order bitcoind checks
//! them and refused with bitcoind's reject reasons. Conflicts are replaced as
//! Bitcoin Core 28 and later replace them by default (full RBF, the rules of
//! its `doc/policy/mempool-replacements.md`), and a minimum fee rate above the
//! relay fee can be set, as a full mempool raises bitcoind's.

mod rules;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bitcoin::{Amount, OutPoint, Transaction, TxOut, Txid};

use crate::index::ChainIndex;
use rules::{check_standard, check_transaction, is_final, sequence_locks_met, verify_scripts};

/// Confirmations a coinbase output needs before it can be spent.
pub const COINBASE_MATURITY: u32 = 100;

/// Minimum relay fee rate in sat/vB.
pub const MIN_RELAY_SAT_PER_VB: u64 = 1;

/// Fee rate (sat/vB) a replacement must add on top of what it replaces, for its own size.
const INCREMENTAL_RELAY_SAT_PER_VB: u64 = 1;

/// Most transactions one replacement may evict (its conflicts and their descendants).
const MAX_REPLACEMENT_EVICTIONS: usize = 100;

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
    /// The fee is below the mempool's current minimum (set above the relay fee).
    #[error("mempool min fee not met, {} < {}", .fee.to_sat(), .minimum.to_sat())]
    MempoolMinFee {
        /// Fee paid.
        fee: Amount,
        /// Fee required at the mempool's minimum rate.
        minimum: Amount,
    },
    /// A replacement's fee rate is not above that of a transaction it replaces.
    #[error("insufficient fee, rejecting replacement {txid}; new feerate {new} <= old feerate {old} (msat/vB)")]
    ReplacementFeeRate {
        /// The replacement.
        txid: Txid,
        /// Its fee rate, in millisatoshi per vbyte.
        new: u64,
        /// The replaced transaction's fee rate, in millisatoshi per vbyte.
        old: u64,
    },
    /// A replacement pays less than everything it would evict.
    #[error("insufficient fee, rejecting replacement {txid}, less fees than conflicting txs; {} < {}", .fee.to_sat(), .evicted.to_sat())]
    ReplacementFee {
        /// The replacement.
        txid: Txid,
        /// Its fee.
        fee: Amount,
        /// The fees of what it would evict.
        evicted: Amount,
    },
    /// A replacement does not add the incremental relay fee for its own size.
    #[error("insufficient fee, rejecting replacement {txid}, not enough additional fees to relay; {} < {}", .added.to_sat(), .needed.to_sat())]
    ReplacementRelayFee {
        /// The replacement.
        txid: Txid,
        /// The fee it adds over what it evicts.
        added: Amount,
        /// The fee it must add.
        needed: Amount,
    },
    /// A replacement would evict more than 100 transactions.
    #[error("too many potential replacements")]
    TooManyReplacements,
    /// A replacement spends an unconfirmed output that none of its conflicts spent.
    #[error("replacement-adds-unconfirmed")]
    ReplacementAddsUnconfirmed,
    /// A transaction spends an output of a transaction it would replace.
    #[error("bad-txns-spends-conflicting-tx")]
    SpendsConflicting,
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

impl MempoolEntry {
    /// Fee rate in millisatoshi per vbyte (exact enough to compare).
    pub fn fee_rate_msat_vb(&self) -> u64 {
        self.fee.to_sat().saturating_mul(1_000) / self.vsize.max(1)
    }
}

/// Unconfirmed transactions that are valid for the next block, in arrival
/// order (which keeps parents before children).
#[derive(Debug)]
pub struct Mempool {
    order: Vec<Txid>,
    entries: HashMap<Txid, MempoolEntry>,
    spends: HashMap<OutPoint, (Txid, u32)>,
    /// The fee rate (sat/vB) a transaction must pay to enter.
    min_fee_rate: u64,
}

impl Default for Mempool {
    fn default() -> Self {
        Self {
            order: Vec::new(),
            entries: HashMap::new(),
            spends: HashMap::new(),
            min_fee_rate: MIN_RELAY_SAT_PER_VB,
        }
    }
}

/// What a transaction that passed every check brings: its txid, its fee and
/// what it replaces (its conflicts and their descendants).
struct Accepted {
    txid: Txid,
    fee: Amount,
    evict: HashSet<Txid>,
}

impl Mempool {
    /// Checks `tx` against the chain and the mempool and adds it.
    pub fn accept(
        &mut self,
        tx: Transaction,
        chain: &ChainIndex,
        now: u64,
    ) -> Result<Txid, Rejection> {
        let Accepted { txid, fee, evict } = self.check(&tx, chain)?;
        self.remove(&evict);
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

    /// Runs every acceptance check.
    fn check(&self, tx: &Transaction, chain: &ChainIndex) -> Result<Accepted, Rejection> {
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
        // Every mempool transaction spending one of our inputs is a conflict to replace.
        let conflicts: HashSet<Txid> = tx
            .input
            .iter()
            .filter_map(|input| self.spends.get(&input.previous_output))
            .map(|(txid, _)| *txid)
            .collect();
        let evict = self.with_descendants(&conflicts);
        if tx
            .input
            .iter()
            .any(|input| evict.contains(&input.previous_output.txid))
        {
            return Err(Rejection::SpendsConflicting);
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
        let vsize = tx.vsize() as u64;
        let minimum = Amount::from_sat(vsize * MIN_RELAY_SAT_PER_VB);
        if fee < minimum {
            return Err(Rejection::MinRelayFee { fee, minimum });
        }
        let minimum = Amount::from_sat(vsize * self.min_fee_rate);
        if fee < minimum {
            return Err(Rejection::MempoolMinFee { fee, minimum });
        }
        if !conflicts.is_empty() {
            self.check_replacement(tx, txid, fee, &conflicts, &evict)?;
        }

        let outputs: Vec<TxOut> = spent.into_iter().map(|(output, _, _)| output).collect();
        verify_scripts(tx, &outputs)?;
        Ok(Accepted { txid, fee, evict })
    }

    /// Bitcoin Core's replacement rules for `tx` (paying `fee`), which conflicts
    /// with `conflicts` and would evict `evict`.
    fn check_replacement(
        &self,
        tx: &Transaction,
        txid: Txid,
        fee: Amount,
        conflicts: &HashSet<Txid>,
        evict: &HashSet<Txid>,
    ) -> Result<(), Rejection> {
        if evict.len() > MAX_REPLACEMENT_EVICTIONS {
            return Err(Rejection::TooManyReplacements);
        }
        // Unconfirmed inputs only where a replaced transaction had them.
        let replaced_inputs: HashSet<OutPoint> = conflicts
            .iter()
            .filter_map(|c| self.entries.get(c))
            .flat_map(|e| e.tx.input.iter().map(|i| i.previous_output))
            .collect();
        let adds_unconfirmed = tx.input.iter().any(|input| {
            self.entries.contains_key(&input.previous_output.txid)
                && !replaced_inputs.contains(&input.previous_output)
        });
        if adds_unconfirmed {
            return Err(Rejection::ReplacementAddsUnconfirmed);
        }
        let vsize = tx.vsize() as u64;
        let new = fee.to_sat().saturating_mul(1_000) / vsize.max(1);
        for entry in conflicts.iter().filter_map(|c| self.entries.get(c)) {
            let old = entry.fee_rate_msat_vb();
            if new <= old {
                return Err(Rejection::ReplacementFeeRate { txid, new, old });
            }
        }
        let evicted: Amount = evict
            .iter()
            .filter_map(|t| self.entries.get(t))
            .map(|e| e.fee)
            .sum();
        let added =
            fee.checked_sub(evicted)
                .ok_or(Rejection::ReplacementFee { txid, fee, evicted })?;
        let needed = Amount::from_sat(vsize * INCREMENTAL_RELAY_SAT_PER_VB);
        if added < needed {
            return Err(Rejection::ReplacementRelayFee {
                txid,
                added,
                needed,
            });
        }
        Ok(())
    }

    /// `roots` and every mempool transaction that spends their outputs, transitively.
    fn with_descendants(&self, roots: &HashSet<Txid>) -> HashSet<Txid> {
        let mut found = roots.clone();
        let mut todo: Vec<Txid> = roots.iter().copied().collect();
        while let Some(txid) = todo.pop() {
            let Some(entry) = self.entries.get(&txid) else {
                continue;
            };
            for vout in 0..entry.tx.output.len() {
                let outpoint = OutPoint::new(txid, u32::try_from(vout).unwrap_or(u32::MAX));
                if let Some((child, _)) = self.spends.get(&outpoint) {
                    if found.insert(*child) {
                        todo.push(*child);
                    }
                }
            }
        }
        found
    }

    /// Removes `txids` (which must include their descendants).
    fn remove(&mut self, txids: &HashSet<Txid>) {
        if txids.is_empty() {
            return;
        }
        for txid in txids {
            if let Some(entry) = self.entries.remove(txid) {
                for input in &entry.tx.input {
                    self.spends.remove(&input.previous_output);
                }
            }
        }
        self.order.retain(|txid| !txids.contains(txid));
    }

    /// Removes `txids` and their descendants; returns how many left.
    pub fn evict(&mut self, txids: &HashSet<Txid>) -> usize {
        let evict = self.with_descendants(txids);
        self.remove(&evict);
        evict.len()
    }

    /// `txid` and its ancestors in the mempool.
    pub fn with_ancestors(&self, txid: &Txid) -> HashSet<Txid> {
        let mut found = HashSet::from([*txid]);
        let mut todo = vec![*txid];
        while let Some(txid) = todo.pop() {
            let Some(entry) = self.entries.get(&txid) else {
                continue;
            };
            for input in &entry.tx.input {
                let parent = input.previous_output.txid;
                if self.entries.contains_key(&parent) && found.insert(parent) {
                    todo.push(parent);
                }
            }
        }
        found
    }

    /// The fee rate (sat/vB) a transaction must pay to enter.
    pub fn min_fee_rate(&self) -> u64 {
        self.min_fee_rate
    }

    /// Sets the minimum fee rate (at least the relay fee); transactions below
    /// it leave, with their descendants, as when bitcoind's mempool fills up.
    /// Returns how many left.
    pub fn set_min_fee_rate(&mut self, sat_per_vb: u64) -> usize {
        self.min_fee_rate = sat_per_vb.max(MIN_RELAY_SAT_PER_VB);
        let floor = self.min_fee_rate * 1_000;
        let below: HashSet<Txid> = self
            .entries
            .values()
            .filter(|e| e.fee_rate_msat_vb() < floor)
            .map(|e| e.txid)
            .collect();
        self.evict(&below)
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
