//! The mempool rules that look at one transaction alone, with the chain it would enter:
//! bitcoind's `CheckTransaction`, standardness, finality, BIP68 and script checks.

use std::collections::HashSet;

use bitcoin::{consensus, Amount, Transaction, TxOut};
use bitcoinkernel::{
    PrecomputedTransactionData, ScriptPubkey, VERIFY_ALL, VERIFY_CHECKLOCKTIMEVERIFY,
    VERIFY_CHECKSEQUENCEVERIFY,
};

use super::Rejection;
use crate::index::ChainIndex;

const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;
const MIN_STANDARD_TX_NONWITNESS_SIZE: usize = 65;
const LOCKTIME_THRESHOLD: u32 = 500_000_000;
const SEQUENCE_DISABLE_FLAG: u32 = 1 << 31;
const SEQUENCE_TYPE_FLAG: u32 = 1 << 22;
const SEQUENCE_MASK: u32 = 0x0000_ffff;

/// Consensus checks that need no context (bitcoind's `CheckTransaction`).
pub(super) fn check_transaction(tx: &Transaction) -> Result<(), Rejection> {
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
pub(super) fn check_standard(tx: &Transaction) -> Result<(), Rejection> {
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
pub(super) fn is_final(tx: &Transaction, height: u32, mtp: u32) -> bool {
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
pub(super) fn sequence_locks_met(
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
pub(super) fn verify_scripts(tx: &Transaction, spent: &[TxOut]) -> Result<(), Rejection> {
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
