//! One active access key per user: a user with two Active keys is one finding, naming both. CIS AWS Foundations
//! v1.4.0 to v4.0.1 1.13, v5.0 1.12 and v6.0 2.12 (v7.0 drops it).

use super::{Context, Evidence, Fix, Hit, Rule, Shows, Words};
use crate::model::UserSnapshot;

pub struct TwoActiveKeys;

const CONTROLS: [&str; 7] = [
    "CIS AWS v1.4.0 1.13",
    "CIS AWS v1.5.0 1.13",
    "CIS AWS v2.0.0 1.13",
    "CIS AWS v3.0.0 1.13",
    "CIS AWS v4.0.1 1.13",
    "CIS AWS v5.0 1.12",
    "CIS AWS v6.0 2.12",
];

pub const ID: &str = "two-active-keys";

static WORDS: Words = Words {
    one: "user with two active access keys",
    many: "users with two active access keys",
    short: "two active keys",
    why: "These users have two Active access keys. Outside a rotation, one of them is a spare: a second way in\n\
          that nobody needs.",
    what_to_do: "- See which key is in use with the commands under each finding.\n\
                 - Deactivate the other (aws iam update-access-key --user-name USER --access-key-id KEY --status Inactive),\n\
                 \x20 then delete it once nothing breaks. keywatch never deactivates keys for this rule.",
    reference: "CIS AWS Foundations Benchmark v1.4.0-v4.0.1 1.13, v5.0 1.12, v6.0 2.12: \"Ensure there is only one active access key available for any single IAM user\"",
    evidence: Shows::Keys,
    fix: Fix::CompareUse,
    hub_title: "IAM user with two active access keys",
    hub_remediation: "Keep the key in use and deactivate the other, then delete it.",
};

impl Rule for TwoActiveKeys {
    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "user with two active keys"
    }

    fn deactivates(&self) -> bool {
        // Its keys may well be in use: rotating them is a person's job.
        false
    }

    /// A row with two keys, Active or not: either may have been reactivated since. (A second key created
    /// since the report waits for the next one, as for the never-used rule.)
    fn may_hold(&self, row: &UserSnapshot, _context: &Context) -> bool {
        row.keys.len() >= 2
    }

    fn words(&self) -> &'static Words {
        &WORDS
    }

    fn check(&self, user: &UserSnapshot, _context: &Context) -> Vec<Hit> {
        let active: Vec<usize> = (0..user.keys.len())
            .filter(|&index| user.keys[index].active)
            .collect();
        if active.len() < 2 {
            return Vec::new();
        }
        vec![Hit {
            keys: active,
            controls: CONTROLS.to_vec(),
            evidence: Evidence::default(),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::tests_support::{key, user, NOW};

    #[test]
    fn table() {
        let k = |active| key(active, Some(NOW), None);
        // (case, keys, the keys the one finding names)
        let cases = [
            ("no key", vec![], None),
            ("one active", vec![k(true)], None),
            ("one active, one inactive", vec![k(true), k(false)], None),
            ("two inactive", vec![k(false), k(false)], None),
            ("two active", vec![k(true), k(true)], Some(vec![0, 1])),
        ];
        for (case, keys, expected) in cases {
            let hits = TwoActiveKeys.check(&user(false, keys), &Context::at(NOW));
            assert!(hits.len() <= 1, "{case}: one finding per user at most");
            assert_eq!(hits.first().map(|hit| hit.keys.clone()), expected, "{case}");
        }
    }
}
