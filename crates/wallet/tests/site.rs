//! Paying a site within its budget (`trickle_wallet::site`), against the in-process payee on a
//! local chain: nothing is signed without a budget; the budget counts what is signed and stops
//! exactly at its limit; a receipt commits; a receipt lost in a crash is settled by asking the
//! payee; a failed opening releases its reservation; a receipt for another site is refused.

mod common;

use bdk_esplora::esplora_client::{AsyncClient, Builder};
use bitcoin::{Amount, FeeRate, Network};
use common::{funded_wallet, now, required, Counted, FailingStore, Payee, PRICE};
use trickle_channel::{ChainTip, ChannelError, PayerState};
use trickle_regtest::{Config, Node};
use trickle_wallet::budget::{Budget, Budgets, Period, Terms};
use trickle_wallet::offer::OfferPolicy;
use trickle_wallet::site::{Answer, AskReason, PayContext, PayError, ReceiptView};
use trickle_wallet::store::{Store, WriteBatch};
use trickle_wallet::{ChannelClientError, Transport, Wallet};

/// The site, as an origin (the payee serves `common::SITE`).
const ORIGIN: &str = "https://site.example";

fn url(n: u32) -> String {
    format!("{ORIGIN}/articles/{n}")
}

struct Setup {
    node: Node,
    store: Counted,
    /// The same store, whose writes can be made to fail.
    disk: FailingStore<Counted>,
    wallet: Wallet<FailingStore<Counted>>,
    budgets: Budgets<FailingStore<Counted>>,
    client: AsyncClient,
    tip: ChainTip,
    /// The first payment the site's offers ask (one page unless a test says otherwise).
    offered_first_payment: Amount,
}

/// A funded wallet, and a payee whose first payment is one page.
async fn setup() -> (Setup, Payee) {
    let node = Node::start(Config::default()).await.expect("node");
    let client = Builder::new(node.url()).build_async().expect("client");
    let store = Counted::default();
    let disk = FailingStore::new(store.clone());
    let (wallet, tip) = funded_wallet(&node, &client, disk.clone()).await;
    let mut payee = Payee::new(tip);
    payee.policy.min_payment = PRICE;
    let setup = Setup {
        node,
        store,
        disk: disk.clone(),
        wallet,
        budgets: Budgets::new(disk),
        client,
        tip,
        offered_first_payment: PRICE,
    };
    (setup, payee)
}

impl Setup {
    /// Answers the 402 of page `n` offered by `payee`, over `transport`.
    async fn answer_with<T: Transport>(
        &mut self,
        payee: &Payee,
        transport: &T,
        n: u32,
    ) -> Result<Answer, PayError> {
        self.answer_at(payee, transport, &url(n)).await
    }

    /// Answers the 402 of `url` offered by `payee`, over `transport`. The user approves the
    /// lock of a new channel when asked (the payee's minimum channel is above every limit
    /// these tests approve); every other ask is returned.
    async fn answer_at<T: Transport>(
        &mut self,
        payee: &Payee,
        transport: &T,
        url: &str,
    ) -> Result<Answer, PayError> {
        let answer = self.answer_as(payee, transport, url, false).await?;
        match &answer {
            Answer::Ask(ask) if matches!(ask.reason, AskReason::LockAboveLimit { .. }) => {
                self.answer_as(payee, transport, url, true).await
            }
            _ => Ok(answer),
        }
    }

    /// Answers the 402 of `url` offered by `payee`, over `transport`; `confirmed`: the user
    /// approved this payment.
    async fn answer_as<T: Transport>(
        &mut self,
        payee: &Payee,
        transport: &T,
        url: &str,
        confirmed: bool,
    ) -> Result<Answer, PayError> {
        let policy = OfferPolicy::default();
        let ctx = PayContext {
            transport,
            chain: &self.client,
            tip: self.tip,
            fee_rate: FeeRate::from_sat_per_vb_u32(2),
            network: Network::Regtest,
            policy: &policy,
            now: now(),
            progress: &|_| {},
        };
        let header = required(payee, url, self.offered_first_payment);
        let answer = self
            .wallet
            .answer_offer(&self.budgets, &ctx, url, &header, confirmed)
            .await?;
        Ok(answer.commit(&(&self.wallet, &self.budgets)).await?)
    }

    /// Takes the receipt `header` of `url` and commits it.
    async fn take_receipt(&self, url: &str, header: &str) -> Result<Option<ReceiptView>, PayError> {
        let staged = self
            .wallet
            .take_receipt(
                &WriteBatch::new(),
                &self.budgets,
                url,
                header,
                self.tip,
                now(),
            )
            .await?;
        match staged {
            Some(staged) => Ok(Some(staged.commit(&(&self.wallet, &self.budgets)).await?)),
            None => Ok(None),
        }
    }

    /// The next page's pre-armed payment, committed.
    async fn pre_arm_site(&self) -> Result<Option<String>, PayError> {
        let armed = self
            .wallet
            .pre_arm_site(&WriteBatch::new(), &self.budgets, ORIGIN, self.tip, now())
            .await?;
        Ok(armed.commit(&(&self.wallet, &self.budgets)).await?)
    }

    async fn answer(&mut self, payee: &Payee, n: u32) -> Answer {
        self.answer_with(payee, payee, n).await.expect("answered")
    }

    /// Answers page `n`, has the payee charge it and applies the receipt.
    async fn load(&mut self, payee: &Payee, n: u32) -> Answer {
        let answer = self.answer(payee, n).await;
        if let Answer::Pay { header, .. } = &answer {
            let receipt = payee.charge(header, PRICE);
            assert!(receipt.success, "page {n}: {receipt:?}");
            self.take_receipt(&url(n), &receipt.to_header())
                .await
                .expect("receipt applied")
                .expect("a receipt of ours");
        }
        answer
    }

    async fn approve(&self, limit: u64) {
        self.approve_up_to(limit, PRICE).await;
    }

    /// Approves the site for `limit` a day, payments of at most `max_price` each, pages at
    /// the price without asking.
    async fn approve_up_to(&self, limit: u64, max_price: Amount) {
        self.approve_site(ORIGIN, limit, max_price).await;
    }

    async fn approve_site(&self, origin: &str, limit: u64, max_price: Amount) {
        let terms = Terms {
            limit: Amount::from_sat(limit),
            period: Period::Day,
            max_price,
            auto_approve: Some(PRICE),
        };
        let budget = Budget::new(origin, terms, now()).expect("budget");
        self.budgets.save(&budget).await.expect("saved");
    }

    /// What the site's current channel has signed to the payee, sat (zero without one).
    async fn signed(&self, payee: &Payee) -> u64 {
        let record = self
            .wallet
            .channel(ORIGIN, &payee.public_key())
            .await
            .expect("read");
        let channel = record.as_ref().and_then(|r| match &r.state.state {
            PayerState::Closed { channel, .. } | PayerState::Refunded { channel, .. } => {
                Some(channel)
            }
            state => state.committed_channel(),
        });
        channel.map_or(0, |c| c.paid().to_sat())
    }

    /// The payee closes its channel; the settlement confirms and the wallet sees it.
    async fn settle(&mut self, payee: &Payee) {
        let settlement = payee.close();
        self.node
            .broadcast(&settlement)
            .expect("settlement relayed");
        self.node.mine(1).await.expect("mined");
        let seen = self
            .wallet
            .check_spent_contracts(&self.client, 1)
            .await
            .expect("checked");
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].1.is_ok(), "{seen:?}");
    }

    async fn spent_reserved(&self) -> (u64, u64) {
        self.spent_reserved_at(ORIGIN).await
    }

    async fn spent_reserved_at(&self, origin: &str) -> (u64, u64) {
        let b = self
            .budgets
            .load(origin)
            .await
            .expect("load")
            .expect("budget");
        let s = b.status(now());
        (s.spent.to_sat(), s.reserved.to_sat())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn without_a_budget_nothing_is_signed_and_the_user_is_asked() {
    let (mut s, payee) = setup().await;
    let Answer::Ask(ask) = s.answer(&payee, 1).await else {
        panic!("paid without a budget")
    };
    assert_eq!(ask.reason, AskReason::NoBudget);
    assert_eq!((ask.origin.as_str(), ask.price), (ORIGIN, PRICE));
    assert!(!ask.has_channel);
    assert!(ask.open_fee.is_some_and(|f| f > Amount::ZERO), "{ask:?}");
    assert!(s.wallet.channels().await.expect("channels").is_empty());
}

/// S4: a site's page could search the balance with offers whose minimum channel goes down,
/// each opening the wallet cannot fund refused and the first it can paid. A channel that locks
/// more than the budget's limit is never opened without the user, whatever the auto-approve.
#[tokio::test(flavor = "current_thread")]
async fn a_channel_above_the_limit_is_asked_for_even_with_auto_approve() {
    let (mut s, payee) = setup().await;
    let limit = 3 * PRICE.to_sat();
    s.approve(limit).await;
    let before = (s.wallet.balance(), s.wallet.transactions().len());
    for _ in 0..2 {
        let answer = s.answer_as(&payee, &payee, &url(1), false).await;
        let Ok(Answer::Ask(ask)) = answer else {
            panic!("opened without asking: {answer:?}")
        };
        assert_eq!(
            ask.reason,
            AskReason::LockAboveLimit {
                lock: payee.policy.min_channel_value,
                limit: Amount::from_sat(limit),
            }
        );
        assert_eq!(ask.channel_value, payee.policy.min_channel_value, "shown");
        assert!(!ask.has_channel);
    }
    assert!(s.wallet.channels().await.expect("channels").is_empty());
    let after = (s.wallet.balance(), s.wallet.transactions().len());
    assert_eq!(after, before, "no contract built");
    assert_eq!(s.spent_reserved().await, (0, 0), "nothing reserved");
    // The user approves it: the channel opens.
    let answer = s.answer_as(&payee, &payee, &url(1), true).await;
    assert!(
        matches!(answer, Ok(Answer::Pay { signed, .. }) if signed == PRICE),
        "{answer:?}"
    );
}

/// Within the limit, a channel opens as before, without asking.
#[tokio::test(flavor = "current_thread")]
async fn a_channel_within_the_limit_opens_without_asking() {
    let (mut s, payee) = setup().await;
    s.approve(payee.policy.min_channel_value.to_sat()).await;
    let answer = s.answer_as(&payee, &payee, &url(1), false).await;
    assert!(
        matches!(answer, Ok(Answer::Pay { signed, .. }) if signed == PRICE),
        "{answer:?}"
    );
    let channels = s.wallet.channels().await.expect("channels");
    assert_eq!(channels.len(), 1, "one channel opened");
}

#[tokio::test(flavor = "current_thread")]
async fn the_budget_counts_what_is_signed_and_stops_exactly_at_its_limit() {
    let (mut s, payee) = setup().await;
    s.approve(3 * PRICE.to_sat()).await;
    // The channel's first payment (one page) pays page 1.
    assert!(matches!(s.load(&payee, 1).await, Answer::Pay { signed, .. } if signed == PRICE));
    assert_eq!(s.spent_reserved().await, (10, 0));
    for n in 2..=3 {
        assert!(matches!(s.load(&payee, n).await, Answer::Pay { signed, .. } if signed == PRICE));
    }
    assert_eq!(s.spent_reserved().await, (30, 0));
    let Answer::Ask(ask) = s.answer(&payee, 4).await else {
        panic!("paid beyond the budget")
    };
    assert_eq!(
        ask.reason,
        AskReason::BudgetExhausted {
            remaining: Amount::ZERO,
            needed: PRICE
        }
    );
    assert_eq!(payee.ledger().paid, PRICE * 3, "nothing more was signed");
}

#[tokio::test(flavor = "current_thread")]
async fn pre_armed_pages_read_nothing_from_the_store() {
    let (mut s, payee) = setup().await;
    s.approve(100 * PRICE.to_sat()).await;
    s.load(&payee, 1).await;
    // What the extension does per page: the receipt of the page, then the next page's payment.
    let mut armed = s
        .pre_arm_site()
        .await
        .expect("pre-armed")
        .expect("a channel and a budget");
    let before = s.store.reads_and_listings();
    for n in 2..=11 {
        let receipt = payee.charge(&armed, PRICE);
        assert!(receipt.success, "page {n}: {receipt:?}");
        s.take_receipt(&url(n), &receipt.to_header())
            .await
            .expect("receipt applied")
            .expect("a receipt of ours");
        armed = s
            .pre_arm_site()
            .await
            .expect("pre-armed")
            .expect("a channel and a budget");
    }
    assert_eq!(
        s.store.reads_and_listings(),
        before,
        "ten pages, no read and no listing"
    );
    assert_eq!(payee.ledger().consumed, PRICE * 11);
    assert_eq!(
        s.spent_reserved().await,
        (110, 10),
        "the next page's increment reserved"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_receipt_lost_in_a_crash_stays_reserved_until_the_payee_is_asked() {
    let (mut s, payee) = setup().await;
    s.approve(10 * PRICE.to_sat()).await;
    s.load(&payee, 1).await;
    let Answer::Pay { header, .. } = s.answer(&payee, 2).await else {
        panic!("not paid")
    };
    assert_eq!(s.spent_reserved().await, (10, 10));
    // The payee takes the payment; the response never reaches the wallet.
    assert!(payee.charge(&header, PRICE).success);
    let committed = s
        .wallet
        .reconcile(&s.budgets, &payee, s.tip, now())
        .await
        .expect("reconciled");
    assert_eq!(committed, PRICE);
    assert_eq!(s.spent_reserved().await, (20, 0));
}

/// A channel endpoint that refuses everything.
struct Down;

impl Transport for Down {
    async fn post_json(&self, _: &str, _: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        Err("connection refused".into())
    }

    async fn get(&self, _: &str) -> Result<(u16, Vec<u8>), String> {
        Err("connection refused".into())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_channel_that_does_not_open_releases_its_reservation() {
    let (mut s, payee) = setup().await;
    s.approve(10 * PRICE.to_sat()).await;
    let failed = s.answer_with(&payee, &Down, 1).await;
    assert!(
        matches!(&failed, Err(e) if e.code() == "channel"),
        "{failed:?}"
    );
    assert_eq!(s.spent_reserved().await, (0, 0), "nothing stays reserved");
}

/// The payee's endpoint, whose answer to the contract (`PROVIDE_CONTRACT`) is lost: the payee
/// opens the channel, the wallet hears nothing, as when the worker stops at that moment.
struct LostOpen<'a>(&'a Payee);

impl Transport for LostOpen<'_> {
    async fn post_json(&self, url: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        let answer = self.0.post_json(url, body).await?;
        if url.ends_with("/open") {
            Ok(answer)
        } else {
            Err("connection reset".into())
        }
    }

    async fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String> {
        self.0.get(url).await
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_opening_cut_short_is_completed_not_replaced() {
    let (mut s, payee) = setup().await;
    s.approve(10 * PRICE.to_sat()).await;
    let failed = s.answer_with(&payee, &LostOpen(&payee), 1).await;
    assert!(failed.is_err(), "{failed:?}");
    let opened = payee.ledger();
    assert_eq!(opened.paid, PRICE, "the payee holds the first payment");
    assert_eq!(
        s.spent_reserved().await,
        (0, 10),
        "the first payment stays reserved"
    );

    // The next offer completes that channel (resumed by its contract) and pays over it.
    s.load(&payee, 2).await;
    let channels = s.wallet.channels().await.expect("channels");
    assert_eq!(channels.len(), 1, "one channel: {channels:?}");
    let ours = channels[0].state.state.committed_channel().expect("open");
    assert_eq!(
        ours.contract_txid(),
        payee.channel_txid(),
        "the channel the payee opened"
    );
    assert_eq!(payee.ledger().paid, ours.acknowledged, "both sides agree");
    assert_eq!(payee.ledger().consumed, PRICE, "page 2 was charged");
    // Asking the payee settles the first payment's reservation: what was signed is spent, once.
    s.wallet
        .reconcile(&s.budgets, &payee, s.tip, now())
        .await
        .expect("reconciled");
    assert_eq!(s.spent_reserved().await, (ours.paid().to_sat(), 0));
}

#[tokio::test(flavor = "current_thread")]
async fn a_receipt_for_another_site_is_refused() {
    let (mut s, payee) = setup().await;
    s.approve(10 * PRICE.to_sat()).await;
    let Answer::Pay { header, .. } = s.answer(&payee, 1).await else {
        panic!("not paid")
    };
    let receipt = payee.charge(&header, PRICE);
    let other = s
        .take_receipt("https://elsewhere.example/a", &receipt.to_header())
        .await;
    assert!(
        matches!(&other, Err(e) if e.code() == "channel"),
        "{other:?}"
    );
    // Garbage is an error, not a panic.
    let junk = s.take_receipt(&url(1), "not base64!").await;
    assert!(
        matches!(&junk, Err(e) if e.code() == "bad_header"),
        "{junk:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_first_payment_above_the_offers_minimum_is_refused() {
    let (mut s, mut payee) = setup().await;
    s.approve(100 * PRICE.to_sat()).await;
    // The offer says one page; the payee's INITIATE asks 5,000 sat.
    payee.policy.min_payment = Amount::from_sat(5_000);
    let refused = s.answer_with(&payee, &payee, 1).await;
    assert!(
        matches!(
            &refused,
            Err(PayError::Channel(ChannelClientError::Channel(
                ChannelError::MinPaymentTooLarge { .. }
            )))
        ),
        "{refused:?}"
    );
    assert_eq!(s.signed(&payee).await, 0, "nothing signed");
    assert_eq!(s.spent_reserved().await, (0, 0));

    // An honest channel first, of enough pages to pay the settlement's fee; the payee closes
    // it, and asks 5,000 sat of the reopening.
    payee.policy.min_payment = PRICE;
    for n in 1..=50 {
        assert!(matches!(s.load(&payee, n).await, Answer::Pay { .. }));
    }
    let settled = s.signed(&payee).await;
    assert_eq!(settled, 50 * PRICE.to_sat());
    s.settle(&payee).await;
    payee.policy.min_payment = Amount::from_sat(5_000);
    let reopened = s.answer_with(&payee, &payee, 51).await;
    assert!(reopened.is_err(), "{reopened:?}");
    // Everything signed to the site since the approval is in the budget.
    let (spent, reserved) = s.spent_reserved().await;
    let signed = settled + s.signed(&payee).await;
    assert_eq!(signed, settled, "nothing signed in the new channel");
    assert!(
        signed <= spent + reserved,
        "{signed} > {spent} + {reserved}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_first_payment_above_the_max_price_is_paid_within_the_limit() {
    // The demo's payee: pages of 10 sat, channels opened with 1,000 sat (which pay the close).
    let (mut s, mut payee) = setup().await;
    let first = Amount::from_sat(1_000);
    s.offered_first_payment = first;
    payee.policy.min_payment = first;
    // The budget the approval screen suggests for a 10 sat page: 100 pages a week.
    let terms = trickle_wallet::site::suggested_terms(PRICE);
    assert_eq!(terms.max_price, PRICE);
    s.budgets
        .save(&Budget::new(ORIGIN, terms, now()).expect("budget"))
        .await
        .expect("saved");
    for n in 1..=3 {
        let answer = s.load(&payee, n).await;
        assert!(matches!(answer, Answer::Pay { .. }), "page {n}: {answer:?}");
    }
    // The first payment is what was signed, all of it spent from the budget; pages two and
    // three came from its credit.
    assert_eq!(s.signed(&payee).await, first.to_sat());
    assert_eq!(s.spent_reserved().await, (first.to_sat(), 0));
}

#[tokio::test(flavor = "current_thread")]
async fn the_payee_sets_neither_how_much_is_locked_nor_for_how_long() {
    // The payee's minimum channel is above the client's cap per channel.
    let (mut s, mut payee) = setup().await;
    s.approve(100).await;
    payee.policy.min_channel_value = Amount::from_sat(150_000);
    let refused = s.answer_with(&payee, &payee, 1).await;
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("minimum channel of 150000 sat")),
        "{refused:?}"
    );
    assert!(
        s.wallet.channels().await.expect("channels").is_empty(),
        "no contract built"
    );

    // The offer says 144 blocks; the payee's INITIATE sets the expiry 4,000 blocks away.
    let (mut s, mut payee) = setup().await;
    s.approve(100).await;
    payee.policy.min_expiry_blocks = 4_000;
    payee.policy.max_expiry_blocks = 4_000;
    let refused = s.answer_with(&payee, &payee, 1).await;
    assert!(
        matches!(&refused, Err(e) if e.code() == "channel"),
        "{refused:?}"
    );
    let built = s.wallet.channels().await.expect("channels");
    assert!(
        built.iter().all(|r| r.state.state.contract().is_none()),
        "no contract built: {built:?}"
    );
    assert_eq!(s.spent_reserved().await, (0, 0));
    assert_eq!(
        s.wallet.balance().confirmed,
        Amount::from_sat(200_000),
        "nothing locked"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_change_swept_below_dust_is_reserved_as_signed() {
    // The first payment, one page and 200 sat: the first payment would leave less than dust
    // (294 sat) and sign the whole channel, beyond what was reserved for it. Refused.
    let (mut s, mut payee) = setup().await;
    s.approve(1_000).await;
    let value = PRICE + PRICE + Amount::from_sat(200);
    (
        payee.policy.min_channel_value,
        payee.policy.max_channel_value,
    ) = (value, value);
    let refused = s.answer_with(&payee, &payee, 1).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        (s.signed(&payee).await, s.spent_reserved().await),
        (0, (0, 0))
    );

    // 330 sat: the fourth page would leave 290 sat, swept into its payment. Reserved as
    // signed: the limit bounds it, the max price only the page's price.
    let value = Amount::from_sat(330);
    let (mut s, mut payee) = setup().await;
    s.approve_up_to(1_000, PRICE).await;
    (
        payee.policy.min_channel_value,
        payee.policy.max_channel_value,
    ) = (value, value);
    for n in 1..=4 {
        let answer = s.answer_with(&payee, &payee, n).await;
        let signed = s.signed(&payee).await;
        let (spent, reserved) = s.spent_reserved().await;
        assert_eq!(signed, spent + reserved, "page {n}: {answer:?}");
        let Ok(Answer::Pay { header, .. }) = answer else {
            panic!("page {n}: {answer:?}");
        };
        let receipt = payee.charge(&header, PRICE);
        s.take_receipt(&url(n), &receipt.to_header())
            .await
            .expect("receipt applied");
    }
    assert_eq!(s.signed(&payee).await, value.to_sat());
    assert_eq!(s.spent_reserved().await, (value.to_sat(), 0));
}

/// The payee's endpoint, except that `GET session` says the channel is closing and holds one
/// page less than it does.
struct ClaimsClosing<'a>(&'a Payee);

impl Transport for ClaimsClosing<'_> {
    async fn post_json(&self, url: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        self.0.post_json(url, body).await
    }

    async fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String> {
        let (status, body) = self.0.get(url).await?;
        let mut held: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let paid: u64 = held["paid"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .ok_or("paid")?;
        held["state"] = "closing".into();
        held["paid"] = (paid - PRICE.to_sat()).to_string().into();
        Ok((status, held.to_string().into_bytes()))
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_payee_claiming_closing_releases_nothing_it_may_still_settle() {
    let (mut s, payee) = setup().await;
    s.approve(100 * PRICE.to_sat()).await;
    s.load(&payee, 1).await;
    for n in 2..=21 {
        let Answer::Pay { header, .. } = s.answer(&payee, n).await else {
            panic!("page {n} not paid")
        };
        // The payee takes the payment and withholds the receipt.
        let receipt = payee.charge(&header, PRICE);
        s.wallet
            .reconcile(&s.budgets, &ClaimsClosing(&payee), s.tip, now())
            .await
            .expect("reconciled");
        let (spent, reserved) = s.spent_reserved().await;
        let signed = s.signed(&payee).await;
        assert!(
            signed <= spent + reserved,
            "page {n}: {signed} > {spent} + {reserved}"
        );
        // Any later response carries the full total.
        s.take_receipt(&url(n), &receipt.to_header())
            .await
            .expect("receipt applied");
        let (spent, reserved) = s.spent_reserved().await;
        assert_eq!(s.signed(&payee).await, spent + reserved, "page {n}");
    }
    assert_eq!(s.spent_reserved().await, (21 * PRICE.to_sat(), 0));
}

/// Site A's endpoint never answers `GET session`; the others' payee answers.
struct OneHangs<'a>(&'a Payee);

impl Transport for OneHangs<'_> {
    async fn post_json(&self, url: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        self.0.post_json(url, body).await
    }

    async fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String> {
        if url.starts_with(ORIGIN) {
            std::future::pending::<()>().await;
        }
        self.0.get(url).await
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_payee_that_never_answers_does_not_hold_up_the_others() {
    // Site A sorts first, so a wallet asking one payee after the other waits on it first.
    const OTHER: &str = "https://twin.example";
    let (mut s, payee) = setup().await;
    let mut other = Payee::on_site(s.tip, "twin.example");
    other.policy.min_payment = PRICE;
    s.approve(10 * PRICE.to_sat()).await;
    s.approve_site(OTHER, 10 * PRICE.to_sat(), PRICE).await;
    // One page each opens its channel; each second page's receipt is lost.
    s.load(&payee, 1).await;
    let Answer::Pay { header, .. } = s.answer(&payee, 2).await else {
        panic!("A not paid")
    };
    assert!(payee.charge(&header, PRICE).success);
    let other_page = |n: u32| format!("{OTHER}/articles/{n}");
    for n in 1..=2 {
        let answer = s.answer_at(&other, &other, &other_page(n)).await;
        let Ok(Answer::Pay { header, .. }) = answer else {
            panic!("B page {n}: {answer:?}")
        };
        let receipt = other.charge(&header, PRICE);
        if n == 1 {
            s.take_receipt(&other_page(n), &receipt.to_header())
                .await
                .expect("receipt applied");
        }
    }
    assert_eq!(s.spent_reserved().await, (10, 10));
    assert_eq!(s.spent_reserved_at(OTHER).await, (10, 10));

    let reconciled = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        s.wallet
            .reconcile(&s.budgets, &OneHangs(&other), s.tip, now()),
    )
    .await;
    assert!(reconciled.is_err(), "A never answers: {reconciled:?}");
    assert_eq!(
        s.spent_reserved_at(OTHER).await,
        (20, 0),
        "B's increment committed meanwhile"
    );
    assert_eq!(s.spent_reserved().await, (10, 10), "A's stays reserved");
}

/// Every key of `store` with its value.
async fn contents(store: &Counted) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for key in store.keys("").await.expect("keys") {
        let value = store.get(&key).await.expect("get");
        out.push((key, value));
    }
    out
}

#[tokio::test(flavor = "current_thread")]
async fn a_payment_whose_write_fails_is_not_sent_and_changes_nothing_in_memory() {
    let (mut s, payee) = setup().await;
    s.approve(100 * PRICE.to_sat()).await;
    s.load(&payee, 1).await;
    s.load(&payee, 2).await;
    let key = payee.public_key();
    let channel = s.wallet.channel(ORIGIN, &key).await.expect("read");
    let budget = s.budgets.load(ORIGIN).await.expect("budget");
    let ledger = payee.ledger();
    let stored = contents(&s.store).await;

    // Page 3 needs a new signature; its write fails. The staged payment is refused and its
    // header never had: nothing can be sent. The wallet and the budgets remember nothing of it.
    s.disk.fail_writes(true);
    let err = s
        .answer_with(&payee, &payee, 3)
        .await
        .expect_err("not paid when the write fails");
    assert_eq!(err.code(), "storage", "{err}");
    assert!(err.to_string().contains("injected write failure"), "{err}");
    assert_eq!(s.wallet.channel(ORIGIN, &key).await.expect("read"), channel);
    assert_eq!(s.budgets.load(ORIGIN).await.expect("budget"), budget);
    assert_eq!(contents(&s.store).await, stored, "the store is as it was");
    // The receipt of page 2 and the pre-armed payment after it fail alike.
    assert!(s.pre_arm_site().await.is_err());
    assert_eq!(s.wallet.channel(ORIGIN, &key).await.expect("read"), channel);
    assert_eq!(s.budgets.load(ORIGIN).await.expect("budget"), budget);
    assert_eq!(payee.ledger(), ledger, "the payee got nothing");

    // The disk works again: page 3 is paid with exactly one more price, from the state that
    // was stored, and the budget holds exactly that.
    s.disk.fail_writes(false);
    let Answer::Pay { header, signed } = s.answer(&payee, 3).await else {
        panic!("page 3 is paid")
    };
    assert_eq!(signed, PRICE);
    let before = budget.expect("budget").status(now());
    let after = s
        .budgets
        .load(ORIGIN)
        .await
        .expect("budget")
        .expect("budget")
        .status(now());
    assert_eq!(
        after.spent + after.reserved,
        before.spent + before.reserved + PRICE
    );
    assert_eq!(
        trickle_channel::http::PaymentSignature::from_header(&header)
            .expect("header")
            .payload
            .amount,
        ledger.paid + PRICE
    );
    assert!(payee.charge(&header, PRICE).success);
}
