//! Channel identity: both sides find the same channel after restarts and network changes.

use core::fmt;

use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::secp256k1::PublicKey;
use serde::{Deserialize, Serialize};

/// Domain separator so a channel id never collides with another use of SHA-256.
const TAG: &[u8] = b"trickle/channel-id/v1";

/// `SHA256(tag || payee key || len(label) || label)`, where the label is the client's choice,
/// such as the site's host. One client keeps at most one channel per id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChannelId(pub [u8; 32]);

impl ChannelId {
    /// The id of the channel with payee `payee_key` under `label`.
    pub fn new(payee_key: &PublicKey, label: &str) -> Self {
        let mut engine = sha256::Hash::engine();
        engine.input(TAG);
        engine.input(&payee_key.serialize());
        engine.input(&(label.len() as u64).to_le_bytes());
        engine.input(label.as_bytes());
        Self(sha256::Hash::from_engine(engine).to_byte_array())
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
