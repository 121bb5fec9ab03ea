//! Transaction builders and the signatures over them: refund, payment (settlement) and close.
//!
//! The contract transaction itself is the caller's wallet's: it funds [`Contract::output`] from
//! its own coins and change, and hands the signed transaction back.

use bitcoin::absolute::LockTime;
use bitcoin::ecdsa::Signature;
use bitcoin::secp256k1::{Message, PublicKey, SecretKey};
use bitcoin::sighash::SighashCache;
use bitcoin::transaction::Version as TxVersion;
use bitcoin::{
    Amount, EcdsaSighashType, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut,
    Weight, Witness,
};
use secp256k1::SECP256K1;

use crate::contract::{Contract, Version};
use crate::error::ChannelError;
use crate::message::UpdatePayment;

/// Largest DER signature plus its sighash byte: what fee estimates assume for each signature.
const MAX_SIG_LEN: usize = 73;

/// What a settlement pays in fees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseFee {
    /// This fee rate.
    Rate(FeeRate),
    /// Everything of the server's share but a dust-free output: the last resort before the
    /// client's refund becomes valid, when the server would otherwise lose its share anyway.
    WholeShare,
}

/// The contract output being spent: where it is and what it locks.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Funding {
    /// The agreed terms.
    pub contract: Contract,
    /// The contract output on chain.
    pub outpoint: OutPoint,
}

/// The sighash type a payment signature must carry for a given change.
pub fn payment_sighash_type(client_change: Amount) -> EcdsaSighashType {
    if client_change == Amount::ZERO {
        EcdsaSighashType::NonePlusAnyoneCanPay
    } else {
        EcdsaSighashType::SinglePlusAnyoneCanPay
    }
}

/// The smallest non-dust value for an output to `script` (Bitcoin Core's default dust relay fee).
pub fn dust_limit(script: &ScriptBuf) -> Amount {
    script.minimal_non_dust()
}

impl Funding {
    fn input(&self, sequence: Sequence) -> TxIn {
        TxIn {
            previous_output: self.outpoint,
            script_sig: ScriptBuf::new(),
            sequence,
            witness: Witness::new(),
        }
    }

    /// The unsigned refund: spends the contract back to `refund_script` minus `fee`, final only
    /// once the chain passes the expiry (`nLockTime` = expiry, sequence non-final).
    pub fn refund(
        &self,
        refund_script: ScriptBuf,
        fee: Amount,
    ) -> Result<Transaction, ChannelError> {
        let value = self
            .contract
            .value
            .checked_sub(fee)
            .ok_or(ChannelError::BadTransaction(
                "refund fee exceeds the channel value",
            ))?;
        check_not_dust(value, &refund_script)?;
        Ok(Transaction {
            version: TxVersion::TWO,
            lock_time: self.contract.expiry,
            input: vec![self.input(Sequence::ENABLE_LOCKTIME_NO_RBF)],
            output: vec![TxOut {
                value,
                script_pubkey: refund_script,
            }],
        })
    }

    /// The payment transaction the client signs: the contract input and, unless zero, the
    /// client's change at index 0. The server adds its own output (and inputs) when it closes.
    pub fn payment(&self, payout_script: &ScriptBuf, client_change: Amount) -> Transaction {
        let output = if client_change == Amount::ZERO {
            vec![]
        } else {
            vec![TxOut {
                value: client_change,
                script_pubkey: payout_script.clone(),
            }]
        };
        Transaction {
            version: TxVersion::TWO,
            lock_time: LockTime::ZERO,
            input: vec![self.input(Sequence::ENABLE_RBF_NO_LOCKTIME)],
            output,
        }
    }

    fn sighash(&self, tx: &Transaction, ty: EcdsaSighashType) -> Result<Message, ChannelError> {
        let hash = SighashCache::new(tx)
            .p2wsh_signature_hash(0, &self.contract.witness_script(), self.contract.value, ty)
            .map_err(|_| ChannelError::BadTransaction("cannot compute the sighash"))?;
        Ok(Message::from(hash))
    }

    /// Signs input 0 of `tx` (which spends the contract) with `key` and sighash `ty`.
    pub fn sign(
        &self,
        tx: &Transaction,
        ty: EcdsaSighashType,
        key: &SecretKey,
    ) -> Result<Signature, ChannelError> {
        let msg = self.sighash(tx, ty)?;
        Ok(Signature {
            signature: SECP256K1.sign_ecdsa(&msg, key),
            sighash_type: ty,
        })
    }

    /// Checks that `sig` is `key`'s signature of input 0 of `tx` with sighash `expected`.
    pub fn verify(
        &self,
        tx: &Transaction,
        expected: EcdsaSighashType,
        sig: &Signature,
        key: &PublicKey,
        what: &'static str,
    ) -> Result<(), ChannelError> {
        if sig.sighash_type != expected {
            return Err(ChannelError::WrongSighash {
                expected,
                found: sig.sighash_type,
            });
        }
        let msg = self.sighash(tx, expected)?;
        SECP256K1
            .verify_ecdsa(&msg, &sig.signature, key)
            .map_err(|_| ChannelError::BadSignature(what))
    }

    /// Client side: signs the payment that leaves `client_change` to the client.
    pub fn sign_payment(
        &self,
        payout_script: &ScriptBuf,
        client_change: Amount,
        client_secret: &SecretKey,
    ) -> Result<UpdatePayment, ChannelError> {
        let tx = self.payment(payout_script, client_change);
        let signature = self.sign(&tx, payment_sighash_type(client_change), client_secret)?;
        Ok(UpdatePayment {
            client_change,
            signature,
        })
    }

    /// Server side: checks a client's payment signature.
    pub fn verify_payment(
        &self,
        payout_script: &ScriptBuf,
        payment: &UpdatePayment,
    ) -> Result<(), ChannelError> {
        let tx = self.payment(payout_script, payment.client_change);
        self.verify(
            &tx,
            payment_sighash_type(payment.client_change),
            &payment.signature,
            &self.contract.client_key,
            "payment",
        )
    }

    /// Server side: completes the close transaction from the best payment. The server's output
    /// gets the rest of the channel minus the fee `fee` asks; the server signs `ALL`.
    pub fn close(
        &self,
        payout_script: &ScriptBuf,
        payment: &UpdatePayment,
        server_script: ScriptBuf,
        fee: CloseFee,
        server_secret: &SecretKey,
    ) -> Result<Transaction, ChannelError> {
        let mut tx = self.payment(payout_script, payment.client_change);
        tx.output.push(TxOut {
            value: Amount::ZERO,
            script_pubkey: server_script,
        });
        let placeholder = [0u8; MAX_SIG_LEN];
        tx.input[0].witness = self.cooperative_witness(&placeholder, &placeholder);
        let last = tx.output.len() - 1;
        let share = self.contract.value.checked_sub(payment.client_change);
        let server_value = match fee {
            CloseFee::Rate(rate) => share.and_then(|v| v.checked_sub(fee_for(rate, tx.weight()))),
            CloseFee::WholeShare => Some(dust_limit(&tx.output[last].script_pubkey)),
        }
        .filter(|v| Some(*v) <= share)
        .ok_or(ChannelError::BadTransaction(
            "close fee exceeds the server's share",
        ))?;
        check_not_dust(server_value, &tx.output[last].script_pubkey)?;
        tx.output[last].value = server_value;
        tx.input[0].witness = Witness::new();
        let server_sig = self.sign(&tx, EcdsaSighashType::All, server_secret)?;
        tx.input[0].witness =
            self.cooperative_witness(&payment.signature.serialize(), &server_sig.serialize());
        Ok(tx)
    }

    /// The witness that spends the contract with both signatures.
    fn cooperative_witness(&self, client: &[u8], server: &[u8]) -> Witness {
        let script = self.contract.witness_script();
        match self.contract.version {
            // CHECKMULTISIG's extra pop, then signatures in key order.
            Version::V1 => Witness::from_slice(&[&[][..], client, server, script.as_bytes()]),
            // Stack top `1` takes the IF branch: server CHECKSIGVERIFY, then client CHECKSIG.
            Version::V2 => Witness::from_slice(&[client, server, &[1u8][..], script.as_bytes()]),
        }
    }

    /// Server side (v1): signs the client's refund with `NONE|ANYONECANPAY`, which commits to the
    /// contract input, its sequence and the `nLockTime`, and leaves the outputs to the client.
    pub fn sign_refund_v1(
        &self,
        refund: &Transaction,
        server_secret: &SecretKey,
    ) -> Result<Signature, ChannelError> {
        self.check_refund_shape(refund)?;
        self.sign(
            refund,
            EcdsaSighashType::NonePlusAnyoneCanPay,
            server_secret,
        )
    }

    /// Checks that `refund` spends only the contract and is locked until the expiry.
    pub fn check_refund_shape(&self, refund: &Transaction) -> Result<(), ChannelError> {
        let [input] = refund.input.as_slice() else {
            return Err(ChannelError::BadTransaction(
                "refund must have exactly one input",
            ));
        };
        if input.previous_output != self.outpoint {
            return Err(ChannelError::BadTransaction(
                "refund does not spend the contract",
            ));
        }
        if input.sequence == Sequence::MAX {
            return Err(ChannelError::BadTransaction(
                "refund sequence disables its lock time",
            ));
        }
        if refund.lock_time != self.contract.expiry {
            return Err(ChannelError::BadTransaction(
                "refund lock time is not the expiry",
            ));
        }
        Ok(())
    }

    /// Client side: the signed refund, valid once the chain passes the expiry. For v1,
    /// `server_sig` is the server's signature from `RETURN_REFUND`; v2 needs none.
    pub fn signed_refund(
        &self,
        refund_script: ScriptBuf,
        fee: Amount,
        server_sig: Option<&Signature>,
        client_secret: &SecretKey,
    ) -> Result<Transaction, ChannelError> {
        let mut tx = self.refund(refund_script, fee)?;
        let client_sig = self.sign(&tx, EcdsaSighashType::All, client_secret)?;
        let server_sig = match (self.contract.version, server_sig) {
            (Version::V1, Some(s)) => {
                self.verify(
                    &tx,
                    EcdsaSighashType::NonePlusAnyoneCanPay,
                    s,
                    &self.contract.server_key,
                    "server refund signature",
                )?;
                Some(s.serialize())
            }
            (Version::V1, None) => {
                return Err(ChannelError::BadSignature(
                    "v1 refund needs the server's signature",
                ))
            }
            (Version::V2, _) => None,
        };
        tx.input[0].witness = self.refund_witness(
            &client_sig.serialize(),
            server_sig.as_ref().map(|s| s.as_ref()),
        );
        Ok(tx)
    }

    /// The witness that spends the contract by its refund path.
    fn refund_witness(&self, client: &[u8], server: Option<&[u8]>) -> Witness {
        let script = self.contract.witness_script();
        match self.contract.version {
            Version::V1 => {
                let server = server.unwrap_or_default();
                Witness::from_slice(&[&[][..], client, server, script.as_bytes()])
            }
            // Empty stack top takes the ELSE branch: CLTV, then client CHECKSIG.
            Version::V2 => Witness::from_slice(&[client, &[][..], script.as_bytes()]),
        }
    }

    /// Fee for a refund at `fee_rate` (its witness estimated with maximum-size signatures).
    pub fn refund_fee(&self, refund_script: ScriptBuf, fee_rate: FeeRate) -> Amount {
        let mut tx = Transaction {
            version: TxVersion::TWO,
            lock_time: self.contract.expiry,
            input: vec![self.input(Sequence::ENABLE_LOCKTIME_NO_RBF)],
            output: vec![TxOut {
                value: Amount::ZERO,
                script_pubkey: refund_script,
            }],
        };
        let p = [0u8; MAX_SIG_LEN];
        tx.input[0].witness = self.refund_witness(&p, Some(&p[..]));
        fee_for(fee_rate, tx.weight())
    }

    /// Finds the contract output in `contract_tx`: exactly one output must pay the contract.
    pub fn locate(contract: Contract, contract_tx: &Transaction) -> Result<Funding, ChannelError> {
        let expected = contract.output();
        let mut found = contract_tx
            .output
            .iter()
            .enumerate()
            .filter(|(_, o)| o.script_pubkey == expected.script_pubkey);
        let (vout, out) = found.next().ok_or(ChannelError::BadTransaction(
            "no output pays the contract script",
        ))?;
        if found.next().is_some() {
            return Err(ChannelError::BadTransaction(
                "several outputs pay the contract script",
            ));
        }
        if out.value != expected.value {
            return Err(ChannelError::BadTransaction(
                "contract output has the wrong value",
            ));
        }
        let vout = u32::try_from(vout)
            .map_err(|_| ChannelError::BadTransaction("contract output index overflows"))?;
        Ok(Funding {
            contract,
            outpoint: OutPoint::new(contract_tx.compute_txid(), vout),
        })
    }
}

fn fee_for(fee_rate: FeeRate, weight: Weight) -> Amount {
    // Round the virtual size up, as relay policy does.
    fee_rate
        .fee_vb(weight.to_vbytes_ceil())
        .unwrap_or(Amount::MAX_MONEY)
}

fn check_not_dust(value: Amount, script: &ScriptBuf) -> Result<(), ChannelError> {
    let limit = dust_limit(script);
    if value < limit {
        return Err(ChannelError::DustOutput { value, limit });
    }
    Ok(())
}
