//! The account data every step shares: users and their access keys, as read from the credential report or
//! live from IAM; and what the steps hand on about a finding (its history in the ledger, a deactivation), so
//! evaluate, ledger and remediate each depend on this module and never on one another in a circle.

use serde::Serialize;
use time::OffsetDateTime;

/// A user as the inventory sees it. `keys` comes from the report (slots, no key IDs) or from IAM (with IDs).
#[derive(Debug, Clone, PartialEq)]
pub struct UserSnapshot {
    pub name: String,
    pub arn: String,
    pub path: String,
    pub created: OffsetDateTime,
    /// A console password (login profile) exists.
    pub password_enabled: bool,
    pub password_last_used: Option<OffsetDateTime>,
    pub keys: Vec<KeySnapshot>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeySnapshot {
    /// The access key ID; `None` when the data came from the credential report, which has only slots.
    pub id: Option<String>,
    /// Slot 1 or 2 in the credential report; `None` for live data.
    pub slot: Option<u8>,
    pub active: bool,
    pub created: Option<OffsetDateTime>,
    pub last_used: Option<OffsetDateTime>,
}

/// Who a user is, without keys: enough to look the rest up live.
#[derive(Debug, Clone, PartialEq)]
pub struct UserIdentity {
    pub name: String,
    pub arn: String,
    pub path: String,
    pub created: OffsetDateTime,
    pub password_last_used: Option<OffsetDateTime>,
}

impl UserSnapshot {
    pub fn identity(&self) -> UserIdentity {
        UserIdentity {
            name: self.name.clone(),
            arn: self.arn.clone(),
            path: self.path.clone(),
            created: self.created,
            password_last_used: self.password_last_used,
        }
    }
}

/// The path part of a user ARN: `arn:aws:iam::1:user/ops/frank` → `/ops/`.
pub fn path_from_arn(arn: &str) -> String {
    let resource = arn.split_once(":user/").map(|(_, rest)| rest).unwrap_or("");
    match resource.rfind('/') {
        Some(end) => format!("/{}/", &resource[..end]),
        None => "/".to_string(),
    }
}

/// Converts an SDK timestamp; `None` only for dates outside what `time` can hold, which IAM never sends.
pub fn from_smithy(value: &aws_smithy_types::DateTime) -> Option<OffsetDateTime> {
    let nanos = i128::from(value.secs()) * 1_000_000_000 + i128::from(value.subsec_nanos());
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// The account ID in an ARN, e.g. `123456789012`.
pub fn account_from_arn(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|account| !account.is_empty())
}

/// Whether a finding is new since the last delivered alert or was already named by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    New,
    Open,
}

/// What the ledger knows of a finding; all `None` when there is no ledger (`LEDGER_TABLE` unset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct History {
    pub change: Option<Change>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_seen_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_alerted_at: Option<OffsetDateTime>,
    /// With `REMEDIATION=deactivate`: the first run on or after this time deactivates the key. It is the date a
    /// delivered alert announced to the finding's owner; with `notice` set, the date this alert announces.
    #[serde(with = "time::serde::rfc3339::option")]
    pub deactivate_on: Option<OffsetDateTime>,
    /// What this alert says of the deactivation date: `new` announces it (first notice, or a new owner's),
    /// `later` moves it later (`DEACTIVATE_AFTER_DAYS` raised); `null` when a delivered alert already said it.
    /// A finding with a notice still to deliver is never deactivated.
    pub notice: Option<Notice>,
}

/// A deactivation date this alert announces, as opposed to one a delivered alert already announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Notice {
    New,
    Later,
}

/// A key keywatch deactivated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Remediated {
    pub finding_id: String,
    pub user_name: String,
    pub access_key_id: String,
    /// Always `deactivated`: keywatch never deletes a key.
    pub action: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The finding's owner, when alerts are routed by owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_from_arn_cases() {
        for (arn, path) in [
            ("arn:aws:iam::123456789012:user/alice", "/"),
            ("arn:aws:iam::123456789012:user/ops/frank", "/ops/"),
            ("arn:aws:iam::123456789012:user/a/b/c", "/a/b/"),
            ("arn:aws:iam::123456789012:root", "/"),
        ] {
            assert_eq!(path_from_arn(arn), path, "{arn}");
        }
    }
}
