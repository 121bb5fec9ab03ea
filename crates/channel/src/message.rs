//! Wire messages and their stable binary encoding.
//!
//! Every message is `format (u8 = 1) || type (u8) || fields`. Integers are little-endian,
//! amounts are `u64` satoshis, keys are 33-byte compressed points, txids are 32 bytes in
//! consensus order, and variable-length fields (transactions, scripts, signatures, text) are a
//! `u32` length followed by that many bytes. Optional fields are a `u8` flag (0 or 1) followed
//! by the value. Decoding rejects unknown formats and types, truncation, trailing bytes,
//! oversized fields and invalid values with a [`DecodeError`]; it never panics.
//! For HTTP headers the same bytes are carried as unpadded base64url.

use core::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bitcoin::absolute::LockTime;
use bitcoin::consensus::{deserialize, serialize};
use bitcoin::ecdsa::Signature;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, ScriptBuf, Transaction, Txid};
use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

/// The encoding format this crate writes and reads.
pub const FORMAT: u8 = 1;

/// Largest variable-length field accepted (a standard transaction is at most 400,000 weight units).
pub const MAX_FIELD_LEN: usize = 400_000;

/// Longest error explanation accepted, in bytes.
pub const MAX_EXPLANATION_LEN: usize = 1_000;

/// First message: the client's protocol version and, to resume, its previous contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientVersion {
    /// Major protocol version the client wants (1 or 2).
    pub major: u8,
    /// Minor version; informative.
    pub minor: u8,
    /// How long, in blocks, the client would like the channel to last.
    pub time_window_blocks: u32,
    /// Contract txid of a channel to resume.
    pub previous_contract: Option<Txid>,
}

/// The server's answer to [`ClientVersion`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerVersion {
    /// Agreed major version.
    pub major: u8,
    /// Server's minor version; informative.
    pub minor: u8,
}

/// The server's terms for a new channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Initiate {
    /// The server's key in the contract.
    pub server_key: PublicKey,
    /// Smallest channel value the server accepts.
    pub min_channel_value: Amount,
    /// Largest channel value the server accepts.
    pub max_channel_value: Amount,
    /// Smallest first payment, which must cover the server's close fee.
    pub min_payment: Amount,
    /// Expiry of the channel chosen by the server (height or timestamp).
    pub expiry: LockTime,
}

/// v1: the client's refund, for the server to co-sign before the contract exists on chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvideRefund {
    /// The client's key in the contract.
    pub client_key: PublicKey,
    /// The channel value (the contract output's value, which the signature commits to).
    pub channel_value: Amount,
    /// The unsigned refund transaction.
    pub refund: Transaction,
}

/// v1: the server's signature of the refund (`NONE|ANYONECANPAY`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnRefund {
    /// Server signature.
    pub signature: Signature,
}

/// The signed contract, the client's payout script and the first payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvideContract {
    /// The fully signed contract transaction.
    pub contract: Transaction,
    /// The client's key in the contract.
    pub client_key: PublicKey,
    /// Where the client's change goes in every payment.
    pub payout_script: ScriptBuf,
    /// The first payment.
    pub initial_payment: UpdatePayment,
}

/// The channel is open (new or resumed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelOpen {
    /// The contract transaction's id.
    pub contract_txid: Txid,
    /// The best amount the server holds a signature for.
    pub amount_paid: Amount,
}

/// A new payment: the client's signature over a smaller change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatePayment {
    /// What the client keeps.
    pub client_change: Amount,
    /// Client signature over the payment transaction.
    pub signature: Signature,
}

/// The server accepted payments up to this amount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAck {
    /// Total paid to the server.
    pub amount_paid: Amount,
}

/// Close: from the client, a request; from the server, the settlement it broadcast.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Close {
    /// The settlement transaction (server to client only).
    pub settlement: Option<Transaction>,
}

/// A refusal, with a code a program can act on and words a person can read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// What went wrong.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub explanation: String,
    /// The value that would have been acceptable, when there is one.
    pub expected_value: Option<Amount>,
}

/// Every message of the protocol, numbered as bitcoinj numbered them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum WireMessage {
    ClientVersion(ClientVersion),
    ServerVersion(ServerVersion),
    Initiate(Initiate),
    ProvideRefund(ProvideRefund),
    ReturnRefund(ReturnRefund),
    ProvideContract(ProvideContract),
    ChannelOpen(ChannelOpen),
    UpdatePayment(UpdatePayment),
    Close(Close),
    Error(ErrorMessage),
    PaymentAck(PaymentAck),
}

/// Why bytes are not a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside a field.
    Truncated,
    /// Bytes remain after the message.
    TrailingBytes,
    /// The format byte is not one we read.
    UnknownFormat(u8),
    /// The type byte names no message.
    UnknownType(u8),
    /// A length field exceeds its limit.
    TooLong(&'static str),
    /// A field's bytes are not a valid value.
    InvalidField(&'static str),
    /// The header value is not base64url.
    Base64,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("message is truncated"),
            Self::TrailingBytes => f.write_str("trailing bytes after the message"),
            Self::UnknownFormat(v) => write!(f, "unknown encoding format {v}"),
            Self::UnknownType(t) => write!(f, "unknown message type {t}"),
            Self::TooLong(field) => write!(f, "field {field} is too long"),
            Self::InvalidField(field) => write!(f, "field {field} is invalid"),
            Self::Base64 => f.write_str("not unpadded base64url"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl WireMessage {
    /// The message's type number.
    pub fn type_id(&self) -> u8 {
        match self {
            Self::ClientVersion(_) => 1,
            Self::ServerVersion(_) => 2,
            Self::Initiate(_) => 3,
            Self::ProvideRefund(_) => 4,
            Self::ReturnRefund(_) => 5,
            Self::ProvideContract(_) => 6,
            Self::ChannelOpen(_) => 7,
            Self::UpdatePayment(_) => 8,
            Self::Close(_) => 9,
            Self::Error(_) => 10,
            Self::PaymentAck(_) => 11,
        }
    }

    /// The message's name, as in bitcoinj.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ClientVersion(_) => "CLIENT_VERSION",
            Self::ServerVersion(_) => "SERVER_VERSION",
            Self::Initiate(_) => "INITIATE",
            Self::ProvideRefund(_) => "PROVIDE_REFUND",
            Self::ReturnRefund(_) => "RETURN_REFUND",
            Self::ProvideContract(_) => "PROVIDE_CONTRACT",
            Self::ChannelOpen(_) => "CHANNEL_OPEN",
            Self::UpdatePayment(_) => "UPDATE_PAYMENT",
            Self::Close(_) => "CLOSE",
            Self::Error(_) => "ERROR",
            Self::PaymentAck(_) => "PAYMENT_ACK",
        }
    }

    /// Binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(vec![FORMAT, self.type_id()]);
        match self {
            Self::ClientVersion(m) => {
                w.u8(m.major);
                w.u8(m.minor);
                w.u32(m.time_window_blocks);
                w.option(m.previous_contract.as_ref(), |w, t| {
                    w.0.extend(t.as_byte_array())
                });
            }
            Self::ServerVersion(m) => {
                w.u8(m.major);
                w.u8(m.minor);
            }
            Self::Initiate(m) => {
                w.key(&m.server_key);
                w.amount(m.min_channel_value);
                w.amount(m.max_channel_value);
                w.amount(m.min_payment);
                w.u32(m.expiry.to_consensus_u32());
            }
            Self::ProvideRefund(m) => {
                w.key(&m.client_key);
                w.amount(m.channel_value);
                w.bytes(&serialize(&m.refund));
            }
            Self::ReturnRefund(m) => w.bytes(&m.signature.to_vec()),
            Self::ProvideContract(m) => {
                w.bytes(&serialize(&m.contract));
                w.key(&m.client_key);
                w.bytes(m.payout_script.as_bytes());
                w.update(&m.initial_payment);
            }
            Self::ChannelOpen(m) => {
                w.0.extend(m.contract_txid.as_byte_array());
                w.amount(m.amount_paid);
            }
            Self::UpdatePayment(m) => w.update(m),
            Self::Close(m) => w.option(m.settlement.as_ref(), |w, tx| w.bytes(&serialize(tx))),
            Self::Error(m) => {
                w.u16(m.code.to_u16());
                w.bytes(m.explanation.as_bytes());
                w.option(m.expected_value.as_ref(), |w, a| w.amount(*a));
            }
            Self::PaymentAck(m) => w.amount(m.amount_paid),
        }
        w.0
    }

    /// Decodes one message; every byte must be used.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        let format = r.u8()?;
        if format != FORMAT {
            return Err(DecodeError::UnknownFormat(format));
        }
        let msg = match r.u8()? {
            1 => Self::ClientVersion(ClientVersion {
                major: r.u8()?,
                minor: r.u8()?,
                time_window_blocks: r.u32()?,
                previous_contract: r.option(|r| Ok(Txid::from_byte_array(r.array()?)))?,
            }),
            2 => Self::ServerVersion(ServerVersion {
                major: r.u8()?,
                minor: r.u8()?,
            }),
            3 => Self::Initiate(Initiate {
                server_key: r.key("server_key")?,
                min_channel_value: r.amount("min_channel_value")?,
                max_channel_value: r.amount("max_channel_value")?,
                min_payment: r.amount("min_payment")?,
                expiry: LockTime::from_consensus(r.u32()?),
            }),
            4 => Self::ProvideRefund(ProvideRefund {
                client_key: r.key("client_key")?,
                channel_value: r.amount("channel_value")?,
                refund: r.tx("refund")?,
            }),
            5 => Self::ReturnRefund(ReturnRefund {
                signature: r.signature("signature")?,
            }),
            6 => Self::ProvideContract(ProvideContract {
                contract: r.tx("contract")?,
                client_key: r.key("client_key")?,
                payout_script: ScriptBuf::from_bytes(r.bytes("payout_script")?.to_vec()),
                initial_payment: r.update()?,
            }),
            7 => Self::ChannelOpen(ChannelOpen {
                contract_txid: Txid::from_byte_array(r.array()?),
                amount_paid: r.amount("amount_paid")?,
            }),
            8 => Self::UpdatePayment(r.update()?),
            9 => Self::Close(Close {
                settlement: r.option(|r| r.tx("settlement"))?,
            }),
            10 => Self::Error(ErrorMessage {
                code: ErrorCode::from_u16(r.u16()?),
                explanation: r.text()?,
                expected_value: r.option(|r| r.amount("expected_value"))?,
            }),
            11 => Self::PaymentAck(PaymentAck {
                amount_paid: r.amount("amount_paid")?,
            }),
            t => return Err(DecodeError::UnknownType(t)),
        };
        if !r.0.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(msg)
    }

    /// Unpadded base64url of the binary encoding, for HTTP headers.
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.encode())
    }

    /// Decodes the header form.
    pub fn from_base64url(text: &str) -> Result<Self, DecodeError> {
        // Bound the work before decoding: base64 expands 3 bytes to 4 characters.
        if text.len() > (MAX_FIELD_LEN + 1024) / 3 * 4 {
            return Err(DecodeError::TooLong("message"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| DecodeError::Base64)?;
        Self::decode(&bytes)
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend(v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend(v.to_le_bytes());
    }
    fn amount(&mut self, a: Amount) {
        self.0.extend(a.to_sat().to_le_bytes());
    }
    fn key(&mut self, k: &PublicKey) {
        self.0.extend(k.serialize());
    }
    fn bytes(&mut self, b: &[u8]) {
        // Fields are bounded by MAX_FIELD_LEN when decoded; encoding never sees larger ones
        // from this crate, and saturating keeps a hostile caller from wrapping the length.
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.0.extend(b);
    }
    fn option<T>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
            }
        }
    }
    fn update(&mut self, m: &UpdatePayment) {
        self.amount(m.client_change);
        self.bytes(&m.signature.to_vec());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn amount(&mut self, field: &'static str) -> Result<Amount, DecodeError> {
        let sat = u64::from_le_bytes(self.array()?);
        let amount = Amount::from_sat(sat);
        if amount > Amount::MAX_MONEY {
            return Err(DecodeError::InvalidField(field));
        }
        Ok(amount)
    }
    fn key(&mut self, field: &'static str) -> Result<PublicKey, DecodeError> {
        let raw: [u8; 33] = self.array()?;
        PublicKey::from_slice(&raw).map_err(|_| DecodeError::InvalidField(field))
    }
    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        if len > MAX_FIELD_LEN {
            return Err(DecodeError::TooLong(field));
        }
        self.take(len)
    }
    fn tx(&mut self, field: &'static str) -> Result<Transaction, DecodeError> {
        deserialize(self.bytes(field)?).map_err(|_| DecodeError::InvalidField(field))
    }
    fn signature(&mut self, field: &'static str) -> Result<Signature, DecodeError> {
        Signature::from_slice(self.bytes(field)?).map_err(|_| DecodeError::InvalidField(field))
    }
    fn text(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes("explanation")?;
        if b.len() > MAX_EXPLANATION_LEN {
            return Err(DecodeError::TooLong("explanation"));
        }
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::InvalidField("explanation"))
    }
    fn option<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            _ => Err(DecodeError::InvalidField("option flag")),
        }
    }
    fn update(&mut self) -> Result<UpdatePayment, DecodeError> {
        Ok(UpdatePayment {
            client_change: self.amount("client_change")?,
            signature: self.signature("signature")?,
        })
    }
}
