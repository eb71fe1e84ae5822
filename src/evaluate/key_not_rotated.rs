//! Access keys rotated every `ROTATE_DAYS` days: an Active key created longer ago than that. CIS AWS
//! Foundations v1.4.0 to v4.0.1 1.14, v5.0 1.13, v6.0 2.13 and v7.0 2.12; AWS Config `access-keys-rotated`.
//! Such a key may well be in use: its findings never deactivate it.

use super::{Age, Context, Fix, Hit, Rule, Shows, Words};
use crate::model::UserSnapshot;

pub struct KeyNotRotated;

const CONTROLS: [&str; 9] = [
    "CIS AWS v1.4.0 1.14",
    "CIS AWS v1.5.0 1.14",
    "CIS AWS v2.0.0 1.14",
    "CIS AWS v3.0.0 1.14",
    "CIS AWS v4.0.1 1.14",
    "CIS AWS v5.0 1.13",
    "CIS AWS v6.0 2.13",
    "CIS AWS v7.0 2.12",
    "AWS Config access-keys-rotated",
];

pub const ID: &str = "key-not-rotated";

static WORDS: Words = Words {
    one: "access key not rotated in ROTATE_DAYS days",
    many: "access keys not rotated in ROTATE_DAYS days",
    short: "not rotated",
    why: "These access keys are Active and were created more than ROTATE_DAYS days ago. They may well be in use:\n\
          rotate them, and keywatch never deactivates them for this rule.",
    what_to_do: "- Rotate each key: create a new one, move what uses the old one to it, then deactivate the old one\n\
                 \x20 with the command under it, and delete it once nothing breaks.",
    reference: "CIS AWS Foundations Benchmark v1.4.0-v4.0.1 1.14, v5.0 1.13, v6.0 2.13, v7.0 2.12: \"Ensure access keys are rotated every 90 days or less\"",
    evidence: Shows::Creation,
    fix: Fix::Deactivate,
    hub_title: "Active IAM access key not rotated in ROTATE_DAYS days",
    hub_remediation: "Rotate the key: create a new one, move its users to it, then deactivate and delete the old one.",
};

/// Created longer ago than `ROTATE_DAYS`.
fn overdue(context: &Context) -> Age {
    Age {
        since: |key| key.created,
        limit: context.rotate_days,
    }
}

impl Rule for KeyNotRotated {
    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "active key older than ROTATE_DAYS"
    }

    fn deactivates(&self) -> bool {
        // Its keys may well be in use: rotating them is a person's job.
        false
    }

    /// A row with a key in any slot (it may be reactivated) created more than `ROTATE_DAYS` before now, or on an
    /// unknown date. A key's creation never changes, and a key created since is new.
    fn may_hold(&self, row: &UserSnapshot, context: &Context) -> bool {
        overdue(context).in_any_slot(row, context.now)
    }

    fn words(&self) -> &'static Words {
        &WORDS
    }

    fn check(&self, user: &UserSnapshot, context: &Context) -> Vec<Hit> {
        overdue(context)
            .active_keys(user, context.now)
            .map(|(index, key, days)| Hit::on_key(index, key, CONTROLS.to_vec(), days))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::tests_support::{ago, key, user, NOW};

    #[test]
    fn table() {
        // (case, active, created, last used, ROTATE_DAYS, days counted if a finding)
        let cases = [
            (
                "created 91 days ago, in use",
                true,
                ago(91),
                ago(0),
                90,
                Some(91),
            ),
            ("created 90 days ago", true, ago(90), None, 90, None),
            (
                "created 91 days ago, inactive",
                false,
                ago(91),
                None,
                90,
                None,
            ),
            (
                "ROTATE_DAYS 30: created 31 days ago",
                true,
                ago(31),
                None,
                30,
                Some(31),
            ),
            (
                "ROTATE_DAYS 365: created 200 days ago",
                true,
                ago(200),
                None,
                365,
                None,
            ),
            ("created on an unknown date", true, None, None, 90, Some(-1)),
        ];
        for (case, active, created, last_used, rotate_days, expected) in cases {
            let context = Context {
                rotate_days,
                ..Context::at(NOW)
            };
            let hits =
                KeyNotRotated.check(&user(true, vec![key(active, created, last_used)]), &context);
            let days = hits.first().map(|hit| hit.evidence.days.unwrap_or(-1));
            assert_eq!(days, expected, "{case}");
        }
    }
}
