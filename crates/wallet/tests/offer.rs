//! Offers checked before anything is paid: the committed example of `tests/vectors/http.json`,
//! and one hostile offer for each refusal.

use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, Network};
use trickle_channel::http::*;
use trickle_channel::Version;
use trickle_testkit::keys::{key, pubkey, SERVER};
use trickle_testkit::offer::{offer, ENDPOINT, URL};
use trickle_wallet::budget::{Budget, Period, Terms};
use trickle_wallet::offer::*;
use trickle_wallet::ChannelLimits;

const ORIGIN: &str = "http://127.0.0.1:8080";
const T0: u64 = 1_700_000_000;

fn sat(n: u64) -> Amount {
    Amount::from_sat(n)
}

/// The public key of `key(byte)`; the offer pays `key(SERVER)`.
fn public(byte: u8) -> PublicKey {
    pubkey(&key(byte))
}

fn with(change: impl FnOnce(&mut PaymentRequirements)) -> PaymentRequired {
    let mut o = offer();
    change(&mut o.accepts[0]);
    o
}

fn budget(max_price: u64, auto: Option<u64>) -> Budget {
    Budget::new(
        ORIGIN,
        Terms {
            limit: sat(1_000),
            period: Period::Day,
            max_price: sat(max_price),
            auto_approve: auto.map(sat),
        },
        T0,
    )
    .expect("budget")
}

struct Ctx {
    url: String,
    network: Network,
    budget: Option<Budget>,
    pinned: Option<PublicKey>,
    policy: OfferPolicy,
}

impl Ctx {
    fn new() -> Self {
        Self {
            url: URL.into(),
            network: Network::Regtest,
            budget: None,
            pinned: None,
            policy: OfferPolicy::default(),
        }
    }

    fn check(&self, required: &PaymentRequired) -> Result<CheckedOffer, OfferError> {
        check_offer(
            required,
            &OfferContext {
                url: &self.url,
                network: self.network,
                budget: self.budget.as_ref(),
                pinned_payee: self.pinned.as_ref(),
                policy: &self.policy,
            },
        )
    }
}

fn check(required: &PaymentRequired) -> Result<CheckedOffer, OfferError> {
    Ctx::new().check(required)
}

#[test]
fn the_committed_example_is_accepted() {
    let vectors: serde_json::Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/http.json"
    )))
    .expect("vectors");
    let value = vectors["headers"][0]["value"].as_str().expect("value");
    let required = PaymentRequired::from_header(value).expect("header");
    let checked = check(&required).expect("accepted");
    assert_eq!(checked.origin(), ORIGIN);
    assert_eq!(checked.host(), "127.0.0.1");
    assert_eq!(checked.resource(), &required.resource);
    assert_eq!(checked.requirements(), &required.accepts[0]);
    assert_eq!(checked.price(), sat(10));
    assert_eq!(
        checked.payee().to_string(),
        "024d4b6cd1361032ca9bd2aeb9d900aa4d45d9ead80ac9423374c451a7254d0766"
    );
    assert_eq!(checked.endpoint(), ENDPOINT);
    assert_eq!(checked.versions(), [2, 1]);
    assert_eq!(checked.version(), Version::V2);
    assert_eq!(checked.min_channel_value(), sat(10_000));
    assert_eq!(checked.max_channel_value(), sat(1_000_000));
    assert_eq!(checked.min_payment(), sat(1_000));
    assert_eq!(checked.max_expiry_blocks(), 1_008);
    assert_eq!(checked.expiry_blocks(), 1_008);
    assert_eq!(checked.max_timeout_seconds(), 300);
    assert_eq!(checked.nonce(), required.accepts[0].extra.nonce);
    assert_eq!(checked.approval(), Approval::NoBudget);
}

#[test]
fn approval_follows_the_budget() {
    let mut ctx = Ctx::new();
    ctx.budget = Some(budget(10, Some(10)));
    assert_eq!(ctx.check(&offer()).expect("ok").approval(), Approval::Auto);
    ctx.budget = Some(budget(10, Some(9)));
    assert_eq!(
        ctx.check(&offer()).expect("ok").approval(),
        Approval::Prompt
    );
    ctx.budget = Some(budget(10, None));
    assert_eq!(
        ctx.check(&offer()).expect("ok").approval(),
        Approval::Prompt
    );
    // The pinned key, when it is the offer's.
    ctx.pinned = Some(public(SERVER));
    assert!(ctx.check(&offer()).is_ok());
}

#[test]
fn other_networks_and_schemes_are_refused() {
    let mut ctx = Ctx::new();
    ctx.network = Network::Signet;
    let err = ctx.check(&offer()).expect_err("regtest offer");
    assert_eq!(
        err,
        OfferError::WrongNetwork {
            wallet: Network::Signet,
            offered: vec![caip2(Network::Regtest)]
        }
    );
    assert_eq!(
        err.to_string(),
        "the site offers no channel payment on signet (only on regtest)"
    );
    let odd = with(|o| o.network = "eip155:1".into());
    assert!(check(&odd)
        .expect_err("unknown network")
        .to_string()
        .contains("eip155:1"));
    assert_eq!(
        check(&with(|o| o.scheme = "exact".into())),
        Err(OfferError::NoChannelScheme)
    );
    let mut none = offer();
    none.accepts.clear();
    assert_eq!(check(&none), Err(OfferError::NoChannelScheme));
    // Another scheme beside the channel offer is ignored.
    let mut both = offer();
    let mut exact = both.accepts[0].clone();
    exact.scheme = "exact".into();
    exact.amount = sat(999_999);
    both.accepts.insert(0, exact);
    assert_eq!(check(&both).expect("channel offer").price(), sat(10));
    let mut v1 = offer();
    v1.x402_version = 1;
    assert!(matches!(check(&v1), Err(OfferError::Malformed(_))));
}

#[test]
fn insane_amounts_are_refused() {
    let zero = |f: fn(&mut PaymentRequirements)| check(&with(f)).expect_err("zero");
    assert_eq!(
        zero(|o| o.amount = Amount::ZERO),
        OfferError::ZeroAmount("price")
    );
    assert_eq!(
        zero(|o| o.extra.min_channel_value = Amount::ZERO),
        OfferError::ZeroAmount("minimum channel value")
    );
    assert_eq!(
        zero(|o| o.extra.max_channel_value = Amount::ZERO),
        OfferError::ZeroAmount("maximum channel value")
    );
    assert_eq!(
        zero(|o| o.extra.min_payment = Amount::ZERO),
        OfferError::ZeroAmount("minimum payment")
    );
    let huge = Amount::MAX_MONEY + sat(1);
    assert_eq!(
        check(&with(|o| {
            o.amount = huge;
            o.extra.max_channel_value = huge;
        })),
        Err(OfferError::AboveMaxMoney("price"))
    );
    assert_eq!(
        check(&with(|o| o.extra.max_channel_value = huge)),
        Err(OfferError::AboveMaxMoney("maximum channel value"))
    );
    assert_eq!(
        OfferError::AboveMaxMoney("price").to_string(),
        "the offer's price is above 21 million BTC"
    );
    // Inconsistent ranges.
    for bad in [
        with(|o| o.amount = sat(1_000_001)),
        with(|o| o.extra.min_channel_value = sat(1_000_001)),
        with(|o| o.extra.min_payment = sat(1_000_001)),
    ] {
        assert!(
            matches!(check(&bad), Err(OfferError::Malformed(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn expiry_windows_are_checked() {
    assert_eq!(
        check(&with(|o| o.extra.max_expiry_blocks = 0)),
        Err(OfferError::ExpiryTooShort {
            offered: 0,
            min: DEFAULT_MIN_EXPIRY_BLOCKS
        })
    );
    assert_eq!(
        check(&with(|o| o.extra.max_expiry_blocks = 11)),
        Err(OfferError::ExpiryTooShort {
            offered: 11,
            min: 12
        })
    );
    assert_eq!(
        check(&with(|o| o.extra.max_expiry_blocks = 12))
            .expect("ok")
            .expiry_blocks(),
        12
    );
    let mut ctx = Ctx::new();
    ctx.policy.min_expiry_blocks = 144;
    let err = ctx
        .check(&with(|o| o.extra.max_expiry_blocks = 20))
        .expect_err("short");
    assert_eq!(
        err.to_string(),
        "the site offers channels of 20 blocks; at least 144 are needed"
    );
    // Zero is refused even if the policy says nothing.
    ctx.policy.min_expiry_blocks = 0;
    assert!(ctx.check(&with(|o| o.extra.max_expiry_blocks = 0)).is_err());
    // Longer than the client's limit: the client asks for its limit.
    let long = check(&with(|o| o.extra.max_expiry_blocks = 52_560)).expect("clamped");
    assert_eq!(long.max_expiry_blocks(), 52_560);
    assert_eq!(
        long.expiry_blocks(),
        ChannelLimits::default().max_expiry_blocks
    );
}

#[test]
fn malformed_terms_are_refused() {
    for bad in [
        with(|o| o.asset = "btc".into()),
        // The asset was "sat" before it was CAIP-19; bitcoin of another network is not this one.
        with(|o| o.asset = "sat".into()),
        with(|o| o.asset = asset(&caip2(Network::Bitcoin))),
        with(|o| o.extra.versions = vec![]),
        with(|o| o.extra.versions = vec![3]),
        with(|o| o.extra.nonce = "short".into()),
        with(|o| o.extra.nonce = "not base64url!".into()),
    ] {
        let err = check(&bad).expect_err("malformed");
        assert!(matches!(err, OfferError::Malformed(_)), "{err:?}");
        assert!(err.to_string().starts_with("the site's offer is malformed"));
    }
    let v1 = check(&with(|o| o.extra.versions = vec![1])).expect("v1 only");
    assert_eq!(v1.version(), Version::V1);
    let v1_first = check(&with(|o| o.extra.versions = vec![1, 2])).expect("both");
    assert_eq!(v1_first.version(), Version::V2);
}

#[test]
fn the_offer_must_price_the_url_requested() {
    let mut ctx = Ctx::new();
    for other in [
        "http://127.0.0.1:8080/articles/2",
        "http://127.0.0.1:8080/articles/1?page=2",
        "http://127.0.0.1:8081/articles/1",
        "https://127.0.0.1:8080/articles/1",
        "http://localhost:8080/articles/1",
    ] {
        ctx.url = other.into();
        let err = ctx.check(&offer()).expect_err(other);
        assert_eq!(
            err,
            OfferError::ResourceMismatch {
                offered: URL.into(),
                requested: other.into()
            }
        );
    }
    let mut garbage = offer();
    garbage.resource.url = "not a url".into();
    assert!(matches!(
        check(&garbage),
        Err(OfferError::ResourceMismatch { .. })
    ));
    // The same URL, spelled otherwise: fragment, default port, case of the host.
    for same in [
        "http://127.0.0.1:8080/articles/1#comments",
        "HTTP://127.0.0.1:8080/articles/1",
    ] {
        ctx.url = same.into();
        assert!(ctx.check(&offer()).is_ok(), "{same}");
    }
    let site = |o: &mut PaymentRequired, url: &str, endpoint: &str| {
        o.resource.url = url.into();
        o.accepts[0].extra.endpoint = endpoint.into();
    };
    let mut https = offer();
    site(
        &mut https,
        "https://Example.com:443/a",
        "https://example.com/.well-known/trickle/channel",
    );
    ctx.url = "https://example.com/a".into();
    let checked = ctx.check(&https).expect("same URL");
    assert_eq!(checked.origin(), "https://example.com");
    assert_eq!(checked.host(), "example.com");
    for bad in [
        "ftp://example.com/a",
        "/articles/1",
        "",
        "data:text/plain,x",
    ] {
        ctx.url = bad.into();
        assert_eq!(
            ctx.check(&offer()),
            Err(OfferError::BadUrl(bad.into())),
            "{bad}"
        );
    }
}

#[test]
fn the_endpoint_must_be_on_the_site() {
    for elsewhere in [
        "http://127.0.0.1:9999/.well-known/trickle/channel",
        "https://127.0.0.1:8080/.well-known/trickle/channel",
        "http://localhost:8080/.well-known/trickle/channel",
        "http://evil.example/channel",
    ] {
        let err = check(&with(|o| o.extra.endpoint = elsewhere.into())).expect_err(elsewhere);
        assert_eq!(
            err,
            OfferError::EndpointElsewhere {
                endpoint: elsewhere.into(),
                origin: ORIGIN.into()
            }
        );
        assert!(err.to_string().contains("is not on http://127.0.0.1:8080"));
    }
    // Subdomains are other origins too.
    let mut ctx = Ctx::new();
    ctx.url = "https://example.com/a".into();
    let mut sub = offer();
    sub.resource.url = "https://example.com/a".into();
    sub.accepts[0].extra.endpoint = "https://pay.example.com/channel".into();
    assert!(matches!(
        ctx.check(&sub),
        Err(OfferError::EndpointElsewhere { .. })
    ));
    // Unless explicitly allowed (any spelling of the origin; junk entries match nothing).
    ctx.policy.allowed_endpoints = vec![
        "not an origin".into(),
        "https://pay.example.com/path".into(),
    ];
    assert!(ctx.check(&sub).is_err());
    ctx.policy
        .allowed_endpoints
        .push("HTTPS://Pay.Example.com:443/".into());
    assert_eq!(
        ctx.check(&sub).expect("allowed").endpoint(),
        "https://pay.example.com/channel"
    );
    for bad in [
        "ftp://127.0.0.1:8080/channel",
        "http://user:pw@127.0.0.1:8080/channel",
        "/.well-known/trickle/channel",
        "",
    ] {
        assert_eq!(
            check(&with(|o| o.extra.endpoint = bad.into())),
            Err(OfferError::BadEndpoint(bad.into())),
            "{bad}"
        );
    }
    // Same origin, any path.
    assert!(check(&with(|o| o.extra.endpoint = format!("{ORIGIN}/pay/here"))).is_ok());
}

#[test]
fn a_changed_payee_key_is_refused() {
    let mut ctx = Ctx::new();
    ctx.pinned = Some(public(3));
    let err = ctx.check(&offer()).expect_err("changed");
    assert_eq!(
        err,
        OfferError::PayeeKeyChanged {
            pinned: Box::new(public(3)),
            offered: Box::new(public(SERVER))
        }
    );
    assert_eq!(
        err.to_string(),
        "the site's payee key changed since its channel was opened; not paying"
    );
}

#[test]
fn the_budget_limits_the_price() {
    let mut ctx = Ctx::new();
    ctx.budget = Some(budget(9, None));
    let err = ctx.check(&offer()).expect_err("too dear");
    assert_eq!(
        err,
        OfferError::OverMaxPrice {
            price: sat(10),
            max_price: sat(9)
        }
    );
    assert_eq!(
        err.to_string(),
        "the price of 10 sat is above the max price of 9 sat per request"
    );
    let mut revoked = budget(10, None);
    revoked.revoke();
    ctx.budget = Some(revoked);
    assert_eq!(
        ctx.check(&offer()),
        Err(OfferError::Revoked {
            origin: ORIGIN.into()
        })
    );
    ctx.budget = Some(
        Budget::new(
            "http://127.0.0.1:8081",
            Terms {
                limit: sat(100),
                period: Period::Week,
                max_price: sat(100),
                auto_approve: None,
            },
            T0,
        )
        .expect("other site"),
    );
    assert_eq!(
        ctx.check(&offer()),
        Err(OfferError::BudgetMismatch {
            budget: "http://127.0.0.1:8081".into(),
            origin: ORIGIN.into()
        })
    );
}

#[test]
fn channel_value_for_a_new_channel() {
    let checked = check(&offer()).expect("ok");
    let limits = ChannelLimits::default();
    assert_eq!(checked.channel_value(sat(50_000), &limits), Ok(sat(50_000)));
    // Lowered to the client's maximum per channel, and to the payee's.
    assert_eq!(
        checked.channel_value(sat(5_000_000), &limits),
        Ok(limits.max_channel_value)
    );
    let roomy = ChannelLimits {
        max_channel_value: sat(2_000_000),
        ..ChannelLimits::default()
    };
    assert_eq!(
        checked.channel_value(sat(5_000_000), &roomy),
        Ok(sat(1_000_000))
    );
    // A payee whose smallest channel is above the client's maximum is refused.
    let tight = ChannelLimits {
        max_channel_value: sat(9_999),
        ..ChannelLimits::default()
    };
    let err = checked
        .channel_value(sat(50_000), &tight)
        .expect_err("above the client's maximum");
    assert_eq!(
        err,
        OfferError::ChannelAboveLimit {
            min: sat(10_000),
            limit: sat(9_999)
        }
    );
    assert_eq!(
        err.to_string(),
        "the site's minimum channel of 10000 sat is above the limit of 9999 sat per channel"
    );
    assert_eq!(checked.channel_value(sat(10_000), &limits), Ok(sat(10_000)));
    let err = checked
        .channel_value(sat(9_999), &limits)
        .expect_err("small");
    assert_eq!(
        err,
        OfferError::ChannelTooSmall {
            wish: sat(9_999),
            min: sat(10_000)
        }
    );
    assert_eq!(
        err.to_string(),
        "9999 sat to lock is below the site's minimum channel of 10000 sat"
    );
    let strict = ChannelLimits {
        max_min_payment: sat(999),
        ..ChannelLimits::default()
    };
    assert_eq!(
        checked.channel_value(sat(50_000), &strict),
        Err(OfferError::MinPaymentTooLarge {
            min_payment: sat(1_000),
            limit: sat(999)
        })
    );
    let odd = check(&with(|o| {
        o.extra.min_channel_value = sat(1_000);
        o.extra.min_payment = sat(3_000);
    }))
    .expect("ok");
    assert_eq!(
        odd.channel_value(sat(2_000), &limits),
        Err(OfferError::MinPaymentTooLarge {
            min_payment: sat(3_000),
            limit: sat(2_000)
        })
    );
}

#[test]
fn a_plain_http_site_is_paid_only_on_this_machine() {
    let at = |origin: &str| {
        let mut required = with(|o| o.extra.endpoint = format!("{origin}/channel"));
        required.resource.url = format!("{origin}/x");
        let ctx = Ctx {
            url: format!("{origin}/x"),
            ..Ctx::new()
        };
        ctx.check(&required)
    };
    for clear in [
        "http://example.com",
        "http://10.0.0.1:8080",
        "http://localhost.example.com",
    ] {
        let err = at(clear).expect_err(clear);
        assert_eq!(err, OfferError::PlainHttp(format!("{clear}/x")));
        assert!(err.to_string().contains("plain http"), "{err}");
    }
    for fine in [
        "https://example.com",
        "http://127.0.0.1:8080",
        "http://localhost:3000",
        "http://[::1]:8080",
    ] {
        assert!(at(fine).is_ok(), "{fine}: {:?}", at(fine));
    }
    // An endpoint allowed elsewhere is held to the same rule.
    let mut ctx = Ctx::new();
    ctx.policy.allowed_endpoints = vec!["http://pay.example".into()];
    let endpoint = "http://pay.example/channel";
    assert_eq!(
        ctx.check(&with(|o| o.extra.endpoint = endpoint.into())),
        Err(OfferError::PlainHttp(endpoint.into()))
    );
}
