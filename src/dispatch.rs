//! Fans a run out over accounts: one work message per account on the work queue, so each account gets its own
//! invocation, 15-minute budget, retries and place in the dead-letter queue (Lambda's SQS event source mapping
//! does the rest).

use std::collections::BTreeMap;

use aws_sdk_organizations::types::{AccountState, AccountStatus};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::aws::{aws_error, Clients};
use crate::config::Scope;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::event::WorkItem;
use crate::handler::Keywatch;

/// SQS takes at most 10 messages a batch.
const SQS_BATCH: usize = 10;

/// What a dispatch run returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dispatched {
    pub run_id: String,
    pub dispatched: usize,
    pub accounts: Vec<String>,
}

/// What a dry run of the organization returns: the accounts, and the role each would be read through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub run_id: String,
    pub dry_run: bool,
    pub accounts: Vec<PlannedAccount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedAccount {
    pub account_id: String,
    /// `None` for the function's own account, read with its own credentials.
    pub role_arn: Option<String>,
}

impl Keywatch {
    /// The accounts this deployment checks, without the excluded ones, sorted.
    pub(crate) async fn accounts(
        &self,
        clients: &Clients,
        deadline: &Deadline,
    ) -> Result<Vec<String>> {
        let own = self.own_account(clients, deadline).await?.to_string();
        let accounts = match &self.settings.fleet.scope {
            Scope::Own => vec![own],
            Scope::Listed(accounts) => accounts.clone(),
            Scope::Organization => {
                deadline
                    .run(
                        "listing the organization's accounts",
                        active_accounts(clients),
                    )
                    .await?
            }
        };
        let mut accounts: Vec<String> = accounts
            .into_iter()
            .filter(|account| !self.settings.fleet.exclude.contains(account))
            .collect();
        accounts.sort();
        accounts.dedup();
        Ok(accounts)
    }

    pub(crate) async fn plan(&self, run_id: &str, deadline: &Deadline) -> Result<Plan> {
        let clients = self.clients.counted();
        let own = self.own_account(&clients, deadline).await?.to_string();
        let accounts = self.accounts(&clients, deadline).await?;
        Ok(Plan {
            run_id: run_id.to_string(),
            dry_run: true,
            accounts: accounts
                .into_iter()
                .map(|account_id| PlannedAccount {
                    role_arn: self.role_arn(&own, &account_id),
                    account_id,
                })
                .collect(),
        })
    }

    /// Sends one work message per account. Every batch is tried; any account not accepted fails the run,
    /// naming it, so no account is silently left unchecked.
    pub(crate) async fn dispatch(&self, run_id: &str, deadline: &Deadline) -> Result<Dispatched> {
        let clients = self.clients.counted();
        let accounts = self.accounts(&clients, deadline).await?;
        let Some(queue_url) = &self.settings.fleet.work_queue_url else {
            return Err(Error::Config {
                variable: "WORK_QUEUE_URL",
                reason: "not set; it is required when ACCOUNTS is not self".to_string(),
            });
        };
        let owners = match (&self.settings.owner_tag_key, &self.settings.fleet.scope) {
            (Some(tag_key), Scope::Organization) => {
                deadline
                    .run(
                        "reading the accounts' owner tags",
                        account_owners(&clients, &accounts, tag_key),
                    )
                    .await?
            }
            _ => BTreeMap::new(),
        };
        let mut failed = Vec::new();
        let mut causes = Vec::new();
        for chunk in accounts.chunks(SQS_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, account_id)| {
                    let body = serde_json::to_string(&WorkItem {
                        account_id: account_id.clone(),
                        run_id: run_id.to_string(),
                        owner: owners.get(account_id).cloned(),
                    })
                    .map_err(|e| Error::Render(e.to_string()))?;
                    SendMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|e| Error::Render(e.to_string()))
                })
                .collect::<Result<Vec<_>>>()?;
            let sent = deadline
                .run("dispatching accounts", async {
                    clients
                        .sqs
                        .send_message_batch()
                        .queue_url(queue_url)
                        .set_entries(Some(entries))
                        .send()
                        .await
                        .map_err(|e| aws_error("sqs:SendMessageBatch", e))
                })
                .await;
            match sent {
                Ok(out) => {
                    for entry in out.failed {
                        let account = entry
                            .id
                            .parse::<usize>()
                            .ok()
                            .and_then(|i| chunk.get(i))
                            .cloned()
                            .unwrap_or_else(|| format!("(entry {})", entry.id));
                        causes.push(format!(
                            "{account}: {} {}",
                            entry.code,
                            entry.message.unwrap_or_default()
                        ));
                        failed.push(account);
                    }
                }
                // The deadline ends the run: accounts after it would not be sent either.
                Err(error @ Error::Deadline { .. }) => return Err(error),
                Err(error) => {
                    causes.push(error.to_string());
                    failed.extend(chunk.iter().cloned());
                }
            }
        }
        if !failed.is_empty() {
            return Err(Error::Dispatch {
                sent: accounts.len() - failed.len(),
                failed,
                cause: causes.join("; "),
            });
        }
        tracing::info!(run_id, dispatched = accounts.len(), accounts = ?accounts, "accounts dispatched");
        Ok(Dispatched {
            run_id: run_id.to_string(),
            dispatched: accounts.len(),
            accounts,
        })
    }
}

/// Accounts at once while their tags are read.
const TAG_READS_IN_PARALLEL: usize = 4;

/// Each account's owner tag (matched as IAM matches tag keys, ignoring case), trimmed; accounts without one are
/// left out. One `ListTagsForResource` per account (and page), once per dispatch.
async fn account_owners(
    clients: &Clients,
    accounts: &[String],
    tag_key: &str,
) -> Result<BTreeMap<String, String>> {
    futures_util::stream::iter(accounts)
        .map(|account_id| async move {
            let tags: Vec<_> = clients
                .organizations
                .list_tags_for_resource()
                .resource_id(account_id)
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| aws_error("organizations:ListTagsForResource", e))?;
            let owner = tags
                .into_iter()
                .find(|tag| tag.key.eq_ignore_ascii_case(tag_key))
                .map(|tag| tag.value.trim().to_string())
                .filter(|owner| !owner.is_empty());
            Ok(owner.map(|owner| (account_id.clone(), owner)))
        })
        .buffer_unordered(TAG_READS_IN_PARALLEL)
        .try_filter_map(|owner| async move { Ok(owner) })
        .try_collect()
        .await
}

/// Every ACTIVE account of the organization, through the paginator.
async fn active_accounts(clients: &Clients) -> Result<Vec<String>> {
    let mut accounts = Vec::new();
    let mut pages = clients
        .organizations
        .list_accounts()
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error("organizations:ListAccounts", e))?;
        for account in page.accounts.unwrap_or_default() {
            // `State` replaces the deprecated `Status`; either may be the one a service sends.
            let active = match (&account.state, &account.status) {
                (Some(state), _) => *state == AccountState::Active,
                (None, Some(status)) => *status == AccountStatus::Active,
                (None, None) => false,
            };
            let id = account.id.ok_or(Error::IncompleteResponse {
                action: "organizations:ListAccounts",
                missing: "an account Id",
                context: None,
            })?;
            if active {
                accounts.push(id);
            } else {
                tracing::info!(account_id = %id, "account not ACTIVE; not checked");
            }
        }
    }
    Ok(accounts)
}
