//! Errors: one enum for every refusal either side can make, each with a stable wire code.

use core::fmt;

use bitcoin::Amount;

use crate::message::{DecodeError, ErrorMessage};

/// Numeric error codes carried by [`ErrorMessage`] on the wire.
///
/// Codes 1–8 are bitcoinj's `Error.ErrorCode`; the rest name refusals that bitcoinj folded
/// into `BAD_TRANSACTION` or `OTHER`, so that a peer can tell exactly what went wrong.
/// Codes are stable: never renumber, only append.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ErrorCode {
    /// The peer took too long.
    Timeout,
    /// A message could not be decoded.
    SyntaxError,
    /// No protocol version both sides speak.
    NoAcceptableVersion,
    /// A transaction is malformed or does not match the channel.
    BadTransaction,
    /// The proposed expiry is outside the acceptable window.
    TimeWindowUnacceptable,
    /// The channel value is above the acceptable maximum.
    ChannelValueTooLarge,
    /// The server's minimum payment is above what the client accepts.
    MinPaymentTooLarge,
    /// Anything else.
    Other,
    /// A signature does not verify.
    BadSignature,
    /// A signature uses a sighash type the protocol does not allow there.
    WrongSighash,
    /// A payment would pay the server less than an earlier one.
    PaymentDecreased,
    /// A payment would pay the server more than the channel holds.
    PaymentExceedsValue,
    /// The channel is past (or within the close margin of) its expiry.
    ChannelExpired,
    /// The message is not valid in the current state.
    UnexpectedMessage,
    /// The channel value is below the acceptable minimum.
    ChannelValueTooSmall,
    /// An output would be below the dust limit.
    DustOutput,
    /// A payment is below the server's minimum.
    PaymentTooSmall,
    /// No channel with that contract is known.
    UnknownChannel,
    /// The channel is closed or closing.
    ChannelClosed,
    /// A key does not match the channel's key.
    WrongKey,
    /// The settlement does not pay what was agreed.
    BadSettlement,
    /// A code this build does not know (from a newer peer); its number is kept.
    Unknown(u16),
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 21] = [
        Self::Timeout,
        Self::SyntaxError,
        Self::NoAcceptableVersion,
        Self::BadTransaction,
        Self::TimeWindowUnacceptable,
        Self::ChannelValueTooLarge,
        Self::MinPaymentTooLarge,
        Self::Other,
        Self::BadSignature,
        Self::WrongSighash,
        Self::PaymentDecreased,
        Self::PaymentExceedsValue,
        Self::ChannelExpired,
        Self::UnexpectedMessage,
        Self::ChannelValueTooSmall,
        Self::DustOutput,
        Self::PaymentTooSmall,
        Self::UnknownChannel,
        Self::ChannelClosed,
        Self::WrongKey,
        Self::BadSettlement,
    ];

    /// The code's name: lowercase snake case, as x402 writes error reasons.
    pub fn name(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::SyntaxError => "syntax_error",
            Self::NoAcceptableVersion => "no_acceptable_version",
            Self::BadTransaction => "bad_transaction",
            Self::TimeWindowUnacceptable => "time_window_unacceptable",
            Self::ChannelValueTooLarge => "channel_value_too_large",
            Self::MinPaymentTooLarge => "min_payment_too_large",
            Self::Other => "other",
            Self::BadSignature => "bad_signature",
            Self::WrongSighash => "wrong_sighash",
            Self::PaymentDecreased => "payment_decreased",
            Self::PaymentExceedsValue => "payment_exceeds_value",
            Self::ChannelExpired => "channel_expired",
            Self::UnexpectedMessage => "unexpected_message",
            Self::ChannelValueTooSmall => "channel_value_too_small",
            Self::DustOutput => "dust_output",
            Self::PaymentTooSmall => "payment_too_small",
            Self::UnknownChannel => "unknown_channel",
            Self::ChannelClosed => "channel_closed",
            Self::WrongKey => "wrong_key",
            Self::BadSettlement => "bad_settlement",
            Self::Unknown(_) => "unknown",
        }
    }

    /// The code's number on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::Unknown(n) => n,
            // Known codes are numbered by their place in `ALL`, from 1.
            known => Self::ALL
                .iter()
                .position(|c| *c == known)
                .map_or(0, |i| i as u16 + 1),
        }
    }

    /// The code for a number; a number this build does not know is kept as
    /// [`ErrorCode::Unknown`], so a newer peer's error still decodes (and re-encodes the same).
    pub fn from_u16(n: u16) -> Self {
        usize::from(n)
            .checked_sub(1)
            .and_then(|i| Self::ALL.get(i).copied())
            .unwrap_or(Self::Unknown(n))
    }
}

/// Why a transition was refused. The state it was called on is unchanged and nothing was signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// A message could not be decoded.
    Decode(DecodeError),
    /// The peer offered no protocol version we speak.
    NoAcceptableVersion {
        /// The major version the peer asked for.
        requested: u8,
    },
    /// The message is not valid in the current state.
    UnexpectedMessage {
        /// What the state machine was in.
        state: &'static str,
        /// What arrived.
        message: &'static str,
    },
    /// The expiry is outside the acceptable window (in blocks from the chain tip).
    TimeWindowUnacceptable {
        /// Blocks from the tip to the expiry (negative when already past).
        blocks: i64,
        /// Smallest acceptable window.
        min: u32,
        /// Largest acceptable window.
        max: u32,
    },
    /// The channel value is above the maximum.
    ChannelValueTooLarge {
        /// Proposed value.
        value: Amount,
        /// Largest accepted.
        max: Amount,
    },
    /// The channel value is below the minimum.
    ChannelValueTooSmall {
        /// Proposed value.
        value: Amount,
        /// Smallest accepted.
        min: Amount,
    },
    /// The server's minimum payment is above what the client accepts.
    MinPaymentTooLarge {
        /// The server's minimum.
        min_payment: Amount,
        /// The client's limit.
        max: Amount,
    },
    /// A transaction is malformed or does not match the channel.
    BadTransaction(&'static str),
    /// A signature does not verify.
    BadSignature(&'static str),
    /// A signature has a sighash type not allowed there.
    WrongSighash {
        /// The type the protocol requires.
        expected: bitcoin::EcdsaSighashType,
        /// The type found.
        found: bitcoin::EcdsaSighashType,
    },
    /// A payment would pay the server less than an earlier one.
    PaymentDecreased {
        /// Best amount so far.
        previous: Amount,
        /// Proposed amount.
        proposed: Amount,
    },
    /// A payment would pay more than the channel holds.
    PaymentExceedsValue {
        /// Proposed total.
        proposed: Amount,
        /// Channel value.
        value: Amount,
    },
    /// A payment is below the server's minimum.
    PaymentTooSmall {
        /// Proposed total.
        proposed: Amount,
        /// Minimum.
        min: Amount,
    },
    /// An output would be dust.
    DustOutput {
        /// The output's value.
        value: Amount,
        /// The dust limit for its script.
        limit: Amount,
    },
    /// The channel is past, or within the close margin of, its expiry.
    ChannelExpired,
    /// No channel with that contract is known.
    UnknownChannel,
    /// The channel is closed or closing.
    ChannelClosed,
    /// A key does not match the one the channel uses.
    WrongKey,
    /// A settlement does not pay the client what was agreed.
    BadSettlement(&'static str),
    /// The peer sent an error message.
    Peer(ErrorMessage),
}

impl ChannelError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Decode(_) => ErrorCode::SyntaxError,
            Self::NoAcceptableVersion { .. } => ErrorCode::NoAcceptableVersion,
            Self::UnexpectedMessage { .. } => ErrorCode::UnexpectedMessage,
            Self::TimeWindowUnacceptable { .. } => ErrorCode::TimeWindowUnacceptable,
            Self::ChannelValueTooLarge { .. } => ErrorCode::ChannelValueTooLarge,
            Self::ChannelValueTooSmall { .. } => ErrorCode::ChannelValueTooSmall,
            Self::MinPaymentTooLarge { .. } => ErrorCode::MinPaymentTooLarge,
            Self::BadTransaction(_) => ErrorCode::BadTransaction,
            Self::BadSignature(_) => ErrorCode::BadSignature,
            Self::WrongSighash { .. } => ErrorCode::WrongSighash,
            Self::PaymentDecreased { .. } => ErrorCode::PaymentDecreased,
            Self::PaymentExceedsValue { .. } => ErrorCode::PaymentExceedsValue,
            Self::PaymentTooSmall { .. } => ErrorCode::PaymentTooSmall,
            Self::DustOutput { .. } => ErrorCode::DustOutput,
            Self::ChannelExpired => ErrorCode::ChannelExpired,
            Self::UnknownChannel => ErrorCode::UnknownChannel,
            Self::ChannelClosed => ErrorCode::ChannelClosed,
            Self::WrongKey => ErrorCode::WrongKey,
            Self::BadSettlement(_) => ErrorCode::BadSettlement,
            Self::Peer(m) => m.code,
        }
    }

    /// The error message to send to the peer for this refusal.
    pub fn to_message(&self) -> ErrorMessage {
        let expected_value = match self {
            Self::ChannelValueTooLarge { max, .. } => Some(*max),
            Self::ChannelValueTooSmall { min, .. } | Self::PaymentTooSmall { min, .. } => {
                Some(*min)
            }
            Self::PaymentDecreased { previous, .. } => Some(*previous),
            Self::PaymentExceedsValue { value, .. } => Some(*value),
            _ => None,
        };
        ErrorMessage {
            code: self.code(),
            explanation: self.to_string(),
            expected_value,
        }
    }
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(e) => write!(f, "malformed message: {e}"),
            Self::NoAcceptableVersion { requested } => {
                write!(
                    f,
                    "no acceptable protocol version (peer asked for {requested})"
                )
            }
            Self::UnexpectedMessage { state, message } => {
                write!(f, "unexpected {message} in state {state}")
            }
            Self::TimeWindowUnacceptable { blocks, min, max } => write!(
                f,
                "expiry {blocks} blocks away is outside the window {min}..={max} blocks"
            ),
            Self::ChannelValueTooLarge { value, max } => {
                write!(
                    f,
                    "channel value {} sat is above the maximum {} sat",
                    value.to_sat(),
                    max.to_sat()
                )
            }
            Self::ChannelValueTooSmall { value, min } => {
                write!(
                    f,
                    "channel value {} sat is below the minimum {} sat",
                    value.to_sat(),
                    min.to_sat()
                )
            }
            Self::MinPaymentTooLarge { min_payment, max } => {
                write!(
                    f,
                    "minimum payment {} sat is above the accepted {} sat",
                    min_payment.to_sat(),
                    max.to_sat()
                )
            }
            Self::BadTransaction(why) => write!(f, "bad transaction: {why}"),
            Self::BadSignature(what) => write!(f, "bad signature: {what}"),
            Self::WrongSighash { expected, found } => {
                write!(f, "wrong sighash type {found}, expected {expected}")
            }
            Self::PaymentDecreased { previous, proposed } => {
                write!(
                    f,
                    "payment {} sat is less than the previous {} sat",
                    proposed.to_sat(),
                    previous.to_sat()
                )
            }
            Self::PaymentExceedsValue { proposed, value } => {
                write!(
                    f,
                    "payment {} sat exceeds the channel value {} sat",
                    proposed.to_sat(),
                    value.to_sat()
                )
            }
            Self::PaymentTooSmall { proposed, min } => {
                write!(
                    f,
                    "payment {} sat is below the minimum {} sat",
                    proposed.to_sat(),
                    min.to_sat()
                )
            }
            Self::DustOutput { value, limit } => {
                write!(
                    f,
                    "output of {} sat is below the dust limit {} sat",
                    value.to_sat(),
                    limit.to_sat()
                )
            }
            Self::ChannelExpired => f.write_str("channel is expired or about to expire"),
            Self::UnknownChannel => f.write_str("unknown channel"),
            Self::ChannelClosed => f.write_str("channel is closed"),
            Self::WrongKey => f.write_str("key does not match the channel"),
            Self::BadSettlement(why) => write!(f, "bad settlement: {why}"),
            Self::Peer(m) => write!(f, "peer refused ({:?}): {}", m.code, m.explanation),
        }
    }
}

impl std::error::Error for ChannelError {}

impl From<DecodeError> for ChannelError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}
