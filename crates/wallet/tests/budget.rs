//! Per-site budgets: the rules case by case; random interleavings of reservations, commits, releases, edits and time
//! checked against a plain model and the money invariants; budgets in a store, concurrent
//! reservations, failing and damaged storage.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bitcoin::Amount;
use proptest::prelude::*;
use trickle_wallet::budget::*;
use trickle_wallet::store::{MemoryStore, Store, StoreError, WriteBatch};

const T0: u64 = 1_700_000_000;
const DAY: u64 = 86_400;

fn sat(n: u64) -> Amount {
    Amount::from_sat(n)
}

fn terms(limit: u64, period: Period, max_price: u64, auto: Option<u64>) -> Terms {
    Terms {
        limit: sat(limit),
        period,
        max_price: sat(max_price),
        auto_approve: auto.map(sat),
    }
}

fn budget() -> Budget {
    Budget::new(
        "https://example.com",
        terms(100, Period::Day, 20, Some(5)),
        T0,
    )
    .expect("valid")
}

/// `b` as stored, to read what it does not show otherwise.
fn stored(b: &Budget) -> serde_json::Value {
    serde_json::from_slice(&b.to_bytes()).expect("json")
}

// ---------------------------------------------------------------------------------------------
// One budget's rules, case by case.

#[test]
fn period_lengths() {
    assert_eq!(Period::Day.seconds(), 86_400);
    assert_eq!(Period::Week.seconds(), 7 * 86_400);
    assert_eq!(Period::Month.seconds(), 30 * 86_400);
}

#[test]
fn invalid_terms_are_refused() {
    let cases = [
        (terms(0, Period::Day, 1, None), "limit must be above zero"),
        (
            Terms {
                limit: Amount::MAX_MONEY + sat(1),
                ..terms(1, Period::Day, 1, None)
            },
            "21 million",
        ),
        (terms(10, Period::Day, 0, None), "max price"),
        (terms(10, Period::Day, 11, None), "at most the limit"),
        (terms(10, Period::Day, 5, Some(6)), "auto-approve"),
    ];
    for (t, why) in cases {
        let err = Budget::new("https://a.example", t, T0).expect_err("invalid");
        assert!(err.to_string().contains(why), "{err} lacks {why}");
        let mut b = budget();
        assert_eq!(b.update(t, T0), Err(err));
        assert_eq!(b.terms(), budget().terms(), "refused update changed terms");
    }
    assert!(terms(10, Period::Day, 10, Some(10)).validate().is_ok());
    assert!(terms(10, Period::Day, 10, Some(0)).validate().is_ok());
}

#[test]
fn origins_are_normalized_or_refused() {
    let t = terms(10, Period::Day, 1, None);
    for (given, origin) in [
        ("https://example.com", "https://example.com"),
        ("HTTPS://Example.COM/", "https://example.com"),
        ("https://example.com:443", "https://example.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:3000/", "http://[::1]:3000"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
    ] {
        let b = Budget::new(given, t, T0).expect(given);
        assert_eq!(b.origin(), origin);
    }
    for bad in [
        "",
        "example.com",
        "https://example.com/path",
        "https://example.com/?q",
        "https://example.com/#f",
        "https://user@example.com",
        "ftp://example.com",
        "file:///etc/passwd",
        "data:text/plain,hi",
    ] {
        assert_eq!(
            Budget::new(bad, t, T0),
            Err(BudgetError::InvalidOrigin(bad.into())),
            "{bad}"
        );
    }
    assert_eq!(
        site_origin("https://example.com:8443/a/b?c#d").as_deref(),
        Ok("https://example.com:8443")
    );
}

#[test]
fn keys_are_plain_reversible_and_distinct() {
    let origins = [
        "https://example.com",
        "http://127.0.0.1:8080",
        "http://[::1]:3000",
        "https://xn--bcher-kva.example",
        "weird_Origin/..%",
    ];
    for origin in origins {
        let key = budget_key(origin);
        assert!(key.starts_with("budget/"));
        assert!(key[7..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)));
        assert!(!key[7..].contains('/'));
        assert_eq!(origin_from_key(&key).as_deref(), Some(origin));
    }
    assert_eq!(
        budget_key("https://example.com"),
        "budget/https_3a_2f_2fexample.com"
    );
    assert_ne!(budget_key("http://a.b"), budget_key("http://A.b"));
    for bad in [
        "budget/https_3A_2f",
        "budget/_6",
        "budget/_zz",
        "budget/_61",
        "budget/A",
        "budget/a b",
        "other/abc",
    ] {
        assert_eq!(origin_from_key(bad), None, "{bad}");
    }
}

#[test]
fn reserve_checks_every_limit() {
    let mut b = budget();
    assert_eq!(b.reserve(Amount::ZERO, T0), Err(BudgetError::ZeroAmount));
    // Above the max price (a channel's first payment): within the limit, reserved.
    let first = b.reserve(sat(21), T0).expect("within the limit");
    b.release(first).expect("released");
    for _ in 0..5 {
        b.reserve(sat(20), T0).expect("within");
    }
    let err = b.reserve(sat(1), T0).expect_err("full");
    assert_eq!(
        err,
        BudgetError::WouldExceed {
            amount: sat(1),
            remaining: Amount::ZERO,
            period: Period::Day
        }
    );
    assert_eq!(
        err.to_string(),
        "1 sat would exceed the budget: 0 sat left this day"
    );
    assert_eq!(b.reserved(), sat(100));
    assert_eq!(b.status(T0).remaining, Amount::ZERO);
}

#[test]
fn exactly_the_limit_is_allowed() {
    let mut b =
        Budget::new("https://a.example", terms(30, Period::Day, 20, None), T0).expect("valid");
    let r = b.reserve(sat(20), T0).expect("first");
    assert_eq!(
        b.reserve(sat(11), T0),
        Err(BudgetError::WouldExceed {
            amount: sat(11),
            remaining: sat(10),
            period: Period::Day
        })
    );
    b.reserve(sat(10), T0).expect("up to the limit");
    b.commit(r, T0).expect("commit");
    let s = b.status(T0);
    assert_eq!(
        (s.spent, s.reserved, s.remaining),
        (sat(20), sat(10), sat(0))
    );
}

#[test]
fn commit_and_release() {
    let mut b = budget();
    let a = b.reserve(sat(10), T0).expect("a");
    let c = b.reserve(sat(20), T0).expect("c");
    assert_ne!(a, c);
    assert_eq!(b.commit(a, T0 + 1), Ok(sat(10)));
    assert_eq!(b.release(c), Ok(sat(20)));
    let s = b.status(T0 + 1);
    assert_eq!(
        (s.spent, s.reserved, s.remaining),
        (sat(10), sat(0), sat(90))
    );
    // Each only once.
    assert_eq!(b.commit(a, T0), Err(BudgetError::UnknownReservation(a)));
    assert_eq!(b.release(a), Err(BudgetError::UnknownReservation(a)));
    assert_eq!(b.release(c), Err(BudgetError::UnknownReservation(c)));
    assert_eq!(b.commit(c, T0), Err(BudgetError::UnknownReservation(c)));
    let never = ReservationId(99);
    assert_eq!(
        b.commit(never, T0).expect_err("unknown").to_string(),
        "no outstanding reservation #99"
    );
    // Ids are never reused.
    let d = b.reserve(sat(1), T0).expect("d");
    assert!(d > c);
}

#[test]
fn partial_commit_keeps_the_rest_reserved() {
    let mut b = budget();
    let r = b.reserve(sat(20), T0).expect("r");
    assert_eq!(
        b.commit_part(r, sat(21), T0),
        Err(BudgetError::CommitExceedsReservation {
            id: r,
            reserved: sat(20),
            amount: sat(21)
        })
    );
    assert_eq!(b.commit_part(r, sat(5), T0), Ok(sat(15)));
    assert_eq!((b.status(T0).spent, b.reserved()), (sat(5), sat(15)));
    assert_eq!(b.commit_part(r, Amount::ZERO, T0), Ok(sat(15)));
    assert_eq!(b.commit_part(r, sat(15), T0), Ok(Amount::ZERO));
    assert!(b.reservations().is_empty());
    assert_eq!(b.status(T0).spent, sat(20));
    let r = b.reserve(sat(8), T0).expect("r");
    b.commit_part(r, sat(3), T0).expect("part");
    assert_eq!(b.release(r), Ok(sat(5)));
    assert_eq!(b.status(T0).spent, sat(23));
}

#[test]
fn revoked_sites_get_nothing() {
    let mut b = budget();
    let r = b.reserve(sat(10), T0).expect("before");
    b.revoke();
    assert_eq!(b.state(), BudgetState::Revoked);
    let err = b.reserve(sat(1), T0).expect_err("revoked");
    assert_eq!(
        err,
        BudgetError::Revoked {
            origin: "https://example.com".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "payments to https://example.com are revoked"
    );
    // A payment in flight still settles.
    assert_eq!(b.commit(r, T0), Ok(sat(10)));
    b.enable();
    b.reserve(sat(1), T0).expect("enabled again");
    assert_eq!(b.status(T0).spent, sat(10), "revoking kept what was spent");
}

#[test]
fn periods_roll_at_their_boundaries() {
    for period in [Period::Day, Period::Week, Period::Month] {
        let len = period.seconds();
        let mut b =
            Budget::new("https://a.example", terms(100, period, 100, None), T0).expect("valid");
        let r = b.reserve(sat(60), T0).expect("r");
        b.commit(r, T0).expect("commit");
        // The last second of the first period.
        assert!(!b.roll(T0 + len - 1));
        assert_eq!(b.status(T0 + len - 1).spent, sat(60));
        assert_eq!(
            b.reserve(sat(41), T0 + len - 1),
            Err(BudgetError::WouldExceed {
                amount: sat(41),
                remaining: sat(40),
                period
            })
        );
        // The first second of the next.
        let s = b.status(T0 + len);
        assert_eq!(
            (s.spent, s.period_start, s.period_end),
            (sat(0), T0 + len, T0 + 2 * len)
        );
        assert_eq!(stored(&b)["spent"], 60, "status changes nothing");
        b.reserve(sat(100), T0 + len).expect("a fresh period");
        assert_eq!(stored(&b)["period_start"], T0 + len);
        // Far later: the boundary on the same grid, not `now`.
        let later = T0 + 10 * len + 12_345;
        assert!(b.roll(later));
        assert_eq!(stored(&b)["period_start"], T0 + 10 * len);
        assert_eq!(b.status(later).period_end, T0 + 11 * len);
    }
}

#[test]
fn time_going_backwards_never_resets() {
    let mut b =
        Budget::new("https://a.example", terms(100, Period::Day, 50, None), T0).expect("valid");
    let r = b.reserve(sat(50), T0 + 100).expect("r");
    b.commit(r, T0 + 100).expect("commit");
    assert!(!b.roll(T0 - 10 * DAY));
    assert!(!b.roll(0));
    let s = b.status(0);
    assert_eq!((s.spent, s.period_start), (sat(50), T0));
    assert_eq!(b.reserve(sat(20), 0).map(|_| ()), Ok(()));
    assert_eq!(b.status(T0).remaining, sat(30));
    // And the far future does not overflow.
    assert!(b.roll(u64::MAX));
    assert_eq!(b.status(u64::MAX).spent, Amount::ZERO);
    assert_eq!(b.status(u64::MAX).period_end, u64::MAX);
}

#[test]
fn reservations_straddling_a_reset_count_once() {
    let mut b = budget();
    let early = b.reserve(sat(20), T0).expect("early");
    let gone = b.reserve(sat(20), T0).expect("gone");
    let r = b.reserve(sat(20), T0).expect("r");
    b.commit(r, T0).expect("commit");
    let next = T0 + DAY + 5;
    // The outstanding 40 count in the new period too ...
    let s = b.status(next);
    assert_eq!(
        (s.spent, s.reserved, s.remaining),
        (sat(0), sat(40), sat(60))
    );
    for _ in 0..3 {
        assert!(b.reserve(sat(20), next).is_ok());
    }
    assert_eq!(
        b.reserve(sat(1), next).map(|_| ()),
        Err(BudgetError::WouldExceed {
            amount: sat(1),
            remaining: Amount::ZERO,
            period: Period::Day
        })
    );
    // ... and are charged to the period in which they are committed, once.
    assert_eq!(b.commit(early, next), Ok(sat(20)));
    assert_eq!(b.release(gone), Ok(sat(20)));
    let s = b.status(next);
    assert_eq!(
        (s.spent, s.reserved, s.remaining),
        (sat(20), sat(60), sat(20))
    );
    // A commit made without an earlier roll still lands in the new period.
    let mut c = budget();
    let x = c.reserve(sat(15), T0).expect("x");
    assert_eq!(c.commit(x, T0 + 3 * DAY), Ok(sat(15)));
    assert_eq!(c.status(T0 + 3 * DAY).spent, sat(15));
    assert_eq!(stored(&c)["period_start"], T0 + 3 * DAY);
}

#[test]
fn editing_keeps_what_was_spent() {
    let mut b = budget();
    let r = b.reserve(sat(20), T0).expect("r");
    b.commit(r, T0).expect("commit");
    let held = b.reserve(sat(20), T0).expect("held");
    // A higher limit: same spent, same reservation, more room.
    b.update(terms(200, Period::Day, 50, None), T0 + 10)
        .expect("raise");
    let s = b.status(T0 + 10);
    assert_eq!(
        (s.spent, s.reserved, s.remaining),
        (sat(20), sat(20), sat(160))
    );
    // A limit below what is used: nothing more, nothing forgotten.
    b.update(terms(30, Period::Day, 10, None), T0 + 20)
        .expect("lower");
    let s = b.status(T0 + 20);
    assert_eq!(
        (s.spent, s.reserved, s.remaining),
        (sat(20), sat(20), sat(0))
    );
    assert!(matches!(
        b.reserve(sat(1), T0 + 20),
        Err(BudgetError::WouldExceed { .. })
    ));
    assert_eq!(b.release(held), Ok(sat(20)));
    assert_eq!(b.status(T0 + 20).remaining, sat(10));
    assert_eq!(b.origin(), "https://example.com");
    assert_eq!(b.state(), BudgetState::Enabled);
}

#[test]
fn a_new_period_length_keeps_the_current_periods_spending() {
    // Day → month on day 0: the month starts where the day did.
    let mut b = budget();
    let r = b.reserve(sat(20), T0 + 3600).expect("r");
    b.commit(r, T0 + 3600).expect("commit");
    b.update(terms(100, Period::Month, 20, None), T0 + 7200)
        .expect("month");
    let s = b.status(T0 + 7200);
    assert_eq!((s.spent, s.period_start), (sat(20), T0));
    assert_eq!(s.period_end, T0 + Period::Month.seconds());

    // Month → day on day 3: the day that contains now, spending kept.
    let mut b =
        Budget::new("https://a.example", terms(100, Period::Month, 50, None), T0).expect("valid");
    let now = T0 + 3 * DAY + 600;
    let r = b.reserve(sat(50), T0 + DAY).expect("r");
    b.commit(r, T0 + DAY).expect("commit");
    b.update(terms(100, Period::Day, 50, None), now)
        .expect("day");
    let s = b.status(now);
    assert_eq!((s.spent, s.period_start), (sat(50), T0 + 3 * DAY));
    assert_eq!(s.period_end, T0 + 4 * DAY);
    // It resets at the next day boundary only.
    assert_eq!(b.status(T0 + 4 * DAY - 1).spent, sat(50));
    assert_eq!(b.status(T0 + 4 * DAY).spent, Amount::ZERO);

    // An edit after the period ended: the old period ends first, then the change applies.
    let mut b = budget();
    let r = b.reserve(sat(20), T0).expect("r");
    b.commit(r, T0).expect("commit");
    b.update(terms(100, Period::Week, 20, None), T0 + DAY + 1)
        .expect("week");
    let s = b.status(T0 + DAY + 1);
    assert_eq!((s.spent, s.period_start), (sat(0), T0 + DAY));
}

#[test]
fn approval_threshold() {
    let b = budget();
    assert!(!b.needs_approval(sat(1)));
    assert!(!b.needs_approval(sat(5)));
    assert!(b.needs_approval(sat(6)));
    let mut b = budget();
    b.update(terms(100, Period::Day, 20, None), T0)
        .expect("no threshold");
    assert!(b.needs_approval(sat(1)));
}

#[test]
fn stored_form_round_trips_and_is_checked() {
    let mut b = budget();
    let r = b.reserve(sat(10), T0).expect("r");
    b.reserve(sat(7), T0).expect("s");
    b.commit(r, T0).expect("commit");
    let bytes = b.to_bytes();
    assert_eq!(Budget::from_bytes(&bytes), Ok(b.clone()));
    let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(json["format"], 1);
    assert_eq!(json["origin"], "https://example.com");
    assert_eq!(json["terms"]["period"], "day");
    assert_eq!(json["terms"]["limit"], 100);
    assert_eq!(json["state"], "enabled");
    assert_eq!(json["spent"], 10);
    assert_eq!(json["reservations"][0]["amount"], 7);

    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut j = json.clone();
        f(&mut j);
        Budget::from_bytes(&serde_json::to_vec(&j).expect("bytes"))
    };
    let corrupt = |r: Result<Budget, BudgetError>| matches!(r, Err(BudgetError::Corrupt(_)));
    assert!(corrupt(with(&|j| j["format"] = 2.into())));
    assert!(corrupt(with(&|j| j["terms"]["limit"] = 0.into())));
    assert!(corrupt(with(
        &|j| j["origin"] = "https://a.example/x".into()
    )));
    assert!(corrupt(with(&|j| j["spent"] = u64::MAX.into())));
    assert!(corrupt(with(&|j| j["state"] = "paused".into())));
    assert!(corrupt(
        with(&|j| j["reservations"][0]["amount"] = 0.into())
    ));
    assert!(corrupt(with(&|j| j["reservations"][0]["id"] = 99.into())));
    assert!(corrupt(with(
        &|j| j["reservations"][0]["amount"] = 2_100_000_000_000_000u64.into()
    )));
    assert!(corrupt(with(&|j| {
        let first = j["reservations"][0].clone();
        j["reservations"].as_array_mut().expect("array").push(first);
    })));
    assert!(corrupt(Budget::from_bytes(b"")));
    assert!(corrupt(Budget::from_bytes(b"{\"format\":1}")));
    let msg = with(&|j| j["format"] = 2.into()).expect_err("newer");
    assert!(msg.to_string().contains("format 2 is not 1"), "{msg}");
}

#[test]
fn too_many_reservations_are_refused() {
    let mut b = Budget::new(
        "https://a.example",
        terms(1_000_000, Period::Day, 1, None),
        T0,
    )
    .expect("valid");
    for _ in 0..MAX_RESERVATIONS {
        b.reserve(sat(1), T0).expect("within");
    }
    assert_eq!(b.reserve(sat(1), T0), Err(BudgetError::TooManyReservations));
    assert_eq!(Budget::from_bytes(&b.to_bytes()), Ok(b));
}

// ---------------------------------------------------------------------------------------------
// The model and the property.

#[derive(Clone, Debug)]
enum Op {
    Reserve(u64),
    Commit(usize),
    CommitPart(usize, u64),
    Release(usize),
    UnknownId(u64),
    Advance(u64),
    Back(u64),
    Edit(u64, Period, u64, Option<u64>),
    Revoke,
    Enable,
}

fn period() -> impl Strategy<Value = Period> {
    prop_oneof![Just(Period::Day), Just(Period::Week), Just(Period::Month)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u64..=70).prop_map(Op::Reserve),
        3 => any::<usize>().prop_map(Op::Commit),
        2 => (any::<usize>(), 0u64..=70).prop_map(|(i, a)| Op::CommitPart(i, a)),
        2 => any::<usize>().prop_map(Op::Release),
        1 => (0u64..1_000).prop_map(Op::UnknownId),
        3 => prop_oneof![0u64..=3_600, 0u64..=3 * DAY, Just(DAY), Just(DAY - 1)]
            .prop_map(Op::Advance),
        1 => (0u64..=2 * DAY).prop_map(Op::Back),
        // Sometimes invalid (max price above the limit, threshold above the max price).
        1 => (1u64..=300, period(), 1u64..=120, proptest::option::of(0u64..=120))
            .prop_map(|(l, p, m, a)| Op::Edit(l, p, m, a)),
        1 => Just(Op::Revoke),
        1 => Just(Op::Enable),
    ]
}

/// The budget as the module documentation describes it, written without its code.
#[derive(Debug)]
struct Model {
    limit: u64,
    period: Period,
    max_price: u64,
    revoked: bool,
    start: u64,
    spent: u64,
    reservations: BTreeMap<u64, u64>,
}

impl Model {
    fn roll(&mut self, now: u64) {
        while now >= self.start + self.period.seconds() {
            self.start += self.period.seconds();
            self.spent = 0;
        }
    }

    fn reserved(&self) -> u64 {
        self.reservations.values().sum()
    }

    /// Compares the budget's view at `now` with the model's (a view rolls nothing).
    fn check(&self, b: &Budget, now: u64) {
        let mut view = Model {
            reservations: self.reservations.clone(),
            ..*self
        };
        view.roll(now);
        view.compare(b, now);
    }

    fn compare(&self, b: &Budget, now: u64) {
        let s = b.status(now);
        assert_eq!(s.spent, sat(self.spent), "spent");
        assert_eq!(s.reserved, sat(self.reserved()), "reserved");
        assert_eq!(s.period_start, self.start, "period start");
        assert_eq!(
            s.period_end,
            self.start + self.period.seconds(),
            "period end"
        );
        assert_eq!(
            s.remaining,
            sat(self.limit.saturating_sub(self.spent + self.reserved())),
            "remaining"
        );
        let ids: Vec<u64> = b.reservations().iter().map(|r| r.id.0).collect();
        assert_eq!(ids, self.reservations.keys().copied().collect::<Vec<_>>());
        assert_eq!(
            b.state() == BudgetState::Revoked,
            self.revoked,
            "revoked state"
        );
    }
}

/// Runs `ops` on a budget and on the model, checking the invariants after each. Without
/// `lowering`, edits never lower the limit.
fn run(ops: Vec<Op>, start_limit: u64, start_period: Period, lowering: bool) {
    let mut now = T0;
    let start = terms(
        start_limit,
        start_period,
        start_limit.min(50),
        Some(start_limit.min(3)),
    );
    let mut b = Budget::new("https://site.example", start, now).expect("valid");
    let mut m = Model {
        limit: start_limit,
        period: start_period,
        max_price: start_limit.min(50),
        revoked: false,
        start: now,
        spent: 0,
        reservations: BTreeMap::new(),
    };
    // The highest limit in force since a period began, or since the oldest reservation
    // outstanding then was made: committed spending in a period never goes above it (a
    // reservation made under a higher limit is still charged when it is committed).
    // Kept per period start: time may go back to a period seen before.
    let mut ceilings: BTreeMap<u64, u64> = BTreeMap::from([(now, start_limit)]);
    let mut limit_at: BTreeMap<u64, u64> = BTreeMap::new();
    for op in ops {
        let before = b.status(now);
        let prev = b.clone();
        let mut reserved_ok = false;
        match op {
            Op::Reserve(a) => {
                m.roll(now);
                let expected = if m.revoked {
                    Err(BudgetError::Revoked {
                        origin: "https://site.example".into(),
                    })
                } else if m.spent + m.reserved() + a > m.limit {
                    Err(BudgetError::WouldExceed {
                        amount: sat(a),
                        remaining: sat(m.limit.saturating_sub(m.spent + m.reserved())),
                        period: m.period,
                    })
                } else {
                    Ok(())
                };
                let got = b.reserve(sat(a), now);
                assert_eq!(got.as_ref().map(|_| ()), expected.as_ref().map(|_| ()));
                if let Ok(id) = got {
                    assert!(!m.reservations.contains_key(&id.0), "id reused");
                    m.reservations.insert(id.0, a);
                    limit_at.insert(id.0, m.limit);
                    reserved_ok = true;
                }
            }
            Op::Commit(i) | Op::CommitPart(i, _) | Op::Release(i) if m.reservations.is_empty() => {
                let _ = i;
                let id = ReservationId(1_000_000);
                assert_eq!(b.release(id), Err(BudgetError::UnknownReservation(id)));
            }
            Op::Commit(i) => {
                let (&id, &a) = m
                    .reservations
                    .iter()
                    .nth(i % m.reservations.len())
                    .expect("some");
                m.roll(now);
                assert_eq!(b.commit(ReservationId(id), now), Ok(sat(a)));
                m.reservations.remove(&id);
                limit_at.remove(&id);
                m.spent += a;
            }
            Op::CommitPart(i, part) => {
                let (&id, &a) = m
                    .reservations
                    .iter()
                    .nth(i % m.reservations.len())
                    .expect("some");
                let got = b.commit_part(ReservationId(id), sat(part), now);
                if part > a {
                    assert_eq!(
                        got,
                        Err(BudgetError::CommitExceedsReservation {
                            id: ReservationId(id),
                            reserved: sat(a),
                            amount: sat(part)
                        })
                    );
                } else {
                    m.roll(now);
                    assert_eq!(got, Ok(sat(a - part)));
                    m.spent += part;
                    if a == part {
                        m.reservations.remove(&id);
                        limit_at.remove(&id);
                    } else {
                        m.reservations.insert(id, a - part);
                    }
                }
            }
            Op::Release(i) => {
                let (&id, &a) = m
                    .reservations
                    .iter()
                    .nth(i % m.reservations.len())
                    .expect("some");
                assert_eq!(b.release(ReservationId(id)), Ok(sat(a)));
                m.reservations.remove(&id);
                limit_at.remove(&id);
                // The amount is free again (up to the limit).
                let after = b.status(now);
                assert_eq!(after.reserved + sat(a), before.reserved);
                assert_eq!(
                    after.remaining,
                    sat(m
                        .limit
                        .saturating_sub((before.spent + before.reserved - sat(a)).to_sat()))
                );
                assert!(after.remaining >= before.remaining);
            }
            Op::UnknownId(n) => {
                let id = ReservationId(n);
                if !m.reservations.contains_key(&n) {
                    assert_eq!(b.commit(id, now), Err(BudgetError::UnknownReservation(id)));
                    assert_eq!(b.release(id), Err(BudgetError::UnknownReservation(id)));
                }
            }
            Op::Advance(s) => now += s,
            Op::Back(s) => now = now.saturating_sub(s),
            Op::Edit(limit, period, max_price, auto) => {
                let limit = if lowering { limit } else { limit.max(m.limit) };
                let t = terms(limit, period, max_price, auto);
                let valid = max_price <= limit && auto.is_none_or(|a| a <= max_price);
                let got = b.update(t, now);
                assert_eq!(got.is_ok(), valid, "{t:?}: {got:?}");
                if valid {
                    m.roll(now);
                    if period != m.period {
                        while now >= m.start + period.seconds() {
                            m.start += period.seconds();
                        }
                    }
                    m.limit = limit;
                    m.period = period;
                    m.max_price = max_price;
                    // A new period length continues the current period: its spending stays.
                    let (old, new) = (prev.status(now).period_start, b.status(now).period_start);
                    let c = ceilings.get(&old).copied().unwrap_or(0);
                    let e = ceilings.entry(new).or_insert(c);
                    *e = (*e).max(c);
                }
            }
            Op::Revoke => {
                b.revoke();
                m.revoked = true;
            }
            Op::Enable => {
                b.enable();
                m.revoked = false;
            }
        }
        m.check(&b, now);

        let s = b.status(now);
        let total = s.spent + s.reserved;
        // Compared at the same time: a view at an earlier time may show an earlier period.
        let was = prev.status(now);
        let total_before = was.spent + was.reserved;
        let limit = b.terms().limit;
        let ceiling = ceilings
            .entry(s.period_start)
            .or_insert_with(|| limit_at.values().fold(limit.to_sat(), |c, l| c.max(*l)));
        *ceiling = (*ceiling).max(limit.to_sat());
        let ceiling = *ceiling;
        if reserved_ok {
            assert!(total <= limit, "a reservation went over the limit");
        }
        // Spent plus reserved stays within the limit; only a lowered limit leaves it above,
        // and then it never grows.
        assert!(
            total <= limit || total <= total_before,
            "spending grew above the limit: {total} > {limit}"
        );
        // Committed spending in a period never exceeds the limit.
        assert!(s.spent <= sat(ceiling), "spent {} above {ceiling}", s.spent);
        if !lowering {
            assert!(
                total <= limit,
                "spent + reserved {total} above the limit {limit}"
            );
            assert!(
                s.spent <= limit,
                "spent {} above the limit {limit}",
                s.spent
            );
        }
        // The stored form reads back as it was.
        assert_eq!(Budget::from_bytes(&b.to_bytes()).as_ref(), Ok(&b));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_never_overspend(
        ops in proptest::collection::vec(op(), 1..120),
        limit in 1u64..=300,
        period in period(),
    ) {
        run(ops, limit, period, false);
    }

    #[test]
    fn lowered_limits_stop_spending_and_lose_nothing(
        ops in proptest::collection::vec(op(), 1..120),
        limit in 1u64..=300,
        period in period(),
    ) {
        run(ops, limit, period, true);
    }
}

// ---------------------------------------------------------------------------------------------
// Budgets in a store.

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn stored_load_list_remove() {
    block_on(async {
        let budgets = Budgets::new(MemoryStore::default());
        assert_eq!(budgets.load("https://a.example").await, Ok(None));
        assert!(budgets.list().await.expect("list").is_empty());
        let a = Budget::new("https://a.example", terms(100, Period::Day, 10, None), T0).expect("a");
        let b = Budget::new(
            "http://127.0.0.1:8080",
            terms(50, Period::Month, 5, Some(1)),
            T0,
        )
        .expect("b");
        budgets.save(&a).await.expect("save a");
        budgets.save(&b).await.expect("save b");
        let keys = budgets.store().keys("budget/").await.expect("keys");
        assert_eq!(
            keys,
            [
                "budget/http_3a_2f_2f127.0.0.1_3a8080",
                "budget/https_3a_2f_2fa.example"
            ]
        );
        // Another Budgets over the same store (a restarted worker) reads them back.
        let again = Budgets::new(budgets.store());
        assert_eq!(again.list().await.expect("list"), [b.clone(), a.clone()]);
        assert_eq!(
            again.load("HTTPS://A.example/").await,
            Ok(Some(a.clone())),
            "any spelling of the origin"
        );
        assert_eq!(
            again.load("https://a.example/page").await,
            Err(BudgetError::InvalidOrigin("https://a.example/page".into()))
        );
        again.remove("https://a.example").await.expect("remove");
        assert_eq!(again.load("https://a.example").await, Ok(None));
        assert_eq!(again.list().await.expect("list"), [b]);
    });
}

#[test]
fn every_change_is_stored_before_it_returns() {
    block_on(async {
        let store = MemoryStore::default();
        let budgets = Budgets::new(&store);
        let origin = "https://a.example";
        assert_eq!(
            budgets.reserve(origin, sat(1), T0).await,
            Err(BudgetError::NoBudget {
                origin: origin.into()
            })
        );
        budgets
            .save(&Budget::new(origin, terms(100, Period::Day, 30, None), T0).expect("new"))
            .await
            .expect("save");
        let stored = || async {
            let bytes = store
                .get(&budget_key(origin))
                .await
                .expect("get")
                .expect("stored");
            Budget::from_bytes(&bytes).expect("readable")
        };
        let r = budgets.reserve(origin, sat(30), T0).await.expect("reserve");
        assert_eq!(stored().await.reserved(), sat(30));
        let s = budgets.reserve(origin, sat(30), T0).await.expect("reserve");
        assert_eq!(
            budgets.commit_part(origin, s, sat(10), T0).await,
            Ok(sat(20))
        );
        assert_eq!(stored().await.status(T0).spent, sat(10));
        assert_eq!(budgets.commit(origin, r, T0 + 5).await, Ok(sat(30)));
        assert_eq!(stored().await.status(T0).spent, sat(40));
        assert_eq!(budgets.release(origin, s).await, Ok(sat(20)));
        assert!(stored().await.reservations().is_empty());
        // A refused change stores nothing.
        let before = stored().await;
        assert!(matches!(
            budgets.reserve(origin, sat(61), T0).await,
            Err(BudgetError::WouldExceed { .. })
        ));
        assert_eq!(stored().await, before);
        budgets
            .modify(origin, |b| {
                b.revoke();
                Ok(())
            })
            .await
            .expect("revoke");
        assert_eq!(stored().await.state(), BudgetState::Revoked);
        assert!(matches!(
            budgets.reserve(origin, sat(1), T0).await,
            Err(BudgetError::Revoked { .. })
        ));
    });
}

/// A store that takes its time: other tasks run while it reads and before it acknowledges a
/// write (writes are applied in the order they are issued, as `chrome.storage.local` and
/// `FileStore` apply them). It can fail writes.
#[derive(Default)]
struct SlowStore {
    inner: MemoryStore,
    fail_puts: Cell<bool>,
}

impl Store for SlowStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        tokio::task::yield_now().await;
        let out = self.inner.get(key).await;
        tokio::task::yield_now().await;
        out
    }
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.keys(prefix).await
    }
    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if self.fail_puts.get() {
            tokio::task::yield_now().await;
            return Err(StoreError("disk full".into()));
        }
        let out = self.inner.write(batch).await;
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        out
    }
}

/// Ten requests reserve at once; some are committed, some released, while others reserve.
async fn concurrent(budgets: Rc<Budgets<&'static SlowStore>>, origin: &'static str) -> Vec<bool> {
    let local = tokio::task::LocalSet::new();
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let budgets = Rc::clone(&budgets);
            local.spawn_local(async move {
                let got = budgets.reserve(origin, sat(15), T0 + i).await;
                match got {
                    Ok(id) if i % 3 == 0 => {
                        budgets.release(origin, id).await.expect("release");
                        true
                    }
                    Ok(id) => {
                        budgets.commit(origin, id, T0 + i).await.expect("commit");
                        true
                    }
                    Err(BudgetError::WouldExceed { .. }) => false,
                    Err(e) => panic!("{e}"),
                }
            })
        })
        .collect();
    local
        .run_until(async {
            let mut out = Vec::new();
            for h in handles {
                out.push(h.await.expect("task"));
            }
            out
        })
        .await
}

#[test]
fn concurrent_reservations_never_overspend() {
    block_on(async {
        let origin = "https://a.example";
        let store: &'static SlowStore = Box::leak(Box::default());
        let setup = Budgets::new(store);
        setup
            .save(&Budget::new(origin, terms(100, Period::Day, 20, None), T0).expect("new"))
            .await
            .expect("save");
        // A fresh Budgets: every task loads the record from the store at the same time.
        let budgets = Rc::new(Budgets::new(store));
        let ok = concurrent(Rc::clone(&budgets), origin).await;
        let stored = Budgets::new(store)
            .load(origin)
            .await
            .expect("load")
            .expect("stored");
        let s = stored.status(T0 + 10);
        assert!(s.spent + s.reserved <= sat(100), "{s:?}");
        assert!(
            stored.reservations().is_empty(),
            "every reservation settled"
        );
        // Changes are made one at a time, each stored before the next reads the budget, so a
        // release may make room for a later reservation: at least as many as fit at once
        // (6 × 15 of 100) succeed, none was lost, and released ones were not charged.
        let succeeded = ok.iter().filter(|o| **o).count() as u64;
        assert!(succeeded >= 6, "{ok:?}");
        let released = (0..10).filter(|i| i % 3 == 0 && ok[*i]).count() as u64;
        assert_eq!(s.spent, sat(15 * (succeeded - released)));
        assert_eq!(budgets.load(origin).await.expect("cached"), Some(stored));
    });
}

#[test]
fn a_failed_write_changes_nothing() {
    block_on(async {
        let origin = "https://a.example";
        let store = SlowStore::default();
        let budgets = Budgets::new(&store);
        budgets
            .save(&Budget::new(origin, terms(100, Period::Day, 20, None), T0).expect("new"))
            .await
            .expect("save");
        let r = budgets.reserve(origin, sat(20), T0).await.expect("reserve");
        store.fail_puts.set(true);
        let err = budgets
            .reserve(origin, sat(20), T0)
            .await
            .expect_err("fails");
        assert_eq!(err, BudgetError::Store(StoreError("disk full".into())));
        assert_eq!(err.to_string(), "storage failed: disk full");
        assert!(budgets.commit(origin, r, T0).await.is_err());
        store.fail_puts.set(false);
        // The store is the truth: the failed reservation and commit are not there.
        let b = budgets.load(origin).await.expect("load").expect("some");
        assert_eq!(b.reserved(), sat(20));
        assert_eq!(b.status(T0).spent, Amount::ZERO);
        assert_eq!(budgets.commit(origin, r, T0).await, Ok(sat(20)));
    });
}

#[test]
fn damaged_records_are_clear_errors() {
    block_on(async {
        let store = MemoryStore::default();
        let budgets = Budgets::new(&store);
        let a = Budget::new("https://a.example", terms(100, Period::Day, 20, None), T0).expect("a");
        let key = budget_key("https://b.example");
        // A's record under B's key.
        store.put(&key, a.to_bytes()).await.expect("put");
        let err = budgets.load("https://b.example").await.expect_err("moved");
        assert!(
            err.to_string()
                .contains("holds the budget of https://a.example"),
            "{err}"
        );
        store
            .put(&key, b"{\"format\":7}".to_vec())
            .await
            .expect("put");
        let err = budgets.load("https://b.example").await.expect_err("newer");
        assert!(err.to_string().contains("format 7 is not 1"), "{err}");
        store.put(&key, b"garbage".to_vec()).await.expect("put");
        assert!(matches!(
            budgets.reserve("https://b.example", sat(1), T0).await,
            Err(BudgetError::Corrupt(_))
        ));
        store.remove(&key).await.expect("remove");
        store
            .put("budget/NOT-A-KEY", a.to_bytes())
            .await
            .expect("put");
        let err = budgets.list().await.expect_err("foreign key");
        assert_eq!(
            err,
            BudgetError::Corrupt("budget/NOT-A-KEY is not a budget key".into())
        );
    });
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn keys_work_as_file_names() {
    block_on(async {
        let dir = std::env::temp_dir().join(format!("trickle-budget-{}", std::process::id()));
        let store = trickle_wallet::store::FileStore::open(&dir).expect("open");
        let budgets = Budgets::new(store);
        let mut origins = Vec::new();
        for origin in [
            "https://example.com",
            "http://127.0.0.1:8080",
            "http://[::1]:3000",
            "https://xn--bcher-kva.example",
        ] {
            let b = Budget::new(origin, terms(10, Period::Week, 1, None), T0).expect("new");
            budgets.save(&b).await.expect("save");
            origins.push(origin.to_owned());
        }
        let again = Budgets::new(budgets.store());
        let listed: Vec<String> = again
            .list()
            .await
            .expect("list")
            .iter()
            .map(|b| b.origin().to_owned())
            .collect();
        origins.sort();
        assert_eq!(listed, origins);
        std::fs::remove_dir_all(&dir).expect("clean up");
    });
}
