//! Least privilege under IAM enforcement: keywatch runs as the role the deployed stack created, with moto
//! checking every call against that role's policy. With the policy as deployed the whole check succeeds, and
//! without any single action of it the run fails loudly, naming the denied action: never a quiet success with
//! fewer findings.
//!
//! The same for an organization (`Accounts=organization`): the dispatch run, and a member account checked
//! through `member-role.yaml`'s role deployed into it, whose policy alone authorizes the IAM reads there.
//!
//! And with Security Hub and remediation on (`EnableSecurityHub=true`, `Remediation=deactivate` in both
//! templates): a run imports its findings and deactivates the key (in the second run: the first alerts, and the
//! ledger counts the notice period from that alert), in the function's account with the function role and in a
//! member account with the member role alone; without any one of those actions it fails naming it.
//!
//! Every run reads the deployed function's environment, so it has the stack's ledger table (`LEDGER_TABLE`) and
//! `ALERTS=changes`. The ledger's actions are the function role's alone: its items, a member's too, are
//! written to the central table, never with the member role (which grants no DynamoDB action); without either
//! action a run fails as `Keywatch.LedgerUnavailable`, naming the table and the action, after publishing.
//!
//! One moto server per test: each case swaps a role's inline policy (PutRolePolicy) while enforcement is off,
//! then turns enforcement on for the run. Seeding also happens with enforcement off: moto's default credentials
//! are no IAM principal, so they would be denied too.

use keywatch_test_support as support;

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use keywatch::aws::{http_client, CallCounter, Clients};
use keywatch::deadline::Deadline;
use keywatch::error::Error;
use keywatch::event::{Event, Invocation, WorkItem};
use keywatch::handler::Keywatch;
use keywatch::inventory::Source;
use keywatch::ledger::{Item, State};
use keywatch::permissions::{
    policy_action, DENIED_ACTIONS, EVENT_ACTIONS, IAM_ACTIONS, LEDGER_ACTIONS, MEMBER_ROLE_ACTIONS,
    ORGANIZATION_ACTIONS, OWNER_ACTIONS, QUEUE_CONSUME_ACTIONS, QUEUE_SEND_ACTIONS,
    REMEDIATION_ACTIONS, SECURITY_HUB_ACTIONS, SNS_ACTIONS, UNGATED_ACTIONS,
};
use keywatch::report::Report;
use keywatch::route::Response;
use serde_json::{json, Value};
use support::{
    create_member, create_organization, deploy_member_role, deploy_template, member_account,
    settings, venv_tool, Account, Moto,
};

/// The deployed stack's function role, assumed once: moto reads the role's policy at every request, so the
/// session's credentials see each policy swap.
struct Role {
    name: String,
    policy_name: String,
    policy: Value,
    topic_arn: String,
    credentials: (String, String, String),
    /// The function's environment as Lambda holds it, plus the region Lambda sets: what every run reads.
    environment: Vec<(String, String)>,
    /// The stack's ledger table (`LEDGER_TABLE`) and its ARN.
    ledger: String,
    ledger_arn: String,
    /// The IAM event queue's ARN (EventChecks, on by default); empty without it.
    event_queue_arn: String,
}

impl Role {
    /// The deployed function's variables, as [`settings`] takes them.
    fn vars(&self) -> Vec<(&str, &str)> {
        self.environment
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

async fn deploy_and_assume(moto: &Moto) -> Role {
    assume(moto, &deploy_template(moto, "keywatch", &[])).await
}

async fn assume(moto: &Moto, summary: &Value) -> Role {
    let role = &summary["role"];
    let (policy_name, policy) = role["inline_policies"]
        .as_object()
        .and_then(|policies| policies.iter().next())
        .expect("the function role has an inline policy");
    let sts = aws_sdk_sts::Client::new(&moto.sdk_config().await);
    let assumed = sts
        .assume_role()
        .role_arn(role["arn"].as_str().expect("role arn"))
        .role_session_name("keywatch-least-privilege")
        .send()
        .await
        .expect("assume the function role")
        .credentials
        .expect("credentials");
    let environment: Vec<(String, String)> = summary["function"]["environment"]
        .as_object()
        .expect("the deployed function's environment")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("a variable").to_string()))
        .chain([("AWS_REGION".to_string(), "us-east-1".to_string())])
        .collect();
    let ledger = summary["ledger"]["name"]
        .as_str()
        .expect("the ledger table");
    // The function reads the stack's own table.
    assert_eq!(summary["function"]["environment"]["LEDGER_TABLE"], ledger);
    Role {
        name: role["name"].as_str().expect("role name").to_string(),
        policy_name: policy_name.clone(),
        policy: policy.clone(),
        topic_arn: summary["outputs"]["TopicArn"]
            .as_str()
            .expect("TopicArn output")
            .to_string(),
        credentials: (
            assumed.access_key_id,
            assumed.secret_access_key,
            assumed.session_token,
        ),
        environment,
        ledger: ledger.to_string(),
        ledger_arn: summary["ledger"]["arn"]
            .as_str()
            .expect("the ledger's ARN")
            .to_string(),
        event_queue_arn: summary["queues"]["IamEventQueue.Arn"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    }
}

/// Puts `policy` on the role (enforcement off), then runs one invocation as the role with enforcement on, with
/// the deployed function's settings.
async fn run_as_role(
    moto: &Moto,
    account: &Account,
    role: &Role,
    policy: &Value,
    invocation: Invocation,
) -> keywatch::Result<Report> {
    run_as_role_with(moto, account, role, policy, &role.vars(), invocation).await
}

/// [`run_as_role`] with these settings.
async fn run_as_role_with(
    moto: &Moto,
    account: &Account,
    role: &Role,
    policy: &Value,
    vars: &[(&str, &str)],
    invocation: Invocation,
) -> keywatch::Result<Report> {
    put_policy(account, &role.name, &role.policy_name, policy).await;
    let (keywatch, _) = keywatch_as(moto, role, vars).await;
    enforced(
        moto,
        keywatch.run(
            &invocation,
            "least-privilege",
            &Deadline::after(Duration::from_secs(60)),
        ),
    )
    .await
}

/// Replaces a role's inline policy, with enforcement off.
async fn put_policy(account: &Account, role_name: &str, policy_name: &str, policy: &Value) {
    account
        .iam
        .put_role_policy()
        .role_name(role_name)
        .policy_name(policy_name)
        .policy_document(policy.to_string())
        .send()
        .await
        .expect("swap the role policy");
}

/// `future` with moto's IAM enforcement on, and off again after it.
async fn enforced<T>(moto: &Moto, future: impl std::future::Future<Output = T>) -> T {
    moto.set_auth(true);
    let result = future.await;
    moto.set_auth(false);
    result
}

/// A new Keywatch (as a cold start: sts:GetCallerIdentity is called every time) with the role's credentials
/// and these settings, and the counter of every call its clients make.
async fn keywatch_as(moto: &Moto, role: &Role, vars: &[(&str, &str)]) -> (Keywatch, CallCounter) {
    moto.set_auth(false);
    let (key, secret, token) = role.credentials.clone();
    let config = moto
        .sdk_config_with(&key, &secret, Some(token))
        .await
        .into_builder()
        .http_client(moto_quirks::AwsQueryErrors::wrap(http_client()))
        .build();
    let mut clients = Clients::from_config(&config);
    // The SNS client as Clients builds it (sharing the call counter), plus the moto signing workaround.
    clients.sns = aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::config::Builder::from(&config)
            .interceptor(clients.calls.clone())
            .interceptor(moto_quirks::QuotePlusForm)
            .build(),
    );
    let calls = clients.calls.clone();
    (Keywatch::new(settings(vars), clients), calls)
}

/// moto 5.2.5 matches SNS and DynamoDB permissions only against Resource `*`, never a topic or table ARN (its
/// SNS and DynamoDB handlers name no resource to its IAM check), so a statement scoped to the topic or the
/// ledger table (as deployed) would be denied there. This copy widens those two statements to `*` for moto
/// only; moto still checks their actions, and the deployed scope is checked statically (tests/template.rs) and
/// on the deployed role below.
///
/// moto also authorizes SendMessageBatch as an action of its own, where AWS authorizes it as `sqs:SendMessage`
/// (IAM has no `sqs:SendMessageBatch` action), so this copy adds it next to `sqs:SendMessage`, on the same
/// queue. [`without`] removes both together.
///
/// moto's enforcement knows no condition key but `sts:ExternalId`, and treats a statement whose condition it
/// cannot verify as an explicit deny of its actions, `Allow` or `Deny`. So this copy runs without the two
/// conditioned statements, each proven statically in tests/template.rs instead: the `Allow` of `sts:AssumeRole`
/// loses its `aws:ResourceOrgID` or `aws:ResourceAccount` condition (it stays on the member role's ARN), and the
/// `Deny` of `iam:UpdateAccessKey` on users exempt for good by tag (`aws:ResourceTag/...`) is left out. The
/// unconditioned `Deny` of creating and deleting credentials stays in.
fn relaxed_for_moto(policy: &Value) -> Value {
    let mut policy = policy.clone();
    let statements = policy["Statement"].as_array_mut().expect("statements");
    statements.retain(|s| !(s["Effect"] == "Deny" && s.get("Condition").is_some()));
    for statement in statements.iter_mut() {
        if let Some(fields) = statement.as_object_mut() {
            fields.remove("Condition");
        }
        let actions = statement["Action"].as_array_mut().expect("actions");
        if actions.iter().any(|a| a == "sqs:SendMessage") {
            actions.push(json!("sqs:SendMessageBatch"));
        }
        if ["sns:", "dynamodb:"].iter().any(|service| {
            actions
                .iter()
                .all(|a| a.as_str().is_some_and(|a| a.starts_with(service)))
        }) {
            statement["Resource"] = json!("*");
        }
    }
    policy
}

/// `policy` without `action`, and without the calls it authorizes on AWS (the moto-only batch alias).
fn without(policy: &Value, action: &str) -> Value {
    let mut policy = policy.clone();
    let statements = policy["Statement"].as_array_mut().expect("statements");
    for statement in statements.iter_mut() {
        let actions = statement["Action"].as_array_mut().expect("actions");
        actions.retain(|a| a.as_str().is_some_and(|a| policy_action(a) != action));
    }
    // IAM rejects a statement with no action; drop it like an operator would.
    statements.retain(|s| !s["Action"].as_array().is_some_and(Vec::is_empty));
    policy
}

/// The action whose denial failed the run, looking through a failed publish, member role or ledger to its
/// cause.
fn denied_action(error: &Error) -> Option<&str> {
    match error {
        Error::Aws { action, .. } if error.error_type() == "Keywatch.AccessDenied" => Some(action),
        Error::Publish { cause, .. }
        | Error::AssumeRole { cause, .. }
        | Error::LedgerUnavailable { cause, .. } => denied_action(cause),
        _ => None,
    }
}

/// A run that failed because the ledger could not be used: `Keywatch.LedgerUnavailable`, naming the table and
/// the action, whose cause is that action denied to the function's role (never the member role's): moto's
/// denial names the caller, the function role's session.
fn assert_ledger_denied(error: &Error, role: &Role, action: &str) {
    let table = role.ledger.as_str();
    let Error::LedgerUnavailable {
        table: named,
        action: failed,
        cause,
    } = error
    else {
        panic!(
            "without {action}: expected Keywatch.LedgerUnavailable, got {} {error}",
            error.error_type()
        )
    };
    assert_eq!(error.error_type(), "Keywatch.LedgerUnavailable");
    assert_eq!((named.as_str(), *failed), (table, action), "{error}");
    assert_eq!(
        denied_action(cause),
        Some(action),
        "the cause is the denial: {error}"
    );
    let Error::Aws { code, message, .. } = cause.as_ref() else {
        panic!("an AWS error: {cause}")
    };
    assert_eq!(code, "AccessDeniedException", "{error}");
    assert!(
        message.contains(&format!("assumed-role/{}/", role.name)),
        "the function's role was the caller: {message}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("the ledger {table} could not be used ({action})")),
        "the message names the table and the action: {message}"
    );
    assert!(
        message.contains(&format!("Grant {action} to the function's role")),
        "the function's role, never the member role: {message}"
    );
}

/// The ledger's items, every account's, as DynamoDB holds them (read directly with enforcement off, never
/// through keywatch).
/// The items of findings: not the keys named once as exempt by tag (the seed's `ivy`), whose record
/// `least_privilege_under_enforcement` checks apart.
async fn finding_items(account: &Account, table: &str) -> Vec<Item> {
    ledger_items(account, table)
        .await
        .into_iter()
        .filter(|i| i.resolved_reason != Some(keywatch::ledger::Reason::Exempted))
        .collect()
}

/// Every finding's item (the accounts' lease items left out).
async fn ledger_items(account: &Account, table: &str) -> Vec<Item> {
    raw_ledger(account, table)
        .await
        .into_iter()
        .filter(|raw| !keywatch::ledger::table::is_lease(raw))
        .map(|raw| serde_dynamo::from_item(raw).expect("a ledger item as the code writes it"))
        .collect()
}

async fn raw_ledger(
    account: &Account,
    table: &str,
) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    support::ledger::LedgerTable::open(&account.config, table)
        .raw()
        .await
}

/// Empties the ledger, leases too (enforcement off), so the next run is a first run: everything is new and
/// alerted.
async fn forget_ledger(account: &Account, table: &str) {
    let client = aws_sdk_dynamodb::Client::new(&account.config);
    for mut item in raw_ledger(account, table).await {
        client
            .delete_item()
            .table_name(table)
            .key("account_id", item.remove("account_id").expect("a key"))
            .key(
                "access_key_id",
                item.remove("access_key_id").expect("a key"),
            )
            .send()
            .await
            .expect("delete a ledger item");
    }
    assert!(raw_ledger(account, table).await.is_empty());
}

/// (account, key, state, alerted) of every ledger item, sorted.
/// Keys named once as exempt by tag (the seed's `ivy`) are left out: `least_privilege_under_enforcement` checks
/// that record apart.
async fn ledger_summary(account: &Account, table: &str) -> Vec<(String, String, State, bool)> {
    let mut items: Vec<_> = finding_items(account, table)
        .await
        .into_iter()
        .map(|i| {
            (
                i.account_id,
                i.access_key_id,
                i.state,
                i.first_alerted_at.is_some(),
            )
        })
        .collect();
    items.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    items
}

/// The DynamoDB tables of an account (enforcement off).
async fn tables(account: &Account) -> Vec<String> {
    aws_sdk_dynamodb::Client::new(&account.config)
        .list_tables()
        .send()
        .await
        .expect("list tables")
        .table_names
        .unwrap_or_default()
}

/// A deployed policy's denies, as CloudFormation left them in moto: creating and deleting credentials always,
/// and `iam:UpdateAccessKey` on users exempt for good under a condition (the default `ExemptTagKey`).
fn assert_denies(policy: &Value, what: &str) {
    let denied = |conditioned: bool| -> BTreeSet<String> {
        policy["Statement"]
            .as_array()
            .expect("statements")
            .iter()
            .filter(|s| s["Effect"] == "Deny" && s.get("Condition").is_some() == conditioned)
            .flat_map(|s| s["Action"].as_array().expect("actions").iter())
            .map(|a| a.as_str().expect("action").to_string())
            .collect()
    };
    assert_eq!(denied(false), listed(&[DENIED_ACTIONS]), "{what}: {policy}");
    assert_eq!(
        denied(true),
        listed(&[REMEDIATION_ACTIONS]),
        "{what}: {policy}"
    );
}

/// The actions a policy allows (its `Deny` statements left out).
fn actions(policy: &Value) -> BTreeSet<String> {
    policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| s["Action"].as_array().expect("actions").iter())
        .map(|a| a.as_str().expect("action").to_string())
        .collect()
}

fn listed(lists: &[&[&str]]) -> BTreeSet<String> {
    lists
        .iter()
        .flat_map(|list| list.iter())
        .map(|a| a.to_string())
        .collect()
}

/// One user with a finding (exercising every IAM read: report, list, keys, password, last use, tags), and
/// one exempted by tag (the tag is read, and the key is not alerted).
async fn seed(account: &Account) -> String {
    account.console_user("alice").await;
    let key = account.key("alice").await.id;
    account
        .user_at("ivy", "/", &[("keywatch:exempt", "break-glass, SEC-42")])
        .await;
    account.password("ivy").await;
    account.key("ivy").await;
    key
}

#[tokio::test]
async fn least_privilege_under_enforcement() {
    let moto = Moto::start();
    let account = moto.account().await;
    let alice_key = seed(&account).await;
    let role = deploy_and_assume(&moto).await;

    // The deployed role's policy: exactly the listed actions, IAM on *, SNS on the stack's topic only, the
    // ledger's on the stack's table only.
    assert_eq!(
        actions(&role.policy),
        // The event queue's consumer (EventChecks, on by default): Lambda's mapping, not the code.
        listed(&[
            IAM_ACTIONS,
            EVENT_ACTIONS,
            SNS_ACTIONS,
            LEDGER_ACTIONS,
            QUEUE_CONSUME_ACTIONS
        ])
    );
    assert_denies(&role.policy, "the function role");
    for statement in role.policy["Statement"].as_array().expect("statements") {
        let service = |prefix: &str| {
            statement["Action"]
                .as_array()
                .expect("actions")
                .iter()
                .all(|a| a.as_str().is_some_and(|a| a.starts_with(prefix)))
        };
        let resource = if service("sns:") {
            role.topic_arn.as_str()
        } else if service("dynamodb:") {
            role.ledger_arn.as_str()
        } else if service("sqs:") {
            role.event_queue_arn.as_str()
        } else {
            "*"
        };
        assert_eq!(statement["Resource"], resource, "{statement}");
    }
    assert_eq!(
        settings(&role.vars()).ledger_table.as_deref(),
        Some(role.ledger.as_str())
    );

    // The policy as deployed (SNS and DynamoDB widened to * for moto only): a dry run from either inventory
    // source succeeds, reads the ledger and writes nothing, and needs nothing else. sts:GetCallerIdentity is
    // never granted: moto, like AWS, answers it for any principal.
    let relaxed = relaxed_for_moto(&role.policy);
    let mut api_source_calls = BTreeSet::new();
    for source in [Source::CredentialReport, Source::Api] {
        let report = run_as_role(
            &moto,
            &account,
            &role,
            &relaxed,
            Invocation::DRY_RUN.with_source(source),
        )
        .await
        .unwrap_or_else(|e| panic!("{source:?} dry run with the deployed policy: {e}"));
        assert_eq!(
            report.findings.len(),
            1,
            "{source:?}: {:?}",
            report.findings
        );
        assert_eq!(
            report.exempted.len(),
            1,
            "{source:?}: ivy is exempted by her tag"
        );
        let called = called(&report);
        assert!(
            called.is_subset(&listed(&[
                IAM_ACTIONS,
                &["dynamodb:Query"],
                UNGATED_ACTIONS
            ])),
            "{source:?} calls {called:?}"
        );
        assert!(
            called.contains("dynamodb:Query"),
            "{source:?} calls {called:?}"
        );
        assert!(
            ledger_items(&account, &role.ledger).await.is_empty(),
            "a dry run writes nothing"
        );
        if source == Source::Api {
            api_source_calls = called;
        }
    }

    // Publishing: succeeds, writes the ledger, and a run with a finding calls every listed action, so nothing
    // granted is unused, by behaviour as well as by the list.
    let report = run_as_role(&moto, &account, &role, &relaxed, Invocation::SCHEDULED)
        .await
        .unwrap_or_else(|e| panic!("publishing run with the deployed policy (SNS on *): {e}"));
    let findings: Vec<(&str, &str)> = report
        .findings
        .iter()
        .map(|f| (f.user_name.as_str(), f.access_key_id.as_str()))
        .collect();
    assert_eq!(findings, [("alice", alice_key.as_str())]);
    assert_eq!(report.exempted.len(), 1, "ivy is exempted by her tag");
    assert_eq!(report.notifications.len(), 1, "one alert published");
    let exempt: Vec<_> = ledger_items(&account, &role.ledger)
        .await
        .into_iter()
        .filter(|i| i.user_name == "ivy")
        .map(|i| (i.state, i.resolved_reason, i.exempt_tag))
        .collect();
    assert_eq!(
        exempt,
        [(
            State::Resolved,
            Some(keywatch::ledger::Reason::Exempted),
            Some("keywatch:exempt=break-glass, SEC-42".to_string())
        )],
        "ivy's key is named once as exempt, with the tag"
    );
    assert_eq!(
        called(&report),
        listed(&[IAM_ACTIONS, SNS_ACTIONS, LEDGER_ACTIONS, UNGATED_ACTIONS]),
        "a full run with a finding calls exactly the actions in src/permissions.rs"
    );
    // An event-driven check of alice (a dry run): GetUser and the live reads, under the deployed policy.
    let change = keywatch::cloudtrail::IamChange {
        account_id: "123456789012".into(),
        user_name: "alice".into(),
        event_name: "CreateAccessKey".into(),
        actor_arn: "arn:aws:iam::123456789012:user/admin".into(),
        event_time: "2026-12-01T00:00:00Z".into(),
        source_ip: "198.51.100.1".into(),
        by_self: false,
        event_id: "e1".into(),
    };
    let event_check = run_as_role(
        &moto,
        &account,
        &role,
        &relaxed,
        Invocation {
            changes: vec![change],
            ..Invocation::DRY_RUN
        },
    )
    .await
    .unwrap_or_else(|e| panic!("an event-driven check with the deployed policy: {e}"));
    assert_eq!(event_check.findings.len(), 1, "{:?}", event_check.findings);
    let called = called(&event_check);
    assert!(called.contains("iam:GetUser"), "{called:?}");
    assert!(
        called.is_subset(&listed(&[
            IAM_ACTIONS,
            EVENT_ACTIONS,
            &["dynamodb:Query"],
            UNGATED_ACTIONS
        ])),
        "{called:?}"
    );
    assert!(!called.contains("iam:GetCredentialReport"), "{called:?}");
    // The ledger remembers the alert SNS accepted: alice's key, open, alerted once (ivy is exempt: no item).
    let items = finding_items(&account, &role.ledger).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert_eq!(
        (
            item.account_id.as_str(),
            item.access_key_id.as_str(),
            item.user_name.as_str(),
            item.state,
            item.alerts
        ),
        ("123456789012", alice_key.as_str(), "alice", State::Open, 1),
        "{item:?}"
    );
    assert!(item.first_alerted_at.is_some(), "{item:?}");

    // Without any ledger action, the run fails as Keywatch.LedgerUnavailable naming the table and the action,
    // after publishing the alert: an unreadable ledger (Query) has everything published and nothing written;
    // an unwritable one (PutItem: the lease and the items) fails once SNS accepted the alert it could not record;
    // a lease that cannot be given back (DeleteItem) fails the run after everything else was done.
    let alerts = account
        .subscribed_queue(&role.topic_arn, "alerts", None)
        .await;
    for action in LEDGER_ACTIONS {
        forget_ledger(&account, &role.ledger).await;
        let error = run_as_role(
            &moto,
            &account,
            &role,
            &without(&relaxed, action),
            Invocation::SCHEDULED,
        )
        .await
        .map(|r| r.findings.len())
        .expect_err("without a ledger action the run must fail");
        assert_ledger_denied(&error, &role, action);
        let delivered = account.delivered(&alerts).await;
        assert_eq!(
            delivered.len(),
            1,
            "without {action}: the alert was published before the run failed"
        );
        assert_eq!(
            delivered[0].1["findings"][0]["access_key_id"],
            alice_key.as_str(),
            "without {action}: {:?}",
            delivered[0]
        );
        if *action == "dynamodb:DeleteItem" {
            // Only the lease's release is denied: the items (alice's, and ivy's named as exempt) were written,
            // and the lease is left to expire.
            assert_eq!(finding_items(&account, &role.ledger).await.len(), 1);
            assert_eq!(raw_ledger(&account, &role.ledger).await.len(), 3);
        } else {
            assert!(
                ledger_items(&account, &role.ledger).await.is_empty(),
                "without {action}: nothing was written"
            );
        }
    }
    forget_ledger(&account, &role.ledger).await;

    // Without any one action, the run fails and names it: for the scheduled run, every listed action; for the
    // live inventory (INVENTORY_SOURCE=api), every action it calls.
    let scheduled_actions: Vec<&str> = IAM_ACTIONS.iter().chain(SNS_ACTIONS).copied().collect();
    assert_denied_each(
        &moto,
        &account,
        &role,
        &relaxed,
        Invocation::SCHEDULED,
        &scheduled_actions,
    )
    .await;
    let api_actions: Vec<&str> = api_source_calls
        .iter()
        .map(String::as_str)
        .filter(|a| !UNGATED_ACTIONS.contains(a))
        .collect();
    assert!(api_actions.contains(&"iam:ListUsers"), "{api_actions:?}");
    assert_denied_each(
        &moto,
        &account,
        &role,
        &relaxed,
        Invocation::DRY_RUN.with_source(Source::Api),
        &api_actions,
    )
    .await;
}

fn called(report: &Report) -> BTreeSet<String> {
    report.api_calls.by_operation.keys().cloned().collect()
}

/// For each action: with only that action removed from `policy`, the run fails with AccessDenied naming it.
/// Each run starts from an empty ledger, as a first run: with `ALERTS=changes` a run after one that already
/// alerted would publish nothing, and so never be denied sns:Publish.
async fn assert_denied_each(
    moto: &Moto,
    account: &Account,
    role: &Role,
    policy: &Value,
    invocation: Invocation,
    actions: &[&str],
) {
    for action in actions {
        forget_ledger(account, &role.ledger).await;
        let policy = without(policy, action);
        match run_as_role(moto, account, role, &policy, invocation.clone()).await {
            Ok(report) => panic!(
                "without {action} the run ({invocation:?}) must fail, but it succeeded with {} findings",
                report.findings.len()
            ),
            Err(error) => {
                assert_eq!(
                    denied_action(&error),
                    Some(*action),
                    "without {action} ({invocation:?}): {} {error}",
                    error.error_type()
                );
                assert!(
                    error.to_string().contains(action),
                    "the message names {action}: {error}"
                );
            }
        }
    }
}

/// moto's SQS hands every message sent to a mapped queue to the function at once, running its code through
/// Docker; the stand-in code is no function. The mapping is disabled so the dispatched messages stay in the
/// queue, where this test reads them as Lambda's poller would (tests/template.rs checks the mapping itself).
fn disable_mappings(moto: &Moto, function_name: &str) {
    let script = r#"
import sys, boto3
aws = boto3.client("lambda", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
for mapping in aws.list_event_source_mappings(FunctionName=sys.argv[2])["EventSourceMappings"]:
    aws.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
"#;
    let output = std::process::Command::new(venv_tool("python"))
        .args(["-c", script, &moto.endpoint, function_name])
        .output()
        .expect("run python");
    assert!(output.status.success(), "{output:?}");
}

/// `Accounts=organization`, with the member role under a path. As the deployed function role, under
/// enforcement: dispatch lists the organization and sends one message per account; a member account is
/// checked through member-role.yaml's role, whose policy alone authorizes the IAM reads there; the SQS records
/// check both accounts. Without any one action of either role, the run fails naming it.
#[tokio::test]
async fn organization_least_privilege_under_enforcement() {
    let moto = Moto::start();
    let own = moto.account().await;
    let (organization_id, member_id, member) = organization_with_member(&moto).await;
    let member_key = seed(&member).await;
    let own_key = seed(&own).await;

    let summary = deploy_template(
        &moto,
        "keywatch",
        &[
            ("Accounts", "organization"),
            ("OrganizationId", &organization_id),
            ("MemberRoleName", "security/keywatch-member"),
        ],
    );
    let role = assume(&moto, &summary).await;
    let member_summary = deploy_member_role(
        &moto,
        &member_id,
        &[
            ("KeywatchRoleArn", role_arn(&summary)),
            ("MemberRolePath", "/security/"),
        ],
    );
    let environment = &summary["function"]["environment"];
    let queue_url = environment["WORK_QUEUE_URL"]
        .as_str()
        .expect("WORK_QUEUE_URL");
    disable_mappings(
        &moto,
        summary["outputs"]["FunctionName"]
            .as_str()
            .expect("FunctionName"),
    );
    let vars = role.vars();

    // The function role as deployed: the organization's actions and the ledger's, each on its resource.
    let listed_for_organization = listed(&[
        IAM_ACTIONS,
        EVENT_ACTIONS,
        SNS_ACTIONS,
        ORGANIZATION_ACTIONS,
        OWNER_ACTIONS,
        MEMBER_ROLE_ACTIONS,
        QUEUE_SEND_ACTIONS,
        QUEUE_CONSUME_ACTIONS,
        LEDGER_ACTIONS,
    ]);
    assert_eq!(actions(&role.policy), listed_for_organization);
    assert_denies(&role.policy, "the function role");

    // The member role as deployed: exactly the IAM reads on *, no DynamoDB action, and trusted only by the
    // function's role.
    let member_role = &member_summary["roles"]["MemberRole"];
    let member_arn = member_role["arn"].as_str().expect("member role ARN");
    let (member_policy_name, member_policy) = member_role["inline_policies"]
        .as_object()
        .and_then(|p| p.iter().next())
        .expect("the member role's inline policy");
    assert_eq!(
        actions(member_policy),
        listed(&[IAM_ACTIONS, EVENT_ACTIONS])
    );
    assert_denies(member_policy, "the member role");
    // Under moto, without its conditioned deny (see relaxed_for_moto).
    let member_policy = &relaxed_for_moto(member_policy);
    put_policy(
        &member,
        member_role["name"].as_str().expect("name"),
        member_policy_name,
        member_policy,
    )
    .await;
    assert!(
        !actions(member_policy)
            .iter()
            .any(|a| a.starts_with("dynamodb:")),
        "the member role has no DynamoDB permission: {member_policy}"
    );
    for statement in member_policy["Statement"].as_array().expect("statements") {
        assert_eq!(statement["Resource"], "*", "{statement}");
    }
    assert_eq!(
        member_role["trust_policy"]["Statement"],
        json!([{
            "Sid": "OnlyTheKeywatchFunction",
            "Effect": "Allow",
            "Principal": { "AWS": "arn:aws:iam::123456789012:root" },
            "Action": "sts:AssumeRole",
            "Condition": { "ArnEquals": { "aws:PrincipalArn": role_arn(&summary) } },
        }])
    );
    // The ARN the code assumes is the role the member stack created (moto's AssumeRole would not notice a
    // role that does not exist).
    assert_eq!(
        settings(&vars).fleet.member_role.arn("aws", &member_id),
        member_arn
    );
    assert_eq!(
        member_arn,
        format!("arn:aws:iam::{member_id}:role/security/keywatch-member")
    );

    let relaxed = relaxed_for_moto(&role.policy);
    let deadline = Deadline::after(Duration::from_secs(60));
    let scheduled_event = || Event::Check(Invocation::SCHEDULED);

    // Dispatch with the deployed policy: every account of the organization, one message each.
    put_policy(&own, &role.name, &role.policy_name, &relaxed).await;
    let (keywatch, calls) = keywatch_as(&moto, &role, &vars).await;
    let dispatched = enforced(
        &moto,
        keywatch.route(scheduled_event(), "dispatch", &deadline),
    )
    .await
    .unwrap_or_else(|e| panic!("dispatch with the deployed policy: {e}"));
    let Response::Dispatched(dispatched) = dispatched else {
        panic!("a dispatch: {dispatched:?}")
    };
    let mut accounts = vec!["123456789012".to_string(), member_id.clone()];
    accounts.sort();
    assert_eq!(dispatched.accounts, accounts);
    let dispatch_calls: BTreeSet<String> = calls.take().into_keys().collect();
    assert_eq!(
        dispatch_calls,
        [
            "organizations:ListAccounts",
            "organizations:ListTagsForResource",
            "sqs:SendMessageBatch",
            "sts:GetCallerIdentity"
        ]
        .map(String::from)
        .into(),
        "dispatch calls exactly these (the account tags: routing by owner is on by default)"
    );
    let records = support::pump::take_records(&own.sqs, queue_url).await;
    let mut sent: Vec<String> = records
        .iter()
        .map(|r| WorkItem::decode(&r.body).expect("a work item").account_id)
        .collect();
    sent.sort();
    assert_eq!(sent, accounts, "one message per account");

    // Each record checks its account as Lambda's mapping would hand it over: the own account with the
    // function's role, the member through its member role.
    let (keywatch, _) = keywatch_as(&moto, &role, &vars).await;
    let batch = enforced(&moto, keywatch.work(records, &deadline)).await;
    assert!(batch.batch_item_failures.is_empty(), "{batch:?}");
    // One ledger, in the function's account: both accounts' findings, each under its own account ID. The member
    // account has no table at all.
    let mut expected = vec![
        (
            "123456789012".to_string(),
            own_key.clone(),
            State::Open,
            true,
        ),
        (member_id.clone(), member_key.clone(), State::Open, true),
    ];
    expected.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(ledger_summary(&own, &role.ledger).await, expected);
    assert!(
        tables(&member).await.is_empty(),
        "no ledger in the member account"
    );

    // Without each dispatch action, dispatch fails naming it.
    for action in ORGANIZATION_ACTIONS
        .iter()
        .chain(OWNER_ACTIONS)
        .chain(QUEUE_SEND_ACTIONS)
    {
        put_policy(
            &own,
            &role.name,
            &role.policy_name,
            &without(&relaxed, action),
        )
        .await;
        let (keywatch, _) = keywatch_as(&moto, &role, &vars).await;
        let result = enforced(
            &moto,
            keywatch.route(scheduled_event(), "dispatch", &deadline),
        )
        .await;
        let error = match result {
            Ok(response) => {
                panic!("without {action} dispatch must fail, but answered {response:?}")
            }
            Err(error) => error,
        };
        let message = error.to_string();
        match &error {
            // A failed batch names its call (SendMessageBatch, authorized as SendMessage) and the accounts.
            Error::Dispatch { failed, cause, .. } => {
                assert_eq!(failed, &accounts, "{message}");
                let named = cause
                    .split_whitespace()
                    .find(|word| word.starts_with("sqs:"))
                    .unwrap_or_else(|| panic!("the cause names the call: {message}"));
                assert_eq!(policy_action(named), *action, "{message}");
                assert!(
                    cause.contains(&format!("Grant {}", policy_action(named))),
                    "access denied, naming the IAM action to grant: {message}"
                );
            }
            _ => assert_eq!(denied_action(&error), Some(*action), "{message}"),
        }
        assert_eq!(
            support::pump::take_records(&own.sqs, queue_url).await.len(),
            0,
            "nothing sent"
        );
    }

    // The member account with the deployed policies: every IAM read runs as the member role. The function
    // role needs none of them for it: its IAM statement is removed for this run. The ledger's Query, PutItem and
    // DeleteItem succeed under enforcement, and the member role grants neither: they were the function
    // role's, on the central table, with the member's items under the member's account ID.
    let without_iam = IAM_ACTIONS
        .iter()
        .fold(relaxed.clone(), |policy, action| without(&policy, action));
    put_policy(&own, &role.name, &role.policy_name, &without_iam).await;
    forget_ledger(&own, &role.ledger).await;
    let check_member = Invocation {
        account_id: Some(member_id.clone()),
        ..Invocation::SCHEDULED
    };
    let (keywatch, _) = keywatch_as(&moto, &role, &vars).await;
    let report = enforced(&moto, keywatch.run(&check_member, "member", &deadline))
        .await
        .unwrap_or_else(|e| panic!("checking the member with the deployed member role: {e}"));
    assert_eq!(report.account_id, member_id);
    let findings: Vec<(&str, &str)> = report
        .findings
        .iter()
        .map(|f| (f.user_name.as_str(), f.access_key_id.as_str()))
        .collect();
    assert_eq!(findings, [("alice", member_key.as_str())]);
    assert_ne!(member_key, own_key);
    assert_eq!(report.exempted.len(), 1, "ivy is exempted by her tag");
    assert_eq!(
        called(&report),
        listed(&[
            IAM_ACTIONS,
            MEMBER_ROLE_ACTIONS,
            SNS_ACTIONS,
            LEDGER_ACTIONS,
            UNGATED_ACTIONS
        ]),
        "a member check calls exactly these"
    );
    assert_eq!(
        ledger_summary(&own, &role.ledger).await,
        [(member_id.clone(), member_key.clone(), State::Open, true)],
        "the member's finding, in the central ledger under the member's account ID"
    );
    assert!(
        tables(&member).await.is_empty(),
        "no ledger in the member account"
    );

    // Without either ledger action of the function role, the member check fails naming the table, the action
    // and the function's role (the member role, unchanged, was never the one to ask).
    for action in LEDGER_ACTIONS {
        forget_ledger(&own, &role.ledger).await;
        put_policy(
            &own,
            &role.name,
            &role.policy_name,
            &without(&without_iam, action),
        )
        .await;
        let (keywatch, _) = keywatch_as(&moto, &role, &vars).await;
        let error = enforced(&moto, keywatch.run(&check_member, "member", &deadline))
            .await
            .map(|r| r.findings.len())
            .expect_err("without a ledger action the member check must fail");
        assert_ledger_denied(&error, &role, action);
    }
    // Without DeleteItem the lease was left to expire: clear it for the checks below.
    forget_ledger(&own, &role.ledger).await;

    // Without the function role's AssumeRole, the member check fails naming it.
    for action in MEMBER_ROLE_ACTIONS {
        put_policy(
            &own,
            &role.name,
            &role.policy_name,
            &without(&without_iam, action),
        )
        .await;
        let (keywatch, _) = keywatch_as(&moto, &role, &vars).await;
        let error = enforced(&moto, keywatch.run(&check_member, "member", &deadline))
            .await
            .map(|r| r.findings.len())
            .expect_err("without AssumeRole the member check must fail");
        assert_eq!(error.error_type(), "Keywatch.AssumeRoleFailed", "{error}");
        assert_eq!(denied_action(&error), Some(*action), "{error}");
        assert!(error.to_string().contains(action), "{error}");
    }

    // Without any one action of the member role, the member check fails naming it.
    put_policy(&own, &role.name, &role.policy_name, &without_iam).await;
    for action in IAM_ACTIONS {
        forget_ledger(&own, &role.ledger).await;
        put_policy(
            &member,
            member_role["name"].as_str().expect("name"),
            member_policy_name,
            &without(member_policy, action),
        )
        .await;
        let (keywatch, _) = keywatch_as(&moto, &role, &vars).await;
        let error = enforced(&moto, keywatch.run(&check_member, "member", &deadline))
            .await
            .map(|r| r.findings.len())
            .expect_err("without a member role action the member check must fail");
        assert_eq!(
            denied_action(&error),
            Some(*action),
            "without {action}: {error}"
        );
        assert!(error.to_string().contains(action), "{error}");
    }
}

/// An organization of moto's default account (its management account) and one member account.
/// The organization's ID (for the template's `OrganizationId`), and its member account.
async fn organization_with_member(moto: &Moto) -> (String, String, Account) {
    let organizations = create_organization(moto).await;
    let organization_id = organizations
        .describe_organization()
        .send()
        .await
        .expect("describe the organization")
        .organization
        .and_then(|o| o.id)
        .expect("an organization ID");
    let member_id = create_member(&organizations, "dev").await;
    let member = member_account(moto, &member_id).await;
    (organization_id, member_id, member)
}

/// An access key's status as IAM holds it (enforcement off).
async fn key_status(account: &Account, key_id: &str) -> String {
    account
        .key_statuses()
        .await
        .remove(key_id)
        .unwrap_or_else(|| panic!("no key {key_id}"))
}

/// Makes a deactivated key Active again (enforcement off), so the next run finds it again.
async fn reactivate(account: &Account, user: &str, key_id: &str) {
    account
        .iam
        .update_access_key()
        .user_name(user)
        .access_key_id(key_id)
        .status(aws_sdk_iam::types::StatusType::Active)
        .send()
        .await
        .expect("reactivate the key");
}

/// The IDs of the findings in an account's Security Hub (enforcement off).
async fn hub_finding_ids(account: &Account) -> Vec<String> {
    account
        .hub_findings()
        .await
        .into_iter()
        .filter_map(|f| f.id)
        .collect()
}

/// A run that failed only because a key could not be deactivated: `Keywatch.RemediationFailed`, naming the key,
/// with the denial of `iam:UpdateAccessKey` (and the role to grant it to) as its cause.
fn assert_remediation_denied(error: &Error, key: &str, user: &str, role_to_grant: &str) {
    let Error::RemediationFailed { keys, cause } = error else {
        panic!(
            "without iam:UpdateAccessKey: expected Keywatch.RemediationFailed, got {} {error}",
            error.error_type()
        )
    };
    assert_eq!(error.error_type(), "Keywatch.RemediationFailed");
    assert_eq!(keys, &[format!("{key} ({user})")], "{error}");
    assert!(
        cause.starts_with("iam:UpdateAccessKey failed (AccessDenied"),
        "the cause is the denial: {cause}"
    );
    assert!(
        cause.contains(&format!("Grant iam:UpdateAccessKey to {role_to_grant}")),
        "the cause names the role to grant it to: {cause}"
    );
    let message = error.to_string();
    assert!(
        message.contains(key) && message.contains("iam:UpdateAccessKey"),
        "{message}"
    );
}

/// `EnableSecurityHub=true`, `Remediation=deactivate` and `DeactivateAfterDays=0` (a key is due in the first run
/// after the first alert SNS accepted for it). As the deployed function role, under enforcement: the first run
/// alerts and imports the finding into the account's own hub, and records the alert in the ledger; the second
/// deactivates the key; together they call exactly the listed actions. Without `dynamodb:Query` nothing is
/// deactivated (the ledger alone says when the notice started) and the run fails as
/// `Keywatch.LedgerUnavailable`. Without `iam:UpdateAccessKey` the key stays Active, the alert names the denial,
/// and the run fails with `Keywatch.RemediationFailed` naming the key and the action; without either Security
/// Hub action the run fails naming it.
#[tokio::test]
async fn security_hub_and_remediation_least_privilege_under_enforcement() {
    let moto = Moto::start();
    let account = moto.account().await;
    let alice_key = seed(&account).await;
    let summary = deploy_template(
        &moto,
        "keywatch",
        &[
            ("EnableSecurityHub", "true"),
            ("Remediation", "deactivate"),
            ("DeactivateAfterDays", "0"),
        ],
    );
    let role = assume(&moto, &summary).await;
    assert_eq!(
        actions(&role.policy),
        listed(&[
            IAM_ACTIONS,
            EVENT_ACTIONS,
            SNS_ACTIONS,
            QUEUE_CONSUME_ACTIONS,
            SECURITY_HUB_ACTIONS,
            REMEDIATION_ACTIONS,
            LEDGER_ACTIONS
        ])
    );
    let vars = role.vars();
    let relaxed = relaxed_for_moto(&role.policy);
    let alerts = account
        .subscribed_queue(&role.topic_arn, "alerts", None)
        .await;

    // As deployed, the first run: the key is alerted, not deactivated; its finding imported; the alert recorded.
    let report = run_as_role_with(
        &moto,
        &account,
        &role,
        &relaxed,
        &vars,
        Invocation::SCHEDULED,
    )
    .await
    .unwrap_or_else(|e| panic!("a first run with the deployed policy: {e}"));
    assert!(report.remediated.is_empty(), "{:?}", report.remediated);
    assert_eq!(report.notifications.len(), 1, "the alert was published");
    assert_eq!(key_status(&account, &alice_key).await, "Active");
    assert_eq!(report.security_hub.as_ref().map(|s| s.imported), Some(1));
    assert_eq!(
        ledger_summary(&account, &role.ledger).await,
        [(
            "123456789012".to_string(),
            alice_key.clone(),
            State::Open,
            true
        )]
    );
    let first_run = called(&report);
    assert_eq!(
        first_run,
        listed(&[
            IAM_ACTIONS,
            SNS_ACTIONS,
            SECURITY_HUB_ACTIONS,
            LEDGER_ACTIONS,
            UNGATED_ACTIONS
        ]),
        "a first run calls exactly these"
    );

    // The second run: the key is deactivated, its finding imported again, the deactivation announced.
    let report = run_as_role_with(
        &moto,
        &account,
        &role,
        &relaxed,
        &vars,
        Invocation::SCHEDULED,
    )
    .await
    .unwrap_or_else(|e| panic!("a second run with the deployed policy: {e}"));
    let remediated: Vec<&str> = report
        .remediated
        .iter()
        .map(|r| r.access_key_id.as_str())
        .collect();
    assert_eq!(remediated, [alice_key.as_str()]);
    assert_eq!(key_status(&account, &alice_key).await, "Inactive");
    assert_eq!(report.security_hub.as_ref().map(|s| s.imported), Some(1));
    assert_eq!(
        hub_finding_ids(&account).await,
        [format!("123456789012/alice/{alice_key}")]
    );
    let items = finding_items(&account, &role.ledger).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].state, State::Deactivated, "{items:?}");
    assert!(items[0].deactivation_announced, "{items:?}");
    let second_run = called(&report);
    assert_eq!(
        second_run,
        listed(&[
            IAM_ACTIONS,
            SNS_ACTIONS,
            SECURITY_HUB_ACTIONS,
            REMEDIATION_ACTIONS,
            LEDGER_ACTIONS,
            UNGATED_ACTIONS
        ]),
        "a run that deactivates calls exactly these: every listed action"
    );

    // Without dynamodb:Query, a key whose notice has run (alerted by the first run below) is not deactivated:
    // only the ledger says when the notice started. The alert is still published, and the run fails.
    reactivate(&account, "alice", &alice_key).await;
    forget_ledger(&account, &role.ledger).await;
    run_as_role_with(
        &moto,
        &account,
        &role,
        &relaxed,
        &vars,
        Invocation::SCHEDULED,
    )
    .await
    .unwrap_or_else(|e| panic!("a first run after the ledger was emptied: {e}"));
    assert_eq!(key_status(&account, &alice_key).await, "Active");
    account.delivered(&alerts).await;
    let error = run_as_role_with(
        &moto,
        &account,
        &role,
        &without(&relaxed, "dynamodb:Query"),
        &vars,
        Invocation::SCHEDULED,
    )
    .await
    .map(|r| r.remediated.len())
    .expect_err("without dynamodb:Query the run must fail");
    assert_ledger_denied(&error, &role, "dynamodb:Query");
    assert_eq!(key_status(&account, &alice_key).await, "Active");
    let delivered = account.delivered(&alerts).await;
    assert_eq!(delivered.len(), 1, "the alert was published: {delivered:?}");
    assert_eq!(
        delivered[0].1["remediated"],
        json!([]),
        "nothing deactivated: {:?}",
        delivered[0]
    );

    // Without iam:UpdateAccessKey (the key is due: the ledger still holds the first run's alert): the key stays
    // Active, the alert says why, and the run fails naming both.
    let denied = without(&relaxed, "iam:UpdateAccessKey");
    let error = run_as_role_with(
        &moto,
        &account,
        &role,
        &denied,
        &vars,
        Invocation::SCHEDULED,
    )
    .await
    .map(|r| r.remediated.len())
    .expect_err("without iam:UpdateAccessKey the run must fail");
    assert_remediation_denied(&error, &alice_key, "alice", "the function's role");
    assert_eq!(key_status(&account, &alice_key).await, "Active");
    let (_, alert) = account
        .delivered(&alerts)
        .await
        .pop()
        .expect("the alert was published before the run failed");
    let failed = &alert["remediation_failed"];
    assert_eq!(failed[0]["access_key_id"], alice_key.as_str(), "{alert}");
    assert!(
        failed[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("iam:UpdateAccessKey failed (AccessDenied")),
        "the alert names the denial: {failed}"
    );

    // Without either Security Hub action the run (a first run: the ledger is emptied) fails naming it.
    for action in SECURITY_HUB_ACTIONS {
        reactivate(&account, "alice", &alice_key).await;
        forget_ledger(&account, &role.ledger).await;
        let policy = without(&relaxed, action);
        let error = run_as_role_with(
            &moto,
            &account,
            &role,
            &policy,
            &vars,
            Invocation::SCHEDULED,
        )
        .await
        .map(|r| r.findings.len())
        .expect_err("without a Security Hub action the run must fail");
        assert_eq!(
            denied_action(&error),
            Some(*action),
            "without {action}: {} {error}",
            error.error_type()
        );
        assert!(
            error
                .to_string()
                .contains(&format!("Grant {action} to the function's role")),
            "{error}"
        );
    }
}

/// Both features in both templates, for an organization: member checks, as a function role that holds no IAM,
/// Security Hub or remediation action of its own, import the member's finding into the member's own hub and
/// (in the second check, after the first alerted) deactivate the member's key, through the member role alone;
/// the ledger is the function role's, in its own account, with the member's items under the member's account
/// ID. Without any one feature action of the member role the check fails naming it, and the member role as the
/// role to grant it to.
#[tokio::test]
async fn member_role_features_least_privilege_under_enforcement() {
    let moto = Moto::start();
    let own = moto.account().await;
    let (organization_id, member_id, member) = organization_with_member(&moto).await;
    let member_key = seed(&member).await;
    let summary = deploy_template(
        &moto,
        "keywatch",
        &[
            ("Accounts", "organization"),
            ("OrganizationId", &organization_id),
            ("EnableSecurityHub", "true"),
            ("Remediation", "deactivate"),
            ("DeactivateAfterDays", "0"),
        ],
    );
    let role = assume(&moto, &summary).await;
    let member_summary = deploy_member_role(
        &moto,
        &member_id,
        &[
            ("KeywatchRoleArn", role_arn(&summary)),
            ("EnableSecurityHub", "true"),
            ("Remediation", "deactivate"),
        ],
    );
    let member_role = &member_summary["roles"]["MemberRole"];
    let member_role_name = member_role["name"].as_str().expect("name");
    let member_arn = member_role["arn"].as_str().expect("member role ARN");
    let (member_policy_name, member_policy) = member_role["inline_policies"]
        .as_object()
        .and_then(|p| p.iter().next())
        .expect("the member role's inline policy");
    assert_eq!(
        actions(member_policy),
        listed(&[
            IAM_ACTIONS,
            EVENT_ACTIONS,
            SECURITY_HUB_ACTIONS,
            REMEDIATION_ACTIONS
        ])
    );
    assert_denies(member_policy, "the member role");
    // Under moto, without its conditioned deny (see relaxed_for_moto).
    let member_policy = &relaxed_for_moto(member_policy);
    put_policy(&member, member_role_name, member_policy_name, member_policy).await;
    let vars = role.vars();

    // The function role keeps only what a member check needs of it: AssumeRole, Publish and the ledger's.
    let in_account: Vec<&str> = [IAM_ACTIONS, SECURITY_HUB_ACTIONS, REMEDIATION_ACTIONS].concat();
    let function_policy = in_account
        .iter()
        .fold(relaxed_for_moto(&role.policy), |policy, action| {
            without(&policy, action)
        });
    put_policy(&own, &role.name, &role.policy_name, &function_policy).await;
    let check_member = Invocation {
        account_id: Some(member_id.clone()),
        ..Invocation::SCHEDULED
    };
    let deadline = Deadline::after(Duration::from_secs(60));
    let check = || async {
        let (keywatch, _) = keywatch_as(&moto, &role, &vars).await;
        enforced(&moto, keywatch.run(&check_member, "member", &deadline)).await
    };

    // The first check alerts and imports the finding; the key stays Active until the next.
    let report = check()
        .await
        .unwrap_or_else(|e| panic!("the first member check with the deployed member role: {e}"));
    assert!(report.remediated.is_empty(), "{:?}", report.remediated);
    assert_eq!(key_status(&member, &member_key).await, "Active");
    assert_eq!(report.security_hub.as_ref().map(|s| s.imported), Some(1));
    assert_eq!(
        ledger_summary(&own, &role.ledger).await,
        [(member_id.clone(), member_key.clone(), State::Open, true)]
    );

    // The second deactivates it.
    let report = check()
        .await
        .unwrap_or_else(|e| panic!("the second member check with the deployed member role: {e}"));
    let remediated: Vec<&str> = report
        .remediated
        .iter()
        .map(|r| r.access_key_id.as_str())
        .collect();
    assert_eq!(remediated, [member_key.as_str()]);
    assert_eq!(key_status(&member, &member_key).await, "Inactive");
    assert_eq!(report.security_hub.as_ref().map(|s| s.imported), Some(1));
    assert_eq!(
        hub_finding_ids(&member).await,
        [format!("{member_id}/alice/{member_key}")]
    );
    assert!(
        hub_finding_ids(&own).await.is_empty(),
        "nothing in the function's own hub"
    );
    assert_eq!(
        called(&report),
        listed(&[
            IAM_ACTIONS,
            MEMBER_ROLE_ACTIONS,
            SNS_ACTIONS,
            SECURITY_HUB_ACTIONS,
            REMEDIATION_ACTIONS,
            LEDGER_ACTIONS,
            UNGATED_ACTIONS
        ]),
        "a member check that deactivates calls exactly these"
    );
    let items = finding_items(&own, &role.ledger).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(
        (
            items[0].account_id.as_str(),
            items[0].access_key_id.as_str(),
            items[0].state
        ),
        (member_id.as_str(), member_key.as_str(), State::Deactivated),
        "{items:?}"
    );
    assert!(
        tables(&member).await.is_empty(),
        "no ledger in the member account"
    );

    // Without any one feature action of the member role, the member check fails naming it. Each starts from
    // an empty ledger; without iam:UpdateAccessKey, the first check alerts and the second fails.
    let to_member_role = format!("the member role {member_arn}");
    for action in SECURITY_HUB_ACTIONS.iter().chain(REMEDIATION_ACTIONS) {
        reactivate(&member, "alice", &member_key).await;
        forget_ledger(&own, &role.ledger).await;
        put_policy(
            &member,
            member_role_name,
            member_policy_name,
            &without(member_policy, action),
        )
        .await;
        if REMEDIATION_ACTIONS.contains(action) {
            check()
                .await
                .unwrap_or_else(|e| panic!("without {action}, the first check only alerts: {e}"));
        }
        let error = check()
            .await
            .map(|r| r.findings.len())
            .expect_err("without a member role action the member check must fail");
        if REMEDIATION_ACTIONS.contains(action) {
            assert_remediation_denied(&error, &member_key, "alice", &to_member_role);
            assert_eq!(key_status(&member, &member_key).await, "Active");
        } else {
            assert_eq!(
                denied_action(&error),
                Some(*action),
                "without {action}: {} {error}",
                error.error_type()
            );
            assert!(
                error
                    .to_string()
                    .contains(&format!("Grant {action} to {to_member_role}")),
                "{error}"
            );
        }
    }
}

fn role_arn(summary: &Value) -> &str {
    summary["role"]["arn"]
        .as_str()
        .expect("the function role's ARN")
}

/// Two ways moto 5.2.5's IAM enforcement differs from AWS on the wire, corrected around the SDK so that what
/// is tested is keywatch's behaviour against AWS-shaped traffic. Neither changes which calls are made or
/// which are allowed.
mod moto_quirks {
    use aws_smithy_runtime_api::box_error::BoxError;
    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
        SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
    use aws_smithy_runtime_api::client::interceptors::Intercept;
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::byte_stream::ByteStream;
    use aws_smithy_types::config_bag::ConfigBag;

    /// moto's enforcement answers a denied call with `<ErrorResponse><Errors><Error>` (EC2's shape) whatever
    /// the service; IAM and SNS, like every AWS query service, send `<ErrorResponse><Error>`, the only shape
    /// the SDK reads a code from. Without this, a denial reads as an unknown error (`Keywatch.AwsError`)
    /// instead of `Keywatch.AccessDenied`. DynamoDB and Organizations speak JSON (`application/x-amz-json-*`),
    /// and AWS answers a denial there with `{"__type": "...#AccessDeniedException", "message": ...}`: a denial
    /// of a JSON request becomes that (without it the SDK reads no code at all, and only the 403 status says
    /// "denied"). Only 4xx bodies are touched.
    #[derive(Debug)]
    pub struct AwsQueryErrors(SharedHttpConnector);

    impl AwsQueryErrors {
        pub fn wrap(inner: SharedHttpClient) -> SharedHttpClient {
            SharedHttpClient::new(Client(inner))
        }
    }

    #[derive(Debug)]
    struct Client(SharedHttpClient);

    impl HttpClient for Client {
        fn http_connector(
            &self,
            settings: &HttpConnectorSettings,
            components: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(AwsQueryErrors(self.0.http_connector(settings, components)))
        }
    }

    impl HttpConnector for AwsQueryErrors {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let inner = self.0.clone();
            let json = request
                .headers()
                .get("content-type")
                .is_some_and(|t| t.starts_with("application/x-amz-json"));
            HttpConnectorFuture::new(async move {
                let mut response = inner.call(request).await?;
                if response.status().is_client_error() {
                    let body = std::mem::replace(response.body_mut(), SdkBody::taken());
                    let bytes = ByteStream::new(body)
                        .collect()
                        .await
                        .map_err(|e| ConnectorError::io(e.into()))?
                        .into_bytes();
                    let text = String::from_utf8_lossy(&bytes);
                    let text = if json && text.trim_start().starts_with('<') {
                        response
                            .headers_mut()
                            .insert("content-type", "application/x-amz-json-1.0");
                        json_error(&text)
                    } else {
                        text.replacen("<Errors><Error>", "<Error>", 1).replacen(
                            "</Error></Errors>",
                            "</Error>",
                            1,
                        )
                    };
                    response
                        .headers_mut()
                        .insert("content-length", text.len().to_string());
                    *response.body_mut() = SdkBody::from(text);
                }
                Ok(response)
            })
        }
    }

    /// moto's `<Code>AccessDenied</Code>` and `<Message>` as a JSON protocol's error body, named as AWS names
    /// an IAM denial there.
    fn json_error(xml: &str) -> String {
        let field = |name: &str| {
            xml.split_once(&format!("<{name}>"))
                .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
                .map(|(value, _)| {
                    value
                        .replace("&quot;", "\"")
                        .replace("&apos;", "'")
                        .replace("&lt;", "<")
                        .replace("&gt;", ">")
                        .replace("&amp;", "&")
                })
                .unwrap_or_default()
        };
        let code = match field("Code").as_str() {
            "AccessDenied" => "AccessDeniedException".to_string(),
            other => other.to_string(),
        };
        serde_json::json!({
            "__type": format!("com.amazon.coral.service#{code}"),
            "message": field("Message"),
        })
        .to_string()
    }

    /// moto 5.2.5 checks a query-protocol signature against its own re-encoding of the parsed form (Python's
    /// `quote_plus`: a space is `+`), not against the bytes it received. A correctly signed body that encodes a
    /// space as `%20`, as the Rust SDK does, so fails with SignatureDoesNotMatch. This re-encodes the form the
    /// `quote_plus` way before signing: the same parameters in an encoding AWS accepts just as well. Only the SNS
    /// client needs it: the alert text has spaces, IAM parameters (user names, key IDs) do not.
    #[derive(Debug)]
    pub struct QuotePlusForm;

    impl Intercept for QuotePlusForm {
        fn name(&self) -> &'static str {
            "moto_quirks::QuotePlusForm"
        }

        fn modify_before_signing(
            &self,
            context: &mut BeforeTransmitInterceptorContextMut<'_>,
            _components: &RuntimeComponents,
            _cfg: &mut ConfigBag,
        ) -> Result<(), BoxError> {
            let request = context.request_mut();
            let Some(body) = request.body().bytes() else {
                return Ok(());
            };
            let body = quote_plus_form(body);
            request
                .headers_mut()
                .insert("content-length", body.len().to_string());
            *request.body_mut() = SdkBody::from(body);
            Ok(())
        }
    }

    /// `a=x%20y&b=1` becomes `a=x+y&b=1`: each name and value percent-decoded, then encoded like `quote_plus`.
    fn quote_plus_form(body: &[u8]) -> Vec<u8> {
        use crate::support::proxy::percent_decode as decode;
        fn encode(bytes: &[u8], out: &mut Vec<u8>) {
            for &byte in bytes {
                match byte {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                        out.push(byte)
                    }
                    b' ' => out.push(b'+'),
                    _ => out.extend_from_slice(format!("%{byte:02X}").as_bytes()),
                }
            }
        }
        let mut out = Vec::with_capacity(body.len());
        for (i, pair) in body.split(|&b| b == b'&').enumerate() {
            if i > 0 {
                out.push(b'&');
            }
            let mut halves = pair.splitn(2, |&b| b == b'=');
            encode(&decode(halves.next().unwrap_or_default()), &mut out);
            if let Some(value) = halves.next() {
                out.push(b'=');
                encode(&decode(value), &mut out);
            }
        }
        out
    }
}
