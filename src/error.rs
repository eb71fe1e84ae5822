//! One error type for the whole pipeline. Every variant says what failed and what to do, and maps to a stable
//! Lambda `errorType` so alarms and callers can tell the causes apart.

use lambda_runtime::Diagnostic;

/// Why an AWS call failed, as far as the operator can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsFailure {
    AccessDenied,
    Throttled,
    Timeout,
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid setting {variable}: {reason}")]
    Config {
        variable: &'static str,
        reason: String,
    },

    #[error("invalid event: {0}. Send an EventBridge Scheduled Event or a manual event such as {{\"dry_run\": true}} (see events/)")]
    InvalidEvent(String),

    #[error("{action} failed ({code}): {message}. {}", hint(*.failure, action, .member_role.as_deref()))]
    Aws {
        /// The name of the call, e.g. `iam:ListAccessKeys`.
        action: String,
        failure: AwsFailure,
        code: String,
        message: String,
        /// The member role the call ran as, in another account; `None` for the function's own role.
        member_role: Option<String>,
    },

    #[error("the credential report was not ready before the deadline after {attempts} attempts (last state: {last_state}). Run again; IAM may be busy generating reports for this account")]
    ReportNotReady { attempts: u32, last_state: String },

    #[error("the credential report is malformed at row {row}, column {column}: {reason}. Regenerate it with `aws iam generate-credential-report`; if it persists, report a bug with this message")]
    ReportMalformed {
        row: u64,
        column: String,
        reason: String,
    },

    #[error("the GetCredentialReport response has no {missing}, so the report cannot be trusted. Regenerate it with `aws iam generate-credential-report` and run again; if it persists, report a bug with this message")]
    ReportIncomplete { missing: &'static str },

    #[error("{action} answered without {missing}{}; no verdict can rest on it. Run again; if it persists, report a bug with this message", context.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    IncompleteResponse {
        action: &'static str,
        missing: &'static str,
        /// What the answer was about, e.g. `user alice`.
        context: Option<String>,
    },

    #[error("the invocation deadline was reached during {phase}; no result is trustworthy. Raise the function timeout or run again")]
    Deadline { phase: &'static str },

    #[error("no findings topic: set FINDINGS_TOPIC_ARN, or send {{\"dry_run\": true}} to only return the report")]
    NoTopic,

    #[error("publishing alert part(s) {} of {parts} failed: {cause}. Delivered parts: {}. Every finding is in this run's logs (run {run_id}); fix the cause and run again", part_list(.failed), part_list(.delivered))]
    Publish {
        run_id: String,
        parts: usize,
        failed: Vec<usize>,
        delivered: Vec<usize>,
        /// The first failure; the others are logged.
        cause: Box<Error>,
    },

    #[error("the alert could not be rendered: {0}")]
    Render(String),

    #[error("account {account_id} could not be checked: assuming {role_arn} failed: {cause}. Deploy member-role.yaml into that account (the StackSet in the README does it for a whole organization), so the role exists and trusts this function's role; or add the account to EXCLUDE_ACCOUNTS")]
    AssumeRole {
        account_id: String,
        role_arn: String,
        cause: Box<Error>,
    },

    #[error("dispatch sent {sent} of {} account(s); not sent: {}: {cause}. Run again: accounts already sent are checked twice, which publishes their alerts twice under the same run_id", .sent + .failed.len(), .failed.join(", "))]
    Dispatch {
        sent: usize,
        /// The accounts whose work message was not accepted.
        failed: Vec<String>,
        cause: String,
    },

    #[error("no account to check: {0}")]
    NoAccounts(String),

    #[error("account {0} is in EXCLUDE_ACCOUNTS, which are never checked")]
    Excluded(String),

    #[error("Security Hub rejected finding(s) {}: {cause}. Enable Security Hub in this account and region, or set SECURITY_HUB=false; if it persists, report a bug with this message", .failed.join(", "))]
    SecurityHub {
        /// The IDs of the findings not imported.
        failed: Vec<String>,
        cause: String,
    },

    #[error("the ledger {table} could not be used ({action}): {cause}. The findings of this check were still published where SNS accepted them. Check that the table exists in the function's account and region and that the function's role may call {action} on it (template.yaml grants it); then run again")]
    LedgerUnavailable {
        table: String,
        action: &'static str,
        cause: Box<Error>,
    },

    #[error("account {account_id} is being checked by another invocation: {detail}. This check stopped before it could announce or change anything twice; it is retried (SQS redelivers the message, Lambda retries the event), or run it again in a minute")]
    CheckInProgress { account_id: String, detail: String },

    #[error("could not deactivate access key(s) {}: {cause}. The alert, already published, lists them; the other keys were handled. Grant iam:UpdateAccessKey (Remediation=deactivate in the templates), or deactivate them by hand", .keys.join(", "))]
    RemediationFailed {
        /// `AKIA... (user)`, one per key.
        keys: Vec<String>,
        /// The first failure; the others are logged.
        cause: String,
    },
}

fn hint(failure: AwsFailure, action: &str, member_role: Option<&str>) -> String {
    let action = crate::permissions::policy_action(action);
    match (failure, member_role) {
        (AwsFailure::AccessDenied, Some(role)) => format!(
            "Grant {action} to the member role {role} (member-role.yaml lists every action it needs; update the StackSet)"
        ),
        (AwsFailure::AccessDenied, None) => {
            format!("Grant {action} to the function's role (template.yaml lists every action keywatch needs)")
        }
        (AwsFailure::Throttled, _) => {
            "IAM throttling outlasted every retry; run again later, or raise AWS_MAX_ATTEMPTS"
                .to_string()
        }
        (AwsFailure::Timeout, _) => {
            "The call timed out; check the network path to the AWS endpoint and run again"
                .to_string()
        }
        (AwsFailure::Other, _) => {
            "Run again; if it persists, check the AWS Health dashboard".to_string()
        }
    }
}

fn part_list(parts: &[usize]) -> String {
    if parts.is_empty() {
        return "none".to_string();
    }
    parts
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    /// The same error, said of a call made as the member role `role` (for its hint); `None` changes nothing.
    pub fn as_member_role(self, role: Option<&str>) -> Error {
        match (self, role) {
            (
                Error::Aws {
                    action,
                    failure,
                    code,
                    message,
                    ..
                },
                Some(role),
            ) => Error::Aws {
                action,
                failure,
                code,
                message,
                member_role: Some(role.to_string()),
            },
            (other, _) => other,
        }
    }

    /// Whether retrying can heal it. Permanent: denied, not enabled, bad configuration or input, rejected by the
    /// service. Transient: throttling, 5xx, timeouts, the deadline, a report not ready, an answer short of a field.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Aws { failure, code, .. } => {
                *failure == AwsFailure::AccessDenied
                    // Security Hub not enabled in the account ("not subscribed to AWS Security Hub").
                    || code == "InvalidAccessException"
                    || code.starts_with("InvalidInput")
            }
            Error::AssumeRole { cause, .. }
            | Error::LedgerUnavailable { cause, .. }
            | Error::Publish { cause, .. } => cause.is_permanent(),
            Error::Config { .. }
            | Error::InvalidEvent(_)
            | Error::Excluded(_)
            | Error::NoTopic
            | Error::NoAccounts(_)
            | Error::SecurityHub { .. }
            | Error::RemediationFailed { .. } => true,
            // A part too large is split, never dropped: a render failure is a bug that must not silence an
            // account for good, so it is retried like a transient failure.
            Error::Render(_)
            | Error::ReportNotReady { .. }
            | Error::ReportMalformed { .. }
            | Error::ReportIncomplete { .. }
            | Error::IncompleteResponse { .. }
            | Error::CheckInProgress { .. }
            | Error::Deadline { .. }
            | Error::Dispatch { .. } => false,
        }
    }

    /// The Lambda `errorType`: stable, so alarms and callers can match on it.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Config { .. } => "Keywatch.InvalidSetting",
            Error::InvalidEvent(_) => "Keywatch.InvalidEvent",
            Error::Aws {
                failure: AwsFailure::AccessDenied,
                ..
            } => "Keywatch.AccessDenied",
            Error::Aws {
                failure: AwsFailure::Throttled,
                ..
            } => "Keywatch.Throttled",
            Error::Aws {
                failure: AwsFailure::Timeout,
                ..
            } => "Keywatch.Timeout",
            Error::Aws { .. } => "Keywatch.AwsError",
            Error::ReportNotReady { .. } => "Keywatch.ReportNotReady",
            Error::ReportMalformed { .. } | Error::ReportIncomplete { .. } => {
                "Keywatch.ReportMalformed"
            }
            Error::IncompleteResponse { .. } => "Keywatch.IncompleteResponse",
            Error::Deadline { .. } => "Keywatch.Deadline",
            Error::NoTopic => "Keywatch.NoTopic",
            Error::Publish { .. } => "Keywatch.PublishFailed",
            Error::Render(_) => "Keywatch.RenderFailed",
            Error::AssumeRole { .. } => "Keywatch.AssumeRoleFailed",
            Error::Dispatch { .. } => "Keywatch.DispatchFailed",
            Error::NoAccounts(_) => "Keywatch.NoAccounts",
            Error::Excluded(_) => "Keywatch.InvalidEvent",
            Error::RemediationFailed { .. } => "Keywatch.RemediationFailed",
            Error::SecurityHub { .. } => "Keywatch.SecurityHubFailed",
            Error::LedgerUnavailable { .. } => "Keywatch.LedgerUnavailable",
            Error::CheckInProgress { .. } => "Keywatch.CheckInProgress",
        }
    }
}

impl From<Error> for Diagnostic {
    fn from(error: Error) -> Self {
        Diagnostic {
            error_type: error.error_type().to_string(),
            error_message: error.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(action: &str) -> Error {
        Error::Aws {
            action: action.into(),
            failure: AwsFailure::AccessDenied,
            code: "AccessDenied".into(),
            message: "not authorized".into(),
            member_role: None,
        }
    }

    #[test]
    fn a_denial_names_the_role_and_the_action_to_grant() {
        let own = denied("iam:ListUsers").to_string();
        assert!(
            own.contains("Grant iam:ListUsers to the function's role"),
            "{own}"
        );
        let batch = denied("sqs:SendMessageBatch").to_string();
        assert!(
            batch.contains("Grant sqs:SendMessage to"),
            "IAM has no SendMessageBatch action: {batch}"
        );
        let role = "arn:aws:iam::111122223333:role/keywatch-member";
        let member = denied("iam:ListUsers").as_member_role(Some(role));
        assert_eq!(member.error_type(), "Keywatch.AccessDenied");
        let member = member.to_string();
        assert!(
            member.contains(&format!("Grant iam:ListUsers to the member role {role}"))
                && member.contains("member-role.yaml"),
            "{member}"
        );
    }

    #[test]
    fn failures_are_sorted_into_permanent_and_transient() {
        let aws = |failure, code: &str| Error::Aws {
            action: "x:Y".into(),
            failure,
            code: code.into(),
            message: "m".into(),
            member_role: None,
        };
        let assumed = |cause| Error::AssumeRole {
            account_id: "111122223333".into(),
            role_arn: "arn:aws:iam::111122223333:role/keywatch-member".into(),
            cause: Box::new(cause),
        };
        for (error, permanent) in [
            (aws(AwsFailure::AccessDenied, "AccessDenied"), true),
            (assumed(aws(AwsFailure::AccessDenied, "AccessDenied")), true),
            (aws(AwsFailure::Other, "InvalidAccessException"), true),
            (aws(AwsFailure::Throttled, "Throttling"), false),
            (aws(AwsFailure::Timeout, ""), false),
            (aws(AwsFailure::Other, "ServiceFailure"), false),
            (assumed(aws(AwsFailure::Other, "ServiceFailure")), false),
            (Error::Deadline { phase: "p" }, false),
            (Error::Render("r".into()), false),
            (
                Error::CheckInProgress {
                    account_id: "111122223333".into(),
                    detail: "d".into(),
                },
                false,
            ),
            (
                Error::Config {
                    variable: "V",
                    reason: "r".into(),
                },
                true,
            ),
            (
                Error::RemediationFailed {
                    keys: vec![],
                    cause: "c".into(),
                },
                true,
            ),
        ] {
            assert_eq!(error.is_permanent(), permanent, "{error}");
        }
    }
}
