//! Secrets at rest: Argon2id turns the password into a key, XChaCha20-Poly1305 seals the secret.

use core::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::Aead;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

/// The sealed form of a secret, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Format of this record.
    pub format: u16,
    /// Argon2id memory cost, KiB.
    pub m_cost: u32,
    /// Argon2id passes.
    pub t_cost: u32,
    /// Argon2id lanes.
    pub p_cost: u32,
    /// KDF salt (hex).
    pub salt: String,
    /// AEAD nonce (hex).
    pub nonce: String,
    /// Ciphertext with its tag (hex).
    pub ciphertext: String,
}

/// Argon2id cost of new records: 64 MiB, 3 passes, 1 lane. A stolen record is attacked
/// offline, so this is well above OWASP's minimum for online logins (19 MiB, 2 passes). Each
/// record carries its own cost: older ones keep theirs and open as before.
const M_COST: u32 = 64 * 1024;
const T_COST: u32 = 3;
const P_COST: u32 = 1;
const FORMAT: u16 = 1;

/// The fewest characters, and distinct characters, a new password may have.
pub const MIN_PASSWORD_CHARS: usize = 12;
const MIN_DISTINCT_CHARS: usize = 5;

/// Why a new password is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeakPassword;

impl fmt::Display for WeakPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "choose a password of at least {MIN_PASSWORD_CHARS} characters that is not one \
             character or a short pattern repeated (a few unrelated words make a good one)"
        )
    }
}

impl std::error::Error for WeakPassword {}

/// Checks a new password (one that will seal a record; opening takes any): long enough, and
/// not a few characters repeated. Length is what makes an offline guess expensive.
pub fn check_password(password: &str) -> Result<(), WeakPassword> {
    let distinct: std::collections::BTreeSet<char> = password.chars().collect();
    if password.chars().count() < MIN_PASSWORD_CHARS || distinct.len() < MIN_DISTINCT_CHARS {
        return Err(WeakPassword);
    }
    Ok(())
}

/// Why a secret could not be sealed or opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VaultError {
    /// The password is wrong (or the record was tampered with).
    WrongPassword,
    /// The record is malformed or of an unknown format.
    Corrupt(&'static str),
    /// The operating system's random source failed.
    Random,
}

impl fmt::Display for VaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongPassword => f.write_str("wrong password"),
            Self::Corrupt(why) => write!(f, "sealed secret is corrupt: {why}"),
            Self::Random => f.write_str("the system random source failed"),
        }
    }
}

impl std::error::Error for VaultError {}

fn derive_key(password: &str, salt: &[u8], m: u32, t: u32, p: u32) -> Result<[u8; 32], VaultError> {
    let params =
        Params::new(m, t, p, Some(32)).map_err(|_| VaultError::Corrupt("argon2 parameters"))?;
    let mut key = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), salt, &mut key)
        .map_err(|_| VaultError::Corrupt("argon2 salt"))?;
    Ok(key)
}

/// Fresh random bytes from the system's CSPRNG (the browser's `crypto.getRandomValues` on wasm).
pub fn random<const N: usize>() -> Result<[u8; N], VaultError> {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out).map_err(|_| VaultError::Random)?;
    Ok(out)
}

/// The key a password derives for one sealed record; holding it opens the record without the
/// password's slow derivation (the extension keeps it in session memory while unlocked).
#[derive(Clone, PartialEq, Eq)]
pub struct VaultKey([u8; 32]);

impl fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VaultKey(..)")
    }
}

impl VaultKey {
    /// The key as hex, for session storage.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// A key from [`VaultKey::to_hex`].
    pub fn from_hex(text: &str) -> Result<Self, VaultError> {
        let bytes = unhex(text).ok_or(VaultError::Corrupt("session key"))?;
        Ok(Self(
            bytes
                .try_into()
                .map_err(|_| VaultError::Corrupt("session key length"))?,
        ))
    }

    /// Derives the key `password` gives for `sealed` (Argon2id, deliberately slow).
    pub fn derive(sealed: &Sealed, password: &str) -> Result<Self, VaultError> {
        if sealed.format != FORMAT {
            return Err(VaultError::Corrupt("unknown format"));
        }
        // Bound the work a corrupt or hostile record can ask for (1 GiB, 10 passes).
        if sealed.m_cost > 1 << 20 || sealed.t_cost > 10 || sealed.p_cost > 4 {
            return Err(VaultError::Corrupt("argon2 parameters out of range"));
        }
        let salt = unhex(&sealed.salt).ok_or(VaultError::Corrupt("salt"))?;
        derive_key(password, &salt, sealed.m_cost, sealed.t_cost, sealed.p_cost).map(Self)
    }

    /// Opens `sealed` with this key.
    pub fn open(&self, sealed: &Sealed) -> Result<Vec<u8>, VaultError> {
        let nonce = unhex(&sealed.nonce).ok_or(VaultError::Corrupt("nonce"))?;
        if nonce.len() != 24 {
            return Err(VaultError::Corrupt("nonce length"));
        }
        let ciphertext = unhex(&sealed.ciphertext).ok_or(VaultError::Corrupt("ciphertext"))?;
        XChaCha20Poly1305::new(&self.0.into())
            .decrypt(XNonce::from_slice(&nonce), ciphertext.as_slice())
            .map_err(|_| VaultError::WrongPassword)
    }
}

/// Seals `secret` under `password`; also returns the key, so the caller need not derive it again.
pub fn seal(secret: &[u8], password: &str) -> Result<(Sealed, VaultKey), VaultError> {
    seal_at_cost(secret, password, M_COST, T_COST, P_COST)
}

fn seal_at_cost(
    secret: &[u8],
    password: &str,
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
) -> Result<(Sealed, VaultKey), VaultError> {
    let salt = random::<16>()?;
    let nonce = random::<24>()?;
    let key = derive_key(password, &salt, m_cost, t_cost, p_cost)?;
    let ciphertext = XChaCha20Poly1305::new(&key.into())
        .encrypt(XNonce::from_slice(&nonce), secret)
        .map_err(|_| VaultError::Corrupt("encryption failed"))?;
    let sealed = Sealed {
        format: FORMAT,
        m_cost,
        t_cost,
        p_cost,
        salt: hex(&salt),
        nonce: hex(&nonce),
        ciphertext: hex(&ciphertext),
    };
    Ok((sealed, VaultKey(key)))
}

/// Opens a sealed secret with `password`.
pub fn open(sealed: &Sealed, password: &str) -> Result<Vec<u8>, VaultError> {
    VaultKey::derive(sealed, password)?.open(sealed)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || text.len() > 4096 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open() {
        let (sealed, key) = seal(b"abandon abandon", "correct horse").expect("seal");
        assert_eq!(
            key.open(&sealed).expect("open with key"),
            b"abandon abandon"
        );
        let copy = VaultKey::from_hex(&key.to_hex()).expect("hex round trip");
        assert_eq!(copy, key);
        assert!(VaultKey::from_hex("abcd").is_err());
        assert_eq!(
            open(&sealed, "correct horse").expect("open"),
            b"abandon abandon"
        );
        assert_eq!(open(&sealed, "wrong horse"), Err(VaultError::WrongPassword));
        let mut tampered = sealed.clone();
        tampered.ciphertext.replace_range(0..2, "00");
        assert!(open(&tampered, "correct horse").is_err());
        let mut greedy = sealed;
        greedy.m_cost = u32::MAX;
        assert_eq!(
            open(&greedy, "correct horse"),
            Err(VaultError::Corrupt("argon2 parameters out of range"))
        );
    }

    #[test]
    fn new_records_cost_64_mib_and_3_passes_and_old_records_still_open() {
        let (sealed, _) = seal(b"secret", "correct horse").expect("seal");
        assert_eq!((sealed.m_cost, sealed.t_cost), (64 * 1024, 3));
        // A record sealed at the old cost (19 MiB, 2 passes) keeps it and opens.
        let (old, _) = seal_at_cost(b"secret", "correct horse", 19 * 1024, 2, 1).expect("seal");
        assert_eq!((old.m_cost, old.t_cost), (19 * 1024, 2));
        assert_eq!(open(&old, "correct horse").expect("open"), b"secret");
        assert_eq!(open(&old, "wrong horse"), Err(VaultError::WrongPassword));
    }

    #[test]
    fn a_new_password_must_be_long_and_not_a_repeated_pattern() {
        for weak in [
            "",
            "hunter2",
            "eleven char",
            "aaaaaaaaaaaaaaaa",
            "abababababababab",
            "12341234123412",
        ] {
            assert_eq!(check_password(weak), Err(WeakPassword), "{weak:?}");
        }
        for strong in [
            "correct horse battery",
            "tröpfeln über",
            "a new password, after forgetting",
        ] {
            assert_eq!(check_password(strong), Ok(()), "{strong:?}");
        }
    }
}
