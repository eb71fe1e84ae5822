//! What an event asks for: a schedule dispatches the accounts (or checks the own account when `ACCOUNTS=self`),
//! an SQS batch checks one account per record, and a person checks one account, or sees the plan.

use futures_util::StreamExt;
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use crate::account::{Attempt, Target};
use crate::aws::CallCounter;
use crate::cloudtrail::{self, IamChange, Read};
use crate::config::Scope;
use crate::deadline::Deadline;
use crate::dispatch::{Dispatched, Plan};
use crate::error::{Error, Result};
use crate::evaluate::UNOWNED;
use crate::event::{Event, Invocation, SqsRecord, WorkItem};
use crate::handler::Keywatch;
use crate::metrics;
use crate::notify::notice::{self, Notice};
use crate::notify::sns::{Attributes, SnsSink};
use crate::notify::when::Kind;
use crate::report::Report;

/// Kept back from every check of a work record, for its failed-check notice: one SNS publish, retried, takes far
/// less. A check that runs out of time then still has time to say so.
pub const NOTICE_RESERVE: std::time::Duration = std::time::Duration::from_secs(2);

/// SQS records checked at once in one invocation. The template's batch size is 1, so each account gets an
/// invocation of its own; a larger batch (or a test's pump) still stays bounded.
pub const RECORDS_IN_PARALLEL: usize = 4;

/// A failed check, as its notice tells it.
struct Failure<'a> {
    error: &'a Error,
    /// Retrying cannot heal it: the record is acknowledged.
    permanent: bool,
    /// Alert parts SNS accepted before it failed.
    delivered: usize,
}

/// What an invocation returns.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    Report(Box<Report>),
    Dispatched(Dispatched),
    Plan(Plan),
    Batch(BatchResponse),
    /// An IAM event that asks for no check: a failed call, or an account outside the deployment.
    Skipped(Skipped),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Why nothing was checked.
    pub skipped: String,
}

/// Lambda's partial batch response: the records to retry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<BatchItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

impl Keywatch {
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Response> {
        let run_id = event.context.request_id.clone();
        let deadline = Deadline::from_lambda(event.context.deadline());
        let routed = match Event::decode(event.payload) {
            Ok(event) => self.route(event, &run_id, &deadline).await,
            Err(error) => Err(error),
        };
        routed.inspect_err(|error| {
            tracing::error!(run_id, error_type = error.error_type(), %error, "keywatch run failed");
        })
    }

    pub async fn route(&self, event: Event, run_id: &str, deadline: &Deadline) -> Result<Response> {
        let fleet = self.settings.fleet.scope != Scope::Own;
        match event {
            Event::Sqs(records) => Ok(Response::Batch(self.work(records, deadline).await)),
            Event::Iam(read) => self.iam_event(read, run_id, deadline).await,
            Event::Check(invocation) if invocation.account_id.is_some() || !fleet => self
                .run(&invocation, run_id, deadline)
                .await
                .map(|report| Response::Report(Box::new(report))),
            Event::Check(invocation @ Invocation { dry_run: true, .. }) => self
                .plan(&invocation, run_id, deadline)
                .await
                .map(Response::Plan),
            Event::Check(_) => self
                .dispatch(run_id, deadline)
                .await
                .map(Response::Dispatched),
        }
    }

    /// One IAM event invoked directly: a check of the user it names, answered with the same report as a manual
    /// check; or, for a failed call or an account outside the deployment, why nothing was checked.
    async fn iam_event(&self, read: Read, run_id: &str, deadline: &Deadline) -> Result<Response> {
        let change = match read {
            Read::Check(change) => change,
            Read::Skip(why) => {
                tracing::info!(run_id, why, "IAM event skipped");
                return Ok(Response::Skipped(Skipped { skipped: why }));
            }
        };
        let calls = CallCounter::default();
        let own = calls
            .counting(self.own_account(&self.clients, deadline))
            .await?
            .to_string();
        if let Some(why) = self.outside(&own, &change.account_id) {
            let now = time::OffsetDateTime::now_utc();
            metrics::emit(&metrics::out_of_scope_line(run_id, 1, now));
            return Ok(Response::Skipped(Skipped { skipped: why }));
        }
        let invocation = Invocation {
            scheduled: true,
            changes: vec![change.clone()],
            ..Invocation::default()
        };
        let owner = calls
            .counting(self.account_owner(&change.account_id, deadline))
            .await?;
        calls
            .counting(self.check_account(
                &calls,
                Target {
                    account_id: &change.account_id,
                    owner: owner.as_deref(),
                },
                &invocation,
                run_id,
                deadline,
                &Attempt::only(),
            ))
            .await
            .map(|report| Response::Report(Box::new(report)))
    }

    /// Why an event's account is not checked (excluded, or outside the deployment), logged once; `None` when it
    /// is checked. Such an event is acknowledged, never retried or published.
    fn outside(&self, own: &str, account_id: &str) -> Option<String> {
        let error = self.in_scope(own, account_id).err()?;
        tracing::warn!(account_id, %error, "IAM event for an account this deployment does not check; not checked");
        Some(format!("account {account_id} is not checked here: {error}"))
    }

    /// IAM events from the queue: each account's users checked once, whatever the number of events about them;
    /// every record of a check fails or succeeds with it. A body that cannot be read fails its own record.
    async fn work_events(
        &self,
        records: Vec<SqsRecord>,
        deadline: &Deadline,
    ) -> Vec<BatchItemFailure> {
        let fail = |record: &SqsRecord| BatchItemFailure {
            item_identifier: record.message_id.clone(),
        };
        let mut failures = Vec::new();
        let mut by_account: BTreeMap<String, Vec<(SqsRecord, IamChange)>> = BTreeMap::new();
        for record in records {
            let read = serde_json::from_str(&record.body)
                .map_err(|error| Error::InvalidEvent(format!("the body is not JSON: {error}")))
                .and_then(cloudtrail::read);
            match read {
                Ok(Read::Check(change)) => by_account
                    .entry(change.account_id.clone())
                    .or_default()
                    .push((record, change)),
                Ok(Read::Skip(why)) => {
                    tracing::info!(message_id = %record.message_id, why, "IAM event skipped");
                }
                Err(error) => {
                    tracing::error!(message_id = %record.message_id, %error, "IAM event not read");
                    failures.push(fail(&record));
                }
            }
        }
        if by_account.is_empty() {
            return failures;
        }
        let calls = CallCounter::default();
        let own = match calls
            .counting(self.own_account(&self.clients, deadline))
            .await
        {
            Ok(own) => own.to_string(),
            Err(error) => {
                tracing::error!(%error, "IAM events not checked: the function's own account is unknown");
                failures.extend(
                    by_account
                        .values()
                        .flatten()
                        .map(|(record, _)| fail(record)),
                );
                return failures;
            }
        };
        // Accounts this deployment does not check: acknowledged, logged once each, and counted.
        let mut out_of_scope: Vec<String> = Vec::new();
        by_account.retain(|account_id, events| match self.outside(&own, account_id) {
            Some(_) => {
                out_of_scope.extend(events.iter().map(|(record, _)| record.message_id.clone()));
                false
            }
            None => true,
        });
        if let Some(first) = out_of_scope.first() {
            let run_id = format!("events-{first}");
            let now = time::OffsetDateTime::now_utc();
            metrics::emit(&metrics::out_of_scope_line(
                &run_id,
                out_of_scope.len(),
                now,
            ));
        }
        let checked = futures_util::stream::iter(by_account)
            .map(|(account_id, events)| {
                async move {
                    // Stable across retries of the same first record: a retry's alert has the same alert_id.
                    let first = events
                        .first()
                        .map_or("", |(record, _)| record.message_id.as_str());
                    let run_id = format!("events-{first}");
                    let invocation = Invocation {
                        scheduled: true,
                        changes: events.iter().map(|(_, change)| change.clone()).collect(),
                        ..Invocation::default()
                    };
                    let calls = CallCounter::default();
                    let owner = match calls.counting(self.account_owner(&account_id, deadline)).await {
                        Ok(owner) => owner,
                        Err(error) => {
                            tracing::error!(account_id, %error, "IAM events not checked: the account's owner tag is unreadable");
                            return events.iter().map(|(record, _)| fail(record)).collect();
                        }
                    };
                    let attempt = Attempt {
                        last: events.iter().all(|(record, _)| {
                            record.receive_count >= self.settings.fleet.max_receive_count
                        }),
                        ..Attempt::default()
                    };
                    let result = calls
                        .counting(self.check_account(
                            &calls,
                            Target {
                                account_id: &account_id,
                                owner: owner.as_deref(),
                            },
                            &invocation,
                            &run_id,
                            &deadline.reserving(NOTICE_RESERVE),
                            &attempt,
                        ))
                        .await;
                    let Err(error) = result else {
                        return Vec::new();
                    };
                    let permanent = error.is_permanent();
                    tracing::error!(
                        account_id,
                        run_id,
                        permanent,
                        error_type = error.error_type(),
                        %error,
                        "event-driven check failed"
                    );
                    // As a work item's check: said once, on a permanent failure or the last attempt.
                    if let (true, Some((record, _))) = (attempt.last || permanent, events.first()) {
                        let item = WorkItem {
                            account_id: account_id.clone(),
                            run_id: run_id.clone(),
                            owner: owner.clone(),
                        };
                        let failure = Failure {
                            error: &error,
                            permanent,
                            delivered: attempt.delivered.load(Ordering::Relaxed),
                        };
                        self.notify_failed(record, Some(&item), &failure, deadline)
                            .await;
                    }
                    // A permanent failure is acknowledged: retrying cannot heal it.
                    if permanent {
                        Vec::new()
                    } else {
                        events.iter().map(|(record, _)| fail(record)).collect()
                    }
                }
            })
            .buffer_unordered(RECORDS_IN_PARALLEL)
            .collect::<Vec<_>>()
            .await;
        failures.extend(checked.into_iter().flatten());
        failures
    }

    /// Checks one account per record, a few at a time, and names the records to retry. A check that fails for
    /// good (a permanent failure, or its last attempt) publishes a notice first, so an account that cannot be
    /// checked is never silent; a permanent failure is acknowledged, not retried in vain.
    pub async fn work(&self, records: Vec<SqsRecord>, deadline: &Deadline) -> BatchResponse {
        let (events, records): (Vec<SqsRecord>, Vec<SqsRecord>) = records
            .into_iter()
            .partition(|record| cloudtrail::is_cloudtrail_body(&record.body));
        let event_failures = self.work_events(events, deadline).await;
        let mut failures: Vec<BatchItemFailure> = futures_util::stream::iter(records)
            .map(|record| async move {
                let failed = self.work_one(&record, deadline).await.is_err();
                failed.then_some(BatchItemFailure {
                    item_identifier: record.message_id,
                })
            })
            .buffer_unordered(RECORDS_IN_PARALLEL)
            .filter_map(|failure| async move { failure })
            .collect()
            .await;
        failures.extend(event_failures);
        BatchResponse {
            batch_item_failures: failures,
        }
    }

    async fn work_one(&self, record: &SqsRecord, deadline: &Deadline) -> Result<()> {
        let last = record.receive_count >= self.settings.fleet.max_receive_count;
        let attempt = Attempt {
            last,
            ..Attempt::default()
        };
        // The check never gets the notice's reserve.
        let check_deadline = deadline.reserving(NOTICE_RESERVE);
        let (item, result) = match WorkItem::decode(&record.body) {
            Ok(item) => {
                // This record's check's calls, apart from the records checked beside it.
                let calls = CallCounter::default();
                let clients = &self.clients;
                // The manual check's scope rule, for every message: a worker checks only what this deployment
                // covers, whoever wrote to its queue.
                let scope = match calls.counting(self.own_account(clients, deadline)).await {
                    Ok(own) => self.in_scope(own, &item.account_id),
                    Err(error) => Err(error),
                };
                match scope {
                    // Excluded since it was dispatched: done, not failed, so it never reaches the dead-letter
                    // queue.
                    Err(Error::Excluded(_)) => {
                        tracing::info!(message_id = %record.message_id, account_id = %item.account_id, "account is in EXCLUDE_ACCOUNTS; not checked");
                        return Ok(());
                    }
                    // Outside the deployment: never checked, said once, and not retried.
                    Err(error @ Error::InvalidEvent(_)) => {
                        tracing::error!(message_id = %record.message_id, account_id = %item.account_id, %error, "work message outside this deployment's accounts; not checked");
                        let failure = Failure {
                            error: &error,
                            permanent: true,
                            delivered: 0,
                        };
                        self.notify_failed(record, Some(&item), &failure, deadline)
                            .await;
                        return Ok(());
                    }
                    Err(error) => (Some(item), Err(error)),
                    Ok(()) => {
                        let invocation = Invocation {
                            scheduled: true,
                            ..Invocation::default()
                        };
                        let checked = calls
                            .counting(self.check_account(
                                &calls,
                                Target {
                                    account_id: &item.account_id,
                                    owner: item.owner.as_deref(),
                                },
                                &invocation,
                                &item.run_id,
                                &check_deadline,
                                &attempt,
                            ))
                            .await
                            .map(|_| ());
                        (Some(item), checked)
                    }
                }
            }
            Err(error) => (None, Err(error)),
        };
        let Err(error) = &result else {
            return result;
        };
        // A message that cannot be read goes to the dead-letter queue, where it can be looked at.
        let permanent = item.is_some() && error.is_permanent();
        let item = item.as_ref();
        tracing::error!(
            message_id = %record.message_id,
            account_id = item.map(|i| i.account_id.as_str()),
            run_id = item.map(|i| i.run_id.as_str()),
            receive_count = record.receive_count,
            last_attempt = last,
            permanent,
            error_type = error.error_type(),
            %error,
            "account check failed"
        );
        if last || permanent {
            let failure = Failure {
                error,
                permanent,
                delivered: attempt.delivered.load(Ordering::Relaxed),
            };
            self.notify_failed(record, item, &failure, deadline).await;
        }
        if permanent {
            return Ok(());
        }
        result
    }

    /// Publishes the notice; if even that fails, the log line above and the DLQ alarm remain.
    async fn notify_failed(
        &self,
        record: &SqsRecord,
        item: Option<&WorkItem>,
        failure: &Failure<'_>,
        deadline: &Deadline,
    ) {
        let error = failure.error;
        let Some(topic_arn) = self.settings.topic_arn.clone() else {
            return;
        };
        let sink = SnsSink {
            client: self.clients.sns.clone(),
            topic_arn,
            chat: self.settings.chat,
            owner_topics: self.settings.owner_topics.clone(),
        };
        // With routing by owner: the account's owner, and whoever reads what nobody owns.
        let owners: Vec<Option<&str>> = match (&self.settings.owner_tag_key, item) {
            (None, _) => vec![None],
            (
                Some(_),
                Some(WorkItem {
                    owner: Some(owner), ..
                }),
            ) if owner != UNOWNED => vec![Some(owner.as_str()), Some(UNOWNED)],
            (Some(_), _) => vec![Some(UNOWNED)],
        };
        for owner in owners {
            let notice = Notice {
                schema: notice::SCHEMA,
                run_id: item.map_or("", |i| i.run_id.as_str()),
                account_id: item.map(|i| i.account_id.as_str()),
                error_type: error.error_type(),
                error: error.to_string(),
                attempts: record.receive_count,
                message_id: &record.message_id,
                owner,
                permanent: failure.permanent,
                alert_parts_delivered: failure.delivered,
            };
            let attributes = Attributes {
                account_id: notice.account_id.unwrap_or("unknown"),
                owner,
                kind: Kind::CheckFailed,
                findings: 0,
            };
            let part = match notice::render(&notice, sink.chat) {
                Ok(part) => part,
                Err(error) => {
                    tracing::error!(account_id = notice.account_id, owner, %error, "failed-check notice not rendered");
                    continue;
                }
            };
            for (topic_arn, _) in sink.topics(owner) {
                match deadline
                    .run(
                        "publishing a failed-check notice",
                        sink.publish_part(topic_arn, &part, &attributes),
                    )
                    .await
                {
                    Ok(message_id) => {
                        tracing::warn!(
                            account_id = notice.account_id,
                            owner,
                            topic_arn,
                            message_id,
                            "failed-check notice published"
                        )
                    }
                    Err(error) => {
                        tracing::error!(account_id = notice.account_id, owner, topic_arn, %error, "failed-check notice not published")
                    }
                }
            }
        }
    }
}
