//! Errors as a payer's user interface and programs see them: `{ code, message, detail }`. The
//! code is stable snake_case for programs, the message a sentence for people, and the detail
//! the numbers behind it where there are some, so that no page reads amounts out of a message.

use serde::Serialize;
use ts_rs::TS;

use crate::budget::{BudgetError, Period};
use crate::offer::OfferError;
use crate::site::{AskReason, PayError};
use crate::store::StoreError;
use crate::{ChannelClientError, Shortfall, WalletError};

/// An error as it crosses to a user interface or a program.
#[derive(Clone, Debug, Serialize, TS)]
#[ts(rename = "WalletError")]
pub struct Failure {
    /// Stable, snake_case.
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
    /// The amounts behind the error, for the errors that have some.
    pub detail: Option<Detail>,
}

/// What an error is about, in numbers (sat).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, TS)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Detail {
    /// Not enough coins for the transaction and its fee.
    InsufficientFunds(Shortfall),
    /// The site's budget has too little left this period for the payment.
    OverBudget {
        /// What the budget has left, sat.
        remaining_sat: u64,
        /// What the payment needs, sat.
        needed_sat: u64,
        /// The budget's period, when the budget itself refused.
        period: Option<Period>,
    },
    /// The price is above the budget's max price per request.
    OverMaxPrice {
        /// The offer's price, sat.
        price_sat: u64,
        /// The budget's max price, sat.
        max_price_sat: u64,
    },
}

/// A failure with no detail.
pub fn failure(code: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
        detail: None,
    }
}

fn wallet_detail(e: &WalletError) -> Option<Detail> {
    e.shortfall().map(Detail::InsufficientFunds)
}

fn pay_detail(e: &PayError) -> Option<Detail> {
    match e {
        PayError::Offer(OfferError::OverMaxPrice { price, max_price }) => {
            Some(Detail::OverMaxPrice {
                price_sat: price.to_sat(),
                max_price_sat: max_price.to_sat(),
            })
        }
        PayError::Budget(BudgetError::WouldExceed {
            amount,
            remaining,
            period,
        }) => Some(Detail::OverBudget {
            remaining_sat: remaining.to_sat(),
            needed_sat: amount.to_sat(),
            period: Some(*period),
        }),
        PayError::NotApproved(ask) => match ask.reason {
            AskReason::BudgetExhausted { remaining, needed } => Some(Detail::OverBudget {
                remaining_sat: remaining.to_sat(),
                needed_sat: needed.to_sat(),
                period: None,
            }),
            AskReason::NoBudget | AskReason::Confirm | AskReason::LockAboveLimit { .. } => None,
        },
        PayError::Channel(ChannelClientError::Wallet(e)) => wallet_detail(e),
        _ => None,
    }
}

impl From<WalletError> for Failure {
    fn from(e: WalletError) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
            detail: wallet_detail(&e),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        WalletError::Store(e).into()
    }
}

impl From<PayError> for Failure {
    fn from(e: PayError) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
            detail: pay_detail(&e),
        }
    }
}

impl From<BudgetError> for Failure {
    fn from(e: BudgetError) -> Self {
        PayError::from(e).into()
    }
}

impl From<ChannelClientError> for Failure {
    fn from(e: ChannelClientError) -> Self {
        PayError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use bitcoin::Amount;

    use super::*;

    #[test]
    fn a_refusal_for_want_of_coins_or_budget_carries_its_amounts() {
        let short = Failure::from(WalletError::InsufficientFunds(Shortfall {
            available: Amount::from_sat(1_000),
            needed: Amount::from_sat(5_210),
        }));
        assert_eq!(short.code, "cannot_fund");
        assert_eq!(
            serde_json::to_value(&short.detail).ok(),
            Some(
                serde_json::json!({ "kind": "insufficientFunds", "available": 1000, "needed": 5210 })
            )
        );
        let over = Failure::from(BudgetError::WouldExceed {
            amount: Amount::from_sat(700),
            remaining: Amount::from_sat(300),
            period: Period::Week,
        });
        assert_eq!(
            over.detail,
            Some(Detail::OverBudget {
                remaining_sat: 300,
                needed_sat: 700,
                period: Some(Period::Week)
            })
        );
        assert_eq!(failure("locked", "the wallet is locked").detail, None);
    }
}
