//! Per-site budgets, enforced here and not in the UI.
//!
//! A site is an origin (`https://example.com`, `http://127.0.0.1:8080`). The user approves a
//! [`Budget`] for it: a limit per period, a maximum price per request, an optional threshold
//! below which requests are paid without asking, and whether the site is enabled or revoked. A
//! site without a budget gets no payment; the caller asks the user first.
//!
//! # Reserve, then commit or release
//!
//! Spending is reserved before a payment is signed ([`Budget::reserve`]), committed when the
//! server acknowledges it ([`Budget::commit`], or [`Budget::commit_part`] for a pre-armed
//! increment that is only partly consumed) and released when the payment fails
//! ([`Budget::release`]). A reservation counts against the limit from the moment it is made, so
//! concurrent requests can never sign more than the limit between them. The caller stores the
//! budget after every change, before it acts on it ("persist, then act"): [`Budgets`] does
//! both in one call.
//!
//! # Periods
//!
//! Periods are fixed lengths of time, **rolling from the budget's creation**: a day is 86,400
//! seconds, a week 7 days, a month 30 days. A period covers `[start, start + length)`; when
//! `now` reaches `start + length`, the next period starts at the latest boundary
//! `start + k × length` not after `now`, and what was spent is set to zero. Time is passed in
//! (Unix seconds), never read here. Time that goes backwards never starts a new period.
//!
//! Reservations outstanding at a period change are kept: they go on counting against the limit
//! in the new period, and are charged to the period in which they are committed. Each is
//! charged once, never lost and never counted twice.
//!
//! Editing a budget ([`Budget::update`]) never resets what was spent: the limit, price and
//! threshold change, spent and reservations stay. A new period length keeps the current
//! period's spending: the new period starts at the latest boundary of the new length (counted
//! from the current period's start) not after `now`. Lowering the limit below what is already
//! spent or reserved is allowed; nothing more is reserved until the spending falls under it.

use core::fmt;

use bitcoin::Amount;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::store::StoreError;

/// The version of the stored [`Budget`] record.
pub const BUDGET_FORMAT: u32 = 1;
/// The store key prefix of budgets: `budget/<escaped origin>` (see [`budget_key`]).
pub const BUDGET_PREFIX: &str = "budget/";
/// At most this many reservations are outstanding per site; more are refused until some are
/// committed or released (a bound on the stored record, far above any real use).
pub const MAX_RESERVATIONS: usize = 1_000;

/// The length of a budget period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// 86,400 seconds.
    Day,
    /// 7 days.
    Week,
    /// 30 days.
    Month,
}

impl Period {
    /// The period's length in seconds.
    pub const fn seconds(self) -> u64 {
        const DAY: u64 = 86_400;
        match self {
            Self::Day => DAY,
            Self::Week => 7 * DAY,
            Self::Month => 30 * DAY,
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        })
    }
}

/// What the user approved for a site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// Most spent (committed plus reserved) in one period.
    pub limit: Amount,
    /// The period the limit is for.
    pub period: Period,
    /// Most paid for one request.
    pub max_price: Amount,
    /// Requests priced at or below this are paid without asking; `None`: always ask.
    #[serde(default)]
    pub auto_approve: Option<Amount>,
}

impl Terms {
    /// Checks that the terms make sense: a limit and a max price above zero and within 21
    /// million BTC, a max price at most the limit, a threshold at most the max price.
    pub fn validate(&self) -> Result<(), BudgetError> {
        let invalid = |why| Err(BudgetError::InvalidTerms(why));
        if self.limit == Amount::ZERO {
            return invalid("the limit must be above zero");
        }
        if self.limit > Amount::MAX_MONEY {
            return invalid("the limit is above 21 million BTC");
        }
        if self.max_price == Amount::ZERO {
            return invalid("the max price per request must be above zero");
        }
        if self.max_price > self.limit {
            return invalid("the max price per request must be at most the limit");
        }
        if self.auto_approve.is_some_and(|t| t > self.max_price) {
            return invalid("the auto-approve threshold must be at most the max price");
        }
        Ok(())
    }
}

/// Whether a site may be paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetState {
    /// Paid within the budget.
    Enabled,
    /// Never paid (the user revoked the site); outstanding reservations can still be committed
    /// or released.
    Revoked,
}

/// Names one reservation of one budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReservationId(pub u64);

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Spending reserved for a payment that is signed, or about to be, and not yet acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Its id.
    pub id: ReservationId,
    /// The amount reserved (what is left of it after a partial commit).
    pub amount: Amount,
    /// When it was made (Unix seconds): the caller can find reservations whose payment was
    /// lost, for example when the worker stopped between signing and the receipt.
    pub created: u64,
}

/// A site's budget now, for display: what [`Budget::status`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetStatus {
    /// Committed in the current period.
    pub spent: Amount,
    /// Reserved and not yet committed or released.
    pub reserved: Amount,
    /// What can still be reserved in this period.
    pub remaining: Amount,
    /// Start of the current period (Unix seconds).
    pub period_start: u64,
    /// End of the current period (Unix seconds, exclusive).
    pub period_end: u64,
}

/// A site's budget, as stored under [`budget_key`]`(origin)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    format: u32,
    origin: String,
    terms: Terms,
    state: BudgetState,
    period_start: u64,
    spent: Amount,
    reservations: Vec<Reservation>,
    next_reservation: u64,
}

/// Why a budget operation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BudgetError {
    /// The user revoked the site.
    Revoked {
        /// The site.
        origin: String,
    },
    /// Reserving the amount would take the period's spending above the limit.
    WouldExceed {
        /// The amount asked for.
        amount: Amount,
        /// What is left to reserve in this period.
        remaining: Amount,
        /// The period.
        period: Period,
    },
    /// No outstanding reservation has this id (never made, or already committed or released).
    UnknownReservation(ReservationId),
    /// A partial commit of more than is reserved.
    CommitExceedsReservation {
        /// The reservation.
        id: ReservationId,
        /// What it holds.
        reserved: Amount,
        /// What was to be committed.
        amount: Amount,
    },
    /// A reservation of zero.
    ZeroAmount,
    /// Too many outstanding reservations (see [`MAX_RESERVATIONS`]).
    TooManyReservations,
    /// The terms do not make sense.
    InvalidTerms(&'static str),
    /// Not an `http` or `https` origin.
    InvalidOrigin(String),
    /// The site has no budget.
    NoBudget {
        /// The site.
        origin: String,
    },
    /// A stored budget does not read back.
    Corrupt(String),
    /// Storage failed.
    Store(StoreError),
}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Revoked { origin } => write!(f, "payments to {origin} are revoked"),
            Self::WouldExceed {
                amount,
                remaining,
                period,
            } => write!(
                f,
                "{} sat would exceed the budget: {} sat left this {period}",
                amount.to_sat(),
                remaining.to_sat()
            ),
            Self::UnknownReservation(id) => write!(f, "no outstanding reservation {id}"),
            Self::CommitExceedsReservation {
                id,
                reserved,
                amount,
            } => write!(
                f,
                "cannot commit {} sat of reservation {id}, which holds {} sat",
                amount.to_sat(),
                reserved.to_sat()
            ),
            Self::ZeroAmount => f.write_str("a reservation must be above zero"),
            Self::TooManyReservations => write!(
                f,
                "more than {MAX_RESERVATIONS} payments are waiting for the site's answer"
            ),
            Self::InvalidTerms(why) => f.write_str(why),
            Self::InvalidOrigin(s) => {
                write!(f, "{s:?} is not a site origin (http(s)://host[:port])")
            }
            Self::NoBudget { origin } => write!(f, "no budget for {origin}"),
            Self::Corrupt(why) => write!(f, "stored budget is damaged: {why}"),
            Self::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BudgetError {}

impl From<StoreError> for BudgetError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// The origin (`scheme://host[:port]`, lowercase, default port omitted) of an `http` or `https`
/// URL: the site a payment for that URL goes to, and the key of its budget.
pub fn site_origin(url: &str) -> Result<String, BudgetError> {
    let invalid = || BudgetError::InvalidOrigin(url.to_owned());
    let parsed = url::Url::parse(url).map_err(|_| invalid())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(invalid());
    }
    Ok(parsed.origin().ascii_serialization())
}

/// `origin` in its canonical form: accepts an origin with or without a trailing `/` (`HTTPS://
/// Example.COM/` gives `https://example.com`), refuses anything with a path, query, fragment
/// or credentials.
pub fn normalize_origin(origin: &str) -> Result<String, BudgetError> {
    let invalid = || BudgetError::InvalidOrigin(origin.to_owned());
    let parsed = url::Url::parse(origin).map_err(|_| invalid())?;
    if parsed.path() != "/"
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(invalid());
    }
    site_origin(origin)
}

/// Bytes kept as they are in a budget key; every other byte is written `_xx` (lowercase hex).
/// Lowercase only, so that keys stay distinct on case-insensitive file systems.
fn plain(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
}

/// The store key of `origin`'s budget: `budget/` and the origin with every byte outside
/// `[a-z0-9.-]` escaped as `_xx` (`https://example.com` → `budget/https_3a_2f_2fexample.com`).
pub fn budget_key(origin: &str) -> String {
    let mut key = String::with_capacity(BUDGET_PREFIX.len() + origin.len() + 8);
    key.push_str(BUDGET_PREFIX);
    for b in origin.bytes() {
        if plain(b) {
            key.push(char::from(b));
        } else {
            key.push('_');
            key.push_str(&format!("{b:02x}"));
        }
    }
    key
}

/// The origin a budget key names, if `key` is one [`budget_key`] writes.
pub fn origin_from_key(key: &str) -> Option<String> {
    let escaped = key.strip_prefix(BUDGET_PREFIX)?.as_bytes();
    let mut out = Vec::with_capacity(escaped.len());
    let mut i = 0;
    while i < escaped.len() {
        let b = escaped[i];
        if b == b'_' {
            let hex = core::str::from_utf8(escaped.get(i + 1..i + 3)?).ok()?;
            if hex.bytes().any(|h| h.is_ascii_uppercase()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if plain(b) {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    let origin = String::from_utf8(out).ok()?;
    // One key per origin: refuse spellings budget_key would not write (`_61` for `a`).
    (budget_key(&origin) == key).then_some(origin)
}

impl Budget {
    /// A new, enabled budget for `origin` (normalized, see [`normalize_origin`]) whose first
    /// period starts at `now`.
    pub fn new(origin: &str, terms: Terms, now: u64) -> Result<Self, BudgetError> {
        terms.validate()?;
        Ok(Self {
            format: BUDGET_FORMAT,
            origin: normalize_origin(origin)?,
            terms,
            state: BudgetState::Enabled,
            period_start: now,
            spent: Amount::ZERO,
            reservations: Vec::new(),
            next_reservation: 1,
        })
    }

    /// The site.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// What the user approved.
    pub fn terms(&self) -> &Terms {
        &self.terms
    }

    /// Enabled or revoked.
    pub fn state(&self) -> BudgetState {
        self.state
    }

    /// Outstanding reservations, oldest first.
    pub fn reservations(&self) -> &[Reservation] {
        &self.reservations
    }

    /// The sum of outstanding reservations.
    pub fn reserved(&self) -> Amount {
        self.reservations.iter().fold(Amount::ZERO, |sum, r| {
            sum.checked_add(r.amount).unwrap_or(Amount::MAX)
        })
    }

    /// The start of the period that contains `now` (the current one if time went backwards).
    fn period_start_at(&self, now: u64) -> u64 {
        let len = self.terms.period.seconds();
        match now.checked_sub(self.period_start) {
            Some(elapsed) => self.period_start + elapsed / len * len,
            None => self.period_start,
        }
    }

    /// The budget at `now`, without changing it.
    pub fn status(&self, now: u64) -> BudgetStatus {
        let start = self.period_start_at(now);
        let spent = if start == self.period_start {
            self.spent
        } else {
            Amount::ZERO
        };
        let reserved = self.reserved();
        let used = spent.checked_add(reserved).unwrap_or(Amount::MAX);
        BudgetStatus {
            spent,
            reserved,
            remaining: self.terms.limit.checked_sub(used).unwrap_or(Amount::ZERO),
            period_start: start,
            period_end: start.saturating_add(self.terms.period.seconds()),
        }
    }

    /// Starts the period that contains `now`, if it is a new one: spent goes to zero,
    /// reservations stay. Returns whether a new period started. The other operations call it.
    pub fn roll(&mut self, now: u64) -> bool {
        let start = self.period_start_at(now);
        if start == self.period_start {
            return false;
        }
        self.period_start = start;
        self.spent = Amount::ZERO;
        true
    }

    /// Whether a request priced `price` needs the user's approval: yes unless the budget has
    /// an auto-approve threshold at or above the price.
    pub fn needs_approval(&self, price: Amount) -> bool {
        self.terms.auto_approve.is_none_or(|t| price > t)
    }

    /// Reserves `amount` for a payment about to be signed, if the site is enabled and the
    /// period's spent plus reserved plus `amount` stays within the limit. Store the budget
    /// before signing.
    ///
    /// The max price bounds what a request costs, and is checked on the offer
    /// ([`crate::offer::check_offer`]); what is signed may be more than one price: a channel's
    /// first payment (the payee's `minPayment`, shown when the user approves the site) or an
    /// increment with the channel's dust change swept into it. The limit bounds all of it.
    pub fn reserve(&mut self, amount: Amount, now: u64) -> Result<ReservationId, BudgetError> {
        self.roll(now);
        if self.state == BudgetState::Revoked {
            return Err(BudgetError::Revoked {
                origin: self.origin.clone(),
            });
        }
        if amount == Amount::ZERO {
            return Err(BudgetError::ZeroAmount);
        }
        let remaining = self.status(now).remaining;
        if amount > remaining {
            return Err(BudgetError::WouldExceed {
                amount,
                remaining,
                period: self.terms.period,
            });
        }
        if self.reservations.len() >= MAX_RESERVATIONS {
            return Err(BudgetError::TooManyReservations);
        }
        let id = ReservationId(self.next_reservation);
        self.next_reservation += 1;
        self.reservations.push(Reservation {
            id,
            amount,
            created: now,
        });
        Ok(id)
    }

    fn position(&self, id: ReservationId) -> Result<usize, BudgetError> {
        self.reservations
            .iter()
            .position(|r| r.id == id)
            .ok_or(BudgetError::UnknownReservation(id))
    }

    /// Commits reservation `id`: the server acknowledged the payment. Its amount counts as
    /// spent in the period that contains `now`. Returns the amount.
    pub fn commit(&mut self, id: ReservationId, now: u64) -> Result<Amount, BudgetError> {
        let at = self.position(id)?;
        let amount = self.reservations[at].amount;
        self.commit_part(id, amount, now)?;
        Ok(amount)
    }

    /// Commits `amount` of reservation `id` and keeps the rest reserved under the same id (a
    /// pre-armed increment partly consumed); a reservation committed in full is gone. Returns
    /// what stays reserved.
    pub fn commit_part(
        &mut self,
        id: ReservationId,
        amount: Amount,
        now: u64,
    ) -> Result<Amount, BudgetError> {
        let at = self.position(id)?;
        let reserved = self.reservations[at].amount;
        let rest = reserved
            .checked_sub(amount)
            .ok_or(BudgetError::CommitExceedsReservation {
                id,
                reserved,
                amount,
            })?;
        self.roll(now);
        self.spent = self.spent.checked_add(amount).unwrap_or(Amount::MAX);
        if rest == Amount::ZERO {
            self.reservations.remove(at);
        } else {
            self.reservations[at].amount = rest;
        }
        Ok(rest)
    }

    /// Releases reservation `id`: the payment failed or was never sent. Returns the amount
    /// freed.
    pub fn release(&mut self, id: ReservationId) -> Result<Amount, BudgetError> {
        let at = self.position(id)?;
        Ok(self.reservations.remove(at).amount)
    }

    /// Changes the terms. Spent and reservations stay; a new period length keeps the current
    /// period's spending (see the [module documentation](self)).
    pub fn update(&mut self, terms: Terms, now: u64) -> Result<(), BudgetError> {
        terms.validate()?;
        self.roll(now);
        if terms.period != self.terms.period {
            let len = terms.period.seconds();
            if let Some(elapsed) = now.checked_sub(self.period_start) {
                self.period_start += elapsed / len * len;
            }
        }
        self.terms = terms;
        Ok(())
    }

    /// Revokes the site: nothing more is reserved.
    pub fn revoke(&mut self) {
        self.state = BudgetState::Revoked;
    }

    /// Enables a revoked site again, with what it had spent.
    pub fn enable(&mut self) {
        self.state = BudgetState::Enabled;
    }

    /// The stored form (JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of plain fields always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a stored budget, refusing unknown formats and values no budget can hold.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BudgetError> {
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let corrupt = |why: String| BudgetError::Corrupt(why);
        let Format { format } =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if format != BUDGET_FORMAT {
            return Err(corrupt(format!(
                "format {format} is not {BUDGET_FORMAT} (written by a newer version?)"
            )));
        }
        let this: Self = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        this.terms
            .validate()
            .map_err(|e| corrupt(format!("{}: {e}", this.origin)))?;
        if normalize_origin(&this.origin).ok().as_deref() != Some(this.origin.as_str()) {
            return Err(corrupt(format!("{:?} is not an origin", this.origin)));
        }
        let total = this
            .reservations
            .iter()
            .try_fold(this.spent, |sum, r| sum.checked_add(r.amount));
        if total.is_none_or(|t| t > Amount::MAX_MONEY) {
            return Err(corrupt(format!(
                "{}: spending is above 21 million BTC",
                this.origin
            )));
        }
        if this.reservations.len() > MAX_RESERVATIONS
            || this
                .reservations
                .iter()
                .any(|r| r.amount == Amount::ZERO || r.id.0 >= this.next_reservation || r.id.0 == 0)
            || this.reservations.windows(2).any(|w| w[0].id >= w[1].id)
        {
            return Err(corrupt(format!("{}: bad reservations", this.origin)));
        }
        Ok(this)
    }
}

mod stored;
pub(crate) use stored::staged_change;
pub use stored::Budgets;
