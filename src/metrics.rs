//! One CloudWatch Embedded Metric Format line per account check, success or failure: CloudWatch Logs turns it
//! into metrics, so no permission and no API call is needed. Built from serde types.

use serde::Serialize;
use time::OffsetDateTime;

use crate::report::Report;

pub const NAMESPACE: &str = "keywatch";
pub const DIMENSION: &str = "AccountId";

/// The heartbeat: 1 on the line of every check that completed, on the roll-up only, absent on a failed one.
/// template.yaml's `HeartbeatAlarm` fires when none arrives for two schedule intervals.
pub const CHECKS_COMPLETED: &str = "ChecksCompleted";

/// Every metric a line may carry, with its unit: what the template's dashboard and alarms may use.
pub const METRICS: [(&str, &str); 11] = [
    ("Findings", "Count"),
    ("NewFindings", "Count"),
    ("ResolvedFindings", "Count"),
    ("OldestOpenFindingDays", "Count"),
    ("Pending", "Count"),
    ("Exempted", "Count"),
    ("UsersExamined", "Count"),
    ("ApiCalls", "Count"),
    ("DurationMs", "Milliseconds"),
    ("CheckFailed", "Count"),
    (CHECKS_COMPLETED, "Count"),
];

/// Written per account (and rolled up): what an organization's dashboard and alarm need by account. Every other
/// metric is per deployment only, so an organization of many accounts does not pay for (or hit CloudWatch's
/// limits with) a series of each per account.
pub const PER_ACCOUNT: [&str; 2] = ["Findings", "CheckFailed"];

/// The metrics a failed check can vouch for; it writes no `Findings`, so a graph of findings shows a gap, not a
/// false zero.
const FAILED_METRICS: [&str; 3] = ["ApiCalls", "DurationMs", "CheckFailed"];

/// Known only from the ledger: without `LEDGER_TABLE` they are not written at all, never as zero.
const LEDGER_METRICS: [&str; 3] = ["NewFindings", "ResolvedFindings", "OldestOpenFindingDays"];

#[derive(Debug, Serialize)]
pub struct EmfLine<'a> {
    #[serde(rename = "_aws")]
    pub aws: Metadata,
    #[serde(rename = "AccountId")]
    pub account_id: &'a str,
    pub run_id: &'a str,
    #[serde(rename = "Findings", skip_serializing_if = "Option::is_none")]
    pub findings: Option<usize>,
    #[serde(rename = "NewFindings", skip_serializing_if = "Option::is_none")]
    pub new_findings: Option<usize>,
    #[serde(rename = "ResolvedFindings", skip_serializing_if = "Option::is_none")]
    pub resolved_findings: Option<usize>,
    /// Days since the oldest open finding was first alerted.
    #[serde(
        rename = "OldestOpenFindingDays",
        skip_serializing_if = "Option::is_none"
    )]
    pub oldest_open_finding_days: Option<i64>,
    #[serde(rename = "Pending", skip_serializing_if = "Option::is_none")]
    pub pending: Option<usize>,
    #[serde(rename = "Exempted", skip_serializing_if = "Option::is_none")]
    pub exempted: Option<usize>,
    #[serde(rename = "UsersExamined", skip_serializing_if = "Option::is_none")]
    pub users_examined: Option<usize>,
    #[serde(rename = "ApiCalls")]
    pub api_calls: u64,
    #[serde(rename = "DurationMs")]
    pub duration_ms: u64,
    /// 1 once per account whose check failed for good (a permanent failure, or its last attempt); absent on an
    /// attempt that will be retried, so the metric counts accounts, not attempts.
    #[serde(rename = "CheckFailed", skip_serializing_if = "Option::is_none")]
    pub check_failed: Option<u8>,
    /// 1 when the check completed, else absent (a failed check is not a heartbeat).
    #[serde(rename = "ChecksCompleted", skip_serializing_if = "Option::is_none")]
    pub checks_completed: Option<u8>,
}

#[derive(Debug, Serialize)]
pub struct Metadata {
    /// Milliseconds since the epoch.
    #[serde(rename = "Timestamp")]
    pub timestamp: i64,
    /// The per-account metrics, then the rest; a directive with no metric is left out.
    #[serde(rename = "CloudWatchMetrics")]
    pub cloud_watch_metrics: Vec<Directive>,
}

impl Metadata {
    /// One count metric under one dimension set, at `now`: the lines beside a check's own.
    fn count(now: OffsetDateTime, dimensions: Vec<&'static str>, name: &'static str) -> Metadata {
        Metadata {
            timestamp: timestamp(now),
            cloud_watch_metrics: vec![Directive {
                namespace: NAMESPACE,
                dimensions: vec![dimensions],
                metrics: vec![Metric {
                    name,
                    unit: "Count",
                }],
            }],
        }
    }
}

/// EMF's `Timestamp`: milliseconds since the epoch.
fn timestamp(now: OffsetDateTime) -> i64 {
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

#[derive(Debug, Serialize)]
pub struct Directive {
    #[serde(rename = "Namespace")]
    pub namespace: &'static str,
    /// Per account and a roll-up without dimensions (`[["AccountId"], []]`), or the roll-up only (`[[]]`).
    #[serde(rename = "Dimensions")]
    pub dimensions: Vec<Vec<&'static str>>,
    #[serde(rename = "Metrics")]
    pub metrics: Vec<Metric>,
}

#[derive(Debug, Serialize)]
pub struct Metric {
    #[serde(rename = "Name")]
    pub name: &'static str,
    #[serde(rename = "Unit")]
    pub unit: &'static str,
}

/// What a failed check can vouch for.
#[derive(Debug, Clone, Copy)]
pub struct Failed {
    pub api_calls: u64,
    /// Counted in `CheckFailed`: a permanent failure, or the last attempt.
    pub final_failure: bool,
}

/// The line for one check: the report's figures, or, for a failed check, only what is known.
pub fn line<'a>(
    account_id: &'a str,
    run_id: &'a str,
    outcome: Result<&Report, Failed>,
    duration_ms: u64,
    now: OffsetDateTime,
) -> EmfLine<'a> {
    let (report, api_calls) = match outcome {
        Ok(report) => (Some(report), report.api_calls.total),
        Err(Failed { api_calls, .. }) => (None, api_calls),
    };
    let counted = match &outcome {
        Ok(_) => Some(0),
        Err(Failed { final_failure, .. }) => final_failure.then_some(1),
    };
    let ledger = report.filter(|r| r.resolved.is_some());
    let (per_account, per_deployment): (Vec<Metric>, Vec<Metric>) = METRICS
        .iter()
        .filter(|(name, _)| report.is_some() || FAILED_METRICS.contains(name))
        .filter(|(name, _)| *name != "CheckFailed" || counted.is_some())
        .filter(|(name, _)| ledger.is_some() || !LEDGER_METRICS.contains(name))
        .map(|&(name, unit)| Metric { name, unit })
        .partition(|metric| PER_ACCOUNT.contains(&metric.name));
    let directives = [
        (vec![vec![DIMENSION], vec![]], per_account),
        (vec![vec![]], per_deployment),
    ]
    .into_iter()
    .filter(|(_, metrics)| !metrics.is_empty())
    .map(|(dimensions, metrics)| Directive {
        namespace: NAMESPACE,
        dimensions,
        metrics,
    })
    .collect();
    EmfLine {
        aws: Metadata {
            timestamp: timestamp(now),
            cloud_watch_metrics: directives,
        },
        account_id,
        run_id,
        findings: report.map(|r| r.findings.len()),
        new_findings: ledger.and_then(|r| r.new.as_ref()).map(Vec::len),
        resolved_findings: ledger.and_then(|r| r.resolved.as_ref()).map(Vec::len),
        oldest_open_finding_days: ledger.map(|r| {
            r.findings
                .iter()
                .filter_map(|f| f.history.first_alerted_at)
                .map(|alerted| crate::ledger::days_between(alerted, r.checked_at))
                .max()
                .unwrap_or(0)
        }),
        pending: report.map(|r| r.pending.len()),
        exempted: report.map(|r| r.exempted.len()),
        users_examined: report.map(|r| r.users_examined),
        api_calls,
        duration_ms,
        check_failed: counted,
        checks_completed: report.map(|_| 1),
    }
}

/// The `Rule` dimension: one more line per rule a completed check ran, with that rule's `Findings` rolled up by
/// rule (`[["Rule"]]`). A line holds one value per name, so each rule needs its own line; a failed check writes
/// none, so a graph shows a gap, not a false zero.
pub const RULE_DIMENSION: &str = "Rule";

#[derive(Debug, Serialize)]
pub struct RuleLine<'a> {
    #[serde(rename = "_aws")]
    pub aws: Metadata,
    #[serde(rename = "Rule")]
    pub rule: &'a str,
    pub run_id: &'a str,
    #[serde(rename = "Findings")]
    pub findings: usize,
}

/// The `Rule` lines of a completed check: every rule it ran, with none found too.
pub fn rule_lines<'a>(
    run_id: &'a str,
    report: &'a Report,
    now: OffsetDateTime,
) -> Vec<RuleLine<'a>> {
    report
        .rule_settings
        .rules
        .iter()
        .map(|&rule| RuleLine {
            aws: Metadata::count(now, vec![RULE_DIMENSION], "Findings"),
            rule,
            run_id,
            findings: report.findings.iter().filter(|f| f.rule == rule).count(),
        })
        .collect()
}

/// IAM events for an account this deployment does not check: acknowledged and counted, never checked and never
/// published one by one. Rolled up without dimensions, one line per invocation that had any.
pub const EVENTS_OUT_OF_SCOPE: &str = "EventsOutOfScope";

#[derive(Debug, Serialize)]
pub struct OutOfScopeLine<'a> {
    #[serde(rename = "_aws")]
    pub aws: Metadata,
    pub run_id: &'a str,
    #[serde(rename = "EventsOutOfScope")]
    pub events_out_of_scope: usize,
}

/// The line for `events` out-of-scope events of one invocation.
pub fn out_of_scope_line(run_id: &str, events: usize, now: OffsetDateTime) -> OutOfScopeLine<'_> {
    OutOfScopeLine {
        aws: Metadata::count(now, vec![], EVENTS_OUT_OF_SCOPE),
        run_id,
        events_out_of_scope: events,
    }
}

/// Writes the line to stdout on its own, as CloudWatch Logs expects an EMF event. Through `println!`, so test
/// harnesses capture it like any other output.
pub fn emit<T: Serialize>(line: &T) {
    if let Ok(json) = serde_json::to_string(line) {
        println!("{json}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keywatch_test_support::emf_directives as directives;
    use time::macros::datetime;

    /// IAM events outside the deployment: one roll-up line with their count, no account.
    #[test]
    fn events_out_of_scope_are_a_roll_up() {
        let line =
            serde_json::to_value(out_of_scope_line("r1", 3, datetime!(2026-11-30 12:00 UTC)))
                .unwrap();
        assert_eq!(
            directives(&line),
            [(serde_json::json!([[]]), vec!["EventsOutOfScope"])]
        );
        assert_eq!(line["EventsOutOfScope"], 3);
        assert!(line.get("AccountId").is_none(), "{line}");
    }

    /// A line per rule run, rolled up by `Rule` alone, with its own count, none found too.
    #[test]
    fn each_rule_run_has_a_line_with_its_findings() {
        let mut report =
            crate::notify::render::tests::report_with(vec![crate::notify::render::tests::finding(
                "ann", "AKIAANN",
            )]);
        report.rule_settings = crate::report::RuleSettings::of(crate::evaluate::RULES, 45, 90);
        let lines: Vec<serde_json::Value> =
            rule_lines("r1", &report, datetime!(2026-11-30 12:00 UTC))
                .iter()
                .map(|line| serde_json::to_value(line).unwrap())
                .collect();
        let counts: Vec<(&str, u64)> = lines
            .iter()
            .map(|l| (l["Rule"].as_str().unwrap(), l["Findings"].as_u64().unwrap()))
            .collect();
        assert_eq!(
            counts,
            [
                ("cis-1.11-never-used-key-on-console-user", 1),
                ("unused-key", 0),
                ("two-active-keys", 0),
                ("key-not-rotated", 0)
            ]
        );
        for line in &lines {
            assert_eq!(
                directives(line),
                [(serde_json::json!([["Rule"]]), vec!["Findings"])]
            );
            assert_eq!(line["run_id"], "r1");
            assert!(line.get("AccountId").is_none(), "rolled up by rule: {line}");
        }
    }

    #[test]
    fn lines_follow_the_embedded_metric_format() {
        let mut report =
            crate::notify::render::tests::report_with(vec![crate::notify::render::tests::finding(
                "ann", "AKIAANN",
            )]);
        let now = datetime!(2026-11-30 12:00 UTC);
        let without_ledger = serde_json::to_value(line("1", "r1", Ok(&report), 1, now)).unwrap();
        for name in LEDGER_METRICS {
            assert!(without_ledger.get(name).is_none(), "no ledger, no {name}");
        }
        report.findings[0].history.first_alerted_at =
            Some(report.checked_at - time::Duration::days(9));
        report.new = Some(vec![]);
        report.open = Some(vec![report.findings[0].finding_id.clone()]);
        report.resolved = Some(vec![]);
        let ok = serde_json::to_value(line("123456789012", "r1", Ok(&report), 1500, now)).unwrap();
        assert_eq!(ok["_aws"]["Timestamp"], 1_796_040_000_000i64);
        let declared = directives(&ok);
        assert_eq!(
            declared,
            [
                (
                    serde_json::json!([["AccountId"], []]),
                    vec!["Findings", "CheckFailed"]
                ),
                (
                    serde_json::json!([[]]),
                    vec![
                        "NewFindings",
                        "ResolvedFindings",
                        "OldestOpenFindingDays",
                        "Pending",
                        "Exempted",
                        "UsersExamined",
                        "ApiCalls",
                        "DurationMs",
                        "ChecksCompleted"
                    ]
                ),
            ]
        );
        let names: Vec<&str> = declared.iter().flat_map(|(_, n)| n.clone()).collect();
        let mut every: Vec<&str> = METRICS.map(|(name, _)| name).to_vec();
        every.sort();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, every);
        // Every declared metric has a value at the top level, as EMF requires.
        for name in &names {
            assert!(ok[name].is_number(), "{name}: {ok}");
        }
        assert_eq!(
            (ok["Findings"].as_u64(), ok["CheckFailed"].as_u64()),
            (Some(1), Some(0))
        );
        assert_eq!(ok["OldestOpenFindingDays"], 9);
        assert_eq!(
            (ok["NewFindings"].as_u64(), ok["ResolvedFindings"].as_u64()),
            (Some(0), Some(0))
        );
        assert_eq!(ok["AccountId"], "123456789012");
        assert_eq!(
            ok[CHECKS_COMPLETED], 1,
            "the heartbeat of a completed check"
        );

        let failure = |final_failure| Failed {
            api_calls: 7,
            final_failure,
        };
        let retried =
            serde_json::to_value(line("123456789012", "r1", Err(failure(false)), 900, now))
                .unwrap();
        assert!(
            retried.get("CheckFailed").is_none(),
            "an attempt that will be retried: {retried}"
        );
        assert_eq!(
            directives(&retried),
            [(serde_json::json!([[]]), vec!["ApiCalls", "DurationMs"])],
            "no per-account directive with nothing in it"
        );
        let failed =
            serde_json::to_value(line("123456789012", "r1", Err(failure(true)), 900, now)).unwrap();
        assert_eq!(
            directives(&failed),
            [
                (serde_json::json!([["AccountId"], []]), vec!["CheckFailed"]),
                (serde_json::json!([[]]), vec!["ApiCalls", "DurationMs"]),
            ]
        );
        assert_eq!(failed["CheckFailed"], 1);
        assert!(failed.get("Findings").is_none(), "no false zero: {failed}");
        for line in [&retried, &failed] {
            assert!(
                line.get(CHECKS_COMPLETED).is_none(),
                "a failed check is no heartbeat: {line}"
            );
        }
    }
}
