//! CIS AWS Foundations 1.11 (v1.4–v4.0): "Do not setup access keys during initial user setup for all IAM users
//! that have a console password". Evidence of a violation: an Active key that has never been used, on a user
//! with a console password. Later versions number it 1.10 (v5.0) and 2.10 (v6.0); v7.0 drops it, and its 2.11
//! fails such a key once it is older than `UNUSED_DAYS`.

use super::{days_since, Age, Context, Fix, Hit, LastUseReads, Rule, Shows, Words};
use crate::model::{KeySnapshot, UserSnapshot};

pub struct NeverUsedKeyOnConsoleUser;

/// Its ID, unchanged since the first release: findings, the ledger and Security Hub carry it.
pub const ID: &str = "cis-1.11-never-used-key-on-console-user";

/// The controls every finding of this rule fails.
const CONTROLS: [&str; 7] = [
    "CIS AWS v1.4.0 1.11",
    "CIS AWS v1.5.0 1.11",
    "CIS AWS v2.0.0 1.11",
    "CIS AWS v3.0.0 1.11",
    "CIS AWS v4.0.1 1.11",
    "CIS AWS v5.0 1.10",
    "CIS AWS v6.0 2.10",
];

/// What v7.0 makes of the same key once it is older than `UNUSED_DAYS`.
const V7_UNUSED: &str = "CIS AWS v7.0 2.11";

/// The words its alerts have always used.
static WORDS: Words = Words {
    one: "never-used access key on a console user",
    many: "never-used access keys on console users",
    short: "never used (console)",
    why: "These access keys are Active, have never been used, and belong to users who sign in to the console.\n\
          An unused key is an unmonitored way into the account.",
    what_to_do: "- Delete each key with the command under it: it has never been used, so nothing depends on it.\n\
                 - Or deactivate it first: aws iam update-access-key --user-name USER --access-key-id KEY --status Inactive\n\
                 - Stop creating access keys when you create console users: leave \"access key\" unticked in the console,\n\
                 \x20 drop create-access-key from onboarding scripts, and let people create their own keys when they need one.",
    reference: "CIS AWS Foundations Benchmark v1.4.0-v4.0.0, control 1.11: \"Do not setup access keys during initial user setup for all IAM users that have a console password\"",
    evidence: Shows::AgeAtSetup,
    fix: Fix::Delete,
    hub_title: "Active IAM access key never used, on a user with a console password",
    hub_remediation: "Delete the key if nothing uses it. Stop creating access keys when creating console users.",
};

/// Whether `key` breaks the rule: the live pipeline's test of one key.
pub fn breaks(user: &UserSnapshot, key: &KeySnapshot) -> bool {
    user.password_enabled && key.active && key.last_used.is_none()
}

impl Rule for NeverUsedKeyOnConsoleUser {
    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "active key never used, on a user with a console password"
    }

    fn deactivates(&self) -> bool {
        // Unused, so nothing depends on it.
        true
    }

    /// A row with a never-used key in any slot, Active or not, with a password or not: a password added or a
    /// key reactivated since would make it a finding. (A key created since the report, on a row with none,
    /// waits for the next report: README's Known limits.)
    fn may_hold(&self, row: &UserSnapshot, _context: &Context) -> bool {
        row.keys.iter().any(|key| key.last_used.is_none())
    }

    /// Only whether a console user's key was ever used: any use the report saw serves.
    fn last_use(&self, _context: &Context) -> LastUseReads {
        LastUseReads {
            console_users: true,
            ..LastUseReads::default()
        }
    }

    fn words(&self) -> &'static Words {
        &WORDS
    }

    fn check(&self, user: &UserSnapshot, context: &Context) -> Vec<Hit> {
        user.keys
            .iter()
            .enumerate()
            .filter(|(_, key)| breaks(user, key))
            .map(|(index, key)| {
                let mut controls = CONTROLS.to_vec();
                // v7's unused test, counted from creation (a key of unknown age cannot be shown young).
                let unused = Age {
                    since: |key| key.created,
                    limit: context.unused_days,
                };
                if unused.over(key, context.now).is_some() {
                    controls.push(V7_UNUSED);
                }
                let days = days_since(key.created, context.now);
                Hit::on_key(index, key, controls, days)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::tests_support::{key, user, NOW};
    use time::Duration;

    #[test]
    fn truth_table() {
        for (password, active, last_used, expected) in [
            (true, true, None, true),
            (false, true, None, false),
            (true, false, None, false),
            (true, true, Some(NOW), false),
        ] {
            let u = user(password, vec![key(active, Some(NOW), last_used)]);
            assert_eq!(
                NeverUsedKeyOnConsoleUser.check(&u, &Context::at(NOW)).len(),
                usize::from(expected),
                "{password} {active} {last_used:?}"
            );
            assert_eq!(breaks(&u, &u.keys[0]), expected);
        }
    }

    /// v7.0 2.11 joins the controls once the key is older than `UNUSED_DAYS` (45 by default).
    #[test]
    fn v7_counts_it_once_older_than_unused_days() {
        for (age_days, unused_days, v7) in [
            (45, 45, false),
            (46, 45, true),
            (10, 7, true),
            (7, 7, false),
        ] {
            let created = NOW - Duration::days(age_days);
            let u = user(true, vec![key(true, Some(created), None)]);
            let context = Context {
                unused_days,
                ..Context::at(NOW)
            };
            let hits = NeverUsedKeyOnConsoleUser.check(&u, &context);
            assert_eq!(hits.len(), 1);
            assert_eq!(hits[0].evidence.days, Some(age_days));
            assert_eq!(
                hits[0].controls.contains(&"CIS AWS v7.0 2.11"),
                v7,
                "{age_days} days, UNUSED_DAYS {unused_days}"
            );
            assert_eq!(
                hits[0].controls[..7],
                [
                    "CIS AWS v1.4.0 1.11",
                    "CIS AWS v1.5.0 1.11",
                    "CIS AWS v2.0.0 1.11",
                    "CIS AWS v3.0.0 1.11",
                    "CIS AWS v4.0.1 1.11",
                    "CIS AWS v5.0 1.10",
                    "CIS AWS v6.0 2.10"
                ]
            );
            assert_eq!(hits[0].controls.len(), if v7 { 8 } else { 7 });
        }
    }
}
