//! Why a site was not paid.

use super::*;

/// Why a site was not paid. Nothing was signed beyond what the budget holds reserved.
#[derive(Debug)]
pub enum PayError {
    /// The offer was refused.
    Offer(OfferError),
    /// The budget refused or failed.
    Budget(BudgetError),
    /// The channel could not be opened or paid.
    Channel(ChannelClientError),
    /// A header that does not parse.
    BadHeader(String),
    /// The approver did not approve the payment: the user is to be asked, or a run's caps
    /// do not allow it. Nothing was signed.
    NotApproved(Box<Ask>),
    /// The payee refused the payment: its `errorReason`.
    Refused(String),
    /// The site asked again to be paid for a request just paid for; not paid twice.
    AskedTwice,
    /// The payee did not close the channel: it stays open, and still pays.
    CloseRefused(ChannelClientError),
}

impl PayError {
    /// A stable snake_case name for the pages.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Offer(OfferError::WrongNetwork { .. }) => "wrong_network",
            Self::Offer(OfferError::OverMaxPrice { .. }) => "over_max_price",
            Self::Offer(OfferError::EndpointElsewhere { .. }) => "endpoint_elsewhere",
            Self::Offer(OfferError::PayeeKeyChanged { .. }) => "payee_key_changed",
            Self::Offer(OfferError::Revoked { .. }) => "revoked",
            Self::Offer(_) => "bad_offer",
            Self::Budget(BudgetError::Store(_)) => "storage",
            Self::Budget(_) => "budget",
            Self::Channel(ChannelClientError::Wallet(e)) => e.code(),
            Self::Channel(ChannelClientError::PayeeKeyChanged) => "payee_key_changed",
            Self::Channel(ChannelClientError::NoChannel(_)) => "no_channel",
            Self::Channel(ChannelClientError::SeveralChannels { .. }) => "several_channels",
            Self::Channel(_) => "channel",
            Self::BadHeader(_) => "bad_header",
            Self::NotApproved(_) => "not_approved",
            Self::Refused(_) => "refused",
            Self::AskedTwice => "paid_again",
            Self::CloseRefused(_) => "close_refused",
        }
    }
}

impl fmt::Display for PayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Offer(e) => write!(f, "{e}"),
            Self::Budget(e) => write!(f, "{e}"),
            Self::Channel(e) => write!(f, "{e}"),
            Self::BadHeader(e) => write!(f, "{e}"),
            Self::NotApproved(ask) => {
                let sat = Amount::to_sat;
                match &ask.reason {
                    AskReason::NoBudget => write!(f, "payments to {} are not approved", ask.origin),
                    AskReason::Confirm => write!(
                        f,
                        "the price of {} sat at {} needs the user's confirmation",
                        sat(ask.price),
                        ask.origin
                    ),
                    AskReason::LockAboveLimit { lock, limit } => write!(
                        f,
                        "a channel with {} locks {} sat, above the budget's limit of {} sat: \
                         the user must approve it",
                        ask.origin,
                        sat(*lock),
                        sat(*limit)
                    ),
                    AskReason::BudgetExhausted { remaining, needed } => write!(
                        f,
                        "the budget for {} has {} sat left; this payment needs {} sat",
                        ask.origin,
                        sat(*remaining),
                        sat(*needed)
                    ),
                }
            }
            Self::Refused(reason) => write!(f, "the payee refused the payment: {reason}"),
            Self::AskedTwice => f.write_str(
                "the site asked to be paid again for a request it was just paid for; not paying twice",
            ),
            Self::CloseRefused(e) => write!(
                f,
                "the payee did not close the channel: {e}; it stays open and still pays the site, \
                 and after its expiry the wallet takes the funds back by itself"
            ),
        }
    }
}

impl std::error::Error for PayError {}

impl From<OfferError> for PayError {
    fn from(e: OfferError) -> Self {
        Self::Offer(e)
    }
}

impl From<BudgetError> for PayError {
    fn from(e: BudgetError) -> Self {
        Self::Budget(e)
    }
}

impl From<ChannelClientError> for PayError {
    fn from(e: ChannelClientError) -> Self {
        Self::Channel(e)
    }
}

impl From<WalletError> for PayError {
    fn from(e: WalletError) -> Self {
        Self::Channel(e.into())
    }
}

impl From<crate::store::StoreError> for PayError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Budget(e.into())
    }
}
