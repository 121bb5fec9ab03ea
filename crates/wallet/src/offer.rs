//! Checking a site's `402 Payment Required` offer before anything is signed.
//!
//! [`check_offer`] takes the parsed `PAYMENT-REQUIRED` header, the URL that answered 402, the
//! wallet's network, the site's [`Budget`] (if any) and the payee key pinned by an existing
//! channel (if any), and returns a [`CheckedOffer`] or a typed [`OfferError`]. The extension
//! and the command-line payer both pay only checked offers.
//!
//! Rules, in the order they are checked:
//!
//! * The URL that answered 402 is an `https` URL, or an `http` one on this machine
//!   (`localhost`, loopback addresses): a plain-`http` site's payment headers would travel in
//!   the clear. Its origin is the site that is paid and whose budget applies.
//! * The offer is x402 version 2 and makes a `channel` offer on the wallet's network.
//! * Amounts (price, channel value range, minimum payment) are above zero and at most 21
//!   million BTC; the price and minimum payment fit in the channel value range.
//! * The channel life the payee offers (`maxExpiryBlocks`) is at least
//!   [`OfferPolicy::min_expiry_blocks`]. A longer one than the client's limit is not refused:
//!   the client asks for its own limit (see [`CheckedOffer::expiry_blocks`]), and the channel
//!   state machine refuses an expiry beyond it.
//! * The rest of the offer is well formed (asset, versions, nonce: see
//!   `PaymentRequirements::validate`).
//! * The offer prices the URL that was requested: `resource.url` is that URL (fragments
//!   aside), so a payment made for it cannot be for something else.
//! * The channel endpoint is on the **same origin** as the URL that was requested (scheme,
//!   host and port), or on an origin in [`OfferPolicy::allowed_endpoints`]. Same origin, not
//!   same registrable domain: deciding the latter needs the public suffix list, and the payee
//!   server serves its endpoint on the site's own origin. Plain `http` only on this machine, as
//!   for the site.
//! * The payee key is the pinned one, when a channel with the site exists.
//! * With a budget: the site is not revoked and the price is at most the budget's max price.
//!   Without one, the offer is checked all the same and [`Approval::NoBudget`] tells the caller
//!   to ask the user before anything is paid.

use core::fmt;

use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, Network};
use trickle_channel::http::{caip2, HeaderError, PaymentRequired, PaymentRequirements, Resource};
use trickle_channel::http::{SCHEME, X402_VERSION};
use trickle_channel::Version;

use crate::budget::{normalize_origin, site_origin, Budget, BudgetState};
use crate::settings::on_this_machine;
use crate::ChannelLimits;

/// The shortest channel life, in blocks, accepted by default: two hours of blocks. A payee
/// server refuses payments within its close margin of the expiry, so a shorter channel would
/// barely be usable before it closes.
pub const DEFAULT_MIN_EXPIRY_BLOCKS: u32 = 12;

/// The client's rules for offers, beyond the offer itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferPolicy {
    /// The client's channel limits.
    pub limits: ChannelLimits,
    /// The shortest channel life accepted, in blocks.
    pub min_expiry_blocks: u32,
    /// Origins (`https://pay.example.com`) accepted as channel endpoints for any site, on top
    /// of each site's own origin. Entries that are not origins match nothing.
    pub allowed_endpoints: Vec<String>,
}

impl Default for OfferPolicy {
    fn default() -> Self {
        Self {
            limits: ChannelLimits::default(),
            min_expiry_blocks: DEFAULT_MIN_EXPIRY_BLOCKS,
            allowed_endpoints: Vec::new(),
        }
    }
}

/// Where an offer came from and what the wallet knows about the site.
#[derive(Clone, Copy, Debug)]
pub struct OfferContext<'a> {
    /// The URL that was requested and answered 402.
    pub url: &'a str,
    /// The wallet's network.
    pub network: Network,
    /// The site's budget, if the user approved one.
    pub budget: Option<&'a Budget>,
    /// The payee key of the wallet's channel with the site, if it has one.
    pub pinned_payee: Option<&'a PublicKey>,
    /// The client's rules.
    pub policy: &'a OfferPolicy,
}

/// Whether a checked offer may be paid without asking the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Approval {
    /// The site has no budget: ask the user for one; pay nothing until then.
    NoBudget,
    /// Within the budget, above its auto-approve threshold: ask the user for this payment.
    Prompt,
    /// Within the budget's auto-approve threshold: pay (reserving in the budget first).
    Auto,
}

/// An offer that passed [`check_offer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedOffer {
    origin: String,
    host: String,
    resource: Resource,
    requirements: PaymentRequirements,
    version: Version,
    expiry_blocks: u32,
    approval: Approval,
}

impl CheckedOffer {
    /// The site paid: the origin of the URL that answered 402, the key of its budget.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The host of that URL: the label of the site's channel.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The resource priced.
    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    /// The `accepts` entry, unchanged: what a payment answers.
    pub fn requirements(&self) -> &PaymentRequirements {
        &self.requirements
    }

    /// The price of the request.
    pub fn price(&self) -> Amount {
        self.requirements.amount
    }

    /// The payee's channel key.
    pub fn payee(&self) -> &PublicKey {
        &self.requirements.pay_to
    }

    /// The channel endpoint.
    pub fn endpoint(&self) -> &str {
        &self.requirements.extra.endpoint
    }

    /// The protocol versions the payee accepts, its preference first.
    pub fn versions(&self) -> &[u8] {
        &self.requirements.extra.versions
    }

    /// The version a new channel uses: 2 (CLTV) when the payee accepts it, else 1.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The smallest channel value the payee accepts.
    pub fn min_channel_value(&self) -> Amount {
        self.requirements.extra.min_channel_value
    }

    /// The largest channel value the payee accepts.
    pub fn max_channel_value(&self) -> Amount {
        self.requirements.extra.max_channel_value
    }

    /// The smallest first payment of a new channel.
    pub fn min_payment(&self) -> Amount {
        self.requirements.extra.min_payment
    }

    /// The longest channel life the payee offers, in blocks.
    pub fn max_expiry_blocks(&self) -> u32 {
        self.requirements.extra.max_expiry_blocks
    }

    /// The channel life a new channel asks for: the payee's offer, at most the client's limit.
    pub fn expiry_blocks(&self) -> u32 {
        self.expiry_blocks
    }

    /// How long the offer's nonce is worth presenting, in seconds.
    pub fn max_timeout_seconds(&self) -> u32 {
        self.requirements.max_timeout_seconds
    }

    /// The offer's nonce, for the payment that answers it.
    pub fn nonce(&self) -> &str {
        &self.requirements.extra.nonce
    }

    /// Whether the user must be asked first.
    pub fn approval(&self) -> Approval {
        self.approval
    }

    /// The value of a new channel for a client that wants to lock at most `wish`: `wish`,
    /// lowered to the payee's maximum and to the client's (`limits.max_channel_value`, which
    /// [`crate::Wallet::open_channel`] holds every opening to); refused when the payee's minimum
    /// is above the client's maximum or above `wish`, or when the payee's first payment is
    /// above the client's limit or the channel value.
    pub fn channel_value(
        &self,
        wish: Amount,
        limits: &ChannelLimits,
    ) -> Result<Amount, OfferError> {
        if self.min_channel_value() > limits.max_channel_value {
            return Err(OfferError::ChannelAboveLimit {
                min: self.min_channel_value(),
                limit: limits.max_channel_value,
            });
        }
        let value = wish
            .min(self.max_channel_value())
            .min(limits.max_channel_value);
        if value < self.min_channel_value() {
            return Err(OfferError::ChannelTooSmall {
                wish,
                min: self.min_channel_value(),
            });
        }
        if self.min_payment() > limits.max_min_payment || self.min_payment() > value {
            return Err(OfferError::MinPaymentTooLarge {
                min_payment: self.min_payment(),
                limit: limits.max_min_payment.min(value),
            });
        }
        Ok(value)
    }
}

/// Why an offer was refused. Nothing is paid for a refused offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OfferError {
    /// The URL that answered 402 is not an `http` or `https` URL.
    BadUrl(String),
    /// The header is malformed or not acceptable (version, asset, versions, nonce ...).
    Malformed(HeaderError),
    /// No `channel` offer at all.
    NoChannelScheme,
    /// `channel` offers, but none on the wallet's network.
    WrongNetwork {
        /// The wallet's network.
        wallet: Network,
        /// The networks offered (CAIP-2 ids).
        offered: Vec<String>,
    },
    /// An amount of zero.
    ZeroAmount(&'static str),
    /// An amount above 21 million BTC.
    AboveMaxMoney(&'static str),
    /// The channel life offered is zero or too short.
    ExpiryTooShort {
        /// Offered, in blocks.
        offered: u32,
        /// The shortest accepted.
        min: u32,
    },
    /// The offer prices another resource than the URL requested.
    ResourceMismatch {
        /// The offer's `resource.url`.
        offered: String,
        /// The URL requested.
        requested: String,
    },
    /// The channel endpoint is not an `http` or `https` URL without credentials.
    BadEndpoint(String),
    /// Plain `http` away from this machine: payments would travel in the clear.
    PlainHttp(String),
    /// The channel endpoint is on another origin, not explicitly allowed.
    EndpointElsewhere {
        /// The endpoint.
        endpoint: String,
        /// The site.
        origin: String,
    },
    /// The payee key differs from the one of the site's channel.
    PayeeKeyChanged {
        /// The channel's key.
        pinned: Box<PublicKey>,
        /// The offer's key.
        offered: Box<PublicKey>,
    },
    /// The budget given is another site's.
    BudgetMismatch {
        /// The budget's site.
        budget: String,
        /// The offer's site.
        origin: String,
    },
    /// The user revoked the site.
    Revoked {
        /// The site.
        origin: String,
    },
    /// The price is above the budget's max price per request.
    OverMaxPrice {
        /// The price.
        price: Amount,
        /// The budget's max price.
        max_price: Amount,
    },
    /// The channel the client would lock is below the payee's minimum.
    ChannelTooSmall {
        /// What the client wants to lock at most.
        wish: Amount,
        /// The payee's minimum.
        min: Amount,
    },
    /// The payee's smallest channel is above the most the client locks in one.
    ChannelAboveLimit {
        /// The payee's minimum.
        min: Amount,
        /// The client's maximum (`ChannelLimits::max_channel_value`).
        limit: Amount,
    },
    /// The payee's first payment is above what the client accepts.
    MinPaymentTooLarge {
        /// The payee's minimum first payment.
        min_payment: Amount,
        /// The most the client accepts.
        limit: Amount,
    },
}

/// The name of a CAIP-2 network id, if it is a Bitcoin network.
fn network_name(id: &str) -> Option<Network> {
    [
        Network::Bitcoin,
        Network::Testnet,
        Network::Testnet4,
        Network::Signet,
        Network::Regtest,
    ]
    .into_iter()
    .find(|n| caip2(*n) == id)
}

impl fmt::Display for OfferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sat = |a: &Amount| a.to_sat();
        match self {
            Self::BadUrl(url) => write!(f, "{url:?} is not an http or https URL"),
            Self::Malformed(e) => write!(f, "the site's offer is malformed: {e}"),
            Self::NoChannelScheme => {
                f.write_str("the site asks for a payment Trickle cannot make (no channel offer)")
            }
            Self::WrongNetwork { wallet, offered } => {
                let names: Vec<String> = offered
                    .iter()
                    .map(|id| network_name(id).map_or_else(|| id.clone(), |n| n.to_string()))
                    .collect();
                write!(
                    f,
                    "the site offers no channel payment on {wallet} (only on {})",
                    names.join(", ")
                )
            }
            Self::ZeroAmount(field) => write!(f, "the offer's {field} is zero"),
            Self::AboveMaxMoney(field) => {
                write!(f, "the offer's {field} is above 21 million BTC")
            }
            Self::ExpiryTooShort { offered, min } => write!(
                f,
                "the site offers channels of {offered} blocks; at least {min} are needed"
            ),
            Self::ResourceMismatch { offered, requested } => write!(
                f,
                "the offer is for {offered}, not for the page requested ({requested})"
            ),
            Self::BadEndpoint(e) => write!(f, "the channel endpoint {e:?} is not an http(s) URL"),
            Self::PlainHttp(url) => write!(
                f,
                "{url} is plain http: Trickle pays only https sites (http only on localhost)"
            ),
            Self::EndpointElsewhere { endpoint, origin } => write!(
                f,
                "the channel endpoint {endpoint} is not on {origin}, and not allowed"
            ),
            Self::PayeeKeyChanged { .. } => {
                f.write_str("the site's payee key changed since its channel was opened; not paying")
            }
            Self::BudgetMismatch { budget, origin } => {
                write!(f, "the budget of {budget} does not apply to {origin}")
            }
            Self::Revoked { origin } => write!(f, "payments to {origin} are revoked"),
            Self::OverMaxPrice { price, max_price } => write!(
                f,
                "the price of {} sat is above the max price of {} sat per request",
                sat(price),
                sat(max_price)
            ),
            Self::ChannelTooSmall { wish, min } => write!(
                f,
                "{} sat to lock is below the site's minimum channel of {} sat",
                sat(wish),
                sat(min)
            ),
            Self::ChannelAboveLimit { min, limit } => write!(
                f,
                "the site's minimum channel of {} sat is above the limit of {} sat per channel",
                sat(min),
                sat(limit)
            ),
            Self::MinPaymentTooLarge { min_payment, limit } => write!(
                f,
                "the site asks a first payment of {} sat, above the limit of {} sat",
                sat(min_payment),
                sat(limit)
            ),
        }
    }
}

impl std::error::Error for OfferError {}

impl From<HeaderError> for OfferError {
    fn from(e: HeaderError) -> Self {
        Self::Malformed(e)
    }
}

/// `url` parsed, without its fragment (never sent to a server).
fn without_fragment(url: &str) -> Option<url::Url> {
    let mut parsed = url::Url::parse(url).ok()?;
    parsed.set_fragment(None);
    Some(parsed)
}

fn check_amounts(offer: &PaymentRequirements) -> Result<(), OfferError> {
    let e = &offer.extra;
    for (field, amount) in [
        ("price", offer.amount),
        ("minimum channel value", e.min_channel_value),
        ("maximum channel value", e.max_channel_value),
        ("minimum payment", e.min_payment),
    ] {
        if amount == Amount::ZERO {
            return Err(OfferError::ZeroAmount(field));
        }
        if amount > Amount::MAX_MONEY {
            return Err(OfferError::AboveMaxMoney(field));
        }
    }
    if e.min_payment > e.max_channel_value {
        return Err(HeaderError::Invalid("minPayment is above maxChannelValue".into()).into());
    }
    Ok(())
}

fn check_endpoint(endpoint: &str, origin: &str, policy: &OfferPolicy) -> Result<(), OfferError> {
    let bad = || OfferError::BadEndpoint(endpoint.to_owned());
    let parsed = url::Url::parse(endpoint).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host().is_none()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(bad());
    }
    let at = parsed.origin().ascii_serialization();
    let allowed = at == origin
        || policy
            .allowed_endpoints
            .iter()
            .any(|a| normalize_origin(a).is_ok_and(|a| a == at));
    if !allowed {
        return Err(OfferError::EndpointElsewhere {
            endpoint: endpoint.to_owned(),
            origin: origin.to_owned(),
        });
    }
    if parsed.scheme() == "http" && !on_this_machine(&parsed) {
        return Err(OfferError::PlainHttp(endpoint.to_owned()));
    }
    Ok(())
}

/// Checks the offer `required` that answered a request for `ctx.url` (see the
/// [module documentation](self) for the rules).
pub fn check_offer(
    required: &PaymentRequired,
    ctx: &OfferContext<'_>,
) -> Result<CheckedOffer, OfferError> {
    let requested = without_fragment(ctx.url)
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| OfferError::BadUrl(ctx.url.to_owned()))?;
    if requested.scheme() == "http" && !on_this_machine(&requested) {
        return Err(OfferError::PlainHttp(ctx.url.to_owned()));
    }
    let origin =
        site_origin(requested.as_str()).map_err(|_| OfferError::BadUrl(ctx.url.to_owned()))?;
    let host = requested.host_str().unwrap_or_default().to_owned();

    if required.x402_version != X402_VERSION {
        return Err(HeaderError::Invalid(format!(
            "x402Version {} is not {X402_VERSION}",
            required.x402_version
        ))
        .into());
    }
    let offer = match required.channel_offer(ctx.network) {
        Some(offer) => offer,
        None => {
            let offered: Vec<String> = required
                .accepts
                .iter()
                .filter(|a| a.scheme == SCHEME)
                .map(|a| a.network.clone())
                .collect();
            return Err(if offered.is_empty() {
                OfferError::NoChannelScheme
            } else {
                OfferError::WrongNetwork {
                    wallet: ctx.network,
                    offered,
                }
            });
        }
    };

    check_amounts(offer)?;
    let offered_expiry = offer.extra.max_expiry_blocks;
    let min_expiry = ctx.policy.min_expiry_blocks.max(1);
    if offered_expiry < min_expiry {
        return Err(OfferError::ExpiryTooShort {
            offered: offered_expiry,
            min: min_expiry,
        });
    }
    offer.validate()?;

    if without_fragment(&required.resource.url).as_ref() != Some(&requested) {
        return Err(OfferError::ResourceMismatch {
            offered: required.resource.url.clone(),
            requested: ctx.url.to_owned(),
        });
    }
    check_endpoint(&offer.extra.endpoint, &origin, ctx.policy)?;

    if let Some(pinned) = ctx.pinned_payee {
        if *pinned != offer.pay_to {
            return Err(OfferError::PayeeKeyChanged {
                pinned: Box::new(*pinned),
                offered: Box::new(offer.pay_to),
            });
        }
    }

    let approval = match ctx.budget {
        None => Approval::NoBudget,
        Some(budget) => {
            if budget.origin() != origin {
                return Err(OfferError::BudgetMismatch {
                    budget: budget.origin().to_owned(),
                    origin,
                });
            }
            if budget.state() == BudgetState::Revoked {
                return Err(OfferError::Revoked { origin });
            }
            if offer.amount > budget.terms().max_price {
                return Err(OfferError::OverMaxPrice {
                    price: offer.amount,
                    max_price: budget.terms().max_price,
                });
            }
            if budget.needs_approval(offer.amount) {
                Approval::Prompt
            } else {
                Approval::Auto
            }
        }
    };

    let version = if offer.extra.versions.contains(&2) {
        Version::V2
    } else {
        Version::V1
    };
    Ok(CheckedOffer {
        origin,
        host,
        resource: required.resource.clone(),
        requirements: offer.clone(),
        version,
        expiry_blocks: offered_expiry.min(ctx.policy.limits.max_expiry_blocks),
        approval,
    })
}
