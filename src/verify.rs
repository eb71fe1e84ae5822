//! Live verification: every candidate from the inventory is re-read from IAM before anything is reported, so
//! a key deleted, deactivated or used since the report never becomes a finding, and every finding carries its
//! true access key ID. Calls per candidate: those of [`live_snapshot`], plus ListUserTags only when one of the
//! rules would otherwise report the user.

use aws_sdk_iam::Client as IamClient;
use futures_util::{StreamExt, TryStreamExt};

use crate::aws::{aws_error, error_code};
use crate::config::Exemptions;
use crate::error::Result;
use crate::evaluate::{Context, LastUseReads, Rule, VerifiedUser};
use crate::inventory::api::live_snapshot;
use crate::inventory::{Freshness, InventoryUser};
use crate::model::UserSnapshot;
use time::OffsetDateTime;

/// Verifies candidates with at most `concurrency` users in flight. Users deleted meanwhile drop out; any
/// other failure fails the whole run, because a skipped user could hide a finding.
pub async fn verify(
    iam: &IamClient,
    candidates: &[&InventoryUser],
    rules: &[&dyn Rule],
    context: &Context,
    exemptions: &Exemptions,
    owner_tag_key: Option<&str>,
    concurrency: usize,
) -> Result<Vec<VerifiedUser>> {
    // What the rules need of last uses, worked out once for every candidate.
    let reads = LastUseReads::of(rules, context);
    let mut verified: Vec<VerifiedUser> = futures_util::stream::iter(candidates.iter().copied())
        .map(|candidate| {
            verify_one(
                iam,
                candidate,
                rules,
                context,
                &reads,
                exemptions,
                owner_tag_key,
            )
        })
        .buffer_unordered(concurrency.max(1))
        .try_filter_map(|user| async move { Ok(user) })
        .try_collect()
        .await?;
    verified.sort_by(|a, b| a.user.name.cmp(&b.user.name));
    Ok(verified)
}

async fn verify_one(
    iam: &IamClient,
    candidate: &InventoryUser,
    rules: &[&dyn Rule],
    context: &Context,
    reads: &LastUseReads,
    exemptions: &Exemptions,
    owner_tag_key: Option<&str>,
) -> Result<Option<VerifiedUser>> {
    let user = match candidate.freshness {
        Freshness::Live => candidate.user.clone(),
        Freshness::Report | Freshness::Unreported => {
            match live_snapshot(
                iam,
                &candidate.user.identity(),
                &known_used(&candidate.user),
                reads,
                context.now,
            )
            .await?
            {
                Some(user) => user,
                None => return Ok(None),
            }
        }
    };
    let reportable = rules
        .iter()
        .any(|rule| !rule.check(&user, context).is_empty());
    // One ListUserTags per reportable user, for both the exemption and the owner, and none when neither is set.
    let wanted = exemptions.tag_key.is_some() || owner_tag_key.is_some();
    let (exempt_tag, owner) =
        match reportable && wanted && exemptions.pattern_for(&user.identity()).is_none() {
            true => match user_tags(iam, &user.name).await? {
                Some(tags) => (
                    exemptions
                        .tag_key
                        .as_deref()
                        .and_then(|key| tag(&tags, key))
                        .map(|(key, value)| (key.to_string(), value.to_string())),
                    owner_tag_key
                        .and_then(|key| tag(&tags, key))
                        .map(|(_, value)| value.trim())
                        .filter(|value| !value.is_empty())
                        .map(str::to_string),
                ),
                // Deleted since it was listed: a user that no longer exists is never reported.
                None => return Ok(None),
            },
            false => (None, None),
        };
    Ok(Some(VerifiedUser {
        user,
        exempt_tag,
        owner,
    }))
}

/// The tag of this key as (key, value), matched case-insensitively like IAM matches tag keys.
fn tag<'a>(tags: &'a [aws_sdk_iam::types::Tag], key: &str) -> Option<(&'a str, &'a str)> {
    tags.iter()
        .find(|t| t.key.eq_ignore_ascii_case(key))
        .map(|t| (t.key.as_str(), t.value.as_str()))
}

/// Every tag of the user; `None` when the user was deleted meanwhile.
async fn user_tags(
    iam: &IamClient,
    user_name: &str,
) -> Result<Option<Vec<aws_sdk_iam::types::Tag>>> {
    let tags: Vec<_> = match iam
        .list_user_tags()
        .user_name(user_name)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
    {
        Ok(tags) => tags,
        Err(e) if error_code(&e) == Some("NoSuchEntity") => return Ok(None),
        Err(e) => return Err(aws_error("iam:ListUserTags", e)),
    };
    Ok(Some(tags))
}

/// (creation, last use) of the keys the report saw used. Such a key stays used, so it needs no live last-use
/// lookup. Keys sharing a creation second with another key are left out: the match would be ambiguous.
fn known_used(user: &UserSnapshot) -> Vec<(OffsetDateTime, OffsetDateTime)> {
    let second = |t: &OffsetDateTime| t.unix_timestamp();
    let unique = |created: &OffsetDateTime| {
        user.keys
            .iter()
            .filter(|k| k.created.as_ref().map(second) == Some(second(created)))
            .count()
            == 1
    };
    user.keys
        .iter()
        .filter_map(|key| key.created.zip(key.last_used))
        .filter(|(created, _)| unique(created))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KeySnapshot;
    use time::macros::datetime;

    #[test]
    fn known_used_skips_keys_created_in_the_same_second() {
        let key = |created, last_used| KeySnapshot {
            id: None,
            slot: None,
            active: true,
            created: Some(created),
            last_used,
        };
        let t = datetime!(2026-11-01 09:00:00.2 UTC);
        let used = Some(datetime!(2026-11-02 00:00 UTC));
        let user = |keys| UserSnapshot {
            name: "dave".into(),
            arn: "arn:aws:iam::123456789012:user/dave".into(),
            path: "/".into(),
            created: t,
            password_enabled: true,
            password_last_used: None,
            keys,
        };
        // Same second: the report cannot say which of the two live keys was used.
        let ambiguous = user(vec![
            key(t, used),
            key(datetime!(2026-11-01 09:00:00.9 UTC), None),
        ]);
        assert!(known_used(&ambiguous).is_empty());
        let distinct = user(vec![
            key(t, used),
            key(datetime!(2026-11-01 09:00:02 UTC), None),
        ]);
        assert_eq!(
            known_used(&distinct),
            [(t, datetime!(2026-11-02 00:00 UTC))]
        );
    }
}
