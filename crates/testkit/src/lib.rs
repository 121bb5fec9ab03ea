//! Fixtures that more than one Trickle crate's tests use: the fixed test keys and their roles,
//! the channel terms both sides start from, a coin that funds contracts, the example offer of
//! `tests/vectors/http.json`, the seeded randomness of the crash tests, and the file the
//! benchmarks append their summary rows to.
//!
//! Test code only: the crates take it as a dev-dependency.
#![warn(missing_docs)]

pub mod bench_rows;
pub mod crash_seed;
pub mod funding;
pub mod keys;
pub mod offer;
pub mod terms;
