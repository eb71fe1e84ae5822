//! Settings, read from environment variables once at cold start. A bad value fails the init and names the
//! variable, so a misconfigured deployment never runs a half-configured check.

use std::collections::BTreeMap;

use aws_config::retry::RetryMode;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::aws::Services;
use crate::error::{Error, Result};
use crate::evaluate::{self, Rule};
use crate::inventory::Source;
use crate::model::UserIdentity;

/// `REMEDIATION` and `DEACTIVATE_AFTER_DAYS`: a setting, so it lives with the settings (remediate acts on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Remediation {
    #[default]
    Off,
    /// Deactivate a finding at least this many days after the first delivered alert that named it.
    Deactivate { after_days: u32 },
}

pub const DEFAULT_DEACTIVATE_AFTER_DAYS: u32 = 7;
pub const MAX_DEACTIVATE_AFTER_DAYS: u32 = 3_650;

impl Remediation {
    /// The notice period in days, when keys are deactivated.
    pub fn notice_days(&self) -> Option<u32> {
        match self {
            Remediation::Off => None,
            Remediation::Deactivate { after_days } => Some(*after_days),
        }
    }
}

pub mod fleet;
pub use fleet::{Fleet, MemberRole, Scope};

pub const DEFAULT_EXEMPT_TAG_KEY: &str = "keywatch:exempt";
pub const DEFAULT_OWNER_TAG_KEY: &str = "owner";

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where alerts go; `None` only when every run is a dry run.
    pub topic_arn: Option<String>,
    /// Every invocation is a dry run (`DRY_RUN=true`): useful before a topic exists.
    pub dry_run_only: bool,
    pub grace_period_hours: u32,
    pub exemptions: Exemptions,
    pub notify_when_clean: bool,
    /// Attempts per AWS call, including the first (`AWS_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// `AWS_RETRY_MODE`: `standard` (default) or `adaptive`.
    pub retry_mode: RetryMode,
    /// How many users are read live at once.
    pub concurrency: usize,
    pub inventory_source: Source,
    /// Which accounts are checked, and how they are reached.
    pub fleet: Fleet,
    /// The function's partition (`aws`, `aws-cn`, ...), for the member-role ARNs.
    pub partition: &'static str,
    /// `REMEDIATION` and `DEACTIVATE_AFTER_DAYS`.
    pub remediation: Remediation,
    /// `SECURITY_HUB=true`: findings into each checked account's hub in this region.
    pub security_hub: Option<String>,
    /// `LEDGER_TABLE`: the DynamoDB table that remembers what was alerted; `None` for a local run by hand.
    pub ledger_table: Option<String>,
    /// `ALERTS` and `REMIND_EVERY_DAYS`.
    pub alerts: Alerts,
    /// `OWNER_TAG_KEY`: the user tag (else the account tag) that names a finding's owner; `None` turns routing off.
    pub owner_tag_key: Option<String>,
    /// `CHAT_NOTIFICATIONS`: what HTTPS subscribers receive.
    pub chat: Chat,
    /// `OWNER_TOPIC_ARNS`: an owner's own topic, which gets that owner's alerts and notices too (a team's chat
    /// channel: AWS's chat integration subscribes to a whole topic, with no filter policy).
    pub owner_topics: BTreeMap<String, String>,
    /// `RECHECK_QUEUE_ARN`, `RECHECK_ROLE_ARN`, `RECHECK_SCHEDULE_GROUP`: where a re-check schedule sends a pending
    /// user's change when its grace ends; `None`: no schedule (the sweep is the backstop).
    pub recheck: Option<Recheck>,
    /// `RULES`: the rules checked, in [`evaluate::RULES`] order.
    pub rules: Vec<&'static dyn Rule>,
    /// `UNUSED_DAYS` and `ROTATE_DAYS`, the rules' settings.
    pub unused_days: u32,
    pub rotate_days: u32,
}

impl Settings {
    /// What the rules read besides a user: `now` and their settings.
    pub fn context(&self, now: time::OffsetDateTime) -> evaluate::Context {
        evaluate::Context {
            now,
            unused_days: self.unused_days,
            rotate_days: self.rotate_days,
        }
    }

    /// The optional AWS services these settings call: init builds only their clients.
    pub fn services(&self) -> Services {
        Services {
            queue: self.fleet.work_queue_url.is_some(),
            organizations: self.fleet.scope == Scope::Organization,
            security_hub: self.security_hub.is_some(),
            scheduler: self.recheck.is_some(),
        }
    }
}

/// When a check publishes (`ALERTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alerts {
    /// Every run with findings publishes all of them (the default without the variable).
    EveryRun,
    /// Only what changed since the last delivered alert (new, deactivated, resolved), plus a reminder of what is
    /// still open every `remind_every_days`. Needs the ledger.
    Changes { remind_every_days: u32 },
}

pub const DEFAULT_REMIND_EVERY_DAYS: u32 = 7;

/// An owner's topic is named with this prefix: the function's role may publish only to topics so named, in
/// its own account and region.
pub const OWNER_TOPIC_PREFIX: &str = "keywatch-owner-";

/// Where the grace period's re-check goes (an event-driven check with `GRACE_PERIOD_HOURS` > 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recheck {
    /// The event queue the schedule sends the change to.
    pub queue_arn: String,
    /// The role EventBridge Scheduler sends as.
    pub role_arn: String,
    /// The schedule group the function may create schedules in.
    pub group: String,
}

/// `CHAT_NOTIFICATIONS`: the `https` variant of every publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Chat {
    /// HTTPS subscribers get the JSON document, as SQS and Lambda subscribers do.
    #[default]
    Off,
    /// HTTPS subscribers get a custom notification, which AWS's chat integration (Amazon Q Developer in chat
    /// applications) renders in Slack and Microsoft Teams.
    Custom,
}

/// Which users are exempt: by name, path or ARN glob, or by a tag key.
#[derive(Debug, Clone)]
pub struct Exemptions {
    patterns: Vec<String>,
    /// Matched against user names, ignoring case: IAM user names are unique regardless of case.
    names: GlobSet,
    /// Matched against `path + name` and the ARN, with case: IAM paths (and so ARNs) are case-sensitive.
    paths: GlobSet,
    pub tag_key: Option<String>,
}

impl Exemptions {
    pub fn new(patterns: &[&str], tag_key: Option<&str>) -> Result<Self> {
        let set = |case_insensitive: bool| {
            let mut builder = GlobSetBuilder::new();
            for pattern in patterns {
                let glob = GlobBuilder::new(pattern)
                    .case_insensitive(case_insensitive)
                    .build()
                    .map_err(|error| Error::Config {
                        variable: "EXEMPT_USERS",
                        reason: format!(
                            "pattern {pattern:?} is not a valid glob: {}",
                            error.kind()
                        ),
                    })?;
                builder.add(glob);
            }
            builder.build().map_err(|error| Error::Config {
                variable: "EXEMPT_USERS",
                reason: error.to_string(),
            })
        };
        Ok(Exemptions {
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            // `svc-*` also exempts `SVC-deploy`, as IAM sees one user; `/ci/*` does not match `/CI/`.
            names: set(true)?,
            paths: set(false)?,
            tag_key: tag_key.map(str::to_string),
        })
    }

    /// The pattern that exempts this user by name, path or ARN, if any.
    pub fn pattern_for(&self, user: &UserIdentity) -> Option<&str> {
        let path_and_name = format!("{}{}", user.path, user.name);
        self.names
            .matches(user.name.as_str())
            .into_iter()
            .chain(self.paths.matches(path_and_name.as_str()))
            .chain(self.paths.matches(user.arn.as_str()))
            .min()
            .map(|index| self.patterns[index].as_str())
    }
}

impl Settings {
    /// Reads settings through `lookup` (the process environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let dry_run_only = parse_bool("DRY_RUN", var("DRY_RUN"), false)?;
        let region = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION"));
        let topic_arn = match var("FINDINGS_TOPIC_ARN") {
            Some(arn) => Some(validate_topic_arn(&arn, region.as_deref())?),
            None if dry_run_only => None,
            None => {
                return Err(Error::Config {
                    variable: "FINDINGS_TOPIC_ARN",
                    reason: "not set; set it to the SNS topic ARN for alerts, or set DRY_RUN=true"
                        .to_string(),
                })
            }
        };

        let grace_period_hours = parse_number(
            "GRACE_PERIOD_HOURS",
            var("GRACE_PERIOD_HOURS"),
            0,
            0,
            MAX_GRACE_HOURS,
        )?;
        let patterns = var("EXEMPT_USERS").unwrap_or_default();
        let patterns: Vec<&str> = patterns
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        // An explicitly empty tag key turns its feature off; unset keeps the default.
        let tag_key_of = |variable: &'static str, default: &str| match lookup(variable) {
            None => Ok(Some(default.to_string())),
            Some(key) if key.trim().is_empty() => Ok(None),
            Some(key) if key.trim().chars().count() > 128 => Err(Error::Config {
                variable,
                reason: "IAM tag keys are at most 128 characters".to_string(),
            }),
            Some(key) => Ok(Some(key.trim().to_string())),
        };
        let tag_key = tag_key_of("EXEMPT_TAG_KEY", DEFAULT_EXEMPT_TAG_KEY)?;
        let owner_tag_key = tag_key_of("OWNER_TAG_KEY", DEFAULT_OWNER_TAG_KEY)?;
        let owner_tag_key_is_off = owner_tag_key.is_none();
        let exemptions = Exemptions::new(&patterns, tag_key.as_deref())?;
        let ledger_table = var("LEDGER_TABLE")
            .map(|name| validate_table_name(&name))
            .transpose()?;
        let remind_every_days = parse_number(
            "REMIND_EVERY_DAYS",
            var("REMIND_EVERY_DAYS"),
            DEFAULT_REMIND_EVERY_DAYS,
            1,
            MAX_DEACTIVATE_AFTER_DAYS,
        )?;
        let alerts = match var("ALERTS").map(|m| m.to_ascii_lowercase()).as_deref() {
            None | Some("every-run") => Alerts::EveryRun,
            Some("changes") => Alerts::Changes { remind_every_days },
            Some(other) => {
                return Err(Error::Config {
                    variable: "ALERTS",
                    reason: format!("{other:?} is not every-run or changes"),
                })
            }
        };

        let rules = match var("RULES") {
            None => evaluate::DEFAULT_RULES.to_vec(),
            Some(list) => evaluate::select_rules(&list).map_err(|reason| Error::Config {
                variable: "RULES",
                reason,
            })?,
        };
        let rule_days = |variable: &'static str, default: u32| {
            parse_number(
                variable,
                var(variable),
                default,
                *evaluate::RULE_DAYS.start(),
                *evaluate::RULE_DAYS.end(),
            )
        };
        let recheck = match (
            var("RECHECK_QUEUE_ARN"),
            var("RECHECK_ROLE_ARN"),
            var("RECHECK_SCHEDULE_GROUP"),
        ) {
            (None, None, None) => None,
            (Some(queue_arn), Some(role_arn), Some(group)) => Some(Recheck {
                queue_arn,
                role_arn,
                group,
            }),
            (queue, role, _) => {
                return Err(Error::Config {
                    variable: match (queue, role) {
                        (None, _) => "RECHECK_QUEUE_ARN",
                        (_, None) => "RECHECK_ROLE_ARN",
                        _ => "RECHECK_SCHEDULE_GROUP",
                    },
                    reason: "not set, but the other RECHECK_ variables are: set all three (the template does \
                             with EventChecks and a grace period), or none"
                        .to_string(),
                })
            }
        };
        let settings = Settings {
            recheck,
            rules,
            unused_days: rule_days("UNUSED_DAYS", evaluate::DEFAULT_UNUSED_DAYS)?,
            rotate_days: rule_days("ROTATE_DAYS", evaluate::DEFAULT_ROTATE_DAYS)?,
            topic_arn,
            dry_run_only,
            grace_period_hours,
            exemptions,
            notify_when_clean: parse_bool("NOTIFY_WHEN_CLEAN", var("NOTIFY_WHEN_CLEAN"), false)?,
            max_attempts: parse_number("AWS_MAX_ATTEMPTS", var("AWS_MAX_ATTEMPTS"), 10, 1, 50)?,
            retry_mode: match var("AWS_RETRY_MODE")
                .map(|m| m.to_ascii_lowercase())
                .as_deref()
            {
                None | Some("standard") => RetryMode::Standard,
                Some("adaptive") => RetryMode::Adaptive,
                Some(other) => {
                    return Err(Error::Config {
                        variable: "AWS_RETRY_MODE",
                        reason: format!("{other:?} is not standard or adaptive"),
                    })
                }
            },
            concurrency: parse_number("CONCURRENCY", var("CONCURRENCY"), 8, 1, 64)? as usize,
            fleet: Fleet::from_vars(var)?,
            security_hub: match (
                parse_bool("SECURITY_HUB", var("SECURITY_HUB"), false)?,
                &region,
            ) {
                (false, _) => None,
                (true, Some(region)) => Some(region.clone()),
                (true, None) => return Err(Error::Config {
                    variable: "SECURITY_HUB",
                    reason:
                        "needs AWS_REGION (Lambda sets it): findings go to the hub of this region"
                            .to_string(),
                }),
            },
            remediation: match var("REMEDIATION")
                .map(|m| m.to_ascii_lowercase())
                .as_deref()
            {
                None | Some("off") => Remediation::Off,
                Some("deactivate") => Remediation::Deactivate {
                    after_days: parse_number(
                        "DEACTIVATE_AFTER_DAYS",
                        var("DEACTIVATE_AFTER_DAYS"),
                        DEFAULT_DEACTIVATE_AFTER_DAYS,
                        0,
                        MAX_DEACTIVATE_AFTER_DAYS,
                    )?,
                },
                Some(other) => {
                    return Err(Error::Config {
                        variable: "REMEDIATION",
                        reason: format!(
                            "{other:?} is not off or deactivate (keywatch never deletes keys)"
                        ),
                    })
                }
            },
            partition: region.as_deref().map_or("aws", partition_of),
            inventory_source: match var("INVENTORY_SOURCE") {
                None => Source::default(),
                Some(name) => Source::parse(&name).ok_or_else(|| Error::Config {
                    variable: "INVENTORY_SOURCE",
                    reason: format!("{name:?} is not {}", Source::NAMES),
                })?,
            },
            ledger_table,
            alerts,
            owner_tag_key,
            chat: match var("CHAT_NOTIFICATIONS")
                .map(|m| m.to_ascii_lowercase())
                .as_deref()
            {
                None | Some("off") => Chat::Off,
                Some("custom") => Chat::Custom,
                Some(other) => {
                    return Err(Error::Config {
                        variable: "CHAT_NOTIFICATIONS",
                        reason: format!(
                            "{other:?} is not off or custom (custom: the https variant is a chat custom notification)"
                        ),
                    })
                }
            },
            owner_topics: match var("OWNER_TOPIC_ARNS") {
                None => BTreeMap::new(),
                Some(_) if owner_tag_key_is_off => {
                    return Err(Error::Config {
                        variable: "OWNER_TOPIC_ARNS",
                        reason: "set, but OWNER_TAG_KEY is empty: without routing by owner no alert has an \
                                 owner to send to its topic"
                            .to_string(),
                    })
                }
                Some(pairs) => parse_owner_topics(&pairs, region.as_deref())?,
            },
        };
        // Both promise something across runs ("after N days of alerts", "only what changed"): only the ledger
        // can keep that promise.
        if settings.ledger_table.is_none() {
            let needs = match (settings.remediation, settings.alerts) {
                (Remediation::Deactivate { .. }, _) => Some("REMEDIATION=deactivate"),
                (_, Alerts::Changes { .. }) => Some("ALERTS=changes"),
                _ => None,
            };
            if let Some(needs) = needs {
                return Err(Error::Config {
                    variable: "LEDGER_TABLE",
                    reason: format!(
                        "not set, and {needs} needs the ledger: it counts the notice period from the first \
                         delivered alert and remembers what was said. Set LEDGER_TABLE to the ledger table's name \
                         (template.yaml creates it), or use REMEDIATION=off and ALERTS=every-run"
                    ),
                });
            }
        }
        Ok(settings)
    }

    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// Ten years: a longer grace period is a typo, not a policy.
pub const MAX_GRACE_HOURS: u32 = 87_600;

fn parse_bool(variable: &'static str, value: Option<String>, default: bool) -> Result<bool> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(Error::Config {
            variable,
            reason: format!("{value:?} is not true or false"),
        }),
    }
}

fn parse_number(
    variable: &'static str,
    value: Option<String>,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Error::Config {
            variable,
            reason: format!("{value:?} is not a whole number from {min} to {max}"),
        }),
    }
}

/// The partition a region belongs to, so a topic in another partition is caught at init, not at publish.
fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else {
        "aws"
    }
}

/// A DynamoDB table name: 3 to 255 of `[A-Za-z0-9_.-]`.
fn validate_table_name(name: &str) -> Result<String> {
    let valid = (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if valid {
        Ok(name.to_string())
    } else {
        Err(Error::Config {
            variable: "LEDGER_TABLE",
            reason: format!(
                "{name:?} is not a DynamoDB table name (3 to 255 letters, digits, `_`, `.` or `-`)"
            ),
        })
    }
}

/// `owner=arn,owner=arn`. A tag value cannot hold a comma, and an ARN no `=`: the last `=` of an entry ends
/// its owner.
fn parse_owner_topics(pairs: &str, region: Option<&str>) -> Result<BTreeMap<String, String>> {
    let invalid = |reason: String| Error::Config {
        variable: "OWNER_TOPIC_ARNS",
        reason,
    };
    let mut topics = BTreeMap::new();
    for entry in pairs.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((owner, arn)) = entry.rsplit_once('=') else {
            return Err(invalid(format!(
                "{entry:?} is not owner=TOPIC_ARN (e.g. team-a=arn:aws:sns:us-east-1:123456789012:{OWNER_TOPIC_PREFIX}team-a)"
            )));
        };
        let (owner, arn) = (owner.trim(), arn.trim());
        if owner.is_empty() {
            return Err(invalid(format!("{entry:?} names no owner")));
        }
        let arn = validate_topic_arn_of("OWNER_TOPIC_ARNS", arn, region)?;
        if let Some(region) = region.filter(|r| arn.split(':').nth(3) != Some(*r)) {
            return Err(invalid(format!(
                "{arn:?} is not in {region}: an owner's topic is in the function's own account and region"
            )));
        }
        if !arn
            .rsplit(':')
            .next()
            .is_some_and(|name| name.starts_with(OWNER_TOPIC_PREFIX))
        {
            return Err(invalid(format!(
                "{arn:?}: an owner's topic must be named {OWNER_TOPIC_PREFIX}...; the function may publish only to \
                 topics so named"
            )));
        }
        if topics.insert(owner.to_string(), arn).is_some() {
            return Err(invalid(format!("owner {owner:?} is listed twice")));
        }
    }
    Ok(topics)
}

fn validate_topic_arn(arn: &str, region: Option<&str>) -> Result<String> {
    validate_topic_arn_of("FINDINGS_TOPIC_ARN", arn, region)
}

fn validate_topic_arn_of(
    variable: &'static str,
    arn: &str,
    region: Option<&str>,
) -> Result<String> {
    let invalid = |reason: String| Error::Config { variable, reason };
    let parts: Vec<&str> = arn.split(':').collect();
    let well_formed = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "sns"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !parts[5].is_empty()
        && parts[5].len() <= 256
        && parts[5]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !well_formed {
        return Err(invalid(format!(
            "{arn:?} is not an SNS topic ARN (expected arn:aws:sns:REGION:ACCOUNT_ID:TOPIC_NAME)"
        )));
    }
    if let Some(region) = region {
        let expected = partition_of(region);
        if parts[1] != expected {
            return Err(invalid(format!(
                "{arn:?} is in partition {}, but this function runs in {region} ({expected}); SNS cannot publish across partitions",
                parts[1]
            )));
        }
    }
    Ok(arn.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:keywatch-findings";
    const LONG_KEY: &str = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";

    fn settings(vars: &[(&str, &str)]) -> Result<Settings> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    fn rejected_variable(vars: &[(&str, &str)]) -> &'static str {
        match settings(vars) {
            Err(Error::Config { variable, .. }) => variable,
            other => panic!("expected a config error for {vars:?}, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let s = settings(&[("FINDINGS_TOPIC_ARN", TOPIC)]).unwrap();
        assert_eq!(s.topic_arn.as_deref(), Some(TOPIC));
        assert_eq!(s.grace_period_hours, 0);
        assert!(!s.notify_when_clean && !s.dry_run_only);
        assert_eq!(
            s.exemptions.tag_key.as_deref(),
            Some(DEFAULT_EXEMPT_TAG_KEY)
        );
        assert_eq!((s.max_attempts, s.concurrency), (10, 8));
        assert_eq!(s.remediation, Remediation::Off);
        assert_eq!(
            (s.alerts, s.ledger_table.as_deref()),
            (Alerts::EveryRun, None)
        );
        assert_eq!(s.owner_tag_key.as_deref(), Some("owner"));
        assert_eq!(
            s.chat,
            Chat::Off,
            "HTTPS subscribers keep the JSON document"
        );
        let chat = settings(&[
            ("FINDINGS_TOPIC_ARN", TOPIC),
            ("CHAT_NOTIFICATIONS", "Custom"),
        ])
        .unwrap();
        assert_eq!(chat.chat, Chat::Custom);
        assert!(s.owner_topics.is_empty());
        let owner_topic = "arn:aws:sns:us-east-1:123456789012:keywatch-owner-a";
        let owners = settings(&[
            ("FINDINGS_TOPIC_ARN", TOPIC),
            ("AWS_REGION", "us-east-1"),
            (
                "OWNER_TOPIC_ARNS",
                &format!(" team-a = {owner_topic}, Équipe=données={owner_topic}b ,"),
            ),
        ])
        .unwrap();
        assert_eq!(
            owners.owner_topics,
            BTreeMap::from([
                ("team-a".to_string(), owner_topic.to_string()),
                ("Équipe=données".to_string(), format!("{owner_topic}b")),
            ]),
            "a tag value may hold `=`; the ARN never does"
        );
        let off = settings(&[("FINDINGS_TOPIC_ARN", TOPIC), ("OWNER_TAG_KEY", " ")]).unwrap();
        assert_eq!(off.owner_tag_key, None, "empty turns routing off");
        let on = settings(&[
            ("FINDINGS_TOPIC_ARN", TOPIC),
            ("REMEDIATION", "Deactivate"),
            ("LEDGER_TABLE", "keywatch-ledger"),
            ("ALERTS", "changes"),
        ])
        .unwrap();
        assert_eq!(on.remediation, Remediation::Deactivate { after_days: 7 });
        assert_eq!(
            on.alerts,
            Alerts::Changes {
                remind_every_days: 7
            }
        );
        assert_eq!(on.ledger_table.as_deref(), Some("keywatch-ledger"));
    }

    /// `RULES` defaults to today's rule alone, takes IDs or `all`, and fails the init on an unknown ID, naming
    /// it; `UNUSED_DAYS` and `ROTATE_DAYS` take 1 to 3650.
    #[test]
    fn rules_and_their_days() {
        let ids = |s: &Settings| s.rules.iter().map(|r| r.id()).collect::<Vec<_>>();
        let default = settings(&[("FINDINGS_TOPIC_ARN", TOPIC)]).unwrap();
        assert_eq!(ids(&default), ["cis-1.11-never-used-key-on-console-user"]);
        assert_eq!((default.unused_days, default.rotate_days), (45, 90));
        let all = settings(&[("FINDINGS_TOPIC_ARN", TOPIC), ("RULES", " ALL ")]).unwrap();
        assert_eq!(
            ids(&all),
            [
                "cis-1.11-never-used-key-on-console-user",
                "unused-key",
                "two-active-keys",
                "key-not-rotated"
            ]
        );
        let some = settings(&[
            ("FINDINGS_TOPIC_ARN", TOPIC),
            ("RULES", "key-not-rotated, unused-key"),
            ("UNUSED_DAYS", "90"),
            ("ROTATE_DAYS", "3650"),
        ])
        .unwrap();
        assert_eq!(ids(&some), ["unused-key", "key-not-rotated"]);
        assert_eq!((some.unused_days, some.rotate_days), (90, 3650));
        match settings(&[
            ("FINDINGS_TOPIC_ARN", TOPIC),
            ("RULES", "unused-key,unused-keys"),
        ]) {
            Err(Error::Config { variable, reason }) => {
                assert_eq!(variable, "RULES");
                assert!(reason.contains("\"unused-keys\""), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        for (variable, value) in [
            ("UNUSED_DAYS", "0"),
            ("UNUSED_DAYS", "3651"),
            ("ROTATE_DAYS", "ninety"),
            ("RULES", ","),
        ] {
            assert_eq!(
                rejected_variable(&[("FINDINGS_TOPIC_ARN", TOPIC), (variable, value)]),
                variable
            );
        }
    }

    #[test]
    fn topic_is_required_unless_dry_run_only() {
        assert_eq!(rejected_variable(&[]), "FINDINGS_TOPIC_ARN");
        assert!(settings(&[("DRY_RUN", "true")])
            .unwrap()
            .topic_arn
            .is_none());
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("FINDINGS_TOPIC_ARN", "not-an-arn")],
                "FINDINGS_TOPIC_ARN",
            ),
            (
                &[("FINDINGS_TOPIC_ARN", "arn:aws:sqs:us-east-1:123456789012:q")],
                "FINDINGS_TOPIC_ARN",
            ),
            (
                &[
                    (
                        "FINDINGS_TOPIC_ARN",
                        "arn:aws-cn:sns:cn-north-1:123456789012:t",
                    ),
                    ("AWS_REGION", "us-east-1"),
                ],
                "FINDINGS_TOPIC_ARN",
            ),
            (
                &[
                    ("FINDINGS_TOPIC_ARN", TOPIC),
                    ("CHAT_NOTIFICATIONS", "slack"),
                ],
                "CHAT_NOTIFICATIONS",
            ),
            (
                &[("FINDINGS_TOPIC_ARN", TOPIC), ("OWNER_TOPIC_ARNS", "team-a")],
                "OWNER_TOPIC_ARNS",
            ),
            (
                &[("FINDINGS_TOPIC_ARN", TOPIC), ("OWNER_TOPIC_ARNS", "team-a=arn:aws:sns:us-east-1:123456789012:alerts")],
                "OWNER_TOPIC_ARNS",
            ),
            (
                &[
                    ("FINDINGS_TOPIC_ARN", TOPIC),
                    ("AWS_REGION", "us-east-1"),
                    ("OWNER_TOPIC_ARNS", "team-a=arn:aws:sns:eu-west-1:123456789012:keywatch-owner-a"),
                ],
                "OWNER_TOPIC_ARNS",
            ),
            (
                &[
                    ("FINDINGS_TOPIC_ARN", TOPIC),
                    ("OWNER_TOPIC_ARNS", "a=arn:aws:sns:us-east-1:123456789012:keywatch-owner-a,a=arn:aws:sns:us-east-1:123456789012:keywatch-owner-b"),
                ],
                "OWNER_TOPIC_ARNS",
            ),
            (
                &[
                    ("FINDINGS_TOPIC_ARN", TOPIC),
                    ("OWNER_TAG_KEY", " "),
                    ("OWNER_TOPIC_ARNS", "a=arn:aws:sns:us-east-1:123456789012:keywatch-owner-a"),
                ],
                "OWNER_TOPIC_ARNS",
            ),
            (
                &[("FINDINGS_TOPIC_ARN", TOPIC), ("GRACE_PERIOD_HOURS", "-1")],
                "GRACE_PERIOD_HOURS",
            ),
            (
                &[("FINDINGS_TOPIC_ARN", TOPIC), ("GRACE_PERIOD_HOURS", "1.5")],
                "GRACE_PERIOD_HOURS",
            ),
            (
                &[("FINDINGS_TOPIC_ARN", TOPIC), ("EXEMPT_USERS", "svc-[")],
                "EXEMPT_USERS",
            ),
            (
                &[
                    ("FINDINGS_TOPIC_ARN", TOPIC),
                    ("NOTIFY_WHEN_CLEAN", "sometimes"),
                ],
                "NOTIFY_WHEN_CLEAN",
            ),
            (
                &[("FINDINGS_TOPIC_ARN", TOPIC), ("DRY_RUN", "maybe")],
                "DRY_RUN",
            ),
            (
                &[("FINDINGS_TOPIC_ARN", TOPIC), ("CONCURRENCY", "0")],
                "CONCURRENCY",
            ),
            (
                &[("FINDINGS_TOPIC_ARN", TOPIC), ("AWS_RETRY_MODE", "legacy")],
                "AWS_RETRY_MODE",
            ),
            (
                &[("FINDINGS_TOPIC_ARN", TOPIC), ("REMEDIATION", "delete")],
                "REMEDIATION",
            ),
            (
                &[
                    ("FINDINGS_TOPIC_ARN", TOPIC),
                    ("REMEDIATION", "deactivate"),
                    ("DEACTIVATE_AFTER_DAYS", "3651"),
                    ("LEDGER_TABLE", "ledger"),
                ],
                "DEACTIVATE_AFTER_DAYS",
            ),
            // Promises across runs need the ledger.
            (
                &[("FINDINGS_TOPIC_ARN", TOPIC), ("REMEDIATION", "deactivate")],
                "LEDGER_TABLE",
            ),
            (
                &[("FINDINGS_TOPIC_ARN", TOPIC), ("ALERTS", "changes")],
                "LEDGER_TABLE",
            ),
            (
                &[("FINDINGS_TOPIC_ARN", TOPIC), ("LEDGER_TABLE", "a b")],
                "LEDGER_TABLE",
            ),
            (
                &[("FINDINGS_TOPIC_ARN", TOPIC), ("ALERTS", "daily")],
                "ALERTS",
            ),
            (
                &[("FINDINGS_TOPIC_ARN", TOPIC), ("OWNER_TAG_KEY", LONG_KEY)],
                "OWNER_TAG_KEY",
            ),
            (
                &[("FINDINGS_TOPIC_ARN", TOPIC), ("REMIND_EVERY_DAYS", "0")],
                "REMIND_EVERY_DAYS",
            ),
        ];
        for (vars, variable) in cases {
            assert_eq!(rejected_variable(vars), *variable, "{vars:?}");
        }
    }

    #[test]
    fn partition_matches_region() {
        let s = settings(&[
            (
                "FINDINGS_TOPIC_ARN",
                "arn:aws-cn:sns:cn-north-1:123456789012:t",
            ),
            ("AWS_REGION", "cn-north-1"),
        ]);
        assert!(s.is_ok());
    }

    #[test]
    fn exemption_patterns_match_name_path_or_arn() {
        let ex = Exemptions::new(
            &["svc-*", "arn:aws:iam::*:user/ci/*", "/break-glass/*"],
            None,
        )
        .unwrap();
        let user = |name: &str, path: &str| UserIdentity {
            name: name.to_string(),
            arn: format!("arn:aws:iam::123456789012:user{path}{name}"),
            path: path.to_string(),
            created: time::OffsetDateTime::UNIX_EPOCH,
            password_last_used: None,
        };
        assert_eq!(ex.pattern_for(&user("svc-deploy", "/")), Some("svc-*"));
        assert_eq!(
            ex.pattern_for(&user("SVC-Deploy", "/")),
            Some("svc-*"),
            "IAM names ignore case"
        );
        assert_eq!(
            ex.pattern_for(&user("Runner", "/CI/")),
            None,
            "paths and ARNs keep their case, as IAM does"
        );
        assert_eq!(
            ex.pattern_for(&user("Runner", "/ci/")),
            Some("arn:aws:iam::*:user/ci/*"),
            "a name of any case under the path"
        );
        assert_eq!(ex.pattern_for(&user("x", "/Break-Glass/")), None);
        assert_eq!(
            ex.pattern_for(&user("runner", "/ci/")),
            Some("arn:aws:iam::*:user/ci/*")
        );
        assert_eq!(
            ex.pattern_for(&user("root-ish", "/break-glass/")),
            Some("/break-glass/*")
        );
        assert_eq!(ex.pattern_for(&user("alice", "/")), None);
        assert_eq!(ex.pattern_for(&user("my-svc-x", "/")), None);
    }
}
