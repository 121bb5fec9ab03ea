//! The unlocked session: how long an unlocked wallet stays so without use (auto-lock), and how
//! long wrong passwords make the next try wait. Pure: time (ms since the epoch) is passed in,
//! and the payer keeps both records where a restart of its platform forgets them (the
//! extension: `chrome.storage.session`).

use bitcoin::Network;
use serde::{Deserialize, Serialize};

use crate::error::WalletError;
use crate::vault::VaultKey;

/// Wrong passwords forgiven before the next try must wait.
pub const FREE_UNLOCK_ATTEMPTS: u32 = 3;
/// The wait after the first wrong password beyond the free ones; each next one doubles it.
pub const FIRST_UNLOCK_WAIT_MS: f64 = 1_000.0;
/// The longest wait.
pub const MAX_UNLOCK_WAIT_MS: f64 = 5.0 * 60_000.0;

/// An unlocked wallet's session: the key that opens its vault without the password, until when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnlockedSession {
    /// The network of the wallet it opens.
    pub network: Network,
    /// The vault key, hex.
    key: String,
    /// When the wallet locks itself (ms since epoch) unless used before.
    pub lock_at: f64,
}

impl UnlockedSession {
    /// A session for `key`, used at `now_ms`: it lasts `auto_lock_minutes` from then.
    pub fn new(network: Network, key: &VaultKey, now_ms: f64, auto_lock_minutes: u32) -> Self {
        Self {
            network,
            key: key.to_hex(),
            lock_at: now_ms + f64::from(auto_lock_minutes) * 60_000.0,
        }
    }

    /// The key, if the session is for `network` and has not timed out at `now_ms`; `None`
    /// means the session must be forgotten.
    pub fn key(&self, network: Network, now_ms: f64) -> Option<Result<VaultKey, WalletError>> {
        (self.network == network && self.lock_at > now_ms)
            .then(|| VaultKey::from_hex(&self.key).map_err(WalletError::from))
    }
}

/// Wrong passwords tried since the last unlock, and when the next try may be made.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnlockFailures {
    /// Wrong passwords in a row.
    pub count: u32,
    /// No try before this (ms since epoch).
    pub not_before: f64,
}

impl UnlockFailures {
    /// Whether a password may be tried at `now_ms`.
    pub fn check(&self, now_ms: f64) -> Result<(), WalletError> {
        let wait = self.not_before - now_ms;
        if wait > 0.0 {
            return Err(WalletError::TooManyAttempts {
                wait_secs: (wait / 1000.0).ceil() as u64,
            });
        }
        Ok(())
    }

    /// After one more wrong password at `now_ms`: past the free attempts, each try waits
    /// twice as long as the one before, up to [`MAX_UNLOCK_WAIT_MS`].
    pub fn one_more(&self, now_ms: f64) -> Self {
        let count = self.count.saturating_add(1);
        let beyond = count.saturating_sub(FREE_UNLOCK_ATTEMPTS);
        let wait = match beyond {
            0 => 0.0,
            n => (FIRST_UNLOCK_WAIT_MS * 2f64.powi(n.min(20) as i32 - 1)).min(MAX_UNLOCK_WAIT_MS),
        };
        Self {
            count,
            not_before: now_ms + wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_passwords_beyond_the_free_ones_wait_twice_as_long_each_up_to_the_cap() {
        let mut failures = UnlockFailures::default();
        let now = 1_000_000.0;
        let mut waits = Vec::new();
        for _ in 0..14 {
            failures = failures.one_more(now);
            waits.push(failures.not_before - now);
        }
        assert_eq!(&waits[..6], &[0.0, 0.0, 0.0, 1_000.0, 2_000.0, 4_000.0]);
        assert_eq!(waits[13], MAX_UNLOCK_WAIT_MS);
        assert!(failures.check(now + MAX_UNLOCK_WAIT_MS).is_ok());
        let refused = failures.check(now + 1.0).expect_err("must wait");
        assert_eq!(refused.code(), "too_many_attempts");
        assert!(matches!(
            refused,
            WalletError::TooManyAttempts { wait_secs: 300 }
        ));
        // Counting never overflows, and the wait stays capped.
        let many = UnlockFailures {
            count: u32::MAX,
            not_before: 0.0,
        };
        assert_eq!(many.one_more(now).not_before, now + MAX_UNLOCK_WAIT_MS);
    }

    #[test]
    fn a_session_opens_only_its_network_until_it_times_out() {
        let key = VaultKey::from_hex(&"11".repeat(32)).expect("key");
        let session = UnlockedSession::new(Network::Signet, &key, 0.0, 5);
        assert_eq!(session.lock_at, 300_000.0);
        let opened = session.key(Network::Signet, 299_999.0).expect("live");
        assert_eq!(opened.expect("key").to_hex(), key.to_hex());
        assert!(session.key(Network::Signet, 300_000.0).is_none());
        assert!(session.key(Network::Regtest, 1.0).is_none());
        let mut damaged = session.clone();
        damaged.key = "zz".into();
        assert_eq!(
            damaged
                .key(Network::Signet, 1.0)
                .expect("live")
                .expect_err("bad")
                .code(),
            "corrupt"
        );
    }
}
