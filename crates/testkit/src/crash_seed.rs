//! The crash tests' randomness: a seed printed so that a run can be replayed, and a small PRNG
//! drawn from it.

/// The environment variable whose value (a `u64`) replays a run.
pub const SEED_VAR: &str = "TRICKLE_CRASH_SEED";

/// The seed of this run: [`SEED_VAR`] if set, else the clock. Printed with how to replay it.
pub fn seed() -> u64 {
    let seed = std::env::var(SEED_VAR)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        });
    eprintln!("crash injection seed: {seed} (replay with {SEED_VAR}={seed})");
    seed
}

/// A small PRNG (splitmix64): the same sequence for the same seed.
pub struct Rng(
    /// The state: the seed, then advanced by each draw.
    pub u64,
);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
