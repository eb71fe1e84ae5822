//! Where the account's users and keys come from. Each source is one file here and yields an [`Inventory`].

pub mod api;
pub mod credential_report;
pub mod users;

use aws_sdk_iam::Client as IamClient;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::aws::aws_error;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::evaluate::LastUseReads;
use crate::model::{from_smithy, path_from_arn, UserIdentity, UserSnapshot};

/// Where the inventory comes from (`INVENTORY_SOURCE`, or `inventory_source` in a manual event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// One credential report plus live verification of candidates: O(1) + O(candidates) IAM calls.
    #[default]
    CredentialReport,
    /// Every user read live: nothing stale, O(users) IAM calls.
    Api,
}

impl Source {
    pub const NAMES: &'static str = "credential-report or api";

    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "credential-report" => Some(Source::CredentialReport),
            "api" => Some(Source::Api),
            _ => None,
        }
    }

    pub async fn collect(
        self,
        iam: &IamClient,
        concurrency: usize,
        reads: &LastUseReads,
        deadline: &Deadline,
    ) -> Result<Inventory> {
        match self {
            Source::CredentialReport => credential_report::collect(iam, deadline).await,
            Source::Api => api::collect(iam, concurrency, reads, deadline).await,
        }
    }
}

/// How much the inventory knows about a user's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// From the credential report: up to 4 hours old, no key IDs. Must be verified live before reporting.
    Report,
    /// Listed by IAM but missing from the report (created after it): keys unknown, must be looked up live.
    Unreported,
    /// Read live from IAM with key IDs: already verified.
    Live,
}

#[derive(Debug, Clone)]
pub struct InventoryUser {
    pub user: UserSnapshot,
    pub freshness: Freshness,
}

#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// When the credential report was generated; `None` for a fully live inventory.
    pub report_generated_at: Option<OffsetDateTime>,
    pub users: Vec<InventoryUser>,
    /// How long each step of collecting took, in milliseconds, for the run's log line and report.
    pub phase_ms: Vec<(&'static str, u64)>,
}

/// Milliseconds since `start`, for phase timings.
pub fn elapsed_ms(start: std::time::Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Inventory {
    pub fn keys_examined(&self) -> usize {
        self.users.iter().map(|u| u.user.keys.len()).sum()
    }
}

/// IAM's largest ListUsers page; without `MaxItems` it answers 100 users a page.
pub const LIST_USERS_PAGE: i32 = 1_000;

/// Every IAM user, through the SDK paginator, in IAM's largest pages: ⌈users / 1,000⌉ calls.
pub async fn list_users(iam: &IamClient) -> Result<Vec<UserIdentity>> {
    let mut users = Vec::new();
    let mut pages = iam
        .list_users()
        .max_items(LIST_USERS_PAGE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error("iam:ListUsers", e))?;
        for user in page.users {
            users.push(identity_of(user, "iam:ListUsers")?);
        }
    }
    Ok(users)
}

/// A user as IAM's `action` answered it.
pub(crate) fn identity_of(
    user: aws_sdk_iam::types::User,
    action: &'static str,
) -> Result<UserIdentity> {
    let created = from_smithy(&user.create_date).ok_or_else(|| Error::IncompleteResponse {
        action,
        missing: "a valid CreateDate",
        context: Some(format!("user {}", user.user_name)),
    })?;
    Ok(UserIdentity {
        path: if user.path.is_empty() {
            path_from_arn(&user.arn)
        } else {
            user.path
        },
        created,
        password_last_used: user.password_last_used.as_ref().and_then(from_smithy),
        name: user.user_name,
        arn: user.arn,
    })
}

impl InventoryUser {
    /// A user listed live whose keys and password are still to be read.
    pub fn unread(identity: UserIdentity) -> InventoryUser {
        InventoryUser {
            user: UserSnapshot {
                name: identity.name,
                arn: identity.arn,
                path: identity.path,
                created: identity.created,
                password_enabled: false,
                password_last_used: identity.password_last_used,
                keys: Vec::new(),
            },
            freshness: Freshness::Unreported,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_iam::operation::list_users::ListUsersOutput;
    use aws_sdk_iam::types::User;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn user(name: &str) -> User {
        User::builder()
            .user_name(name)
            .user_id(format!("AIDA{name}"))
            .arn(format!("arn:aws:iam::123456789012:user/{name}"))
            .path("/")
            .create_date(aws_smithy_types::DateTime::from_secs(1_700_000_000))
            .build()
            .expect("all required fields set")
    }

    // moto never paginates ListUsers, so pagination is checked here against canned pages.
    #[tokio::test]
    async fn list_users_follows_every_page() {
        let first = mock!(aws_sdk_iam::Client::list_users)
            .match_requests(|req| req.marker().is_none() && req.max_items() == Some(1_000))
            .then_output(|| {
                ListUsersOutput::builder()
                    .users(user("a"))
                    .users(user("b"))
                    .is_truncated(true)
                    .marker("page-2")
                    .build()
                    .expect("users set")
            });
        let second = mock!(aws_sdk_iam::Client::list_users)
            .match_requests(|req| req.marker() == Some("page-2") && req.max_items() == Some(1_000))
            .then_output(|| {
                ListUsersOutput::builder()
                    .users(user("c"))
                    .is_truncated(false)
                    .build()
                    .expect("users set")
            });
        let iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, [&first, &second]);
        let names: Vec<String> = list_users(&iam)
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
    }
}
