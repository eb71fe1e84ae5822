//! The fully live inventory (`INVENTORY_SOURCE=api`): paginated `ListUsers`, then every user read live with
//! bounded concurrency. No credential report, so nothing is up to 4 hours old and `GenerateCredentialReport`
//! need not be granted; the price is O(users) IAM calls instead of O(candidates).

use aws_sdk_iam::types::{AccessKeyMetadata, StatusType};
use aws_sdk_iam::Client as IamClient;
use futures_util::{StreamExt, TryStreamExt};

use super::{elapsed_ms, list_users, Freshness, Inventory, InventoryUser};
use crate::aws::{aws_error, error_code};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::evaluate::LastUseReads;
use time::OffsetDateTime;

use crate::model::{from_smithy, KeySnapshot, UserIdentity, UserSnapshot};

pub async fn collect(
    iam: &IamClient,
    concurrency: usize,
    reads: &LastUseReads,
    deadline: &Deadline,
) -> Result<Inventory> {
    let now = OffsetDateTime::now_utc();
    let start = std::time::Instant::now();
    let identities = deadline.run("ListUsers", list_users(iam)).await?;
    let mut users: Vec<InventoryUser> = deadline
        .run(
            "live inventory",
            futures_util::stream::iter(identities.iter())
                .map(|identity| live_snapshot(iam, identity, &[], reads, now))
                .buffer_unordered(concurrency.max(1))
                .try_filter_map(|user| async move {
                    Ok(user.map(|user| InventoryUser {
                        user,
                        freshness: Freshness::Live,
                    }))
                })
                .try_collect(),
        )
        .await?;
    users.sort_by(|a, b| a.user.name.cmp(&b.user.name));
    Ok(Inventory {
        report_generated_at: None,
        users,
        phase_ms: vec![("live_inventory", elapsed_ms(start))],
    })
}

/// Reads one user's keys and password live; `None` if the user no longer exists. Calls whose answer cannot
/// change the verdict are skipped: no active key, no `GetLoginProfile` (the snapshot then says no password);
/// `GetAccessKeyLastUsed` only for the Active keys `reads` names, and not for a key whose creation time is in
/// `known_used`, the (creation, last use) times of keys the credential report saw used, when `reads` lets that
/// use stand (a use is never undone, and the report's `last_rotated` is the key's creation time, so the two
/// match to the second).
pub async fn live_snapshot(
    iam: &IamClient,
    identity: &UserIdentity,
    known_used: &[(OffsetDateTime, OffsetDateTime)],
    reads: &LastUseReads,
    now: OffsetDateTime,
) -> Result<Option<UserSnapshot>> {
    let listed = iam
        .list_access_keys()
        .user_name(&identity.name)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await;
    let listed = match listed {
        Ok(keys) => keys,
        Err(e) if error_code(&e) == Some("NoSuchEntity") => return Ok(None),
        Err(e) => return Err(aws_error("iam:ListAccessKeys", e)),
    };
    let password_enabled = if listed.iter().any(is_active) {
        has_login_profile(iam, &identity.name).await?
    } else {
        false
    };

    let created_seconds: Vec<i64> = listed
        .iter()
        .filter_map(|key| key.create_date.as_ref().map(|d| d.secs()))
        .collect();
    let mut keys = Vec::with_capacity(listed.len());
    for key in listed {
        let active = is_active(&key);
        let Some(id) = key.access_key_id.filter(|id| !id.is_empty()) else {
            // A key we cannot name could be the finding; never skip it silently.
            return Err(Error::IncompleteResponse {
                action: "iam:ListAccessKeys",
                missing: "an AccessKeyId",
                context: Some(format!("a key of user {}", identity.name)),
            });
        };
        // Last use is read only where a rule needs it (`reads`).
        let created = key.create_date.as_ref().and_then(from_smithy);
        // Only an unambiguous match counts: two keys created in the same second cannot be told apart.
        let seen_used = created
            .filter(|c| {
                created_seconds
                    .iter()
                    .filter(|s| **s == c.unix_timestamp())
                    .count()
                    == 1
            })
            .and_then(|c| {
                known_used
                    .iter()
                    .find(|(known, _)| known.unix_timestamp() == c.unix_timestamp())
            });
        let known = seen_used.map(|(_, used)| *used);
        let last_used = if !(active && reads.must_read(password_enabled, known, now)) {
            known
        } else {
            match last_use(iam, &id).await? {
                LastUse::Never => None,
                LastUse::At(used) => Some(used),
                // Deleted between the two calls: it can no longer be a finding.
                LastUse::KeyGone => continue,
            }
        };
        keys.push(KeySnapshot {
            id: Some(id),
            slot: None,
            active,
            created,
            last_used,
        });
    }
    Ok(Some(UserSnapshot {
        name: identity.name.clone(),
        arn: identity.arn.clone(),
        path: identity.path.clone(),
        created: identity.created,
        password_enabled,
        password_last_used: identity.password_last_used,
        keys,
    }))
}

/// What `GetAccessKeyLastUsed` says of a key.
#[derive(Debug)]
pub enum LastUse {
    Never,
    At(OffsetDateTime),
    /// `NoSuchEntity`: the key was deleted since it was listed.
    KeyGone,
}

pub async fn last_use(iam: &IamClient, access_key_id: &str) -> Result<LastUse> {
    match iam
        .get_access_key_last_used()
        .access_key_id(access_key_id)
        .send()
        .await
    {
        Ok(out) => read_last_use(out.access_key_last_used, access_key_id),
        Err(e) if error_code(&e) == Some("NoSuchEntity") => Ok(LastUse::KeyGone),
        Err(e) => Err(aws_error("iam:GetAccessKeyLastUsed", e)),
    }
}

/// "Never used" only when IAM said so: an answer without `AccessKeyLastUsed`, or with a `LastUsedDate` that
/// cannot be read, would otherwise become a finding and a deactivation.
fn read_last_use(
    last_used: Option<aws_sdk_iam::types::AccessKeyLastUsed>,
    access_key_id: &str,
) -> Result<LastUse> {
    let incomplete = |missing| Error::IncompleteResponse {
        action: "iam:GetAccessKeyLastUsed",
        missing,
        context: Some(format!("key {access_key_id}")),
    };
    let last_used = last_used.ok_or_else(|| incomplete("AccessKeyLastUsed"))?;
    match last_used.last_used_date {
        None => Ok(LastUse::Never),
        Some(date) => from_smithy(&date)
            .map(LastUse::At)
            .ok_or_else(|| incomplete("a readable LastUsedDate")),
    }
}

fn is_active(key: &AccessKeyMetadata) -> bool {
    key.status.as_ref() == Some(&StatusType::Active)
}

async fn has_login_profile(iam: &IamClient, user_name: &str) -> Result<bool> {
    match iam.get_login_profile().user_name(user_name).send().await {
        Ok(_) => Ok(true),
        Err(e) if error_code(&e) == Some("NoSuchEntity") => Ok(false),
        Err(e) => Err(aws_error("iam:GetLoginProfile", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_iam::types::AccessKeyLastUsed;
    use aws_smithy_types::DateTime;

    #[test]
    fn never_used_only_when_iam_says_so() {
        let answer = |date: Option<DateTime>| {
            AccessKeyLastUsed::builder()
                .set_last_used_date(date)
                .service_name("N/A")
                .region("N/A")
                .build()
                .ok()
        };
        assert!(matches!(
            read_last_use(answer(None), "K"),
            Ok(LastUse::Never)
        ));
        assert!(matches!(
            read_last_use(answer(Some(DateTime::from_secs(1_700_000_000))), "K"),
            Ok(LastUse::At(_))
        ));
        for (last_used, missing) in [
            (None, "AccessKeyLastUsed"),
            // Past what a timestamp can be read as.
            (
                answer(Some(DateTime::from_secs(i64::MAX))),
                "a readable LastUsedDate",
            ),
        ] {
            match read_last_use(last_used, "K") {
                Err(Error::IncompleteResponse { missing: m, .. }) => assert_eq!(m, missing),
                other => panic!("{missing}: {other:?}"),
            }
        }
    }
}
