//! The payee: keys, policy, store and chain, shared by the channel endpoint, the payment layer,
//! the chain duties and the operator view.

use core::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::secp256k1::{PublicKey, SecretKey, SECP256K1};
use bitcoin::{Amount, CompressedPublicKey, FeeRate, Network, ScriptBuf};
use trickle_channel::auth::PaymentKey;
use trickle_channel::credit::NonceKey;
use trickle_channel::http::mpp::ChallengeKey;
use trickle_channel::{ChainTip, PayeeContext, PayeePolicy};

use crate::chain::{Chain, ChainError};
use crate::store::{ChannelStore, StoredChannel};

/// Where the channel endpoint is mounted unless configured otherwise.
pub const DEFAULT_ENDPOINT_PATH: &str = "/.well-known/trickle/channel";

/// Unix seconds: the age of offers and pending sessions (channel logic runs on chain time).
/// The system clock unless a test sets another.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        }))
    }

    /// A clock reading `now`.
    pub fn new(now: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// Unix seconds now.
    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// How the payee presents itself and what it accepts.
#[derive(Clone, Debug)]
pub struct PayeeConfig {
    /// The Bitcoin network channels live on.
    pub network: Network,
    /// Channel rules (values, expiry, close margin, payout script).
    pub policy: PayeePolicy,
    /// The least a settlement pays per vbyte; the chain source's estimate for
    /// `close_target_blocks` when that is higher.
    pub close_fee_rate: FeeRate,
    /// The most a settlement pays per vbyte, until its last resort before the channel's expiry
    /// (`trickle_channel::LAST_RESORT_BLOCKS`), when it pays the whole share.
    pub close_fee_ceiling: FeeRate,
    /// Blocks within which a settlement should confirm, for the fee estimate it asks for.
    pub close_target_blocks: u32,
    /// How long an offer's nonce, and a pending session, stay valid (`maxTimeoutSeconds`): a
    /// charged nonce is a free reload for this long after it was issued.
    pub offer_timeout_secs: u32,
    /// The site's public origin (`https://example.com`), used in offers and to bind nonces;
    /// `None` takes `http://` and the request's `Host` header.
    pub public_url: Option<String>,
    /// Path of the channel endpoint.
    pub endpoint_path: String,
    /// Confirmations a contract needs before its channel is served beyond
    /// `unconfirmed_credit`; 0 serves unconfirmed contracts in full (trusting the mempool).
    pub confirmations: u32,
    /// What one channel may consume while its contract has fewer than `confirmations`: the
    /// most a client who double-spends the contract's inputs takes for free.
    pub unconfirmed_credit: Amount,
    /// How deep a transaction spending a contract must be before the channel is recorded
    /// closed and no longer watched (and a contract before it is no longer asked about): a
    /// reorganisation up to this deep is followed, the settlement rebroadcast.
    pub final_confirmations: u32,
    /// What ages offers and pending sessions.
    pub clock: Clock,
    /// How many `POST {endpoint}/open` are handled at once; more are answered 503 at once.
    /// Opening needs no payment: a flood must not queue up at the store ahead of paid requests.
    pub max_concurrent_opens: usize,
}

impl PayeeConfig {
    /// A configuration with the defaults: settlements at the estimate for 6 blocks, between
    /// 2 and 500 sat/vB, 300 s offers, the endpoint at
    /// [`DEFAULT_ENDPOINT_PATH`], origin from the `Host` header, one confirmation before a
    /// channel consumes more than the policy's `min_payment`.
    pub fn new(network: Network, policy: PayeePolicy) -> Self {
        Self {
            network,
            unconfirmed_credit: policy.min_payment,
            confirmations: 1,
            final_confirmations: default_final_confirmations(network),
            policy,
            close_fee_rate: FeeRate::from_sat_per_vb_u32(2),
            close_fee_ceiling: FeeRate::from_sat_per_vb_u32(500),
            close_target_blocks: 6,
            offer_timeout_secs: 300,
            public_url: None,
            endpoint_path: DEFAULT_ENDPOINT_PATH.to_owned(),
            clock: Clock::system(),
            max_concurrent_opens: 16,
        }
    }
}

/// Six blocks on the public networks; one on regtest, where blocks come only when asked for.
pub fn default_final_confirmations(network: Network) -> u32 {
    if network == Network::Regtest {
        1
    } else {
        6
    }
}

/// The payee's secrets, derived from one 32-byte seed.
#[derive(Clone)]
pub struct Keys {
    channel: SecretKey,
    channel_public: PublicKey,
    payout: SecretKey,
    nonce: NonceKey,
    challenge: ChallengeKey,
}

/// A seed that derives no valid key (probability about 2^-128 per key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidSeed;

impl fmt::Display for InvalidSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("seed derives an invalid key")
    }
}

impl std::error::Error for InvalidSeed {}

fn derive(seed: &[u8; 32], tag: &str) -> [u8; 32] {
    let mut engine = sha256::Hash::engine();
    engine.input(tag.as_bytes());
    engine.input(seed);
    sha256::Hash::from_engine(engine).to_byte_array()
}

impl Keys {
    /// The channel key, payout key, nonce key and MPP challenge key of `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, InvalidSeed> {
        let key = |tag| SecretKey::from_slice(&derive(seed, tag)).map_err(|_| InvalidSeed);
        let channel = key("trickle/payee/channel-key")?;
        Ok(Self {
            channel,
            channel_public: PublicKey::from_secret_key(SECP256K1, &channel),
            payout: key("trickle/payee/payout-key")?,
            nonce: NonceKey::new(derive(seed, "trickle/payee/nonce-key")),
            challenge: ChallengeKey::new(derive(seed, "trickle/payee/mpp-challenge-key")),
        })
    }

    /// The public channel key (`payTo` in offers).
    pub fn channel_public_key(&self) -> PublicKey {
        self.channel_public
    }

    /// A P2WPKH script of the seed's payout key, for operators who name no payout address.
    pub fn default_payout_script(&self) -> ScriptBuf {
        let pk = PublicKey::from_secret_key(SECP256K1, &self.payout);
        ScriptBuf::new_p2wpkh(&CompressedPublicKey(pk).wpubkey_hash())
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub(crate) struct Metrics {
    pub paid_requests: AtomicU64,
    pub reloads: AtomicU64,
    pub sat_consumed: AtomicU64,
    pub channels_opened: AtomicU64,
    pub opens_refused: AtomicU64,
    pub settlements_broadcast: AtomicU64,
    pub store_failures: AtomicU64,
    pub refusals: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    pub fn refused(&self, reason: &'static str) {
        if let Ok(mut m) = self.refusals.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }
}

pub(crate) struct Inner {
    pub config: PayeeConfig,
    pub keys: Keys,
    pub store: Arc<dyn ChannelStore>,
    pub chain: Arc<dyn Chain>,
    pub tip: RwLock<ChainTip>,
    /// The chain source's fee estimate for settlements, read by the chain duties.
    pub fee_estimate: RwLock<Option<FeeRate>>,
    pub metrics: Metrics,
    /// Each contract seen confirmed: its block's height, and whether it was then final.
    pub confirmed: Mutex<std::collections::HashMap<bitcoin::Txid, crate::watcher::Confirmed>>,
    /// Each close the chain duties last found at risk, by contract txid.
    pub at_risk: Mutex<std::collections::HashMap<bitcoin::Txid, crate::watcher::CloseAtRisk>>,
    /// Permits for `POST {endpoint}/open` in progress.
    pub opening: tokio::sync::Semaphore,
    /// Each open channel as this instance last stored it, so that a paid request needs no read.
    pub hot: Mutex<std::collections::HashMap<bitcoin::Txid, Arc<StoredChannel>>>,
    /// Each stored channel's payment key, derived once (an ECDH) on its first paid request.
    pub payment_keys: Mutex<std::collections::HashMap<bitcoin::Txid, PaymentKey>>,
}

/// The payee server's core; cheap to clone (all clones share one state).
#[derive(Clone)]
pub struct Payee(pub(crate) Arc<Inner>);

impl Payee {
    /// Starts a payee: reads the chain tip once so that the first offers use chain time.
    pub async fn start(
        config: PayeeConfig,
        keys: Keys,
        store: Arc<dyn ChannelStore>,
        chain: Arc<dyn Chain>,
    ) -> Result<Self, ChainError> {
        let tip = chain.tip().await?;
        Ok(Self(Arc::new(Inner {
            opening: tokio::sync::Semaphore::new(config.max_concurrent_opens),
            config,
            keys,
            store,
            chain,
            tip: RwLock::new(tip),
            fee_estimate: RwLock::new(None),
            metrics: Metrics::default(),
            confirmed: Mutex::default(),
            at_risk: Mutex::default(),
            hot: Mutex::default(),
            payment_keys: Mutex::default(),
        })))
    }

    /// The configuration.
    pub fn config(&self) -> &PayeeConfig {
        &self.0.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ChannelStore> {
        &self.0.store
    }

    /// The public channel key.
    pub fn server_key(&self) -> PublicKey {
        self.0.keys.channel_public_key()
    }

    /// Unix seconds now, by the configured clock.
    pub(crate) fn now(&self) -> u64 {
        self.0.config.clock.now()
    }

    /// The chain tip as last read.
    pub fn tip(&self) -> ChainTip {
        // A poisoned lock still holds a tip that was valid when written.
        *self.0.tip.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_tip(&self, tip: ChainTip) {
        *self.0.tip.write().unwrap_or_else(|e| e.into_inner()) = tip;
    }

    pub(crate) fn nonce_key(&self) -> &NonceKey {
        &self.0.keys.nonce
    }

    pub(crate) fn challenge_key(&self) -> &ChallengeKey {
        &self.0.keys.challenge
    }

    pub(crate) fn chain(&self) -> &Arc<dyn Chain> {
        &self.0.chain
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The channel as this instance last stored it, if it remembers it. It may be stale when
    /// other instances share the database: a write naming its revision is then refused.
    pub(crate) fn hot_channel(&self, txid: &bitcoin::Txid) -> Option<Arc<StoredChannel>> {
        self.0.hot.lock().ok()?.get(txid).cloned()
    }

    pub(crate) fn remember_hot_channel(&self, txid: bitcoin::Txid, stored: StoredChannel) {
        if let Ok(mut hot) = self.0.hot.lock() {
            hot.insert(txid, Arc::new(stored));
        }
    }

    /// The payment key of the channel `contract` with `client_key`, remembered after the first
    /// derivation.
    pub(crate) fn payment_key(
        &self,
        contract: &bitcoin::Txid,
        client_key: &PublicKey,
    ) -> PaymentKey {
        // A poisoned lock still holds keys that were derived correctly.
        let mut keys = self
            .0
            .payment_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        keys.entry(*contract)
            .or_insert_with(|| PaymentKey::derive(&self.0.keys.channel, client_key, contract))
            .clone()
    }

    pub(crate) fn forget_hot_channel(&self, txid: &bitcoin::Txid) {
        if let Ok(mut hot) = self.0.hot.lock() {
            hot.remove(txid);
        }
    }

    /// Runs `f` with a transition context at the current tip.
    pub(crate) fn with_ctx<R>(&self, f: impl FnOnce(&PayeeContext) -> R) -> R {
        f(&PayeeContext {
            policy: &self.0.config.policy,
            key: &self.0.keys.channel,
            tip: self.tip(),
            close_fee_rate: self.close_fee_rate(),
            close_fee_ceiling: self.0.config.close_fee_ceiling,
        })
    }

    /// What a settlement built now pays per vbyte, before any bump for its deadline: the last
    /// estimate for `close_target_blocks` the chain duties read, within the floor and ceiling.
    pub fn close_fee_rate(&self) -> FeeRate {
        let config = &self.0.config;
        let estimate = self.0.fee_estimate.read().map_or(None, |e| *e);
        estimate.unwrap_or(config.close_fee_rate).clamp(
            config.close_fee_rate,
            config.close_fee_ceiling.max(config.close_fee_rate),
        )
    }

    pub(crate) fn set_fee_estimate(&self, estimate: Option<FeeRate>) {
        if let Ok(mut e) = self.0.fee_estimate.write() {
            *e = estimate;
        }
    }
}

/// Fresh random bytes from the operating system.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out)?;
    Ok(out)
}

/// How many times a write that lost a race on one channel is retried.
pub(crate) const MAX_ATTEMPTS: usize = 8;
