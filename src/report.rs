//! The invocation's response: everything a caller or a person needs to trust or act on the run.

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;

use crate::evaluate::{Evaluation, Exempted, Finding, Pending};
use crate::inventory::Source;
use crate::ledger::{Change, Resolved};
use crate::notify::security_hub::HubSync;
use crate::remediate::{Failed, Remediated, Skipped};

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
    pub users_examined: usize,
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
    /// SNS message IDs, one per alert part; empty on a dry run or when nothing was published.
    pub notifications: Vec<Notification>,
    /// From the ledger: the IDs of findings no delivered alert named before; `null` without `LEDGER_TABLE`.
    pub new: Option<Vec<String>>,
    /// From the ledger: the IDs of findings an earlier delivered alert named; `null` without `LEDGER_TABLE`.
    pub open: Option<Vec<String>>,
    /// From the ledger: findings that stopped being findings since the last delivered alert, with the reason.
    pub resolved: Option<Vec<Resolved>>,
    /// Why an alert was published, or why not (`ALERTS=changes` with nothing changed, a dry run, ...).
    pub alert: String,
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
}

impl Report {
    pub fn apply(&mut self, evaluation: Evaluation) {
        self.findings = evaluation.findings;
        self.pending = evaluation.pending;
        self.exempted = evaluation.exempted;
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
