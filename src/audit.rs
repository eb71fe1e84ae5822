//! `keywatch-audit`: the rules' verdicts on a downloaded credential report, with no AWS access at all. Auditors
//! receive these CSVs; this reads one as keywatch's report parser reads it, runs the rules of
//! [`crate::evaluate::RULES`] on it, and says plainly that nothing was verified live: the report may be hours
//! old, it names key slots rather than key IDs, and no tag (exemption or owner) is in it.
//!
//! `src/bin/keywatch-audit.rs` is the thin wiring: arguments in, the document out, an exit status.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::evaluate::{select_rules, Context, Evidence, Rule, RULE_DAYS};
use crate::inventory::credential_report;
use crate::model::UserSnapshot;

pub const USAGE: &str = "usage: keywatch-audit CREDENTIAL_REPORT.csv [--rules all|ID,ID...] [--now RFC3339] \
[--format table|json] [--unused-days N] [--rotate-days N]

Evaluates a downloaded IAM credential report with keywatch's rules, offline: its CSV, or the JSON that \
`aws iam get-credential-report` prints; `-` reads it from standard input. Nothing is verified live.
  --rules        rule IDs separated by commas, or all (the default)
  --now          the time the verdicts are for (default: now; the report's own time judges it as of then)
  --format       table (the default) or json
  --unused-days  UNUSED_DAYS, 1-3650 (default 45)
  --rotate-days  ROTATE_DAYS, 1-3650 (default 90)
Exit status: 0 no finding, 3 findings, 2 a usage error, 1 a report that cannot be read.";

/// What the report-only verdicts cannot know, said in every table and document.
pub const NOT_VERIFIED: &str = "Nothing was verified live: these verdicts come from the credential report alone \
(it is as old as its download, or up to 4 hours older, since IAM serves one report for 4 hours; it names key \
slots, not key IDs, and holds no tags, so no exemption or owner applies). keywatch's Lambda reads each candidate \
live from IAM before it reports it.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

/// What the command line asks for: a run, or the usage text.
#[derive(Debug, Clone)]
pub enum Command {
    Run(Options),
    Help,
}

/// A run's options.
#[derive(Debug, Clone)]
pub struct Options {
    /// The report's path; `-` is standard input.
    pub report: String,
    pub rules: Vec<&'static dyn Rule>,
    pub context: Context,
    pub format: Format,
}

impl Options {
    /// Reads the arguments after the program's name; `now` is the default of `--now`. An error is a message for
    /// the person at the terminal.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        now: OffsetDateTime,
    ) -> Result<Command, String> {
        let mut report = None;
        let mut rules = select_rules("all")?;
        let mut context = Context::at(now);
        let mut format = Format::Table;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    (flag.to_string(), Some(value.to_string()))
                }
                _ => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--rules" => rules = select_rules(&value()?)?,
                "--now" => {
                    let text = value()?;
                    context.now = OffsetDateTime::parse(&text, &Rfc3339).map_err(|e| {
                        format!("--now {text:?} is not an RFC 3339 time such as 2026-12-01T00:00:00Z: {e}")
                    })?;
                }
                "--format" => {
                    format = match value()?.as_str() {
                        "table" => Format::Table,
                        "json" => Format::Json,
                        other => return Err(format!("--format {other:?}: table or json")),
                    }
                }
                "--unused-days" => context.unused_days = days("--unused-days", &value()?)?,
                "--rotate-days" => context.rotate_days = days("--rotate-days", &value()?)?,
                "-h" | "--help" => return Ok(Command::Help),
                _ if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
                _ if report.is_none() => report = Some(arg),
                _ => return Err(format!("one report at a time; {arg:?} is a second")),
            }
        }
        Ok(Command::Run(Options {
            report: report.ok_or("name the credential report to read (or - for standard input)")?,
            rules,
            context,
            format,
        }))
    }
}

fn days(flag: &str, text: &str) -> Result<u32, String> {
    text.parse()
        .ok()
        .filter(|days| RULE_DAYS.contains(days))
        .ok_or_else(|| {
            format!(
                "{flag} {text:?}: a whole number of days from {} to {}",
                RULE_DAYS.start(),
                RULE_DAYS.end()
            )
        })
}

/// The verdicts on one report: the JSON document `--format json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    /// Always `false`: see [`NOT_VERIFIED`].
    pub verified_live: bool,
    pub note: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub now: OffsetDateTime,
    pub rules: Vec<&'static str>,
    pub unused_days: u32,
    pub rotate_days: u32,
    /// Report rows read, the root account's left out (its keys are another CIS control).
    pub users_examined: usize,
    pub findings: Vec<AuditFinding>,
}

/// One rule broken, as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditFinding {
    pub rule: &'static str,
    pub controls: Vec<&'static str>,
    pub user_name: String,
    pub user_arn: String,
    /// The report's key slots: `access_key_1`, `access_key_2`.
    pub keys: Vec<String>,
    pub password_enabled: bool,
    #[serde(flatten)]
    pub evidence: Evidence,
}

/// The rules' verdicts on a report: its CSV, or the AWS CLI's `aws iam get-credential-report` answer as it
/// prints it (JSON with the CSV base64-encoded in `Content`). A report that does not parse is an error naming
/// its row and column, never a clean audit.
pub fn audit(report: &[u8], options: &Options) -> crate::Result<Audit> {
    let csv = match report.trim_ascii_start().first() {
        Some(b'{') => cli_content(report)?,
        _ => report.to_vec(),
    };
    let users = credential_report::parse(&csv)?;
    Ok(evaluate(&users, options))
}

/// The CSV inside the AWS CLI's GetCredentialReport answer.
fn cli_content(json: &[u8]) -> crate::Result<Vec<u8>> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        content: String,
    }
    let malformed = |reason: String| crate::Error::ReportMalformed {
        row: 0,
        column: "Content".to_string(),
        reason,
    };
    let answer: Answer = serde_json::from_slice(json).map_err(|e| {
        malformed(format!(
            "the JSON is not an `aws iam get-credential-report` answer ({e})"
        ))
    })?;
    aws_smithy_types::base64::decode(answer.content.trim())
        .map_err(|e| malformed(format!("it is not base64 ({e})")))
}

fn evaluate(users: &[UserSnapshot], options: &Options) -> Audit {
    let mut findings = Vec::new();
    for rule in &options.rules {
        for user in users {
            for hit in rule.check(user, &options.context) {
                findings.push(AuditFinding {
                    rule: rule.id(),
                    controls: hit.controls,
                    user_name: user.name.clone(),
                    user_arn: user.arn.clone(),
                    keys: hit
                        .keys
                        .iter()
                        .map(|&index| match user.keys[index].slot {
                            Some(slot) => format!("access_key_{slot}"),
                            None => format!("key {}", index + 1),
                        })
                        .collect(),
                    password_enabled: user.password_enabled,
                    evidence: hit.evidence,
                });
            }
        }
    }
    Audit {
        verified_live: false,
        note: NOT_VERIFIED,
        now: options.context.now,
        rules: options.rules.iter().map(|rule| rule.id()).collect(),
        unused_days: options.context.unused_days,
        rotate_days: options.context.rotate_days,
        users_examined: users.len(),
        findings,
    }
}

/// The findings as a table for a terminal, grouped by rule, with the note first and a count per rule last.
pub fn table(audit: &Audit) -> String {
    let day = |t: Option<OffsetDateTime>| t.map_or("never".to_string(), |t| t.date().to_string());
    let mut rows = vec![[
        "RULE".to_string(),
        "USER".to_string(),
        "KEYS".to_string(),
        "CREATED".to_string(),
        "LAST USED".to_string(),
        "DAYS".to_string(),
    ]];
    for finding in &audit.findings {
        // A finding about one key has its dates; one about a user's keys together has none.
        let dated = finding.keys.len() == 1;
        rows.push([
            finding.rule.to_string(),
            finding.user_name.clone(),
            finding.keys.join(" "),
            if dated {
                day(finding.evidence.key_created)
            } else {
                "-".into()
            },
            if dated {
                day(finding.evidence.last_used)
            } else {
                "-".into()
            },
            finding
                .evidence
                .days
                .map_or("-".to_string(), |days| days.to_string()),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = format!(
        "keywatch-audit: report-only verdicts as of {}, rules {}.\n{NOT_VERIFIED}\n\n",
        audit.now.format(&Rfc3339).unwrap_or_default(),
        audit.rules.join(", ")
    );
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    let counts: Vec<String> = audit
        .rules
        .iter()
        .map(|rule| {
            let n = audit.findings.iter().filter(|f| f.rule == *rule).count();
            format!("{rule}: {n}")
        })
        .collect();
    out.push_str(&format!(
        "\n{} findings in {} users ({}).\n",
        audit.findings.len(),
        audit.users_examined,
        counts.join(", ")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const REPORT: &[u8] = include_bytes!("../tests/fixtures/credential-report-aws-shapes.csv");
    const NOW: OffsetDateTime = datetime!(2026-12-01 00:00 UTC);

    fn options(args: &[&str]) -> Result<Options, String> {
        match Options::parse(args.iter().map(|a| a.to_string()), NOW)? {
            Command::Run(options) => Ok(options),
            Command::Help => Err("help".to_string()),
        }
    }

    /// Every rule on the real-shaped report: (rule, user, keys, days).
    #[test]
    fn every_rule_on_a_real_shaped_report() {
        let audit = audit(
            REPORT,
            &options(&["report.csv", "--now", "2026-12-01T00:00:00Z"]).unwrap(),
        )
        .unwrap();
        let got: Vec<(&str, &str, String, Option<i64>)> = audit
            .findings
            .iter()
            .map(|f| {
                (
                    f.rule,
                    f.user_name.as_str(),
                    f.keys.join(" "),
                    f.evidence.days,
                )
            })
            .collect();
        let cis = "cis-1.11-never-used-key-on-console-user";
        let oneil = "o'neil.m+ops@corp";
        let expected = vec![
            (cis, "alice", "access_key_1".to_string(), Some(60)),
            (cis, "dave", "access_key_2".to_string(), Some(183)),
            (cis, "frank", "access_key_1".to_string(), Some(1)),
            (cis, "frank", "access_key_2".to_string(), Some(1)),
            (cis, oneil, "access_key_1".to_string(), Some(146)),
            ("unused-key", "alice", "access_key_1".to_string(), Some(60)),
            ("unused-key", "bob", "access_key_1".to_string(), Some(1023)),
            ("unused-key", "dave", "access_key_2".to_string(), Some(183)),
            ("unused-key", oneil, "access_key_1".to_string(), Some(146)),
            (
                "two-active-keys",
                "dave",
                "access_key_1 access_key_2".to_string(),
                None,
            ),
            (
                "two-active-keys",
                "frank",
                "access_key_1 access_key_2".to_string(),
                None,
            ),
            (
                "key-not-rotated",
                "bob",
                "access_key_1".to_string(),
                Some(1023),
            ),
            (
                "key-not-rotated",
                "carol",
                "access_key_1".to_string(),
                Some(1290),
            ),
            (
                "key-not-rotated",
                "dave",
                "access_key_1".to_string(),
                Some(1575),
            ),
            (
                "key-not-rotated",
                "dave",
                "access_key_2".to_string(),
                Some(183),
            ),
            (
                "key-not-rotated",
                oneil,
                "access_key_1".to_string(),
                Some(146),
            ),
        ];
        assert_eq!(got, expected);
        assert!(!audit.verified_live);
        assert_eq!(audit.users_examined, 7, "the root row is left out");
        // v7.0 2.11 counts a never-used key once it is older than UNUSED_DAYS: alice's, not frank's.
        let v7 = |user: &str| {
            audit
                .findings
                .iter()
                .find(|f| f.rule == cis && f.user_name == user)
                .is_some_and(|f| f.controls.contains(&"CIS AWS v7.0 2.11"))
        };
        assert!(v7("alice") && !v7("frank"));

        let text = table(&audit);
        assert!(text.contains("Nothing was verified live"), "{text}");
        assert!(
            text.contains("16 findings in 7 users (cis-1.11-never-used-key-on-console-user: 5, unused-key: 4, two-active-keys: 2, key-not-rotated: 5)"),
            "{text}"
        );
        let json = serde_json::to_value(&audit).unwrap();
        assert_eq!(json["verified_live"], false);
        assert_eq!(json["findings"][0]["rule"], cis);
        assert_eq!(json["findings"][0]["user_name"], "alice");
        assert_eq!(json["findings"][0]["key_created"], "2026-10-01T12:00:03Z");
        assert_eq!(json["findings"][0]["last_used"], serde_json::Value::Null);
    }

    #[test]
    fn arguments() {
        let parsed = options(&[
            "r.csv",
            "--rules=unused-key",
            "--unused-days",
            "90",
            "--format",
            "json",
        ])
        .unwrap();
        assert_eq!(parsed.report, "r.csv");
        assert_eq!(parsed.rules.len(), 1);
        assert_eq!(parsed.context.unused_days, 90);
        assert_eq!(parsed.context.rotate_days, 90);
        assert_eq!(parsed.context.now, NOW);
        assert_eq!(parsed.format, Format::Json);
        for (args, error) in [
            (&["r.csv", "--rules", "nope"][..], "unknown rule \"nope\""),
            (&["r.csv", "--unused-days", "0"][..], "from 1 to 3650"),
            (&["r.csv", "--rotate-days", "3651"][..], "from 1 to 3650"),
            (
                &["r.csv", "--now", "yesterday"][..],
                "is not an RFC 3339 time",
            ),
            (&["r.csv", "--format", "csv"][..], "table or json"),
            (&["r.csv", "--now"][..], "--now needs a value"),
            (&["r.csv", "--verbose"][..], "unknown option --verbose"),
            (&["a.csv", "b.csv"][..], "one report at a time"),
            (&[][..], "name the credential report"),
            (&["--help"][..], "help"),
        ] {
            let got = options(args).unwrap_err();
            assert!(got.contains(error), "{args:?}: {got}");
        }
    }

    /// `aws iam get-credential-report > report.json` is read as it is: the CSV in its base64 `Content`.
    #[test]
    fn the_cli_answer_is_read_as_its_csv() {
        let options = options(&["r.json"]).unwrap();
        let json = serde_json::json!({
            "Content": aws_smithy_types::base64::encode(REPORT),
            "ReportFormat": "text/csv",
            "GeneratedTime": "2026-12-01T00:00:00+00:00",
        });
        let from_json = audit(json.to_string().as_bytes(), &options).unwrap();
        let from_csv = audit(REPORT, &options).unwrap();
        assert_eq!(from_json.findings.len(), from_csv.findings.len());
        assert_eq!(from_json.findings.len(), 16);
        for (bad, reason) in [
            (r#"{"Content": "%%%"}"#, "not base64"),
            (
                r#"{"Report": "x"}"#,
                "not an `aws iam get-credential-report` answer",
            ),
        ] {
            let error = audit(bad.as_bytes(), &options).unwrap_err().to_string();
            assert!(error.contains(reason), "{bad}: {error}");
        }
    }

    #[test]
    fn a_bad_report_is_an_error_not_a_clean_audit() {
        let options = options(&["r.csv"]).unwrap();
        let error = audit(b"user,arn\nalice,arn:aws:iam::1:user/alice\n", &options).unwrap_err();
        assert!(error.to_string().contains("user_creation_time"), "{error}");
    }
}
