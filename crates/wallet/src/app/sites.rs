//! The payer of a browser: pages load, and the payer is told of each 402 offer and each
//! receipt the browser sees (the command-line payer, which sends its own requests, is
//! [`crate::payer::Payer`]; both decide through [`crate::site`]). Beside the wallet it keeps the
//! budgets the user approved (one instance, so that payments made at once see each other's
//! reservations), the payment history as last committed, and the chain view.
//!
//! Every operation that pays takes the wallet from its caller, who holds it for the
//! operation's length; budgets are changed under the same hold ([`SitePayer::approve`]), so
//! that no staged payment is built on a budget changed before it is committed.

use std::sync::Mutex;

use bitcoin::{Amount, Transaction};
use trickle_channel::http::PaymentResponse;
use trickle_channel::ChainTip;

use crate::app::chain_view::ChainView;
use crate::app::failure::Failure;
use crate::app::history::{self, Payment};
use crate::app::view::{DutiesView, OfferAnswer, ReceiptAnswer, SiteView, SitesView, TermsView};
use crate::budget::{site_origin, Budget, BudgetState, Budgets, Terms};
use crate::chain::ChainSource;
use crate::channels::Transport;
use crate::offer::OfferPolicy;
use crate::site::{PayContext, PayError};
use crate::store::{Store, WriteBatch};
use crate::wallet::Wallet;

/// What a browser's payer reaches: the payees' channel endpoints and the chain; and the time.
pub struct Env<'a, T, C> {
    /// HTTP to the payees' channel endpoints.
    pub transport: &'a T,
    /// The chain.
    pub chain: &'a C,
    /// Now, ms since epoch (the browser's clock: budget periods run on wall-clock time).
    pub now_ms: f64,
}

impl<T, C> Env<'_, T, C> {
    fn now(&self) -> u64 {
        (self.now_ms / 1000.0) as u64
    }
}

/// A browser's payer over the store `S` of one network (see the [module documentation](self)).
pub struct SitePayer<S> {
    budgets: Budgets<S>,
    /// The history as last committed, once read: every write goes through it.
    history: Mutex<Option<Vec<Payment>>>,
    chain: ChainView,
}

impl<S: Store> SitePayer<S> {
    /// The payer of the budgets and history in `store`.
    pub fn new(store: S) -> Self {
        Self {
            budgets: Budgets::new(store),
            history: Mutex::new(None),
            chain: ChainView::new(),
        }
    }

    fn cached_history(&self) -> std::sync::MutexGuard<'_, Option<Vec<Payment>>> {
        // A poisoned lock still holds the history as it was last committed.
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn history(&self) -> Result<Vec<Payment>, PayError> {
        if let Some(history) = self.cached_history().as_ref() {
            return Ok(history.clone());
        }
        let history = history::load(self.budgets.store()).await?;
        *self.cached_history() = Some(history.clone());
        Ok(history)
    }

    async fn tip<T, C: ChainSource>(&self, env: &Env<'_, T, C>) -> Result<ChainTip, PayError> {
        Ok(self.chain.get(env.chain, env.now_ms).await?.0)
    }

    /// Answers a 402's `PAYMENT-REQUIRED` `header` for `url`: the payment header, stored before
    /// it is returned, or what to ask the user. `confirmed`: the user approved this payment.
    pub async fn offer<T: Transport, C: ChainSource>(
        &self,
        wallet: &mut Wallet<S>,
        env: &Env<'_, T, C>,
        url: &str,
        header: &str,
        confirmed: bool,
    ) -> Result<OfferAnswer, PayError> {
        let (tip, fee_rate) = self.chain.get(env.chain, env.now_ms).await?;
        let policy = OfferPolicy::default();
        let ctx = PayContext {
            transport: env.transport,
            chain: env.chain,
            tip,
            fee_rate,
            network: wallet.network(),
            policy: &policy,
            now: env.now(),
            progress: &|_| {},
        };
        let answer = wallet
            .answer_offer(&self.budgets, &ctx, url, header, confirmed)
            .await?;
        Ok(answer.commit(&(&*wallet, &self.budgets)).await?.into())
    }

    /// Applies the payee's account `response` for `url` (a response's receipt, see
    /// [`crate::site::receipt_in`]), records the payment in the history and signs the site's
    /// next pre-armed payment: staged together, then committed in one write before the next
    /// payment's header is returned. Should the write fail, nothing of it is in memory either.
    /// `None`: the account is of no channel of this wallet's.
    pub async fn receipt<T, C: ChainSource>(
        &self,
        wallet: &Wallet<S>,
        env: &Env<'_, T, C>,
        url: &str,
        response: &PaymentResponse,
    ) -> Result<Option<ReceiptAnswer>, PayError> {
        let (tip, now) = (self.tip(env).await?, env.now());
        let Some(receipt) = wallet
            .take_response(&WriteBatch::new(), &self.budgets, url, response, tip, now)
            .await?
        else {
            return Ok(None);
        };
        let history = self.history().await?;
        let recorded = receipt.and_stage(|view| {
            history::record(
                history,
                view.success.then(|| Payment::of(env.now_ms, url, view)),
            )
        })?;
        // The receipt stands whatever happens to the next payment; a failure to sign it is
        // told apart.
        let origin = site_origin(url)?;
        let next = wallet
            .pre_arm_site(recorded.writes(), &self.budgets, &origin, tip, now)
            .await;
        let (staged, next_error) = match next {
            Ok(next) => (recorded.and(next), None),
            Err(e) => (recorded.map(|r| (r, None)), Some(Failure::from(e))),
        };
        let ((view, history), next_header) = staged.commit(&(wallet, &self.budgets)).await?;
        *self.cached_history() = Some(history);
        Ok(Some(ReceiptAnswer {
            payment: Payment {
                reload_header: view.reload_header.clone(),
                ..Payment::of(env.now_ms, url, &view)
            },
            next_header,
            next_error,
            pay_again: view.pay_again,
        }))
    }

    /// The pre-armed payment for the next page of `origin` (see [`Wallet::pre_arm_site`]): its
    /// reservation, channel state and outstanding increment in one write, made before the
    /// header is returned. `None` when the site's budget or channel does not allow one.
    pub async fn pre_arm<T, C: ChainSource>(
        &self,
        wallet: &Wallet<S>,
        env: &Env<'_, T, C>,
        origin: &str,
    ) -> Result<Option<String>, PayError> {
        let tip = self.tip(env).await?;
        let armed = wallet
            .pre_arm_site(&WriteBatch::new(), &self.budgets, origin, tip, env.now())
            .await?;
        Ok(armed.commit(&(wallet, &self.budgets)).await?)
    }

    /// Creates the budget of `origin` with `terms`, or changes its terms (keeping what was
    /// spent), and enables it. The caller holds the wallet's writer (see the
    /// [module documentation](self)).
    pub async fn approve(
        &self,
        origin: &str,
        terms: TermsView,
        now: u64,
    ) -> Result<SiteView, PayError> {
        let terms = Terms::from(terms);
        let budget = match self.budgets.load(origin).await? {
            Some(_) => {
                self.budgets
                    .modify(origin, |b| {
                        b.update(terms, now)?;
                        b.enable();
                        Ok(b.clone())
                    })
                    .await?
            }
            None => {
                let budget = Budget::new(origin, terms, now)?;
                self.budgets.save(&budget).await?;
                budget
            }
        };
        Ok(SiteView::of(&budget, now))
    }

    /// Revokes `origin`: nothing more is paid to it until it is approved again. The caller
    /// holds the wallet's writer.
    pub async fn revoke(&self, origin: &str, now: u64) -> Result<SiteView, PayError> {
        let budget = self
            .budgets
            .modify(origin, |b| {
                b.revoke();
                Ok(b.clone())
            })
            .await?;
        Ok(SiteView::of(&budget, now))
    }

    /// The origins whose budget is not revoked.
    pub async fn approved_origins(&self) -> Result<Vec<String>, PayError> {
        Ok(self
            .budgets
            .list()
            .await?
            .iter()
            .filter(|b| b.state() != BudgetState::Revoked)
            .map(|b| b.origin().to_owned())
            .collect())
    }

    /// Budgets, channels and the payment history at `now` (Unix seconds).
    pub async fn view(&self, wallet: &Wallet<S>, now: u64) -> Result<SitesView, PayError> {
        let sites = self.budgets.list().await?;
        Ok(SitesView {
            sites: sites.iter().map(|b| SiteView::of(b, now)).collect(),
            channels: wallet.channels().await?.iter().map(Into::into).collect(),
            history: self.history().await?,
        })
    }

    /// Asks the payee of the open channel named `name` (see [`Wallet::channel_to_close`]) to
    /// close it, then settles the budgets ([`SitePayer::reconcile`]; should the endpoint not
    /// answer now, the next duties do it). The settlement.
    pub async fn close<T: Transport, C: ChainSource>(
        &self,
        wallet: &mut Wallet<S>,
        env: &Env<'_, T, C>,
        name: &str,
    ) -> Result<Transaction, PayError> {
        let tip = self.tip(env).await?;
        let record = wallet.channel_to_close(name).await?;
        let settlement = wallet
            .close_channel(env.transport, &record.site, &record.payee_key, tip)
            .await
            .map_err(PayError::CloseRefused)?;
        let _ = self.reconcile(wallet, env).await;
        Ok(settlement)
    }

    /// Settles the budgets of payments whose receipt never came (see [`Wallet::reconcile`]):
    /// what was committed.
    pub async fn reconcile<T: Transport, C: ChainSource>(
        &self,
        wallet: &mut Wallet<S>,
        env: &Env<'_, T, C>,
    ) -> Result<Amount, PayError> {
        let tip = self.tip(env).await?;
        wallet
            .reconcile(&self.budgets, env.transport, tip, env.now())
            .await
    }

    /// The channel duties ([`Wallet::run_duties`]), then the budgets settled.
    pub async fn duties<T: Transport, C: ChainSource>(
        &self,
        wallet: &mut Wallet<S>,
        env: &Env<'_, T, C>,
    ) -> Result<DutiesView, PayError> {
        let depth = crate::final_confirmations(wallet.network());
        let done = wallet.run_duties(env.chain, env.transport, depth).await?;
        self.reconcile(wallet, env).await?;
        Ok(done.into())
    }
}
