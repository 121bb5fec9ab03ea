//! MPP framing (docs/mpp.md): every 402 carries the `WWW-Authenticate: Payment` challenge beside
//! `PAYMENT-REQUIRED`, for one offer; a payment sent as `Authorization: Payment` is charged as a
//! `PAYMENT-SIGNATURE` is, answered with `Payment-Receipt`, and refused with problem details.
#![allow(clippy::unwrap_used)] // tests may panic on what cannot happen

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::Path;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use bitcoin::Amount;
use common::{fetch, Client};
use reqwest::Method;
use trickle_channel::http::mpp::{
    time, PaymentChallenge, PaymentCredential, Problem, SessionReceipt, SessionRequest,
    PAYMENT_RECEIPT, PROBLEM_JSON,
};
use trickle_channel::http::{
    ChannelPayment, PaymentRequired, PaymentSignature, PAYMENT_REQUIRED, PAYMENT_RESPONSE,
    PAYMENT_SIGNATURE, X402_VERSION,
};
use trickle_channel::{UpdatePayment, Version, WireMessage};
use trickle_payee::store::MemoryStore;
use trickle_payee::{Clock, Payee};

/// A priced route that tells which `Authorization` values reached the site.
fn site(payee: &Payee) -> Router {
    let seen = |headers: HeaderMap| {
        let values: Vec<&str> = headers
            .get_all("authorization")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        values.join(";")
    };
    let site = Router::new()
        .route(
            "/articles/{n}",
            get(move |Path(n): Path<String>, h: HeaderMap| async move {
                format!("article {n} [{}]", seen(h))
            })
            .post(|Path(n): Path<String>| async move { format!("posted {n}") }),
        )
        .route(
            "/free",
            get(move |h: HeaderMap| async move { format!("free [{}]", seen(h)) }),
        )
        .layer(payee.layer(common::prices()));
    payee.endpoint().merge(site)
}

struct Setup {
    url: String,
    payee: Payee,
    client: Client,
    now: Arc<AtomicU64>,
}

async fn setup(tag: u8) -> Setup {
    let now = Arc::new(AtomicU64::new(1_700_000_000));
    let mut config = common::payee_config();
    config.clock = Clock::new({
        let now = now.clone();
        move || now.load(Ordering::SeqCst)
    });
    let payee = common::start_payee_with(
        config,
        Arc::new(MemoryStore::new()),
        common::RecordingChain::new(),
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = site(&payee);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let endpoint = format!("{url}{}", trickle_payee::DEFAULT_ENDPOINT_PATH);
    let client = Client::open(&endpoint, Version::V2, tag).await;
    Setup {
        url,
        payee,
        client,
        now,
    }
}

impl Setup {
    fn article(&self) -> String {
        format!("{}/articles/1", self.url)
    }

    /// What the store holds for the client's channel: (paid, consumed), in sat.
    async fn totals(&self) -> (u64, u64) {
        common::stored_totals(&self.payee, self.client.txid()).await
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The one `Payment` challenge of the answer.
    fn challenge(&self) -> PaymentChallenge {
        let all: Vec<_> = self.headers.get_all("www-authenticate").iter().collect();
        assert_eq!(all.len(), 1, "one WWW-Authenticate");
        let mut ours = PaymentChallenge::from_header(all[0].to_str().unwrap()).unwrap();
        assert_eq!(ours.len(), 1, "one Payment challenge");
        ours.remove(0)
    }

    fn offer(&self) -> PaymentRequired {
        PaymentRequired::from_header(self.header(PAYMENT_REQUIRED).expect("PAYMENT-REQUIRED"))
            .unwrap()
    }

    fn receipt(&self) -> Option<SessionReceipt> {
        self.header(PAYMENT_RECEIPT)
            .map(|v| SessionReceipt::from_header(v).unwrap())
    }

    /// The problem details body, with the checks every MPP refusal passes: no receipt of
    /// either framing, and (for a 402) fresh challenges of both framings.
    fn problem(&self) -> Problem {
        assert_eq!(self.header("content-type"), Some(PROBLEM_JSON));
        assert!(self.header(PAYMENT_RECEIPT).is_none());
        assert!(self.header(PAYMENT_RESPONSE).is_none());
        let problem: Problem = serde_json::from_str(&self.body).unwrap();
        assert_eq!(problem.status, self.status);
        if self.status == 402 {
            assert_eq!(problem.challenge_id, Some(self.challenge().id));
            assert!(self.offer().accepts[0].extra.nonce.len() > 16);
        }
        problem
    }
}

async fn send(method: Method, url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = reqwest::Client::new().request(method, url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.unwrap();
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

async fn get_with(url: &str, authorization: Option<&str>) -> Answer {
    let headers: Vec<_> = authorization
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    send(Method::GET, url, &headers).await
}

/// The payment answering `challenge` (its offer is the challenge's `request`), authorised by
/// the client's key: the payload a `PAYMENT-SIGNATURE` would carry.
fn payment(
    client: &Client,
    challenge: &PaymentChallenge,
    update: Option<&UpdatePayment>,
) -> ChannelPayment {
    let (resource, accepted) = SessionRequest::decode(&challenge.request)
        .unwrap()
        .offer()
        .unwrap();
    let value = client
        .payer
        .committed_channel()
        .unwrap()
        .funding
        .contract
        .value;
    let mut sig = PaymentSignature {
        x402_version: X402_VERSION,
        resource,
        payload: ChannelPayment {
            channel: client.txid(),
            amount: update.map_or(client.paid(), |u| value - u.client_change),
            update: update.map(|u| WireMessage::UpdatePayment(u.clone()).to_base64url()),
            nonce: Some(accepted.extra.nonce.clone()),
            ticket: None,
            authorization: None,
        },
        accepted,
    };
    trickle_channel::auth::authorize_payment(
        &mut sig,
        &common::key(common::CLIENT),
        common::fresh_ticket(),
    );
    sig.payload
}

fn credential(challenge: &PaymentChallenge, payload: ChannelPayment) -> String {
    PaymentCredential {
        challenge: challenge.clone(),
        source: None,
        payload,
    }
    .to_header()
}

#[tokio::test]
async fn a_402_carries_both_challenges_for_one_offer() {
    let s = setup(120).await;
    let asked = get_with(&s.article(), None).await;
    assert_eq!(asked.status, 402);
    assert_eq!(asked.header("cache-control"), Some("no-store"));
    let offer = asked.offer();
    let challenge = asked.challenge();
    assert_eq!(
        (challenge.method.as_str(), challenge.intent.as_str()),
        ("trickle", "session")
    );
    assert_eq!(challenge.realm, s.url.trim_start_matches("http://"));
    assert!(!challenge.id.is_empty());
    // The same offer, nonce and all.
    let request = SessionRequest::decode(&challenge.request).unwrap();
    let (resource, accepted) = request.offer().unwrap();
    assert_eq!(resource, offer.resource);
    assert_eq!(accepted, offer.accepts[0]);
    assert_eq!(
        (request.currency.as_str(), request.amount),
        ("sat", Amount::from_sat(10))
    );
    // It expires with its nonce: `maxTimeoutSeconds` after it was issued.
    let expires = time::parse_timestamp(challenge.expires.as_deref().unwrap()).unwrap();
    assert_eq!(
        expires,
        1_700_000_000 + u64::from(accepted.max_timeout_seconds)
    );
    // The body stays the x402 offer for a request that carried no payment.
    assert_eq!(
        serde_json::from_str::<PaymentRequired>(&asked.body).unwrap(),
        offer
    );

    let again = get_with(&s.article(), None).await.challenge();
    assert_ne!(again.id, challenge.id, "every challenge is fresh");
    let free = get_with(&format!("{}/free", s.url), None).await;
    assert_eq!((free.status, free.header("www-authenticate")), (200, None));
}

#[tokio::test]
async fn an_mpp_payment_is_charged_once_and_answered_with_a_payment_receipt() {
    let mut s = setup(121).await;
    let challenge = get_with(&s.article(), None).await.challenge();
    let update = s.client.sign(Amount::from_sat(10));
    let header = credential(&challenge, payment(&s.client, &challenge, Some(&update)));
    let paid = get_with(&s.article(), Some(&header)).await;
    // Served; the credential was the payee's, not passed to the site.
    assert_eq!((paid.status, paid.body.as_str()), (200, "article 1 []"));
    assert!(
        paid.header(PAYMENT_RESPONSE).is_none(),
        "answered in the request's framing"
    );
    assert_eq!(paid.header("cache-control"), Some("private"));
    let receipt = paid.receipt().expect("Payment-Receipt");
    assert_eq!(
        (receipt.status.as_str(), receipt.method.as_str()),
        ("success", "trickle")
    );
    assert_eq!(receipt.challenge_id, challenge.id);
    assert_eq!(receipt.reference, s.client.txid().to_string());
    let r = &receipt.receipt;
    assert_eq!(
        (r.channel, r.paid, r.consumed),
        (s.client.txid(), s.client.paid(), Amount::from_sat(10))
    );
    assert_eq!(s.totals().await, (s.client.paid().to_sat(), 10));
    assert_eq!(s.client.paid(), Amount::from_sat(1_010));

    // The same credential again: a reload, served and not charged.
    let reload = get_with(&s.article(), Some(&header)).await;
    assert_eq!((reload.status, reload.body.as_str()), (200, "article 1 []"));
    assert_eq!(reload.receipt().unwrap().receipt.consumed, Amount::ZERO);
    assert_eq!(s.totals().await, (1_010, 10));

    // Until the challenge expires: then it is no longer honoured, and nothing is charged.
    let life = u64::from(s.payee.config().offer_timeout_secs);
    s.now.fetch_add(life + 1, Ordering::SeqCst);
    let late = get_with(&s.article(), Some(&header)).await;
    assert_eq!(late.status, 402);
    let problem = late.problem();
    assert_eq!(
        problem.problem_type,
        "https://paymentauth.org/problems/invalid-challenge"
    );
    assert_eq!(problem.code.as_deref(), Some("invalid_challenge"));
    assert_eq!(s.totals().await, (1_010, 10));
}

#[tokio::test]
async fn a_resent_post_is_refused_not_charged_twice() {
    let s = setup(122).await;
    let challenge = get_with(&s.article(), None).await.challenge();
    let header = credential(&challenge, payment(&s.client, &challenge, None));
    let auth = [("authorization", header.as_str())];
    let posted = send(Method::POST, &s.article(), &auth).await;
    assert_eq!((posted.status, posted.body.as_str()), (200, "posted 1"));
    assert_eq!(
        posted.receipt().unwrap().receipt.consumed,
        Amount::from_sat(10)
    );
    let again = send(Method::POST, &s.article(), &auth).await;
    assert_eq!(again.status, 402);
    let problem = again.problem();
    assert_eq!(
        problem.problem_type,
        "https://paymentauth.org/problems/invalid-challenge"
    );
    assert_eq!(problem.code.as_deref(), Some("nonce_spent"));
    // An Idempotency-Key changes nothing: the credential is the payment's idempotency key.
    let keyed = [auth[0], ("idempotency-key", "k1")];
    assert_eq!(send(Method::POST, &s.article(), &keyed).await.status, 402);
    assert_eq!(s.totals().await, (1_000, 10));
}

#[tokio::test]
async fn bad_credentials_get_problem_details_and_charge_nothing() {
    let mut s = setup(123).await;
    let challenge = get_with(&s.article(), None).await.challenge();
    let update = s.client.sign(Amount::from_sat(10));
    let good = payment(&s.client, &challenge, Some(&update));
    let draft = |slug: &str| format!("https://paymentauth.org/problems/{slug}");

    let mut cases: Vec<(String, u16, String, &str)> = Vec::new();
    // A challenge changed by the client: its id no longer binds it.
    let mut cheaper = challenge.clone();
    let mut request = SessionRequest::decode(&cheaper.request).unwrap();
    request.amount = Amount::from_sat(1);
    cheaper.request = request.encode();
    cases.push((
        credential(&cheaper, good.clone()),
        402,
        draft("invalid-challenge"),
        "invalid_challenge",
    ));
    // A payment changed after it was authorised.
    let mut more = good.clone();
    more.amount = Amount::from_sat(2_000);
    cases.push((
        credential(&challenge, more),
        402,
        draft("verification-failed"),
        "bad_authorization",
    ));
    // Another method's challenge.
    let mut tempo = challenge.clone();
    tempo.method = "tempo".into();
    cases.push((
        credential(&tempo, good.clone()),
        400,
        draft("method-unsupported"),
        "unsupported_scheme",
    ));
    // Another intent.
    let mut charge = challenge.clone();
    charge.intent = "charge".into();
    cases.push((
        credential(&charge, good.clone()),
        400,
        draft("method-unsupported"),
        "unsupported_scheme",
    ));
    // A pre-armed payment (a ticket, no nonce) is x402's extension only.
    let mut ticketed = good.clone();
    ticketed.nonce = None;
    ticketed.ticket = Some("BQUFBQUFBQUFBQUFBQUFBQ".into());
    cases.push((
        credential(&challenge, ticketed),
        402,
        draft("malformed-credential"),
        "invalid_header",
    ));
    // Oversize, not base64url, not a credential's JSON, not one token68.
    let malformed = [
        format!("Payment {}", "A".repeat(17 * 1024)),
        "Payment !!".into(),
        "Payment e30".into(),
        "payment".into(),
        "Payment abc, def".into(),
        // Auth-params, not the draft's token68.
        format!("Payment id=\"{}\"", challenge.id),
    ];
    for bad in malformed {
        cases.push((bad, 402, draft("malformed-credential"), "invalid_header"));
    }
    for (header, status, kind, code) in cases {
        let answer = get_with(&s.article(), Some(&header)).await;
        assert_eq!(answer.status, status, "{}", &header[..header.len().min(80)]);
        let problem = answer.problem();
        assert_eq!(
            (problem.problem_type.as_str(), problem.code.as_deref()),
            (kind.as_str(), Some(code))
        );
        assert!(!problem.title.is_empty() && !problem.detail.is_empty());
        assert_eq!(
            s.totals().await,
            (1_000, 0),
            "nothing is charged or credited"
        );
    }
    // The good one still pays: the refusals spent nothing of its challenge.
    let paid = get_with(&s.article(), Some(&credential(&challenge, good))).await;
    assert_eq!(paid.status, 200);
    assert_eq!(s.totals().await, (1_010, 10));
}

#[tokio::test]
async fn a_request_with_two_payments_is_refused() {
    let s = setup(124).await;
    let asked = get_with(&s.article(), None).await;
    let challenge = asked.challenge();
    let header = credential(&challenge, payment(&s.client, &challenge, None));
    let x402 = s.client.header(&asked.offer(), None, true);
    let both = [
        ("authorization", header.as_str()),
        (PAYMENT_SIGNATURE, x402.as_str()),
    ];
    let twice = [
        ("authorization", header.as_str()),
        ("authorization", header.as_str()),
    ];
    for headers in [&both[..], &twice[..]] {
        let answer = send(Method::GET, &s.article(), headers).await;
        assert_eq!(answer.status, 400);
        let problem = answer.problem();
        assert_eq!(
            (problem.problem_type.as_str(), problem.code.as_deref()),
            ("about:blank", Some("invalid_header"))
        );
        assert_eq!(s.totals().await, (1_000, 0));
    }
    // Each alone pays.
    assert_eq!(fetch(&s.article(), Some(&x402)).await.consumed(), 10);
}

#[tokio::test]
async fn the_sites_own_authorization_passes_through() {
    let s = setup(125).await;
    let free = format!("{}/free", s.url);
    let bearer = get_with(&free, Some("Bearer site-token")).await;
    assert_eq!(
        (bearer.status, bearer.body.as_str()),
        (200, "free [Bearer site-token]")
    );
    // A priced route without a payment still asks for one, whatever the site's own credential.
    let asked = get_with(&s.article(), Some("Bearer site-token")).await;
    assert_eq!(asked.status, 402);
    // A refused credential at a free route: the page is served, without the credential.
    let refused = get_with(&free, Some("Payment e30")).await;
    assert_eq!((refused.status, refused.body.as_str()), (200, "free []"));
    assert!(refused.header(PAYMENT_RECEIPT).is_none());
}
