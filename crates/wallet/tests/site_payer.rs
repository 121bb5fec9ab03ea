//! The browser's payer (`trickle_wallet::app::sites::SitePayer`), as the extension's worker
//! drives it, against the in-process payee on a local chain: a budget approved, a 402 asked
//! about and then paid, a receipt that records the payment in the history and pre-arms the
//! next page in one write, a write that fails leaving history and budget as they were, and
//! the views the pages show.

mod common;

use bdk_esplora::esplora_client::{AsyncClient, Builder};
use common::{funded_wallet, required, Counted, FailingStore, Payee, PRICE};
use trickle_channel::http::{PaymentRequired, PaymentSignature};
use trickle_regtest::{Config, Node};
use trickle_wallet::app::sites::{Env, SitePayer};
use trickle_wallet::app::view::{OfferAnswer, TermsView};
use trickle_wallet::budget::Period;
use trickle_wallet::payer::{answering, Sent};
use trickle_wallet::site::{receipt_in, PayError};
use trickle_wallet::Wallet;

const ORIGIN: &str = "https://site.example";

fn url(n: u32) -> String {
    format!("{ORIGIN}/articles/{n}")
}

fn now_ms() -> f64 {
    common::now() as f64 * 1000.0
}

struct Browser {
    _node: Node,
    client: AsyncClient,
    disk: FailingStore<Counted>,
    wallet: Wallet<FailingStore<Counted>>,
    payer: SitePayer<FailingStore<Counted>>,
}

impl Browser {
    async fn start() -> (Self, Payee) {
        let node = Node::start(Config::default()).await.expect("node");
        let client = Builder::new(node.url()).build_async().expect("client");
        let disk = FailingStore::new(Counted::default());
        let (wallet, tip) = funded_wallet(&node, &client, disk.clone()).await;
        let mut payee = Payee::new(tip);
        payee.policy.min_payment = PRICE;
        let payer = SitePayer::new(disk.clone());
        let browser = Self {
            _node: node,
            client,
            disk,
            wallet,
            payer,
        };
        (browser, payee)
    }

    fn env<'a>(&'a self, payee: &'a Payee) -> Env<'a, Payee, AsyncClient> {
        Env {
            transport: payee,
            chain: &self.client,
            now_ms: now_ms(),
        }
    }

    async fn offer(&mut self, payee: &Payee, n: u32, confirmed: bool) -> OfferAnswer {
        let header = required(payee, &url(n), PRICE);
        let env = Env {
            transport: payee,
            chain: &self.client,
            now_ms: now_ms(),
        };
        self.payer
            .offer(&mut self.wallet, &env, &url(n), &header, confirmed)
            .await
            .expect("answered")
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_receipt_records_the_payment_and_pre_arms_the_next_page_in_one_write() {
    let (mut b, payee) = Browser::start().await;
    let terms = TermsView {
        limit_sat: 2_000,
        period: Period::Day,
        max_price_sat: PRICE.to_sat(),
        auto_approve_sat: Some(PRICE.to_sat()),
    };
    let site = b
        .payer
        .approve(ORIGIN, terms, common::now())
        .await
        .expect("approved");
    assert_eq!((site.remaining_sat, site.revoked), (2_000, false));
    assert_eq!(
        b.payer.approved_origins().await.expect("listed"),
        vec![ORIGIN.to_owned()]
    );

    // The payee's smallest channel locks more than the limit: the user is asked, then pays.
    let asked = b.offer(&payee, 1, false).await;
    assert!(matches!(asked, OfferAnswer::Ask { .. }));
    let OfferAnswer::Pay { header, signed_sat } = b.offer(&payee, 1, true).await else {
        panic!("the approved opening pays");
    };
    assert_eq!(signed_sat, PRICE.to_sat());

    let receipt = payee.charge(&header, PRICE);
    let answer = b
        .payer
        .receipt(&b.wallet, &b.env(&payee), &url(1), &receipt)
        .await
        .expect("applied")
        .expect("a receipt of ours");
    assert_eq!(answer.payment.consumed_sat, PRICE.to_sat());
    assert_eq!(answer.payment.url, url(1));
    assert!(answer.next_error.is_none(), "{:?}", answer.next_error);
    let next = answer.next_header.expect("the next page is pre-armed");

    // The next page, paid by the pre-armed header: its receipt cannot be stored, and then
    // nothing of it is in the history or the budget.
    let second = payee.charge(&next, PRICE);
    b.disk.fail_writes(true);
    let failed = b
        .payer
        .receipt(&b.wallet, &b.env(&payee), &url(2), &second)
        .await;
    assert!(matches!(failed, Err(PayError::Budget(_))), "{failed:?}");
    b.disk.fail_writes(false);
    let view = b
        .payer
        .view(&b.wallet, common::now())
        .await
        .expect("viewed");
    assert_eq!(view.history.len(), 1, "{:?}", view.history);

    let again = b
        .payer
        .receipt(&b.wallet, &b.env(&payee), &url(2), &second)
        .await
        .expect("applied")
        .expect("a receipt of ours");
    assert_eq!(again.payment.consumed_sat, PRICE.to_sat());
    let view = b
        .payer
        .view(&b.wallet, common::now())
        .await
        .expect("viewed");
    let urls: Vec<&str> = view.history.iter().map(|p| p.url.as_str()).collect();
    assert_eq!(urls, [url(1), url(2)]);
    assert_eq!(view.channels.len(), 1);
    assert_eq!(view.channels[0].site, ORIGIN);
    assert_eq!(view.sites.len(), 1);
    let signed = view.channels[0].paid_sat;
    assert_eq!(
        view.sites[0].spent_sat + view.sites[0].reserved_sat,
        signed,
        "the budget counts what was signed"
    );
    assert!(signed <= 2_000);

    // Revoked: the site's next 402 is asked about, nothing signed.
    let revoked = b
        .payer
        .revoke(ORIGIN, common::now())
        .await
        .expect("revoked");
    assert!(revoked.revoked);
    assert!(b.payer.approved_origins().await.expect("listed").is_empty());
    let refused = b
        .payer
        .offer(
            &mut b.wallet,
            &Env {
                transport: &payee,
                chain: &b.client,
                now_ms: now_ms(),
            },
            &url(3),
            &required(&payee, &url(3), PRICE),
            false,
        )
        .await;
    let code = refused
        .as_ref()
        .map(|_| "paid")
        .unwrap_or_else(PayError::code);
    assert_eq!(code, "revoked");
    let view = b
        .payer
        .view(&b.wallet, common::now())
        .await
        .expect("viewed");
    assert_eq!(view.channels[0].paid_sat, signed, "nothing more was signed");
}

#[tokio::test(flavor = "current_thread")]
async fn a_corrective_402_carries_the_payees_account_in_its_offers_and_the_difference_is_paid() {
    let (mut b, payee) = Browser::start().await;
    let terms = TermsView {
        limit_sat: 2_000,
        period: Period::Day,
        max_price_sat: PRICE.to_sat(),
        auto_approve_sat: Some(PRICE.to_sat()),
    };
    b.payer
        .approve(ORIGIN, terms, common::now())
        .await
        .expect("approved");
    let OfferAnswer::Pay { header, .. } = b.offer(&payee, 1, true).await else {
        panic!("the approved opening pays");
    };
    let first = payee.charge(&header, PRICE);
    let answer = b
        .payer
        .receipt(&b.wallet, &b.env(&payee), &url(1), &first)
        .await
        .expect("applied")
        .expect("a receipt of ours");
    let next = answer.next_header.expect("the next page is pre-armed");
    // The pre-armed payment is charged for page 2, and its receipt is lost: sent again (page 3),
    // it brings the payee no more credit, and the payee refuses it. An x402 resource server
    // says so in its offers, not in a PAYMENT-RESPONSE.
    payee.charge(&next, PRICE);
    let refusal = payee.charge(&next, PRICE);
    assert!(!refusal.success);
    let mut corrective =
        PaymentRequired::from_header(&required(&payee, &url(3), PRICE)).expect("an offer");
    corrective.accepts[0].extra.channel_state = Some(refusal.clone());
    let corrective = corrective.to_header();

    // Without a PAYMENT-RESPONSE, the 402's offers give the account.
    let account = receipt_in(402, None, Some(&corrective)).expect("read");
    assert_eq!(account.as_ref(), Some(&refusal));
    assert_eq!(
        receipt_in(200, None, Some(&corrective)).expect("read"),
        None
    );
    let applied = b
        .payer
        .receipt(&b.wallet, &b.env(&payee), &url(3), &refusal)
        .await
        .expect("applied")
        .expect("an account of our channel");
    assert!(
        applied.pay_again,
        "a refusal for lack of credit is paid again"
    );
    assert_eq!(
        answering(Sent::Paid, applied.pay_again).ok(),
        Some(Sent::PaidAgain)
    );

    // The difference is paid: the payee then charges page 3.
    let env = Env {
        transport: &payee,
        chain: &b.client,
        now_ms: now_ms(),
    };
    let answer = b
        .payer
        .offer(&mut b.wallet, &env, &url(3), &corrective, false)
        .await
        .expect("answered");
    let OfferAnswer::Pay { header, .. } = answer else {
        panic!("the corrective 402 is paid: {answer:?}");
    };
    let sig = PaymentSignature::from_header(&header).expect("a payment");
    assert_eq!(
        sig.accepted.extra.channel_state, None,
        "accepted leaves the account out"
    );
    let served = payee.charge(&header, PRICE);
    assert!(served.success, "{served:?}");
    assert_eq!(
        payee.ledger().consumed,
        PRICE * 3,
        "pages 1, 2 and 3, each once"
    );
}
