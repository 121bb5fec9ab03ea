//! Keys, signing and transaction building shared by the integration tests.
#![allow(dead_code)]

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    absolute, ecdsa, transaction, Address, Amount, CompressedPublicKey, Network, OutPoint, Script,
    ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness,
};
use trickle_regtest::{Config, Node};

/// A test key with its P2WPKH address.
pub struct Key {
    pub secret: SecretKey,
    pub public: CompressedPublicKey,
}

impl Key {
    pub fn new(seed: u8) -> Key {
        let secret = SecretKey::from_slice(&[seed; 32]).expect("valid key");
        let public = CompressedPublicKey(PublicKey::from_secret_key(&Secp256k1::new(), &secret));
        Key { secret, public }
    }

    pub fn script(&self) -> ScriptBuf {
        ScriptBuf::new_p2wpkh(&self.public.wpubkey_hash())
    }

    pub fn address(&self) -> Address {
        Address::p2wpkh(&self.public, Network::Regtest)
    }

    /// ECDSA signature with SIGHASH_ALL over a segwit v0 input.
    pub fn sign_segwit(
        &self,
        tx: &Transaction,
        input: usize,
        script_code: &Script,
        value: Amount,
    ) -> Vec<u8> {
        let mut cache = SighashCache::new(tx);
        let sighash = cache
            .p2wsh_signature_hash(input, script_code, value, EcdsaSighashType::All)
            .expect("sighash");
        let message = Message::from_digest(sighash.to_byte_array());
        let signature = Secp256k1::new().sign_ecdsa(&message, &self.secret);
        ecdsa::Signature::sighash_all(signature).to_vec()
    }

    /// Signs a P2WPKH input of `tx` in place.
    pub fn sign_p2wpkh(&self, tx: &mut Transaction, input: usize, value: Amount) {
        let mut cache = SighashCache::new(&*tx);
        let sighash = cache
            .p2wpkh_signature_hash(input, &self.script(), value, EcdsaSighashType::All)
            .expect("sighash");
        let message = Message::from_digest(sighash.to_byte_array());
        let signature = Secp256k1::new().sign_ecdsa(&message, &self.secret);
        tx.input[input].witness =
            Witness::p2wpkh(&ecdsa::Signature::sighash_all(signature), &self.public.0);
    }
}

/// Starts a node on a free port with an in-memory chain.
pub async fn start() -> Node {
    Node::start(Config::default()).await.expect("node starts")
}

/// One-input, one-output version 2 transaction, unsigned.
pub fn spend(outpoint: OutPoint, to: ScriptBuf, value: Amount) -> Transaction {
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value,
            script_pubkey: to,
        }],
    }
}

/// The output of `txid` that pays `script`.
pub fn find_output(node: &Node, txid: Txid, script: &Script) -> (OutPoint, TxOut) {
    let tx = node.transaction(&txid).expect("known transaction");
    let vout = tx
        .output
        .iter()
        .position(|o| o.script_pubkey == *script)
        .expect("output to script");
    let outpoint = OutPoint {
        txid,
        vout: vout as u32,
    };
    (outpoint, tx.output[vout].clone())
}

/// Funds `script` from the faucet with a confirmed output of `amount`.
pub async fn fund_script(node: &Node, script: &ScriptBuf, amount: Amount) -> (OutPoint, TxOut) {
    let address = Address::from_script(script, Network::Regtest).expect("standard script");
    let txid = node.fund(&address, amount).await.expect("faucet pays");
    find_output(node, txid, script)
}
