//! The payer (client) state machine.
//!
//! Each transition takes `&self` and returns a [`Step`] with the next state; on error the
//! current state stays valid and nothing was signed. The caller persists `step.state` before it
//! sends `step.send` or broadcasts `step.broadcast` ("persist, then act").

use bitcoin::ecdsa::Signature;
use bitcoin::secp256k1::{PublicKey, SecretKey};
use bitcoin::{Amount, FeeRate, ScriptBuf, Transaction, Txid};
use secp256k1::SECP256K1;
use serde::{Deserialize, Serialize};

use crate::contract::{ChainTip, Contract, Version};
use crate::error::ChannelError;
use crate::message::{
    ChannelOpen, ClientVersion, Close, ErrorMessage, Initiate, ProvideContract, ProvideRefund,
    UpdatePayment, WireMessage,
};
use crate::tx::{dust_limit, Funding};
use crate::Step;

/// What the client asks for and accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayerConfig {
    /// Protocol version to use.
    pub version: Version,
    /// How much to lock in the channel (reduced to the server's maximum if above it).
    pub channel_value: Amount,
    /// How long the channel should last, in blocks.
    pub time_window_blocks: u32,
    /// Longest the client lets its money be locked, in blocks from the tip.
    pub max_expiry_blocks: u32,
    /// Most the first payment may sign, dust swept into it included: what the caller set
    /// aside for it. A server asking more is refused before anything is funded.
    pub max_min_payment: Amount,
    /// The client's own script: change of every payment and the refund go here.
    pub payout_script: ScriptBuf,
}

/// What every payer transition may need from outside: the key, the chain and the fee market.
#[derive(Clone, Copy, Debug)]
pub struct PayerContext<'a> {
    /// The client's channel key.
    pub key: &'a SecretKey,
    /// The current chain tip.
    pub tip: ChainTip,
    /// Fee rate for a refund, if one is built.
    pub refund_fee_rate: FeeRate,
}

/// An open channel as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayerChannel {
    /// The contract output.
    pub funding: Funding,
    /// The signed contract transaction.
    pub contract_tx: Transaction,
    /// The client's payout (change and refund) script.
    pub payout_script: ScriptBuf,
    /// v1: the server's refund signature.
    pub server_refund_signature: Option<Signature>,
    /// The highest payment signed (the server may close with it).
    pub latest: UpdatePayment,
    /// The highest amount the server acknowledged.
    pub acknowledged: Amount,
}

impl PayerChannel {
    /// Total signed over to the server.
    pub fn paid(&self) -> Amount {
        self.funding
            .contract
            .value
            .checked_sub(self.latest.client_change)
            .unwrap_or(Amount::ZERO)
    }

    /// What the client can still pay.
    pub fn remaining(&self) -> Amount {
        self.latest.client_change
    }

    /// The channel's contract txid.
    pub fn contract_txid(&self) -> Txid {
        self.funding.outpoint.txid
    }

    fn sign(&self, ctx: &PayerContext, total: Amount) -> Result<UpdatePayment, ChannelError> {
        sign_total(&self.funding, &self.payout_script, ctx, total)
    }

    /// The signed refund, valid once the chain passes the expiry.
    pub fn refund(&self, ctx: &PayerContext) -> Result<Transaction, ChannelError> {
        let fee = self
            .funding
            .refund_fee(self.payout_script.clone(), ctx.refund_fee_rate);
        self.funding.signed_refund(
            self.payout_script.clone(),
            fee,
            self.server_refund_signature.as_ref(),
            ctx.key,
        )
    }

    /// Checks that `settlement` spends the contract and leaves the client at least its change;
    /// returns what it paid the server (the channel value less the client's output).
    fn check_settlement(&self, settlement: &Transaction) -> Result<Amount, ChannelError> {
        let index = settlement
            .input
            .iter()
            .position(|i| i.previous_output == self.funding.outpoint)
            .ok_or(ChannelError::BadSettlement("does not spend the contract"))?;
        let value = self.funding.contract.value;
        // SIGHASH_SINGLE pairs the contract input with the output at the same index.
        let to_client = settlement
            .output
            .get(index)
            .filter(|o| o.script_pubkey == self.payout_script)
            .map_or(Amount::ZERO, |o| o.value);
        if to_client < self.latest.client_change {
            return Err(ChannelError::BadSettlement(
                "does not pay the client its change",
            ));
        }
        Ok(value.checked_sub(to_client).unwrap_or(Amount::ZERO))
    }
}

/// The client's side of one channel: one variant per protocol state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayerState {
    /// `CLIENT_VERSION` sent; waiting for `SERVER_VERSION`.
    AwaitingVersion {
        /// The client's terms.
        config: PayerConfig,
    },
    /// Version agreed; waiting for `INITIATE`.
    AwaitingInitiate {
        /// The client's terms.
        config: PayerConfig,
    },
    /// Terms accepted: the wallet must fund `contract.output()` and call
    /// [`PayerState::contract_funded`].
    AwaitingFunding {
        /// The agreed contract.
        contract: Contract,
        /// The server's minimum first payment.
        min_payment: Amount,
        /// The client's payout script.
        payout_script: ScriptBuf,
    },
    /// v1: the refund was sent for co-signing. Nothing is committed yet: the contract has not
    /// left the client.
    AwaitingRefundSignature {
        /// The contract output.
        funding: Funding,
        /// The signed contract transaction.
        contract_tx: Transaction,
        /// The client's payout script.
        payout_script: ScriptBuf,
        /// The unsigned refund sent to the server.
        refund: Transaction,
        /// The first payment's total.
        first_payment: Amount,
    },
    /// Contract and first payment sent; waiting for `CHANNEL_OPEN`.
    AwaitingOpen {
        /// The channel.
        channel: PayerChannel,
    },
    /// Open: payments flow.
    Ready {
        /// The channel.
        channel: PayerChannel,
    },
    /// `CLIENT_VERSION` with the previous contract sent; waiting for `CHANNEL_OPEN`.
    Resuming {
        /// The channel being resumed.
        channel: PayerChannel,
    },
    /// The server answered `CLOSE` with a settlement that pays the client what was agreed;
    /// waiting for the chain to show the contract spent (the refund stays armed).
    Closing {
        /// The channel.
        channel: PayerChannel,
    },
    /// The contract was spent by a settlement that pays the client what was agreed.
    Closed {
        /// The channel.
        channel: PayerChannel,
        /// The settlement's txid.
        settlement: Txid,
        /// What the settlement paid the server (unknown for channels closed by earlier
        /// versions: then everything signed counts as paid).
        #[serde(default = "unknown_settlement")]
        paid: Amount,
    },
    /// The expiry passed without a settlement: the refund was broadcast.
    Refunded {
        /// The channel.
        channel: PayerChannel,
        /// The refund (kept so it can be broadcast again until it confirms).
        refund: Transaction,
    },
    /// The server refused before any money was committed.
    Failed {
        /// The server's reason.
        reason: ErrorMessage,
    },
}

impl PayerState {
    /// Starts a new channel: sends `CLIENT_VERSION`.
    pub fn start(config: PayerConfig) -> Step<Self> {
        let hello = WireMessage::ClientVersion(ClientVersion {
            major: config.version.major(),
            minor: 0,
            time_window_blocks: config.time_window_blocks,
            previous_contract: None,
        });
        Step::send(Self::AwaitingVersion { config }, hello)
    }

    /// The state's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AwaitingVersion { .. } => "AwaitingVersion",
            Self::AwaitingInitiate { .. } => "AwaitingInitiate",
            Self::AwaitingFunding { .. } => "AwaitingFunding",
            Self::AwaitingRefundSignature { .. } => "AwaitingRefundSignature",
            Self::AwaitingOpen { .. } => "AwaitingOpen",
            Self::Ready { .. } => "Ready",
            Self::Resuming { .. } => "Resuming",
            Self::Closing { .. } => "Closing",
            Self::Closed { .. } => "Closed",
            Self::Refunded { .. } => "Refunded",
            Self::Failed { .. } => "Failed",
        }
    }

    /// The channel whose contract the server holds (or may hold), if any: this money is at
    /// stake and must eventually be settled or refunded.
    pub fn committed_channel(&self) -> Option<&PayerChannel> {
        match self {
            Self::AwaitingOpen { channel }
            | Self::Ready { channel }
            | Self::Resuming { channel }
            | Self::Closing { channel } => Some(channel),
            _ => None,
        }
    }

    fn unexpected(&self, msg: &WireMessage) -> ChannelError {
        ChannelError::UnexpectedMessage {
            state: self.name(),
            message: msg.name(),
        }
    }

    /// Handles a message from the server.
    pub fn on_message(
        &self,
        ctx: &PayerContext,
        msg: WireMessage,
    ) -> Result<Step<Self>, ChannelError> {
        check_key(ctx, self)?;
        match (self, msg) {
            (Self::AwaitingVersion { config }, WireMessage::ServerVersion(v)) => {
                if v.major != config.version.major() {
                    return Err(ChannelError::NoAcceptableVersion { requested: v.major });
                }
                Ok(Step::new(Self::AwaitingInitiate {
                    config: config.clone(),
                }))
            }
            (Self::AwaitingInitiate { config }, WireMessage::Initiate(init)) => {
                accept_initiate(ctx, config, &init)
            }
            (
                Self::AwaitingRefundSignature {
                    funding,
                    contract_tx,
                    payout_script,
                    refund,
                    first_payment,
                },
                WireMessage::ReturnRefund(r),
            ) => {
                // The server signed `NONE|ANYONECANPAY` over the refund's input and lock time:
                // check it against what was sent, so a bad signature fails now, not at expiry.
                funding.verify(
                    refund,
                    bitcoin::EcdsaSighashType::NonePlusAnyoneCanPay,
                    &r.signature,
                    &funding.contract.server_key,
                    "server refund signature",
                )?;
                let channel = PayerChannel {
                    funding: funding.clone(),
                    contract_tx: contract_tx.clone(),
                    payout_script: payout_script.clone(),
                    server_refund_signature: Some(r.signature),
                    latest: sign_total(funding, payout_script, ctx, *first_payment)?,
                    acknowledged: Amount::ZERO,
                };
                let provide = provide_contract(ctx, &channel);
                Ok(Step::send(Self::AwaitingOpen { channel }, provide))
            }
            (
                Self::AwaitingOpen { channel } | Self::Resuming { channel },
                WireMessage::ChannelOpen(open),
            ) => open_channel(channel, &open),
            (Self::Resuming { .. }, WireMessage::ServerVersion(v)) => {
                if Version::from_major(v.major) != self.contract().map(|c| c.version) {
                    return Err(ChannelError::NoAcceptableVersion { requested: v.major });
                }
                Ok(Step::new(self.clone()))
            }
            // The server answered a resume with new terms: it no longer knows the channel. The
            // channel stays as it is (it can still be closed or refunded); the caller may start
            // another one.
            (Self::Resuming { .. }, WireMessage::Initiate(_)) => Err(ChannelError::UnknownChannel),
            (Self::Ready { channel }, WireMessage::PaymentAck(ack)) => {
                if ack.amount_paid > channel.paid() {
                    return Err(ChannelError::PaymentExceedsValue {
                        proposed: ack.amount_paid,
                        value: channel.paid(),
                    });
                }
                let mut channel = channel.clone();
                channel.acknowledged = channel.acknowledged.max(ack.amount_paid);
                Ok(Step::new(Self::Ready { channel }))
            }
            // The settlement in a `CLOSE` reply is only the payee's word: the channel stays
            // `Closing` (its refund armed) until the chain shows the contract spent
            // ([`PayerState::on_contract_spent`]).
            (
                Self::Ready { channel } | Self::Closing { channel },
                WireMessage::Close(Close {
                    settlement: Some(tx),
                }),
            ) => {
                channel.check_settlement(&tx)?;
                Ok(Step::new(Self::Closing {
                    channel: channel.clone(),
                }))
            }
            (_, WireMessage::Error(e)) => match self {
                // Nothing committed yet: the attempt simply failed.
                Self::AwaitingVersion { .. }
                | Self::AwaitingInitiate { .. }
                | Self::AwaitingFunding { .. }
                | Self::AwaitingRefundSignature { .. } => Ok(Step::new(Self::Failed { reason: e })),
                // Money is at stake: keep the channel so it can still be closed or refunded.
                _ => Err(ChannelError::Peer(e)),
            },
            (_, msg) => Err(self.unexpected(&msg)),
        }
    }

    /// What the channel paid the payee: the signed total while the channel is committed, what
    /// the settlement paid once closed (the signed total for channels closed by versions that
    /// did not record it), nothing once refunded (the refund takes everything back) or before a
    /// contract is committed.
    pub fn paid(&self) -> Amount {
        match self {
            Self::Closed { paid, .. } if *paid != unknown_settlement() => *paid,
            Self::Closed { channel, .. } => channel.paid(),
            _ => self
                .committed_channel()
                .map_or(Amount::ZERO, PayerChannel::paid),
        }
    }

    /// The contract, once terms are agreed.
    pub fn contract(&self) -> Option<&Contract> {
        match self {
            Self::AwaitingVersion { .. } | Self::AwaitingInitiate { .. } | Self::Failed { .. } => {
                None
            }
            Self::AwaitingFunding { contract, .. } => Some(contract),
            Self::AwaitingRefundSignature { funding, .. } => Some(&funding.contract),
            Self::AwaitingOpen { channel }
            | Self::Ready { channel }
            | Self::Resuming { channel }
            | Self::Closing { channel }
            | Self::Closed { channel, .. }
            | Self::Refunded { channel, .. } => Some(&channel.funding.contract),
        }
    }

    /// The contract's txid (the channel's id at the payee and on chain), once it is built.
    pub fn contract_txid(&self) -> Option<Txid> {
        match self {
            Self::AwaitingRefundSignature { funding, .. } => Some(funding.outpoint.txid),
            Self::AwaitingOpen { channel }
            | Self::Ready { channel }
            | Self::Resuming { channel }
            | Self::Closing { channel }
            | Self::Closed { channel, .. }
            | Self::Refunded { channel, .. } => Some(channel.contract_txid()),
            Self::AwaitingVersion { .. }
            | Self::AwaitingInitiate { .. }
            | Self::AwaitingFunding { .. }
            | Self::Failed { .. } => None,
        }
    }

    /// The wallet funded the contract with `contract_tx`: v1 asks the server to sign the refund;
    /// v2 hands over the contract with the first payment of `first_payment` (raised to the
    /// server's minimum).
    pub fn contract_funded(
        &self,
        ctx: &PayerContext,
        contract_tx: Transaction,
        first_payment: Amount,
    ) -> Result<Step<Self>, ChannelError> {
        check_key(ctx, self)?;
        let Self::AwaitingFunding {
            contract,
            min_payment,
            payout_script,
        } = self
        else {
            return Err(ChannelError::UnexpectedMessage {
                state: self.name(),
                message: "contract funded",
            });
        };
        let funding = Funding::locate(contract.clone(), &contract_tx)?;
        let first_payment = first_payment.max(*min_payment);
        match contract.version {
            Version::V1 => {
                let refund = funding.refund(payout_script.clone(), Amount::ZERO)?;
                let msg = WireMessage::ProvideRefund(ProvideRefund {
                    client_key: contract.client_key,
                    channel_value: contract.value,
                    refund: refund.clone(),
                });
                Ok(Step::send(
                    Self::AwaitingRefundSignature {
                        funding,
                        contract_tx,
                        payout_script: payout_script.clone(),
                        refund,
                        first_payment,
                    },
                    msg,
                ))
            }
            Version::V2 => {
                let channel = PayerChannel {
                    latest: sign_total(&funding, payout_script, ctx, first_payment)?,
                    funding,
                    contract_tx,
                    payout_script: payout_script.clone(),
                    server_refund_signature: None,
                    acknowledged: Amount::ZERO,
                };
                let provide = provide_contract(ctx, &channel);
                Ok(Step::send(Self::AwaitingOpen { channel }, provide))
            }
        }
    }

    /// Pays `increment` more. A remaining change below dust is paid as well, so the new total
    /// may exceed the request by less than the dust limit: read it from the returned state.
    pub fn pay(&self, ctx: &PayerContext, increment: Amount) -> Result<Step<Self>, ChannelError> {
        check_key(ctx, self)?;
        let Self::Ready { channel } = self else {
            return Err(ChannelError::UnexpectedMessage {
                state: self.name(),
                message: "pay",
            });
        };
        if increment == Amount::ZERO {
            return Err(ChannelError::PaymentTooSmall {
                proposed: increment,
                min: Amount::ONE_SAT,
            });
        }
        if ctx.tip.is_final(channel.funding.contract.expiry) {
            return Err(ChannelError::ChannelExpired);
        }
        let total =
            channel
                .paid()
                .checked_add(increment)
                .ok_or(ChannelError::PaymentExceedsValue {
                    proposed: Amount::MAX_MONEY,
                    value: channel.funding.contract.value,
                })?;
        let mut channel = channel.clone();
        channel.latest = channel.sign(ctx, total)?;
        let update = WireMessage::UpdatePayment(channel.latest.clone());
        Ok(Step::send(Self::Ready { channel }, update))
    }

    /// The latest signed payment again, for a server that did not acknowledge it.
    pub fn resend_latest(&self) -> Option<WireMessage> {
        match self {
            Self::Ready { channel } if channel.acknowledged < channel.paid() => {
                Some(WireMessage::UpdatePayment(channel.latest.clone()))
            }
            _ => None,
        }
    }

    /// Asks the server to close the channel with the latest payment. The channel stays `Ready`
    /// until the server answers with its settlement: a close the server refuses (or never
    /// answers) leaves it payable, in agreement with the server, which keeps it open too.
    /// Asking again for a channel already `Closing` counts it open until the server returns its
    /// settlement again (it re-sends the same one), so no refused close ever strands a channel.
    pub fn close(&self) -> Result<Step<Self>, ChannelError> {
        match self {
            Self::Ready { channel } | Self::Closing { channel } => Ok(Step::send(
                Self::Ready {
                    channel: channel.clone(),
                },
                WireMessage::Close(Close { settlement: None }),
            )),
            _ => Err(ChannelError::UnexpectedMessage {
                state: self.name(),
                message: "close",
            }),
        }
    }

    /// Resumes a stored open channel after a restart: sends `CLIENT_VERSION` with its contract.
    pub fn resume(&self) -> Result<Step<Self>, ChannelError> {
        let (Self::Ready { channel } | Self::Resuming { channel }) = self else {
            return Err(ChannelError::UnexpectedMessage {
                state: self.name(),
                message: "resume",
            });
        };
        let hello = WireMessage::ClientVersion(ClientVersion {
            major: channel.funding.contract.version.major(),
            minor: 0,
            time_window_blocks: 0,
            previous_contract: Some(channel.contract_txid()),
        });
        Ok(Step::send(
            Self::Resuming {
                channel: channel.clone(),
            },
            hello,
        ))
    }

    /// A new chain tip: once the expiry has passed with the contract unspent, broadcast the
    /// refund. A refunded channel rebroadcasts its refund until the contract is seen spent.
    pub fn on_tip(&self, ctx: &PayerContext) -> Result<Step<Self>, ChannelError> {
        check_key(ctx, self)?;
        if let Self::Refunded { refund, .. } = self {
            return Ok(Step::new(self.clone()).and_broadcast(refund.clone()));
        }
        let Some(channel) = self.committed_channel() else {
            return Ok(Step::new(self.clone()));
        };
        if !ctx.tip.is_final(channel.funding.contract.expiry) {
            return Ok(Step::new(self.clone()));
        }
        let refund = channel.refund(ctx)?;
        Ok(Step::new(Self::Refunded {
            channel: channel.clone(),
            refund: refund.clone(),
        })
        .and_broadcast(refund))
    }

    /// The chain shows the contract spent by `tx`, confirmed (the caller checks that): our
    /// refund, or the server's settlement, which must pay the client what was agreed.
    pub fn on_contract_spent(&self, tx: &Transaction) -> Result<Step<Self>, ChannelError> {
        let channel = match self {
            Self::Refunded { refund, .. } if refund.compute_txid() == tx.compute_txid() => {
                return Ok(Step::new(self.clone()))
            }
            Self::Refunded { channel, .. } => channel,
            Self::Closed { .. } => return Ok(Step::new(self.clone())),
            _ => self
                .committed_channel()
                .ok_or(ChannelError::UnknownChannel)?,
        };
        let paid = channel.check_settlement(tx)?;
        Ok(Step::new(Self::Closed {
            channel: channel.clone(),
            settlement: tx.compute_txid(),
            paid,
        }))
    }
}

fn unknown_settlement() -> Amount {
    Amount::MAX_MONEY
}

fn check_key(ctx: &PayerContext, state: &PayerState) -> Result<(), ChannelError> {
    match state.contract() {
        Some(c) if c.client_key != PublicKey::from_secret_key(SECP256K1, ctx.key) => {
            Err(ChannelError::WrongKey)
        }
        _ => Ok(()),
    }
}

/// The change for paying `total` out of `funding`; a change below dust is paid to the server.
fn change_for(
    value: Amount,
    payout_script: &ScriptBuf,
    total: Amount,
) -> Result<Amount, ChannelError> {
    let change = value
        .checked_sub(total)
        .ok_or(ChannelError::PaymentExceedsValue {
            proposed: total,
            value,
        })?;
    Ok(if change < dust_limit(payout_script) {
        Amount::ZERO
    } else {
        change
    })
}

fn sign_total(
    funding: &Funding,
    payout_script: &ScriptBuf,
    ctx: &PayerContext,
    total: Amount,
) -> Result<UpdatePayment, ChannelError> {
    let change = change_for(funding.contract.value, payout_script, total)?;
    funding.sign_payment(payout_script, change, ctx.key)
}

fn accept_initiate(
    ctx: &PayerContext,
    config: &PayerConfig,
    init: &Initiate,
) -> Result<Step<PayerState>, ChannelError> {
    if init.min_payment > config.max_min_payment {
        return Err(ChannelError::MinPaymentTooLarge {
            min_payment: init.min_payment,
            max: config.max_min_payment,
        });
    }
    let value = config.channel_value.min(init.max_channel_value);
    if value < init.min_channel_value {
        return Err(ChannelError::ChannelValueTooLarge {
            value: init.min_channel_value,
            max: config.channel_value,
        });
    }
    if init.min_payment > value {
        return Err(ChannelError::MinPaymentTooLarge {
            min_payment: init.min_payment,
            max: value,
        });
    }
    // The first payment signs the change too when it would be dust: that counts against the
    // most the client set aside for it.
    let first = value - change_for(value, &config.payout_script, init.min_payment)?;
    if first > config.max_min_payment {
        return Err(ChannelError::MinPaymentTooLarge {
            min_payment: first,
            max: config.max_min_payment,
        });
    }
    let blocks = ctx.tip.blocks_until(init.expiry);
    if blocks < 1 || blocks > i64::from(config.max_expiry_blocks) {
        return Err(ChannelError::TimeWindowUnacceptable {
            blocks,
            min: 1,
            max: config.max_expiry_blocks,
        });
    }
    Ok(Step::new(PayerState::AwaitingFunding {
        contract: Contract {
            version: config.version,
            client_key: PublicKey::from_secret_key(SECP256K1, ctx.key),
            server_key: init.server_key,
            expiry: init.expiry,
            value,
        },
        min_payment: init.min_payment,
        payout_script: config.payout_script.clone(),
    }))
}

fn provide_contract(ctx: &PayerContext, channel: &PayerChannel) -> WireMessage {
    WireMessage::ProvideContract(ProvideContract {
        contract: channel.contract_tx.clone(),
        client_key: PublicKey::from_secret_key(SECP256K1, ctx.key),
        payout_script: channel.payout_script.clone(),
        initial_payment: channel.latest.clone(),
    })
}

fn open_channel(
    channel: &PayerChannel,
    open: &ChannelOpen,
) -> Result<Step<PayerState>, ChannelError> {
    if open.contract_txid != channel.contract_txid() {
        return Err(ChannelError::UnknownChannel);
    }
    if open.amount_paid > channel.paid() {
        return Err(ChannelError::PaymentExceedsValue {
            proposed: open.amount_paid,
            value: channel.paid(),
        });
    }
    let mut channel = channel.clone();
    channel.acknowledged = channel.acknowledged.max(open.amount_paid);
    // The server may have missed our latest payment (lost on the way): send it again.
    let resend = (open.amount_paid < channel.paid())
        .then(|| WireMessage::UpdatePayment(channel.latest.clone()));
    let contract = channel.contract_tx.clone();
    let mut step = Step::new(PayerState::Ready { channel }).and_broadcast(contract);
    step.send.extend(resend);
    Ok(step)
}
