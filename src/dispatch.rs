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
use crate::event::{Invocation, WorkItem};
use crate::handler::Keywatch;
use crate::inventory::Source;

/// SQS takes at most 10 messages a batch.
const SQS_BATCH: usize = 10;
/// Rounds of sending what SQS did not accept, and the pause before each retry (times the round).
const DISPATCH_ROUNDS: u32 = 3;
const DISPATCH_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

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
    /// The dry run's overrides, as each account's check would apply them.
    pub grace_period_hours: u32,
    pub inventory_source: Source,
}

impl Keywatch {
    /// The accounts this deployment checks, without the excluded ones, sorted.
    pub(crate) async fn accounts(
        &self,
        clients: &Clients,
        deadline: &Deadline,
    ) -> Result<Vec<String>> {
        let own = self.own_account(clients, deadline).await?.to_string();
        let (accounts, inactive) = match &self.settings.fleet.scope {
            Scope::Own => (vec![own], 0),
            Scope::Listed(accounts) => (accounts.clone(), 0),
            Scope::Organization => {
                deadline
                    .run(
                        "listing the organization's accounts",
                        active_accounts(clients),
                    )
                    .await?
            }
        };
        let listed = accounts.len();
        let mut accounts: Vec<String> = accounts
            .into_iter()
            .filter(|account| !self.settings.fleet.exclude.contains(account))
            .collect();
        accounts.sort();
        accounts.dedup();
        // A run that checks nothing must not look like one that found nothing.
        if accounts.is_empty() {
            let why = match (&self.settings.fleet.scope, listed + inactive) {
                (Scope::Organization, 0) => "organizations:ListAccounts listed no account: this account is not \
                    the organization's management account or a delegated administrator for it. Deploy keywatch \
                    there, or set ACCOUNTS to a list of account IDs"
                    .to_string(),
                (Scope::Organization, _) => format!(
                    "organizations:ListAccounts listed {} account(s): {inactive} not ACTIVE and {listed} in \
                     EXCLUDE_ACCOUNTS. Shorten EXCLUDE_ACCOUNTS",
                    listed + inactive
                ),
                _ => format!(
                    "every account of ACCOUNTS ({listed}) is in EXCLUDE_ACCOUNTS. Shorten EXCLUDE_ACCOUNTS"
                ),
            };
            return Err(Error::NoAccounts(why));
        }
        Ok(accounts)
    }

    pub(crate) async fn plan(
        &self,
        invocation: &Invocation,
        run_id: &str,
        deadline: &Deadline,
    ) -> Result<Plan> {
        let clients = &self.clients;
        let own = self.own_account(clients, deadline).await?.to_string();
        let accounts = self.accounts(clients, deadline).await?;
        Ok(Plan {
            run_id: run_id.to_string(),
            dry_run: true,
            accounts: accounts
                .into_iter()
                .map(|account_id| PlannedAccount {
                    role_arn: self.role_arn(&own, &account_id),
                    account_id,
                    grace_period_hours: invocation
                        .grace_period_hours
                        .unwrap_or(self.settings.grace_period_hours),
                    inventory_source: invocation
                        .inventory_source
                        .unwrap_or(self.settings.inventory_source),
                })
                .collect(),
        })
    }

    /// Sends one work message per account. Every batch is tried; any account not accepted fails the run,
    /// naming it, so no account is silently left unchecked.
    pub(crate) async fn dispatch(&self, run_id: &str, deadline: &Deadline) -> Result<Dispatched> {
        let clients = &self.clients;
        let accounts = self.accounts(clients, deadline).await?;
        let Some(queue_url) = &self.settings.fleet.work_queue_url else {
            return Err(Error::Config {
                variable: "WORK_QUEUE_URL",
                reason: "not set; it is required when ACCOUNTS is not self".to_string(),
            });
        };
        let sqs = clients.sqs()?;
        let owners = match (&self.settings.owner_tag_key, &self.settings.fleet.scope) {
            (Some(tag_key), Scope::Organization) => {
                deadline
                    .run(
                        "reading the accounts' owner tags",
                        account_owners(clients, &accounts, tag_key),
                    )
                    .await?
            }
            _ => BTreeMap::new(),
        };
        let mut pending: Vec<(&String, String)> = accounts
            .iter()
            .map(|account_id| {
                serde_json::to_string(&WorkItem {
                    account_id: account_id.clone(),
                    run_id: run_id.to_string(),
                    owner: owners.get(account_id).cloned(),
                })
                .map(|body| (account_id, body))
                .map_err(|e| Error::Render(e.to_string()))
            })
            .collect::<Result<_>>()?;
        let mut causes = Vec::new();
        // Only the entries SQS did not accept are sent again, within the run: a run retried whole would check
        // and alert every account twice.
        for round in 0..DISPATCH_ROUNDS {
            if pending.is_empty() {
                break;
            }
            if round > 0 {
                tokio::time::sleep(DISPATCH_BACKOFF * round).await;
            }
            causes.clear();
            let mut failed = Vec::new();
            for chunk in pending.chunks(SQS_BATCH) {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(index, (_, body))| {
                        SendMessageBatchRequestEntry::builder()
                            .id(index.to_string())
                            .message_body(body)
                            .build()
                            .map_err(|e| Error::Render(e.to_string()))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let sent = deadline
                    .run("dispatching accounts", async {
                        sqs.send_message_batch()
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
                            let Some(item) =
                                entry.id.parse::<usize>().ok().and_then(|i| chunk.get(i))
                            else {
                                return Err(Error::IncompleteResponse {
                                    action: "sqs:SendMessageBatch",
                                    missing: "the Id of a failed entry that was sent",
                                    context: Some(format!("entry {:?}", entry.id)),
                                });
                            };
                            causes.push(format!(
                                "{}: {} {}",
                                item.0,
                                entry.code,
                                entry.message.unwrap_or_default()
                            ));
                            failed.push(item.clone());
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
            pending = failed;
        }
        if !pending.is_empty() {
            return Err(Error::Dispatch {
                sent: accounts.len() - pending.len(),
                failed: pending
                    .into_iter()
                    .map(|(account, _)| account.clone())
                    .collect(),
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

impl Keywatch {
    /// One account's owner tag, as dispatch reads every account's: for a check that no dispatch routed (an IAM
    /// event). `None` outside an organization, with routing off, or when the account has none.
    pub(crate) async fn account_owner(
        &self,
        account_id: &str,
        deadline: &Deadline,
    ) -> Result<Option<String>> {
        match (&self.settings.owner_tag_key, &self.settings.fleet.scope) {
            (Some(tag_key), Scope::Organization) => Ok(deadline
                .run(
                    "reading the account's owner tag",
                    account_owners(&self.clients, &[account_id.to_string()], tag_key),
                )
                .await?
                .remove(account_id)),
            _ => Ok(None),
        }
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
    let organizations = clients.organizations()?;
    futures_util::stream::iter(accounts)
        .map(|account_id| async move {
            let tags: Vec<_> = organizations
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

/// Every ACTIVE account of the organization, through the paginator, and how many were not ACTIVE.
async fn active_accounts(clients: &Clients) -> Result<(Vec<String>, usize)> {
    let mut accounts = Vec::new();
    let mut inactive = 0;
    let mut pages = clients
        .organizations()?
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
                inactive += 1;
                tracing::info!(account_id = %id, "account not ACTIVE; not checked");
            }
        }
    }
    Ok((accounts, inactive))
}
