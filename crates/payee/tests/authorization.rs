//! Only the payer can spend its channel, each ticket once, and only for what was served
//! (`docs/protocol.md`, section 2): every test asserts what the store holds afterwards.
#![allow(clippy::unwrap_used)] // tests may panic on what cannot happen

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bitcoin::Amount;
use common::{fetch, request, stored_totals, Client};
use reqwest::Method;
use trickle_channel::http::{
    ChannelPayment, PaymentRequired, PaymentSignature, Resource, X402_VERSION,
};
use trickle_channel::Version;
use trickle_payee::proxy::{self, Upstream};
use trickle_payee::store::MemoryStore;
use trickle_payee::{Payee, Price, Prices};

/// A site priced at 10 sat under `/articles`, with pages that fail.
fn site() -> Router {
    Router::new()
        .route(
            "/articles/{n}",
            get(|| async { "article" }).post(|| async { "posted" }),
        )
        .route(
            "/articles/broken",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "broken") })
                .post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "broken") }),
        )
}

fn prices() -> Prices {
    Prices::new().with("/articles", Price::sat(10))
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A payee serving `app` (its endpoint and the site behind its layer or proxy), with an open channel of
/// 1,000 sat credit; returns the payee, its URL, the client and an offer for `/articles/1`.
async fn setup(
    tag: u8,
    app: impl FnOnce(&Payee) -> Router,
) -> (Payee, String, Client, PaymentRequired) {
    let payee =
        common::start_payee(Arc::new(MemoryStore::new()), common::RecordingChain::new()).await;
    let url = serve(app(&payee)).await;
    let endpoint = format!("{url}{}", trickle_payee::DEFAULT_ENDPOINT_PATH);
    let client = Client::open(&endpoint, Version::V2, tag).await;
    let offer = fetch(&format!("{url}/articles/1"), None)
        .await
        .required
        .unwrap();
    assert_eq!(stored_totals(&payee, client.txid()).await, (1_000, 0));
    (payee, url, client, offer)
}

async fn layered(tag: u8) -> (Payee, String, Client, PaymentRequired) {
    setup(tag, |payee| {
        payee.endpoint().merge(site().layer(payee.layer(prices())))
    })
    .await
}

#[tokio::test]
async fn a_header_naming_only_the_channel_and_its_total_spends_nothing() {
    let (payee, url, client, offer) = layered(100).await;
    // What anyone can read on chain and guess: the contract txid and the channel's total.
    let theft = PaymentSignature {
        x402_version: X402_VERSION,
        resource: Resource {
            url: format!("{url}/articles/1"),
            description: String::new(),
            mime_type: String::new(),
        },
        accepted: offer.accepts[0].clone(),
        payload: ChannelPayment {
            channel: client.txid(),
            amount: client.paid(),
            update: None,
            nonce: None,
            ticket: None,
            authorization: None,
        },
    };
    // The same with a ticket of the thief's choosing, which anyone can add.
    let mut with_ticket = theft.clone();
    with_ticket.payload.ticket = Some("BQUFBQUFBQUFBQUFBQUFBQ".into());
    for theft in [with_ticket, theft] {
        let r = fetch(&format!("{url}/articles/2"), Some(&theft.to_header())).await;
        assert_eq!(
            (r.status, r.reason().as_deref()),
            (402, Some("bad_authorization"))
        );
        assert_ne!(r.body, "article");
    }
    assert_eq!(stored_totals(&payee, client.txid()).await, (1_000, 0));
}

#[tokio::test]
async fn a_header_with_any_field_changed_is_refused_and_charges_nothing() {
    let (payee, url, mut client, offer) = layered(101).await;
    let article = format!("{url}/articles/1");
    let update = client.sign(Amount::from_sat(10));
    let good = PaymentSignature::from_header(&client.header(&offer, Some(&update), false)).unwrap();
    let mut changes: Vec<PaymentSignature> = Vec::new();
    let mut c = good.clone();
    c.payload.amount += Amount::from_sat(1);
    changes.push(c);
    let mut c = good.clone();
    c.payload.ticket = Some("AAAAAAAAAAAAAAAAAAAAAA".into());
    changes.push(c);
    let mut c = good.clone();
    c.payload.update = None;
    changes.push(c);
    let mut c = good.clone();
    c.resource.url = format!("{url}/articles/2");
    changes.push(c);
    let mut c = good.clone();
    c.payload.authorization = Some("A".repeat(43));
    changes.push(c);
    for changed in changes {
        let r = fetch(&article, Some(&changed.to_header())).await;
        assert_eq!(
            (r.status, r.reason().as_deref()),
            (402, Some("bad_authorization")),
            "{changed:?}"
        );
        assert_eq!(stored_totals(&payee, client.txid()).await, (1_000, 0));
    }
    // The header as the client made it pays.
    let r = fetch(&article, Some(&good.to_header())).await;
    assert_eq!((r.status, r.consumed()), (200, 10));
    assert_eq!(stored_totals(&payee, client.txid()).await, (1_010, 10));
}

#[tokio::test]
async fn a_captured_header_is_a_free_reload_at_its_url_and_refused_at_another() {
    let (payee, url, client, offer) = layered(102).await;
    let (one, two) = (format!("{url}/articles/1"), format!("{url}/articles/2"));
    for nonce in [true, false] {
        let offer = fetch(&one, None).await.required.unwrap_or(offer.clone());
        let header = client.header(&offer, None, nonce);
        let before = stored_totals(&payee, client.txid()).await;
        let paid = fetch(&one, Some(&header)).await;
        assert_eq!((paid.status, paid.consumed()), (200, 10));
        let charged = (before.0, before.1 + 10);
        assert_eq!(stored_totals(&payee, client.txid()).await, charged);
        // Replayed at the same URL: served, not charged.
        let again = fetch(&one, Some(&header)).await;
        assert_eq!(
            (again.status, again.consumed(), again.body.as_str()),
            (200, 0, "article")
        );
        // Replayed at another URL: a fresh offer, nothing charged, nothing served.
        let elsewhere = fetch(&two, Some(&header)).await;
        assert_eq!(
            (elsewhere.status, elsewhere.reason().as_deref()),
            (402, Some("wrong_resource"))
        );
        assert!(elsewhere.required.is_some());
        // Replayed as a POST at its URL: not a free reload.
        let posted = request(Method::POST, &one, Some(&header)).await;
        assert_eq!(
            (posted.status, posted.reason().as_deref()),
            (402, Some("nonce_spent"))
        );
        assert_eq!(
            stored_totals(&payee, client.txid()).await,
            charged,
            "nonce {nonce}"
        );
    }
}

#[tokio::test]
async fn the_same_pre_armed_header_sent_at_once_is_charged_once() {
    let (payee, url, client, offer) = layered(103).await;
    let article = format!("{url}/articles/1");
    let header = client.header(&offer, None, false);
    let sent = (0..8).map(|_| {
        let (article, header) = (article.clone(), header.clone());
        tokio::spawn(async move { fetch(&article, Some(&header)).await })
    });
    let mut consumed = 0;
    for answer in sent {
        let answer = answer.await.unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (200, "article"));
        consumed += answer.consumed();
    }
    assert_eq!(consumed, 10, "one of them paid, the others were reloads");
    assert_eq!(stored_totals(&payee, client.txid()).await, (1_000, 10));
}

#[tokio::test]
async fn answers_the_site_did_not_serve_consume_nothing() {
    let (payee, url, mut client, offer) = layered(104).await;
    let broken = format!("{url}/articles/broken");
    let missing = format!("{url}/articles/1/missing");
    // An increment with the failed request stays as credit.
    let update = client.sign(Amount::from_sat(10));
    let r = fetch(&broken, Some(&client.header(&offer, Some(&update), false))).await;
    assert_eq!((r.status, r.consumed(), r.credit()), (500, 0, 1_010));
    assert_eq!(stored_totals(&payee, client.txid()).await, (1_010, 0));
    let r = fetch(&missing, Some(&client.header(&offer, None, false))).await;
    assert_eq!((r.status, r.consumed()), (404, 0));
    // A POST is charged before the site acts, and given back when it fails.
    let r = request(
        Method::POST,
        &broken,
        Some(&client.header(&offer, None, false)),
    )
    .await;
    assert_eq!((r.status, r.consumed()), (500, 0));
    assert_eq!(stored_totals(&payee, client.txid()).await, (1_010, 0));
    // A served one is charged.
    let r = fetch(
        &format!("{url}/articles/1"),
        Some(&client.header(&offer, None, false)),
    )
    .await;
    assert_eq!((r.status, r.consumed()), (200, 10));
    assert_eq!(stored_totals(&payee, client.txid()).await, (1_010, 10));
}

#[tokio::test]
async fn the_proxy_charges_nothing_when_the_site_fails_or_is_down() {
    let upstream = serve(site()).await;
    let (payee, url, client, offer) = setup(105, |payee| {
        proxy::app(payee, prices(), Upstream::new(&upstream).unwrap())
    })
    .await;
    let r = fetch(
        &format!("{url}/articles/broken"),
        Some(&client.header(&offer, None, false)),
    )
    .await;
    assert_eq!((r.status, r.consumed()), (500, 0));
    let r = fetch(
        &format!("{url}/articles/1/missing"),
        Some(&client.header(&offer, None, false)),
    )
    .await;
    assert_eq!((r.status, r.consumed()), (404, 0));
    assert_eq!(stored_totals(&payee, client.txid()).await, (1_000, 0));
    let r = fetch(
        &format!("{url}/articles/1"),
        Some(&client.header(&offer, None, false)),
    )
    .await;
    assert_eq!(
        (r.status, r.consumed(), r.body.as_str()),
        (200, 10, "article")
    );
    assert_eq!(stored_totals(&payee, client.txid()).await, (1_000, 10));

    // An upstream nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = proxy::app(&payee, prices(), Upstream::new(&down).unwrap());
    let down_url = serve(app).await;
    let r = fetch(
        &format!("{down_url}/articles/1"),
        Some(&client.header(&offer, None, false)),
    )
    .await;
    assert_eq!((r.status, r.consumed()), (502, 0));
    assert_eq!(stored_totals(&payee, client.txid()).await, (1_000, 10));
}
