//! The extension worker's wallet: one JS object, [`Trickle`], over `trickle-wallet`.
//!
//! Glue only. Storage is the store the worker hands over ([`trickle_js::JsStore`]), chain access is
//! `fetch` to the Esplora URL in the settings, wallet time comes from the chain. Requests are
//! the worker's messages (`extension/src/shared/messages.ts`), answered with plain objects; failures
//! reject with `{ code, message, detail }` ([`errors`]).

mod bench;
mod errors;
mod request;
mod sites;
mod storage;
#[cfg(test)]
mod typescript;

use core::cell::{Cell, RefCell};
use std::rc::Rc;

use bitcoin::{FeeRate, Network};
use futures::lock::Mutex;
use serde::{Deserialize, Serialize};
use trickle_wallet::app::send::send_terms;
use trickle_wallet::app::session::{UnlockFailures, UnlockedSession};
use trickle_wallet::app::sites::SitePayer;
use trickle_wallet::app::view::{BalanceView, SendPreviewView, TxView};
use trickle_wallet::conformance::check_store;
use trickle_wallet::esplora_client::{AsyncClient, Builder};
use trickle_wallet::layout::{self, Scoped};
use trickle_wallet::payer::answering;
use trickle_wallet::settings::Settings;
use trickle_wallet::vault::{self, VaultKey};
use trickle_wallet::{new_phrase, Wallet, WalletError};
use ts_rs::TS;
use wasm_bindgen::prelude::*;

use errors::{failure, Failure};
use request::Request;
use storage::Session;
use trickle_js::{now_ms, rejection, to_js, JsStore, TimeoutSleeper, WalletStore};

type ExtensionWallet = Wallet<Scoped<JsStore>>;
type Esplora = AsyncClient<TimeoutSleeper>;

const SESSION_KEY: &str = "unlocked";
/// Wrong passwords tried, in `chrome.storage.session` (a worker restart does not forget them).
const FAILURES_KEY: &str = "unlockFailures";
/// The share of the browser's storage the store suite runs in; no record of the wallet's is
/// under it.
const STORE_SUITE_PREFIX: &str = "store-suite";
/// Networks a fresh profile starts on.
const DEFAULT_NETWORK: Network = Network::Signet;

#[derive(Clone, Debug, Default, Serialize, TS)]
#[serde(rename_all = "camelCase")]
struct SyncStatus {
    /// A sync is running now.
    syncing: bool,
    /// Chain height at the last successful sync.
    height: Option<u32>,
    /// When the last sync finished (ms since epoch, browser time).
    at: Option<f64>,
    /// Why the last sync failed, if it did.
    error: Option<Failure>,
}

#[derive(Serialize, TS)]
#[serde(rename_all = "camelCase")]
struct State {
    #[ts(type = r#""none" | "locked" | "unlocked""#)]
    wallet: &'static str,
    settings: Settings,
    sync: SyncStatus,
}

#[derive(Serialize, TS)]
#[serde(rename_all = "camelCase")]
struct Overview {
    balance: BalanceView,
    sync: SyncStatus,
    transactions: Vec<TxView>,
}

struct Inner {
    /// Where the records are kept, as the worker chose for its browser.
    store: JsStore,
    settings: RefCell<Settings>,
    /// The unlocked wallet; one operation at a time holds it.
    wallet: Mutex<Option<ExtensionWallet>>,
    /// Mirrors `wallet.is_some()` for answers that must not wait behind a long sync.
    unlocked: Cell<bool>,
    /// When the unlocked wallet locks itself (ms since epoch), as in the session.
    lock_at: Cell<f64>,
    sync: RefCell<SyncStatus>,
    /// The network's payer of sites: its budgets, history and chain view.
    payer: RefCell<Option<Rc<SitePayer<sites::ScopedStore>>>>,
}

/// The wallet object the worker holds.
#[wasm_bindgen]
pub struct Trickle {
    inner: Rc<Inner>,
}

#[wasm_bindgen]
impl Trickle {
    /// Opens the stored settings in `store` (migrating an older storage layout) and, if the
    /// session still holds an unlocked key that has not timed out, the wallet. Call once per
    /// worker start.
    pub async fn load(store: WalletStore) -> Result<Trickle, JsValue> {
        let loaded = Self::load_inner(JsStore::new(store)).await;
        loaded.map_err(|f| rejection(&f))
    }

    /// Answers one request (`{ type, ...params }`) with its payload, or rejects with
    /// `{ code, message, detail }`.
    pub async fn handle(&self, request: JsValue) -> Result<JsValue, JsValue> {
        let inner = self.inner.clone();
        let answer = match serde_wasm_bindgen::from_value::<Request>(request) {
            Ok(request) => inner.handle(request).await,
            Err(e) => Err(failure("bad_request", e.to_string())),
        };
        match answer {
            Ok(payload) => Ok(payload),
            Err(f) => Err(to_js(&f)?),
        }
    }

    /// Records that the user used the wallet (from one of the extension's pages): the
    /// auto-lock counts from now. Nothing else postpones it; pages and sites never do.
    #[wasm_bindgen(js_name = userActivity)]
    pub async fn user_activity(&self) -> Result<(), JsValue> {
        let inner = self.inner.clone();
        inner.user_activity().await.map_err(|f| rejection(&f))
    }

    /// Locks the wallet if it has been idle past its auto-lock time; returns whether it is
    /// locked now. The worker calls this from an alarm.
    #[wasm_bindgen(js_name = lockIfIdle)]
    pub async fn lock_if_idle(&self) -> Result<bool, JsValue> {
        let inner = self.inner.clone();
        inner.lock_if_idle().await.map_err(|f| rejection(&f))
    }

    /// Whether the wallet is unlocked.
    #[wasm_bindgen(js_name = isUnlocked)]
    pub fn is_unlocked(&self) -> bool {
        self.inner.unlocked.get()
    }
}

impl Trickle {
    async fn load_inner(store: JsStore) -> Result<Trickle, Failure> {
        let settings = Settings::load(&store, DEFAULT_NETWORK).await?;
        let inner = Rc::new(Inner {
            store,
            settings: RefCell::new(settings),
            wallet: Mutex::new(None),
            unlocked: Cell::new(false),
            lock_at: Cell::new(0.0),
            sync: RefCell::new(SyncStatus::default()),
            payer: RefCell::new(None),
        });
        inner.resume_session().await?;
        Ok(Trickle { inner })
    }
}

impl Inner {
    fn network(&self) -> Network {
        self.settings.borrow().network
    }

    async fn store(&self) -> Result<Scoped<JsStore>, Failure> {
        Ok(layout::open(self.store.clone(), self.network()).await?)
    }

    fn esplora(&self) -> Result<Esplora, Failure> {
        Builder::new(&self.settings.borrow().esplora_url)
            .build_async_with_sleeper::<TimeoutSleeper>()
            .map_err(|e| failure("chain", format!("esplora client: {e}")))
    }

    async fn handle(&self, request: Request) -> Result<JsValue, Failure> {
        let js = |r: Result<JsValue, JsValue>| {
            r.map_err(|e| failure("internal", format!("cannot encode the answer: {e:?}")))
        };
        // Every use of the wallet first locks it if its time is up: the alarm that also does
        // this runs only once a minute.
        self.lock_if_idle().await?;
        match request {
            Request::State => js(to_js(&self.state().await?)),
            Request::NewPhrase => {
                #[derive(Serialize)]
                struct Phrase {
                    phrase: String,
                }
                js(to_js(&Phrase {
                    phrase: new_phrase()?,
                }))
            }
            Request::Restore {
                phrase,
                password,
                replace,
            } => {
                vault::check_password(&password).map_err(WalletError::from)?;
                let (store, network) = (self.store().await?, self.network());
                // Written under the wallet's lock, as every write of the wallet's.
                let writer = self.wallet.lock().await;
                let wallet = if replace {
                    Wallet::reset_password(store, network, &phrase, &password).await?
                } else {
                    Wallet::restore(store, network, &phrase, &password).await?
                };
                drop(writer);
                // The phrase proves the wallet is the user's: wrong passwords are forgiven.
                Session::remove(FAILURES_KEY).await?;
                self.unlocked_with(wallet).await?;
                js(to_js(&self.state().await?))
            }
            Request::Unlock { password } => {
                let failures = unlock_failures().await?;
                failures.check(now_ms())?;
                let wallet =
                    match Wallet::unlock(self.store().await?, self.network(), &password).await {
                        Ok(wallet) => wallet,
                        Err(e) => {
                            if e.code() == "wrong_password" {
                                let more = serde_json_string(&failures.one_more(now_ms()))?;
                                Session::set(FAILURES_KEY, &more).await?;
                            }
                            return Err(e.into());
                        }
                    };
                Session::remove(FAILURES_KEY).await?;
                self.unlocked_with(wallet).await?;
                js(to_js(&self.state().await?))
            }
            Request::Lock => {
                self.lock().await?;
                js(to_js(&self.state().await?))
            }
            Request::Overview => js(to_js(&self.overview().await?)),
            Request::Sync => {
                self.sync().await?;
                js(to_js(&self.overview().await?))
            }
            Request::ReceiveAddress => {
                #[derive(Serialize)]
                struct Receive {
                    address: String,
                }
                let mut guard = self.wallet.lock().await;
                let address = guard.as_mut().ok_or_else(locked)?.receive_address().await?;
                js(to_js(&Receive {
                    address: address.to_string(),
                }))
            }
            Request::FeeRates => {
                #[derive(Serialize)]
                struct Rates {
                    fast: f64,
                    normal: f64,
                    slow: f64,
                }
                let rates = ExtensionWallet::fee_rates(&self.esplora()?).await?;
                let vb = |r: FeeRate| r.to_sat_per_kwu() as f64 / 250.0;
                js(to_js(&Rates {
                    fast: vb(rates.fast),
                    normal: vb(rates.normal),
                    slow: vb(rates.slow),
                }))
            }
            Request::PreviewSend {
                address,
                amount_sat,
                fee_rate,
            } => {
                let (amount, rate) = send_terms(amount_sat, fee_rate)?;
                let mut guard = self.wallet.lock().await;
                let wallet = guard.as_mut().ok_or_else(locked)?;
                let address = wallet.parse_address(&address)?;
                let preview = wallet.preview_send(&address, amount, rate)?;
                js(to_js(&SendPreviewView {
                    fee_sat: preview.fee.to_sat(),
                    vsize: preview.vsize,
                    total_sat: (amount + preview.fee).to_sat(),
                    fee_rate,
                }))
            }
            Request::Send {
                address,
                amount_sat,
                fee_rate,
            } => {
                let (amount, rate) = send_terms(amount_sat, fee_rate)?;
                let client = self.esplora()?;
                let tip = ExtensionWallet::tip(&client).await?;
                let mut guard = self.wallet.lock().await;
                let wallet = guard.as_mut().ok_or_else(locked)?;
                let address = wallet.parse_address(&address)?;
                let tx = wallet
                    .send(
                        &client,
                        &address,
                        amount,
                        rate,
                        u64::from(tip.median_time_past),
                    )
                    .await?;
                #[derive(Serialize)]
                struct Sent {
                    txid: String,
                }
                js(to_js(&Sent {
                    txid: tx.compute_txid().to_string(),
                }))
            }
            Request::ExportPhrase { password } => {
                #[derive(Serialize)]
                struct Phrase {
                    phrase: String,
                }
                let guard = self.wallet.lock().await;
                let wallet = guard.as_ref().ok_or_else(locked)?;
                js(to_js(&Phrase {
                    phrase: wallet.export_phrase(&password).await?,
                }))
            }
            Request::SaveSettings(settings) => {
                let settings = settings
                    .validated()
                    .map_err(|e| failure("bad_settings", e.to_string()))?;
                let switching = settings.network != self.network();
                if switching {
                    self.lock().await?;
                }
                settings.save(&self.store).await?;
                *self.settings.borrow_mut() = settings;
                *self.sync.borrow_mut() = SyncStatus::default();
                *self.payer.borrow_mut() = None;
                // A new auto-lock time applies from now.
                self.user_activity().await?;
                js(to_js(&self.state().await?))
            }
            Request::Offer {
                url,
                header,
                confirmed,
                sent,
                pay_again,
            } => {
                // Before the wallet is asked, locked or not: a site asking twice is refused.
                answering(sent, pay_again)?;
                js(to_js(&self.offer(&url, &header, confirmed).await?))
            }
            Request::Receipt { url, header, offer } => js(to_js(
                &self
                    .receipt(&url, header.as_deref(), offer.as_deref())
                    .await?,
            )),
            Request::Approve { origin, terms } => js(to_js(&self.approve(&origin, terms).await?)),
            Request::Revoke { origin } => js(to_js(&self.revoke(&origin).await?)),
            Request::Sites => js(to_js(&self.sites().await?)),
            Request::ApprovedOrigins => js(to_js(&self.approved_origins().await?)),
            Request::CloseChannel { site } => {
                #[derive(Serialize)]
                struct Closed {
                    txid: String,
                }
                js(to_js(&Closed {
                    txid: self.close_channel(&site).await?,
                }))
            }
            Request::Duties => js(to_js(&self.duties().await?)),
            Request::PreArm { origin } => {
                #[derive(Serialize)]
                struct Armed {
                    header: Option<String>,
                }
                js(to_js(&Armed {
                    header: self.pre_arm(&origin).await?,
                }))
            }
            Request::Reconcile => {
                #[derive(Serialize)]
                #[serde(rename_all = "camelCase")]
                struct Reconciled {
                    committed_sat: u64,
                }
                js(to_js(&Reconciled {
                    committed_sat: self.reconcile().await?,
                }))
            }
            Request::BenchPayments { count } => js(to_js(&bench::bench_payments(count)?)),
            Request::StoreSuite => {
                #[derive(Serialize)]
                struct Suite {
                    checks: u32,
                }
                let share = Scoped::under(self.store.clone(), STORE_SUITE_PREFIX);
                let checks = check_store(&share)
                    .await
                    .map_err(|e| failure("store_suite", e.0))?;
                js(to_js(&Suite { checks }))
            }
        }
    }

    async fn state(&self) -> Result<State, Failure> {
        let wallet = if self.unlocked.get() {
            "unlocked"
        } else if Wallet::exists(&self.store().await?).await? {
            "locked"
        } else {
            "none"
        };
        Ok(State {
            wallet,
            settings: self.settings.borrow().clone(),
            sync: self.sync.borrow().clone(),
        })
    }

    /// Postpones the auto-lock of an unlocked wallet (see [`Trickle::user_activity`]).
    async fn user_activity(&self) -> Result<(), Failure> {
        if self.lock_if_idle().await? {
            return Ok(());
        }
        let guard = self.wallet.lock().await;
        if let Some(wallet) = guard.as_ref() {
            self.save_session(wallet.session_key()).await?;
        }
        Ok(())
    }

    async fn unlocked_with(&self, wallet: ExtensionWallet) -> Result<(), Failure> {
        self.save_session(wallet.session_key()).await?;
        *self.wallet.lock().await = Some(wallet);
        self.unlocked.set(true);
        Ok(())
    }

    async fn save_session(&self, key: &VaultKey) -> Result<(), Failure> {
        let minutes = self.settings.borrow().auto_lock_minutes;
        let session = UnlockedSession::new(self.network(), key, now_ms(), minutes);
        let text = serde_json_string(&session)?;
        Session::set(SESSION_KEY, &text).await?;
        self.lock_at.set(session.lock_at);
        Ok(())
    }

    /// Reopens the wallet from the session key a previous worker left, unless it timed out.
    async fn resume_session(&self) -> Result<(), Failure> {
        let Some(text) = Session::get(SESSION_KEY).await? else {
            return Ok(());
        };
        let session: Option<UnlockedSession> = serde_json_from(&text);
        let Some((key, lock_at)) =
            session.and_then(|s| Some((s.key(self.network(), now_ms())?, s.lock_at)))
        else {
            return Ok(Session::remove(SESSION_KEY).await?);
        };
        let wallet = Wallet::resume(self.store().await?, self.network(), key?).await?;
        *self.wallet.lock().await = Some(wallet);
        self.lock_at.set(lock_at);
        self.unlocked.set(true);
        Ok(())
    }

    async fn lock(&self) -> Result<(), Failure> {
        Session::remove(SESSION_KEY).await?;
        *self.wallet.lock().await = None;
        self.unlocked.set(false);
        Ok(())
    }

    /// Locks the wallet once its lock time (kept in memory as in the session) has passed.
    async fn lock_if_idle(&self) -> Result<bool, Failure> {
        if !self.unlocked.get() {
            return Ok(true);
        }
        let expired = self.lock_at.get() <= now_ms();
        if expired {
            self.lock().await?;
        }
        Ok(expired)
    }

    async fn overview(&self) -> Result<Overview, Failure> {
        let guard = self.wallet.lock().await;
        let wallet = guard.as_ref().ok_or_else(locked)?;
        Ok(Overview {
            balance: wallet.balance().into(),
            sync: self.sync.borrow().clone(),
            transactions: wallet.transactions().into_iter().map(Into::into).collect(),
        })
    }

    /// Scans the chain for the wallet's coins; the status shows progress and the last error.
    async fn sync(&self) -> Result<(), Failure> {
        if !self.unlocked.get() {
            return Err(locked());
        }
        self.sync.borrow_mut().syncing = true;
        let result = self.sync_now().await;
        let mut status = self.sync.borrow_mut();
        status.syncing = false;
        match result {
            Ok(height) => {
                status.height = Some(height);
                status.at = Some(now_ms());
                status.error = None;
                Ok(())
            }
            Err(f) => {
                status.error = Some(f.clone());
                Err(f)
            }
        }
    }

    async fn sync_now(&self) -> Result<u32, Failure> {
        let client = self.esplora()?;
        let tip = ExtensionWallet::tip(&client).await?;
        let mut guard = self.wallet.lock().await;
        let wallet = guard.as_mut().ok_or_else(locked)?;
        wallet
            .sync(&client, u64::from(tip.median_time_past))
            .await?;
        Ok(tip.height)
    }
}

fn locked() -> Failure {
    failure(
        "locked",
        "the wallet is locked: unlock it with your password",
    )
}

/// Wrong passwords tried since the last unlock, as the session keeps them (a worker restart
/// does not forget them).
async fn unlock_failures() -> Result<UnlockFailures, Failure> {
    let text = Session::get(FAILURES_KEY).await?;
    Ok(text.and_then(|t| serde_json_from(&t)).unwrap_or_default())
}

fn serde_json_string<T: Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| failure("internal", e.to_string()))
}

fn serde_json_from<T: for<'de> Deserialize<'de>>(text: &str) -> Option<T> {
    serde_json::from_str(text).ok()
}
