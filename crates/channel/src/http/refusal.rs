//! Why a server refused a payment: x402's error codes, Trickle's, and the channel's.

/// Why a server refused a payment: the `errorReason` of `PAYMENT-RESPONSE` (and the `error` of
/// the `PAYMENT-REQUIRED` that comes with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The `PAYMENT-SIGNATURE` header does not parse.
    InvalidHeader,
    /// x402's `invalid_x402_version`: the header's `x402Version` is not 2.
    InvalidX402Version,
    /// x402's `unsupported_scheme`: the payment is for another scheme than `channel`.
    UnsupportedScheme,
    /// x402's `invalid_payment_requirements`: a payment answering an offer whose `accepted`
    /// is not the offer the server makes for this request (x402's matching, `extra.nonce`
    /// excepted).
    InvalidPaymentRequirements,
    /// The payment is for another network.
    WrongNetwork,
    /// The payment is for another payee key.
    WrongPayee,
    /// The nonce was not issued for this resource (a payment reused elsewhere).
    WrongResource,
    /// The payment does not cover the price, even with the channel's credit.
    InsufficientCredit,
    /// The header's `authorization` is missing or is not the channel key's MAC of its fields.
    BadAuthorization,
    /// The nonce was already charged, and this request is no free reload of it (not `GET` or
    /// `HEAD`, or after the offer's `maxTimeoutSeconds`): pay the fresh offer.
    NonceSpent,
    /// The channel refused the payment (bad signature, decreasing amount, unknown channel ...).
    Channel(crate::error::ErrorCode),
}

impl Refusal {
    /// Every refusal that is not a channel error code.
    const OWN: [Self; 10] = [
        Self::InvalidHeader,
        Self::InvalidX402Version,
        Self::UnsupportedScheme,
        Self::InvalidPaymentRequirements,
        Self::WrongNetwork,
        Self::WrongPayee,
        Self::WrongResource,
        Self::InsufficientCredit,
        Self::BadAuthorization,
        Self::NonceSpent,
    ];

    /// Every refusal.
    pub fn all() -> impl Iterator<Item = Self> {
        Self::OWN
            .into_iter()
            .chain(crate::error::ErrorCode::ALL.map(Self::Channel))
    }

    /// The `errorReason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidHeader => "invalid_header",
            Self::InvalidX402Version => "invalid_x402_version",
            Self::UnsupportedScheme => "unsupported_scheme",
            Self::InvalidPaymentRequirements => "invalid_payment_requirements",
            Self::WrongNetwork => "wrong_network",
            Self::WrongPayee => "wrong_payee",
            Self::WrongResource => "wrong_resource",
            Self::InsufficientCredit => "insufficient_credit",
            Self::BadAuthorization => "bad_authorization",
            Self::NonceSpent => "nonce_spent",
            Self::Channel(code) => code.name(),
        }
    }

    /// The refusal an `errorReason` names, if any.
    pub fn parse(reason: &str) -> Option<Self> {
        Self::all().find(|r| r.as_str() == reason)
    }
}
