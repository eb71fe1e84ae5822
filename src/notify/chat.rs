//! The custom notification that AWS's chat integration (Amazon Q Developer in chat applications, formerly AWS
//! Chatbot) renders in Slack and Microsoft Teams: the `https` variant of every publish with
//! `CHAT_NOTIFICATIONS=custom`. Pure, like [`super::render`]: it says what the email says, in the same order, cut
//! short enough to be read in a channel, and never without its counts.
//!
//! Values from AWS (user names, owners, key IDs, errors) go into code spans: there, neither Slack's nor Teams'
//! Markdown reads `_`, `*` or a mention like `@here`, and IAM names and tag values cannot hold a backtick.

use std::collections::BTreeMap;

use serde::Serialize;

use super::notice::Notice;
use super::render::{self, action_for, date, escaped_len, Chunk, KeyAction, KeyCommand};
use crate::error::{Error, Result};
use crate::evaluate::{Finding, Fix, Shows};
use crate::ledger::{days_between, Change, Notice as DateNotice};
use crate::model::Remediated;
use crate::notify::when::Kind;
use crate::report::{Report, RuleSettings};

/// Chat readers do not scroll: a description stays under 4,000 characters.
pub const MAX_DESCRIPTION_CHARS: usize = 3_999;
/// Room kept at the end of a cut description for the line that says what is not listed.
const TAIL_CHARS: usize = 400;
/// How many keys `nextSteps` gives commands for, of each kind (delete, undo).
const MAX_COMMANDS: usize = 3;
/// How many user ARNs `relatedResources` names.
const MAX_RESOURCES: usize = 10;
/// The most a notification takes of a publish, escaped inside the envelope. The splitter keeps this much room
/// in every part, so adding the chat variant never drops a finding.
pub const MAX_BYTES: usize = 32_768;

/// The schema AWS documents for custom notifications.
#[derive(Debug, Serialize)]
pub struct CustomNotification<'a> {
    /// Always `1.0`.
    pub version: &'static str,
    /// Always `custom`.
    pub source: &'static str,
    /// The message's `alert_id`.
    pub id: &'a str,
    pub content: Content,
    pub metadata: Metadata,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    /// Always `client-markdown`: the channel's own Markdown.
    pub text_type: &'static str,
    pub title: String,
    pub description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub next_steps: Vec<String>,
    pub keywords: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// `account/owner`, or the account alone without routing by owner: one thread each.
    pub thread_id: String,
    pub summary: String,
    /// The message's `kind` attribute.
    pub event_type: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related_resources: Vec<String>,
    pub additional_context: BTreeMap<&'static str, String>,
}

/// A value from AWS as inline code: shown as it is, never read as Markdown. A code span holds no backtick and
/// no line break (an AWS error message may have either).
pub fn code(value: &str) -> String {
    format!("`{}`", value.replace('`', "'").replace(['\n', '\r'], " "))
}

/// What one notification is about, whatever its kind.
struct Frame<'a> {
    kind: Kind,
    account_id: Option<&'a str>,
    owner: Option<&'a str>,
    run_id: &'a str,
    alert_id: &'a str,
    subject: &'a str,
    part: usize,
    parts: usize,
}

impl Frame<'_> {
    fn head(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "*Account:* {}",
            code(self.account_id.unwrap_or("unknown"))
        )];
        if let Some(owner) = self.owner {
            lines.push(format!("*Owner:* {}", code(owner)));
        }
        lines
    }

    fn notification(
        &self,
        description: String,
        next_steps: Vec<String>,
        related_resources: Vec<String>,
    ) -> Result<String> {
        let account = self.account_id.unwrap_or("unknown");
        let emoji = match self.kind {
            Kind::Findings | Kind::Reminder => ":warning:",
            Kind::Resolved | Kind::AllClear => ":white_check_mark:",
            Kind::CheckFailed => ":x:",
        };
        let mut context = BTreeMap::from([
            ("account_id", account.to_string()),
            ("run_id", self.run_id.to_string()),
            ("alert_id", self.alert_id.to_string()),
            ("part", format!("{} of {}", self.part, self.parts)),
        ]);
        if let Some(owner) = self.owner {
            context.insert("owner", owner.to_string());
        }
        let mut notification = CustomNotification {
            version: "1.0",
            source: "custom",
            id: self.alert_id,
            content: Content {
                text_type: "client-markdown",
                title: format!("{emoji} {}", self.subject),
                description,
                next_steps,
                keywords: ["keywatch", self.kind.as_str(), account]
                    .into_iter()
                    .chain(self.owner)
                    .map(str::to_string)
                    .collect(),
            },
            metadata: Metadata {
                thread_id: match self.owner {
                    Some(owner) => format!("{account}/{owner}"),
                    None => account.to_string(),
                },
                summary: self
                    .subject
                    .strip_prefix("keywatch: ")
                    .unwrap_or(self.subject)
                    .to_string(),
                event_type: self.kind.as_str(),
                related_resources,
                additional_context: context,
            },
        };
        // Within its room whatever the names: what the description lists is kept, the extras go first.
        loop {
            let json =
                serde_json::to_string(&notification).map_err(|e| Error::Render(e.to_string()))?;
            if escaped_len(&json)? <= MAX_BYTES {
                return Ok(json);
            }
            if notification.metadata.related_resources.pop().is_none()
                && notification.content.next_steps.pop().is_none()
            {
                return Err(Error::Render(format!(
                    "the chat notification is over {MAX_BYTES} bytes with only its description left; please \
                     report this as a bug"
                )));
            }
        }
    }
}

/// A heading and the lines listed under it.
struct Section {
    heading: String,
    lines: Vec<String>,
}

/// Head, then each section's lines while they fit; past that, one line that says how many are not listed and
/// where they are. The counts are in the head, so a cut never hides one.
fn description(
    head: Vec<String>,
    sections: Vec<Section>,
    tail: impl Fn(usize) -> String,
) -> String {
    let mut out = head.join("\n");
    let total: usize = sections.iter().map(|s| s.lines.len()).sum();
    let mut listed = 0;
    'sections: for section in sections.iter().filter(|s| !s.lines.is_empty()) {
        let heading = format!("\n\n{}", section.heading);
        for (index, line) in section.lines.iter().enumerate() {
            let adding = if index == 0 {
                format!("{heading}\n{line}")
            } else {
                format!("\n{line}")
            };
            let room = if listed + 1 == total { 0 } else { TAIL_CHARS };
            if out.chars().count() + adding.chars().count() + room > MAX_DESCRIPTION_CHARS {
                break 'sections;
            }
            out.push_str(&adding);
            listed += 1;
        }
    }
    if listed < total {
        out.push_str("\n\n");
        out.push_str(&tail(total - listed));
    }
    // A head or tail longer than planned (a very long owner) is cut, never the limit.
    if out.chars().count() > MAX_DESCRIPTION_CHARS {
        out = out.chars().take(MAX_DESCRIPTION_CHARS - 1).collect();
        out.push('…');
    }
    out
}

fn age(finding: &Finding) -> String {
    finding
        .key_age_days
        .map_or_else(|| "unknown age".to_string(), |d| format!("{d} days old"))
}

fn finding_line(report: &Report, finding: &Finding) -> String {
    let rule = RuleSettings::rule_of(finding);
    let mut line = format!(
        "• {} key {}",
        code(&finding.user_name),
        code(&finding.access_key_id)
    );
    // With more rules than today's, each line says which it breaks.
    if let Some(rule) = rule.filter(|_| !report.rule_settings.only_default()) {
        line.push_str(&format!(" · {}", rule.words().short));
    }
    match rule.map(|rule| rule.words().evidence) {
        Some(Shows::AgeAtSetup) | None => {
            line.push_str(&format!(" · {}", age(finding)));
            if finding.created_at_user_setup {
                line.push_str(" · created at user setup");
            }
        }
        Some(_) => line.push_str(&format!(" · {}", render::evidence(finding))),
    }
    if let Some(day) = finding.exemption_expired_on {
        line.push_str(&format!(" · exemption expired after {day}"));
    }
    if let (Some(Change::Open), Some(alerted)) =
        (finding.history.change, finding.history.first_alerted_at)
    {
        line.push_str(&format!(
            " · first alerted {} (open {} days)",
            date(Some(alerted)),
            days_between(alerted, report.checked_at)
        ));
    }
    match action_for(report, finding) {
        KeyAction::Deactivated(done) => {
            line.push_str(&format!(" · *deactivated* {}", date(Some(done.at))))
        }
        KeyAction::Failed(failed) => line.push_str(&format!(
            " · keywatch could *not* deactivate it: {}",
            code(&failed.error)
        )),
        KeyAction::Skipped(skipped) => {
            line.push_str(&format!(" · not deactivated: {}", code(&skipped.reason)))
        }
        KeyAction::Due(due, Some(DateNotice::Later)) => line.push_str(&format!(
            " · deactivation moved later: on or after {}",
            date(Some(due))
        )),
        KeyAction::Due(due, _) => line.push_str(&format!(
            " · keywatch deactivates it on or after {}",
            date(Some(due))
        )),
        KeyAction::None => {}
    }
    line
}

fn late_line(done: &Remediated) -> String {
    format!(
        "• {} key {} · *deactivated* {} (an earlier alert could not say so)",
        code(&done.user_name),
        code(&done.access_key_id),
        date(Some(done.at))
    )
}

/// The `https` variant of one alert part.
pub(crate) fn alert(
    report: &Report,
    chunk: Chunk<'_>,
    part: usize,
    parts: usize,
    kind: Kind,
    alert_id: &str,
    subject: &str,
) -> Result<String> {
    let frame = Frame {
        kind,
        account_id: Some(&report.account_id),
        owner: report.owner.as_deref(),
        run_id: &report.run_id,
        alert_id,
        subject,
        part,
        parts,
    };
    let deactivated = |f: &&Finding| matches!(action_for(report, f), KeyAction::Deactivated(_));
    let in_section = |change: Option<Change>| -> Vec<&Finding> {
        chunk
            .findings
            .iter()
            .filter(|f| f.history.change == change && !deactivated(f))
            .collect()
    };
    let (new, open, plain) = (
        in_section(Some(Change::New)),
        in_section(Some(Change::Open)),
        in_section(None),
    );
    let done: Vec<&Finding> = chunk.findings.iter().filter(deactivated).collect();

    let mut head = frame.head();
    if report.findings.is_empty() && report.rule_settings.only_default() {
        head.push(
            "All clear: no Active, never-used access keys on users with a console password."
                .to_string(),
        );
    } else if report.findings.is_empty() {
        head.push(format!(
            "All clear: no findings of the rules checked ({}).",
            report
                .rule_settings
                .rules
                .iter()
                .map(|id| code(id))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    } else {
        head.push(format!(
            "*Findings in this part:* {} of {}",
            chunk.findings.len(),
            report.findings.len()
        ));
    }
    let counts: Vec<String> = [
        (done.len() + chunk.late.len(), "deactivated"),
        (new.len(), "new"),
        (open.len(), "still open"),
        (chunk.resolved.len(), "resolved"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if !counts.is_empty() {
        head.push(counts.join(" · "));
    }
    let not_alerted: Vec<String> = [
        (!report.pending.is_empty()).then(|| {
            format!(
                "{} in the {}-hour grace period",
                report.pending.len(),
                report.grace_period_hours
            )
        }),
        (!report.exempted.is_empty()).then(|| format!("{} exempt", report.exempted.len())),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !not_alerted.is_empty() {
        head.push(format!("Not alerted: {} key(s)", not_alerted.join(", ")));
    }

    let lines = |findings: &[&Finding]| -> Vec<String> {
        findings.iter().map(|f| finding_line(report, f)).collect()
    };
    let sections = vec![
        Section {
            heading: "*Deactivated by keywatch* (Inactive, not deleted):".into(),
            lines: lines(&done)
                .into_iter()
                .chain(chunk.late.iter().map(|d| late_line(d)))
                .collect(),
        },
        Section {
            heading: "*New since the last alert:*".into(),
            lines: lines(&new),
        },
        Section {
            heading: "*Still open:*".into(),
            lines: lines(&open),
        },
        Section {
            heading: "*Findings:*".into(),
            lines: lines(&plain),
        },
        Section {
            heading: "*Resolved since the last alert:*".into(),
            lines: chunk
                .resolved
                .iter()
                .map(|r| {
                    let tag = r
                        .exempt_tag
                        .as_deref()
                        .map(|tag| format!(" (tag {})", code(tag)))
                        .unwrap_or_default();
                    format!(
                        "• {} key {} · {}{tag} · first alerted {}",
                        code(&r.user_name),
                        code(&r.access_key_id),
                        r.reason.describe(),
                        date(r.first_alerted_at)
                    )
                })
                .collect(),
        },
    ];
    let description = description(head, sections, |more| {
        format!(
            "…and {more} more not listed here. The email and the JSON document of this alert (alert_id {}) \
             list every one; so does the report of run {}.",
            code(alert_id),
            code(&report.run_id)
        )
    });

    // Commands for the first keys still to act on, and the undo of the first deactivations.
    let to_act: Vec<&Finding> = new.iter().chain(&open).chain(&plain).copied().collect();
    let mut next_steps: Vec<String> = to_act
        .iter()
        .take(MAX_COMMANDS)
        .map(
            |f| match RuleSettings::rule_of(f).map(|rule| rule.words()) {
                Some(words) if words.fix == Fix::Deactivate => format!(
                    "Deactivate {}'s key ({}), once you know nothing needs it: `{}`",
                    code(&f.user_name),
                    words.short,
                    render::fix_line(f)
                ),
                _ => format!(
                    "Delete {}'s key (never used, so nothing depends on it): `{}`",
                    code(&f.user_name),
                    KeyCommand::Delete.line(&f.user_name, &f.access_key_id)
                ),
            },
        )
        .collect();
    let deletes =
        |f: &&&Finding| RuleSettings::rule_of(f).is_none_or(|rule| rule.words().fix == Fix::Delete);
    if let Some(first) = to_act.iter().find(deletes) {
        next_steps.push(format!(
            "Or deactivate it first: `{}`",
            KeyCommand::Deactivate.line(&first.user_name, &first.access_key_id)
        ));
    }
    if to_act.len() > MAX_COMMANDS {
        next_steps.push(format!(
            "The email gives the command for each of the {} keys.",
            to_act.len()
        ));
    }
    let undone = report
        .remediated
        .iter()
        .filter(|r| {
            done.iter().any(|f| f.finding_id == r.finding_id)
                || chunk.late.iter().any(|l| l.finding_id == r.finding_id)
        })
        .take(MAX_COMMANDS);
    for r in undone {
        next_steps.push(format!(
            "Undo keywatch's deactivation of {}'s key: `{}`",
            code(&r.user_name),
            KeyCommand::Reactivate.line(&r.user_name, &r.access_key_id)
        ));
    }

    let mut related: Vec<String> = Vec::new();
    for finding in chunk.findings {
        if related.len() == MAX_RESOURCES {
            break;
        }
        if !related.contains(&finding.user_arn) {
            related.push(finding.user_arn.clone());
        }
    }
    frame.notification(description, next_steps, related)
}

/// The `https` variant of a failed-check notice.
pub(crate) fn check_failed(
    notice: &Notice,
    alert_id: &str,
    subject: &str,
    consequence: &str,
) -> Result<String> {
    let frame = Frame {
        kind: Kind::CheckFailed,
        account_id: notice.account_id,
        owner: notice.owner,
        run_id: notice.run_id,
        alert_id,
        subject,
        part: 1,
        parts: 1,
    };
    let mut head = frame.head();
    head.push(format!("*Error:* {}", code(notice.error_type)));
    head.push(format!(
        "*Attempts:* {}{}",
        notice.attempts,
        if notice.permanent {
            " (not retried: retrying cannot heal this failure)"
        } else {
            " (the last; the work message goes to the dead-letter queue)"
        }
    ));
    if notice.alert_parts_delivered > 0 {
        head.push(format!(
            "*Done:* findings delivered ({} alert part(s)); the step that failed was not done",
            notice.alert_parts_delivered
        ));
    }
    let consequence = consequence.replace('\n', " ");
    // The error says what to do: kept whole unless it alone would break the limit.
    let room = MAX_DESCRIPTION_CHARS
        .saturating_sub(head.iter().map(|l| l.chars().count() + 1).sum::<usize>())
        .saturating_sub(consequence.chars().count() + 8);
    let mut error: String = notice.error.chars().take(room).collect();
    if error.chars().count() < notice.error.chars().count() {
        error.pop();
        error.push('…');
    }
    head.push(String::new());
    head.push(code(&error));
    head.push(String::new());
    head.push(consequence);
    let description = description(head, Vec::new(), |_| String::new());
    frame.notification(
        description,
        vec![format!(
            "Fix what the error names; the next scheduled run checks account {} again.",
            code(notice.account_id.unwrap_or("unknown"))
        )],
        Vec::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Chat;
    use crate::notify::render::render_parts;
    use crate::notify::render::tests::{finding, report_with};

    fn https(message: &str) -> serde_json::Value {
        let envelope: serde_json::Value = serde_json::from_str(message).unwrap();
        serde_json::from_str(envelope["https"].as_str().expect("an https variant")).unwrap()
    }

    #[test]
    fn a_code_span_holds_no_backtick_and_no_line_break() {
        assert_eq!(code("_a_"), "`_a_`");
        assert_eq!(code("x`y\r\nz"), "`x'y  z`");
    }

    #[test]
    fn off_leaves_https_subscribers_the_json_document() {
        let report = report_with(vec![finding("ann", "AKIAANN")]);
        let parts = render_parts(&report, Kind::Findings, Chat::Off).unwrap();
        let envelope: serde_json::Value = serde_json::from_str(&parts[0].message).unwrap();
        assert!(envelope.get("https").is_none(), "{envelope}");
    }

    #[test]
    fn a_finding_becomes_a_custom_notification() {
        let mut report = report_with(vec![finding("_new_hire_", "AKIANEW")]);
        report.owner = Some("team-a".into());
        let parts = render_parts(&report, Kind::Findings, Chat::Custom).unwrap();
        let chat = https(&parts[0].message);
        assert_eq!(
            (&chat["version"], &chat["source"]),
            (&"1.0".into(), &"custom".into())
        );
        assert_eq!(chat["id"], parts[0].alert_id.as_str());
        assert_eq!(chat["content"]["textType"], "client-markdown");
        assert_eq!(
            chat["content"]["title"],
            format!(":warning: {}", parts[0].subject)
        );
        assert_eq!(chat["metadata"]["threadId"], "123456789012/team-a");
        assert_eq!(chat["metadata"]["eventType"], "findings");
        assert_eq!(
            chat["metadata"]["relatedResources"],
            serde_json::json!(["arn:aws:iam::123456789012:user/_new_hire_"])
        );
        assert_eq!(chat["metadata"]["additionalContext"]["owner"], "team-a");
        let description = chat["content"]["description"].as_str().unwrap();
        // Markdown would read `_new_hire_` as italics: the name is code.
        assert!(
            description.contains("• `_new_hire_` key `AKIANEW` · 28 days old"),
            "{description}"
        );
        assert!(
            !description
                .replace("`_new_hire_`", "")
                .contains("_new_hire_"),
            "{description}"
        );
        let steps = chat["content"]["nextSteps"].as_array().unwrap();
        assert_eq!(
            steps[0],
            "Delete `_new_hire_`'s key (never used, so nothing depends on it): \
             `aws iam delete-access-key --user-name _new_hire_ --access-key-id AKIANEW`"
        );
        assert!(
            steps[1].as_str().unwrap().contains("--status Inactive"),
            "{steps:?}"
        );
    }

    #[test]
    fn deactivated_new_open_resolved_in_the_emails_order_with_the_undo() {
        use crate::ledger::{Change, History, Reason, Resolved};
        use crate::model::Remediated;
        use time::macros::datetime;
        let history = |change| History {
            change: Some(change),
            first_alerted_at: (change == Change::Open).then_some(datetime!(2026-11-20 12:00 UTC)),
            deactivate_on: Some(datetime!(2026-12-06 12:00 UTC)),
            ..Default::default()
        };
        let mut report = report_with(vec![
            Finding {
                history: history(Change::Open),
                ..finding("olga", "AKIAOLGA")
            },
            Finding {
                history: history(Change::New),
                ..finding("nina", "AKIANINA")
            },
            Finding {
                history: history(Change::Open),
                ..finding("dan", "AKIADAN")
            },
        ]);
        report.deactivate_after_days = Some(7);
        report.remediated = vec![Remediated {
            finding_id: "123456789012/dan/AKIADAN".into(),
            user_name: "dan".into(),
            access_key_id: "AKIADAN".into(),
            action: "deactivated",
            at: datetime!(2026-11-29 12:00 UTC),
            owner: None,
        }];
        report.apply_history(vec![Resolved {
            owner: None,
            finding_id: "123456789012/rex/AKIAREX".into(),
            user_name: "rex".into(),
            access_key_id: "AKIAREX".into(),
            rule: crate::evaluate::never_used_key::ID.into(),
            ledger_key: "AKIAREX".into(),
            reason: Reason::KeyDeleted,
            exempt_tag: None,
            first_alerted_at: Some(datetime!(2026-11-20 12:00 UTC)),
            resolved_at: report.checked_at,
        }]);
        let parts = render_parts(&report, Kind::Findings, Chat::Custom).unwrap();
        let chat = https(&parts[0].message);
        let description = chat["content"]["description"].as_str().unwrap();
        let at = |needle: &str| {
            description
                .find(needle)
                .unwrap_or_else(|| panic!("{needle}: {description}"))
        };
        assert!(
            at("`dan`") < at("`nina`") && at("`nina`") < at("`olga`") && at("`olga`") < at("`rex`"),
            "{description}"
        );
        assert!(description.contains("1 deactivated · 1 new · 1 still open · 1 resolved"));
        assert!(description.contains("· *deactivated* 2026-11-29T12:00:00Z"));
        assert!(description.contains(
            "first alerted 2026-11-20T12:00:00Z (open 9 days) · keywatch deactivates it on or after 2026-12-06T12:00:00Z"
        ));
        assert!(description.contains("`rex` key `AKIAREX` · the key was deleted"));
        let steps: Vec<&str> = chat["content"]["nextSteps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(
            steps.last(),
            Some(
                &"Undo keywatch's deactivation of `dan`'s key: \
                  `aws iam update-access-key --user-name dan --access-key-id AKIADAN --status Active`"
            ),
            "{steps:?}"
        );
        assert!(
            steps[0].contains("delete-access-key --user-name nina"),
            "{steps:?}"
        );
    }

    #[test]
    fn a_long_alert_is_cut_under_the_limit_and_keeps_its_counts() {
        use crate::ledger::{Change, History};
        let findings: Vec<Finding> = (0..500)
            .map(|i| Finding {
                history: History {
                    change: Some(if i % 5 == 0 {
                        Change::New
                    } else {
                        Change::Open
                    }),
                    first_alerted_at: (i % 5 != 0)
                        .then_some(time::macros::datetime!(2026-11-20 12:00 UTC)),
                    ..Default::default()
                },
                ..finding(&format!("user-{i:03}"), &format!("AKIA{i:016}"))
            })
            .collect();
        let report = report_with(findings);
        let parts = render_parts(&report, Kind::Findings, Chat::Custom).unwrap();
        let mut listed = 0;
        let mut more = 0;
        for part in &parts {
            let chat = https(&part.message);
            let description = chat["content"]["description"].as_str().unwrap();
            assert!(description.chars().count() < 4_000, "{}", description.len());
            let in_part: usize = serde_json::from_str::<serde_json::Value>(
                serde_json::from_str::<serde_json::Value>(&part.message).unwrap()["default"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap()["findings"]
                .as_array()
                .unwrap()
                .len();
            assert!(
                description.contains(&format!("*Findings in this part:* {in_part} of 500")),
                "{description}"
            );
            let news = description.matches("user-").count();
            listed += news;
            // A part short enough is listed whole; one that is cut says how many it leaves out, and where.
            let n = match description.split("…and ").nth(1) {
                Some(tail) => {
                    assert!(tail.contains(&part.alert_id), "{tail}");
                    tail.split(' ').next().unwrap().parse().unwrap()
                }
                None => 0,
            };
            assert_eq!(
                news + n,
                in_part,
                "listed and not listed add up: {description}"
            );
            more += n;
        }
        assert_eq!(listed + more, 500);
        assert!(more > 0, "500 findings do not fit in one description");
        assert!(parts[0].message.len() <= crate::notify::render::PART_BUDGET_BYTES);
    }

    #[test]
    fn a_failed_check_is_a_custom_notification() {
        let part = crate::notify::notice::render(
            &Notice {
                schema: crate::notify::notice::SCHEMA,
                run_id: "r1",
                account_id: Some("111122223333"),
                error_type: "Keywatch.AssumeRoleFailed",
                error: "sts:AssumeRole failed (AccessDenied): Deploy member-role.yaml".into(),
                attempts: 3,
                message_id: "m1",
                owner: Some("platform"),
                permanent: true,
                alert_parts_delivered: 0,
            },
            Chat::Custom,
        )
        .unwrap();
        let chat = https(&part.message);
        assert_eq!(chat["metadata"]["eventType"], "check-failed");
        assert_eq!(chat["metadata"]["threadId"], "111122223333/platform");
        assert_eq!(chat["id"], part.alert_id.as_str());
        let description = chat["content"]["description"].as_str().unwrap();
        for needle in [
            "*Error:* `Keywatch.AssumeRoleFailed`",
            "`sts:AssumeRole failed (AccessDenied): Deploy member-role.yaml`",
            "*Attempts:* 3 (not retried",
        ] {
            assert!(description.contains(needle), "{needle}: {description}");
        }
        let long = crate::notify::notice::render(
            &Notice {
                schema: crate::notify::notice::SCHEMA,
                run_id: "r1",
                account_id: Some("111122223333"),
                error_type: "Keywatch.AssumeRoleFailed",
                error: "x".repeat(10_000),
                attempts: 1,
                message_id: "m1",
                owner: None,
                permanent: false,
                alert_parts_delivered: 0,
            },
            Chat::Custom,
        )
        .unwrap();
        let description = https(&long.message)["content"]["description"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(description.chars().count() < 4_000);
        assert!(description.contains("dead-letter queue"), "{description}");
    }

    #[test]
    fn an_all_clear_is_a_custom_notification() {
        let report = report_with(vec![]);
        let parts = render_parts(&report, Kind::AllClear, Chat::Custom).unwrap();
        let chat = https(&parts[0].message);
        assert_eq!(chat["metadata"]["eventType"], "all-clear");
        assert!(chat["content"]["title"]
            .as_str()
            .unwrap()
            .starts_with(":white_check_mark: "));
        assert!(chat["content"]["description"]
            .as_str()
            .unwrap()
            .contains("All clear"));
        assert!(chat["content"].get("nextSteps").is_none());
    }
}
