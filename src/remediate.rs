//! Opt-in remediation (`REMEDIATION=deactivate`): a finding that a delivered alert first named at least
//! `DEACTIVATE_AFTER_DAYS` ago (the ledger says when) is deactivated, after one more look at its last use. Never deleted: a person undoes it in one command.

use aws_sdk_iam::types::StatusType;
use aws_sdk_iam::Client as IamClient;
use futures_util::StreamExt;
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::aws::{aws_error, error_code};
use crate::config::Remediation;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::evaluate::Finding;
use crate::inventory::api::{last_use, LastUse};
use crate::model::Change;
use time::format_description::well_known::Rfc3339;

/// The findings to deactivate now: an alert SNS accepted named each one at least `after_days` ago. Only the
/// ledger sets `first_alerted_at`, so a key no delivered alert named is never due, whatever its age.
pub fn due<'a>(
    remediation: &Remediation,
    findings: &'a [Finding],
    now: OffsetDateTime,
) -> Vec<&'a Finding> {
    let Remediation::Deactivate { after_days } = remediation else {
        return Vec::new();
    };
    findings
        .iter()
        .filter(|finding| finding.history.change == Some(Change::Open))
        .filter(|finding| {
            finding
                .history
                .first_alerted_at
                .is_some_and(|alerted| alerted + Duration::days((*after_days).into()) <= now)
        })
        .collect()
}

pub use crate::model::Remediated;

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

/// Time a check keeps back after remediation: no key is started later than this before the check's deadline,
/// so the ledger still records each deactivation and the alert still announces it, with its undo command.
pub const REMEDIATION_RESERVE: std::time::Duration = std::time::Duration::from_secs(10);

/// Deactivates each due finding, `concurrency` at a time (as verification reads them). A failure does not stop
/// the others: it is collected, so the alert can say which key failed before the run fails. A key not started
/// before the deadline's [`REMEDIATION_RESERVE`] is skipped, saying so: it stays Active and is due again in the
/// next run. A key already started finishes within the deadline itself, so no deactivation is cut off halfway.
pub async fn deactivate(
    iam: &IamClient,
    due: &[&Finding],
    member_role: Option<&str>,
    concurrency: usize,
    deadline: &Deadline,
) -> Outcome {
    let start_by = deadline.reserving(REMEDIATION_RESERVE);
    let acted: Vec<(&Finding, Result<Acted>)> = futures_util::stream::iter(due.iter().copied())
        .map(|finding| {
            let start_by = &start_by;
            async move {
                if start_by.remaining().is_zero() {
                    return (finding, Ok(Acted::Skipped(NOT_REACHED.to_string())));
                }
                let acted = deadline
                    .run("remediation", deactivate_one(iam, finding))
                    .await;
                (finding, acted)
            }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut outcome = Outcome::default();
    for (finding, acted) in acted {
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
                    owner: finding.owner.clone(),
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
const NOT_REACHED: &str =
    "not reached before the invocation's deadline (the rest of the time is kept to record \
     and announce the keys deactivated): it stays Active and is deactivated in the next run";

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
    use crate::model::History;
    use time::macros::datetime;

    fn finding(key: &str, change: Option<Change>, alerted: Option<OffsetDateTime>) -> Finding {
        Finding {
            finding_id: format!("123456789012/u/{key}"),
            rule: "r",
            user_name: "u".into(),
            user_arn: "arn:aws:iam::123456789012:user/u".into(),
            access_key_id: key.into(),
            // Old keys: age never makes a key due.
            key_created: Some(datetime!(2020-01-01 00:00 UTC)),
            key_age_days: Some(2_000),
            user_created: datetime!(2020-01-01 00:00 UTC),
            password_last_used: None,
            created_at_user_setup: false,
            exemption_expired_on: None,
            owner: None,
            history: History {
                change,
                first_alerted_at: alerted,
                ..History::default()
            },
        }
    }

    #[test]
    fn due_only_after_the_notice_period_counted_from_the_first_delivered_alert() {
        let now = datetime!(2026-11-30 12:00 UTC);
        let open = Some(Change::Open);
        let findings = [
            finding("ALERTED8", open, Some(now - Duration::days(8))),
            finding("ALERTED7", open, Some(now - Duration::days(7))),
            finding("ALERTED1H", open, Some(now - Duration::hours(1))),
            finding("NEVER_ALERTED", open, None),
            finding("NEW", Some(Change::New), None),
            finding("NO_LEDGER", None, None),
        ];
        let due = |remediation: Remediation| -> Vec<&str> {
            super::due(&remediation, &findings, now)
                .iter()
                .map(|f| f.access_key_id.as_str())
                .collect()
        };
        assert!(due(Remediation::Off).is_empty());
        assert_eq!(
            due(Remediation::Deactivate { after_days: 7 }),
            ["ALERTED8", "ALERTED7"]
        );
        // 0: the first run after the one that first alerted it; never the run that alerts it first.
        assert_eq!(
            due(Remediation::Deactivate { after_days: 0 }),
            ["ALERTED8", "ALERTED7", "ALERTED1H"]
        );
    }
}
