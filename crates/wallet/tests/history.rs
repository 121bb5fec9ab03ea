//! The payment history (`trickle_wallet::app::history`): what an entry keeps, how long the
//! list grows, and that it is stored as it is staged.

use bitcoin::Amount;
use trickle_wallet::app::history::{self, history_url, Payment, HISTORY_LIMIT, HISTORY_URL_CHARS};
use trickle_wallet::site::ReceiptView;
use trickle_wallet::store::{Commit, MemoryStore, Store, StoreError, WriteBatch};

/// The store alone: the history has no in-memory mirror in the wallet.
struct Plain<'a>(&'a MemoryStore);

impl Commit for Plain<'_> {
    async fn commit_batch(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.0.write(batch).await
    }
}

#[test]
fn a_history_entry_keeps_at_most_2048_characters_of_its_url() {
    let long = format!("https://site.example/{}", "a".repeat(1_500_000));
    let kept = history_url(&long);
    assert_eq!(kept.chars().count(), HISTORY_URL_CHARS);
    assert!(kept.ends_with('…') && long.starts_with(kept.trim_end_matches('…')));
    let exact = "é".repeat(HISTORY_URL_CHARS);
    assert_eq!(
        history_url(&exact),
        exact,
        "a URL of exactly the limit is kept whole"
    );
    assert_eq!(
        history_url("https://site.example/a"),
        "https://site.example/a"
    );
}

fn view(consumed: u64) -> ReceiptView {
    ReceiptView {
        origin: "https://site.example".into(),
        success: true,
        error_reason: None,
        consumed: Amount::from_sat(consumed),
        paid: Amount::from_sat(100),
        credit: Amount::from_sat(40),
        committed: Amount::from_sat(60),
        reload_header: Some("reload".into()),
        pay_again: false,
    }
}

#[tokio::test]
async fn the_history_keeps_the_newest_payments_up_to_its_limit_and_stores_them() {
    let store = MemoryStore::default();
    assert!(history::load(&store).await.expect("load").is_empty());
    let mut list = Vec::new();
    for i in 0..HISTORY_LIMIT as u64 + 2 {
        let payment = Payment::of(i as f64, "https://site.example/page", &view(i));
        list = history::record(list, Some(payment))
            .expect("record")
            .commit(&Plain(&store))
            .await
            .expect("commit");
    }
    assert_eq!(list.len(), HISTORY_LIMIT);
    assert_eq!(list[0].consumed_sat, 2, "the two oldest went first");
    assert_eq!(list[0].reload_header, None, "no reload header is kept");
    assert_eq!(
        history::load(&store).await.expect("load"),
        list,
        "stored as staged"
    );
    let kept = history::record(list.clone(), None)
        .expect("record nothing")
        .commit(&Plain(&store))
        .await
        .expect("commit");
    assert_eq!(kept, list, "a refused payment adds nothing");
}
