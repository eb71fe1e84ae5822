//! Opt-in remediation (`REMEDIATION=deactivate`): a finding whose key is older than `DEACTIVATE_AFTER_DAYS` is
//! deactivated, after one more look at its last use. Never deleted: a person undoes it in one command.

use aws_sdk_iam::types::StatusType;
use aws_sdk_iam::Client as IamClient;
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::aws::{aws_error, error_code};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::evaluate::Finding;
use crate::inventory::api::{last_use, LastUse};
use time::format_description::well_known::Rfc3339;

/// `REMEDIATION` and `DEACTIVATE_AFTER_DAYS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Remediation {
    #[default]
    Off,
    /// Deactivate findings whose key is at least this many days old; younger ones are only alerted.
    Deactivate { after_days: u32 },
}

pub const DEFAULT_DEACTIVATE_AFTER_DAYS: u32 = 7;
pub const MAX_DEACTIVATE_AFTER_DAYS: u32 = 3_650;

impl Remediation {
    /// When this finding's key is (or was) due for deactivation; `None` when remediation is off or the key's
    /// creation time is unknown.
    pub fn due_at(&self, finding: &Finding) -> Option<OffsetDateTime> {
        match self {
            Remediation::Off => None,
            Remediation::Deactivate { after_days } => finding
                .key_created
                .map(|created| created + Duration::days((*after_days).into())),
        }
    }

    /// The findings to deactivate now: the notice period is over.
    pub fn due<'a>(&self, findings: &'a [Finding], now: OffsetDateTime) -> Vec<&'a Finding> {
        findings
            .iter()
            .filter(|finding| self.due_at(finding).is_some_and(|due| due <= now))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Remediated {
    pub finding_id: String,
    pub user_name: String,
    pub access_key_id: String,
    /// Always `deactivated`: keywatch never deletes a key.
    pub action: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub finding_id: String,
    pub user_name: String,
    pub access_key_id: String,
    pub reason: String,
}

/// A key that could not be deactivated; the run fails after the alert says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failed {
    pub finding_id: String,
    pub user_name: String,
    pub access_key_id: String,
    pub error: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub remediated: Vec<Remediated>,
    pub skipped: Vec<Skipped>,
    pub failed: Vec<Failed>,
}

enum Acted {
    Deactivated(OffsetDateTime),
    Skipped(String),
}

/// Deactivates each due finding, one at a time. A failure does not stop the others: it is collected, so the
/// alert can say which key failed before the run fails.
pub async fn deactivate(
    iam: &IamClient,
    due: &[&Finding],
    member_role: Option<&str>,
    deadline: &Deadline,
) -> Outcome {
    let mut outcome = Outcome::default();
    for finding in due {
        let acted = deadline
            .run("remediation", deactivate_one(iam, finding))
            .await;
        let (finding_id, user_name, access_key_id) = (
            finding.finding_id.clone(),
            finding.user_name.clone(),
            finding.access_key_id.clone(),
        );
        match acted {
            Ok(Acted::Deactivated(at)) => {
                tracing::warn!(finding_id, user = %user_name, access_key_id, "access key deactivated");
                outcome.remediated.push(Remediated {
                    finding_id,
                    user_name,
                    access_key_id,
                    action: "deactivated",
                    at,
                })
            }
            Ok(Acted::Skipped(reason)) => {
                tracing::info!(finding_id, access_key_id, reason, "remediation skipped");
                outcome.skipped.push(Skipped {
                    finding_id,
                    user_name,
                    access_key_id,
                    reason,
                })
            }
            Err(error) => {
                let error = error.as_member_role(member_role);
                tracing::error!(finding_id, access_key_id, %error, "access key not deactivated");
                outcome.failed.push(Failed {
                    finding_id,
                    user_name,
                    access_key_id,
                    error: error.to_string(),
                })
            }
        }
    }
    outcome
}

/// Looks at the key's last use once more, right before acting: a key used since verification is left alone.
async fn deactivate_one(iam: &IamClient, finding: &Finding) -> Result<Acted> {
    match last_use(iam, &finding.access_key_id).await? {
        LastUse::Never => {}
        LastUse::KeyGone => return Ok(Acted::Skipped(KEY_GONE.to_string())),
        LastUse::At(used) => {
            let used = used.format(&Rfc3339).unwrap_or_else(|_| used.to_string());
            return Ok(Acted::Skipped(format!(
                "the key was used at {used} since it was verified; it is no longer a finding"
            )));
        }
    }
    match iam
        .update_access_key()
        .user_name(&finding.user_name)
        .access_key_id(&finding.access_key_id)
        .status(StatusType::Inactive)
        .send()
        .await
    {
        Ok(_) => Ok(Acted::Deactivated(OffsetDateTime::now_utc())),
        Err(e) if error_code(&e) == Some("NoSuchEntity") => {
            Ok(Acted::Skipped(KEY_GONE.to_string()))
        }
        Err(e) => Err(aws_error("iam:UpdateAccessKey", e)),
    }
}

const KEY_GONE: &str = "the key was deleted since it was verified";

/// The run's error once the alert is out: every key that could not be deactivated, by name.
pub fn failure(failed: &[Failed]) -> Option<Error> {
    let first = failed.first()?;
    Some(Error::RemediationFailed {
        keys: failed
            .iter()
            .map(|f| format!("{} ({})", f.access_key_id, f.user_name))
            .collect(),
        cause: first.error.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn finding(key: &str, created: Option<OffsetDateTime>) -> Finding {
        Finding {
            finding_id: format!("123456789012/u/{key}"),
            rule: "r",
            user_name: "u".into(),
            user_arn: "arn:aws:iam::123456789012:user/u".into(),
            access_key_id: key.into(),
            key_created: created,
            key_age_days: None,
            user_created: datetime!(2026-01-01 00:00 UTC),
            password_last_used: None,
            created_at_user_setup: false,
            exemption_expired_on: None,
        }
    }

    #[test]
    fn due_after_the_notice_period() {
        let now = datetime!(2026-11-30 12:00 UTC);
        let findings = [
            finding("OLD", Some(now - Duration::days(8))),
            finding("EXACTLY7", Some(now - Duration::days(7))),
            finding("NEW", Some(now - Duration::hours(1))),
            finding("UNKNOWN", None),
        ];
        let due = |remediation: Remediation| -> Vec<&str> {
            remediation
                .due(&findings, now)
                .iter()
                .map(|f| f.access_key_id.as_str())
                .collect()
        };
        assert!(due(Remediation::Off).is_empty());
        assert_eq!(
            due(Remediation::Deactivate { after_days: 7 }),
            ["OLD", "EXACTLY7"]
        );
        assert_eq!(
            due(Remediation::Deactivate { after_days: 0 }),
            ["OLD", "EXACTLY7", "NEW"]
        );
        assert_eq!(
            Remediation::Deactivate { after_days: 7 }.due_at(&findings[2]),
            Some(now - Duration::hours(1) + Duration::days(7))
        );
    }
}
