//! Why a channel operation failed.

use core::fmt;

use trickle_channel::ChannelError;

use crate::error::WalletError;
use crate::store::StoreError;

/// Why a channel operation failed.
#[derive(Debug)]
pub enum ChannelClientError {
    /// The wallet or its storage failed.
    Wallet(WalletError),
    /// The channel protocol refused (locally or by the peer).
    Channel(ChannelError),
    /// The endpoint could not be reached or answered nonsense.
    Transport(String),
    /// No channel with this site.
    NoChannel(String),
    /// A host named where several of its sites (origins) have a channel: name one.
    SeveralChannels {
        /// The name asked for.
        name: String,
        /// The sites with a channel.
        sites: Vec<String>,
    },
    /// The site's payee key differs from the channel's: refuse to pay a different key.
    PayeeKeyChanged,
    /// A receipt that cannot be about this channel.
    BadReceipt(&'static str),
    /// The site's channel with this payee is not settled yet: another would replace its
    /// record, and with it the way to check its settlement or take its refund.
    ChannelUnsettled(String),
}

impl fmt::Display for ChannelClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wallet(e) => write!(f, "{e}"),
            Self::Channel(e) => write!(f, "channel: {e}"),
            Self::Transport(e) => write!(f, "channel endpoint: {e}"),
            Self::NoChannel(site) => write!(f, "no open channel with {site}"),
            Self::SeveralChannels { name, sites } => write!(
                f,
                "several sites on {name} have a channel ({}): name one by its origin",
                sites.join(", ")
            ),
            Self::PayeeKeyChanged => f.write_str("the site's payee key changed; not paying"),
            Self::BadReceipt(why) => write!(f, "bad receipt: {why}"),
            Self::ChannelUnsettled(site) => write!(
                f,
                "the channel with {site} is not settled yet; not opening another"
            ),
        }
    }
}

impl std::error::Error for ChannelClientError {}

impl From<WalletError> for ChannelClientError {
    fn from(e: WalletError) -> Self {
        Self::Wallet(e)
    }
}

impl From<StoreError> for ChannelClientError {
    fn from(e: StoreError) -> Self {
        Self::Wallet(WalletError::Store(e))
    }
}

impl From<ChannelError> for ChannelClientError {
    fn from(e: ChannelError) -> Self {
        Self::Channel(e)
    }
}
