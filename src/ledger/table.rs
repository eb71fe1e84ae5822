//! The ledger's DynamoDB table: one paged `Query` per account check, and `BatchWriteItem` (25 items a call, its
//! unprocessed items retried) for the items that changed. Always the function's own credentials: in an
//! Organization there is one ledger, in the central account.
//!
//! Items are mapped with `serde_dynamo`, not by hand with the SDK's `AttributeValue`s: [`Item`] is one serde
//! type that both reads and writes, so a field cannot be written under one name and read under another, and
//! its times use the same RFC 3339 serde as the rest of keywatch's output.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client as DynamoClient;

use super::Item;
use crate::aws::aws_error;
use crate::deadline::Deadline;
use crate::error::{Error, Result};

/// The most items `BatchWriteItem` takes in one call.
pub const BATCH_WRITE_MAX: usize = 25;
/// Rounds of retrying what `BatchWriteItem` left unprocessed, with exponential backoff, before failing.
const UNPROCESSED_ROUNDS: u32 = 6;
const UNPROCESSED_BACKOFF: Duration = Duration::from_millis(50);

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

    /// Writes `items` (puts, whole items), 25 a call.
    pub async fn save(&self, items: &[Item], deadline: &Deadline) -> Result<()> {
        for chunk in items.chunks(BATCH_WRITE_MAX) {
            let requests = chunk
                .iter()
                .map(|item| {
                    let attributes = serde_dynamo::to_item(item).map_err(|e| {
                        self.unavailable("dynamodb:BatchWriteItem", Error::Render(e.to_string()))
                    })?;
                    let put = PutRequest::builder()
                        .set_item(Some(attributes))
                        .build()
                        .map_err(|e| {
                            self.unavailable(
                                "dynamodb:BatchWriteItem",
                                Error::Render(e.to_string()),
                            )
                        })?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>>>()?;
            deadline
                .run("writing the ledger", self.write_batch(requests))
                .await?;
        }
        Ok(())
    }

    async fn write_batch(&self, mut requests: Vec<WriteRequest>) -> Result<()> {
        let mut round = 0;
        loop {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.name, requests)
                .send()
                .await
                .map_err(|e| {
                    self.unavailable(
                        "dynamodb:BatchWriteItem",
                        aws_error("dynamodb:BatchWriteItem", e),
                    )
                })?;
            requests = out
                .unprocessed_items
                .and_then(|mut unprocessed| unprocessed.remove(&self.name))
                .unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
            round += 1;
            if round > UNPROCESSED_ROUNDS {
                return Err(self.unavailable(
                    "dynamodb:BatchWriteItem",
                    Error::IncompleteResponse {
                        action: "dynamodb:BatchWriteItem",
                        missing: "every item processed",
                        context: Some(format!(
                            "{} item(s) still unprocessed after {UNPROCESSED_ROUNDS} retries",
                            requests.len()
                        )),
                    },
                ));
            }
            tokio::time::sleep(UNPROCESSED_BACKOFF * 2u32.pow(round - 1)).await;
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
