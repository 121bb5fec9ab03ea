//! The chain tip, fee rate and channel terms that the payer and payee tests start from.

use bitcoin::{Amount, FeeRate};
use trickle_channel::{ChainTip, ExpiryKind, PayeePolicy, PayerConfig, Version};

use crate::keys::{key, p2wpkh, CLIENT_PAYOUT, SERVER_PAYOUT};

/// The chain both sides see when a test starts: height 1000.
pub const TIP: ChainTip = ChainTip {
    height: 1_000,
    median_time_past: 1_700_000_000,
};

/// The fee rate of refunds and closes: 2 sat/vB.
pub fn fee_rate() -> FeeRate {
    FeeRate::from_sat_per_vb_u32(2)
}

/// A payer of `version` opening 100 000 sat channels, paying out to `key(CLIENT_PAYOUT)`.
pub fn payer_config(version: Version) -> PayerConfig {
    PayerConfig {
        version,
        channel_value: Amount::from_sat(100_000),
        time_window_blocks: 144,
        max_expiry_blocks: 2_016,
        max_min_payment: Amount::from_sat(5_000),
        payout_script: p2wpkh(&key(CLIENT_PAYOUT)),
    }
}

/// A payee taking both versions, channels of 10 000 to 1 000 000 sat, paying out to
/// `key(SERVER_PAYOUT)`.
pub fn policy() -> PayeePolicy {
    PayeePolicy {
        accept_v1: true,
        accept_v2: true,
        min_channel_value: Amount::from_sat(10_000),
        max_channel_value: Amount::from_sat(1_000_000),
        min_payment: Amount::from_sat(1_000),
        min_expiry_blocks: 72,
        max_expiry_blocks: 1_008,
        expiry_kind: ExpiryKind::Height,
        close_margin_blocks: 12,
        payout_script: p2wpkh(&key(SERVER_PAYOUT)),
    }
}
