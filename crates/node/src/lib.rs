//! The wallet's process payer ([`trickle_wallet::payer::Payer`], the one `trickle fetch` runs) as
//! one JS object for Node, [`Agent`]: `packages/x402-client` registers it with x402's client.
//!
//! Glue only: the rules are the wallet's. Records are in the store the host hands over
//! ([`trickle_js::JsStore`], a sealed file in `packages/x402-client/store.js`), the channel
//! endpoints and the chain are reached with `fetch`. Failures reject with `{ code, message,
//! detail }` ([`trickle_wallet::app::failure`]).

use std::rc::Rc;

use bitcoin::{Amount, FeeRate, Network};
use futures::lock::Mutex;
use serde::{Deserialize, Serialize};
use trickle_channel::http::mpp::AUTHORIZATION;
use trickle_channel::http::PAYMENT_SIGNATURE;
use trickle_js::{now_ms, rejection, to_js, FetchTransport, JsStore, TimeoutSleeper, WalletStore};
use trickle_wallet::app::chain_view::ChainView;
use trickle_wallet::app::failure::{failure, Failure};
use trickle_wallet::app::view::{BalanceView, ChannelView, DutiesView};
use trickle_wallet::approval::RunCaps;
use trickle_wallet::conformance::check_store;
use trickle_wallet::esplora_client::{AsyncClient, Builder};
use trickle_wallet::layout::{self, Scoped};
use trickle_wallet::offer::OfferPolicy;
use trickle_wallet::payer::{Framing, Next, Payer, PaymentHeader, Response, Sent};
use trickle_wallet::site::{PayContext, Progress};
use trickle_wallet::{vault, Wallet, WalletError};
use wasm_bindgen::prelude::*;

type Store = Scoped<JsStore>;
type Esplora = AsyncClient<TimeoutSleeper>;

/// How an [`Agent`] opens its wallet and pays.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Options {
    /// `regtest`, `signet`, `testnet` or `bitcoin`.
    network: Network,
    /// The Esplora REST API's base URL.
    esplora: String,
    password: String,
    /// Refuse to pay more than this per request, sat.
    max_price: u64,
    /// Lock at most this much in a new channel with a site, sat.
    budget: u64,
    /// The contracts' fee rate, sat/vB; by default the chain's estimate for about 6 blocks.
    #[serde(default)]
    fee_rate: Option<f64>,
    /// `"x402"` (the default) or `"mpp"`.
    #[serde(default)]
    framing: Framing,
}

/// What to do after a response, for JS.
#[derive(Serialize)]
#[serde(tag = "next", rename_all = "camelCase")]
enum NextView {
    /// The response is the answer.
    Done,
    /// Send the request again with the payment `header` in the header `name`; it then carries
    /// `sent`.
    Pay {
        name: &'static str,
        header: String,
        sent: Sent,
    },
}

/// A payment for JS: the header `name` and its value `header`.
#[derive(Serialize)]
struct PaymentView {
    name: &'static str,
    header: String,
}

struct Inner {
    network: Network,
    esplora: Esplora,
    chain: ChainView,
    /// The contracts' fee rate when the options set one.
    fee_rate: Option<FeeRate>,
    /// Told of the steps that take a while; `progress(text)`.
    progress: Option<js_sys::Function>,
    /// One operation at a time holds the payer.
    payer: Mutex<Payer<Store, RunCaps>>,
}

/// An unlocked wallet paying sites within its caps, for a process's life.
#[wasm_bindgen]
pub struct Agent {
    inner: Rc<Inner>,
}

/// `f`'s failure as the JS rejection `{ code, message, detail }`.
async fn run<T>(f: impl core::future::Future<Output = Result<T, Failure>>) -> Result<T, JsValue> {
    f.await.map_err(|f| rejection(&f))
}

fn network(name: &str) -> Result<Network, Failure> {
    name.parse()
        .map_err(|_| failure("bad_request", format!("{name:?} is not a Bitcoin network")))
}

fn esplora(url: &str) -> Result<Esplora, Failure> {
    Builder::new(url)
        .build_async_with_sleeper::<TimeoutSleeper>()
        .map_err(|e| failure("chain", format!("esplora client: {e}")))
}

async fn store(store: WalletStore, network: Network) -> Result<Store, Failure> {
    Ok(layout::open(JsStore::new(store), network).await?)
}

#[wasm_bindgen]
impl Agent {
    /// Creates a wallet in `store` sealed with `password`; returns its recovery phrase, shown
    /// once.
    pub async fn create(
        records: WalletStore,
        network_name: String,
        password: String,
    ) -> Result<String, JsValue> {
        run(async {
            vault::check_password(&password).map_err(WalletError::from)?;
            let network = network(&network_name)?;
            let (_, phrase) =
                Wallet::create(store(records, network).await?, network, &password).await?;
            Ok(phrase)
        })
        .await
    }

    /// Restores the wallet of `phrase` into `store`, sealed with `password`.
    pub async fn restore(
        records: WalletStore,
        network_name: String,
        phrase: String,
        password: String,
    ) -> Result<(), JsValue> {
        run(async {
            vault::check_password(&password).map_err(WalletError::from)?;
            let network = network(&network_name)?;
            Wallet::restore(store(records, network).await?, network, &phrase, &password).await?;
            Ok(())
        })
        .await
    }

    /// Runs the wallet's store suite (`trickle_wallet::conformance`) over an empty `store`;
    /// resolves to the number of checks that held. For a host's own store, before a wallet
    /// trusts it.
    #[wasm_bindgen(js_name = checkStore)]
    pub async fn check_store(records: WalletStore) -> Result<u32, JsValue> {
        run(async {
            check_store(&JsStore::new(records))
                .await
                .map_err(|e| failure("store_suite", e.0))
        })
        .await
    }

    /// Unlocks the wallet in `store` and syncs it with the chain (an opening funds a contract
    /// from its coins). `options`: `{ network, esplora, password, maxPrice, budget, feeRate?,
    /// progress? }`, `progress(text)` being told of openings.
    pub async fn open(records: WalletStore, options: JsValue) -> Result<Agent, JsValue> {
        let progress = js_sys::Reflect::get(&options, &"progress".into())
            .ok()
            .and_then(|p| p.dyn_into::<js_sys::Function>().ok());
        run(async {
            let options = js_sys::Object::assign(&js_sys::Object::new(), &options.into());
            let _ = js_sys::Reflect::delete_property(&options, &"progress".into());
            let options: Options = serde_wasm_bindgen::from_value(options.into())
                .map_err(|e| failure("bad_request", e.to_string()))?;
            let esplora = esplora(&options.esplora)?;
            let fee_rate = options
                .fee_rate
                .map(trickle_wallet::app::send::fee_rate)
                .transpose()?;
            let caps = RunCaps::new(
                Amount::from_sat(options.max_price),
                Amount::from_sat(options.budget),
                (now_ms() / 1000.0) as u64,
            )?;
            let store = store(records, options.network).await?;
            let mut wallet = Wallet::unlock(store, options.network, &options.password).await?;
            wallet.sync(&esplora, (now_ms() / 1000.0) as u64).await?;
            Ok(Agent {
                inner: Rc::new(Inner {
                    network: options.network,
                    esplora,
                    chain: ChainView::new(),
                    fee_rate,
                    progress,
                    payer: Mutex::new(Payer::new(wallet, caps).in_framing(options.framing)),
                }),
            })
        })
        .await
    }

    /// The wallet's network as x402 names it (CAIP-2, `bip122:` and its genesis hash).
    #[wasm_bindgen(getter)]
    pub fn network(&self) -> String {
        trickle_channel::http::caip2(self.inner.network)
    }

    /// A fresh receive address of the wallet.
    pub async fn address(&self) -> Result<String, JsValue> {
        let inner = self.inner.clone();
        run(async move {
            let mut payer = inner.payer.lock().await;
            Ok(payer.wallet().receive_address().await?.to_string())
        })
        .await
    }

    /// Syncs with the chain; the balance then: `{ confirmed, pending, immature }` in sat.
    pub async fn balance(&self) -> Result<JsValue, JsValue> {
        let inner = self.inner.clone();
        run(async move {
            let mut payer = inner.payer.lock().await;
            payer.flush().await?;
            let wallet = payer.wallet();
            wallet
                .sync(&inner.esplora, (now_ms() / 1000.0) as u64)
                .await?;
            to_js(&BalanceView::from(wallet.balance())).map_err(js_failure)
        })
        .await
    }

    /// The payment a request to `url` carries before its site asks, `{ name, header }`: a
    /// reload of a URL paid in this process's life, or a pre-armed `PAYMENT-SIGNATURE`
    /// (x402's framing), stored before it is returned; `undefined` without one.
    pub async fn armed(&self, url: String) -> Result<JsValue, JsValue> {
        let inner = self.inner.clone();
        run(async move {
            let (tip, _) = inner.chain_view().await?;
            let mut payer = inner.payer.lock().await;
            let armed = payer.armed(&url, tip, now()).await?.map(|h| PaymentView {
                name: h.name,
                header: h.value,
            });
            to_js(&armed).map_err(js_failure)
        })
        .await
    }

    /// While a request to `url` is in flight: signs and stores the top-up the next requests to
    /// its site carry.
    pub async fn prepare(&self, url: String) -> Result<(), JsValue> {
        let inner = self.inner.clone();
        run(async move {
            let (tip, _) = inner.chain_view().await?;
            let mut payer = inner.payer.lock().await;
            Ok(payer.prepare(&url, tip, now()).await?)
        })
        .await
    }

    /// Takes the response to a request for `url` that carried `sent` (`"nothing"`, `"armed"`,
    /// `"paid"` or `"paidAgain"`) with the payment `header` in the header `name`, and the
    /// response's payment headers: applies its receipt and answers a 402 the rules pay.
    /// Resolves to `{ next: "done" }` or `{ next: "pay", name, header, sent }`.
    #[wasm_bindgen(js_name = onResponse)]
    #[allow(clippy::too_many_arguments)] // one per header, as JS passes them
    pub async fn on_response(
        &self,
        url: String,
        sent: JsValue,
        name: Option<String>,
        header: Option<String>,
        status: u16,
        payment_required: Option<String>,
        payment_response: Option<String>,
        www_authenticate: Option<String>,
        payment_receipt: Option<String>,
    ) -> Result<JsValue, JsValue> {
        let inner = self.inner.clone();
        run(async move {
            let sent: Sent = serde_wasm_bindgen::from_value(sent)
                .map_err(|e| failure("bad_request", format!("sent: {e}")))?;
            let (tip, fee_rate) = inner.chain_view().await?;
            let policy = OfferPolicy::default();
            let progress = |step: Progress<'_>| {
                if let Some(f) = &inner.progress {
                    let _ = f.call1(&JsValue::NULL, &step.to_string().into());
                }
            };
            let ctx = PayContext {
                transport: &FetchTransport,
                chain: &inner.esplora,
                tip,
                fee_rate,
                network: inner.network,
                policy: &policy,
                now: now(),
                progress: &progress,
            };
            let response = Response {
                status,
                payment_required: payment_required.as_deref(),
                payment_response: payment_response.as_deref(),
                www_authenticate: www_authenticate.as_deref(),
                payment_receipt: payment_receipt.as_deref(),
            };
            let paid_with = match (name.as_deref(), header) {
                (Some(AUTHORIZATION), Some(value)) => Some(PaymentHeader {
                    name: AUTHORIZATION,
                    value,
                }),
                (_, Some(value)) => Some(PaymentHeader {
                    name: PAYMENT_SIGNATURE,
                    value,
                }),
                (_, None) => None,
            };
            let mut payer = inner.payer.lock().await;
            let next = payer
                .on_response(&ctx, &url, (sent, paid_with.as_ref()), response)
                .await?;
            let view = match next {
                Next::Done => NextView::Done,
                Next::Pay { header, sent } => NextView::Pay {
                    name: header.name,
                    header: header.value,
                    sent,
                },
            };
            to_js(&view).map_err(js_failure)
        })
        .await
    }

    /// Stores the receipts applied since the last write. Call before the process exits.
    pub async fn flush(&self) -> Result<(), JsValue> {
        let inner = self.inner.clone();
        run(async move { Ok(inner.payer.lock().await.flush().await?) }).await
    }

    /// The wallet's channels, as `trickle channels` lists them.
    pub async fn channels(&self) -> Result<JsValue, JsValue> {
        let inner = self.inner.clone();
        run(async move {
            let mut payer = inner.payer.lock().await;
            payer.flush().await?;
            let views: Vec<ChannelView> = payer
                .wallet()
                .channels()
                .await?
                .iter()
                .map(ChannelView::from)
                .collect();
            to_js(&views).map_err(js_failure)
        })
        .await
    }

    /// Asks the payee of `site` (an origin, or a host with one channel) to close its channel;
    /// resolves to the settlement's txid.
    pub async fn close(&self, site: String) -> Result<String, JsValue> {
        let inner = self.inner.clone();
        run(async move {
            let (tip, _) = inner.chain_view().await?;
            let mut payer = inner.payer.lock().await;
            payer.flush().await?;
            let wallet = payer.wallet();
            let record = wallet.channel_to_close(&site).await?;
            let settlement = wallet
                .close_channel(&FetchTransport, &record.site, &record.payee_key, tip)
                .await?;
            Ok(settlement.compute_txid().to_string())
        })
        .await
    }

    /// Every channel duty (closes near expiry, settlements checked, refunds of expired
    /// channels), as `trickle duties` runs them.
    pub async fn duties(&self) -> Result<JsValue, JsValue> {
        let inner = self.inner.clone();
        run(async move {
            let mut payer = inner.payer.lock().await;
            payer.flush().await?;
            let depth = trickle_wallet::final_confirmations(inner.network);
            let done = payer
                .wallet()
                .run_duties(&inner.esplora, &FetchTransport, depth)
                .await?;
            to_js(&DutiesView::from(done)).map_err(js_failure)
        })
        .await
    }
}

impl Inner {
    /// The tip and the contracts' fee rate (the options' rate, if they set one).
    async fn chain_view(&self) -> Result<(trickle_channel::ChainTip, FeeRate), Failure> {
        let (tip, estimate) = self.chain.get(&self.esplora, now_ms()).await?;
        Ok((tip, self.fee_rate.unwrap_or(estimate)))
    }
}

fn now() -> u64 {
    (now_ms() / 1000.0) as u64
}

fn js_failure(e: JsValue) -> Failure {
    failure("internal", trickle_js::describe(e))
}
