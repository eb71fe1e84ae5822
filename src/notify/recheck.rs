//! The grace period's re-check (an event-driven check with `GRACE_PERIOD_HOURS` > 0): a key an event found inside
//! its grace period is pending, so a one-time EventBridge Scheduler schedule puts the same IAM change back on the
//! event queue when the grace ends, and that user is checked again then, not at the next sweep. The schedule
//! deletes itself after it ran (`ActionAfterCompletion: DELETE`).

use std::collections::BTreeMap;

use aws_sdk_scheduler::types::{
    ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target,
};
use aws_sdk_scheduler::Client as SchedulerClient;
use serde::Serialize;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::aws::{aws_error, error_code};
use crate::cloudtrail::IamChange;
use crate::config::Recheck;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::evaluate::Pending;

/// One re-check scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scheduled {
    pub user_name: String,
    /// When the user is checked again: the last of their pending keys' grace ends, to the next whole minute.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub schedule_name: String,
}

/// The schedule's name: at most 64 characters of `[0-9a-zA-Z-_.]`, the same for the same user and time, so a
/// retried check finds its schedule there already.
fn schedule_name(account_id: &str, user_name: &str, at: OffsetDateTime) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(user_name.as_bytes());
    let user: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("recheck-{account_id}-{user}-{}", at.unix_timestamp())
}

/// `at()`'s time: to the next whole minute, in UTC.
fn at_minute(grace_ends: OffsetDateTime) -> OffsetDateTime {
    let floor = grace_ends
        .replace_second(0)
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or(grace_ends);
    if floor < grace_ends {
        floor + time::Duration::minutes(1)
    } else {
        floor
    }
}

/// A schedule per user with a pending finding whose change the check was given, each re-sending that change.
pub async fn schedule(
    client: &SchedulerClient,
    recheck: &Recheck,
    account_id: &str,
    pending: &[Pending],
    change_of: impl Fn(&str) -> Option<IamChange>,
    deadline: &Deadline,
) -> Result<Vec<Scheduled>> {
    let mut last_end: BTreeMap<&str, OffsetDateTime> = BTreeMap::new();
    for p in pending {
        let end = last_end
            .entry(p.finding.user_name.as_str())
            .or_insert(p.grace_ends);
        *end = (*end).max(p.grace_ends);
    }
    let mut scheduled = Vec::new();
    for (user_name, grace_ends) in last_end {
        let Some(change) = change_of(user_name) else {
            continue;
        };
        let at = at_minute(grace_ends);
        let name = schedule_name(account_id, user_name, at);
        let expression = at
            .format(format_description!(
                "at([year]-[month]-[day]T[hour]:[minute]:[second])"
            ))
            .map_err(|e| Error::Render(e.to_string()))?;
        let target = Target::builder()
            .arn(&recheck.queue_arn)
            .role_arn(&recheck.role_arn)
            .input(change.as_event().to_string())
            .build()
            .map_err(|e| Error::Render(e.to_string()))?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| Error::Render(e.to_string()))?;
        deadline
            .run("scheduling a re-check", async {
                let sent = client
                    .create_schedule()
                    .name(&name)
                    .group_name(&recheck.group)
                    .schedule_expression(expression)
                    .schedule_expression_timezone("UTC")
                    .flexible_time_window(window)
                    .target(target)
                    .action_after_completion(ActionAfterCompletion::Delete)
                    .description(format!(
                        "keywatch: check {user_name} again when the grace period ends"
                    ))
                    .send()
                    .await;
                match sent {
                    Ok(_) => Ok(()),
                    // A retried check: the same user and time are scheduled already.
                    Err(e) if error_code(&e) == Some("ConflictException") => Ok(()),
                    Err(e) => Err(aws_error("scheduler:CreateSchedule", e)),
                }
            })
            .await?;
        scheduled.push(Scheduled {
            user_name: user_name.to_string(),
            at,
            schedule_name: name,
        });
    }
    Ok(scheduled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_schedule_is_named_and_timed_the_same_on_every_retry() {
        let at = at_minute(datetime!(2026-12-07 10:30:00.5 UTC));
        assert_eq!(at, datetime!(2026-12-07 10:31 UTC));
        assert_eq!(
            at_minute(datetime!(2026-12-07 10:30 UTC)),
            datetime!(2026-12-07 10:30 UTC)
        );
        let name = schedule_name("123456789012", "new.hire+ops@example.com", at);
        assert_eq!(
            name,
            schedule_name("123456789012", "new.hire+ops@example.com", at)
        );
        assert!(name.len() <= 64, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{name}"
        );
    }
}
