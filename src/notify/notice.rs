//! The notice that an account could not be checked, published on the check's last attempt so a broken account is
//! never silent. The dead-letter queue's alarm is the backstop.

use serde::Serialize;

use super::render::{alert_id, AlertPart, Envelope, MAX_SUBJECT_CHARS};
use crate::config::Chat;
use crate::error::{Error, Result};

pub const SCHEMA: &str = "keywatch.check-failed/v1";

/// The JSON document SQS, Lambda and HTTPS subscribers receive.
#[derive(Debug, Serialize)]
pub struct Notice<'a> {
    pub schema: &'static str,
    pub run_id: &'a str,
    /// `None` when the work message was unreadable.
    pub account_id: Option<&'a str>,
    pub error_type: &'static str,
    pub error: String,
    /// How often the check was tried.
    pub attempts: u32,
    pub message_id: &'a str,
    /// The owner this copy is for, when routing by owner: the account's owner, and `unowned`.
    pub owner: Option<&'a str>,
    /// A failure that retrying cannot heal (denied, not enabled, a bad setting): the work message is acknowledged
    /// at once. Else this was the last attempt, and the message goes to the dead-letter queue.
    pub permanent: bool,
    /// Alert parts SNS accepted before the failure: the findings were delivered, what came after was not done.
    pub alert_parts_delivered: usize,
}

/// The document as published: the notice and its `alert_id`, also sent as the message attribute.
#[derive(Serialize)]
struct Identified<'a> {
    alert_id: &'a str,
    #[serde(flatten)]
    notice: &'a Notice<'a>,
}

/// Subject, and the `MessageStructure=json` envelope, as an alert part is rendered.
pub fn render(notice: &Notice, chat: Chat) -> Result<AlertPart> {
    let account = notice.account_id.unwrap_or("an unknown account");
    let delivered = notice.alert_parts_delivered > 0;
    let mut subject = if delivered {
        format!("keywatch: account {account} was checked, but not every step completed")
    } else {
        format!("keywatch: account {account} could not be checked")
    };
    subject.truncate(MAX_SUBJECT_CHARS);
    let attempts = if notice.permanent {
        "not retried: retrying cannot heal this failure, so the work message is acknowledged"
    } else {
        "the last; the work message now goes to the dead-letter queue"
    };
    let done = if delivered {
        format!(
            "Done:     findings delivered ({} alert part(s)); the step below was not done\n",
            notice.alert_parts_delivered
        )
    } else {
        String::new()
    };
    let consequence = if delivered {
        "The findings above were delivered; fix the cause so the rest (the ledger, Security Hub, deactivation)\n\
         completes on the next run."
    } else {
        "Until this is fixed, keywatch cannot see never-used access keys in this account. The README's\n\
         \"Checking an organization\" section shows how to deploy the member role everywhere."
    };
    let text = format!(
        "{subject}\n\n\
         Account:  {account}{owner}\n\
         Run:      {run}\n\
         Attempts: {count} ({attempts}; message {message})\n\
         {done}\
         Error:    {error_type}\n\n\
         {error}\n\n\
         {consequence}\n\
         -- keywatch",
        owner = notice
            .owner
            .map(|owner| format!("\nOwner:    {owner}"))
            .unwrap_or_default(),
        run = notice.run_id,
        count = notice.attempts,
        message = notice.message_id,
        error_type = notice.error_type,
        error = notice.error,
    );
    // A notice is sent once per check, on its last attempt: what identifies it is which check failed how.
    let alert_id = alert_id(&(
        notice.run_id,
        notice.account_id,
        notice.owner,
        "check-failed",
        notice.message_id,
        notice.error_type,
    ))?;
    let json = serde_json::to_string(&Identified {
        alert_id: &alert_id,
        notice,
    })
    .map_err(|e| Error::Render(e.to_string()))?;
    let https = match chat {
        Chat::Off => None,
        Chat::Custom => Some(super::chat::check_failed(
            notice,
            &alert_id,
            &subject,
            consequence,
        )?),
    };
    let message = serde_json::to_string(&Envelope {
        default: &json,
        email: &text,
        https: https.as_deref(),
    })
    .map_err(|e| Error::Render(e.to_string()))?;
    Ok(AlertPart {
        part: 1,
        parts: 1,
        subject,
        message,
        alert_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_names_the_account_the_failure_and_the_fix() {
        let error = Error::AssumeRole {
            account_id: "111122223333".into(),
            role_arn: "arn:aws:iam::111122223333:role/keywatch-member".into(),
            cause: Box::new(Error::Aws {
                action: "sts:AssumeRole".into(),
                failure: crate::error::AwsFailure::AccessDenied,
                code: "AccessDenied".into(),
                message: "not authorized".into(),
                member_role: None,
            }),
        };
        let part = render(
            &Notice {
                schema: SCHEMA,
                run_id: "r1",
                account_id: Some("111122223333"),
                error_type: error.error_type(),
                error: error.to_string(),
                attempts: 3,
                message_id: "m1",
                owner: Some("platform"),
                permanent: true,
                alert_parts_delivered: 0,
            },
            Chat::Off,
        )
        .unwrap();
        assert_eq!(
            part.subject,
            "keywatch: account 111122223333 could not be checked"
        );
        let envelope: serde_json::Value = serde_json::from_str(&part.message).unwrap();
        let email = envelope["email"].as_str().unwrap();
        for needle in [
            "sts:AssumeRole failed (AccessDenied)",
            "Deploy member-role.yaml",
            "Keywatch.AssumeRoleFailed",
        ] {
            assert!(email.contains(needle), "{needle}: {email}");
        }
        let document: serde_json::Value =
            serde_json::from_str(envelope["default"].as_str().unwrap()).unwrap();
        assert_eq!(document["account_id"], "111122223333");
        assert_eq!(document["schema"], SCHEMA);
        assert_eq!(document["alert_id"], part.alert_id.as_str());
        assert_eq!(part.alert_id.len(), 32);
    }

    #[test]
    fn a_notice_after_a_delivered_alert_says_what_was_and_was_not_done() {
        let part = render(
            &Notice {
                schema: SCHEMA,
                run_id: "r1",
                account_id: Some("111122223333"),
                error_type: "Keywatch.SecurityHubFailed",
                error: "Security Hub is not enabled".into(),
                attempts: 1,
                message_id: "m1",
                owner: None,
                permanent: true,
                alert_parts_delivered: 2,
            },
            Chat::Off,
        )
        .unwrap();
        assert_eq!(
            part.subject,
            "keywatch: account 111122223333 was checked, but not every step completed"
        );
        let envelope: serde_json::Value = serde_json::from_str(&part.message).unwrap();
        let email = envelope["email"].as_str().unwrap();
        for needle in [
            "Done:     findings delivered (2 alert part(s))",
            "not retried: retrying cannot heal this failure",
            "Security Hub is not enabled",
        ] {
            assert!(email.contains(needle), "{needle}: {email}");
        }
        assert!(
            !email.contains("cannot see never-used access keys"),
            "{email}"
        );
        let document: serde_json::Value =
            serde_json::from_str(envelope["default"].as_str().unwrap()).unwrap();
        assert_eq!(
            (&document["permanent"], &document["alert_parts_delivered"]),
            (&serde_json::json!(true), &serde_json::json!(2))
        );
    }
}
