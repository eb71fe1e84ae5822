//! What an event asks for: a schedule dispatches the accounts (or checks the own account when `ACCOUNTS=self`),
//! an SQS batch checks one account per record, and a person checks one account, or sees the plan.

use futures_util::StreamExt;
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;

use std::sync::atomic::Ordering;

use crate::account::{Attempt, Target};
use crate::aws::CallCounter;
use crate::config::Scope;
use crate::deadline::Deadline;
use crate::dispatch::{Dispatched, Plan};
use crate::error::{Error, Result};
use crate::evaluate::UNOWNED;
use crate::event::{Event, Invocation, SqsRecord, WorkItem};
use crate::handler::Keywatch;
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

    /// Checks one account per record, a few at a time, and names the records to retry. A check that fails for
    /// good (a permanent failure, or its last attempt) publishes a notice first, so an account that cannot be
    /// checked is never silent; a permanent failure is acknowledged, not retried in vain.
    pub async fn work(&self, records: Vec<SqsRecord>, deadline: &Deadline) -> BatchResponse {
        let failures: Vec<BatchItemFailure> = futures_util::stream::iter(records)
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
