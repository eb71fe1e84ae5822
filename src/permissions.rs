//! Every AWS action keywatch may call: the one source of truth that `template.yaml`'s policy and
//! `member-role.yaml` are checked against (in both directions) by `tests/template.rs`.

/// IAM read actions of one account check. IAM read actions cannot be scoped to a resource for the credential
/// report, so the templates grant these on `*`: in the function's role, and in `member-role.yaml` for every other
/// account.
pub const IAM_ACTIONS: &[&str] = &[
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:ListUsers",
    "iam:ListAccessKeys",
    "iam:GetLoginProfile",
    "iam:GetAccessKeyLastUsed",
    "iam:ListUserTags",
];

/// An event-driven check of the users IAM changes name (CloudTrail events): each user read without the credential
/// report or `ListUsers`. Granted always, on `*` like the other IAM reads, in both roles: whether events arrive is
/// the template's rule's business, not a setting.
pub const EVENT_ACTIONS: &[&str] = &["iam:GetUser"];

/// An event-driven check with a grace period (`RECHECK_*`): one schedule per pending user, only in keywatch's own
/// schedule group.
pub const RECHECK_ACTIONS: &[&str] = &["scheduler:CreateSchedule"];

/// The role a re-check schedule sends as, passed to EventBridge Scheduler only (`iam:PassedToService`).
pub const PASS_ROLE_ACTIONS: &[&str] = &["iam:PassRole"];

/// Granted on the findings topic only.
pub const SNS_ACTIONS: &[&str] = &["sns:Publish"];

/// `ACCOUNTS=organization` only: the account list.
pub const ORGANIZATION_ACTIONS: &[&str] = &["organizations:ListAccounts"];

/// `ACCOUNTS=organization` with routing by owner (`OWNER_TAG_KEY` not empty): each account's owner tag, once per
/// account per dispatch.
pub const OWNER_ACTIONS: &[&str] = &["organizations:ListTagsForResource"];

/// `ACCOUNTS` other than `self`: the member role, granted only on its ARN in every account.
pub const MEMBER_ROLE_ACTIONS: &[&str] = &["sts:AssumeRole"];

/// `ACCOUNTS` other than `self`: dispatch sends to the work queue (`SendMessageBatch` is authorized as
/// `sqs:SendMessage`), and Lambda's event source mapping consumes it with the function's role. On the work
/// queue only.
pub const QUEUE_SEND_ACTIONS: &[&str] = &["sqs:SendMessage"];
pub const QUEUE_CONSUME_ACTIONS: &[&str] = &[
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
];

/// `REMEDIATION=deactivate` only: a due key is set Inactive, never deleted. In the function's role and in
/// `member-role.yaml`, on `*` like the other IAM actions.
pub const REMEDIATION_ACTIONS: &[&str] = &["iam:UpdateAccessKey"];

/// `SECURITY_HUB=true` only: the checked account's own hub. In the function's role and in `member-role.yaml`,
/// behind the `EnableSecurityHub` condition, on `*` (findings have no resource ARN before import).
pub const SECURITY_HUB_ACTIONS: &[&str] =
    &["securityhub:BatchImportFindings", "securityhub:GetFindings"];

/// With `LEDGER_TABLE`: one paged query per account check, a conditional put per changed item, and the
/// account's lease (a conditional put, and a delete when done), on the ledger table's ARN only, always as the
/// function's own role (in an Organization, the ledger is in the central account).
pub const LEDGER_ACTIONS: &[&str] = &["dynamodb:Query", "dynamodb:PutItem", "dynamodb:DeleteItem"];

/// Never called, and denied explicitly in both roles (`template.yaml` and `member-role.yaml`), so no bug and no
/// other policy on the role can create or delete credentials or users. Alongside them, `iam:UpdateAccessKey` is
/// denied on users exempt for good by the default exemption tag.
pub const DENIED_ACTIONS: &[&str] = &[
    "iam:CreateUser",
    "iam:DeleteUser",
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
    "iam:DeleteLoginProfile",
    "iam:CreateAccessKey",
    "iam:DeleteAccessKey",
    "iam:CreateServiceSpecificCredential",
    "iam:DeleteServiceSpecificCredential",
    "iam:UploadSSHPublicKey",
    "iam:DeleteSSHPublicKey",
    "iam:UploadSigningCertificate",
    "iam:DeleteSigningCertificate",
];

/// Needs no grant: AWS allows every principal to ask who it is. Used once per container for the account ID.
pub const UNGATED_ACTIONS: &[&str] = &["sts:GetCallerIdentity"];

/// The IAM action that authorizes a call, as the call counter names it: batch calls share their single
/// form's action.
pub fn policy_action(call: &str) -> &str {
    match call {
        "sqs:SendMessageBatch" => "sqs:SendMessage",
        "sqs:DeleteMessageBatch" => "sqs:DeleteMessage",
        other => other,
    }
}

/// Whether the code may call this action (as the call counter names it).
pub fn is_known(call: &str) -> bool {
    let action = policy_action(call);
    [
        IAM_ACTIONS,
        SNS_ACTIONS,
        ORGANIZATION_ACTIONS,
        OWNER_ACTIONS,
        MEMBER_ROLE_ACTIONS,
        QUEUE_SEND_ACTIONS,
        REMEDIATION_ACTIONS,
        SECURITY_HUB_ACTIONS,
        LEDGER_ACTIONS,
        UNGATED_ACTIONS,
    ]
    .concat()
    .contains(&action)
}
