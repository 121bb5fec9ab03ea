//! The payee's accounting for priced requests: nonces that bind a payment to one resource, and
//! the credit left by increments a request did not need.

use core::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bitcoin::hashes::{hmac, sha256, Hash, HashEngine};
use bitcoin::Amount;
use serde::{Deserialize, Serialize};

/// Random bytes at the front of a nonce; the caller supplies them (the core has no RNG).
pub const NONCE_RANDOM_LEN: usize = 16;
const NONCE_TIME_LEN: usize = 8;
const NONCE_MAC_LEN: usize = 16;
const NONCE_LEN: usize = NONCE_RANDOM_LEN + NONCE_TIME_LEN + NONCE_MAC_LEN;

/// Issues and checks nonces: `random || issued_at || HMAC-SHA256(key, random || issued_at ||
/// url)[..16]`, unpadded base64url, `issued_at` being Unix seconds as a big-endian `u64`. A
/// nonce proves the server issued it for that URL at that time, so the server stores nothing
/// until a nonce is paid, a payment made for one resource is refused at another, and the
/// server can tell how old an offer is (the caller supplies the time: the core has no clock).
#[derive(Clone)]
pub struct NonceKey([u8; 32]);

/// Why a nonce is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NonceError {
    /// Not base64url of the right length.
    Malformed,
    /// Issued for another resource, or not by this server.
    WrongResource,
}

impl fmt::Display for NonceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("nonce is malformed"),
            Self::WrongResource => f.write_str("nonce was not issued for this resource"),
        }
    }
}

impl std::error::Error for NonceError {}

impl NonceKey {
    /// A key from 32 secret bytes.
    pub fn new(secret: [u8; 32]) -> Self {
        Self(secret)
    }

    fn mac(&self, random_and_time: &[u8], url: &str) -> [u8; NONCE_MAC_LEN] {
        let mut engine = hmac::HmacEngine::<sha256::Hash>::new(&self.0);
        engine.input(random_and_time);
        engine.input(url.as_bytes());
        let full = hmac::Hmac::<sha256::Hash>::from_engine(engine).to_byte_array();
        let mut out = [0u8; NONCE_MAC_LEN];
        out.copy_from_slice(&full[..NONCE_MAC_LEN]);
        out
    }

    /// A nonce for `url`, from fresh random bytes, issued at `issued_at` (Unix seconds).
    pub fn issue(&self, random: [u8; NONCE_RANDOM_LEN], issued_at: u64, url: &str) -> String {
        let mut bytes = random.to_vec();
        bytes.extend(issued_at.to_be_bytes());
        bytes.extend(self.mac(&bytes, url));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Checks that `nonce` was issued by this key for `url`; returns when (Unix seconds).
    pub fn check(&self, nonce: &str, url: &str) -> Result<u64, NonceError> {
        if nonce.len() > 64 {
            return Err(NonceError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| NonceError::Malformed)?;
        if bytes.len() != NONCE_LEN {
            return Err(NonceError::Malformed);
        }
        let (signed, mac) = bytes.split_at(NONCE_RANDOM_LEN + NONCE_TIME_LEN);
        // Comparing MACs: a timing difference reveals nothing useful about a random-keyed MAC
        // of attacker-chosen input, but fold the bytes anyway so the comparison is constant-time.
        let diff = self
            .mac(signed, url)
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(NonceError::WrongResource);
        }
        let mut issued_at = [0u8; NONCE_TIME_LEN];
        issued_at.copy_from_slice(&signed[NONCE_RANDOM_LEN..]);
        Ok(u64::from_be_bytes(issued_at))
    }
}

/// What a channel has paid and what priced requests have consumed of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Total the server holds a signature for.
    pub paid: Amount,
    /// Total charged to requests.
    pub consumed: Amount,
}

/// A request costs more than the channel's credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InsufficientCredit {
    /// The request's price.
    pub price: Amount,
    /// The credit available.
    pub credit: Amount,
}

impl fmt::Display for InsufficientCredit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "price {} is above the credit {}",
            self.price, self.credit
        )
    }
}

impl std::error::Error for InsufficientCredit {}

impl Ledger {
    /// Paid but not yet consumed.
    pub fn credit(&self) -> Amount {
        self.paid.checked_sub(self.consumed).unwrap_or(Amount::ZERO)
    }

    /// The ledger after the channel's best payment became `paid` (amounts only grow, so an
    /// older total changes nothing: an increment is counted once).
    pub fn with_paid(self, paid: Amount) -> Self {
        Self {
            paid: self.paid.max(paid),
            ..self
        }
    }

    /// The ledger after a charge of `price` is given back: the request it paid for failed
    /// after the charge was stored.
    pub fn refund(self, price: Amount) -> Self {
        Self {
            consumed: self.consumed.checked_sub(price).unwrap_or(Amount::ZERO),
            ..self
        }
    }

    /// The ledger after charging `price` to the credit.
    pub fn charge(self, price: Amount) -> Result<Self, InsufficientCredit> {
        if price > self.credit() {
            return Err(InsufficientCredit {
                price,
                credit: self.credit(),
            });
        }
        Ok(Self {
            consumed: self.consumed + price,
            ..self
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_binds_to_its_resource_and_key() {
        let key = NonceKey::new([7; 32]);
        let n = key.issue([1; 16], 1_700_000_000, "https://a.example/x");
        assert_eq!(key.check(&n, "https://a.example/x"), Ok(1_700_000_000));
        assert_eq!(
            key.check(&n, "https://a.example/y"),
            Err(NonceError::WrongResource)
        );
        assert_eq!(
            NonceKey::new([8; 32]).check(&n, "https://a.example/x"),
            Err(NonceError::WrongResource)
        );
        assert_eq!(
            key.check("short", "https://a.example/x"),
            Err(NonceError::Malformed)
        );
        assert_eq!(
            key.check("!!!", "https://a.example/x"),
            Err(NonceError::Malformed)
        );
        // The issue time is under the MAC: a client cannot make an offer younger.
        let mut bytes = URL_SAFE_NO_PAD.decode(&n).unwrap_or_default();
        bytes[NONCE_RANDOM_LEN + NONCE_TIME_LEN - 1] ^= 1;
        assert_eq!(
            key.check(&URL_SAFE_NO_PAD.encode(bytes), "https://a.example/x"),
            Err(NonceError::WrongResource)
        );
    }

    #[test]
    fn credit_is_consumed_once() {
        let l = Ledger::default().with_paid(Amount::from_sat(1_000));
        let l = l.charge(Amount::from_sat(600)).expect("covered");
        assert_eq!(l.credit(), Amount::from_sat(400));
        assert_eq!(
            l.charge(Amount::from_sat(500)),
            Err(InsufficientCredit {
                price: Amount::from_sat(500),
                credit: Amount::from_sat(400)
            })
        );
        // Presenting an old payment again adds nothing.
        assert_eq!(l.with_paid(Amount::from_sat(900)), l);
        let l = l.with_paid(Amount::from_sat(1_100));
        assert_eq!(l.credit(), Amount::from_sat(500));
    }
}
