//! The invocation's response: everything a caller or a person needs to trust or act on the run.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use time::OffsetDateTime;

use crate::evaluate::{
    self, never_used_key, Context, Evaluation, Exempted, Finding, Pending, Rule, UNOWNED,
};
use crate::inventory::Source;
use crate::ledger::{Change, Resolved};
use crate::remediate::{Failed, Remediated, Skipped};

/// What the Security Hub sink did in one check: findings imported (new or updated) and archived. Here, with the
/// report that carries it, so the report knows no sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HubSync {
    pub imported: usize,
    pub archived: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The Lambda request ID; every alert part carries it, so subscribers can tell a retry from a new alert.
    pub run_id: String,
    pub account_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub report_generated_at: Option<OffsetDateTime>,
    pub inventory_source: Source,
    pub dry_run: bool,
    pub grace_period_hours: u32,
    /// `RULES`, `UNUSED_DAYS` and `ROTATE_DAYS`.
    #[serde(flatten)]
    pub rule_settings: RuleSettings,
    pub users_examined: usize,
    /// An event-driven check: the users its IAM changes named, the only ones it read and may resolve; `null` for
    /// a check of the whole account.
    pub users_checked: Option<Vec<String>>,
    pub keys_examined: usize,
    pub candidates_verified: usize,
    pub api_calls: ApiCalls,
    /// Elapsed milliseconds per phase (report generation, parse, verification, publish, ...).
    pub phase_ms: BTreeMap<&'static str, u64>,
    pub findings: Vec<Finding>,
    pub pending: Vec<Pending>,
    pub exempted: Vec<Exempted>,
    /// Keys deactivated by `REMEDIATION=deactivate` in this run.
    pub remediated: Vec<Remediated>,
    /// Due keys left alone, each with why (used since verification, deleted meanwhile).
    pub remediation_skipped: Vec<Skipped>,
    /// Keys that could not be deactivated; the run fails after the alert names them.
    pub remediation_failed: Vec<Failed>,
    /// `DEACTIVATE_AFTER_DAYS` when `REMEDIATION=deactivate`, else `null`.
    pub deactivate_after_days: Option<u32>,
    /// What went to Security Hub (`SECURITY_HUB=true`, not a dry run), else `null`.
    pub security_hub: Option<HubSync>,
    /// The grace period's re-checks an event-driven check scheduled: each pending user checked again when their
    /// keys' grace ends.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rechecks: Vec<crate::notify::recheck::Scheduled>,
    /// SNS message IDs, one per alert part; empty on a dry run or when nothing was published.
    pub notifications: Vec<Notification>,
    /// From the ledger: the IDs of findings no delivered alert named before; `null` without `LEDGER_TABLE`.
    pub new: Option<Vec<String>>,
    /// From the ledger: the IDs of findings an earlier delivered alert named; `null` without `LEDGER_TABLE`.
    pub open: Option<Vec<String>>,
    /// From the ledger: findings that stopped being findings since the last delivered alert, with the reason.
    pub resolved: Option<Vec<Resolved>>,
    /// Why an alert was published, or why not (`ALERTS=changes` with nothing changed, a dry run, ...); one
    /// `owner: why` per owner when routing by owner.
    pub alert: String,
    /// The owner an alert is for, when routing by owner; `null` in the invocation's report, whose findings each
    /// carry their owner.
    pub owner: Option<String>,
}

/// The rules a check ran and their settings, as its report and alerts name them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSettings {
    /// The IDs of the rules checked, in [`evaluate::RULES`] order.
    pub rules: Vec<&'static str>,
    pub unused_days: u32,
    pub rotate_days: u32,
}

impl RuleSettings {
    pub fn of(rules: &[&'static dyn Rule], unused_days: u32, rotate_days: u32) -> RuleSettings {
        RuleSettings {
            rules: rules.iter().map(|rule| rule.id()).collect(),
            unused_days,
            rotate_days,
        }
    }

    /// The rules checked.
    pub fn rules(&self) -> impl Iterator<Item = &'static dyn Rule> + '_ {
        self.rules.iter().filter_map(|id| evaluate::rule(id))
    }

    /// The rule a finding names, if keywatch knows it.
    pub fn rule_of(finding: &Finding) -> Option<&'static dyn Rule> {
        evaluate::rule(finding.rule)
    }

    /// Whether only today's rule is checked: alerts then read as they always have.
    pub fn only_default(&self) -> bool {
        self.rules == [never_used_key::ID]
    }

    /// A rule's words with these settings' values ("UNUSED_DAYS days" → "45 days").
    pub fn fill(&self, text: &str) -> String {
        Context {
            unused_days: self.unused_days,
            rotate_days: self.rotate_days,
            ..Context::at(time::OffsetDateTime::UNIX_EPOCH)
        }
        .fill(text)
    }
}

/// Today's rule at its defaults: what a check ran before `RULES`.
impl Default for RuleSettings {
    fn default() -> RuleSettings {
        RuleSettings::of(
            evaluate::DEFAULT_RULES,
            evaluate::DEFAULT_UNUSED_DAYS,
            evaluate::DEFAULT_ROTATE_DAYS,
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApiCalls {
    pub total: u64,
    /// By IAM-policy action name, e.g. `iam:ListAccessKeys`.
    pub by_operation: BTreeMap<String, u64>,
}

impl From<BTreeMap<String, u64>> for ApiCalls {
    fn from(by_operation: BTreeMap<String, u64>) -> Self {
        ApiCalls {
            total: by_operation.values().sum(),
            by_operation,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub part: usize,
    pub parts: usize,
    pub message_id: String,
    /// The owner the alert was for, when routing by owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The owner's own topic (`OWNER_TOPIC_ARNS`) this copy went to; absent for the findings topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_topic_arn: Option<String>,
}

impl Report {
    pub fn apply(&mut self, evaluation: Evaluation) {
        self.findings = evaluation.findings;
        self.pending = evaluation.pending;
        self.exempted = evaluation.exempted;
    }

    /// Every owner with something to be told: a finding (pending and exempted ones too), a deactivation or a
    /// resolution.
    pub fn owners(&self) -> BTreeSet<String> {
        let owner = |o: &Option<String>| o.clone().unwrap_or_else(|| UNOWNED.to_string());
        self.findings
            .iter()
            .chain(self.pending.iter().map(|p| &p.finding))
            .chain(self.exempted.iter().map(|e| &e.finding))
            .map(|f| owner(&f.owner))
            .chain(self.remediated.iter().map(|r| owner(&r.owner)))
            .chain(self.resolved.iter().flatten().map(|r| owner(&r.owner)))
            .collect()
    }

    /// The part of this report one owner is told: their findings, deactivations and resolutions.
    pub fn for_owner(&self, owner: &str) -> Report {
        let is = |o: &Option<String>| o.as_deref().unwrap_or(UNOWNED) == owner;
        let findings: Vec<Finding> = self
            .findings
            .iter()
            .filter(|f| is(&f.owner))
            .cloned()
            .collect();
        let ids: BTreeSet<&str> = findings.iter().map(|f| f.finding_id.as_str()).collect();
        let of_ids = |list: &Option<Vec<String>>| {
            list.as_ref().map(|list| {
                list.iter()
                    .filter(|id| ids.contains(id.as_str()))
                    .cloned()
                    .collect()
            })
        };
        Report {
            pending: self
                .pending
                .iter()
                .filter(|p| is(&p.finding.owner))
                .cloned()
                .collect(),
            exempted: self
                .exempted
                .iter()
                .filter(|e| is(&e.finding.owner))
                .cloned()
                .collect(),
            remediated: self
                .remediated
                .iter()
                .filter(|r| is(&r.owner))
                .cloned()
                .collect(),
            remediation_skipped: self
                .remediation_skipped
                .iter()
                .filter(|r| ids.contains(r.finding_id.as_str()))
                .cloned()
                .collect(),
            remediation_failed: self
                .remediation_failed
                .iter()
                .filter(|r| ids.contains(r.finding_id.as_str()))
                .cloned()
                .collect(),
            new: of_ids(&self.new),
            open: of_ids(&self.open),
            resolved: self
                .resolved
                .as_ref()
                .map(|list| list.iter().filter(|r| is(&r.owner)).cloned().collect()),
            owner: Some(owner.to_string()),
            findings,
            notifications: Vec::new(),
            ..self.clone()
        }
    }

    /// Fills `new`, `open` and `resolved` from the findings' ledger history; new findings first.
    pub fn apply_history(&mut self, resolved: Vec<Resolved>) {
        self.findings
            .sort_by_key(|f| f.history.change != Some(Change::New));
        let ids = |change| {
            self.findings
                .iter()
                .filter(|f| f.history.change == Some(change))
                .map(|f| f.finding_id.clone())
                .collect()
        };
        self.new = Some(ids(Change::New));
        self.open = Some(ids(Change::Open));
        self.resolved = Some(resolved);
    }
}
