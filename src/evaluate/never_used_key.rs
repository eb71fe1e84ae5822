//! CIS AWS Foundations 1.11 (v1.4–v4.0): "Do not setup access keys during initial user setup for all IAM users
//! that have a console password". Evidence of a violation: an Active key that has never been used, on a user
//! with a console password.

use super::Rule;
use crate::model::{KeySnapshot, UserSnapshot};

pub struct NeverUsedKeyOnConsoleUser;

impl Rule for NeverUsedKeyOnConsoleUser {
    fn id(&self) -> &'static str {
        "cis-1.11-never-used-key-on-console-user"
    }

    fn matches(&self, user: &UserSnapshot, key: &KeySnapshot) -> bool {
        user.password_enabled && key.active && key.last_used.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    #[test]
    fn truth_table() {
        let now = OffsetDateTime::UNIX_EPOCH;
        for (password, active, last_used, expected) in [
            (true, true, None, true),
            (false, true, None, false),
            (true, false, None, false),
            (true, true, Some(now), false),
        ] {
            let user = UserSnapshot {
                name: "u".into(),
                arn: "arn:aws:iam::123456789012:user/u".into(),
                path: "/".into(),
                created: now,
                password_enabled: password,
                password_last_used: None,
                keys: vec![],
            };
            let key = KeySnapshot {
                id: None,
                slot: Some(1),
                active,
                created: None,
                last_used,
            };
            assert_eq!(
                NeverUsedKeyOnConsoleUser.matches(&user, &key),
                expected,
                "{password} {active} {last_used:?}"
            );
        }
    }
}
