//! Fixed keys: `key(n)` is the secret key whose 32 bytes are all `n`, and each role in a test
//! has its byte.

use bitcoin::secp256k1::{PublicKey, SecretKey, SECP256K1};
use bitcoin::{CompressedPublicKey, ScriptBuf};

/// The payer's (client's) channel key.
pub const CLIENT: u8 = 1;
/// The payee's (server's) channel key.
pub const SERVER: u8 = 2;
/// The key of the wallet whose coin funds contracts (see [`crate::funding`]).
pub const WALLET: u8 = 3;
/// The key the payee's settlements pay to.
pub const SERVER_PAYOUT: u8 = 4;
/// The key the payer's change and refunds pay to.
pub const CLIENT_PAYOUT: u8 = 5;

/// The secret key of 32 bytes `n` (`n` is not 0).
pub fn key(n: u8) -> SecretKey {
    SecretKey::from_slice(&[n; 32]).expect("valid key")
}

/// The public key of `k`.
pub fn pubkey(k: &SecretKey) -> PublicKey {
    PublicKey::from_secret_key(SECP256K1, k)
}

/// The P2WPKH script of `k`.
pub fn p2wpkh(k: &SecretKey) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&CompressedPublicKey(pubkey(k)).wpubkey_hash())
}
