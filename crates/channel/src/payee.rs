//! The payee (server) state machine.
//!
//! Same contract as the payer: transitions take `&self`, return a [`Step`], leave the state
//! untouched on error, and the caller persists `step.state` before acting on the rest.

use bitcoin::absolute::LockTime;
use bitcoin::hashes::{hmac, sha256, Hash, HashEngine};
use bitcoin::secp256k1::{PublicKey, SecretKey};
use bitcoin::{Amount, FeeRate, ScriptBuf, Transaction, Txid};
use secp256k1::SECP256K1;
use serde::{Deserialize, Serialize};

use crate::contract::{ChainTip, Contract, ExpiryKind, Version};
use crate::error::ChannelError;
use crate::message::{
    ChannelOpen, ClientVersion, Close, Initiate, PaymentAck, ProvideContract, ProvideRefund,
    ReturnRefund, ServerVersion, UpdatePayment, WireMessage,
};
use crate::tx::{dust_limit, CloseFee, Funding};
use crate::Step;

/// The server's rules for the channels it accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayeePolicy {
    /// Accept v1 (refund transaction) channels.
    pub accept_v1: bool,
    /// Accept v2 (CLTV) channels.
    pub accept_v2: bool,
    /// Smallest channel value accepted.
    pub min_channel_value: Amount,
    /// Largest channel value accepted.
    pub max_channel_value: Amount,
    /// Smallest first payment; it must cover the close fee and leave a non-dust output.
    pub min_payment: Amount,
    /// Shortest channel life offered, in blocks.
    pub min_expiry_blocks: u32,
    /// Longest channel life offered, in blocks.
    pub max_expiry_blocks: u32,
    /// Whether expiries are block heights or timestamps.
    pub expiry_kind: ExpiryKind,
    /// The server closes a channel this many blocks before its expiry, and refuses payments
    /// from then on, so that its settlement confirms before the client's refund is valid.
    pub close_margin_blocks: u32,
    /// Where the server's share of every settlement goes.
    pub payout_script: ScriptBuf,
}

impl PayeePolicy {
    fn accepts(&self, v: Version) -> bool {
        match v {
            Version::V1 => self.accept_v1,
            Version::V2 => self.accept_v2,
        }
    }
}

/// What every payee transition may need from outside.
#[derive(Clone, Copy, Debug)]
pub struct PayeeContext<'a> {
    /// The server's rules.
    pub policy: &'a PayeePolicy,
    /// The server's channel key.
    pub key: &'a SecretKey,
    /// The current chain tip.
    pub tip: ChainTip,
    /// Fee rate for a settlement built now: what the chain's estimates say confirms it before
    /// the channel's expiry, within the operator's floor and ceiling.
    pub close_fee_rate: FeeRate,
    /// The most a settlement pays per vbyte, until [`LAST_RESORT_BLOCKS`] before the expiry.
    pub close_fee_ceiling: FeeRate,
}

/// Blocks before the expiry from which a settlement still unconfirmed gives its whole share
/// to fees ([`CloseFee::WholeShare`]): the refund is about to be valid, and the client would
/// take the share back.
pub const LAST_RESORT_BLOCKS: i64 = 2;

impl PayeeContext<'_> {
    fn server_key(&self) -> PublicKey {
        PublicKey::from_secret_key(SECP256K1, self.key)
    }

    /// The key the server offers for a new channel of `version` expiring at `expiry`.
    ///
    /// A v1 script (`2 <client> <server> 2 CHECKMULTISIG`) has no expiry of its own: the lock
    /// time lives only in the refund the server signs. With one server key for every channel, a
    /// second session could have the server sign an earlier-locked refund for an open
    /// channel's outpoint. So a v1 channel's server key is derived from the server's key and
    /// the expiry: every refund that key ever signs carries that same lock time (`sign_refund`
    /// checks it), so no session can obtain a refund earlier than the channel's own. v2 scripts
    /// enforce the expiry by CLTV and keep the server's key.
    fn offered_secret(
        &self,
        version: Version,
        expiry: LockTime,
    ) -> Result<SecretKey, ChannelError> {
        match version {
            Version::V2 => Ok(*self.key),
            Version::V1 => {
                let mut engine = hmac::HmacEngine::<sha256::Hash>::new(&self.key.secret_bytes());
                engine.input(b"trickle/v1-server-key");
                engine.input(&expiry.to_consensus_u32().to_le_bytes());
                let derived = hmac::Hmac::<sha256::Hash>::from_engine(engine).to_byte_array();
                SecretKey::from_slice(&derived).map_err(|_| ChannelError::WrongKey)
            }
        }
    }

    /// The secret for `server_key` of a channel this server offered; [`ChannelError::WrongKey`]
    /// if it is not one of ours. Channels offered with the server's own key (v2, and v1 channels
    /// offered before keys were bound to expiries) keep it.
    fn secret_for(&self, contract: &Contract) -> Result<SecretKey, ChannelError> {
        if contract.server_key == self.server_key() {
            return Ok(*self.key);
        }
        let secret = self.offered_secret(contract.version, contract.expiry)?;
        if PublicKey::from_secret_key(SECP256K1, &secret) != contract.server_key {
            return Err(ChannelError::WrongKey);
        }
        Ok(secret)
    }
}

/// The terms the server offered in `INITIATE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// Agreed version.
    pub version: Version,
    /// The `INITIATE` message sent.
    pub initiate: Initiate,
}

/// An open channel as the server sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayeeChannel {
    /// The contract output.
    pub funding: Funding,
    /// The contract transaction.
    pub contract_tx: Transaction,
    /// The client's payout script.
    pub payout_script: ScriptBuf,
    /// The best payment: the one that pays the server most.
    pub best: UpdatePayment,
}

impl PayeeChannel {
    /// Total paid to the server by the best payment.
    pub fn paid(&self) -> Amount {
        // Saturating: a corrupt snapshot must not panic; loading validates it anyway.
        self.funding
            .contract
            .value
            .checked_sub(self.best.client_change)
            .unwrap_or(Amount::ZERO)
    }

    /// The contract txid, by which the client resumes.
    pub fn contract_txid(&self) -> Txid {
        self.funding.outpoint.txid
    }

    /// Verifies `update` against this channel and the rules; returns the new paid total.
    fn check_payment(
        &self,
        update: &UpdatePayment,
        ctx: &PayeeContext,
    ) -> Result<Amount, ChannelError> {
        let value = self.funding.contract.value;
        let paid = value
            .checked_sub(update.client_change)
            .ok_or(ChannelError::BadTransaction(
                "client change exceeds the channel value",
            ))?;
        if paid < self.paid() {
            return Err(ChannelError::PaymentDecreased {
                previous: self.paid(),
                proposed: paid,
            });
        }
        check_change(update.client_change, &self.payout_script)?;
        check_not_expiring(&self.funding.contract, ctx)?;
        self.funding.verify_payment(&self.payout_script, update)?;
        Ok(paid)
    }

    /// The settlement for the best payment, signed by the server, at [`Self::close_fee`].
    /// Within the close margin, a share too small for that fee pays all it can: the payee has
    /// no other coins to add, and an unconfirmed settlement loses the share to the refund.
    pub fn settlement(&self, ctx: &PayeeContext) -> Result<Transaction, ChannelError> {
        let secret = ctx.secret_for(&self.funding.contract)?;
        let close = |fee| {
            self.funding.close(
                &self.payout_script,
                &self.best,
                ctx.policy.payout_script.clone(),
                fee,
                &secret,
            )
        };
        match close(self.close_fee(ctx)) {
            // The fee takes the whole share, or leaves the server's output below dust.
            Err(ChannelError::BadTransaction(_) | ChannelError::DustOutput { .. })
                if check_not_expiring(&self.funding.contract, ctx).is_err() =>
            {
                close(CloseFee::WholeShare)
            }
            built => built,
        }
    }

    /// What `settlement` pays in fees: its one input is the contract output.
    pub fn settlement_fee(&self, settlement: &Transaction) -> Amount {
        let out: Amount = settlement.output.iter().map(|o| o.value).sum();
        self.funding
            .contract
            .value
            .checked_sub(out)
            .unwrap_or(Amount::ZERO)
    }

    /// What a settlement built now pays, by how close the expiry is. From the close margin on,
    /// every block that passes with the channel unsettled raises the rate by a quarter (as LDK
    /// bumps its claims), up to the ceiling; in the last [`LAST_RESORT_BLOCKS`] the whole
    /// share goes to fees rather than back to the client with its refund.
    pub fn close_fee(&self, ctx: &PayeeContext) -> CloseFee {
        let left = ctx.tip.blocks_until(self.funding.contract.expiry);
        if left <= LAST_RESORT_BLOCKS {
            return CloseFee::WholeShare;
        }
        let late = (i64::from(ctx.policy.close_margin_blocks) - left).clamp(0, 64);
        let mut rate = ctx.close_fee_rate.to_sat_per_kwu();
        for _ in 0..late {
            rate = rate.saturating_add(rate / 4);
        }
        let ceiling = ctx.close_fee_ceiling.max(ctx.close_fee_rate);
        CloseFee::Rate(FeeRate::from_sat_per_kwu(rate).min(ceiling))
    }
}

/// The server's side of one channel: one variant per protocol state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayeeState {
    /// v1: `INITIATE` sent; waiting for `PROVIDE_REFUND`.
    AwaitingRefund {
        /// The terms offered.
        offer: Offer,
    },
    /// `INITIATE` (v2) or `RETURN_REFUND` (v1) sent; waiting for `PROVIDE_CONTRACT`.
    AwaitingContract {
        /// The terms offered.
        offer: Offer,
        /// v1: the contract the signed refund spends.
        refund_for: Option<Funding>,
    },
    /// Open: payments flow.
    Ready {
        /// The channel.
        channel: PayeeChannel,
    },
    /// The settlement was broadcast; waiting to see it confirmed.
    Closing {
        /// The channel.
        channel: PayeeChannel,
        /// The settlement (kept to broadcast again until it confirms).
        settlement: Transaction,
    },
    /// The contract was spent on chain.
    Closed {
        /// The channel.
        channel: PayeeChannel,
        /// The transaction that ended it: our settlement, the client's refund, or a spend of
        /// the contract's own inputs that left the contract unconfirmable.
        spent_by: Txid,
    },
}

impl PayeeState {
    /// Answers a client's `CLIENT_VERSION` for a new channel with `SERVER_VERSION` and
    /// `INITIATE`. (A resume is [`PayeeState::resume`] on the stored channel.)
    pub fn start(ctx: &PayeeContext, hello: &ClientVersion) -> Result<Step<Self>, ChannelError> {
        let version = Version::from_major(hello.major)
            .filter(|v| ctx.policy.accepts(*v))
            .ok_or(ChannelError::NoAcceptableVersion {
                requested: hello.major,
            })?;
        let p = ctx.policy;
        let blocks = hello
            .time_window_blocks
            .clamp(p.min_expiry_blocks, p.max_expiry_blocks);
        let expiry = ctx.tip.expiry_after(blocks, p.expiry_kind);
        let initiate = Initiate {
            server_key: PublicKey::from_secret_key(
                SECP256K1,
                &ctx.offered_secret(version, expiry)?,
            ),
            min_channel_value: p.min_channel_value,
            max_channel_value: p.max_channel_value,
            min_payment: p.min_payment,
            expiry,
        };
        let offer = Offer {
            version,
            initiate: initiate.clone(),
        };
        let state = match version {
            Version::V1 => Self::AwaitingRefund { offer },
            Version::V2 => Self::AwaitingContract {
                offer,
                refund_for: None,
            },
        };
        let mut step = Step::send(
            state,
            WireMessage::ServerVersion(ServerVersion {
                major: version.major(),
                minor: 0,
            }),
        );
        step.send.push(WireMessage::Initiate(initiate));
        Ok(step)
    }

    /// The state's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AwaitingRefund { .. } => "AwaitingRefund",
            Self::AwaitingContract { .. } => "AwaitingContract",
            Self::Ready { .. } => "Ready",
            Self::Closing { .. } => "Closing",
            Self::Closed { .. } => "Closed",
        }
    }

    /// The open or closing channel, if the contract has been accepted.
    pub fn channel(&self) -> Option<&PayeeChannel> {
        match self {
            Self::Ready { channel }
            | Self::Closing { channel, .. }
            | Self::Closed { channel, .. } => Some(channel),
            _ => None,
        }
    }

    /// Resumes this stored channel for a client that sent `hello` with its contract txid.
    pub fn resume(&self, hello: &ClientVersion) -> Result<Step<Self>, ChannelError> {
        let Self::Ready { channel } = self else {
            return Err(match self {
                Self::Closing { .. } | Self::Closed { .. } => ChannelError::ChannelClosed,
                _ => ChannelError::UnknownChannel,
            });
        };
        if hello.previous_contract != Some(channel.contract_txid()) {
            return Err(ChannelError::UnknownChannel);
        }
        let version = channel.funding.contract.version;
        if hello.major != version.major() {
            return Err(ChannelError::NoAcceptableVersion {
                requested: hello.major,
            });
        }
        let mut step = Step::send(
            self.clone(),
            WireMessage::ServerVersion(ServerVersion {
                major: version.major(),
                minor: 0,
            }),
        );
        step.send.push(WireMessage::ChannelOpen(ChannelOpen {
            contract_txid: channel.contract_txid(),
            amount_paid: channel.paid(),
        }));
        Ok(step)
    }

    /// Handles a message from the client.
    pub fn on_message(
        &self,
        ctx: &PayeeContext,
        msg: WireMessage,
    ) -> Result<Step<Self>, ChannelError> {
        match (self, msg) {
            (Self::AwaitingRefund { offer }, WireMessage::ProvideRefund(m)) => {
                sign_refund(ctx, offer, m)
            }
            (Self::AwaitingContract { offer, refund_for }, WireMessage::ProvideContract(m)) => {
                accept_contract(ctx, offer, refund_for.as_ref(), m)
            }
            (Self::Ready { channel }, WireMessage::UpdatePayment(update)) => {
                let paid = channel.check_payment(&update, ctx)?;
                let mut channel = channel.clone();
                // An equal amount is a retry of a payment whose ack was lost: ack it again.
                if paid > channel.paid() {
                    channel.best = update;
                }
                let ack = WireMessage::PaymentAck(PaymentAck {
                    amount_paid: channel.paid(),
                });
                Ok(Step::send(Self::Ready { channel }, ack))
            }
            (
                Self::Ready { .. } | Self::Closing { .. },
                WireMessage::Close(Close { settlement: None }),
            ) => self.close(ctx),
            (Self::Closed { .. }, WireMessage::UpdatePayment(_)) => {
                Err(ChannelError::ChannelClosed)
            }
            (Self::Closing { .. }, WireMessage::UpdatePayment(_)) => {
                Err(ChannelError::ChannelClosed)
            }
            (_, msg) => Err(ChannelError::UnexpectedMessage {
                state: self.name(),
                message: msg.name(),
            }),
        }
    }

    /// Closes with the best payment: broadcast the settlement and tell the client.
    /// Closing again re-sends the same settlement.
    pub fn close(&self, ctx: &PayeeContext) -> Result<Step<Self>, ChannelError> {
        let (channel, settlement) = match self {
            Self::Ready { channel } => (channel, channel.settlement(ctx)?),
            Self::Closing {
                channel,
                settlement,
            } => (channel, settlement.clone()),
            _ => {
                return Err(ChannelError::UnexpectedMessage {
                    state: self.name(),
                    message: "close",
                })
            }
        };
        let notice = WireMessage::Close(Close {
            settlement: Some(settlement.clone()),
        });
        Ok(Step::send(
            Self::Closing {
                channel: channel.clone(),
                settlement: settlement.clone(),
            },
            notice,
        )
        .and_broadcast(settlement))
    }

    /// A new chain tip: close a channel that has reached the close margin before its expiry;
    /// keep broadcasting a settlement until it is seen on chain.
    pub fn on_tip(&self, ctx: &PayeeContext) -> Result<Step<Self>, ChannelError> {
        match self {
            Self::Ready { channel }
                if check_not_expiring(&channel.funding.contract, ctx).is_err() =>
            {
                self.close(ctx)
            }
            Self::Closing {
                channel,
                settlement,
            } => {
                // Replace the settlement when the fee it should now pay would be accepted as a
                // replacement: at least 1 sat/vB more than the one it replaces (BIP125 rule 4).
                let next = channel.settlement(ctx)?;
                let vsize = next.vsize() as u64;
                let more = channel
                    .settlement_fee(&next)
                    .checked_sub(channel.settlement_fee(settlement))
                    .is_some_and(|more| more.to_sat() >= vsize);
                if more {
                    let state = Self::Closing {
                        channel: channel.clone(),
                        settlement: next.clone(),
                    };
                    return Ok(Step::new(state).and_broadcast(next));
                }
                Ok(Step::new(self.clone()).and_broadcast(settlement.clone()))
            }
            _ => Ok(Step::new(self.clone())),
        }
    }

    /// The chain shows the contract spent by `tx`.
    pub fn on_contract_spent(&self, tx: &Transaction) -> Result<Step<Self>, ChannelError> {
        let channel = self.channel().ok_or(ChannelError::UnknownChannel)?;
        if !tx
            .input
            .iter()
            .any(|i| i.previous_output == channel.funding.outpoint)
        {
            return Err(ChannelError::BadTransaction("does not spend the contract"));
        }
        Ok(Step::new(Self::Closed {
            channel: channel.clone(),
            spent_by: tx.compute_txid(),
        }))
    }
}

fn check_change(change: Amount, payout_script: &ScriptBuf) -> Result<(), ChannelError> {
    let limit = dust_limit(payout_script);
    if change != Amount::ZERO && change < limit {
        return Err(ChannelError::DustOutput {
            value: change,
            limit,
        });
    }
    Ok(())
}

fn check_not_expiring(contract: &Contract, ctx: &PayeeContext) -> Result<(), ChannelError> {
    if ctx.tip.blocks_until(contract.expiry) <= i64::from(ctx.policy.close_margin_blocks) {
        return Err(ChannelError::ChannelExpired);
    }
    Ok(())
}

fn check_value(value: Amount, p: &PayeePolicy) -> Result<(), ChannelError> {
    if value > p.max_channel_value {
        return Err(ChannelError::ChannelValueTooLarge {
            value,
            max: p.max_channel_value,
        });
    }
    if value < p.min_channel_value {
        return Err(ChannelError::ChannelValueTooSmall {
            value,
            min: p.min_channel_value,
        });
    }
    Ok(())
}

fn contract_for(offer: &Offer, client_key: PublicKey, value: Amount) -> Contract {
    Contract {
        version: offer.version,
        client_key,
        server_key: offer.initiate.server_key,
        expiry: offer.initiate.expiry,
        value,
    }
}

fn sign_refund(
    ctx: &PayeeContext,
    offer: &Offer,
    m: ProvideRefund,
) -> Result<Step<PayeeState>, ChannelError> {
    // Only a key bound to this expiry signs a v1 refund (see `offered_secret`), never the
    // server's own key, which a session offered before keys were bound may still name.
    let secret = ctx.offered_secret(offer.version, offer.initiate.expiry)?;
    if offer.initiate.server_key != PublicKey::from_secret_key(SECP256K1, &secret) {
        return Err(ChannelError::WrongKey);
    }
    check_value(m.channel_value, ctx.policy)?;
    let contract = contract_for(offer, m.client_key, m.channel_value);
    check_not_expiring(&contract, ctx)?;
    let outpoint = m
        .refund
        .input
        .first()
        .ok_or(ChannelError::BadTransaction("refund has no input"))?
        .previous_output;
    let funding = Funding { contract, outpoint };
    let signature = funding.sign_refund_v1(&m.refund, &secret)?;
    Ok(Step::send(
        PayeeState::AwaitingContract {
            offer: offer.clone(),
            refund_for: Some(funding),
        },
        WireMessage::ReturnRefund(ReturnRefund { signature }),
    ))
}

fn accept_contract(
    ctx: &PayeeContext,
    offer: &Offer,
    refund_for: Option<&Funding>,
    m: ProvideContract,
) -> Result<Step<PayeeState>, ChannelError> {
    ctx.secret_for(&contract_for(offer, m.client_key, Amount::ZERO))?;
    let funding = match (offer.version, refund_for) {
        (Version::V1, Some(signed)) => {
            if m.client_key != signed.contract.client_key {
                return Err(ChannelError::WrongKey);
            }
            let funding = Funding::locate(signed.contract.clone(), &m.contract)?;
            // The refund we signed must spend exactly this output.
            if funding.outpoint != signed.outpoint {
                return Err(ChannelError::BadTransaction(
                    "contract is not the one the refund spends",
                ));
            }
            funding
        }
        (Version::V1, None) => {
            return Err(ChannelError::UnexpectedMessage {
                state: "AwaitingContract",
                message: "PROVIDE_CONTRACT before PROVIDE_REFUND",
            })
        }
        (Version::V2, _) => {
            // The value is whatever the contract output carries: find it by script.
            let probe = contract_for(offer, m.client_key, Amount::ZERO);
            let spk = probe.script_pubkey();
            let value = m
                .contract
                .output
                .iter()
                .find(|o| o.script_pubkey == spk)
                .map(|o| o.value)
                .ok_or(ChannelError::BadTransaction(
                    "no output pays the contract script",
                ))?;
            check_value(value, ctx.policy)?;
            Funding::locate(contract_for(offer, m.client_key, value), &m.contract)?
        }
    };
    check_not_expiring(&funding.contract, ctx)?;
    check_value(funding.contract.value, ctx.policy)?;
    let channel = PayeeChannel {
        funding,
        contract_tx: m.contract,
        payout_script: m.payout_script,
        best: m.initial_payment,
    };
    let paid = channel
        .funding
        .contract
        .value
        .checked_sub(channel.best.client_change)
        .ok_or(ChannelError::BadTransaction(
            "client change exceeds the channel value",
        ))?;
    if paid < ctx.policy.min_payment {
        return Err(ChannelError::PaymentTooSmall {
            proposed: paid,
            min: ctx.policy.min_payment,
        });
    }
    check_change(channel.best.client_change, &channel.payout_script)?;
    channel
        .funding
        .verify_payment(&channel.payout_script, &channel.best)?;
    let open = WireMessage::ChannelOpen(ChannelOpen {
        contract_txid: channel.contract_txid(),
        amount_paid: paid,
    });
    let contract_tx = channel.contract_tx.clone();
    Ok(Step::send(PayeeState::Ready { channel }, open).and_broadcast(contract_tx))
}
