//! Opt-in remediation (`REMEDIATION=deactivate`): a finding is deactivated only on or after the date that a
//! delivered alert announced to its current owner (the ledger's notice), after one more look at its status and
//! last use. Never deleted: a person undoes it in one command.

use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_iam::types::StatusType;
use aws_sdk_iam::Client as IamClient;
use futures_util::StreamExt;
use serde::Serialize;
use time::OffsetDateTime;

use crate::aws::{aws_error, error_code};
use crate::config::Remediation;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::evaluate::Finding;
use crate::inventory::api::{last_use, LastUse};
use crate::model::Change;
use time::format_description::well_known::Rfc3339;

/// The findings to deactivate now: open ones whose deactivation date a delivered alert announced to their
/// owner, on or after that date. Only the ledger records a notice, so a key no delivered notice named is never
/// due, whatever its age or its earlier alerts; a date this run's alert still has to announce is never due.
/// Only a rule that deactivates ([`crate::evaluate::Rule::deactivates`]) makes a key due, and a key due under
/// two rules is deactivated once, under the first.
pub fn due<'a>(
    remediation: &Remediation,
    findings: &'a [Finding],
    now: OffsetDateTime,
) -> Vec<&'a Finding> {
    if *remediation == Remediation::Off {
        return Vec::new();
    }
    let mut keys = std::collections::BTreeSet::new();
    findings
        .iter()
        .filter(|finding| {
            crate::evaluate::rule(finding.rule).is_some_and(|rule| rule.deactivates())
        })
        .filter(|finding| finding.history.change == Some(Change::Open))
        .filter(|finding| finding.history.notice.is_none())
        .filter(|finding| finding.history.deactivate_on.is_some_and(|on| on <= now))
        .filter(|finding| keys.insert(finding.access_key_id.as_str()))
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
    // A call the deadline cuts is read back within the time kept here.
    let act_by = deadline.reserving(READ_BACK_LIMIT);
    let acted: Vec<(&Finding, Result<Acted>)> = futures_util::stream::iter(due.iter().copied())
        .map(|finding| {
            let (start_by, act_by) = (&start_by, &act_by);
            async move {
                if start_by.remaining().is_zero() {
                    return (finding, Ok(Acted::Skipped(NOT_REACHED.to_string())));
                }
                let sent = AtomicBool::new(false);
                let acted = match act_by
                    .run("remediation", deactivate_one(iam, finding, &sent))
                    .await
                {
                    // Cut after UpdateAccessKey went out: what IAM holds now says whether it took effect.
                    Err(Error::Deadline { .. }) if sent.load(Ordering::SeqCst) => {
                        read_back(iam, finding).await
                    }
                    acted => acted,
                };
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

/// Looks at the key once more, right before acting: its status (a key someone else deactivated in between is
/// never claimed as keywatch's) and its last use (a key used since verification is left alone).
async fn deactivate_one(iam: &IamClient, finding: &Finding, sent: &AtomicBool) -> Result<Acted> {
    match status(iam, finding).await? {
        None => return Ok(Acted::Skipped(KEY_GONE.to_string())),
        Some(StatusType::Active) => {}
        Some(_) => return Ok(Acted::Skipped(INACTIVE_ALREADY.to_string())),
    }
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
    sent.store(true, Ordering::SeqCst);
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

/// The key's status as `ListAccessKeys` gives it now; `None` when the key or its user is gone.
async fn status(iam: &IamClient, finding: &Finding) -> Result<Option<StatusType>> {
    let listed = iam
        .list_access_keys()
        .user_name(&finding.user_name)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await;
    let listed: Vec<_> = match listed {
        Ok(keys) => keys,
        Err(e) if error_code(&e) == Some("NoSuchEntity") => return Ok(None),
        Err(e) => return Err(aws_error("iam:ListAccessKeys", e)),
    };
    Ok(listed
        .into_iter()
        .find(|key| key.access_key_id.as_deref() == Some(finding.access_key_id.as_str()))
        .map(|key| key.status.unwrap_or(StatusType::Active)))
}

/// After the deadline cut an `UpdateAccessKey` that went out: Inactive now means it took effect (the key was
/// Active right before), Active means it did not. Either way the report says what is true.
async fn read_back(iam: &IamClient, finding: &Finding) -> Result<Acted> {
    match tokio::time::timeout(READ_BACK_LIMIT, status(iam, finding)).await {
        Ok(Ok(Some(StatusType::Active))) => Ok(Acted::Skipped(CUT_STILL_ACTIVE.to_string())),
        Ok(Ok(Some(_))) => Ok(Acted::Deactivated(OffsetDateTime::now_utc())),
        Ok(Ok(None)) => Ok(Acted::Skipped(KEY_GONE.to_string())),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(Error::Deadline {
            phase: "reading back a deactivation the deadline cut",
        }),
    }
}

/// How long the read-back of a cut call may take: it runs inside the time remediation keeps back.
const READ_BACK_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
const INACTIVE_ALREADY: &str =
    "the key was already Inactive when keywatch looked again: someone else deactivated it";
const CUT_STILL_ACTIVE: &str =
    "the invocation's deadline cut the call, and the key is still Active: \
     it is deactivated in the next run";
/// A due key left alone because the ledger could not record, beforehand, that keywatch was deactivating it.
pub const NOT_RECORDED: &str =
    "the ledger could not record the deactivation beforehand, so the key was \
     left Active; it is deactivated in a later run";
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
    use crate::model::{History, Notice};
    use time::macros::datetime;
    use time::Duration;

    fn finding(
        key: &str,
        change: Option<Change>,
        deactivate_on: Option<OffsetDateTime>,
        notice: Option<Notice>,
    ) -> Finding {
        Finding {
            finding_id: format!("123456789012/u/{key}"),
            rule: crate::evaluate::never_used_key::ID,
            controls: Vec::new(),
            user_name: "u".into(),
            user_arn: "arn:aws:iam::123456789012:user/u".into(),
            access_key_id: key.into(),
            other_access_key_ids: vec![],
            key_last_used: None,
            days_counted: None,
            caused_by: None,
            // Old keys, alerted long ago: neither age nor earlier alerts make a key due.
            key_created: Some(datetime!(2020-01-01 00:00 UTC)),
            key_age_days: Some(2_000),
            user_created: datetime!(2020-01-01 00:00 UTC),
            password_last_used: None,
            created_at_user_setup: false,
            exemption_expired_on: None,
            owner: None,
            history: History {
                change,
                first_alerted_at: Some(datetime!(2020-01-02 00:00 UTC)),
                deactivate_on,
                notice,
                ..History::default()
            },
        }
    }

    /// Only today's rule and unused-key deactivate: a key two active, or rotated late, may be in use. A key due
    /// under two rules is deactivated once.
    #[test]
    fn only_rules_that_deactivate_make_a_key_due_and_each_key_once() {
        let now = datetime!(2026-11-30 12:00 UTC);
        let past = Some(now - Duration::days(1));
        let of = |rule: &'static str, key: &str| Finding {
            rule,
            ..finding(key, Some(Change::Open), past, None)
        };
        let findings = [
            of("cis-1.11-never-used-key-on-console-user", "K1"),
            of("unused-key", "K1"),
            of("unused-key", "K2"),
            of("two-active-keys", "K3"),
            of("key-not-rotated", "K4"),
            of("no-such-rule", "K5"),
        ];
        let due: Vec<(&str, &str)> =
            super::due(&Remediation::Deactivate { after_days: 7 }, &findings, now)
                .iter()
                .map(|f| (f.rule, f.access_key_id.as_str()))
                .collect();
        assert_eq!(
            due,
            [
                ("cis-1.11-never-used-key-on-console-user", "K1"),
                ("unused-key", "K2")
            ]
        );
    }

    #[test]
    fn due_only_on_or_after_a_date_a_delivered_notice_announced() {
        let now = datetime!(2026-11-30 12:00 UTC);
        let open = Some(Change::Open);
        let findings = [
            finding("ANNOUNCED_PAST", open, Some(now - Duration::days(1)), None),
            finding("ANNOUNCED_NOW", open, Some(now), None),
            finding(
                "ANNOUNCED_LATER",
                open,
                Some(now + Duration::hours(1)),
                None,
            ),
            // Alerted for years while remediation was off: no notice yet, this alert gives it.
            finding("NO_NOTICE_YET", open, Some(now), Some(Notice::New)),
            // A new owner, or a raised period: what this alert says is not yet delivered.
            finding("MOVED_LATER", open, Some(now), Some(Notice::Later)),
            finding("NEW", Some(Change::New), Some(now), Some(Notice::New)),
            finding("NO_DATE", open, None, None),
            finding("NO_LEDGER", None, None, None),
        ];
        let due = |remediation: Remediation| -> Vec<&str> {
            super::due(&remediation, &findings, now)
                .iter()
                .map(|f| f.access_key_id.as_str())
                .collect()
        };
        assert!(due(Remediation::Off).is_empty());
        for after_days in [0, 7, 30] {
            assert_eq!(
                due(Remediation::Deactivate { after_days }),
                ["ANNOUNCED_PAST", "ANNOUNCED_NOW"],
                "the setting never moves an announced date: {after_days}"
            );
        }
    }
}
