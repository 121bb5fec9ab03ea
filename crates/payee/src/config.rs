//! The `trickle-payee` binary's configuration file (TOML) and key seed file.

use core::fmt;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bitcoin::hashes::Hash as _;
use bitcoin::{Address, Amount, FeeRate, Network, ScriptBuf};
use serde::Deserialize;
use trickle_channel::{dust_limit, CloseFee, Contract, ExpiryKind, Funding, PayeePolicy, Version};

use crate::{PayeeConfig, Price, Prices, DEFAULT_ENDPOINT_PATH};

/// Why the configuration cannot be used.
#[derive(Debug)]
pub enum ConfigError {
    /// The file cannot be read.
    Read(PathBuf, std::io::Error),
    /// The file is not valid TOML of the expected shape (the message names the field).
    Parse(String),
    /// A field has a value that cannot be used.
    Field {
        /// The field, as written in the file (`policy.min_payment`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(path, e) => write!(f, "cannot read config {}: {e}", path.display()),
            Self::Parse(e) => write!(f, "invalid config: {e}"),
            Self::Field { field, message } => write!(f, "config field `{field}`: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

fn field(name: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: name.to_owned(),
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: String,
    upstream: String,
    network: String,
    esplora: String,
    database: PathBuf,
    key_file: PathBuf,
    public_url: Option<String>,
    operator_listen: Option<String>,
    facilitator_listen: Option<String>,
    payout_address: Option<String>,
    #[serde(default = "default_poll")]
    poll_interval_secs: u64,
    #[serde(default = "default_header_timeout")]
    header_timeout_secs: u64,
    #[serde(default = "default_max_opens")]
    max_concurrent_opens: usize,
    #[serde(default = "default_fee")]
    close_fee_rate_sat_vb: u64,
    #[serde(default = "default_fee_ceiling")]
    close_fee_ceiling_sat_vb: u64,
    #[serde(default = "default_close_target")]
    close_target_blocks: u32,
    #[serde(default = "default_timeout")]
    offer_timeout_secs: u32,
    #[serde(default = "default_confirmations")]
    confirmations: u32,
    final_confirmations: Option<u32>,
    unconfirmed_credit_sat: Option<u64>,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default, rename = "price")]
    prices: Vec<RawPrice>,
}

fn default_poll() -> u64 {
    30
}
fn default_header_timeout() -> u64 {
    crate::serve::DEFAULT_HEADER_TIMEOUT.as_secs()
}
fn default_max_opens() -> usize {
    16
}
fn default_fee() -> u64 {
    2
}
fn default_fee_ceiling() -> u64 {
    500
}
fn default_close_target() -> u32 {
    6
}
fn default_timeout() -> u32 {
    300
}
fn default_confirmations() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPolicy {
    versions: Vec<u8>,
    min_channel_value: u64,
    max_channel_value: u64,
    min_payment: u64,
    min_expiry_blocks: u32,
    max_expiry_blocks: u32,
    close_margin_blocks: u32,
    allow_min_payment_below_close_cost: bool,
}

impl Default for RawPolicy {
    fn default() -> Self {
        Self {
            versions: vec![2, 1],
            min_channel_value: 10_000,
            max_channel_value: 1_000_000,
            min_payment: 1_000,
            min_expiry_blocks: 72,
            max_expiry_blocks: 1_008,
            close_margin_blocks: 12,
            allow_min_payment_below_close_cost: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    path: String,
    sat: u64,
    #[serde(default)]
    description: String,
    #[serde(default)]
    mime_type: String,
}

/// The channel policy of the configuration, less the payout script (which may come from the
/// key seed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Accept v1 channels.
    pub accept_v1: bool,
    /// Accept v2 channels.
    pub accept_v2: bool,
    /// Smallest channel value.
    pub min_channel_value: Amount,
    /// Largest channel value.
    pub max_channel_value: Amount,
    /// Smallest first payment.
    pub min_payment: Amount,
    /// Shortest channel life, in blocks.
    pub min_expiry_blocks: u32,
    /// Longest channel life, in blocks.
    pub max_expiry_blocks: u32,
    /// Close this many blocks before expiry.
    pub close_margin_blocks: u32,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// The site behind the proxy.
    pub upstream: String,
    /// The network.
    pub network: Network,
    /// Esplora base URL.
    pub esplora: String,
    /// SQLite database file (created on first start).
    pub database: PathBuf,
    /// Key seed file (created with mode 0600 on first start).
    pub key_file: PathBuf,
    /// The site's public origin, if set.
    pub public_url: Option<String>,
    /// Where `/status` and `/metrics` are served, if anywhere.
    pub operator_listen: Option<SocketAddr>,
    /// Where the x402 facilitator and a second channel endpoint are served, if anywhere.
    pub facilitator_listen: Option<SocketAddr>,
    /// Where settlements pay the site, if set (else a key of the seed).
    pub payout_address: Option<Address>,
    /// How often the chain is polled.
    pub poll_interval: Duration,
    /// How long a client has to send a request's headers before it is disconnected.
    pub header_timeout: Duration,
    /// How many channel opens are handled at once (more are answered 503).
    pub max_concurrent_opens: usize,
    /// The least a settlement pays per vbyte (the estimate when higher).
    pub close_fee_rate: FeeRate,
    /// The most a settlement pays per vbyte before its last resort.
    pub close_fee_ceiling: FeeRate,
    /// Blocks within which a settlement should confirm.
    pub close_target_blocks: u32,
    /// Offer (nonce) and pending session lifetime.
    pub offer_timeout_secs: u32,
    /// Confirmations a contract needs before its channel consumes beyond `unconfirmed_credit`.
    pub confirmations: u32,
    /// What a channel may consume before its contract has `confirmations`.
    pub unconfirmed_credit: Amount,
    /// How deep a contract's spend must be before its channel is closed and forgotten.
    pub final_confirmations: u32,
    /// Channel policy.
    pub policy: Policy,
    /// Prices by path prefix.
    pub prices: Prices,
}

fn http_url(name: &str, value: &str) -> Result<String, ConfigError> {
    let url = reqwest::Url::parse(value).map_err(|e| field(name, format!("not a URL: {e}")))?;
    match url.scheme() {
        "http" => {}
        "https" if cfg!(feature = "tls") => {}
        "https" => {
            return Err(field(
                name,
                "https needs the `tls` feature of trickle-payee; use http or rebuild",
            ))
        }
        other => return Err(field(name, format!("scheme {other} is not http"))),
    }
    Ok(value.trim_end_matches('/').to_owned())
}

fn addr(name: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse()
        .map_err(|e| field(name, format!("not an address like 127.0.0.1:8080: {e}")))
}

impl Config {
    /// Reads and validates a configuration file; relative paths in it are relative to it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, dir)
    }

    /// Validates configuration text; relative paths are taken relative to `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<Self, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let network = match raw.network.as_str() {
            "bitcoin" | "mainnet" => Network::Bitcoin,
            "testnet" => Network::Testnet,
            "signet" => Network::Signet,
            "regtest" => Network::Regtest,
            other => {
                return Err(field(
                    "network",
                    format!("{other} is not regtest, signet, testnet or bitcoin"),
                ))
            }
        };
        let payout_address = raw
            .payout_address
            .as_deref()
            .map(|a| {
                Address::from_str(a)
                    .map_err(|e| field("payout_address", e.to_string()))?
                    .require_network(network)
                    .map_err(|e| field("payout_address", e.to_string()))
            })
            .transpose()?;
        let p = raw.policy;
        if p.versions.is_empty() || p.versions.iter().any(|v| !matches!(v, 1 | 2)) {
            return Err(field("policy.versions", "must list 1 and/or 2"));
        }
        if p.min_channel_value > p.max_channel_value {
            return Err(field(
                "policy.min_channel_value",
                "is above policy.max_channel_value",
            ));
        }
        if p.min_payment == 0 || p.min_payment > p.min_channel_value {
            return Err(field(
                "policy.min_payment",
                "must be above zero and at most policy.min_channel_value",
            ));
        }
        if p.max_channel_value > Amount::MAX_MONEY.to_sat() {
            return Err(field("policy.max_channel_value", "is above 21 million BTC"));
        }
        if p.min_expiry_blocks == 0 || p.min_expiry_blocks > p.max_expiry_blocks {
            return Err(field(
                "policy.min_expiry_blocks",
                "must be above zero and at most policy.max_expiry_blocks",
            ));
        }
        if p.close_margin_blocks >= p.min_expiry_blocks {
            return Err(field(
                "policy.close_margin_blocks",
                "must be below policy.min_expiry_blocks, or channels close as they open",
            ));
        }
        let mut prices = Prices::new();
        for (i, price) in raw.prices.iter().enumerate() {
            let name = format!("price[{i}].path");
            if !price.path.starts_with('/') {
                return Err(field(&name, "must start with /"));
            }
            // A prefix no request may carry would price nothing.
            if let Err(why) = crate::path::check(&price.path) {
                return Err(field(&name, why.as_str()));
            }
            if price.sat == 0 || price.sat > p.max_channel_value {
                return Err(field(
                    &format!("price[{i}].sat"),
                    "must be above zero and at most policy.max_channel_value",
                ));
            }
            prices = prices.with(
                &price.path,
                Price {
                    amount: Amount::from_sat(price.sat),
                    description: price.description.clone(),
                    mime_type: price.mime_type.clone(),
                },
            );
        }
        if raw.poll_interval_secs == 0 {
            return Err(field("poll_interval_secs", "must be above zero"));
        }
        if raw.max_concurrent_opens == 0 {
            return Err(field("max_concurrent_opens", "must be above zero"));
        }
        if raw.header_timeout_secs == 0 {
            return Err(field("header_timeout_secs", "must be above zero"));
        }
        let close_fee_rate = FeeRate::from_sat_per_vb(raw.close_fee_rate_sat_vb)
            .filter(|r| *r >= FeeRate::from_sat_per_vb_u32(1))
            .ok_or_else(|| field("close_fee_rate_sat_vb", "must be at least 1"))?;
        let close_fee_ceiling = FeeRate::from_sat_per_vb(raw.close_fee_ceiling_sat_vb)
            .filter(|r| *r >= close_fee_rate)
            .ok_or_else(|| {
                field(
                    "close_fee_ceiling_sat_vb",
                    "must be at least close_fee_rate_sat_vb",
                )
            })?;
        // A channel is closed with what its client paid: one that paid only its first payment
        // must be able to pay its settlement's fee and keep the payee's output above dust, or
        // it cannot be closed before its expiry and the client's money stays locked until then.
        let versions = [
            (p.versions.contains(&1), Version::V1),
            (p.versions.contains(&2), Version::V2),
        ];
        let close_cost = versions
            .iter()
            .filter(|(accepted, _)| *accepted)
            .filter_map(|(_, version)| close_cost(*version, close_fee_rate))
            .max()
            .unwrap_or(Amount::MAX_MONEY);
        if Amount::from_sat(p.min_payment) < close_cost && !p.allow_min_payment_below_close_cost {
            return Err(field(
                "policy.min_payment",
                format!(
                    "{} sat cannot pay to close a channel: at close_fee_rate_sat_vb = {} a \
                     settlement's fee and the payee's output need {} sat, so a channel that paid \
                     only its first payment could not be closed before its expiry; raise it (and \
                     policy.min_channel_value) to at least {}, lower close_fee_rate_sat_vb, or \
                     set policy.allow_min_payment_below_close_cost = true",
                    p.min_payment,
                    raw.close_fee_rate_sat_vb,
                    close_cost.to_sat(),
                    close_cost.to_sat()
                ),
            ));
        }
        if raw.close_target_blocks == 0 {
            return Err(field("close_target_blocks", "must be above zero"));
        }
        // The settlement's fee is the estimate for confirming within `close_target_blocks`:
        // the margin must leave it those blocks, and one to bump in, before the last resort.
        let needed =
            u64::from(raw.close_target_blocks) + trickle_channel::LAST_RESORT_BLOCKS as u64;
        if u64::from(p.close_margin_blocks) <= needed {
            return Err(field(
                "policy.close_margin_blocks",
                format!(
                    "must be above close_target_blocks + {} ({needed}): the settlement needs its \
                     target's blocks to confirm, and room for a higher fee, before the expiry",
                    trickle_channel::LAST_RESORT_BLOCKS
                ),
            ));
        }
        if raw.offer_timeout_secs == 0 {
            return Err(field("offer_timeout_secs", "must be above zero"));
        }
        let final_confirmations = raw
            .final_confirmations
            .unwrap_or_else(|| crate::payee::default_final_confirmations(network));
        if final_confirmations == 0 {
            return Err(field("final_confirmations", "must be above zero"));
        }
        let unconfirmed_credit = raw.unconfirmed_credit_sat.unwrap_or(p.min_payment);
        if unconfirmed_credit > p.max_channel_value {
            return Err(field(
                "unconfirmed_credit_sat",
                "must be at most policy.max_channel_value",
            ));
        }
        // The public origin may be https without the `tls` feature: the proxy never dials it.
        let public_url = raw
            .public_url
            .as_deref()
            .map(|u| match reqwest::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {
                    Ok(u.trim_end_matches('/').to_owned())
                }
                _ => Err(field("public_url", "must be an http or https URL")),
            })
            .transpose()?;
        Ok(Self {
            listen: addr("listen", &raw.listen)?,
            upstream: http_url("upstream", &raw.upstream)?,
            network,
            esplora: http_url("esplora", &raw.esplora)?,
            database: dir.join(raw.database),
            key_file: dir.join(raw.key_file),
            public_url,
            operator_listen: raw
                .operator_listen
                .as_deref()
                .map(|a| addr("operator_listen", a))
                .transpose()?,
            facilitator_listen: raw
                .facilitator_listen
                .as_deref()
                .map(|a| addr("facilitator_listen", a))
                .transpose()?,
            payout_address,
            poll_interval: Duration::from_secs(raw.poll_interval_secs),
            header_timeout: Duration::from_secs(raw.header_timeout_secs),
            max_concurrent_opens: raw.max_concurrent_opens,
            close_fee_rate,
            close_fee_ceiling,
            close_target_blocks: raw.close_target_blocks,
            offer_timeout_secs: raw.offer_timeout_secs,
            confirmations: raw.confirmations,
            unconfirmed_credit: Amount::from_sat(unconfirmed_credit),
            final_confirmations,
            policy: Policy {
                accept_v1: p.versions.contains(&1),
                accept_v2: p.versions.contains(&2),
                min_channel_value: Amount::from_sat(p.min_channel_value),
                max_channel_value: Amount::from_sat(p.max_channel_value),
                min_payment: Amount::from_sat(p.min_payment),
                min_expiry_blocks: p.min_expiry_blocks,
                max_expiry_blocks: p.max_expiry_blocks,
                close_margin_blocks: p.close_margin_blocks,
            },
            prices,
        })
    }

    /// The payee configuration, with settlements paying `payout_script`.
    pub fn payee_config(&self, payout_script: ScriptBuf) -> PayeeConfig {
        let p = &self.policy;
        PayeeConfig {
            network: self.network,
            policy: PayeePolicy {
                accept_v1: p.accept_v1,
                accept_v2: p.accept_v2,
                min_channel_value: p.min_channel_value,
                max_channel_value: p.max_channel_value,
                min_payment: p.min_payment,
                min_expiry_blocks: p.min_expiry_blocks,
                max_expiry_blocks: p.max_expiry_blocks,
                expiry_kind: ExpiryKind::Height,
                close_margin_blocks: p.close_margin_blocks,
                payout_script,
            },
            close_fee_rate: self.close_fee_rate,
            close_fee_ceiling: self.close_fee_ceiling,
            close_target_blocks: self.close_target_blocks,
            offer_timeout_secs: self.offer_timeout_secs,
            public_url: self.public_url.clone(),
            endpoint_path: DEFAULT_ENDPOINT_PATH.to_owned(),
            confirmations: self.confirmations,
            unconfirmed_credit: self.unconfirmed_credit,
            final_confirmations: self.final_confirmations,
            clock: crate::Clock::system(),
            max_concurrent_opens: self.max_concurrent_opens,
        }
    }
}

/// The least a channel of `version` must have paid for a settlement at `rate` to pay its fee and
/// leave the payee a non-dust output: built with the real settlement builder, for the largest
/// payout scripts (34 bytes) on both sides.
fn close_cost(version: Version, rate: FeeRate) -> Option<Amount> {
    use bitcoin::secp256k1::{PublicKey, SecretKey, SECP256K1};
    let client = SecretKey::from_slice(&[1; 32]).ok()?;
    let server = SecretKey::from_slice(&[2; 32]).ok()?;
    let script = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::all_zeros());
    let contract = Contract {
        version,
        client_key: PublicKey::from_secret_key(SECP256K1, &client),
        server_key: PublicKey::from_secret_key(SECP256K1, &server),
        expiry: bitcoin::absolute::LockTime::from_height(1_000).ok()?,
        value: Amount::from_sat(1_000_000),
    };
    let contract_tx = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn::default()],
        output: vec![contract.output()],
    };
    let funding = Funding::locate(contract, &contract_tx).ok()?;
    // Half the channel paid: the fee does not depend on the share, only on the sizes.
    let change = Amount::from_sat(500_000);
    let payment = funding.sign_payment(&script, change, &client).ok()?;
    let settlement = funding
        .close(
            &script,
            &payment,
            script.clone(),
            CloseFee::Rate(rate),
            &server,
        )
        .ok()?;
    let outputs = settlement.output.iter().map(|o| o.value).sum::<Amount>();
    let fee = funding.contract.value.checked_sub(outputs)?;
    fee.checked_add(dust_limit(&script))
}

/// Why the key seed file cannot be used.
#[derive(Debug)]
pub enum SeedError {
    /// Reading or creating the file failed.
    Io(PathBuf, std::io::Error),
    /// The file does not hold 64 hex digits.
    Malformed(PathBuf),
    /// No randomness for a new seed.
    Random(String),
    /// The file can be read by other users than its owner (its Unix mode).
    Exposed(PathBuf, u32),
}

impl fmt::Display for SeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(p, e) => write!(f, "key file {}: {e}", p.display()),
            Self::Malformed(p) => write!(f, "key file {} does not hold 64 hex digits", p.display()),
            Self::Random(e) => write!(f, "no randomness for a new key seed: {e}"),
            Self::Exposed(p, mode) => write!(
                f,
                "key file {} has mode {mode:04o}: other users may read it; `chmod 600` it",
                p.display()
            ),
        }
    }
}

impl std::error::Error for SeedError {}

/// Reads the 32-byte seed (hex) at `path`, creating it with fresh randomness and mode 0600 if
/// the file does not exist. A file that its group or others may read is refused (Unix).
pub fn load_or_create_seed(path: &Path) -> Result<[u8; 32], SeedError> {
    let io = |e| SeedError::Io(path.to_owned(), e);
    match std::fs::read_to_string(path) {
        Ok(text) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SeedError::Exposed(path.to_owned(), mode));
                }
            }
            let mut seed = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut seed)
                .map_err(|_| SeedError::Malformed(path.to_owned()))?;
            Ok(seed)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed: [u8; 32] =
                crate::payee::random().map_err(|e| SeedError::Random(e.to_string()))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(io)?;
            file.write_all(format!("{}\n", hex::encode(seed)).as_bytes())
                .map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok(seed)
        }
        Err(e) => Err(io(e)),
    }
}
