//! The chain tip and the contracts' fee rate, reused for a while: a payer needs both for every
//! paid request, and they change by the block, not by the request.

use std::sync::Mutex;

use bitcoin::FeeRate;
use trickle_channel::ChainTip;

use crate::chain::ChainSource;
use crate::WalletError;

/// How long a chain view is reused before it is fetched again, ms.
pub const CHAIN_VIEW_MS: f64 = 30_000.0;

/// The tip and the contracts' fee rate ([`crate::Wallet::contract_fee_rate`]) last fetched,
/// and when.
#[derive(Debug, Default)]
pub struct ChainView {
    last: Mutex<Option<Fetched>>,
}

#[derive(Clone, Copy, Debug)]
struct Fetched {
    tip: ChainTip,
    fee_rate: FeeRate,
    at_ms: f64,
}

impl ChainView {
    /// No view yet: the first [`ChainView::get`] fetches one.
    pub fn new() -> Self {
        Self::default()
    }

    fn cached(&self) -> Option<Fetched> {
        *self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The tip and fee rate at `now_ms` (ms since epoch): the last ones fetched if younger
    /// than [`CHAIN_VIEW_MS`], else fetched from `chain` now. A failed fetch changes nothing.
    pub async fn get<C: ChainSource>(
        &self,
        chain: &C,
        now_ms: f64,
    ) -> Result<(ChainTip, FeeRate), WalletError> {
        if let Some(last) = self.cached() {
            // A clock that went back is no reason to trust an old view.
            let age = now_ms - last.at_ms;
            if (0.0..CHAIN_VIEW_MS).contains(&age) {
                return Ok((last.tip, last.fee_rate));
            }
        }
        let tip = chain.tip().await?;
        let fee_rate = chain.fee_rates().await?.normal;
        *self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Fetched {
            tip,
            fee_rate,
            at_ms: now_ms,
        });
        Ok((tip, fee_rate))
    }

    /// Forgets the view (another chain, or a block the caller knows of): the next
    /// [`ChainView::get`] fetches.
    pub fn forget(&self) {
        *self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use bitcoin::{OutPoint, Transaction, Txid};

    use super::*;
    use crate::chain::Spend;
    use crate::FeeRates;

    /// A chain whose tip moves one block per fetch, and that fails on demand.
    #[derive(Default)]
    struct Moving {
        fetches: Cell<u32>,
        down: Cell<bool>,
    }

    impl ChainSource for Moving {
        async fn tip(&self) -> Result<ChainTip, WalletError> {
            if self.down.get() {
                return Err(WalletError::Chain("unreachable".into()));
            }
            self.fetches.set(self.fetches.get() + 1);
            Ok(ChainTip {
                height: 100 + self.fetches.get(),
                median_time_past: 1_700_000_000,
            })
        }
        async fn fee_rates(&self) -> Result<FeeRates, WalletError> {
            let rate = FeeRate::from_sat_per_vb_u32;
            Ok(FeeRates {
                fast: rate(9),
                normal: rate(5),
                slow: rate(1),
            })
        }
        async fn broadcast(&self, _: &Transaction) -> Result<(), WalletError> {
            Err(WalletError::Chain("not in this test".into()))
        }
        async fn spend_of(&self, _: OutPoint) -> Result<Option<Spend>, WalletError> {
            Ok(None)
        }
        async fn tx(&self, _: &Txid) -> Result<Option<Transaction>, WalletError> {
            Ok(None)
        }
        async fn confirmation_height(&self, _: &Txid) -> Result<Option<u32>, WalletError> {
            Ok(None)
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_view_is_reused_for_its_time_then_fetched_again() {
        let (chain, view) = (Moving::default(), ChainView::new());
        let (tip, rate) = view.get(&chain, 1_000.0).await.expect("fetched");
        assert_eq!((tip.height, rate), (101, FeeRate::from_sat_per_vb_u32(5)));
        let again = view.get(&chain, 1_000.0 + CHAIN_VIEW_MS - 1.0).await;
        assert_eq!(again.expect("reused").0.height, 101);
        assert_eq!(chain.fetches.get(), 1);
        let later = view.get(&chain, 1_000.0 + CHAIN_VIEW_MS).await;
        assert_eq!(later.expect("fetched").0.height, 102);
        // A clock set back does not make the view younger.
        assert_eq!(view.get(&chain, 0.0).await.expect("fetched").0.height, 103);
        view.forget();
        assert_eq!(view.get(&chain, 0.0).await.expect("fetched").0.height, 104);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_fetch_is_an_error_and_the_next_call_fetches_again() {
        let (chain, view) = (Moving::default(), ChainView::new());
        view.get(&chain, 0.0).await.expect("fetched");
        chain.down.set(true);
        let stale = view.get(&chain, CHAIN_VIEW_MS).await;
        assert!(matches!(stale, Err(WalletError::Chain(_))), "{stale:?}");
        chain.down.set(false);
        let fresh = view.get(&chain, CHAIN_VIEW_MS).await.expect("fetched");
        assert_eq!(fresh.0.height, 102);
    }
}
