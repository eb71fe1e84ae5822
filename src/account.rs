//! Checks one account, start to finish: its clients → inventory → evaluate → verify → remediate → notify → sinks
//! → report, all of it readable here (`check_account_inner` lists the stages). The function's own account is read
//! with its own credentials; every other account through the member role, with credentials used for that account
//! alone. What routes an event here is `route.rs`; what fans an organization out is `dispatch.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use aws_sdk_iam::config::Credentials;
use time::OffsetDateTime;

use crate::aws::{aws_error, AccountClients, CallCounter, Clients};
use crate::config::Scope;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::evaluate::{self, Policy, UNOWNED};
use crate::event::Invocation;
use crate::handler::Keywatch;
use crate::inventory::{self, elapsed_ms};
use crate::ledger::{Ledger, Notice, Table};
use crate::metrics;
use crate::notify::recheck;
use crate::notify::security_hub::{self, Hub};
use crate::notify::sns::SnsSink;
use crate::notify::when::{self, Memory};
use crate::notify::Sink;
use crate::remediate;
use crate::report::{ApiCalls, Report, RuleSettings};
use crate::verify;

/// The account a check reads, and its owner tag as dispatch read it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub account_id: &'a str,
    pub owner: Option<&'a str>,
}

/// What a check knows of its attempt, and tells back: whether a failure is final, and how many alert parts SNS
/// accepted before it.
#[derive(Debug, Default)]
pub struct Attempt {
    pub last: bool,
    pub delivered: AtomicUsize,
}

impl Attempt {
    /// A check that is not retried by a queue: every failure is final.
    pub fn only() -> Attempt {
        Attempt {
            last: true,
            ..Attempt::default()
        }
    }
}

/// STS session names: at most 64 characters of `[\w+=,.@-]`.
const MAX_SESSION_NAME: usize = 64;

impl Keywatch {
    /// Checks one account: the one `invocation` names, else the function's own.
    pub async fn run(
        &self,
        invocation: &Invocation,
        run_id: &str,
        deadline: &Deadline,
    ) -> Result<Report> {
        // This check's calls, apart from any other check's.
        let calls = CallCounter::default();
        let clients = &self.clients;
        let own = calls
            .counting(self.own_account(clients, deadline))
            .await?
            .to_string();
        let target = match &invocation.account_id {
            None => own,
            Some(account_id) => {
                self.in_scope(&own, account_id)?;
                account_id.clone()
            }
        };
        // A manual check reads no account tag: its findings are owned by their user's tag, else `unowned`.
        calls
            .counting(self.check_account(
                &calls,
                Target {
                    account_id: &target,
                    owner: None,
                },
                invocation,
                run_id,
                deadline,
                &Attempt::only(),
            ))
            .await
    }

    /// A manual check names an account this deployment covers: its own, one `ACCOUNTS` lists, or, for
    /// `organization`, any (the member role's trust decides).
    pub(crate) fn in_scope(&self, own: &str, account_id: &str) -> Result<()> {
        if self.settings.fleet.exclude.contains(account_id) {
            return Err(Error::Excluded(account_id.to_string()));
        }
        let covered = account_id == own
            || match &self.settings.fleet.scope {
                Scope::Own => false,
                Scope::Listed(accounts) => accounts.iter().any(|a| a == account_id),
                Scope::Organization => true,
            };
        if covered {
            Ok(())
        } else {
            Err(Error::InvalidEvent(format!(
                "field `account_id`: {account_id} is not an account this deployment checks (ACCOUNTS is {}); \
                 add it to ACCOUNTS, or use ACCOUNTS=organization",
                match &self.settings.fleet.scope {
                    Scope::Own => "self".to_string(),
                    Scope::Listed(accounts) => accounts.join(","),
                    Scope::Organization => "organization".to_string(),
                }
            )))
        }
    }

    /// Checks `account_id`, publishes its alert, and writes its metrics line, whether the check succeeds or
    /// fails. Run inside `calls.counting(...)`: `calls` holds this check's calls alone.
    pub(crate) async fn check_account(
        &self,
        calls: &CallCounter,
        target: Target<'_>,
        invocation: &Invocation,
        run_id: &str,
        deadline: &Deadline,
        attempt: &Attempt,
    ) -> Result<Report> {
        let start = Instant::now();
        let account_id = target.account_id;
        // On the heap: a check's future is large, and a test thread's stack is small.
        let result =
            Box::pin(self.check_leased(calls, target, invocation, run_id, deadline, attempt)).await;
        let outcome = match &result {
            Ok(report) => Ok(report),
            Err(error) => Err(metrics::Failed {
                api_calls: calls.take().values().sum(),
                final_failure: attempt.last || error.is_permanent(),
            }),
        };
        let now = OffsetDateTime::now_utc();
        metrics::emit(&metrics::line(
            account_id,
            run_id,
            outcome,
            elapsed_ms(start),
            now,
        ));
        if let Ok(report) = &result {
            for line in metrics::rule_lines(run_id, report, now) {
                metrics::emit(&line);
            }
        }
        result
    }

    /// One check of an account at a time: with a ledger, a check that writes holds the account's lease
    /// ([`Table::take_lease`]) from before it reads the ledger until it is done. A dry run writes nothing and
    /// takes none.
    async fn check_leased(
        &self,
        calls: &CallCounter,
        target: Target<'_>,
        invocation: &Invocation,
        run_id: &str,
        deadline: &Deadline,
        attempt: &Attempt,
    ) -> Result<Report> {
        let dry_run = invocation.dry_run || self.settings.dry_run_only;
        let table = self.ledger_table().filter(|_| !dry_run);
        let (lease, unusable) = match &table {
            None => (None, None),
            Some(table) => match table.take_lease(target.account_id, run_id, deadline).await {
                Ok(lease) => (Some(lease), None),
                // A ledger that cannot be written never silences an alert: the check publishes everything,
                // writes nothing, and fails at the end, as with any unusable ledger.
                Err(error @ Error::LedgerUnavailable { .. }) => {
                    tracing::error!(run_id, account_id = target.account_id, %error, "lease not taken");
                    (None, Some(error))
                }
                Err(error) => return Err(error),
            },
        };
        let result = self
            .check_account_inner(calls, target, invocation, run_id, deadline, attempt)
            .await;
        let released = match (&table, &lease) {
            (Some(table), Some(lease)) => table.release(lease).await,
            _ => Ok(()),
        };
        // The release's call is this check's too.
        let mut result = result;
        if let Ok(report) = &mut result {
            for (action, count) in calls.take() {
                *report.api_calls.by_operation.entry(action).or_default() += count;
                report.api_calls.total += count;
            }
        }
        match (result, unusable, released) {
            (Ok(_), Some(error), _) => Err(error),
            // A lease held on would stall the account's next checks until it expires: said loudly, after
            // everything else was done.
            (Ok(_), None, Err(error)) => Err(error),
            (result, _, Err(error)) => {
                tracing::error!(run_id, account_id = target.account_id, %error, "lease not released");
                result
            }
            (result, _, Ok(())) => result,
        }
    }

    fn ledger_table(&self) -> Option<Table> {
        self.settings.ledger_table.as_ref().map(|name| Table {
            client: self.clients.dynamodb.clone(),
            name: name.clone(),
        })
    }

    /// The check's stages, in the order they run, each a call into its own module:
    /// 1. scope and clients: [`Keywatch::clients_for`] (the member role through STS, or the function's own);
    /// 2. inventory: [`crate::inventory`] (the credential report, or IAM's API);
    /// 3. memory: the ledger's items for this account ([`crate::ledger`]), read before verification so every
    ///    user with an open finding is looked at again;
    /// 4. evaluate and verify: [`evaluate::candidates`], then [`verify::verify`] live, then
    ///    [`evaluate::classify`] and the ledger's reconcile (new, open, resolved);
    /// 5. act: [`remediate::deactivate`] on what [`remediate::due`] names (never in a dry run);
    /// 6. notify: one alert per owner, published when [`when::decide`] says so; the ledger records what SNS
    ///    accepted;
    /// 7. sinks: [`security_hub::sync`], only after a check that got this far;
    /// 8. report: the [`Report`] returned, and the metrics line [`Keywatch::check_account`] writes.
    async fn check_account_inner(
        &self,
        calls: &CallCounter,
        target: Target<'_>,
        invocation: &Invocation,
        run_id: &str,
        deadline: &Deadline,
        attempt: &Attempt,
    ) -> Result<Report> {
        let Target {
            account_id,
            owner: account_owner,
        } = target;
        let clients = &self.clients;
        if self.settings.fleet.exclude.contains(account_id) {
            return Err(Error::Excluded(account_id.to_string()));
        }
        let dry_run = invocation.dry_run || self.settings.dry_run_only;
        let sink = match (&self.settings.topic_arn, dry_run) {
            (_, true) => None,
            (Some(topic_arn), false) => Some(SnsSink {
                client: clients.sns.clone(),
                topic_arn: topic_arn.clone(),
                chat: self.settings.chat,
                owner_topics: self.settings.owner_topics.clone(),
            }),
            (None, false) => return Err(Error::NoTopic),
        };
        let grace_period_hours = invocation
            .grace_period_hours
            .unwrap_or(self.settings.grace_period_hours);
        let (account, member_role) = self
            .clients_for(clients, account_id, run_id, deadline)
            .await?;
        let iam = &account.iam;
        // What the member role is denied is granted in member-role.yaml, not the function's role: say so.
        let as_member = |error: Error| error.as_member_role(member_role.as_deref());

        // The rules' context for candidates and live reads: the check's start, the earliest `now` a row can be
        // judged by (a key only grows older).
        let rules = &self.settings.rules;
        let context = self.settings.context(OffsetDateTime::now_utc());
        let source = invocation
            .inventory_source
            .unwrap_or(self.settings.inventory_source);
        // An event-driven check reads only the users its changes name, in this account.
        let named = invocation.named_users(account_id);
        let inventory = match &named {
            Some(names) => {
                inventory::users::collect(iam, names, self.settings.concurrency, deadline).await
            }
            None => {
                source
                    .collect(
                        iam,
                        self.settings.concurrency,
                        &evaluate::LastUseReads::of(rules, &context),
                        deadline,
                    )
                    .await
            }
        }
        .map_err(as_member)?;
        let mut phase_ms: BTreeMap<&'static str, u64> =
            inventory.phase_ms.iter().copied().collect();

        // The ledger, with the function's own credentials. Read before verification, so every user with an open
        // finding is looked at live again and a resolution has its exact reason. Unreadable, the check goes on
        // (nothing is deactivated, everything is published) and fails at the end.
        let table = self.ledger_table();
        let mut ledger_error = None;
        let mut ledger = match &table {
            None => None,
            Some(table) => match table.recall(account_id, deadline).await {
                Ok(items) => Some(match &named {
                    Some(names) => Ledger::of_users(account_id, items, names),
                    None => Ledger::new(account_id, items),
                }),
                Err(error) => {
                    tracing::error!(run_id, account_id, %error, "ledger not read");
                    ledger_error = Some(error);
                    None
                }
            },
        };
        let mut candidates = evaluate::candidates(&inventory, rules, &context);
        if let Some(ledger) = &ledger {
            let open = ledger.open_users();
            let extra: Vec<_> = inventory
                .users
                .iter()
                .filter(|u| open.contains(u.user.name.as_str()))
                .filter(|u| !candidates.iter().any(|c| c.user.name == u.user.name))
                .collect();
            candidates.extend(extra);
        }
        let start = Instant::now();
        let verified = deadline
            .run(
                "live verification",
                verify::verify(
                    iam,
                    &candidates,
                    rules,
                    &context,
                    &self.settings.exemptions,
                    self.settings.owner_tag_key.as_deref(),
                    self.settings.concurrency,
                ),
            )
            .await
            .map_err(as_member)?;
        phase_ms.insert("verification", elapsed_ms(start));
        // Taken after the live reads: a key created during the run is never younger than `now`.
        let checked_at = OffsetDateTime::now_utc();
        let policy = Policy {
            account_id,
            rules,
            context: self.settings.context(checked_at),
            grace_period_hours,
            exemptions: &self.settings.exemptions,
            owners: self.settings.owner_tag_key.as_ref().map(|_| account_owner),
        };
        let mut evaluation = evaluate::classify(&verified, &policy);
        for finding in evaluation
            .findings
            .iter_mut()
            .chain(evaluation.pending.iter_mut().map(|p| &mut p.finding))
            .chain(evaluation.exempted.iter_mut().map(|e| &mut e.finding))
        {
            finding.caused_by = invocation
                .change_of(account_id, &finding.user_name)
                .cloned();
        }
        let resolved = ledger.as_mut().map(|ledger| {
            let mut findings = std::mem::take(&mut evaluation.findings);
            let resolved = ledger.reconcile(
                &mut findings,
                &evaluation,
                &verified,
                rules,
                checked_at,
                self.settings.remediation.notice_days(),
            );
            evaluation.findings = findings;
            resolved
        });

        let mut report = Report {
            run_id: run_id.to_string(),
            account_id: account_id.to_string(),
            checked_at,
            report_generated_at: inventory.report_generated_at,
            inventory_source: source,
            dry_run,
            grace_period_hours,
            rule_settings: RuleSettings::of(
                rules,
                self.settings.unused_days,
                self.settings.rotate_days,
            ),
            users_examined: inventory.users.len(),
            users_checked: named.clone(),
            // An event-driven check's inventory lists its users without keys: count what it read live.
            keys_examined: match &named {
                Some(_) => verified.iter().map(|v| v.user.keys.len()).sum(),
                None => inventory.keys_examined(),
            },
            candidates_verified: candidates.len(),
            api_calls: ApiCalls::default(),
            phase_ms,
            findings: Vec::new(),
            pending: Vec::new(),
            exempted: Vec::new(),
            remediated: Vec::new(),
            remediation_skipped: Vec::new(),
            remediation_failed: Vec::new(),
            deactivate_after_days: self.settings.remediation.notice_days(),
            security_hub: None,
            rechecks: Vec::new(),
            notifications: Vec::new(),
            new: None,
            open: None,
            resolved: None,
            alert: String::new(),
            owner: None,
        };
        report.apply(evaluation);
        if let Some(resolved) = resolved {
            report.apply_history(resolved);
        }
        // Logged before publishing, so a failed publish loses nothing.
        for finding in &report.findings {
            tracing::warn!(run_id, account_id, finding_id = %finding.finding_id, user = %finding.user_name, access_key_id = %finding.access_key_id, "finding");
        }

        // Never in a dry run: only findings of this successful check that a delivered alert named at least the
        // notice period ago (the ledger says when), after one more look at each key.
        if !dry_run {
            let start = Instant::now();
            let mut due = remediate::due(&self.settings.remediation, &report.findings, checked_at);
            // Recorded before any UpdateAccessKey is sent, so a key found Inactive later is known to be
            // keywatch's even if every later write fails. Unrecorded, no key is touched.
            let mut unrecorded = Vec::new();
            if let (Some(ledger), Some(table), false) = (ledger.as_mut(), &table, due.is_empty()) {
                let keys = ledger.deactivating(&due, run_id, OffsetDateTime::now_utc());
                if let Err(error) = save(ledger, table, Some(&keys), deadline).await {
                    tracing::error!(run_id, account_id, %error, "deactivation not recorded: no key deactivated");
                    unrecorded = std::mem::take(&mut due);
                    ledger_error.get_or_insert(error);
                }
            }
            report
                .remediation_skipped
                .extend(unrecorded.iter().map(|f| remediate::Skipped {
                    finding_id: f.finding_id.clone(),
                    user_name: f.user_name.clone(),
                    access_key_id: f.access_key_id.clone(),
                    reason: remediate::NOT_RECORDED.to_string(),
                }));
            if !due.is_empty() {
                let outcome = remediate::deactivate(
                    iam,
                    &due,
                    member_role.as_deref(),
                    self.settings.concurrency,
                    deadline,
                )
                .await;
                report.remediated = outcome.remediated;
                report.remediation_skipped.extend(outcome.skipped);
                report.remediation_failed = outcome.failed;
                report.phase_ms.insert("remediation", elapsed_ms(start));
            }
            // Stored as not yet announced before anything is published: if the publish fails, the next run
            // (or this one's retry) still announces them, with the command that undoes each.
            if let (Some(ledger), Some(table)) = (ledger.as_mut(), &table) {
                let keys = ledger.deactivated(&report.remediated, run_id);
                if let Err(error) = save(ledger, table, Some(&keys), deadline).await {
                    ledger_error.get_or_insert(error);
                }
                // Announced late: those this run did not deactivate itself.
                let late: Vec<_> = ledger
                    .unannounced()
                    .into_iter()
                    .filter(|late| {
                        !report
                            .remediated
                            .iter()
                            .any(|done| done.finding_id == late.finding_id)
                    })
                    .collect();
                report.remediated.extend(late);
            }
        }

        // One alert per owner when routing by owner, each with exactly that owner's keys; else one.
        let mut alerts: Vec<Report> = match &self.settings.owner_tag_key {
            None => vec![report.clone()],
            Some(_) => {
                let mut owners = report.owners();
                if owners.is_empty() {
                    // Nothing for anyone: an all-clear, if asked for, goes to the account's owner.
                    owners.insert(account_owner.unwrap_or(UNOWNED).to_string());
                }
                owners.iter().map(|owner| report.for_owner(owner)).collect()
            }
        };
        let start = Instant::now();
        let mut whys = Vec::new();
        let mut announced = Vec::new();
        let mut publish_error = None;
        let notice_days = self.settings.remediation.notice_days();
        for alert in &mut alerts {
            let memory = match (&table, &ledger) {
                (None, _) => Memory::None,
                (Some(_), None) => Memory::Unreadable,
                // Reminders are the sweep's: an event-driven check publishes changes only.
                (Some(_), Some(_)) if named.is_some() => Memory::Ledger {
                    last_alert: Some(checked_at),
                },
                (Some(_), Some(ledger)) => Memory::Ledger {
                    last_alert: ledger.last_alert(alert.owner.as_deref()),
                },
            };
            let decision = when::decide(
                self.settings.alerts,
                alert,
                memory,
                self.settings.notify_when_clean,
            );
            whys.push(match &alert.owner {
                Some(owner) => format!("{owner}: {}", decision.why),
                None => decision.why.clone(),
            });
            let Some(sink) = sink.as_ref().filter(|_| decision.publish) else {
                continue;
            };
            // A notice dates the deactivation from this alert's publish, never from the check's start.
            if let Some(days) = notice_days {
                // In whole seconds, as a person reads it.
                let on = OffsetDateTime::now_utc() + time::Duration::days(days.into());
                let on = on.replace_nanosecond(0).unwrap_or(on);
                for finding in alert.findings.iter_mut() {
                    if finding.history.notice == Some(Notice::New) {
                        finding.history.deactivate_on = Some(on);
                        if let Some(same) = report
                            .findings
                            .iter_mut()
                            .find(|f| f.finding_id == finding.finding_id)
                        {
                            same.history.deactivate_on = Some(on);
                        }
                    }
                }
            }
            match sink.publish(alert, decision.kind, deadline).await {
                Ok(notifications) => {
                    report.notifications.extend(notifications);
                    // Parts on the findings topic: what the failed-check notice says was delivered.
                    let parts = report
                        .notifications
                        .iter()
                        .filter(|n| n.owner_topic_arn.is_none())
                        .count();
                    attempt.delivered.store(parts, Ordering::Relaxed);
                    // SNS accepted every part: what it named was alerted.
                    if let Some(ledger) = ledger.as_mut() {
                        announced.extend(ledger.announced(
                            &alert.findings,
                            &alert.remediated,
                            alert.resolved.as_deref().unwrap_or_default(),
                            notice_days,
                            OffsetDateTime::now_utc(),
                        ));
                    }
                }
                Err(error) => {
                    publish_error.get_or_insert(error);
                }
            }
        }
        report.alert = whys.join("; ");
        if !report.notifications.is_empty() {
            report.phase_ms.insert("publish", elapsed_ms(start));
        }
        // What SNS accepted is recorded even when another owner's alert failed; nothing else is.
        if let (Some(ledger), Some(table)) = (ledger.as_mut(), &table) {
            if let Err(error) = save(ledger, table, Some(&announced), deadline).await {
                ledger_error.get_or_insert(error);
            }
        }
        if let Some(error) = publish_error {
            return Err(error);
        }
        // An event-driven check's pending keys: their user is checked again when the grace ends, not at the next
        // sweep. After the alert (alerts never wait on it); a schedule that cannot be made fails the check loudly
        // at the end, and the sweep remains the backstop.
        let mut recheck_error = None;
        if let (Some(recheck), Some(_), false) = (&self.settings.recheck, &named, dry_run) {
            if !report.pending.is_empty() {
                let scheduled = recheck::schedule(
                    self.clients.scheduler()?,
                    recheck,
                    account_id,
                    &report.pending,
                    |user| invocation.change_of(account_id, user).cloned(),
                    deadline,
                )
                .await;
                match scheduled {
                    Ok(scheduled) => report.rechecks = scheduled,
                    Err(error) => {
                        tracing::error!(run_id, account_id, %error, "re-check not scheduled");
                        recheck_error = Some(error);
                    }
                }
            }
        }
        // Only after a check that got this far: a check that could not look never archives a finding.
        if let (Some(region), false) = (&self.settings.security_hub, dry_run) {
            let start = Instant::now();
            let hub = Hub {
                partition: self.settings.partition.to_string(),
                region: region.clone(),
                account_id: account_id.to_string(),
            };
            let sync = security_hub::sync(account.security_hub()?, &hub, &report, deadline);
            match (
                Box::pin(sync).await,
                remediate::failure(&report.remediation_failed),
            ) {
                (Ok(sync), _) => report.security_hub = Some(sync),
                // A key left active outweighs a hub out of date: that error is the run's, this one is logged.
                (Err(error), Some(_)) => {
                    tracing::error!(run_id, account_id, error = %as_member(error), "Security Hub not updated")
                }
                (Err(error), None) => return Err(as_member(error)),
            }
            report.phase_ms.insert("security_hub", elapsed_ms(start));
        }
        // After the alert, which names them: a key that could not be deactivated fails the run.
        if let Some(error) = remediate::failure(&report.remediation_failed) {
            return Err(error);
        }
        // After everything that must not be lost (deactivations, the alert, the hub): loudly.
        if let Some(error) = ledger_error.or(recheck_error) {
            return Err(error);
        }
        report.api_calls = ApiCalls::from(calls.take());
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

    /// The member role's ARN in `account_id`, or `None` for the function's own account.
    pub(crate) fn role_arn(&self, own_account: &str, account_id: &str) -> Option<String> {
        (account_id != own_account).then(|| {
            self.settings
                .fleet
                .member_role
                .arn(self.settings.partition, account_id)
        })
    }

    /// The clients for `account_id`: the function's own, or the member role's (and its ARN) for every other
    /// account.
    async fn clients_for(
        &self,
        clients: &Clients,
        account_id: &str,
        run_id: &str,
        deadline: &Deadline,
    ) -> Result<(AccountClients, Option<String>)> {
        let own = self.own_account(clients, deadline).await?;
        let Some(role_arn) = self.role_arn(own, account_id) else {
            return Ok((clients.own_account.clone(), None));
        };
        let assumed = deadline
            .run("assuming the member role", async {
                clients
                    .sts
                    .assume_role()
                    .role_arn(&role_arn)
                    .role_session_name(session_name(run_id))
                    .send()
                    .await
                    .map_err(|e| aws_error("sts:AssumeRole", e))
            })
            .await;
        let credentials = assumed
            .and_then(|out| {
                out.credentials.ok_or(Error::IncompleteResponse {
                    action: "sts:AssumeRole",
                    missing: "Credentials",
                    context: Some(format!("role {role_arn}")),
                })
            })
            .map_err(|cause| Error::AssumeRole {
                account_id: account_id.to_string(),
                role_arn: role_arn.clone(),
                cause: Box::new(cause),
            })?;
        let credentials = Credentials::new(
            credentials.access_key_id,
            credentials.secret_access_key,
            Some(credentials.session_token),
            None,
            "keywatch-member-role",
        );
        Ok((clients.assumed(credentials), Some(role_arn)))
    }
}

/// Writes the ledger's changed items (only `keys`, when given) and records them as stored.
async fn save(
    ledger: &mut Ledger,
    table: &Table,
    keys: Option<&[String]>,
    deadline: &Deadline,
) -> Result<()> {
    let changed = ledger.changed(keys);
    if changed.is_empty() {
        return Ok(());
    }
    let (written, error) = table.save(&changed, deadline).await;
    ledger.stored_now(&written);
    error.map_or(Ok(()), Err)
}

/// `keywatch-` and the run ID, in the characters STS allows, so CloudTrail in the member account shows the run.
fn session_name(run_id: &str) -> String {
    let cleaned: String = run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("keywatch-{cleaned}");
    name.truncate(MAX_SESSION_NAME);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_carry_the_run_within_sts_limits() {
        assert_eq!(
            session_name("8e1addde-96ff-43fc-bdd4-df4b4d8f65c2"),
            "keywatch-8e1addde-96ff-43fc-bdd4-df4b4d8f65c2"
        );
        assert_eq!(session_name("a/b c"), "keywatch-a-b-c");
        assert_eq!(session_name(&"x".repeat(100)).len(), MAX_SESSION_NAME);
    }
}
