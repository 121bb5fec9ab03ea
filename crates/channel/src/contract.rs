//! The contract: its P2WSH script for each protocol version, and chain-time arithmetic on its expiry.

use bitcoin::absolute::LockTime;
use bitcoin::opcodes::all::{
    OP_CHECKMULTISIG, OP_CHECKSIG, OP_CHECKSIGVERIFY, OP_CLTV, OP_DROP, OP_ELSE, OP_ENDIF, OP_IF,
    OP_PUSHNUM_2,
};
use bitcoin::script::Builder;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, ScriptBuf, TxOut};
use serde::{Deserialize, Serialize};

/// Average block interval used to express a timestamp distance in blocks.
pub const SECONDS_PER_BLOCK: i64 = 600;

/// Protocol version of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Version {
    /// 2-of-2 multisig contract; the refund is co-signed by the server and locked by `nLockTime`.
    V1,
    /// `OP_CHECKLOCKTIMEVERIFY` contract; the client alone signs the refund after expiry.
    V2,
}

impl Version {
    /// The major version number on the wire.
    pub fn major(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }

    /// The version for a major number, if we speak it.
    pub fn from_major(major: u8) -> Option<Self> {
        match major {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }
}

/// The chain as both sides see it: height and median-time-past of the tip.
///
/// All expiry decisions use this, never the wall clock: a time lock is judged by consensus
/// against median-time-past (BIP113), and a block-height lock against the next block's height.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainTip {
    /// Height of the tip block.
    pub height: u32,
    /// Median time past of the tip block (the median timestamp of it and its 10 ancestors).
    pub median_time_past: u32,
}

impl ChainTip {
    /// Whether a transaction with this `nLockTime` is final in the next block (Core's `IsFinalTx`
    /// for a transaction whose inputs do not all have final sequence numbers).
    pub fn is_final(&self, lock_time: LockTime) -> bool {
        match lock_time {
            LockTime::Blocks(h) => h.to_consensus_u32() <= self.height,
            LockTime::Seconds(t) => t.to_consensus_u32() < self.median_time_past,
        }
    }

    /// Blocks from this tip until `expiry` becomes final; a timestamp distance counts
    /// [`SECONDS_PER_BLOCK`] per block. Zero or negative means the refund is already valid.
    pub fn blocks_until(&self, expiry: LockTime) -> i64 {
        match expiry {
            LockTime::Blocks(h) => i64::from(h.to_consensus_u32()) - i64::from(self.height),
            LockTime::Seconds(t) => {
                let secs = i64::from(t.to_consensus_u32()) - i64::from(self.median_time_past);
                secs.div_euclid(SECONDS_PER_BLOCK) + 1
            }
        }
    }

    /// An expiry `blocks` blocks from this tip, of the same kind (height or time) as `like`.
    pub fn expiry_after(&self, blocks: u32, like: ExpiryKind) -> LockTime {
        match like {
            ExpiryKind::Height => {
                LockTime::from_consensus(self.height.saturating_add(blocks).min(499_999_999))
            }
            ExpiryKind::Time => {
                let secs = u64::from(blocks) * SECONDS_PER_BLOCK as u64;
                let t = u64::from(self.median_time_past).saturating_add(secs);
                LockTime::from_consensus(t.clamp(500_000_000, u64::from(u32::MAX)) as u32)
            }
        }
    }
}

/// Whether an expiry is a block height or a timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpiryKind {
    /// Absolute block height.
    Height,
    /// Unix time, compared with median-time-past.
    Time,
}

/// The terms both sides agree on; they fix the contract output exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contract {
    /// Protocol version.
    pub version: Version,
    /// The client's (payer's) key.
    pub client_key: PublicKey,
    /// The server's (payee's) key.
    pub server_key: PublicKey,
    /// When the client may take its refund.
    pub expiry: LockTime,
    /// Value locked in the contract output.
    pub value: Amount,
}

impl Contract {
    /// The witness script.
    ///
    /// v1: `2 <client> <server> 2 CHECKMULTISIG`.
    /// v2: `IF <server> CHECKSIGVERIFY ELSE <expiry> CLTV DROP ENDIF <client> CHECKSIG`.
    pub fn witness_script(&self) -> ScriptBuf {
        match self.version {
            Version::V1 => Builder::new()
                .push_opcode(OP_PUSHNUM_2)
                .push_slice(self.client_key.serialize())
                .push_slice(self.server_key.serialize())
                .push_opcode(OP_PUSHNUM_2)
                .push_opcode(OP_CHECKMULTISIG)
                .into_script(),
            Version::V2 => Builder::new()
                .push_opcode(OP_IF)
                .push_slice(self.server_key.serialize())
                .push_opcode(OP_CHECKSIGVERIFY)
                .push_opcode(OP_ELSE)
                .push_lock_time(self.expiry)
                .push_opcode(OP_CLTV)
                .push_opcode(OP_DROP)
                .push_opcode(OP_ENDIF)
                .push_slice(self.client_key.serialize())
                .push_opcode(OP_CHECKSIG)
                .into_script(),
        }
    }

    /// The P2WSH `scriptPubKey` of the contract output.
    pub fn script_pubkey(&self) -> ScriptBuf {
        ScriptBuf::new_p2wsh(&self.witness_script().wscript_hash())
    }

    /// The contract output the client's wallet must fund.
    pub fn output(&self) -> TxOut {
        TxOut {
            value: self.value,
            script_pubkey: self.script_pubkey(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn height_lock_is_final_once_the_next_block_is_above_it() {
        let lock = LockTime::from_consensus(200);
        let tip = |height| ChainTip {
            height,
            median_time_past: 0,
        };
        assert!(!tip(198).is_final(lock));
        assert!(!tip(199).is_final(lock));
        assert!(tip(200).is_final(lock));
        assert_eq!(tip(150).blocks_until(lock), 50);
        assert_eq!(tip(200).blocks_until(lock), 0);
    }

    #[test]
    fn time_lock_is_final_once_median_time_past_is_above_it() {
        let lock = LockTime::from_consensus(1_700_000_000);
        let tip = |median_time_past| ChainTip {
            height: 10,
            median_time_past,
        };
        assert!(!tip(1_700_000_000).is_final(lock));
        assert!(tip(1_700_000_001).is_final(lock));
        assert_eq!(tip(1_700_000_000 - 6000).blocks_until(lock), 11);
        assert_eq!(tip(1_700_000_001).blocks_until(lock), 0);
    }

    #[test]
    fn expiry_after_keeps_its_kind() {
        let tip = ChainTip {
            height: 100,
            median_time_past: 1_700_000_000,
        };
        assert_eq!(
            tip.expiry_after(144, ExpiryKind::Height),
            LockTime::from_consensus(244)
        );
        let t = tip.expiry_after(144, ExpiryKind::Time);
        assert_eq!(t, LockTime::from_consensus(1_700_000_000 + 144 * 600));
        assert_eq!(tip.blocks_until(t), 145);
    }
}
