//! The chain's own wallet: one fixed P2WPKH key that receives the coinbase of
//! every block mined without an explicit address, and pays out of it.

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{All, Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    absolute, ecdsa, transaction, Address, Amount, CompressedPublicKey, Network, OutPoint,
    ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
};

use crate::index::{script_hash, ChainIndex};
use crate::mempool::{Mempool, COINBASE_MATURITY};

/// Fee rate of faucet payments in sat/vB.
const FAUCET_SAT_PER_VB: u64 = 2;

/// Change below this is left to the miner rather than creating dust.
const MIN_CHANGE: Amount = Amount::from_sat(1_000);

/// Why the faucet cannot pay.
#[derive(Debug, thiserror::Error)]
pub enum FaucetError {
    /// Mature coins do not cover the amount and fee.
    #[error("faucet has {available} in mature coins, needs {needed}")]
    InsufficientFunds {
        /// Spendable value.
        available: Amount,
        /// Amount plus fee.
        needed: Amount,
    },
    /// The key or a signature could not be made.
    #[error("faucet key: {0}")]
    Sign(String),
}

/// The faucet key and its address.
pub struct Faucet {
    secp: Secp256k1<All>,
    key: SecretKey,
    public: CompressedPublicKey,
    script: ScriptBuf,
}

impl Faucet {
    /// The faucet key is fixed so that a chain kept in a data directory finds
    /// its coins again after a restart.
    pub fn new() -> Result<Faucet, FaucetError> {
        let secp = Secp256k1::new();
        let seed = sha256::Hash::hash(b"trickle-regtest faucet key");
        let key = SecretKey::from_slice(seed.as_byte_array())
            .map_err(|e| FaucetError::Sign(e.to_string()))?;
        let public = CompressedPublicKey(key.public_key(&secp));
        let script = ScriptBuf::new_p2wpkh(&public.wpubkey_hash());
        Ok(Faucet {
            secp,
            key,
            public,
            script,
        })
    }

    /// Script the faucet receives on.
    pub fn script(&self) -> &ScriptBuf {
        &self.script
    }

    /// Address the faucet receives on.
    pub fn address(&self) -> Address {
        Address::p2wpkh(&self.public, Network::Regtest)
    }

    /// Builds and signs a payment of `amount` to `destination` from mature
    /// faucet coins that no mempool transaction spends.
    pub fn pay(
        &self,
        chain: &ChainIndex,
        mempool: &Mempool,
        destination: ScriptBuf,
        amount: Amount,
    ) -> Result<Transaction, FaucetError> {
        let next_height = chain.height() + 1;
        let mut coins: Vec<(OutPoint, TxOut)> = chain
            .utxos_of(&script_hash(&self.script))
            .into_iter()
            .filter(|(outpoint, coin)| {
                mempool.spend(outpoint).is_none()
                    && (!coin.is_coinbase || next_height - coin.height >= COINBASE_MATURITY)
            })
            .map(|(outpoint, coin)| (outpoint, coin.output.clone()))
            .collect();
        coins.sort_by_key(|(_, output)| std::cmp::Reverse(output.value));

        let fee_for =
            |inputs: u64| Amount::from_sat((11 + 68 * inputs + 43 * 2) * FAUCET_SAT_PER_VB);
        let mut selected = Vec::new();
        let mut total = Amount::ZERO;
        for coin in coins {
            if total >= amount + fee_for(selected.len() as u64) {
                break;
            }
            total += coin.1.value;
            selected.push(coin);
        }
        let needed = amount + fee_for(selected.len() as u64);
        if total < needed {
            return Err(FaucetError::InsufficientFunds {
                available: total,
                needed,
            });
        }

        let mut output = vec![TxOut {
            value: amount,
            script_pubkey: destination,
        }];
        let change = total - needed;
        if change >= MIN_CHANGE {
            output.push(TxOut {
                value: change,
                script_pubkey: self.script.clone(),
            });
        }
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: selected
                .iter()
                .map(|(outpoint, _)| TxIn {
                    previous_output: *outpoint,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::new(),
                })
                .collect(),
            output,
        };
        let mut witnesses = Vec::with_capacity(selected.len());
        let mut cache = SighashCache::new(&tx);
        for (index, (_, spent)) in selected.iter().enumerate() {
            let sighash = cache
                .p2wpkh_signature_hash(index, &self.script, spent.value, EcdsaSighashType::All)
                .map_err(|e| FaucetError::Sign(e.to_string()))?;
            let message = Message::from_digest(sighash.to_byte_array());
            let signature =
                ecdsa::Signature::sighash_all(self.secp.sign_ecdsa(&message, &self.key));
            witnesses.push(Witness::p2wpkh(&signature, &self.public.0));
        }
        for (input, witness) in tx.input.iter_mut().zip(witnesses) {
            input.witness = witness;
        }
        Ok(tx)
    }
}
