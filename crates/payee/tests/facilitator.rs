//! The x402 facilitator (`docs/facilitator.md`) as `@x402/express` calls it: `/supported`,
//! `/verify` (charges nothing), `/settle` (charges once, however often it is called), and bad
//! input refused in x402's form with nothing charged. Every test asserts the stored totals.
#![allow(clippy::unwrap_used)] // tests may panic on what cannot happen

mod common;

use std::sync::Arc;

use base64::Engine as _;
use bitcoin::{Amount, Network};
use common::{stored_totals, Client};
use serde_json::{json, Value};
use trickle_channel::http::{
    asset, caip2, ChannelTerms, PaymentRequired, PaymentRequirements, Resource, SCHEME,
    X402_VERSION,
};
use trickle_channel::Version;
use trickle_payee::store::MemoryStore;
use trickle_payee::Payee;

const ARTICLE: &str = "http://site.example/articles/1";

struct Facilitator {
    payee: Payee,
    url: String,
    client: Client,
}

/// A payee serving its channel endpoint and its facilitator, with an open channel of 1,000 sat
/// credit.
async fn start(tag: u8) -> Facilitator {
    let payee =
        common::start_payee(Arc::new(MemoryStore::new()), common::RecordingChain::new()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = payee.endpoint().merge(payee.facilitator());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let endpoint = format!("{url}{}", trickle_payee::DEFAULT_ENDPOINT_PATH);
    let client = Client::open(&endpoint, Version::V2, tag).await;
    assert_eq!(stored_totals(&payee, client.txid()).await, (1_000, 0));
    Facilitator { payee, url, client }
}

impl Facilitator {
    async fn post(&self, route: &str, body: Vec<u8>) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}{route}", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (
            status,
            serde_json::from_str(&resp.text().await.unwrap()).unwrap(),
        )
    }

    /// A nonce the facilitator issues for `url`, as the resource server asks for each request.
    async fn nonce(&self, url: &str) -> String {
        let (status, body) = self
            .post(
                "/nonce",
                json!({ "resource": url }).to_string().into_bytes(),
            )
            .await;
        assert_eq!(status, 200);
        body["nonce"].as_str().unwrap().to_owned()
    }

    /// The requirements the resource server builds for `url` at 10 sat, with a fresh nonce.
    async fn requirements(&self, url: &str) -> PaymentRequirements {
        let policy = common::policy();
        let network = caip2(Network::Regtest);
        PaymentRequirements {
            scheme: SCHEME.to_owned(),
            asset: asset(&network),
            network,
            amount: Amount::from_sat(10),
            pay_to: self.payee.server_key(),
            max_timeout_seconds: 300,
            extra: ChannelTerms {
                endpoint: format!(
                    "http://site.example{}",
                    trickle_payee::DEFAULT_ENDPOINT_PATH
                ),
                versions: vec![2, 1],
                min_channel_value: policy.min_channel_value,
                max_channel_value: policy.max_channel_value,
                min_payment: policy.min_payment,
                max_expiry_blocks: policy.max_expiry_blocks,
                nonce: self.nonce(url).await,
                channel_state: None,
            },
        }
    }

    /// The client's payment of the offer for `url` (paying `increment` more), as the JSON
    /// object its `PAYMENT-SIGNATURE` carries.
    async fn payment(&mut self, url: &str, increment: u64) -> Value {
        self.paying(url, url, increment, true).await
    }

    /// The client's payment of an offer for `url` naming `resource`: answering it (`nonce`),
    /// or pre-armed (a ticket), as the JSON object of its `PAYMENT-SIGNATURE`.
    async fn paying(&mut self, url: &str, resource: &str, increment: u64, nonce: bool) -> Value {
        let offer = PaymentRequired {
            x402_version: X402_VERSION,
            error: None,
            resource: Resource {
                url: resource.to_owned(),
                description: String::new(),
                mime_type: String::new(),
            },
            accepts: vec![self.requirements(url).await],
        };
        let update = (increment > 0).then(|| self.client.sign(Amount::from_sat(increment)));
        let header = self.client.header(&offer, update.as_ref(), nonce);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(header)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// `route` (`/verify` or `/settle`) with `payment` against the requirements for `url`.
    async fn call(&self, route: &str, payment: &Value, url: &str) -> (u16, Value) {
        let body = json!({
            "x402Version": 2,
            "paymentPayload": payment,
            "paymentRequirements": self.requirements(url).await,
        });
        self.post(route, body.to_string().into_bytes()).await
    }

    async fn totals(&self) -> (u64, u64) {
        stored_totals(&self.payee, self.client.txid()).await
    }
}

#[tokio::test]
async fn supported_lists_the_channel_scheme_on_the_payees_network() {
    let f = start(110).await;
    let text = reqwest::get(format!("{}/supported", f.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    let kinds = body["kinds"].as_array().unwrap();
    assert_eq!(kinds.len(), 1);
    assert_eq!(kinds[0]["x402Version"], 2);
    assert_eq!(kinds[0]["scheme"], SCHEME);
    assert_eq!(kinds[0]["network"], caip2(Network::Regtest));
    assert_eq!(kinds[0]["extra"]["payTo"], f.payee.server_key().to_string());
    assert_eq!(
        kinds[0]["extra"]["endpointPath"],
        trickle_payee::DEFAULT_ENDPOINT_PATH
    );
    assert_eq!(f.totals().await, (1_000, 0));
}

#[tokio::test]
async fn verify_charges_nothing_and_settle_charges_once() {
    let mut f = start(111).await;
    let payment = f.payment(ARTICLE, 10).await;
    for _ in 0..2 {
        let (status, verified) = f.call("/verify", &payment, ARTICLE).await;
        assert_eq!(
            (status, &verified["isValid"]),
            (200, &json!(true)),
            "{verified}"
        );
        assert_eq!(
            verified["payer"],
            json!(common::pubkey(&common::key(common::CLIENT)).to_string())
        );
        assert_eq!(f.totals().await, (1_000, 0), "verify stores nothing");
    }
    let (status, settled) = f.call("/settle", &payment, ARTICLE).await;
    assert_eq!(
        (status, &settled["success"]),
        (200, &json!(true)),
        "{settled}"
    );
    assert_eq!(settled["transaction"], "");
    assert_eq!(settled["network"], caip2(Network::Regtest));
    assert_eq!(settled["extra"]["receipt"]["consumed"], "10");
    assert_eq!(settled["extra"]["receipt"]["paid"], "1010");
    assert_eq!(f.totals().await, (1_010, 10));
    // The same payment settled again (a reload, or a retried settle): charged once.
    let (status, again) = f.call("/settle", &payment, ARTICLE).await;
    assert_eq!((status, &again["success"]), (200, &json!(true)), "{again}");
    assert_eq!(again["extra"]["receipt"]["consumed"], "0");
    assert_eq!(f.totals().await, (1_010, 10));
    // A payment from credit, settled, is charged from credit.
    let credit = f.payment(ARTICLE, 0).await;
    let (_, settled) = f.call("/settle", &credit, ARTICLE).await;
    assert_eq!(settled["extra"]["receipt"]["consumed"], "10", "{settled}");
    assert_eq!(f.totals().await, (1_010, 20));
}

#[tokio::test]
async fn bad_input_is_refused_in_x402s_form_and_charges_nothing() {
    let mut f = start(112).await;
    let payment = f.payment(ARTICLE, 10).await;
    let refusals = |route: &'static str, reason: &'static str| (route, reason);
    let mut cases: Vec<(Value, Value, (&str, &str))> = Vec::new();

    // Requirements of another network.
    let mut other = serde_json::to_value(f.requirements(ARTICLE).await).unwrap();
    other["network"] = json!(caip2(Network::Signet));
    cases.push((payment.clone(), other, refusals("", "wrong_network")));
    // A payment for another network (its accepted offer, changed).
    let mut tampered_network = payment.clone();
    tampered_network["accepted"]["network"] = json!(caip2(Network::Signet));
    tampered_network["accepted"]["asset"] = json!(asset(&caip2(Network::Signet)));
    let requirements = serde_json::to_value(f.requirements(ARTICLE).await).unwrap();
    cases.push((
        tampered_network,
        requirements.clone(),
        refusals("", "wrong_network"),
    ));
    // A tampered payload: its total raised after it was authorised.
    let mut tampered = payment.clone();
    tampered["payload"]["amount"] = json!("2000");
    cases.push((
        tampered,
        requirements.clone(),
        refusals("", "bad_authorization"),
    ));
    // An unknown channel.
    let mut unknown = payment.clone();
    unknown["payload"]["channel"] = json!("11".repeat(32));
    cases.push((
        unknown,
        requirements.clone(),
        refusals("", "unknown_channel"),
    ));
    // The payment presented for another resource than the resource server serves.
    let other_resource =
        serde_json::to_value(f.requirements("http://site.example/articles/2").await).unwrap();
    cases.push((
        payment.clone(),
        other_resource,
        refusals("", "wrong_resource"),
    ));

    for (payment, requirements, (_, reason)) in cases {
        for route in ["/verify", "/settle"] {
            let body = json!({
                "x402Version": 2,
                "paymentPayload": payment,
                "paymentRequirements": requirements,
            });
            let (status, answer) = f.post(route, body.to_string().into_bytes()).await;
            assert_eq!(status, 200, "{route} {answer}");
            let (ok, why) = if route == "/verify" {
                ("isValid", "invalidReason")
            } else {
                ("success", "errorReason")
            };
            assert_eq!(answer[ok], json!(false), "{route} {answer}");
            assert_eq!(answer[why], json!(reason), "{route} {answer}");
            if route == "/settle" {
                assert!(answer["transaction"].is_string(), "{answer}");
                assert!(answer["errorMessage"].is_string(), "{answer}");
            }
            assert_eq!(f.totals().await, (1_000, 0), "{route} {reason}");
        }
    }

    // An oversize body: 413, in x402's form, before it is parsed.
    let big = vec![b' '; trickle_payee::MAX_FACILITATOR_BODY + 1];
    let (status, answer) = f.post("/settle", big).await;
    assert_eq!(
        (status, &answer["success"], &answer["errorReason"]),
        (413, &json!(false), &json!("invalid_payload"))
    );
    // Not JSON of x402's shape.
    let (status, answer) = f.post("/verify", b"{\"x\": 1}".to_vec()).await;
    assert_eq!((status, &answer["isValid"]), (400, &json!(false)));
    assert_eq!(f.totals().await, (1_000, 0));

    // The untouched payment still settles, once.
    let (_, settled) = f.call("/settle", &payment, ARTICLE).await;
    assert_eq!(settled["success"], json!(true), "{settled}");
    assert_eq!(f.totals().await, (1_010, 10));
}

/// A pre-armed payment names only the site (its `resource.url` is the origin) and carries a
/// ticket: it is decided for the URL the resource server says it serves (`extra.resource` of the
/// requirements), refused without it, and its ticket reloads that URL only.
#[tokio::test]
async fn a_pre_armed_payment_is_decided_for_the_url_the_resource_server_serves() {
    let mut f = start(113).await;
    let payment = f.paying(ARTICLE, "http://site.example/", 10, false).await;
    assert!(payment["payload"]["ticket"].is_string(), "{payment}");
    let settle = |requirements: Value| {
        let body = json!({
            "x402Version": 2,
            "paymentPayload": payment,
            "paymentRequirements": requirements,
        });
        f.post("/settle", body.to_string().into_bytes())
    };
    let mut requirements = serde_json::to_value(f.requirements(ARTICLE).await).unwrap();
    let (_, refused) = settle(requirements.clone()).await;
    assert_eq!(refused["errorReason"], "wrong_resource", "{refused}");
    assert_eq!(f.totals().await, (1_000, 0));

    requirements["extra"]["resource"] = json!(ARTICLE);
    let (_, settled) = settle(requirements.clone()).await;
    assert_eq!(settled["success"], json!(true), "{settled}");
    assert_eq!(settled["extra"]["receipt"]["consumed"], "10");
    assert_eq!(f.totals().await, (1_010, 10));
    // Settled again for the same URL: a reload. For another URL: the ticket paid for this one.
    let (_, again) = settle(requirements).await;
    assert_eq!(again["extra"]["receipt"]["consumed"], "0", "{again}");
    const OTHER: &str = "http://site.example/articles/2";
    let mut other = serde_json::to_value(f.requirements(OTHER).await).unwrap();
    other["extra"]["resource"] = json!(OTHER);
    let (_, refused) = settle(other).await;
    assert_eq!(refused["errorReason"], "wrong_resource", "{refused}");
    assert_eq!(f.totals().await, (1_010, 10));
}

#[tokio::test]
async fn a_payment_short_of_credit_is_refused_with_the_payees_account_of_the_channel() {
    let mut f = start(115).await;
    // Spend the channel's 1,000 sat of credit, 10 at a time.
    for _ in 0..100 {
        let credit = f.payment(ARTICLE, 0).await;
        let (_, settled) = f.call("/settle", &credit, ARTICLE).await;
        assert_eq!(settled["success"], json!(true), "{settled}");
    }
    assert_eq!(f.totals().await, (1_000, 1_000));
    let short = f.payment(ARTICLE, 0).await;
    let (status, verified) = f.call("/verify", &short, ARTICLE).await;
    assert_eq!(status, 200);
    assert_eq!(verified["isValid"], json!(false));
    assert_eq!(
        verified["invalidReason"], "insufficient_credit",
        "{verified}"
    );
    // What the resource server's corrective 402 carries in its offers: the refusal's receipt.
    let state: trickle_channel::http::PaymentResponse =
        serde_json::from_value(verified["extra"]["channelState"].clone()).unwrap();
    assert!(!state.success);
    assert_eq!(state.error_reason.as_deref(), Some("insufficient_credit"));
    let receipt = state.receipt.unwrap();
    assert_eq!(receipt.channel, f.client.txid());
    assert_eq!((receipt.paid.to_sat(), receipt.credit.to_sat()), (1_000, 0));
    assert_eq!(
        f.totals().await,
        (1_000, 1_000),
        "a refusal charges nothing"
    );
}
