//! Why a wallet operation failed, as one error type for every payer: a stable snake_case code
//! for programs (`WalletError::code`), a sentence for people, and the amounts of a shortfall.

use core::fmt;

use bitcoin::{Amount, Network};
use serde::Serialize;
use ts_rs::TS;

use crate::store::StoreError;
use crate::vault::VaultError;

/// Why a wallet operation failed.
#[derive(Debug)]
pub enum WalletError {
    /// Storage failed; nothing after the failed write happened.
    Store(StoreError),
    /// The password is wrong or the sealed secret is damaged.
    Vault(VaultError),
    /// No wallet is stored yet.
    NotFound,
    /// A wallet is already stored; it is never overwritten.
    AlreadyExists,
    /// The recovery phrase is not valid BIP39.
    BadPhrase(String),
    /// The stored wallet is for another network.
    WrongNetwork {
        /// The stored wallet's network.
        stored: Network,
        /// The requested network.
        requested: Network,
    },
    /// Stored data is malformed.
    Corrupt(String),
    /// The chain source failed.
    Chain(String),
    /// Not enough confirmed-or-trusted coins for the transaction and its fee.
    InsufficientFunds(Shortfall),
    /// Another reason the transaction cannot be built.
    CannotFund(String),
    /// The text is not an address of the wallet's network.
    BadAddress(String),
    /// A new password too easy to guess.
    WeakPassword(crate::vault::WeakPassword),
    /// An amount to send of 0 sat, or above 21 million BTC.
    BadAmount,
    /// A fee rate outside the rates a user may choose, sat/vB.
    BadFeeRate {
        /// The lowest.
        min: f64,
        /// The highest.
        max: f64,
    },
    /// Too many wrong passwords in a row: the next try waits this many seconds.
    TooManyAttempts {
        /// Seconds to wait, rounded up.
        wait_secs: u64,
    },
}

impl fmt::Display for WalletError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(e) => write!(f, "{e}"),
            Self::Vault(e) => write!(f, "{e}"),
            Self::NotFound => f.write_str("no wallet here: create or restore one first"),
            Self::AlreadyExists => f.write_str("a wallet already exists here"),
            Self::BadPhrase(e) => write!(f, "invalid recovery phrase: {e}"),
            Self::WrongNetwork { stored, requested } => {
                write!(f, "the wallet is for {stored}, not {requested}")
            }
            Self::Corrupt(e) => write!(f, "stored wallet data is corrupt: {e}"),
            Self::Chain(e) => write!(f, "chain source failed: {e}"),
            Self::InsufficientFunds(s) => write!(
                f,
                "not enough funds: {} sat available, {} sat needed with the fee",
                s.available.to_sat(),
                s.needed.to_sat()
            ),
            Self::CannotFund(e) => write!(f, "cannot build the transaction: {e}"),
            Self::BadAddress(e) => write!(f, "invalid address: {e}"),
            Self::WeakPassword(e) => write!(f, "{e}"),
            Self::BadAmount => f.write_str("enter an amount above 0 sat"),
            Self::BadFeeRate { min, max } => {
                write!(f, "the fee rate must be between {min} and {max} sat/vB")
            }
            Self::TooManyAttempts { wait_secs } => {
                write!(f, "too many wrong passwords: try again in {wait_secs} s")
            }
        }
    }
}

impl std::error::Error for WalletError {}

impl WalletError {
    /// A stable snake_case name for programs (the extension's pages branch on it).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Store(_) => "storage",
            Self::Vault(VaultError::WrongPassword) => "wrong_password",
            Self::Vault(VaultError::Random) => "random_source",
            Self::Vault(VaultError::Corrupt(_)) | Self::Corrupt(_) => "corrupt",
            Self::NotFound => "no_wallet",
            Self::AlreadyExists => "already_exists",
            Self::BadPhrase(_) => "bad_phrase",
            Self::WrongNetwork { .. } => "wrong_network",
            Self::Chain(_) => "chain",
            Self::InsufficientFunds(_) | Self::CannotFund(_) => "cannot_fund",
            Self::BadAddress(_) => "bad_address",
            Self::WeakPassword(_) => "weak_password",
            Self::BadAmount => "bad_amount",
            Self::BadFeeRate { .. } => "bad_fee_rate",
            Self::TooManyAttempts { .. } => "too_many_attempts",
        }
    }

    /// What the wallet has and needs, when it failed for lack of coins.
    pub fn shortfall(&self) -> Option<Shortfall> {
        match self {
            Self::InsufficientFunds(s) => Some(*s),
            _ => None,
        }
    }
}

/// Coins short of a transaction: what the wallet can spend, and what the transaction needs with
/// its fee.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Shortfall {
    /// Spendable, sat.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    #[ts(type = "number")]
    pub available: Amount,
    /// Needed, fee included, sat.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    #[ts(type = "number")]
    pub needed: Amount,
}

impl From<bdk_wallet::error::CreateTxError> for WalletError {
    fn from(e: bdk_wallet::error::CreateTxError) -> Self {
        match e {
            bdk_wallet::error::CreateTxError::CoinSelection(e) => {
                Self::InsufficientFunds(Shortfall {
                    available: e.available,
                    needed: e.needed,
                })
            }
            other => Self::CannotFund(other.to_string()),
        }
    }
}

impl From<StoreError> for WalletError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<bdk_esplora::esplora_client::Error> for WalletError {
    /// One sentence a person can act on, not the HTTP client's debug dump.
    fn from(e: bdk_esplora::esplora_client::Error) -> Self {
        use bdk_esplora::esplora_client::Error as E;
        let first_line = |text: &str| -> String {
            let line = text.lines().next().unwrap_or_default();
            line.chars().take(300).collect()
        };
        Self::Chain(match e {
            E::Reqwest(e) if e.is_timeout() => "the chain server did not answer in time".into(),
            E::Reqwest(e) => match e.url() {
                Some(url) => format!(
                    "cannot reach the chain server at {}",
                    url.origin().ascii_serialization()
                ),
                None => "cannot reach the chain server".into(),
            },
            E::HttpResponse { status, message } => {
                format!(
                    "the chain server answered {status}: {}",
                    first_line(&message)
                )
            }
            other => first_line(&other.to_string()),
        })
    }
}

impl From<Box<bdk_esplora::esplora_client::Error>> for WalletError {
    fn from(e: Box<bdk_esplora::esplora_client::Error>) -> Self {
        Self::from(*e)
    }
}

impl From<crate::vault::WeakPassword> for WalletError {
    fn from(e: crate::vault::WeakPassword) -> Self {
        Self::WeakPassword(e)
    }
}

impl From<VaultError> for WalletError {
    fn from(e: VaultError) -> Self {
        Self::Vault(e)
    }
}
