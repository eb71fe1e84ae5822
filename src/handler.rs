//! One invocation, start to finish: event → config → inventory → evaluate → verify → notify → report.

use std::collections::BTreeMap;
use std::time::Instant;

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::aws::{aws_error, Clients};
use crate::config::Settings;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::evaluate::{self, Policy};
use crate::event::Invocation;
use crate::inventory::elapsed_ms;
use crate::notify::sns::SnsSink;
use crate::notify::Sink;
use crate::report::{ApiCalls, Report};
use crate::verify;

/// Built once at cold start and shared by every invocation of the container.
pub struct Keywatch<S: Sink = SnsSink> {
    settings: Settings,
    clients: Clients,
    sink: Option<S>,
    account_id: OnceCell<String>,
}

impl Keywatch<SnsSink> {
    pub fn new(settings: Settings, clients: Clients) -> Self {
        let sink = settings.topic_arn.clone().map(|topic_arn| SnsSink {
            client: clients.sns.clone(),
            topic_arn,
        });
        Self::with_sink(settings, clients, sink)
    }
}

impl<S: Sink> Keywatch<S> {
    pub fn with_sink(settings: Settings, clients: Clients, sink: Option<S>) -> Self {
        Keywatch {
            settings,
            clients,
            sink,
            account_id: OnceCell::new(),
        }
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Report> {
        let invocation = Invocation::decode(event.payload)?;
        let deadline = Deadline::from_lambda(event.context.deadline());
        self.run(&invocation, &event.context.request_id, &deadline).await.inspect_err(|error| {
            tracing::error!(run_id = %event.context.request_id, error_type = error.error_type(), %error, "keywatch run failed");
        })
    }

    pub async fn run(
        &self,
        invocation: &Invocation,
        run_id: &str,
        deadline: &Deadline,
    ) -> Result<Report> {
        self.clients.calls.take();
        let dry_run = invocation.dry_run || self.settings.dry_run_only;
        let sink = match (&self.sink, dry_run) {
            (_, true) => None,
            (Some(sink), false) => Some(sink),
            (None, false) => return Err(Error::NoTopic),
        };
        let grace_period_hours = invocation
            .grace_period_hours
            .unwrap_or(self.settings.grace_period_hours);
        let account_id = self.account_id(deadline).await?;

        let source = invocation
            .inventory_source
            .unwrap_or(self.settings.inventory_source);
        let inventory = source
            .collect(&self.clients.iam, self.settings.concurrency, deadline)
            .await?;
        let mut phase_ms: BTreeMap<&'static str, u64> =
            inventory.phase_ms.iter().copied().collect();
        let candidates = evaluate::candidates(&inventory);
        let start = Instant::now();
        let verified = deadline
            .run(
                "live verification",
                verify::verify(
                    &self.clients.iam,
                    &candidates,
                    &self.settings.exemptions,
                    self.settings.concurrency,
                ),
            )
            .await?;
        phase_ms.insert("verification", elapsed_ms(start));
        // Taken after the live reads: a key created during the run is never younger than `now`.
        let checked_at = OffsetDateTime::now_utc();
        let policy = Policy {
            account_id,
            now: checked_at,
            grace_period_hours,
            exemptions: &self.settings.exemptions,
        };
        let evaluation = evaluate::classify(&verified, &policy);

        let mut report = Report {
            run_id: run_id.to_string(),
            account_id: account_id.to_string(),
            checked_at,
            report_generated_at: inventory.report_generated_at,
            inventory_source: source,
            dry_run,
            grace_period_hours,
            users_examined: inventory.users.len(),
            keys_examined: inventory.keys_examined(),
            candidates_verified: candidates.len(),
            api_calls: ApiCalls::default(),
            phase_ms,
            findings: Vec::new(),
            pending: Vec::new(),
            exempted: Vec::new(),
            notifications: Vec::new(),
        };
        report.apply(evaluation);
        // Logged before publishing, so a failed publish loses nothing.
        for finding in &report.findings {
            tracing::warn!(run_id, finding_id = %finding.finding_id, user = %finding.user_name, access_key_id = %finding.access_key_id, "finding");
        }

        if let Some(sink) =
            sink.filter(|_| !report.findings.is_empty() || self.settings.notify_when_clean)
        {
            let start = Instant::now();
            report.notifications = sink.publish(&report, deadline).await?;
            report.phase_ms.insert("publish", elapsed_ms(start));
        }
        report.api_calls = ApiCalls::from(self.clients.calls.take());
        tracing::info!(
            run_id,
            account_id = %report.account_id,
            dry_run,
            users_examined = report.users_examined,
            keys_examined = report.keys_examined,
            candidates_verified = report.candidates_verified,
            findings = report.findings.len(),
            pending = report.pending.len(),
            exempted = report.exempted.len(),
            notifications = report.notifications.len(),
            api_calls = report.api_calls.total,
            api_calls_by_operation = %serde_json::to_string(&report.api_calls.by_operation).unwrap_or_default(),
            phase_ms = %serde_json::to_string(&report.phase_ms).unwrap_or_default(),
            "keywatch run complete"
        );
        Ok(report)
    }

    /// The account being checked, asked once per container (`sts:GetCallerIdentity` needs no permission).
    async fn account_id(&self, deadline: &Deadline) -> Result<&str> {
        let account = self
            .account_id
            .get_or_try_init(|| {
                deadline.run("identifying the account", async {
                    let identity = self.clients.sts.get_caller_identity().send().await;
                    let identity = identity.map_err(|e| aws_error("sts:GetCallerIdentity", e))?;
                    // An error is not cached: the next invocation asks again.
                    identity
                        .account
                        .filter(|account| !account.is_empty())
                        .ok_or(Error::IncompleteResponse {
                            action: "sts:GetCallerIdentity",
                            missing: "an account ID",
                            context: None,
                        })
                })
            })
            .await?;
        Ok(account.as_str())
    }
}
