//! The notice that an account could not be checked, published on the check's last attempt so a broken account is
//! never silent. The dead-letter queue's alarm is the backstop.

use serde::Serialize;

use super::render::{AlertPart, MAX_SUBJECT_CHARS};
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
    /// How often the check was tried; the message now goes to the dead-letter queue.
    pub attempts: u32,
    pub message_id: &'a str,
    /// The owner this copy is for, when routing by owner: the account's owner, and `unowned`.
    pub owner: Option<&'a str>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    default: &'a str,
    email: &'a str,
}

/// Subject, and the `MessageStructure=json` envelope, as an alert part is rendered.
pub fn render(notice: &Notice) -> Result<AlertPart> {
    let account = notice.account_id.unwrap_or("an unknown account");
    let mut subject = format!("keywatch: account {account} could not be checked");
    subject.truncate(MAX_SUBJECT_CHARS);
    let text = format!(
        "{subject}\n\n\
         Account:  {account}{owner}\n\
         Run:      {run}\n\
         Attempts: {attempts} (the last; the work message {message} now goes to the dead-letter queue)\n\
         Error:    {error_type}\n\n\
         {error}\n\n\
         Until this is fixed, keywatch cannot see never-used access keys in this account. The README's\n\
         \"Checking an organization\" section shows how to deploy the member role everywhere.\n\
         -- keywatch",
        owner = notice
            .owner
            .map(|owner| format!("\nOwner:    {owner}"))
            .unwrap_or_default(),
        run = notice.run_id,
        attempts = notice.attempts,
        message = notice.message_id,
        error_type = notice.error_type,
        error = notice.error,
    );
    let json = serde_json::to_string(notice).map_err(|e| Error::Render(e.to_string()))?;
    let message = serde_json::to_string(&Envelope {
        default: &json,
        email: &text,
    })
    .map_err(|e| Error::Render(e.to_string()))?;
    Ok(AlertPart {
        part: 1,
        parts: 1,
        subject,
        message,
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
        let part = render(&Notice {
            schema: SCHEMA,
            run_id: "r1",
            account_id: Some("111122223333"),
            error_type: error.error_type(),
            error: error.to_string(),
            attempts: 3,
            message_id: "m1",
            owner: Some("platform"),
        })
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
    }
}
