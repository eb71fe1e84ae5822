//! Unused credentials: an Active key, of any user, not used for longer than `UNUSED_DAYS`; a key never used
//! counts from its creation. CIS AWS Foundations v1.4.0 to v4.0.1 1.12, v5.0 1.11, v6.0 2.11, v7.0 2.11; Security
//! Hub IAM.22 (45 days) and IAM.8 (90 days); AWS Config `iam-user-unused-credentials-check`. Unlike Prowler's
//! `iam_user_accesskey_unused`, a never-used key is not skipped.

use super::{Age, Context, Fix, Hit, LastUseReads, Rule, Shows, Words};
use crate::model::UserSnapshot;

pub struct UnusedKey;

pub const ID: &str = "unused-key";

const CONTROLS: [&str; 8] = [
    "CIS AWS v1.4.0 1.12",
    "CIS AWS v1.5.0 1.12",
    "CIS AWS v2.0.0 1.12",
    "CIS AWS v3.0.0 1.12",
    "CIS AWS v4.0.1 1.12",
    "CIS AWS v5.0 1.11",
    "CIS AWS v6.0 2.11",
    "CIS AWS v7.0 2.11",
];

static WORDS: Words = Words {
    one: "access key unused for UNUSED_DAYS days",
    many: "access keys unused for UNUSED_DAYS days",
    short: "unused",
    why: "These access keys are Active but have not been used for more than UNUSED_DAYS days (a key never used counts\n\
          from its creation). A key nobody uses is a credential nobody watches.",
    what_to_do: "- Deactivate each key with the command under it; if nothing breaks, delete it.\n\
                 - If a key is kept for a rare job, tag its user (EXEMPT_TAG_KEY) with the day the exemption ends.",
    reference: "CIS AWS Foundations Benchmark v1.4.0-v4.0.1 1.12, v5.0 1.11, v6.0 2.11, v7.0 2.11: \"Ensure credentials unused for 45 days or more are disabled\"",
    evidence: Shows::LastUse,
    fix: Fix::Deactivate,
    hub_title: "Active IAM access key not used for UNUSED_DAYS days",
    hub_remediation: "Deactivate the key, then delete it if nothing breaks.",
};

/// Not used for longer than `UNUSED_DAYS`: days since the last use, or since the creation of a key never used.
fn unused(context: &Context) -> Age {
    Age {
        since: |key| key.last_used.or(key.created),
        limit: context.unused_days,
    }
}

impl Rule for UnusedKey {
    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "active key not used for UNUSED_DAYS"
    }

    fn deactivates(&self) -> bool {
        // Unused, so nothing depends on it.
        true
    }

    /// A row with a key in any slot (it may be reactivated) whose last use, or creation if never used, is more
    /// than `UNUSED_DAYS` before now, or unknown. A use since the report only makes the key younger, and a key
    /// created since cannot be `UNUSED_DAYS` old: no other row can hold one.
    fn may_hold(&self, row: &UserSnapshot, context: &Context) -> bool {
        unused(context).in_any_slot(row, context.now)
    }

    /// Every user's Active keys, with the date: a use the report saw more than `UNUSED_DAYS` ago may have been
    /// followed by another.
    fn last_use(&self, context: &Context) -> LastUseReads {
        LastUseReads {
            every_user: true,
            known_use_within_days: Some(context.unused_days),
            ..LastUseReads::default()
        }
    }

    fn words(&self) -> &'static Words {
        &WORDS
    }

    fn check(&self, user: &UserSnapshot, context: &Context) -> Vec<Hit> {
        unused(context)
            .active_keys(user, context.now)
            .map(|(index, key, days)| {
                let mut controls = CONTROLS.to_vec();
                // Security Hub's two controls, each at its own threshold.
                if days.is_none_or(|days| days > 45) {
                    controls.push("AWS Security Hub IAM.22");
                }
                if days.is_none_or(|days| days > 90) {
                    controls.push("AWS Security Hub IAM.8");
                }
                Hit::on_key(index, key, controls, days)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::tests_support::{ago, key, user, NOW};

    #[test]
    fn table() {
        // (case, password, active, created, last used, UNUSED_DAYS, days counted if a finding)
        let cases = [
            (
                "never used, created 46 days ago",
                false,
                true,
                ago(46),
                None,
                45,
                Some(46),
            ),
            (
                "never used, created 45 days ago",
                false,
                true,
                ago(45),
                None,
                45,
                None,
            ),
            (
                "used 46 days ago",
                true,
                true,
                ago(400),
                ago(46),
                45,
                Some(46),
            ),
            ("used yesterday", false, true, ago(400), ago(1), 45, None),
            ("inactive and old", false, false, ago(400), None, 45, None),
            (
                "UNUSED_DAYS 90: used 60 days ago",
                false,
                true,
                ago(400),
                ago(60),
                90,
                None,
            ),
            (
                "UNUSED_DAYS 1: used 2 days ago",
                false,
                true,
                ago(400),
                ago(2),
                1,
                Some(2),
            ),
            ("no dates at all", false, true, None, None, 45, Some(-1)),
        ];
        for (case, password, active, created, last_used, unused_days, expected) in cases {
            let u = user(password, vec![key(active, created, last_used)]);
            let context = Context {
                unused_days,
                ..Context::at(NOW)
            };
            let hits = UnusedKey.check(&u, &context);
            let days = hits.first().map(|hit| hit.evidence.days.unwrap_or(-1));
            assert_eq!(days, expected, "{case}");
        }
    }

    #[test]
    fn security_hub_controls_by_their_own_thresholds() {
        for (used_days_ago, iam22, iam8) in [(50, true, false), (91, true, true)] {
            let used = ago(used_days_ago);
            let u = user(false, vec![key(true, ago(500), used)]);
            let context = Context {
                unused_days: 30,
                ..Context::at(NOW)
            };
            let controls = &UnusedKey.check(&u, &context)[0].controls;
            assert!(controls.contains(&"CIS AWS v7.0 2.11"));
            assert_eq!(controls.contains(&"AWS Security Hub IAM.22"), iam22);
            assert_eq!(controls.contains(&"AWS Security Hub IAM.8"), iam8);
        }
    }
}
