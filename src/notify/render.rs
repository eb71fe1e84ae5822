//! Renders the report into SNS alert parts: a subject, plain text for email, and a JSON document for machines,
//! split so that no finding is dropped and every publish stays under SNS's 256 KiB limit in bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::Chat;
use crate::error::{Error, Result};
use crate::evaluate::{Finding, Fix, Rule, Shows};
use crate::ledger::{days_between, Change, Notice, Resolved};
use crate::notify::when::Kind;
use crate::remediate::{Failed, Remediated, Skipped};
use crate::report::{Report, RuleSettings as ReportRules};

/// SNS's limit for one publish: message, subject and attributes together, in bytes.
pub const SNS_MAX_BYTES: usize = 262_144;
/// The most SNS allows in a subject is 100 characters; keep one back.
pub const MAX_SUBJECT_CHARS: usize = 99;
/// Room kept for the subject and for rendering differences the size estimate does not see (part numbers).
const HEADROOM_BYTES: usize = 4_096;
/// The most bytes one part's message may take.
pub const PART_BUDGET_BYTES: usize = SNS_MAX_BYTES - HEADROOM_BYTES;

/// The document's `control` when more rules than today's are checked: each finding names its own.
pub const RULES_CONTROL: &str =
    "CIS AWS Foundations access-key rules (each finding names its rule and controls)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertPart {
    pub part: usize,
    pub parts: usize,
    pub subject: String,
    /// The `MessageStructure=json` envelope: `{"default": <JSON document>, "email": <text>}`, and with
    /// `CHAT_NOTIFICATIONS=custom`, `"https": <custom notification>`.
    pub message: String,
    /// The document's `alert_id`, sent as the message attribute of that name too.
    pub alert_id: String,
}

/// The JSON document SQS, Lambda and HTTPS subscribers receive.
#[derive(Debug, Serialize)]
pub struct AlertDocument<'a> {
    pub schema: &'static str,
    /// This message's identity, also its `alert_id` message attribute: unique among a run's messages (account,
    /// owner, kind, part and what the part says), the same when a retry sends the same content again.
    pub alert_id: &'a str,
    pub run_id: &'a str,
    pub part: usize,
    pub parts: usize,
    pub account_id: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub report_generated_at: Option<OffsetDateTime>,
    /// `CIS AWS Foundations 1.11` when today's rule alone is checked; else [`RULES_CONTROL`].
    pub control: &'static str,
    /// The rules checked (`RULES`).
    pub rules: &'a [&'static str],
    /// Every finding of the run (all parts) by rule, for each rule checked.
    pub findings_by_rule: BTreeMap<&'static str, usize>,
    /// The owner this alert is for, when routing by owner (`OWNER_TAG_KEY`); each finding names its own too.
    pub owner: Option<&'a str>,
    pub total_findings: usize,
    pub pending_count: usize,
    pub exempted_count: usize,
    /// This part's findings, each with its history (`change`, `first_seen_at`, `first_alerted_at`,
    /// `deactivate_on`) when there is a ledger.
    pub findings: &'a [Finding],
    /// The finding IDs of this part that are new since the last delivered alert; `null` without a ledger.
    pub new: Option<Vec<&'a str>>,
    /// The finding IDs of this part that earlier alerts named already; `null` without a ledger.
    pub open: Option<Vec<&'a str>>,
    /// This part's share of the findings resolved since the last delivered alert; `null` without a ledger.
    pub resolved: Option<&'a [Resolved]>,
    /// `DEACTIVATE_AFTER_DAYS` when keywatch deactivates due findings, else `null`.
    pub deactivate_after_days: Option<u32>,
    /// Keys keywatch deactivated: this part's findings, and this part's share of the deactivations an earlier
    /// alert could not announce.
    pub remediated: Vec<&'a Remediated>,
    pub remediation_skipped: Vec<&'a Skipped>,
    pub remediation_failed: Vec<&'a Failed>,
}

/// What remediation did, or will do, to one finding's key.
pub(crate) enum KeyAction<'a> {
    Deactivated(&'a Remediated),
    Failed(&'a Failed),
    Skipped(&'a Skipped),
    Due(OffsetDateTime, Option<Notice>),
    None,
}

pub(crate) fn action_for<'a>(report: &'a Report, finding: &Finding) -> KeyAction<'a> {
    let id = &finding.finding_id;
    if let Some(done) = report.remediated.iter().find(|r| &r.finding_id == id) {
        KeyAction::Deactivated(done)
    } else if let Some(failed) = report
        .remediation_failed
        .iter()
        .find(|r| &r.finding_id == id)
    {
        KeyAction::Failed(failed)
    } else if let Some(skipped) = report
        .remediation_skipped
        .iter()
        .find(|r| &r.finding_id == id)
    {
        KeyAction::Skipped(skipped)
    } else if let Some(due) = report
        .deactivate_after_days
        .and(finding.history.deactivate_on)
    {
        KeyAction::Due(due, finding.history.notice)
    } else {
        KeyAction::None
    }
}

/// Deactivations that are not this run's findings: announced late, after an earlier publish failed.
fn earlier_deactivations(report: &Report) -> Vec<&Remediated> {
    report
        .remediated
        .iter()
        .filter(|r| !report.findings.iter().any(|f| f.finding_id == r.finding_id))
        .collect()
}

/// A `MessageStructure=json` message: one variant per protocol, `default` for those not named.
#[derive(Serialize)]
pub(crate) struct Envelope<'a> {
    pub default: &'a str,
    pub email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https: Option<&'a str>,
}

/// v2 added `new`, `open`, `resolved` and each finding's history, from the ledger; v3 `alert_id`, each
/// finding's `notice`, and resolutions and late deactivations split across parts like findings.
pub const SCHEMA: &str = "keywatch.alert/v4";

/// What one part carries: a run of findings, of late deactivations and of resolutions.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Chunk<'a> {
    pub findings: &'a [Finding],
    pub late: &'a [&'a Remediated],
    pub resolved: &'a [Resolved],
}

/// What makes a message itself, for its `alert_id`: everything it says but the check's clock.
#[derive(Serialize)]
struct Identity<'a> {
    run_id: &'a str,
    account_id: &'a str,
    owner: Option<&'a str>,
    kind: &'a str,
    part: usize,
    parts: usize,
    findings: Vec<(&'a str, &'a crate::model::History)>,
    late: Vec<&'a str>,
    resolved: Vec<&'a str>,
    remediated: Vec<&'a str>,
    skipped: Vec<&'a str>,
    failed: Vec<&'a str>,
}

/// Splits the findings, late deactivations and resolutions into as few parts as fit, and renders each. With
/// nothing to say, one part (an all-clear).
pub fn render_parts(report: &Report, kind: Kind, chat: Chat) -> Result<Vec<AlertPart>> {
    let late = earlier_deactivations(report);
    let chunks = chunk(report, &late, chat)?;
    let parts = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(index, chunk)| {
            let part = render_part(report, chunk, index + 1, parts, kind, chat)?;
            if part.message.len() > PART_BUDGET_BYTES {
                return Err(Error::Render(format!(
                    "part {} is {} bytes, over the {PART_BUDGET_BYTES}-byte budget; please report this as a bug",
                    part.part,
                    part.message.len()
                )));
            }
            Ok(part)
        })
        .collect()
}

/// Every finding of the report by rule, each rule checked counted, with none too.
pub(crate) fn findings_by_rule(report: &Report) -> BTreeMap<&'static str, usize> {
    let mut counts: BTreeMap<&'static str, usize> = report
        .rule_settings
        .rules
        .iter()
        .map(|&id| (id, 0))
        .collect();
    for finding in &report.findings {
        *counts.entry(finding.rule).or_default() += 1;
    }
    counts
}

/// The rules with findings in `findings`, in the order checked, each with its findings.
pub(crate) fn by_rule<'a>(
    report: &Report,
    findings: &'a [Finding],
) -> Vec<(&'static dyn Rule, Vec<&'a Finding>)> {
    report
        .rule_settings
        .rules()
        .map(|rule| {
            (
                rule,
                findings
                    .iter()
                    .filter(|f| f.rule == rule.id())
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, listed)| !listed.is_empty())
        .collect()
}

fn ids_with(findings: &[Finding], change: Change) -> Vec<&str> {
    findings
        .iter()
        .filter(|f| f.history.change == Some(change))
        .map(|f| f.finding_id.as_str())
        .collect()
}

fn render_part(
    report: &Report,
    chunk: Chunk<'_>,
    part: usize,
    parts: usize,
    kind: Kind,
    chat: Chat,
) -> Result<AlertPart> {
    let findings = chunk.findings;
    let ledger = report.resolved.is_some();
    let actions = |pick: fn(KeyAction<'_>) -> Option<&str>| -> Vec<&str> {
        findings
            .iter()
            .filter_map(|f| pick(action_for(report, f)))
            .collect()
    };
    let identity = Identity {
        run_id: &report.run_id,
        account_id: &report.account_id,
        owner: report.owner.as_deref(),
        kind: kind.as_str(),
        part,
        parts,
        findings: findings
            .iter()
            .map(|f| (f.finding_id.as_str(), &f.history))
            .collect(),
        late: chunk.late.iter().map(|r| r.finding_id.as_str()).collect(),
        resolved: chunk
            .resolved
            .iter()
            .map(|r| r.finding_id.as_str())
            .collect(),
        remediated: actions(|a| match a {
            KeyAction::Deactivated(done) => Some(done.finding_id.as_str()),
            _ => None,
        }),
        skipped: actions(|a| match a {
            KeyAction::Skipped(skipped) => Some(skipped.reason.as_str()),
            _ => None,
        }),
        failed: actions(|a| match a {
            KeyAction::Failed(failed) => Some(failed.error.as_str()),
            _ => None,
        }),
    };
    let alert_id = alert_id(&identity)?;
    let document = AlertDocument {
        schema: SCHEMA,
        alert_id: &alert_id,
        run_id: &report.run_id,
        part,
        parts,
        account_id: &report.account_id,
        checked_at: report.checked_at,
        report_generated_at: report.report_generated_at,
        control: if report.rule_settings.only_default() {
            "CIS AWS Foundations 1.11"
        } else {
            RULES_CONTROL
        },
        rules: &report.rule_settings.rules,
        findings_by_rule: findings_by_rule(report),
        owner: report.owner.as_deref(),
        total_findings: report.findings.len(),
        pending_count: report.pending.len(),
        exempted_count: report.exempted.len(),
        findings,
        new: ledger.then(|| ids_with(findings, Change::New)),
        open: ledger.then(|| ids_with(findings, Change::Open)),
        resolved: report.resolved.as_ref().map(|_| chunk.resolved),
        deactivate_after_days: report.deactivate_after_days,
        remediated: findings
            .iter()
            .filter_map(|f| match action_for(report, f) {
                KeyAction::Deactivated(done) => Some(done),
                _ => None,
            })
            .chain(chunk.late.iter().copied())
            .collect(),
        remediation_skipped: findings
            .iter()
            .filter_map(|f| match action_for(report, f) {
                KeyAction::Skipped(skipped) => Some(skipped),
                _ => None,
            })
            .collect(),
        remediation_failed: findings
            .iter()
            .filter_map(|f| match action_for(report, f) {
                KeyAction::Failed(failed) => Some(failed),
                _ => None,
            })
            .collect(),
    };
    let json = serde_json::to_string(&document).map_err(|e| Error::Render(e.to_string()))?;
    let text = email_text(report, chunk, part, parts);
    let subject = subject(report, part, parts);
    let https = match chat {
        Chat::Off => None,
        Chat::Custom => Some(super::chat::alert(
            report, chunk, part, parts, kind, &alert_id, &subject,
        )?),
    };
    let message = serde_json::to_string(&Envelope {
        default: &json,
        email: &text,
        https: https.as_deref(),
    })
    .map_err(|e| Error::Render(e.to_string()))?;
    Ok(AlertPart {
        part,
        parts,
        subject,
        message,
        alert_id,
    })
}

/// The first 32 hex digits of the SHA-256 of the message's identity.
pub(crate) fn alert_id<T: Serialize>(identity: &T) -> Result<String> {
    use sha2::Digest;
    let bytes = serde_json::to_vec(identity).map_err(|e| Error::Render(e.to_string()))?;
    let digest = sha2::Sha256::digest(&bytes);
    Ok(digest.iter().take(16).map(|b| format!("{b:02x}")).collect())
}

/// Greedy packing by an exact-enough size estimate: JSON string escaping is per character, so an entry adds
/// the escaped length of its JSON and its email lines to the envelope. `render_parts` checks the real size.
/// Findings first, then late deactivations, then resolutions, each in order: none is ever left out.
fn chunk<'a>(report: &'a Report, late: &'a [&'a Remediated], chat: Chat) -> Result<Vec<Chunk<'a>>> {
    let empty = Chunk::default();
    let overhead = render_part(
        report,
        empty,
        usize::MAX,
        usize::MAX,
        Kind::CheckFailed,
        Chat::Off,
    )?
    .message
    .len();
    // A chat notification is bounded whatever the part holds: keep its room whole.
    let chat_room = match chat {
        Chat::Off => 0,
        Chat::Custom => super::chat::MAX_BYTES,
    };
    let budget = PART_BUDGET_BYTES.saturating_sub(overhead + chat_room);
    let resolved = report.resolved.as_deref().unwrap_or_default();
    let mut costs = Vec::with_capacity(report.findings.len() + late.len() + resolved.len());
    for finding in &report.findings {
        costs.push(finding_cost(finding, report)?);
    }
    for done in late {
        let mut lines = String::new();
        write_late(&mut lines, done);
        costs.push(json_len(done)? + escaped_len(&lines)? + 2);
    }
    for r in resolved {
        let mut lines = String::new();
        write_resolved(&mut lines, r);
        costs.push(json_len(r)? + escaped_len(&lines)? + 2);
    }
    if let Some(index) = costs.iter().position(|cost| *cost > budget) {
        return Err(Error::Render(format!(
            "entry {index} of the alert alone is larger than one SNS message; please report this as a bug"
        )));
    }
    // Cut points over the entries, in order.
    let mut ranges = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (index, cost) in costs.iter().enumerate() {
        if used + cost > budget {
            ranges.push(start..index);
            (start, used) = (index, 0);
        }
        used += cost;
    }
    ranges.push(start..costs.len());
    let (f, l) = (report.findings.len(), late.len());
    let slice = |range: &std::ops::Range<usize>, from: usize, len: usize| {
        range.start.clamp(from, from + len) - from..range.end.clamp(from, from + len) - from
    };
    Ok(ranges
        .iter()
        .map(|range| Chunk {
            findings: &report.findings[slice(range, 0, f)],
            late: &late[slice(range, f, l)],
            resolved: &resolved[slice(range, f + l, resolved.len())],
        })
        .collect())
}

fn finding_cost(finding: &Finding, report: &Report) -> Result<usize> {
    let action = match action_for(report, finding) {
        KeyAction::Deactivated(done) => json_len(done)?,
        KeyAction::Failed(failed) => json_len(failed)?,
        KeyAction::Skipped(skipped) => json_len(skipped)?,
        KeyAction::Due(..) | KeyAction::None => 0,
    };
    let mut block = String::new();
    write_finding(&mut block, finding, report);
    // Escaped lengths inside the envelope, plus a comma between array items (finding and action), plus its ID
    // in `new` or `open`, and in the identity's list.
    Ok(json_len(finding)? + action + escaped_len(&block)? + json_len(&finding.finding_id)? + 6)
}

/// The escaped length of a value's JSON inside the envelope.
fn json_len<T: Serialize>(value: &T) -> Result<usize> {
    escaped_len(&serde_json::to_string(value).map_err(|e| Error::Render(e.to_string()))?)
}

pub(crate) fn escaped_len(text: &str) -> Result<usize> {
    Ok(serde_json::to_string(text)
        .map_err(|e| Error::Render(e.to_string()))?
        .len()
        - 2)
}

/// Printable ASCII, at most 99 characters, no newline: what SNS and every mail client accept. A long subject is
/// cut before its `(part N of M)`, never through it.
pub fn subject(report: &Report, part: usize, parts: usize) -> String {
    let account: String = report
        .account_id
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect();
    let n = report.findings.len();
    let settings = &report.rule_settings;
    let groups = by_rule(report, &report.findings);
    let mut subject = match (n, groups.as_slice()) {
        (0, _) if settings.only_default() => {
            format!("keywatch: no never-used access keys on console users in {account}")
        }
        (0, _) => format!("keywatch: no access-key findings in {account}"),
        // One rule: counted in its own words.
        (_, [(rule, _)]) => {
            let words = rule.words();
            let what = if n == 1 { words.one } else { words.many };
            format!("keywatch: {n} {} in {account}", settings.fill(what))
        }
        // Several: each rule counted, first, so a cut takes the changes before any count.
        (_, groups) => {
            let counts: Vec<String> = groups
                .iter()
                .map(|(rule, listed)| format!("{} {}", listed.len(), rule.words().short))
                .collect();
            format!("keywatch: {account}: {}", counts.join(", "))
        }
    };
    // A new finding's date goes without saying; an open one's new or later date is news.
    let notices = report
        .findings
        .iter()
        .filter(|f| f.history.change == Some(Change::Open) && f.history.notice.is_some())
        .count();
    let changes: Vec<String> = [
        (report.new.as_ref().map_or(0, Vec::len), "new"),
        (report.resolved.as_ref().map_or(0, Vec::len), "resolved"),
        (notices, "notice"),
    ]
    .iter()
    .filter(|(count, _)| *count > 0)
    .map(|(count, what)| match (*count, *what) {
        (1, what) | (_, what @ ("new" | "resolved")) => format!("{count} {what}"),
        (_, what) => format!("{count} {what}s"),
    })
    .collect();
    if !changes.is_empty() {
        subject.push_str(&format!(" ({})", changes.join(", ")));
    }
    if !report.remediated.is_empty() {
        subject.push_str(&format!(", {} deactivated", report.remediated.len()));
    }
    let suffix = if parts > 1 {
        format!(" (part {part} of {parts})")
    } else {
        String::new()
    };
    subject.truncate(MAX_SUBJECT_CHARS.saturating_sub(suffix.len()));
    subject.push_str(&suffix);
    subject.truncate(MAX_SUBJECT_CHARS);
    subject
}

pub(crate) fn date(value: Option<OffsetDateTime>) -> String {
    value
        .and_then(|v| v.format(&Rfc3339).ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Quotes a value for a POSIX shell, so user names with `'`, `+` or `@` copy-paste safely.
pub(crate) fn shell_quote(value: &str) -> String {
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.+=,@/".contains(&b))
    {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// The AWS CLI commands an alert gives for a key, ready to paste.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyCommand {
    Delete,
    Deactivate,
    /// Undoes keywatch's deactivation.
    Reactivate,
}

impl KeyCommand {
    pub(crate) fn line(self, user_name: &str, access_key_id: &str) -> String {
        let (verb, status) = match self {
            KeyCommand::Delete => ("delete-access-key", ""),
            KeyCommand::Deactivate => ("update-access-key", " --status Inactive"),
            KeyCommand::Reactivate => ("update-access-key", " --status Active"),
        };
        format!(
            "aws iam {verb} --user-name {} --access-key-id {access_key_id}{status}",
            shell_quote(user_name)
        )
    }
}

fn undo_line(out: &mut String, done: &Remediated) {
    let _ = writeln!(
        out,
        "    deactivated by keywatch at {}; to undo: {}",
        date(Some(done.at)),
        KeyCommand::Reactivate.line(&done.user_name, &done.access_key_id),
    );
}

fn write_late(out: &mut String, done: &Remediated) {
    let _ = writeln!(
        out,
        "- {}  key {}  (an earlier alert could not say so)",
        done.user_name, done.access_key_id
    );
    undo_line(out, done);
}

fn write_resolved(out: &mut String, r: &Resolved) {
    let tag = r
        .exempt_tag
        .as_deref()
        .map(|tag| format!(" (tag {tag})"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "- {}  key {}  {}{tag} (first alerted {})",
        r.user_name,
        r.access_key_id,
        r.reason.describe(),
        date(r.first_alerted_at)
    );
}

/// What a finding's line says of its key, as its rule shows it.
pub(crate) fn evidence(finding: &Finding) -> String {
    let days = |d: Option<i64>| d.map_or_else(|| "unknown".to_string(), |d| d.to_string());
    match ReportRules::rule_of(finding).map(|rule| rule.words().evidence) {
        Some(Shows::AgeAtSetup) | None => {
            let age = finding
                .key_age_days
                .map_or_else(|| "unknown age".to_string(), |d| format!("{d} days old"));
            let setup = if finding.created_at_user_setup {
                "yes"
            } else {
                "no"
            };
            format!("{age}  created at user setup: {setup}")
        }
        Some(Shows::LastUse) => match finding.key_last_used {
            Some(used) => format!(
                "last used {} ({} days ago)",
                date(Some(used)),
                days(finding.days_counted)
            ),
            None => format!(
                "never used, created {} ({} days ago)",
                date(finding.key_created),
                days(finding.days_counted)
            ),
        },
        Some(Shows::Creation) => format!(
            "created {} ({} days ago)",
            date(finding.key_created),
            days(finding.days_counted)
        ),
        Some(Shows::Keys) => format!(
            "also Active: {}",
            if finding.other_access_key_ids.is_empty() {
                "another key".to_string()
            } else {
                finding.other_access_key_ids.join(", ")
            }
        ),
    }
}

/// Who made the IAM change that led to the check, when and from where: a key a user made for themselves, or
/// one someone else made for them (a persistence technique detection engineers watch for).
pub(crate) fn who_did_it(change: &crate::cloudtrail::IamChange) -> String {
    format!(
        "{} by {} ({}) at {} from {}",
        change.event_name,
        change.actor_arn,
        if change.by_self {
            "the user themselves"
        } else {
            "someone else, for this user"
        },
        change.event_time,
        change.source_ip
    )
}

/// The command an alert gives under a finding, as its rule says.
pub(crate) fn fix_line(finding: &Finding) -> String {
    let command = match ReportRules::rule_of(finding).map(|rule| rule.words().fix) {
        Some(Fix::Delete) | None => KeyCommand::Delete,
        Some(Fix::Deactivate) => KeyCommand::Deactivate,
        Some(Fix::CompareUse) => {
            return std::iter::once(&finding.access_key_id)
                .chain(&finding.other_access_key_ids)
                .map(|key| format!("aws iam get-access-key-last-used --access-key-id {key}"))
                .collect::<Vec<_>>()
                .join(" && ")
        }
    };
    command.line(&finding.user_name, &finding.access_key_id)
}

fn write_finding(out: &mut String, finding: &Finding, report: &Report) {
    let expired = finding
        .exemption_expired_on
        .map(|day| format!("  exemption expired after {day}"))
        .unwrap_or_default();
    let open_for = match (finding.history.change, finding.history.first_alerted_at) {
        (Some(Change::Open), Some(alerted)) => format!(
            "  open for {} days (first alerted {})",
            days_between(alerted, report.checked_at),
            date(Some(alerted))
        ),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "- {user}  key {key}  {evidence}{expired}{open_for}\n    {fix}",
        user = finding.user_name,
        key = finding.access_key_id,
        evidence = evidence(finding),
        fix = fix_line(finding),
    );
    if let Some(change) = &finding.caused_by {
        let _ = writeln!(out, "    {}", who_did_it(change));
    }
    let _ = match action_for(report, finding) {
        KeyAction::Deactivated(done) => {
            undo_line(out, done);
            Ok(())
        }
        KeyAction::Failed(failed) => {
            writeln!(
                out,
                "    keywatch could NOT deactivate it: {}",
                failed.error
            )
        }
        KeyAction::Skipped(skipped) => {
            writeln!(out, "    not deactivated: {}", skipped.reason)
        }
        KeyAction::Due(due, Some(Notice::Later)) => writeln!(
            out,
            "    the deactivation date moved later (DEACTIVATE_AFTER_DAYS was raised): keywatch deactivates it on or \
             after {} unless it is used or deleted first",
            date(Some(due))
        ),
        KeyAction::Due(due, _) => writeln!(
            out,
            "    keywatch deactivates it on or after {} unless it is used or deleted first",
            date(Some(due))
        ),
        KeyAction::None => Ok(()),
    };
}

/// The email body: readable with no mailer in between. In this order: what keywatch deactivated, new findings,
/// those still open, and what was resolved since the last alert.
fn email_text(report: &Report, chunk: Chunk<'_>, part: usize, parts: usize) -> String {
    let findings = chunk.findings;
    let mut out = String::new();
    let account = &report.account_id;
    let _ = writeln!(out, "{}\n", subject(report, part, parts));
    if let Some(owner) = &report.owner {
        let _ = writeln!(out, "Owner:     {owner}");
    }
    let _ = writeln!(out, "Account:   {account}");
    let _ = writeln!(out, "Checked:   {}", date(Some(report.checked_at)));
    if report.report_generated_at.is_some() {
        let _ = writeln!(
            out,
            "Inventory: credential report of {}, every key verified live",
            date(report.report_generated_at)
        );
    }
    let _ = writeln!(
        out,
        "Run:       {} (part {part} of {parts})\n",
        report.run_id
    );

    let deactivated = |f: &&Finding| matches!(action_for(report, f), KeyAction::Deactivated(_));
    let earlier = chunk.late;
    if findings.iter().any(|f| deactivated(&f)) || !earlier.is_empty() {
        let _ = writeln!(
            out,
            "Deactivated by keywatch (REMEDIATION=deactivate): Inactive now, not deleted; the command under each\n\
             one undoes it.\n"
        );
        for finding in findings.iter().filter(deactivated) {
            write_finding(&mut out, finding, report);
        }
        for done in earlier {
            write_late(&mut out, done);
        }
        out.push('\n');
    }

    let notices = findings
        .iter()
        .filter(|f| f.history.notice.is_some() && !deactivated(f))
        .count();
    if notices > 0 {
        let _ = writeln!(
            out,
            "Deactivation notice (REMEDIATION=deactivate): keywatch will deactivate {notices} key(s) in this part on\n\
             the date under each, unless it is used or deleted first. Until then nothing is changed.\n"
        );
    }
    let settings = &report.rule_settings;
    let groups = by_rule(report, findings);
    if report.findings.is_empty() {
        if settings.only_default() {
            let _ = writeln!(
                out,
                "All clear: no Active, never-used access keys on users with a console password."
            );
        } else {
            let _ = writeln!(
                out,
                "All clear: no findings of the rules checked ({}).",
                settings.rules.join(", ")
            );
        }
    } else {
        let totals = findings_by_rule(report);
        for (index, (rule, listed)) in groups.iter().enumerate() {
            if index > 0 {
                out.push('\n');
            }
            let words = rule.words();
            if !settings.only_default() {
                let _ = writeln!(
                    out,
                    "== {} ({}): {} ==\n",
                    settings.fill(words.many),
                    rule.id(),
                    listed.len()
                );
            }
            let _ = writeln!(
                out,
                "{} Findings in this part: {} of {}.\n",
                settings.fill(words.why),
                listed.len(),
                totals.get(rule.id()).copied().unwrap_or(listed.len())
            );
            let sections: [(Option<Change>, &str); 3] = [
                (Some(Change::New), "New since the last alert:"),
                (Some(Change::Open), "Still open:"),
                (None, "Findings:"),
            ];
            for (change, heading) in sections {
                let shown: Vec<&Finding> = listed
                    .iter()
                    .copied()
                    .filter(|f| f.history.change == change && !deactivated(f))
                    .collect();
                if shown.is_empty() {
                    continue;
                }
                let _ = writeln!(out, "{heading}\n");
                for finding in shown {
                    write_finding(&mut out, finding, report);
                }
                out.push('\n');
            }
            let _ = writeln!(out, "What to do:\n{}", settings.fill(words.what_to_do));
        }
    }
    if !chunk.resolved.is_empty() {
        let _ = writeln!(out, "\nResolved since the last alert:\n");
        for r in chunk.resolved {
            write_resolved(&mut out, r);
        }
    }
    if !report.pending.is_empty() || !report.exempted.is_empty() {
        let _ = writeln!(
            out,
            "\nNot alerted: {} key(s) still in the {}-hour grace period, {} key(s) exempt. The JSON report lists them.",
            report.pending.len(),
            report.grace_period_hours,
            report.exempted.len()
        );
    }
    let referenced: Vec<&dyn Rule> = match groups.is_empty() {
        true => settings.rules().collect(),
        false => groups.iter().map(|(rule, _)| *rule).collect(),
    };
    out.push('\n');
    for rule in referenced {
        let _ = writeln!(out, "Reference: {}.", rule.words().reference);
    }
    let _ = writeln!(out, "-- keywatch");
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::ApiCalls;
    use time::macros::datetime;

    pub(crate) fn report_with(findings: Vec<Finding>) -> Report {
        Report {
            run_id: "8f14e45f-ceea-467f-a8e9-2e3b1c9b9a01".into(),
            account_id: "123456789012".into(),
            checked_at: datetime!(2026-11-29 12:00 UTC),
            report_generated_at: Some(datetime!(2026-11-29 11:59 UTC)),
            inventory_source: crate::inventory::Source::CredentialReport,
            dry_run: false,
            grace_period_hours: 0,
            rule_settings: Default::default(),
            users_examined: 0,
            users_checked: None,
            keys_examined: 0,
            candidates_verified: 0,
            api_calls: ApiCalls::default(),
            phase_ms: Default::default(),
            findings,
            pending: vec![],
            exempted: vec![],
            remediated: vec![],
            remediation_skipped: vec![],
            remediation_failed: vec![],
            deactivate_after_days: None,
            security_hub: None,
            rechecks: Vec::new(),
            notifications: vec![],
            new: None,
            open: None,
            resolved: None,
            alert: String::new(),
            owner: None,
        }
    }

    pub(crate) fn finding(user: &str, key: &str) -> Finding {
        Finding {
            finding_id: format!("123456789012/{user}/{key}"),
            rule: "cis-1.11-never-used-key-on-console-user",
            controls: vec!["CIS AWS v4.0.1 1.11"],
            user_name: user.into(),
            user_arn: format!("arn:aws:iam::123456789012:user/{user}"),
            access_key_id: key.into(),
            other_access_key_ids: vec![],
            key_last_used: None,
            days_counted: None,
            caused_by: None,
            key_created: Some(datetime!(2026-11-01 09:01 UTC)),
            key_age_days: Some(28),
            user_created: datetime!(2026-11-01 09:00 UTC),
            password_last_used: None,
            created_at_user_setup: true,
            exemption_expired_on: None,
            owner: None,
            history: Default::default(),
        }
    }

    fn envelope(part: &AlertPart) -> (serde_json::Value, String) {
        let envelope: serde_json::Value = serde_json::from_str(&part.message).unwrap();
        let document = serde_json::from_str(envelope["default"].as_str().unwrap()).unwrap();
        (document, envelope["email"].as_str().unwrap().to_string())
    }

    /// A finding of `rule` on `key`, as classify makes it: the rule's ID in the finding ID, its evidence.
    pub(crate) fn finding_of(rule: &'static str, user: &str, key: &str) -> Finding {
        let base = finding(user, key);
        Finding {
            finding_id: format!("{}/{rule}", base.finding_id),
            rule,
            controls: vec!["CIS AWS v7.0 2.11"],
            key_created: Some(datetime!(2026-07-01 00:00 UTC)),
            created_at_user_setup: false,
            ..base
        }
    }

    /// With every rule on, the alert counts each rule in its subject, groups the findings by rule, each group
    /// in its own words with its evidence and command, and names each rule's reference.
    #[test]
    fn every_rule_grouped_in_its_own_words() {
        use crate::evaluate::{key_not_rotated, two_active_keys, unused_key, RULES};
        let mut report = report_with(vec![
            finding("ann", "AKIAANN"),
            Finding {
                key_last_used: Some(datetime!(2026-09-01 00:00 UTC)),
                days_counted: Some(89),
                caused_by: None,
                ..finding_of(unused_key::ID, "bob", "AKIABOB")
            },
            Finding {
                days_counted: Some(151),
                caused_by: None,
                ..finding_of(unused_key::ID, "cat", "AKIACAT")
            },
            Finding {
                other_access_key_ids: vec!["AKIADAN2".into()],
                ..finding_of(two_active_keys::ID, "dan", "AKIADAN1")
            },
            Finding {
                days_counted: Some(151),
                caused_by: None,
                ..finding_of(key_not_rotated::ID, "eve", "AKIAEVE")
            },
        ]);
        report.rule_settings = crate::report::RuleSettings::of(RULES, 30, 120);
        let parts = render_parts(&report, Kind::Findings, Chat::Off).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(
            parts[0].subject,
            "keywatch: 123456789012: 1 never used (console), 2 unused, 1 two active keys, 1 not rotated"
        );
        let (document, email) = envelope(&parts[0]);
        assert_eq!(document["control"], RULES_CONTROL);
        assert_eq!(document["rules"].as_array().unwrap().len(), 4);
        assert_eq!(document["findings_by_rule"][unused_key::ID], 2);
        assert_eq!(
            document["findings"][3]["other_access_key_ids"][0],
            "AKIADAN2"
        );
        assert_eq!(
            document["findings"][1]["key_last_used"],
            "2026-09-01T00:00:00Z"
        );
        let order: Vec<usize> = [
            "== never-used access keys on console users (cis-1.11",
            "== access keys unused for 30 days (unused-key): 2 ==",
            "== users with two active access keys (two-active-keys): 1 ==",
            "== access keys not rotated in 120 days (key-not-rotated): 1 ==",
        ]
        .iter()
        .map(|heading| {
            email
                .find(heading)
                .unwrap_or_else(|| panic!("{heading}:\n{email}"))
        })
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{email}");
        for needle in [
            "AKIAANN  28 days old  created at user setup: yes",
            "aws iam delete-access-key --user-name ann --access-key-id AKIAANN",
            "AKIABOB  last used 2026-09-01T00:00:00Z (89 days ago)",
            "aws iam update-access-key --user-name bob --access-key-id AKIABOB --status Inactive",
            "AKIACAT  never used, created 2026-07-01T00:00:00Z (151 days ago)",
            "AKIADAN1  also Active: AKIADAN2\n    aws iam get-access-key-last-used --access-key-id AKIADAN1 && \
             aws iam get-access-key-last-used --access-key-id AKIADAN2\n",
            "rotated every 90 days or less\".\n-- keywatch",
            "AKIAEVE  created 2026-07-01T00:00:00Z (151 days ago)",
            "more than 30 days",
            "more than 120 days",
            "Reference: CIS AWS Foundations Benchmark v1.4.0-v4.0.0, control 1.11",
            "v7.0 2.12: \"Ensure access keys are rotated",
        ] {
            assert!(email.contains(needle), "email lacks {needle:?}:\n{email}");
        }
        assert!(!email.contains("UNUSED_DAYS days") && !email.contains("ROTATE_DAYS days"));
        // One rule's findings alone are counted in that rule's words.
        report.findings.retain(|f| f.rule == unused_key::ID);
        let parts = render_parts(&report, Kind::Findings, Chat::Off).unwrap();
        assert_eq!(
            parts[0].subject,
            "keywatch: 2 access keys unused for 30 days in 123456789012"
        );
        report.findings.clear();
        let parts = render_parts(&report, Kind::Findings, Chat::Off).unwrap();
        assert_eq!(
            parts[0].subject,
            "keywatch: no access-key findings in 123456789012"
        );
    }

    #[test]
    fn two_findings_in_one_part() {
        let expired = Finding {
            exemption_expired_on: Some(time::macros::date!(2026 - 11 - 01)),
            ..finding("frank", "AKIAFRANK2")
        };
        let report = report_with(vec![finding("frank", "AKIAFRANK1"), expired]);
        let parts = render_parts(&report, Kind::Findings, Chat::Off).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(
            parts[0].subject,
            "keywatch: 2 never-used access keys on console users in 123456789012"
        );
        let (document, email) = envelope(&parts[0]);
        assert_eq!(document["findings"].as_array().unwrap().len(), 2);
        assert_eq!(document["run_id"], report.run_id);
        for needle in [
            "Account:   123456789012",
            "AKIAFRANK1",
            "AKIAFRANK2",
            "28 days old",
            "created at user setup: yes",
            "AKIAFRANK2  28 days old  created at user setup: yes  exemption expired after 2026-11-01",
            "aws iam delete-access-key --user-name frank --access-key-id AKIAFRANK1",
            "--status Inactive",
            "control 1.11",
        ] {
            assert!(email.contains(needle), "email lacks {needle:?}:\n{email}");
        }
    }

    #[test]
    fn remediation_is_shown_with_the_command_that_undoes_it() {
        use crate::ledger::{Change, History, Reason, Resolved};
        use crate::remediate::{Failed, Remediated};
        let history = |change, alerted: Option<OffsetDateTime>| History {
            change: Some(change),
            first_seen_at: alerted,
            first_alerted_at: alerted,
            deactivate_on: Some(
                alerted.unwrap_or(datetime!(2026-11-29 12:00 UTC)) + time::Duration::days(7),
            ),
            notice: None,
        };
        let alerted = Some(datetime!(2026-11-20 12:00 UTC));
        let mut report = report_with(vec![
            Finding {
                history: history(Change::Open, alerted),
                ..finding("ann", "AKIAANN")
            },
            Finding {
                history: history(Change::Open, alerted),
                ..finding("bob", "AKIABOB")
            },
            Finding {
                history: history(Change::New, None),
                ..finding("cy", "AKIACY")
            },
            Finding {
                history: history(Change::Open, alerted),
                ..finding("dee", "AKIADEE")
            },
        ]);
        report.apply_history(vec![Resolved {
            owner: None,
            finding_id: "123456789012/eve/AKIAEVE".into(),
            user_name: "eve".into(),
            access_key_id: "AKIAEVE".into(),
            rule: crate::evaluate::never_used_key::ID.into(),
            ledger_key: "AKIAEVE".into(),
            reason: Reason::Used,
            exempt_tag: None,
            first_alerted_at: alerted,
            resolved_at: report.checked_at,
        }]);
        report.deactivate_after_days = Some(7);
        let deactivated = |user: &str, key: &str| Remediated {
            finding_id: format!("123456789012/{user}/{key}"),
            user_name: user.into(),
            access_key_id: key.into(),
            action: "deactivated",
            at: datetime!(2026-11-29 12:00 UTC),
            owner: None,
        };
        // ann in this run; fay in an earlier run whose alert was never delivered.
        report.remediated = vec![deactivated("ann", "AKIAANN"), deactivated("fay", "AKIAFAY")];
        report.remediation_failed = vec![Failed {
            finding_id: "123456789012/bob/AKIABOB".into(),
            user_name: "bob".into(),
            access_key_id: "AKIABOB".into(),
            error: "iam:UpdateAccessKey failed (AccessDenied)".into(),
        }];
        let parts = render_parts(&report, Kind::Findings, Chat::Off).unwrap();
        assert_eq!(
            parts[0].subject,
            "keywatch: 4 never-used access keys on console users in 123456789012 (1 new, 1 resolved), 2 deactivated"
                [..MAX_SUBJECT_CHARS]
        );
        let (document, email) = envelope(&parts[0]);
        for needle in [
            "Deactivated by keywatch (REMEDIATION=deactivate)",
            "aws iam update-access-key --user-name ann --access-key-id AKIAANN --status Active",
            "aws iam update-access-key --user-name fay --access-key-id AKIAFAY --status Active",
            "keywatch could NOT deactivate it: iam:UpdateAccessKey failed (AccessDenied)",
            "- cy  key AKIACY",
            "keywatch deactivates it on or after 2026-12-06T12:00:00Z",
            "open for 9 days (first alerted 2026-11-20T12:00:00Z)",
            "keywatch deactivates it on or after 2026-11-27T12:00:00Z",
            "- eve  key AKIAEVE  the key was used (first alerted 2026-11-20T12:00:00Z)",
        ] {
            assert!(email.contains(needle), "email lacks {needle:?}:\n{email}");
        }
        // Deactivated, new, still open, resolved: in that order.
        let at = |needle: &str| email.find(needle).unwrap_or_else(|| panic!("{needle}"));
        assert!(at("Deactivated by keywatch") < at("- ann"));
        assert!(at("- fay") < at("New since the last alert:"));
        assert!(at("New since the last alert:") < at("- cy"));
        assert!(at("- cy") < at("Still open:"));
        assert!(at("Still open:") < at("- bob"));
        assert!(at("- dee") < at("Resolved since the last alert:"));
        assert_eq!(document["schema"], "keywatch.alert/v4");
        let keys = |name: &str| -> Vec<String> {
            document[name]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["access_key_id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(keys("remediated"), ["AKIAANN", "AKIAFAY"]);
        assert_eq!(keys("remediation_failed"), ["AKIABOB"]);
        assert_eq!(keys("resolved"), ["AKIAEVE"]);
        assert_eq!(
            document["new"],
            serde_json::json!(["123456789012/cy/AKIACY"])
        );
        assert_eq!(document["open"].as_array().unwrap().len(), 3);
        let cy = &document["findings"][0];
        assert_eq!(
            (cy["access_key_id"].as_str(), cy["change"].as_str()),
            (Some("AKIACY"), Some("new"))
        );
        assert!(cy["first_alerted_at"].is_null() && cy["first_seen_at"].is_null());
        assert_eq!(
            document["findings"][1]["first_alerted_at"],
            "2026-11-20T12:00:00Z"
        );
        assert_eq!(document["deactivate_after_days"], 7);
    }

    #[test]
    fn clean_report_renders_an_all_clear() {
        let parts = render_parts(&report_with(vec![]), Kind::Findings, Chat::Off).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(
            parts[0].subject,
            "keywatch: no never-used access keys on console users in 123456789012"
        );
        assert!(envelope(&parts[0]).1.contains("All clear"));
    }

    #[test]
    fn a_long_subject_is_cut_before_its_part_number() {
        let mut report = report_with(vec![finding("ann", "AKIAANN")]);
        report.account_id = "1".repeat(32);
        report.new = Some(vec!["x".into(); 1_000]);
        report.resolved = Some(vec![]);
        let full = subject(&report, 1, 1);
        let suffix = " (part 12 of 345)";
        assert!(
            full.len() + suffix.len() > 99,
            "long enough to be cut: {full}"
        );
        let cut = subject(&report, 12, 345);
        assert!(cut.ends_with(suffix), "{cut}");
        assert_eq!(cut.len(), 99, "SNS's 100 characters, one kept back");
        assert!(full.starts_with(&cut[..99 - suffix.len()]));
    }

    #[test]
    fn shell_quoting_keeps_odd_user_names_safe() {
        assert_eq!(shell_quote("o'neil.m+ops@corp"), r"'o'\''neil.m+ops@corp'");
        assert_eq!(shell_quote("alice"), "alice");
    }

    #[test]
    fn many_multibyte_findings_split_under_the_byte_limit_and_none_is_lost() {
        // 64 characters of 3-byte UTF-8 is the worst case for a user name; escaping stays in bytes.
        let name: String = "ü€".repeat(32);
        let findings: Vec<Finding> = (0..2_000)
            .map(|i| finding(&format!("{name}{i}"), &format!("AKIA{i:016}")))
            .collect();
        let report = report_with(findings);
        let parts = render_parts(&report, Kind::Findings, Chat::Off).unwrap();
        assert!(parts.len() > 1, "2,000 large findings need several parts");
        // SNS's limit, stated as AWS documents it: a change of the constant fails this test.
        assert_eq!(SNS_MAX_BYTES, 256 * 1024);
        let mut seen = Vec::new();
        for part in &parts {
            assert!(part.message.len() + part.subject.len() <= SNS_MAX_BYTES);
            assert!(
                part.subject.len() <= MAX_SUBJECT_CHARS
                    && part
                        .subject
                        .chars()
                        .all(|c| c.is_ascii_graphic() || c == ' ')
            );
            assert!(part
                .subject
                .ends_with(&format!("(part {} of {})", part.part, parts.len())));
            let (document, _) = envelope(part);
            assert_eq!(document["parts"], parts.len());
            for f in document["findings"].as_array().unwrap() {
                seen.push(f["access_key_id"].as_str().unwrap().to_string());
            }
        }
        let expected: Vec<String> = report
            .findings
            .iter()
            .map(|f| f.access_key_id.clone())
            .collect();
        assert_eq!(seen, expected, "every finding exactly once, in order");
    }
}

#[cfg(test)]
mod properties {
    use super::tests::{finding, report_with};
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn every_finding_in_exactly_one_part_under_the_byte_limit(
            names in prop::collection::vec("[a-zA-Z0-9+=,.@_'üé€𝄞-]{1,64}", 0..1_500),
            account in "[0-9]{12}",
        ) {
            let findings: Vec<Finding> = names.iter().enumerate().map(|(i, n)| finding(n, &format!("AKIA{i:016}"))).collect();
            let mut report = report_with(findings);
            report.account_id = account;
            let parts = render_parts(&report, Kind::Findings, Chat::Off).unwrap();
            let mut seen = Vec::new();
            for part in &parts {
                prop_assert!(part.message.len() + part.subject.len() <= SNS_MAX_BYTES);
                prop_assert!(!part.subject.is_empty() && part.subject.len() <= MAX_SUBJECT_CHARS);
                prop_assert!(part.subject.bytes().all(|b| (0x20..0x7f).contains(&b)), "{}", part.subject);
                let envelope: serde_json::Value = serde_json::from_str(&part.message).unwrap();
                let document: serde_json::Value = serde_json::from_str(envelope["default"].as_str().unwrap()).unwrap();
                prop_assert_eq!(&document["run_id"], &serde_json::Value::from(report.run_id.as_str()));
                prop_assert_eq!(document["part"].as_u64(), Some(part.part as u64));
                let emailed: Vec<&str> = envelope["email"].as_str().unwrap().lines()
                    .filter(|line| line.trim_start().starts_with("aws iam delete-access-key"))
                    .filter_map(|line| line.split_once("--access-key-id ").map(|(_, id)| id))
                    .collect();
                let ids: Vec<&str> = document["findings"].as_array().unwrap().iter()
                    .map(|f| f["access_key_id"].as_str().unwrap())
                    .collect();
                prop_assert_eq!(&emailed, &ids, "the email of part {} lists the same keys", part.part);
                seen.extend(ids.into_iter().map(str::to_string));
            }
            let expected: Vec<String> = report.findings.iter().map(|f| f.access_key_id.clone()).collect();
            prop_assert_eq!(seen, expected);
        }
    }
}
