//! The test suite every `ChannelStore` must pass.

use bitcoin::{Amount, Txid};
use trickle_channel::credit::Ledger;
use trickle_channel::{PayeeState, Version};
use trickle_payee::store::{ChannelStore, ChannelUpdate, ChargedTicket, StoreError};

use super::memory_channel;

fn ledger(paid: u64, consumed: u64) -> Ledger {
    Ledger {
        paid: Amount::from_sat(paid),
        consumed: Amount::from_sat(consumed),
    }
}

/// The resource every ticket of the suite is charged at.
const RESOURCE: &str = "http://127.0.0.1/articles/1";

fn charged(ticket: &str) -> ChargedTicket<'_> {
    ChargedTicket {
        ticket,
        resource: RESOURCE,
        price: Amount::from_sat(10),
    }
}

fn txid(s: &PayeeState) -> Txid {
    s.channel().expect("channel").contract_txid()
}

/// Runs every check on `store`, which must be empty.
pub async fn run(store: &dyn ChannelStore) {
    sessions(store).await;
    open_and_update(store).await;
    concurrent_writes(store).await;
}

async fn sessions(store: &dyn ChannelStore) {
    let [pending, ..] = memory_channel(Version::V1, 40);
    assert_eq!(store.session("a").await.unwrap(), None);
    store.insert_session("a", &pending, 100).await.unwrap();
    assert_eq!(store.session("a").await.unwrap(), Some(pending.clone()));
    assert_eq!(
        store.insert_session("a", &pending, 100).await,
        Err(StoreError::Conflict),
        "a session id is never reused"
    );
    let [other, ..] = memory_channel(Version::V2, 41);
    store.update_session("a", &other).await.unwrap();
    assert_eq!(store.session("a").await.unwrap(), Some(other));
    assert_eq!(
        store.update_session("missing", &pending).await,
        Err(StoreError::Conflict)
    );
    store.insert_session("b", &pending, 200).await.unwrap();
    assert_eq!(store.prune_sessions(150).await.unwrap(), 1);
    assert_eq!(store.session("a").await.unwrap(), None);
    assert!(store.session("b").await.unwrap().is_some());
    assert_eq!(store.prune_sessions(201).await.unwrap(), 1);
}

async fn open_and_update(store: &dyn ChannelStore) {
    let [pending, ready, paid, closing] = memory_channel(Version::V2, 42);
    let id = txid(&ready);
    store.insert_session("s", &pending, 1).await.unwrap();
    assert!(matches!(
        store.open_channel("s", &pending, ledger(0, 0)).await,
        Err(StoreError::InvalidState(_))
    ));
    store
        .open_channel("s", &ready, ledger(1_000, 0))
        .await
        .unwrap();
    assert_eq!(
        store.session("s").await.unwrap(),
        None,
        "the session became the channel"
    );
    assert_eq!(
        store.open_channel("s", &ready, ledger(1_000, 0)).await,
        Err(StoreError::Conflict),
        "opening twice conflicts"
    );
    let stored = store.channel(&id).await.unwrap().expect("stored");
    assert_eq!(
        (stored.state.clone(), stored.ledger, stored.revision),
        (ready.clone(), ledger(1_000, 0), 0)
    );

    // A payment with its consumed total and nonce: one write.
    let rev = store
        .update_channel(
            &id,
            0,
            ChannelUpdate::new(&ready, &paid, ledger(1_500, 10), &[charged("n1")]),
        )
        .await
        .unwrap();
    assert_eq!(rev, 1);
    assert_eq!(
        store.charged_at(&id, "n1").await.unwrap().as_deref(),
        Some(RESOURCE)
    );
    assert_eq!(store.charged_at(&id, "n2").await.unwrap(), None);
    let stored = store.channel(&id).await.unwrap().expect("stored");
    assert_eq!(
        (stored.state, stored.ledger, stored.revision),
        (paid.clone(), ledger(1_500, 10), 1)
    );

    // A stale revision changes nothing.
    assert_eq!(
        store
            .update_channel(
                &id,
                0,
                ChannelUpdate::new(&paid, &closing, ledger(1_500, 20), &[charged("n2")])
            )
            .await,
        Err(StoreError::Conflict)
    );
    // A nonce already charged fails the whole write: state and ledger stay.
    assert_eq!(
        store
            .update_channel(
                &id,
                1,
                ChannelUpdate::new(&paid, &closing, ledger(1_500, 20), &[charged("n1")])
            )
            .await,
        Err(StoreError::Conflict)
    );
    assert_eq!(store.charged_at(&id, "n2").await.unwrap(), None);
    let stored = store.channel(&id).await.unwrap().expect("stored");
    assert_eq!(
        (stored.state, stored.ledger, stored.revision),
        (paid.clone(), ledger(1_500, 10), 1)
    );

    // A state for another channel is refused.
    let [_, other_ready, ..] = memory_channel(Version::V1, 43);
    assert!(matches!(
        store
            .update_channel(
                &id,
                1,
                ChannelUpdate::new(&other_ready, &other_ready, ledger(0, 0), &[])
            )
            .await,
        Err(StoreError::InvalidState(_))
    ));
    assert_eq!(
        store
            .update_channel(
                &txid(&other_ready),
                0,
                ChannelUpdate::new(&other_ready, &other_ready, ledger(0, 0), &[])
            )
            .await,
        Err(StoreError::Conflict),
        "an unknown channel cannot be updated"
    );

    store
        .update_channel(
            &id,
            1,
            ChannelUpdate::new(&paid, &closing, ledger(1_500, 10), &[]),
        )
        .await
        .unwrap();

    // Listing, oldest first.
    store.insert_session("t", &pending, 1).await.unwrap();
    store
        .open_channel("t", &other_ready, ledger(1_000, 0))
        .await
        .unwrap();
    let all: Vec<Txid> = store
        .channels()
        .await
        .unwrap()
        .iter()
        .map(|c| c.txid().expect("txid"))
        .collect();
    assert_eq!(all, vec![id, txid(&other_ready)]);
    assert_eq!(
        store.channel(&id).await.unwrap().expect("stored").state,
        closing
    );
}

/// Writes that arrive together (one SQLite transaction, for a store that groups them) keep
/// their own outcomes: of racing writes at one revision exactly one wins, a refused write
/// takes nothing else down, and every write that was answered Ok is stored.
async fn concurrent_writes(store: &dyn ChannelStore) {
    let channels: Vec<[PayeeState; 4]> = (100..116)
        .map(|tag| memory_channel(Version::V2, tag))
        .collect();
    for (i, [pending, ready, ..]) in channels.iter().enumerate() {
        let id = format!("c{i}");
        store.insert_session(&id, pending, 1).await.unwrap();
        store
            .open_channel(&id, ready, ledger(1_000, 0))
            .await
            .unwrap();
    }
    // Eight writers race on the first channel at revision 0; every other channel gets one
    // write, a charged nonce each.
    let nonces: Vec<String> = (0..channels.len()).map(|i| format!("n{i}")).collect();
    let tickets: Vec<[ChargedTicket; 1]> = nonces.iter().map(|n| [charged(n)]).collect();
    let ids: Vec<Txid> = channels.iter().map(|[_, ready, ..]| txid(ready)).collect();
    let racing = (0..8u64).map(|k| {
        let [_, _, paid, _] = &channels[0];
        store.update_channel(
            &ids[0],
            0,
            ChannelUpdate::new(&channels[0][1], paid, ledger(1_500, 10 + k), &[]),
        )
    });
    let others = (1..channels.len()).map(|i| {
        let ([_, ready, paid, _], charged) = (&channels[i], &tickets[i]);
        store.update_channel(
            &ids[i],
            0,
            ChannelUpdate::new(ready, paid, ledger(1_500, 10), charged),
        )
    });
    let (racing, others) = futures::future::join(
        futures::future::join_all(racing),
        futures::future::join_all(others),
    )
    .await;
    let winners: Vec<u64> = racing
        .iter()
        .enumerate()
        .filter_map(|(k, r)| match r {
            Ok(rev) => {
                assert_eq!(*rev, 1);
                Some(k as u64)
            }
            Err(e) => {
                assert_eq!(*e, StoreError::Conflict);
                None
            }
        })
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one racing write wins: {racing:?}"
    );
    let stored = store.channel(&ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (stored.ledger, stored.revision),
        (ledger(1_500, 10 + winners[0]), 1)
    );
    for ((id, nonce), result) in ids.iter().zip(&nonces).skip(1).zip(others) {
        assert_eq!(result, Ok(1));
        let stored = store.channel(id).await.unwrap().unwrap();
        assert_eq!((stored.ledger, stored.revision), (ledger(1_500, 10), 1));
        assert_eq!(
            store.charged_at(id, nonce).await.unwrap().as_deref(),
            Some(RESOURCE)
        );
    }
}
