//! The one deterministic generator of the seeded tests and the bench (xorshift64*): a seed gives the same account
//! on every run, so a failure names a seed that reproduces it. Use it wherever a test or the bench draws an account
//! at random ([`crate::Account::seed_random`] draws the one random small account); fault injection draws from the
//! proxy's own `fastrand`, seeded per run.

/// xorshift64*. The state must not be zero; [`Seeded::new`] makes sure of that for any seed.
pub struct Seeded(pub u64);

impl Seeded {
    /// A generator for any seed, zero included, with neighbouring seeds spread apart.
    pub fn new(seed: u64) -> Seeded {
        Seeded(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}
