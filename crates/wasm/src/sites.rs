//! Paying sites: the worker hands over 402 offers and receipts it sees; budgets, channels and
//! the payment history are answered to the popup.

use bitcoin::{Amount, FeeRate};
use serde::{Deserialize, Serialize};
use trickle_channel::{ChainTip, PayerState};
use trickle_wallet::app::history::{self, Payment};
use trickle_wallet::budget::{site_origin, Budget, BudgetState, Budgets, Period, Terms};
use trickle_wallet::offer::OfferPolicy;
use trickle_wallet::site::{Answer, Ask, PayContext};
use trickle_wallet::store::{Store, WriteBatch};
use trickle_wallet::{final_confirmations, ChannelRecord};
use ts_rs::TS;

use crate::http::FetchTransport;
use crate::{failure, locked, now_ms, ExtensionWallet, Failure, Inner};

/// How long a chain tip and fee rate are reused before they are fetched again.
const CHAIN_VIEW_MS: f64 = 30_000.0;

/// A budget's terms as the pages write them.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TermsView {
    limit_sat: u64,
    period: Period,
    max_price_sat: u64,
    /// Requests priced at or below this are paid without asking; `None`: always ask.
    auto_approve_sat: Option<u64>,
}

impl From<Terms> for TermsView {
    fn from(t: Terms) -> Self {
        Self {
            limit_sat: t.limit.to_sat(),
            period: t.period,
            max_price_sat: t.max_price.to_sat(),
            auto_approve_sat: t.auto_approve.map(Amount::to_sat),
        }
    }
}

impl From<TermsView> for Terms {
    fn from(t: TermsView) -> Self {
        Self {
            limit: Amount::from_sat(t.limit_sat),
            period: t.period,
            max_price: Amount::from_sat(t.max_price_sat),
            auto_approve: t.auto_approve_sat.map(Amount::from_sat),
        }
    }
}

/// What the worker does with an offer.
#[derive(Serialize, TS)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "action"
)]
pub(crate) enum OfferAnswer {
    /// Retry with this `PAYMENT-SIGNATURE`.
    Pay { header: String, signed_sat: u64 },
    /// Ask the user.
    Ask { ask: Box<AskView> },
}

/// A payment waiting for the user, with what approving it means.
#[derive(Serialize, TS)]
#[serde(rename_all = "camelCase")]
#[ts(rename = "Ask")]
pub(crate) struct AskView {
    #[serde(flatten)]
    ask: Ask,
    current: Option<TermsView>,
    suggested: TermsView,
}

#[derive(Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SiteView {
    origin: String,
    revoked: bool,
    terms: TermsView,
    spent_sat: u64,
    reserved_sat: u64,
    remaining_sat: u64,
    period_start: u64,
    period_end: u64,
}

#[derive(Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChannelView {
    site: String,
    state: &'static str,
    value_sat: u64,
    /// Signed to the payee in total (the last part may not have reached it yet).
    paid_sat: u64,
    /// What the payee holds, per its last receipt (the rest of `paid_sat` is signed, not yet
    /// sent or acknowledged).
    acknowledged_sat: u64,
    credit_sat: u64,
    /// The block height the channel expires at (nLockTime encoding: below 500,000,000).
    expiry: u32,
    contract_txid: Option<String>,
    payee: String,
    /// No settlement was in a block a few blocks before the expiry
    /// (`trickle_wallet::SETTLEMENT_DUE_BLOCKS`): the refund goes out once valid.
    settlement_overdue: bool,
}

impl From<&ChannelRecord> for ChannelView {
    fn from(r: &ChannelRecord) -> Self {
        let state = &r.state.state;
        Self {
            site: r.site.clone(),
            state: state.name(),
            value_sat: state.contract().map_or(0, |c| c.value.to_sat()),
            paid_sat: match state {
                PayerState::Closed { channel, .. } => channel.paid().to_sat(),
                _ => state.committed_channel().map_or(0, |c| c.paid().to_sat()),
            },
            acknowledged_sat: state
                .committed_channel()
                .map_or(0, |c| c.acknowledged.to_sat()),
            credit_sat: r.credit.to_sat(),
            expiry: state.contract().map_or(0, |c| c.expiry.to_consensus_u32()),
            contract_txid: state.contract_txid().map(|t| t.to_string()),
            payee: r.payee_key.to_string(),
            settlement_overdue: r.chain.settlement_overdue,
        }
    }
}

/// Something a duty did to one site's channel.
#[derive(Serialize, TS)]
#[ts(rename = "DutyEvent")]
pub(crate) struct Event {
    site: String,
    /// A txid, or what went wrong.
    detail: String,
}

/// What the channel duties did.
#[derive(Default, Serialize, TS)]
pub(crate) struct Duties {
    /// Channels closed near their expiry (the settlement's txid).
    closed: Vec<Event>,
    /// Contracts seen spent by a settlement that pays what it must.
    settled: Vec<Event>,
    /// Refunds broadcast.
    refunds: Vec<String>,
    /// Closes that failed and settlements refused.
    failed: Vec<Event>,
}

/// A receipt applied: the payment, and the site's next pre-armed payment.
#[derive(Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReceiptAnswer {
    #[serde(flatten)]
    payment: Payment,
    /// The next page's `PAYMENT-SIGNATURE`; `None` when nothing is pre-armed.
    next_header: Option<String>,
    /// Why the next payment could not be signed (the pre-armed rule is then left as it is).
    next_error: Option<Failure>,
    /// The payee refused for lack of credit: the 402 that comes with it is paid, once
    /// (`trickle_wallet::site::pays_again`).
    pay_again: bool,
}

#[derive(Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Sites {
    sites: Vec<SiteView>,
    channels: Vec<ChannelView>,
    history: Vec<Payment>,
}

fn now_secs() -> u64 {
    (now_ms() / 1000.0) as u64
}

fn site_view(b: &Budget, now: u64) -> SiteView {
    let status = b.status(now);
    SiteView {
        origin: b.origin().to_owned(),
        revoked: b.state() == BudgetState::Revoked,
        terms: (*b.terms()).into(),
        spent_sat: status.spent.to_sat(),
        reserved_sat: status.reserved.to_sat(),
        remaining_sat: status.remaining.to_sat(),
        period_start: status.period_start,
        period_end: status.period_end,
    }
}

impl Inner {
    /// The chain tip and the contracts' fee rate, fetched at most every [`CHAIN_VIEW_MS`].
    async fn chain_view(&self) -> Result<(ChainTip, FeeRate), Failure> {
        if let Some((tip, rate, at)) = *self.chain_view.borrow() {
            if now_ms() - at < CHAIN_VIEW_MS {
                return Ok((tip, rate));
            }
        }
        let client = self.esplora()?;
        let tip = ExtensionWallet::tip(&client).await?;
        let rate = ExtensionWallet::contract_fee_rate(&client).await?;
        *self.chain_view.borrow_mut() = Some((tip, rate, now_ms()));
        Ok((tip, rate))
    }

    pub(crate) async fn budgets(&self) -> Result<std::rc::Rc<Budgets<ScopedStore>>, Failure> {
        if let Some(b) = self.budgets.borrow().as_ref() {
            return Ok(b.clone());
        }
        let store = self.store().await?;
        // One instance only, even when two requests got here at once: each instance caches,
        // and a second one would not see the first one's reservations.
        let mut slot = self.budgets.borrow_mut();
        Ok(slot
            .get_or_insert_with(|| std::rc::Rc::new(Budgets::new(store)))
            .clone())
    }

    /// Answers a 402 offer: the payment header, or what to ask the user.
    pub(crate) async fn offer(
        &self,
        url: &str,
        header: &str,
        confirmed: bool,
    ) -> Result<OfferAnswer, Failure> {
        let budgets = self.budgets().await?;
        let (tip, fee_rate) = self.chain_view().await?;
        let chain = self.esplora()?;
        let policy = OfferPolicy::default();
        let ctx = PayContext {
            transport: &FetchTransport,
            chain: &chain,
            tip,
            fee_rate,
            network: self.network(),
            policy: &policy,
            now: now_secs(),
            progress: &|_| {},
        };
        let mut guard = self.wallet.lock().await;
        let wallet = guard.as_mut().ok_or_else(locked)?;
        let answer = wallet
            .answer_offer(&*budgets, &ctx, url, header, confirmed)
            .await?;
        // The header goes to the page only once its payment is stored.
        match answer.commit(&(&*wallet, &*budgets)).await? {
            Answer::Pay { header, signed } => Ok(OfferAnswer::Pay {
                header,
                signed_sat: signed.to_sat(),
            }),
            Answer::Ask(ask) => {
                let current = ask.current.map(TermsView::from);
                let suggested = ask.suggested.into();
                Ok(OfferAnswer::Ask {
                    ask: Box::new(AskView {
                        ask: *ask,
                        current,
                        suggested,
                    }),
                })
            }
        }
    }

    /// Applies a receipt, records the payment in the history and signs the site's next
    /// pre-armed payment (see [`Inner::pre_arm`]): all staged, then committed in one storage
    /// write before the next payment's header is returned. Should the write fail, nothing of it
    /// is in memory either.
    pub(crate) async fn receipt(
        &self,
        url: &str,
        header: &str,
    ) -> Result<Option<ReceiptAnswer>, Failure> {
        let budgets = self.budgets().await?;
        let (tip, _) = self.chain_view().await?;
        let guard = self.wallet.lock().await;
        let wallet = guard.as_ref().ok_or_else(locked)?;
        let now = now_secs();
        let Some(receipt) = wallet
            .take_receipt(&WriteBatch::new(), &*budgets, url, header, tip, now)
            .await?
        else {
            return Ok(None);
        };
        let history = self.history(wallet.store()).await?;
        let at = now_ms();
        let recorded = receipt.and_stage(|view| {
            history::record(history, view.success.then(|| Payment::of(at, url, view)))
        })?;
        // The receipt stands whatever happens to the next payment; a failure to sign it is
        // told apart.
        let origin = site_origin(url)?;
        let next = wallet
            .pre_arm_site(recorded.writes(), &*budgets, &origin, tip, now)
            .await;
        let (staged, next_error) = match next {
            Ok(next) => (recorded.and(next), None),
            Err(e) => (recorded.map(|r| (r, None)), Some(Failure::from(e))),
        };
        let ((view, history), next_header) = staged.commit(&(wallet, &*budgets)).await?;
        *self.history.borrow_mut() = Some(history);
        Ok(Some(ReceiptAnswer {
            payment: Payment {
                reload_header: view.reload_header.clone(),
                ..Payment::of(at, url, &view)
            },
            next_header,
            next_error,
            pay_again: view.pay_again,
        }))
    }

    /// The payment history as last committed: read from the store once, then kept as it is
    /// written.
    async fn history<S: Store>(&self, store: &S) -> Result<Vec<Payment>, Failure> {
        if let Some(history) = self.history.borrow().as_ref() {
            return Ok(history.clone());
        }
        let history = history::load(store).await?;
        *self.history.borrow_mut() = Some(history.clone());
        Ok(history)
    }

    /// Creates the budget of `origin`, or changes its terms (keeping what was spent), and
    /// enables it.
    pub(crate) async fn approve(
        &self,
        origin: &str,
        terms: TermsView,
    ) -> Result<SiteView, Failure> {
        let budgets = self.budgets().await?;
        // Budgets are changed under the wallet's lock, so that no staged payment is built on
        // a budget this changes before it is committed.
        let _writer = self.wallet.lock().await;
        let terms = Terms::from(terms);
        let now = now_secs();
        let budget = match budgets.load(origin).await? {
            Some(_) => {
                budgets
                    .modify(origin, |b| {
                        b.update(terms, now)?;
                        b.enable();
                        Ok(b.clone())
                    })
                    .await?
            }
            None => {
                let budget = Budget::new(origin, terms, now)?;
                budgets.save(&budget).await?;
                budget
            }
        };
        Ok(site_view(&budget, now))
    }

    /// Revokes `origin`: nothing more is paid to it until it is approved again.
    pub(crate) async fn revoke(&self, origin: &str) -> Result<SiteView, Failure> {
        let budgets = self.budgets().await?;
        let _writer = self.wallet.lock().await;
        let budget = budgets
            .modify(origin, |b| {
                b.revoke();
                Ok(b.clone())
            })
            .await?;
        Ok(site_view(&budget, now_secs()))
    }

    /// The origins whose budget is not revoked.
    pub(crate) async fn approved_origins(&self) -> Result<Vec<String>, Failure> {
        let budgets = self.budgets().await?;
        Ok(budgets
            .list()
            .await?
            .iter()
            .filter(|b| b.state() != BudgetState::Revoked)
            .map(|b| b.origin().to_owned())
            .collect())
    }

    /// Budgets, channels and the payment history.
    pub(crate) async fn sites(&self) -> Result<Sites, Failure> {
        let budgets = self.budgets().await?;
        let now = now_secs();
        let sites = budgets
            .list()
            .await?
            .iter()
            .map(|b| site_view(b, now))
            .collect();
        let guard = self.wallet.lock().await;
        let wallet = guard.as_ref().ok_or_else(locked)?;
        let channels = wallet
            .channels()
            .await
            .map_err(|e| failure("channel", e.to_string()))?
            .iter()
            .map(ChannelView::from)
            .collect();
        Ok(Sites {
            sites,
            channels,
            history: self.history(wallet.store()).await?,
        })
    }

    /// Asks the payee of the channel with `site` to close it; answers the settlement's txid.
    pub(crate) async fn close_channel(&self, site: &str) -> Result<String, Failure> {
        let (tip, _) = self.chain_view().await?;
        let mut guard = self.wallet.lock().await;
        let wallet = guard.as_mut().ok_or_else(locked)?;
        let record = wallet
            .channels()
            .await
            .map_err(|e| failure("channel", e.to_string()))?
            .into_iter()
            .find(|r| r.site == site && r.state.state.committed_channel().is_some())
            .ok_or_else(|| failure("no_channel", format!("no open channel with {site}")))?;
        let settlement = wallet
            .close_channel(&FetchTransport, site, &record.payee_key, tip)
            .await
            .map_err(|e| failure("close_refused", format!("the payee did not close the channel: {e}; it stays open and still pays the site, and after its expiry the wallet takes the funds back by itself")))?;
        drop(guard);
        // Settle the budget: what the payee closed with is spent, the rest released. Should
        // the endpoint not answer now, the alarm's reconcile does it later.
        let _ = self.reconcile().await;
        Ok(settlement.compute_txid().to_string())
    }

    /// The pre-armed payment for the next page of `origin` (see `Wallet::pre_arm_site`): its
    /// reservation, channel state and outstanding increment in one storage write, made before
    /// the header is returned.
    pub(crate) async fn pre_arm(&self, origin: &str) -> Result<Option<String>, Failure> {
        let budgets = self.budgets().await?;
        let (tip, _) = self.chain_view().await?;
        let guard = self.wallet.lock().await;
        let wallet = guard.as_ref().ok_or_else(locked)?;
        let armed = wallet
            .pre_arm_site(&WriteBatch::new(), &*budgets, origin, tip, now_secs())
            .await?;
        Ok(armed.commit(&(wallet, &*budgets)).await?)
    }

    /// Settles the budget of payments whose receipt never came (see `Wallet::reconcile`).
    pub(crate) async fn reconcile(&self) -> Result<u64, Failure> {
        let budgets = self.budgets().await?;
        let (tip, _) = self.chain_view().await?;
        let mut guard = self.wallet.lock().await;
        let wallet = guard.as_mut().ok_or_else(locked)?;
        let committed = wallet
            .reconcile(&*budgets, &FetchTransport, tip, now_secs())
            .await?;
        Ok(committed.to_sat())
    }

    /// Channel duties, run by the worker's alarm (`Wallet::run_duties`), then the budgets
    /// settled (`reconcile`).
    pub(crate) async fn duties(&self) -> Result<Duties, Failure> {
        let client = self.esplora()?;
        let done = {
            let mut guard = self.wallet.lock().await;
            let wallet = guard.as_mut().ok_or_else(locked)?;
            wallet
                .run_duties(
                    &client,
                    &FetchTransport,
                    final_confirmations(self.network()),
                )
                .await
                .map_err(|e| failure("channel", e.to_string()))?
        };
        let mut duties = Duties::default();
        for (site, closed) in done.closed {
            match closed {
                Ok(txid) => duties.closed.push(Event {
                    site,
                    detail: txid.to_string(),
                }),
                Err(e) => duties.failed.push(Event {
                    site,
                    detail: format!("the payee did not close the channel: {e}"),
                }),
            }
        }
        for (site, seen) in done.settled {
            match seen {
                Ok(txid) => duties.settled.push(Event {
                    site,
                    detail: txid.to_string(),
                }),
                Err(e) => duties.failed.push(Event {
                    site,
                    detail: format!("settlement refused: {e}"),
                }),
            }
        }
        duties.refunds = done
            .refunds
            .iter()
            .map(|tx| tx.compute_txid().to_string())
            .collect();
        self.reconcile().await?;
        Ok(duties)
    }
}

pub(crate) type ScopedStore = trickle_wallet::layout::Scoped<crate::storage::BrowserStore>;
