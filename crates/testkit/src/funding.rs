//! A P2WPKH coin of `key(WALLET)` that funds contracts.

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, SECP256K1};
use bitcoin::sighash::SighashCache;
use bitcoin::transaction::Version as TxVersion;
use bitcoin::{
    Amount, EcdsaSighashType, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid,
    Witness,
};

use crate::keys::{key, p2wpkh, pubkey, WALLET};

/// The fee of every funding transaction.
pub const FUNDING_FEE: Amount = Amount::from_sat(1_000);

/// A coin of `value` at `outpoint`, paying P2WPKH to `key(WALLET)`.
#[derive(Clone, Copy, Debug)]
pub struct Coin {
    /// Where the coin is.
    pub outpoint: OutPoint,
    /// What it holds.
    pub value: Amount,
}

impl Coin {
    /// A made-up 1 BTC coin at output 0 of the txid of 32 bytes `tag`: enough where nothing
    /// checks that its transaction exists.
    pub fn made_up(tag: u8) -> Self {
        Self {
            outpoint: OutPoint::new(Txid::from_byte_array([tag; 32]), 0),
            value: Amount::from_sat(100_000_000),
        }
    }

    /// A signed transaction spending the coin to `output`, change back to `key(WALLET)`,
    /// [`FUNDING_FEE`] fee.
    pub fn fund(&self, output: TxOut) -> Transaction {
        let wk = key(WALLET);
        let change = self.value - output.value - FUNDING_FEE;
        let mut tx = Transaction {
            version: TxVersion::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: self.outpoint,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            }],
            output: vec![
                output,
                TxOut {
                    value: change,
                    script_pubkey: p2wpkh(&wk),
                },
            ],
        };
        let hash = SighashCache::new(&tx)
            .p2wpkh_signature_hash(0, &p2wpkh(&wk), self.value, EcdsaSighashType::All)
            .expect("sighash");
        let sig =
            bitcoin::ecdsa::Signature::sighash_all(SECP256K1.sign_ecdsa(&Message::from(hash), &wk));
        tx.input[0].witness = Witness::p2wpkh(&sig, &pubkey(&wk));
        tx
    }
}
