//! Whether a check publishes, and why (`ALERTS`): pure, from the report, the ledger's last alert and the settings.

use time::{Duration, OffsetDateTime};

use crate::config::Alerts;
use crate::report::Report;

/// Publish or not, what kind of alert it is, and the reason the report gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub publish: bool,
    pub kind: Kind,
    pub why: String,
}

/// What a published message is about: its `kind` message attribute, for subscription filter policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Findings, new or deactivated (or every finding, with `ALERTS=every-run`).
    Findings,
    /// Nothing new: what is still open, again.
    Reminder,
    /// Only findings that were resolved.
    Resolved,
    /// A failed-check notice.
    CheckFailed,
    /// No findings (`NOTIFY_WHEN_CLEAN`).
    AllClear,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Findings => "findings",
            Kind::Reminder => "reminder",
            Kind::Resolved => "resolved",
            Kind::CheckFailed => "check-failed",
            Kind::AllClear => "all-clear",
        }
    }
}

/// What the check knows of earlier alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// No `LEDGER_TABLE`: every run stands alone.
    None,
    /// The ledger could not be read: nothing is known to be already announced, so everything is published.
    Unreadable,
    /// The ledger was read; the last alert SNS accepted that named a finding still open.
    Ledger { last_alert: Option<OffsetDateTime> },
}

pub fn decide(
    alerts: Alerts,
    report: &Report,
    memory: Memory,
    notify_when_clean: bool,
) -> Decision {
    let count = |list: Option<&Vec<_>>| list.map_or(0, Vec::len);
    let new = count(report.new.as_ref());
    let resolved = report.resolved.as_ref().map_or(0, Vec::len);
    let deactivated = report.remediated.len();
    let failed = report.remediation_failed.len();
    let open = count(report.open.as_ref());
    let findings = report.findings.len();
    // A deactivation date announced (or moved later) is news: the notice must reach the owner.
    let notices = report
        .findings
        .iter()
        .filter(|f| f.history.notice.is_some())
        .count();
    // What the alert is about, if published.
    let kind = |reminder: bool| {
        if findings + deactivated + failed == 0 {
            if resolved > 0 {
                Kind::Resolved
            } else {
                Kind::AllClear
            }
        } else if reminder {
            Kind::Reminder
        } else {
            Kind::Findings
        }
    };
    let publish = |why: String, reminder: bool| Decision {
        publish: true,
        kind: kind(reminder),
        why,
    };
    let quiet = |why: String| Decision {
        publish: false,
        kind: kind(false),
        why,
    };
    if report.dry_run {
        return quiet("dry run: nothing is published or written".to_string());
    }
    if new + resolved + deactivated + failed + notices > 0 {
        return publish(
            format!(
                "changes since the last alert: {new} new, {resolved} resolved, {deactivated} deactivated, \
                 {failed} not deactivated, {notices} deactivation date(s) announced"
            ),
            false,
        );
    }
    match (alerts, memory) {
        (_, Memory::Unreadable) if findings > 0 => publish(
            format!("the ledger could not be read: all {findings} finding(s) published"),
            false,
        ),
        (Alerts::EveryRun, _) if findings > 0 => {
            publish(format!("ALERTS=every-run: {findings} finding(s)"), false)
        }
        (_, _) if findings == 0 && notify_when_clean => {
            publish("no findings, and NOTIFY_WHEN_CLEAN=true".to_string(), false)
        }
        (_, _) if findings == 0 => {
            quiet("no findings and nothing resolved: nothing to publish".to_string())
        }
        (Alerts::Changes { remind_every_days }, Memory::Ledger { last_alert }) => {
            let every = Duration::days(remind_every_days.into());
            match last_alert {
                Some(last) if report.checked_at - last < every => quiet(format!(
                    "ALERTS=changes: nothing changed since the last alert at {}; {open} finding(s) still open, \
                     next reminder on or after {}",
                    rfc3339(last),
                    rfc3339(last + every)
                )),
                _ => publish(
                    format!(
                        "ALERTS=changes: a reminder, {remind_every_days} day(s) after the last alert: \
                         {open} finding(s) still open"
                    ),
                    true,
                ),
            }
        }
        // Unreachable in practice: ALERTS=changes needs the ledger at start.
        (_, _) => publish(format!("{findings} finding(s)"), false),
    }
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| time.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Reason, Resolved as ResolvedFinding};
    use crate::notify::render::tests::{finding, report_with};

    const CHANGES: Alerts = Alerts::Changes {
        remind_every_days: 7,
    };

    #[test]
    fn what_publishes_and_why() {
        let open = |report: &mut Report| {
            report.new = Some(vec![]);
            report.open = Some(vec!["123456789012/ann/AKIAANN".into()]);
            report.resolved = Some(vec![]);
        };
        let mut unchanged = report_with(vec![finding("ann", "AKIAANN")]);
        open(&mut unchanged);
        let now = unchanged.checked_at;
        let ledger = |days: i64| Memory::Ledger {
            last_alert: Some(now - Duration::days(days)),
        };
        let mut new = unchanged.clone();
        new.new = Some(vec!["123456789012/bob/AKIABOB".into()]);
        let mut resolved = report_with(vec![]);
        open(&mut resolved);
        resolved.open = Some(vec![]);
        resolved.resolved = Some(vec![ResolvedFinding {
            owner: None,
            finding_id: "123456789012/cy/AKIACY".into(),
            user_name: "cy".into(),
            access_key_id: "AKIACY".into(),
            rule: crate::evaluate::never_used_key::ID.into(),
            ledger_key: "AKIACY".into(),
            reason: Reason::KeyDeleted,
            exempt_tag: None,
            first_alerted_at: Some(now),
            resolved_at: now,
        }]);
        let clean = report_with(vec![]);
        let mut dry = new.clone();
        dry.dry_run = true;
        use Kind::*;
        #[rustfmt::skip]
        type Case<'a> = (&'a str, Alerts, &'a Report, Memory, bool, Option<Kind>);
        let cases: &[Case] = &[
            (
                "unchanged, alerted yesterday",
                CHANGES,
                &unchanged,
                ledger(1),
                false,
                None,
            ),
            (
                "unchanged, reminder due",
                CHANGES,
                &unchanged,
                ledger(7),
                false,
                Some(Reminder),
            ),
            (
                "a new finding",
                CHANGES,
                &new,
                ledger(1),
                false,
                Some(Findings),
            ),
            (
                "a resolved finding",
                CHANGES,
                &resolved,
                ledger(1),
                false,
                Some(Resolved),
            ),
            ("clean", CHANGES, &clean, ledger(1), false, None),
            (
                "clean, heartbeat",
                CHANGES,
                &clean,
                ledger(1),
                true,
                Some(AllClear),
            ),
            (
                "ledger unreadable",
                CHANGES,
                &unchanged,
                Memory::Unreadable,
                false,
                Some(Findings),
            ),
            (
                "every run",
                Alerts::EveryRun,
                &unchanged,
                ledger(1),
                false,
                Some(Findings),
            ),
            (
                "every run, clean",
                Alerts::EveryRun,
                &clean,
                Memory::None,
                false,
                None,
            ),
            ("dry run", Alerts::EveryRun, &dry, Memory::None, true, None),
        ];
        for (name, alerts, report, memory, clean, expected) in cases {
            let decision = decide(*alerts, report, *memory, *clean);
            assert_eq!(
                decision.publish.then_some(decision.kind),
                *expected,
                "{name}: {}",
                decision.why
            );
            assert!(!decision.why.is_empty());
        }
        let quiet = decide(CHANGES, &unchanged, ledger(1), false).why;
        assert!(quiet.contains("next reminder on or after"), "{quiet}");
    }
}
