//! Random accounts, drawn the one way: the deterministic generator (xorshift64*, so a seed gives the same account
//! on every run and a failure names a seed that reproduces it), and [`AccountPlan`], every user and key of an
//! account decided up front from a [`Mix`], so the truth is known before anything is seeded. The tests seed their
//! small random accounts from [`Mix::TESTS`] ([`crate::Account::seed_random`]); the bench plans thousands of users
//! from a mix of its own and seeds them with [`crate::account::seed_plans`]. Fault injection draws from the
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

/// The chances, in percent, an account plan is drawn with.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// A user is a console user (with a password), else a service user.
    pub console: u64,
    pub console_without_key: u64,
    /// Of the console users with a key, those with two.
    pub console_second_key: u64,
    pub console_key_never_used: u64,
    /// A service user has one key, or two with this chance.
    pub service_second_key: u64,
    pub service_key_never_used: u64,
    /// Any key, deactivated after its use (if used).
    pub key_inactive: u64,
    /// The user carries the exemption tag `keywatch:exempt`.
    pub tag_exempt: u64,
    /// The user is named `svc-…`, which `EXEMPT_USERS=svc-*` exempts.
    pub svc_name: u64,
    /// The user is under `/team/` rather than `/`.
    pub team_path: u64,
}

impl Mix {
    /// The tests' small accounts: every case keywatch tells apart turns up in a dozen users.
    pub const TESTS: Mix = Mix {
        console: 65,
        console_without_key: 20,
        console_second_key: 40,
        console_key_never_used: 70,
        service_second_key: 40,
        service_key_never_used: 70,
        key_inactive: 20,
        tag_exempt: 10,
        svc_name: 10,
        team_path: 40,
    };
}

#[derive(Debug, Clone, Copy)]
pub struct PlannedKey {
    pub active: bool,
    pub used: bool,
}

#[derive(Debug, Clone)]
pub struct PlannedUser {
    pub name: String,
    pub path: &'static str,
    pub console: bool,
    pub tag_exempt: bool,
    pub svc_name: bool,
    pub keys: Vec<PlannedKey>,
}

/// Every user and key of an account, decided up front.
#[derive(Debug, Clone)]
pub struct AccountPlan {
    pub users: Vec<PlannedUser>,
}

impl AccountPlan {
    /// `users` users drawn from `rng` with the chances of `mix`, named `{prefix}user-NNNNN` (or `svc-{prefix}NNNNN`).
    pub fn draw(rng: &mut Seeded, mix: &Mix, users: usize, prefix: &str) -> AccountPlan {
        let users = (0..users)
            .map(|i| {
                let console = rng.chance(mix.console);
                let (keys, never_used) = if console {
                    let keys = if rng.chance(mix.console_without_key) {
                        0
                    } else if rng.chance(mix.console_second_key) {
                        2
                    } else {
                        1
                    };
                    (keys, mix.console_key_never_used)
                } else {
                    let keys = if rng.chance(mix.service_second_key) {
                        2
                    } else {
                        1
                    };
                    (keys, mix.service_key_never_used)
                };
                let keys = (0..keys)
                    .map(|_| PlannedKey {
                        used: !rng.chance(never_used),
                        active: !rng.chance(mix.key_inactive),
                    })
                    .collect();
                let svc_name = rng.chance(mix.svc_name);
                PlannedUser {
                    name: if svc_name {
                        format!("svc-{prefix}{i:05}")
                    } else {
                        format!("{prefix}user-{i:05}")
                    },
                    path: if rng.chance(mix.team_path) {
                        "/team/"
                    } else {
                        "/"
                    },
                    console,
                    tag_exempt: rng.chance(mix.tag_exempt),
                    svc_name,
                    keys,
                }
            })
            .collect();
        AccountPlan { users }
    }
}
