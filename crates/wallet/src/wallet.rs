//! The on-chain wallet: BIP39 phrase, BIP84 descriptors and coin selection through BDK, chain
//! sync over Esplora, and the secret sealed at rest.

use bdk_esplora::esplora_client::{AsyncClient, Sleeper};
use bdk_esplora::EsploraAsyncExt;
use bdk_wallet::chain::Merge;
use bdk_wallet::coin_selection::{BranchAndBoundCoinSelection, LargestFirstCoinSelection};
use bdk_wallet::keys::bip39::{Language, Mnemonic};
use bdk_wallet::template::Bip84;
use bdk_wallet::{ChangeSet, KeychainKind, LoadError, LoadMismatch, SignOptions};
use bitcoin::bip32::{ChildNumber, DerivationPath, Xpriv};
use bitcoin::secp256k1::{SecretKey, SECP256K1};
use bitcoin::{
    Address, Amount, FeeRate, Network, ScriptBuf, SignedAmount, Transaction, TxOut, Txid,
};
use serde::{Deserialize, Serialize};
use trickle_channel::ChainTip;

use crate::book::Book;
use crate::chain::{ChainSource, FeeRates};
use crate::error::WalletError;
use crate::store::{Commit, Mirror, Store, StoreError, WriteBatch};
use crate::vault::{self, Sealed, VaultKey};

const META_KEY: &str = "wallet/meta";
const SEED_KEY: &str = "wallet/seed";
const BDK_KEY: &str = "wallet/bdk";
/// Storage layout version; bump with a migration when keys or records change shape.
pub const STORAGE_FORMAT: u16 = 1;
/// BIP32 purpose of Trickle's channel keys: `m/1017'/coin'/index'`.
pub const CHANNEL_KEY_PURPOSE: u32 = 1017;
const STOP_GAP: usize = 20;
const PARALLEL_REQUESTS: usize = 4;

/// What the wallet stores in the clear about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    format: u16,
    network: Network,
    /// Channel keys handed out so far.
    channel_keys: u32,
}

/// Confirmed and pending balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Confirmed and spendable.
    pub confirmed: Amount,
    /// Unconfirmed (incoming, or our own change).
    pub pending: Amount,
    /// Coinbase outputs not yet mature.
    pub immature: Amount,
}

/// One transaction of the wallet's, as a list shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxSummary {
    /// Its id.
    pub txid: Txid,
    /// What it did to the wallet's balance.
    pub net: SignedAmount,
    /// The fee, when all its inputs are known (always when the wallet paid it).
    pub fee: Option<Amount>,
    /// The block height it confirmed in.
    pub height: Option<u32>,
    /// Its block's time when confirmed, else when it was first seen (Unix seconds).
    pub time: Option<u64>,
}

/// What a send would cost, before it is signed for real.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendPreview {
    /// The fee.
    pub fee: Amount,
    /// The transaction's virtual size.
    pub vsize: u64,
}

/// A new 12-word recovery phrase from the system's CSPRNG (the browser's on wasm).
pub fn new_phrase() -> Result<String, WalletError> {
    let entropy = vault::random::<16>()?;
    Mnemonic::from_entropy_in(Language::English, &entropy)
        .map(|m| m.to_string())
        .map_err(|e| WalletError::BadPhrase(e.to_string()))
}

/// An unlocked wallet over a store.
pub struct Wallet<S: Store> {
    store: S,
    meta: Meta,
    key: VaultKey,
    master: Xpriv,
    bdk: bdk_wallet::Wallet,
    changes: ChangeSet,
    /// The channels and the increments waiting for their receipt, as last committed.
    pub(crate) book: Book,
    /// Channel keys derived so far (each derivation costs several curve multiplications).
    channel_keys: std::sync::Mutex<std::collections::BTreeMap<u32, SecretKey>>,
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, WalletError> {
    serde_json::to_vec(value).map_err(|e| WalletError::Corrupt(e.to_string()))
}

fn from_json<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, WalletError> {
    serde_json::from_slice(bytes).map_err(|e| WalletError::Corrupt(format!("{what}: {e}")))
}

impl<S: Store> Wallet<S> {
    fn assemble(
        store: S,
        meta: Meta,
        key: VaultKey,
        master: Xpriv,
        bdk: bdk_wallet::Wallet,
        changes: ChangeSet,
    ) -> Self {
        Self {
            store,
            meta,
            key,
            master,
            bdk,
            changes,
            book: Book::default(),
            channel_keys: Default::default(),
        }
    }

    /// Whether `store` holds a wallet.
    pub async fn exists(store: &S) -> Result<bool, WalletError> {
        Ok(store.get(META_KEY).await?.is_some())
    }

    /// Creates a wallet with a new 12-word phrase from the system's CSPRNG, sealed under
    /// `password`. Returns the wallet and the phrase, to show the user once.
    pub async fn create(
        store: S,
        network: Network,
        password: &str,
    ) -> Result<(Self, String), WalletError> {
        let phrase = new_phrase()?;
        let wallet = Self::restore(store, network, &phrase, password).await?;
        Ok((wallet, phrase))
    }

    /// Restores a wallet from its recovery phrase, sealed under `password`.
    pub async fn restore(
        store: S,
        network: Network,
        phrase: &str,
        password: &str,
    ) -> Result<Self, WalletError> {
        if Self::exists(&store).await? {
            return Err(WalletError::AlreadyExists);
        }
        let mnemonic = Mnemonic::parse_in(Language::English, phrase)
            .map_err(|e| WalletError::BadPhrase(e.to_string()))?;
        let master = master_key(&mnemonic, network)?;
        let mut bdk = bdk_wallet::Wallet::create(
            Bip84(master, KeychainKind::External),
            Bip84(master, KeychainKind::Internal),
        )
        .network(network)
        .create_wallet_no_persist()
        .map_err(|e| WalletError::Corrupt(e.to_string()))?;
        let changes = bdk.take_staged().unwrap_or_default();
        let meta = Meta {
            format: STORAGE_FORMAT,
            network,
            channel_keys: 0,
        };
        // The sealed seed and the wallet data first; the meta record last marks it complete.
        let (sealed, key) = vault::seal(mnemonic.to_string().as_bytes(), password)?;
        store.put(SEED_KEY, json(&sealed)?).await?;
        store.put(BDK_KEY, json(&changes)?).await?;
        store.put(META_KEY, json(&meta)?).await?;
        Ok(Self::assemble(store, meta, key, master, bdk, changes))
    }

    /// Opens the stored wallet with `password`.
    pub async fn unlock(store: S, network: Network, password: &str) -> Result<Self, WalletError> {
        let sealed = Self::sealed_seed(&store).await?;
        let key = VaultKey::derive(&sealed, password)?;
        Self::resume(store, network, key).await
    }

    /// Opens the stored wallet with the key a password derived earlier ([`Wallet::session_key`]).
    pub async fn resume(store: S, network: Network, key: VaultKey) -> Result<Self, WalletError> {
        let sealed = Self::sealed_seed(&store).await?;
        let phrase = String::from_utf8(key.open(&sealed)?)
            .map_err(|_| WalletError::Corrupt("seed is not text".into()))?;
        let mnemonic = Mnemonic::parse_in(Language::English, &phrase)
            .map_err(|e| WalletError::Corrupt(e.to_string()))?;
        // The sealed phrase not matching the wallet's own records is damage, not a user error.
        let (meta, master, bdk, changes) = match Self::load(&store, network, &mnemonic).await {
            Err(WalletError::BadPhrase(why)) => return Err(WalletError::Corrupt(why)),
            other => other?,
        };
        Ok(Self::assemble(store, meta, key, master, bdk, changes))
    }

    /// Seals the stored wallet under a new password, given its recovery phrase: the way back
    /// from a forgotten password, keeping its history and channels. Refused when the phrase is
    /// another wallet's, whose storage this would orphan.
    pub async fn reset_password(
        store: S,
        network: Network,
        phrase: &str,
        password: &str,
    ) -> Result<Self, WalletError> {
        let mnemonic = Mnemonic::parse_in(Language::English, phrase)
            .map_err(|e| WalletError::BadPhrase(e.to_string()))?;
        let (meta, master, bdk, changes) = Self::load(&store, network, &mnemonic).await?;
        let (sealed, key) = vault::seal(mnemonic.to_string().as_bytes(), password)?;
        store.put(SEED_KEY, json(&sealed)?).await?;
        Ok(Self::assemble(store, meta, key, master, bdk, changes))
    }

    /// The stored wallet records, checked against the keys `mnemonic` derives.
    async fn load(
        store: &S,
        network: Network,
        mnemonic: &Mnemonic,
    ) -> Result<(Meta, Xpriv, bdk_wallet::Wallet, ChangeSet), WalletError> {
        let meta: Meta = from_json(
            &store.get(META_KEY).await?.ok_or(WalletError::NotFound)?,
            "meta",
        )?;
        if meta.format != STORAGE_FORMAT {
            return Err(WalletError::Corrupt(format!(
                "storage format {} is not {STORAGE_FORMAT}",
                meta.format
            )));
        }
        if meta.network != network {
            return Err(WalletError::WrongNetwork {
                stored: meta.network,
                requested: network,
            });
        }
        let master = master_key(mnemonic, network)?;
        let changes: ChangeSet = from_json(
            &store.get(BDK_KEY).await?.ok_or(WalletError::NotFound)?,
            "wallet data",
        )?;
        let bdk = bdk_wallet::Wallet::load()
            .descriptor(
                KeychainKind::External,
                Some(Bip84(master, KeychainKind::External)),
            )
            .descriptor(
                KeychainKind::Internal,
                Some(Bip84(master, KeychainKind::Internal)),
            )
            .check_network(network)
            .load_wallet_no_persist(changes.clone())
            .map_err(|e| match e {
                LoadError::Mismatch(LoadMismatch::Descriptor { .. }) => WalletError::BadPhrase(
                    "this phrase is not the stored wallet's; only its own phrase can reset \
                     the password"
                        .into(),
                ),
                e => WalletError::Corrupt(e.to_string()),
            })?
            .ok_or(WalletError::NotFound)?;
        Ok((meta, master, bdk, changes))
    }

    async fn sealed_seed(store: &S) -> Result<Sealed, WalletError> {
        from_json(
            &store.get(SEED_KEY).await?.ok_or(WalletError::NotFound)?,
            "seed",
        )
    }

    /// The key that reopens this wallet without the password's slow derivation; keep it only in
    /// memory that dies with the session.
    pub fn session_key(&self) -> &VaultKey {
        &self.key
    }

    /// The recovery phrase, for export; asks for the password again.
    pub async fn export_phrase(&self, password: &str) -> Result<String, WalletError> {
        let sealed = Self::sealed_seed(&self.store).await?;
        String::from_utf8(vault::open(&sealed, password)?)
            .map_err(|_| WalletError::Corrupt("seed is not text".into()))
    }

    /// The wallet's network.
    pub fn network(&self) -> Network {
        self.meta.network
    }

    /// The store, for the channel bookkeeping that shares it.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Stores what BDK staged since the last call.
    async fn persist(&mut self) -> Result<(), WalletError> {
        if let Some(staged) = self.bdk.take_staged() {
            let mut merged = self.changes.clone();
            merged.merge(staged);
            self.store.put(BDK_KEY, json(&merged)?).await?;
            self.changes = merged;
        }
        Ok(())
    }

    /// A receive address not used before (revealed and stored before it is shown).
    pub async fn receive_address(&mut self) -> Result<Address, WalletError> {
        let info = self.bdk.next_unused_address(KeychainKind::External);
        self.persist().await?;
        Ok(info.address)
    }

    /// A fresh script of the wallet's own (for channel change and refunds).
    pub async fn fresh_script(&mut self) -> Result<ScriptBuf, WalletError> {
        let info = self.bdk.reveal_next_address(KeychainKind::Internal);
        self.persist().await?;
        Ok(info.address.script_pubkey())
    }

    /// Confirmed and pending balance from the last sync.
    pub fn balance(&self) -> Balance {
        let b = self.bdk.balance();
        Balance {
            confirmed: b.confirmed,
            pending: b.trusted_pending + b.untrusted_pending,
            immature: b.immature,
        }
    }

    /// The wallet's transactions, unconfirmed first, then newest first.
    pub fn transactions(&self) -> Vec<TxSummary> {
        let mut list: Vec<TxSummary> = self
            .bdk
            .transactions()
            .map(|wtx| {
                let tx = &wtx.tx_node.tx;
                let (sent, received) = self.bdk.sent_and_received(tx);
                let (height, time) = match wtx.chain_position {
                    bdk_wallet::chain::ChainPosition::Confirmed { anchor, .. } => {
                        (Some(anchor.block_id.height), Some(anchor.confirmation_time))
                    }
                    bdk_wallet::chain::ChainPosition::Unconfirmed { first_seen, .. } => {
                        (None, first_seen)
                    }
                };
                TxSummary {
                    txid: wtx.tx_node.txid,
                    net: received.to_signed().unwrap_or(SignedAmount::MAX)
                        - sent.to_signed().unwrap_or(SignedAmount::MAX),
                    fee: self.bdk.calculate_fee(tx).ok(),
                    height,
                    time,
                }
            })
            .collect();
        list.sort_by_key(|t| (core::cmp::Reverse(t.height.unwrap_or(u32::MAX)), t.txid));
        list
    }

    /// Parses `text` as an address of the wallet's network.
    pub fn parse_address(&self, text: &str) -> Result<Address, WalletError> {
        text.trim()
            .parse::<Address<_>>()
            .map_err(|e| WalletError::BadAddress(e.to_string()))?
            .require_network(self.meta.network)
            .map_err(|e| WalletError::BadAddress(e.to_string()))
    }

    /// The fee and size of sending `amount` to `address`, without recording anything.
    pub fn preview_send(
        &mut self,
        address: &Address,
        amount: Amount,
        fee_rate: FeeRate,
    ) -> Result<SendPreview, WalletError> {
        self.preview(
            vec![TxOut {
                value: amount,
                script_pubkey: address.script_pubkey(),
            }],
            fee_rate,
        )
    }

    /// The fee and size of a transaction paying `outputs`, without recording anything.
    pub fn preview(
        &mut self,
        outputs: Vec<TxOut>,
        fee_rate: FeeRate,
    ) -> Result<SendPreview, WalletError> {
        let (tx, fee) = self.sign_new(outputs, fee_rate)?;
        Ok(SendPreview {
            fee,
            vsize: tx.vsize() as u64,
        })
    }

    /// Fee rates from the chain source's estimates (at least 1 sat/vB).
    pub async fn fee_rates<C: ChainSource>(chain: &C) -> Result<FeeRates, WalletError> {
        chain.fee_rates().await
    }

    /// The fee rate a new channel's contract pays unless the user sets one: the chain
    /// source's estimate for about 6 blocks ([`FeeRates::normal`]), for the extension and the
    /// command-line payer alike. A contract below the mempool's minimum never opens, and the
    /// channel's expiry leaves room for a few blocks of wait.
    pub async fn contract_fee_rate<C: ChainSource>(chain: &C) -> Result<FeeRate, WalletError> {
        Ok(chain.fee_rates().await?.normal)
    }

    /// The chain tip: height and median-time-past.
    pub async fn tip<C: ChainSource>(chain: &C) -> Result<ChainTip, WalletError> {
        chain.tip().await
    }

    /// Scans the chain for the wallet's transactions (a full scan the first time, then a
    /// sync of revealed scripts) and stores the result. `now` is the current Unix time from a
    /// source the caller trusts (the chain, or JS time in the browser).
    pub async fn sync<Z: Sleeper>(
        &mut self,
        client: &AsyncClient<Z>,
        now: u64,
    ) -> Result<(), WalletError>
    where
        AsyncClient<Z>: EsploraAsyncExt,
    {
        let scanned = self.bdk.latest_checkpoint().height() > 0;
        if scanned {
            let request = self.bdk.start_sync_with_revealed_spks_at(now);
            let update = client.sync(request, PARALLEL_REQUESTS).await?;
            self.bdk
                .apply_update(update)
                .map_err(|e| WalletError::Chain(e.to_string()))?;
        } else {
            let request = self.bdk.start_full_scan_at(now);
            let update = client
                .full_scan(request, STOP_GAP, PARALLEL_REQUESTS)
                .await?;
            self.bdk
                .apply_update(update)
                .map_err(|e| WalletError::Chain(e.to_string()))?;
        }
        self.persist().await
    }

    /// Builds and signs a transaction paying `outputs` from the wallet's coins (BDK's coin
    /// selection, change back to the wallet), records it as pending, and returns it. The caller
    /// broadcasts it.
    pub async fn build_and_sign(
        &mut self,
        outputs: Vec<TxOut>,
        fee_rate: FeeRate,
        now: u64,
    ) -> Result<Transaction, WalletError> {
        let (tx, _) = self.sign_new(outputs, fee_rate)?;
        // Record it before anyone sees it, so its coins are never selected twice.
        self.bdk.apply_unconfirmed_txs([(tx.clone(), now)]);
        self.persist().await?;
        Ok(tx)
    }

    /// Builds and signs a transaction paying `outputs` at `fee_rate` or more; records nothing.
    /// Returns it and its fee.
    fn sign_new(
        &mut self,
        outputs: Vec<TxOut>,
        fee_rate: FeeRate,
    ) -> Result<(Transaction, Amount), WalletError> {
        let (mut tx, mut fee) = self.sign_with_fee(outputs.clone(), |b| {
            b.fee_rate(fee_rate);
        })?;
        // BDK pays the rate on the weight it estimates; a node asks it of the signed
        // transaction's whole virtual bytes (a signature longer than estimated, the last vbyte
        // rounded up), and refuses one short of its minimum rate. Short of that: built again,
        // paying what the signed size asks (twice at most, should the selection change).
        for _ in 0..2 {
            let needed = fee_rate
                .fee_vb(tx.vsize() as u64)
                .ok_or_else(|| WalletError::CannotFund("fee out of range".into()))?;
            if fee >= needed {
                break;
            }
            (tx, fee) = self.sign_with_fee(outputs.clone(), |b| {
                b.fee_absolute(needed);
            })?;
        }
        Ok((tx, fee))
    }

    /// Builds and signs a transaction paying `outputs` at the fee `set` sets on the builder;
    /// records nothing. Returns it and its fee.
    fn sign_with_fee(
        &mut self,
        outputs: Vec<TxOut>,
        set: impl FnOnce(
            &mut bdk_wallet::TxBuilder<'_, BranchAndBoundCoinSelection<LargestFirstCoinSelection>>,
        ),
    ) -> Result<(Transaction, Amount), WalletError> {
        // Deterministic selection (branch and bound, else largest first), so that a previewed
        // fee is the fee the real send pays.
        let mut builder = self
            .bdk
            .build_tx()
            .coin_selection(BranchAndBoundCoinSelection::<LargestFirstCoinSelection>::default());
        for out in outputs {
            builder.add_recipient(out.script_pubkey, out.value);
        }
        set(&mut builder);
        let mut psbt = builder.finish()?;
        psbt.sign(&self.master, SECP256K1).map_err(|(_, errors)| {
            WalletError::CannotFund(format!("signing failed: {errors:?}"))
        })?;
        let finalized = self
            .bdk
            .finalize_psbt(&mut psbt, SignOptions::default())
            .map_err(|e| WalletError::CannotFund(e.to_string()))?;
        if !finalized {
            return Err(WalletError::CannotFund("could not finalize".into()));
        }
        let fee = psbt
            .fee()
            .map_err(|e| WalletError::CannotFund(e.to_string()))?;
        let tx = psbt
            .extract_tx()
            .map_err(|e| WalletError::CannotFund(e.to_string()))?;
        Ok((tx, fee))
    }

    /// Forgets a transaction that was built but never left the wallet, so its coins can be
    /// selected again.
    pub async fn forget_tx(&mut self, tx: &Transaction, now: u64) -> Result<(), WalletError> {
        self.bdk.apply_evicted_txs([(tx.compute_txid(), now)]);
        self.persist().await
    }

    /// Sends `amount` to `address` (a withdrawal): built, signed, stored, then broadcast.
    pub async fn send<C: ChainSource>(
        &mut self,
        chain: &C,
        address: &Address,
        amount: Amount,
        fee_rate: FeeRate,
        now: u64,
    ) -> Result<Transaction, WalletError> {
        let tx = self
            .build_and_sign(
                vec![TxOut {
                    value: amount,
                    script_pubkey: address.script_pubkey(),
                }],
                fee_rate,
                now,
            )
            .await?;
        chain.broadcast(&tx).await?;
        Ok(tx)
    }

    /// A new channel key, `m/1017'/coin'/index'`; the counter is stored before the key is
    /// used, so no key is ever handed out twice.
    pub async fn next_channel_key(&mut self) -> Result<(u32, SecretKey), WalletError> {
        let index = self.meta.channel_keys;
        let mut meta = self.meta.clone();
        meta.channel_keys = index + 1;
        self.store.put(META_KEY, json(&meta)?).await?;
        self.meta = meta;
        Ok((index, self.channel_key(index)?))
    }

    /// The channel key at `index`.
    pub fn channel_key(&self, index: u32) -> Result<SecretKey, WalletError> {
        // A poisoned lock still holds keys that were derived correctly.
        let mut keys = self.channel_keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = keys.get(&index) {
            return Ok(*key);
        }
        let key = self.derive_channel_key(index)?;
        keys.insert(index, key);
        Ok(key)
    }

    fn derive_channel_key(&self, index: u32) -> Result<SecretKey, WalletError> {
        let coin = match self.meta.network {
            Network::Bitcoin => 0,
            _ => 1,
        };
        let path: DerivationPath = [CHANNEL_KEY_PURPOSE, coin, index]
            .into_iter()
            .map(ChildNumber::from_hardened_idx)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| WalletError::Corrupt(e.to_string()))?
            .into();
        self.master
            .derive_priv(SECP256K1, &path)
            .map(|k| k.private_key)
            .map_err(|e| WalletError::Corrupt(e.to_string()))
    }
}

impl<S: Store> Mirror for Wallet<S> {
    fn committed(&self, batch: &WriteBatch) {
        self.book.committed(batch);
    }
}

/// A staged change of the wallet's channels (and of its outstanding increments) is committed to
/// the wallet's store, then to the wallet's memory. One that changes a budget is refused, and
/// nothing written: the budgets' memory must learn of it too (commit it to
/// `(&wallet, &budgets)`).
impl<S: Store> Commit for Wallet<S> {
    async fn commit_batch(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch
            .with_prefix(crate::budget::BUDGET_PREFIX)
            .next()
            .is_some()
        {
            return Err(StoreError(
                "a budget change is committed with the budgets, not the wallet alone".into(),
            ));
        }
        self.store.write(batch.clone()).await?;
        self.committed(&batch);
        Ok(())
    }
}

fn master_key(mnemonic: &Mnemonic, network: Network) -> Result<Xpriv, WalletError> {
    Xpriv::new_master(network, &mnemonic.to_seed(""))
        .map_err(|e| WalletError::Corrupt(e.to_string()))
}
