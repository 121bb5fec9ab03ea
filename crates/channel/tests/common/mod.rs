//! Shared test harness: keys, a funding wallet, both state machines wired together, and
//! verification of every transaction with Bitcoin Core's script interpreter.
#![allow(dead_code)]

use std::collections::HashMap;

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version as TxVersion;
use bitcoin::{Amount, FeeRate, OutPoint, Transaction, TxIn, TxOut, Txid};
use trickle_channel::*;
use trickle_testkit::funding::Coin;

pub mod examples;

pub use trickle_testkit::keys::*;
pub use trickle_testkit::terms::*;

/// The most a settlement pays per vbyte before its last resort.
pub fn fee_ceiling() -> FeeRate {
    FeeRate::from_sat_per_vb_u32(100)
}

/// A set of outputs that exist "on chain": what Bitcoin Core's interpreter checks spends against.
#[derive(Default)]
pub struct Utxos(pub HashMap<OutPoint, TxOut>);

impl Utxos {
    pub fn add_tx(&mut self, tx: &Transaction) {
        let txid = tx.compute_txid();
        for (i, o) in tx.output.iter().enumerate() {
            self.0.insert(OutPoint::new(txid, i as u32), o.clone());
        }
    }

    /// Verifies every input of `tx` with libbitcoinconsensus (all consensus flags, incl. segwit,
    /// CLTV, CSV, NULLDUMMY, DERSIG).
    pub fn verify(
        &self,
        tx: &Transaction,
    ) -> Result<(), bitcoin::consensus::validation::TxVerifyError> {
        tx.verify(|op| self.0.get(op).cloned())
    }
}

/// A wallet with one 1 BTC P2WPKH coin that funds contracts.
pub struct Wallet {
    pub coin: OutPoint,
    pub utxos: Utxos,
}

/// The transaction whose output 0 is the wallet's coin: 1 BTC to P2WPKH of `key(WALLET)`. It
/// is never validated (its one input is made up); only its txid and output matter.
pub fn coin_tx() -> Transaction {
    Transaction {
        version: TxVersion::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(Txid::from_byte_array([7; 32]), 0),
            ..Default::default()
        }],
        output: vec![TxOut {
            value: Amount::from_sat(100_000_000),
            script_pubkey: p2wpkh(&key(WALLET)),
        }],
    }
}

impl Wallet {
    pub fn new() -> Self {
        let prev = coin_tx();
        let mut utxos = Utxos::default();
        utxos.add_tx(&prev);
        Self {
            coin: OutPoint::new(prev.compute_txid(), 0),
            utxos,
        }
    }

    /// A signed transaction paying `output` from the wallet's coin, change back, 1000 sat fee.
    pub fn fund(&self, output: TxOut) -> Transaction {
        Coin {
            outpoint: self.coin,
            value: Amount::from_sat(100_000_000),
        }
        .fund(output)
    }
}

/// Both sides of one channel, with the chain they see.
pub struct Pair {
    pub payer: PayerState,
    pub payee: PayeeState,
    pub policy: PayeePolicy,
    pub tip: ChainTip,
    pub wallet: Wallet,
    pub contract_tx: Option<Transaction>,
    /// Every message that crossed the wire, in order.
    pub transcript: Vec<WireMessage>,
}

impl Pair {
    pub fn with_payer<R>(&self, f: impl FnOnce(&PayerContext) -> R) -> R {
        let k = key(CLIENT);
        f(&PayerContext {
            key: &k,
            tip: self.tip,
            refund_fee_rate: fee_rate(),
        })
    }

    pub fn with_payee<R>(&self, f: impl FnOnce(&PayeeContext) -> R) -> R {
        let k = key(SERVER);
        f(&PayeeContext {
            policy: &self.policy,
            key: &k,
            tip: self.tip,
            close_fee_rate: fee_rate(),
            close_fee_ceiling: fee_ceiling(),
        })
    }

    /// Delivers payer messages to the payee and back until neither side has more to say.
    /// Returns every transaction either side asked to broadcast.
    pub fn exchange(
        &mut self,
        mut to_payee: Vec<WireMessage>,
    ) -> Result<Vec<Transaction>, ChannelError> {
        let mut broadcast = Vec::new();
        while !to_payee.is_empty() {
            let mut to_payer = Vec::new();
            for msg in to_payee.drain(..) {
                let msg = roundtrip(&msg);
                self.transcript.push(msg.clone());
                let step = self.with_payee(|ctx| self.payee.on_message(ctx, msg))?;
                self.payee = step.state;
                to_payer.extend(step.send);
                broadcast.extend(step.broadcast);
            }
            for msg in to_payer {
                self.transcript.push(msg.clone());
                let step = self.with_payer(|ctx| self.payer.on_message(ctx, roundtrip(&msg)))?;
                self.payer = step.state;
                to_payee.extend(step.send);
                broadcast.extend(step.broadcast);
            }
        }
        Ok(broadcast)
    }

    /// Opens a channel of `version`; the first payment is the server's minimum.
    pub fn open(version: Version) -> Self {
        Self::open_with(payer_config(version), policy())
    }

    pub fn open_with(config: PayerConfig, policy: PayeePolicy) -> Self {
        let tip = TIP;
        let hello = PayerState::start(config);
        let WireMessage::ClientVersion(cv) = &hello.send[0] else {
            panic!("first message is CLIENT_VERSION")
        };
        let k = key(SERVER);
        let payee = PayeeState::start(
            &PayeeContext {
                policy: &policy,
                key: &k,
                tip,
                close_fee_rate: fee_rate(),
                close_fee_ceiling: fee_ceiling(),
            },
            cv,
        )
        .expect("payee accepts the version");
        let mut pair = Pair {
            payer: hello.state,
            payee: payee.state,
            policy,
            tip,
            wallet: Wallet::new(),
            contract_tx: None,
            transcript: [&hello.send[..], &payee.send[..]].concat(),
        };
        for msg in payee.send {
            let step = pair
                .with_payer(|ctx| pair.payer.on_message(ctx, msg))
                .expect("payer accepts the terms");
            pair.payer = step.state;
        }
        let PayerState::AwaitingFunding { contract, .. } = &pair.payer else {
            panic!("payer awaits funding, is {}", pair.payer.name())
        };
        let contract_tx = pair.wallet.fund(contract.output());
        pair.wallet
            .utxos
            .verify(&contract_tx)
            .expect("contract is valid");
        let step = pair
            .with_payer(|ctx| {
                pair.payer
                    .contract_funded(ctx, contract_tx.clone(), Amount::ZERO)
            })
            .expect("payer accepts funding");
        pair.payer = step.state;
        let broadcast = pair.exchange(step.send).expect("channel opens");
        assert!(broadcast
            .iter()
            .all(|t| t.compute_txid() == contract_tx.compute_txid()));
        assert!(
            matches!(pair.payer, PayerState::Ready { .. }),
            "payer is {}",
            pair.payer.name()
        );
        assert!(
            matches!(pair.payee, PayeeState::Ready { .. }),
            "payee is {}",
            pair.payee.name()
        );
        pair.wallet.utxos.add_tx(&contract_tx);
        pair.contract_tx = Some(contract_tx);
        pair
    }

    pub fn payer_channel(&self) -> &PayerChannel {
        self.payer.committed_channel().expect("payer has a channel")
    }

    pub fn payee_channel(&self) -> &PayeeChannel {
        self.payee.channel().expect("payee has a channel")
    }

    /// Pays `increment` and delivers it; returns the payee's acknowledged total.
    pub fn pay(&mut self, increment: Amount) -> Result<Amount, ChannelError> {
        let step = self.with_payer(|ctx| self.payer.pay(ctx, increment))?;
        self.payer = step.state;
        self.exchange(step.send)?;
        Ok(self.payee_channel().paid())
    }
}

/// Every message crosses the wire in its binary form.
pub fn roundtrip(msg: &WireMessage) -> WireMessage {
    let decoded = WireMessage::from_base64url(&msg.to_base64url()).expect("decodes");
    assert_eq!(&decoded, msg);
    decoded
}
