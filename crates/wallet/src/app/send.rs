//! What a user may ask to send: the amount and fee rate typed in, checked the same way for
//! every payer before a transaction is built.

use bitcoin::{Amount, FeeRate};

use crate::error::WalletError;

/// The fee rates a user may choose, sat/vB: below 1 a node does not relay the transaction, and
/// above 10,000 the rate is surely a typing mistake.
pub const FEE_RATE_SAT_VB: core::ops::RangeInclusive<f64> = 1.0..=10_000.0;

/// The amount (sat) and fee rate (sat/vB) a user typed, as a transaction takes them
/// ([`amount`], [`fee_rate`]).
pub fn send_terms(amount_sat: u64, fee_rate_sat_vb: f64) -> Result<(Amount, FeeRate), WalletError> {
    Ok((amount(amount_sat)?, fee_rate(fee_rate_sat_vb)?))
}

/// An amount to send: above 0 and at most 21 million BTC.
pub fn amount(sat: u64) -> Result<Amount, WalletError> {
    let amount = Amount::from_sat(sat);
    if amount == Amount::ZERO || amount > Amount::MAX_MONEY {
        return Err(WalletError::BadAmount);
    }
    Ok(amount)
}

/// A fee rate a user chose (sat/vB, fractions allowed), within [`FEE_RATE_SAT_VB`], rounded up
/// to whole sat per 1,000 weight units so that it is never less than asked.
pub fn fee_rate(sat_vb: f64) -> Result<FeeRate, WalletError> {
    if !FEE_RATE_SAT_VB.contains(&sat_vb) {
        return Err(WalletError::BadFeeRate {
            min: *FEE_RATE_SAT_VB.start(),
            max: *FEE_RATE_SAT_VB.end(),
        });
    }
    // 1 sat/vB = 250 sat per 1,000 weight units; the range above bounds the product.
    Ok(FeeRate::from_sat_per_kwu((sat_vb * 250.0).ceil() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_rates_outside_their_ranges_are_refused() {
        for (amount, rate) in [
            (0, 2.0),
            (Amount::MAX_MONEY.to_sat() + 1, 2.0),
            (1_000, 0.99),
            (1_000, 10_000.5),
            (1_000, f64::NAN),
            (1_000, f64::INFINITY),
            (1_000, -1.0),
        ] {
            let refused = send_terms(amount, rate).expect_err("refused");
            let code = if amount == 1_000 {
                "bad_fee_rate"
            } else {
                "bad_amount"
            };
            assert_eq!(refused.code(), code, "{amount} sat at {rate} sat/vB");
        }
    }

    #[test]
    fn a_fractional_rate_is_rounded_up_never_down() {
        let (amount, rate) = send_terms(5_000, 1.001).expect("valid");
        assert_eq!(amount, Amount::from_sat(5_000));
        assert_eq!(rate.to_sat_per_kwu(), 251);
        assert_eq!(
            send_terms(1, 10_000.0).expect("valid").1.to_sat_per_kwu(),
            2_500_000
        );
        assert_eq!(
            send_terms(Amount::MAX_MONEY.to_sat(), 1.0)
                .expect("valid")
                .0,
            Amount::MAX_MONEY
        );
    }
}
