//! Paying sites: the offers, receipts and budget changes the worker sees, handed to the
//! wallet's browser payer ([`SitePayer`]), one instance per network.

use std::rc::Rc;

use trickle_wallet::app::sites::{Env, SitePayer};
use trickle_wallet::app::view::{
    DutiesView, OfferAnswer, ReceiptAnswer, SiteView, SitesView, TermsView,
};
use trickle_wallet::layout::Scoped;
use trickle_wallet::site::receipt_in;

use crate::{locked, now_ms, Esplora, Failure, Inner};
use trickle_js::FetchTransport;
use trickle_js::JsStore;

pub(crate) type ScopedStore = Scoped<JsStore>;

fn env(chain: &Esplora) -> Env<'_, FetchTransport, Esplora> {
    Env {
        transport: &FetchTransport,
        chain,
        now_ms: now_ms(),
    }
}

fn now_secs() -> u64 {
    (now_ms() / 1000.0) as u64
}

impl Inner {
    /// The network's payer; one instance only, even when two requests got here at once: it
    /// caches budgets, and a second one would not see the first one's reservations.
    async fn payer(&self) -> Result<Rc<SitePayer<ScopedStore>>, Failure> {
        if let Some(payer) = self.payer.borrow().as_ref() {
            return Ok(payer.clone());
        }
        let store = self.store().await?;
        let mut slot = self.payer.borrow_mut();
        Ok(slot
            .get_or_insert_with(|| Rc::new(SitePayer::new(store)))
            .clone())
    }

    pub(crate) async fn offer(
        &self,
        url: &str,
        header: &str,
        confirmed: bool,
    ) -> Result<OfferAnswer, Failure> {
        let (payer, chain) = (self.payer().await?, self.esplora()?);
        let mut guard = self.wallet.lock().await;
        let wallet = guard.as_mut().ok_or_else(locked)?;
        Ok(payer
            .offer(wallet, &env(&chain), url, header, confirmed)
            .await?)
    }

    /// `offer` is a 402's `PAYMENT-REQUIRED`: nothing is asked of the wallet, locked or not,
    /// unless a receipt or the payee's account is there.
    pub(crate) async fn receipt(
        &self,
        url: &str,
        header: Option<&str>,
        offer: Option<&str>,
    ) -> Result<Option<ReceiptAnswer>, Failure> {
        let Some(account) = receipt_in(402, header, offer)? else {
            return Ok(None);
        };
        let (payer, chain) = (self.payer().await?, self.esplora()?);
        let guard = self.wallet.lock().await;
        let wallet = guard.as_ref().ok_or_else(locked)?;
        Ok(payer.receipt(wallet, &env(&chain), url, &account).await?)
    }

    pub(crate) async fn pre_arm(&self, origin: &str) -> Result<Option<String>, Failure> {
        let (payer, chain) = (self.payer().await?, self.esplora()?);
        let guard = self.wallet.lock().await;
        let wallet = guard.as_ref().ok_or_else(locked)?;
        Ok(payer.pre_arm(wallet, &env(&chain), origin).await?)
    }

    pub(crate) async fn approve(
        &self,
        origin: &str,
        terms: TermsView,
    ) -> Result<SiteView, Failure> {
        let payer = self.payer().await?;
        // Held while the budget changes, locked wallet or not (see `SitePayer`).
        let _writer = self.wallet.lock().await;
        Ok(payer.approve(origin, terms, now_secs()).await?)
    }

    pub(crate) async fn revoke(&self, origin: &str) -> Result<SiteView, Failure> {
        let payer = self.payer().await?;
        let _writer = self.wallet.lock().await;
        Ok(payer.revoke(origin, now_secs()).await?)
    }

    pub(crate) async fn approved_origins(&self) -> Result<Vec<String>, Failure> {
        Ok(self.payer().await?.approved_origins().await?)
    }

    pub(crate) async fn sites(&self) -> Result<SitesView, Failure> {
        let payer = self.payer().await?;
        let guard = self.wallet.lock().await;
        let wallet = guard.as_ref().ok_or_else(locked)?;
        Ok(payer.view(wallet, now_secs()).await?)
    }

    /// The settlement's txid.
    pub(crate) async fn close_channel(&self, site: &str) -> Result<String, Failure> {
        let (payer, chain) = (self.payer().await?, self.esplora()?);
        let mut guard = self.wallet.lock().await;
        let wallet = guard.as_mut().ok_or_else(locked)?;
        let settlement = payer.close(wallet, &env(&chain), site).await?;
        Ok(settlement.compute_txid().to_string())
    }

    /// What was committed, sat.
    pub(crate) async fn reconcile(&self) -> Result<u64, Failure> {
        let (payer, chain) = (self.payer().await?, self.esplora()?);
        let mut guard = self.wallet.lock().await;
        let wallet = guard.as_mut().ok_or_else(locked)?;
        Ok(payer.reconcile(wallet, &env(&chain)).await?.to_sat())
    }

    pub(crate) async fn duties(&self) -> Result<DutiesView, Failure> {
        let (payer, chain) = (self.payer().await?, self.esplora()?);
        let mut guard = self.wallet.lock().await;
        let wallet = guard.as_mut().ok_or_else(locked)?;
        Ok(payer.duties(wallet, &env(&chain)).await?)
    }
}
