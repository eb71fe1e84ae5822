//! Every AWS action keywatch may call: the one source of truth that `template.yaml`'s policy is checked
//! against (in both directions) by `tests/template.rs`.

/// IAM read actions. IAM read actions cannot be scoped to a resource for the credential report, so the
/// template grants these on `*`.
pub const IAM_ACTIONS: &[&str] = &[
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:ListUsers",
    "iam:ListAccessKeys",
    "iam:GetLoginProfile",
    "iam:GetAccessKeyLastUsed",
    "iam:ListUserTags",
];

/// Granted on the findings topic only.
pub const SNS_ACTIONS: &[&str] = &["sns:Publish"];

/// Needs no grant: AWS allows every principal to ask who it is. Used once per container for the account ID.
pub const UNGATED_ACTIONS: &[&str] = &["sts:GetCallerIdentity"];

/// Whether the code may call this action (as the call counter names it).
pub fn is_known(action: &str) -> bool {
    IAM_ACTIONS
        .iter()
        .chain(SNS_ACTIONS)
        .chain(UNGATED_ACTIONS)
        .any(|a| *a == action)
}
