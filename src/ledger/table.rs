//! The ledger's DynamoDB table: one paged `Query` per account check, and a conditional `PutItem` for each item
//! that changed. Every write is conditional on the version the check read, so a stale check fails instead of
//! overwriting a newer state. The table also holds one lease item per account (sort key [`LEASE_KEY`]): a
//! check holds it from before it reads the ledger until it is done, so checks of one account never overlap.
//! Always the function's own credentials: in an Organization there is one ledger, in the central account.
//!
//! Items are mapped with `serde_dynamo`, not by hand with the SDK's `AttributeValue`s: [`Item`] is one serde
//! type that both reads and writes, so a field cannot be written under one name and read under another, and
//! its times use the same RFC 3339 serde as the rest of keywatch's output.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client as DynamoClient;
use futures_util::StreamExt;
use time::OffsetDateTime;

use super::Item;
use crate::aws::{aws_error, error_code};
use crate::deadline::Deadline;
use crate::error::{Error, Result};

/// The sort key of an account's lease item. Access key IDs never start with `#`.
pub const LEASE_KEY: &str = "#lease";
/// How long a lease outlives its holder's deadline: a holder that died leaves the account free after this.
pub const LEASE_MARGIN: Duration = Duration::from_secs(60);
/// The longest a second check of an account waits for the first: a share of its own remaining time, so it
/// still has time to check once it holds the lease.
const LEASE_WAIT_MAX: Duration = Duration::from_secs(60);
const LEASE_POLL: Duration = Duration::from_millis(250);
/// Items written at once.
const WRITE_CONCURRENCY: usize = 8;

#[derive(Debug, Clone)]
pub struct Table {
    pub client: DynamoClient,
    pub name: String,
}

impl Table {
    /// Every item of `account_id`, through the SDK's paginator.
    pub async fn recall(&self, account_id: &str, deadline: &Deadline) -> Result<Vec<Item>> {
        deadline
            .run("reading the ledger", async {
                let pages = self
                    .client
                    .query()
                    .table_name(&self.name)
                    .key_condition_expression("account_id = :account")
                    .expression_attribute_values(":account", AttributeValue::S(account_id.into()))
                    .consistent_read(true)
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .await
                    .map_err(|e| {
                        self.unavailable("dynamodb:Query", aws_error("dynamodb:Query", e))
                    })?;
                pages
                    .into_iter()
                    .filter(|attributes| !is_lease(attributes))
                    .map(|attributes| {
                        serde_dynamo::from_item(attributes).map_err(|e| {
                            self.unavailable(
                                "dynamodb:Query",
                                Error::IncompleteResponse {
                                    action: "dynamodb:Query",
                                    missing: "a readable ledger item",
                                    context: Some(e.to_string()),
                                },
                            )
                        })
                    })
                    .collect()
            })
            .await
    }

    /// Writes `items`, each a `PutItem` conditional on the version this check read, and returns those written
    /// with their new versions; the first failure, if any, beside them. An item another check changed since
    /// fails as [`Error::CheckInProgress`] and is not overwritten.
    pub async fn save(&self, items: &[Item], deadline: &Deadline) -> (Vec<Item>, Option<Error>) {
        let results: Vec<Result<Item>> = futures_util::stream::iter(items)
            .map(|item| deadline.run("writing the ledger", self.put(item)))
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        let mut written = Vec::new();
        let mut first_error = None;
        for result in results {
            match result {
                Ok(item) => written.push(item),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        (written, first_error)
    }

    async fn put(&self, item: &Item) -> Result<Item> {
        let next = Item {
            version: item.version + 1,
            ..item.clone()
        };
        let attributes = serde_dynamo::to_item(&next)
            .map_err(|e| self.unavailable("dynamodb:PutItem", Error::Render(e.to_string())))?;
        // Version 0: never written under a version (new, or written before versions).
        let request = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(attributes));
        let request = if item.version == 0 {
            request.condition_expression("attribute_not_exists(version)")
        } else {
            request
                .condition_expression("version = :read")
                .expression_attribute_values(":read", AttributeValue::N(item.version.to_string()))
        };
        match request.send().await {
            Ok(_) => Ok(next),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => {
                Err(Error::CheckInProgress {
                    account_id: item.account_id.clone(),
                    detail: format!(
                        "ledger item {} changed since this check read it (version {}): another check of the \
                         account wrote it, so this one stops rather than overwrite it",
                        item.access_key_id, item.version
                    ),
                })
            }
            Err(e) => Err(self.unavailable("dynamodb:PutItem", aws_error("dynamodb:PutItem", e))),
        }
    }

    /// Takes the account's lease for this check, waiting for another check's to end within a share of the
    /// deadline; past that, [`Error::CheckInProgress`], which SQS or Lambda retries.
    pub async fn take_lease(
        &self,
        account_id: &str,
        run_id: &str,
        deadline: &Deadline,
    ) -> Result<Lease> {
        let holder = holder(run_id);
        let wait = (deadline.remaining() / 3).min(LEASE_WAIT_MAX);
        let give_up = tokio::time::Instant::now() + wait;
        let mut poll = LEASE_POLL;
        loop {
            // Past the holder's deadline, whatever happens to it.
            let until = OffsetDateTime::now_utc() + deadline.remaining() + LEASE_MARGIN;
            if deadline
                .run(
                    "taking the account's lease",
                    self.try_lease(account_id, &holder, until),
                )
                .await?
            {
                return Ok(Lease {
                    account_id: account_id.to_string(),
                    holder,
                });
            }
            if tokio::time::Instant::now() + poll > give_up {
                return Err(Error::CheckInProgress {
                    account_id: account_id.to_string(),
                    detail: format!(
                        "another check of the account holds its lease in the ledger {}; waited {} s",
                        self.name,
                        wait.as_secs()
                    ),
                });
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(Duration::from_secs(2));
        }
    }

    async fn try_lease(
        &self,
        account_id: &str,
        holder: &str,
        until: OffsetDateTime,
    ) -> Result<bool> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let number = |n: i64| AttributeValue::N(n.to_string());
        let out = self
            .client
            .put_item()
            .table_name(&self.name)
            .item("account_id", AttributeValue::S(account_id.to_string()))
            .item("access_key_id", AttributeValue::S(LEASE_KEY.to_string()))
            .item("holder", AttributeValue::S(holder.to_string()))
            .item("lease_until", number(until.unix_timestamp()))
            // DynamoDB TTL removes a lease its holder never released.
            .item("expires_at", number(until.unix_timestamp() + 86_400))
            .condition_expression("attribute_not_exists(access_key_id) OR lease_until < :now")
            .expression_attribute_values(":now", number(now))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(self.unavailable("dynamodb:PutItem", aws_error("dynamodb:PutItem", e))),
        }
    }

    /// Gives the lease back, if this check still holds it. A lease not given back expires by itself.
    pub async fn release(&self, lease: &Lease) -> Result<()> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.name)
            .key("account_id", AttributeValue::S(lease.account_id.clone()))
            .key("access_key_id", AttributeValue::S(LEASE_KEY.to_string()))
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", AttributeValue::S(lease.holder.clone()))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => {
                Err(self.unavailable("dynamodb:DeleteItem", aws_error("dynamodb:DeleteItem", e)))
            }
        }
    }

    fn unavailable(&self, action: &'static str, cause: Error) -> Error {
        Error::LedgerUnavailable {
            table: self.name.clone(),
            action,
            cause: Box::new(cause),
        }
    }
}

/// A check's hold on one account.
#[derive(Debug, Clone)]
pub struct Lease {
    pub account_id: String,
    pub holder: String,
}

/// Unique to one check: two deliveries of one work message share a run ID.
fn holder(run_id: &str) -> String {
    static CHECKS: AtomicU64 = AtomicU64::new(0);
    format!(
        "{run_id}/{}/{}/{}",
        std::process::id(),
        CHECKS.fetch_add(1, Ordering::Relaxed),
        OffsetDateTime::now_utc().unix_timestamp_nanos()
    )
}

/// The lease item, which is no finding's.
pub fn is_lease(attributes: &std::collections::HashMap<String, AttributeValue>) -> bool {
    attributes
        .get("access_key_id")
        .and_then(|v| v.as_s().ok())
        .is_some_and(|key| key.starts_with('#'))
}
