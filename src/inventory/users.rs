//! The users that IAM changes named (an event-driven check): each read with `GetUser`, then verified live like
//! any candidate. No credential report and no `ListUsers`: O(users named) IAM calls.

use std::time::Instant;

use aws_sdk_iam::Client as IamClient;
use futures_util::{StreamExt, TryStreamExt};

use super::{elapsed_ms, identity_of, Inventory, InventoryUser};
use crate::aws::{aws_error, error_code};
use crate::deadline::Deadline;
use crate::error::Result;

/// Each of `names` as IAM has it now; a user deleted since drops out (its findings then resolve).
pub async fn collect(
    iam: &IamClient,
    names: &[String],
    concurrency: usize,
    deadline: &Deadline,
) -> Result<Inventory> {
    let start = Instant::now();
    let mut users: Vec<InventoryUser> = deadline
        .run(
            "reading the users the events named",
            futures_util::stream::iter(names)
                .map(|name| get_user(iam, name))
                .buffer_unordered(concurrency.max(1))
                .try_filter_map(|user| async move { Ok(user) })
                .try_collect(),
        )
        .await?;
    users.sort_by(|a, b| a.user.name.cmp(&b.user.name));
    Ok(Inventory {
        report_generated_at: None,
        users,
        phase_ms: vec![("named_users", elapsed_ms(start))],
    })
}

async fn get_user(iam: &IamClient, name: &str) -> Result<Option<InventoryUser>> {
    match iam.get_user().user_name(name).send().await {
        Ok(out) => match out.user {
            Some(user) => Ok(Some(InventoryUser::unread(identity_of(
                user,
                "iam:GetUser",
            )?))),
            None => Err(crate::error::Error::IncompleteResponse {
                action: "iam:GetUser",
                missing: "the User",
                context: Some(format!("user {name}")),
            }),
        },
        Err(e) if error_code(&e) == Some("NoSuchEntity") => Ok(None),
        Err(e) => Err(aws_error("iam:GetUser", e)),
    }
}
