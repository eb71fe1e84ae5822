//! The seeding: deterministic plans of accounts (console and service users, Active and Inactive keys, used and
//! never used), what each plan implies (findings, candidates, live lookups, call bounds), and moto seeded from them,
//! for one account or an organization of many.

use crate::measure::*;
use crate::support;
use crate::support::account::seed_plans;
use crate::support::pump::WorkQueue;
use crate::support::seeded::{AccountPlan, Mix, PlannedKey, PlannedUser, Seeded};
use crate::support::{Account, Moto};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The seed mix, in percent. The document states these values, so they are changed here only.
pub(crate) const MIX: Mix = Mix {
    console: 50,
    console_without_key: 40,
    console_second_key: 25,
    console_key_never_used: 13,
    service_second_key: 30,
    service_key_never_used: 10,
    key_inactive: 20,
    tag_exempt: 0,
    svc_name: 0,
    team_path: 0,
};

/// What a planned user means for keywatch's rules and calls.
pub(crate) trait Expected {
    fn never_used(&self) -> impl Iterator<Item = &PlannedKey>;
    /// The new candidate rule: a never-used key in any slot, Active or Inactive, password or not. (Users missing
    /// from the report are candidates too; here every user exists before the report.)
    fn is_candidate(&self) -> bool;
    /// The old rule: an Active never-used key on a console user.
    fn is_old_rule_candidate(&self) -> bool;
    /// Keys whose last use has to be looked up live: Active keys of a console user the report did not see used
    /// (every used key is used before the report here).
    fn live_lookups(&self) -> usize;
}

impl Expected for PlannedUser {
    fn never_used(&self) -> impl Iterator<Item = &PlannedKey> {
        self.keys.iter().filter(|k| !k.used)
    }

    fn is_candidate(&self) -> bool {
        self.never_used().next().is_some()
    }

    fn is_old_rule_candidate(&self) -> bool {
        self.console && self.never_used().any(|k| k.active)
    }

    fn live_lookups(&self) -> usize {
        if self.console {
            self.never_used().filter(|k| k.active).count()
        } else {
            0
        }
    }
}

/// Everything the seed will create, decided up front (support's [`AccountPlan`], drawn from [`MIX`]): the expected
/// figures come from here, not from keywatch.
pub(crate) struct Plan(AccountPlan);

impl std::ops::Deref for Plan {
    type Target = AccountPlan;
    fn deref(&self) -> &AccountPlan {
        &self.0
    }
}

impl Plan {
    pub(crate) fn new(size: usize) -> Plan {
        Plan::seeded(size, 0x5EED_0000 + size as u64)
    }

    /// The plan of the organization's account number `index` (0: the management account, whose plan is the
    /// single account's of that size); every member gets a mix of its own.
    pub(crate) fn for_account(size: usize, index: usize) -> Plan {
        Plan::seeded(size, 0x5EED_0000 + size as u64 + ((index as u64) << 32))
    }

    pub(crate) fn seeded(size: usize, seed: u64) -> Plan {
        Plan(AccountPlan::draw(&mut Seeded(seed), &MIX, size, ""))
    }

    pub(crate) fn count(&self, f: impl Fn(&PlannedUser) -> usize) -> usize {
        self.users.iter().map(f).sum()
    }

    /// Active never-used keys of console users: what keywatch must report.
    pub(crate) fn findings(&self) -> usize {
        self.count(|u| {
            if u.console {
                u.never_used().filter(|k| k.active).count()
            } else {
                0
            }
        })
    }

    pub(crate) fn candidates(&self) -> usize {
        self.count(|u| usize::from(u.is_candidate()))
    }

    pub(crate) fn old_rule_candidates(&self) -> usize {
        self.count(|u| usize::from(u.is_old_rule_candidate()))
    }

    pub(crate) fn live_lookups(&self) -> usize {
        self.count(|u| {
            if u.is_candidate() {
                u.live_lookups()
            } else {
                0
            }
        })
    }

    /// Keys matching `console`, `active` and `used` (`None`: either).
    pub(crate) fn keys(
        &self,
        console: Option<bool>,
        active: Option<bool>,
        used: Option<bool>,
    ) -> usize {
        self.count(|u| {
            if console.is_some_and(|c| c != u.console) {
                return 0;
            }
            u.keys
                .iter()
                .filter(|k| active.is_none_or(|a| a == k.active))
                .filter(|k| used.is_none_or(|x| x == k.used))
                .count()
        })
    }
}

/// Seeds each plan into its account with the tests' one seeder ([`seed_plans`]).
pub(crate) async fn seed(accounts: &[(&Account, &Plan)]) {
    let plans: Vec<(&Account, &AccountPlan)> = accounts
        .iter()
        .map(|&(account, plan)| (account, &plan.0))
        .collect();
    seed_plans(&plans).await;
}

/// The function's own account: moto's default, and the organization's management account.
pub(crate) const MANAGEMENT: &str = "123456789012";
/// The emulated organization, seeded.
pub(crate) struct Org {
    pub(crate) own: Account,
    /// Every ACTIVE account, sorted: what each dispatch must list.
    pub(crate) accounts: Vec<String>,
    pub(crate) plans: BTreeMap<String, Plan>,
    pub(crate) users: usize,
    pub(crate) topic: String,
    pub(crate) work: WorkQueue,
    pub(crate) seeding: Duration,
}

/// An organization of `accounts` accounts (the management account and members from `create_account`), each
/// seeded with `users` users of a plan of its own; members through their `OrganizationAccountAccessRole`.
pub(crate) async fn organization(moto: &Moto, accounts: usize, users: usize) -> Org {
    let started = Instant::now();
    let own = moto.account().await;
    let organizations = support::create_organization(moto).await;
    let mut members = Vec::new();
    for i in 1..accounts {
        let id = support::create_member(&organizations, &format!("member-{i:03}")).await;
        members.push((id.clone(), support::member_account(moto, &id).await));
    }
    let mut plans = BTreeMap::new();
    plans.insert(MANAGEMENT.to_string(), Plan::for_account(users, 0));
    for (i, (id, _)) in members.iter().enumerate() {
        plans.insert(id.clone(), Plan::for_account(users, i + 1));
    }
    {
        let seeded: Vec<(&Account, &Plan)> = std::iter::once((&own, &plans[MANAGEMENT]))
            .chain(members.iter().map(|(id, account)| (account, &plans[id])))
            .collect();
        seed(&seeded).await;
    }
    let topic = own
        .sns
        .create_topic()
        .name("keywatch-findings")
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("topic arn");
    // One receive: a failed check goes to the DLQ at its next receive, and fails the bench.
    let work = WorkQueue::create(&own.sqs, "keywatch-work", WORK_VISIBILITY_S, 1).await;
    Org {
        own,
        accounts: plans.keys().cloned().collect(),
        plans,
        users,
        topic,
        work,
        seeding: started.elapsed(),
    }
}

/// The single-account bounds of IAM calls for an account of `plan`: (fixed, per-candidate).
pub(crate) fn call_bounds(plan: &Plan) -> (usize, usize) {
    (
        3 + plan.users.len().div_ceil(1_000),
        3 * plan.candidates() + plan.live_lookups(),
    )
}
