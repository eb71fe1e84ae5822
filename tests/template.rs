//! template.yaml and member-role.yaml proven: the function's policy grants exactly the actions
//! `src/permissions.rs` says the code calls (both directions, no wildcards, each on the right resource, the
//! organization's only when `Accounts` asks for them, Security Hub's and `iam:UpdateAccessKey` only when
//! `EnableSecurityHub` and `Remediation` ask for them, the ledger's on the ledger table only), the member role
//! grants exactly what a member check calls for the same settings (never the ledger's) and trusts only the
//! function's role, the ledger table is what the code reads and writes (its key, its TTL attribute) and is kept
//! safe (on-demand, encrypted, point-in-time recovery, retained), the dashboard plots only metrics the code
//! emits, the heartbeat and queue-age alarms watch what the code writes and the queue (and the heartbeat fires
//! when the checks stop, evaluated from its own definition), the topic's policy and the roles' denies are what
//! they claim, and the SAM-transformed template deploys as a CloudFormation stack on moto with every resource
//! complete, for a single account, for an organization, and with Security Hub and remediation on.

use keywatch_test_support as support;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_dynamodb::types::AttributeValue;
use keywatch::config::fleet::DEFAULT_MAX_RECEIVE_COUNT;
use keywatch::config::{
    Alerts, Chat, MemberRole, Remediation, Scope, Settings, DEFAULT_DEACTIVATE_AFTER_DAYS,
    DEFAULT_REMIND_EVERY_DAYS, MAX_DEACTIVATE_AFTER_DAYS, OWNER_TOPIC_PREFIX,
};
use keywatch::error::Error;
use keywatch::metrics;
use keywatch::permissions::{
    EVENT_ACTIONS, IAM_ACTIONS, LEDGER_ACTIONS, MEMBER_ROLE_ACTIONS, ORGANIZATION_ACTIONS,
    OWNER_ACTIONS, PASS_ROLE_ACTIONS, QUEUE_CONSUME_ACTIONS, QUEUE_SEND_ACTIONS, RECHECK_ACTIONS,
    REMEDIATION_ACTIONS, SECURITY_HUB_ACTIONS, SNS_ACTIONS, UNGATED_ACTIONS,
};
use serde_json::Value as Json;
use serde_yaml_ng::Value;
use support::{deploy_template, project_dir, venv_tool, Moto};

fn yaml(file: &str) -> Value {
    let path = project_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file} is readable: {e}"));
    // serde_yaml_ng keeps short-form tags (!Ref, !If, !Sub) as `Value::Tagged`, so nothing is lost.
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{file} is valid YAML: {e}"))
}

fn template() -> Value {
    yaml("template.yaml")
}

fn member_template() -> Value {
    yaml("member-role.yaml")
}

fn function(template: &Value) -> &Value {
    let function = &template["Resources"]["KeywatchFunction"];
    assert_eq!(function["Type"], "AWS::Serverless::Function");
    &function["Properties"]
}

/// The value under a short-form tag (`!If [...]` gives the list), if `value` carries that tag.
fn tagged<'a>(value: &'a Value, tag: &str) -> Option<&'a Value> {
    match value {
        Value::Tagged(t) if t.tag == tag => Some(&t.value),
        _ => None,
    }
}

fn list(value: &Value) -> &Vec<Value> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("a list: {value:?}"))
}

/// `!Ref AWS::NoValue`.
fn is_no_value(value: &Value) -> bool {
    tagged(value, "Ref").and_then(Value::as_str) == Some("AWS::NoValue")
}

/// One statement of a policy, and the template condition it exists under (`None`: always).
struct Grant<'a> {
    condition: Option<&'a str>,
    statement: &'a Value,
}

/// Every `Allow` statement of the function's policies. Only inline policy documents are allowed: a SAM policy
/// template or a managed policy name would grant actions this test cannot see. A statement is either plain
/// or `!If [Condition, statement, !Ref AWS::NoValue]`, which exists only under that condition.
fn grants(template: &Value) -> Vec<Grant<'_>> {
    with_effect(function_statements(template), "Allow")
}

/// Every `Deny` statement of the function's policies.
fn denials(template: &Value) -> Vec<Grant<'_>> {
    with_effect(function_statements(template), "Deny")
}

/// The statements of `effect`; every statement is an `Allow` or a `Deny`.
fn with_effect<'a>(statements: Vec<Grant<'a>>, effect: &str) -> Vec<Grant<'a>> {
    statements
        .into_iter()
        .filter(|g| {
            let found = g.statement["Effect"].as_str();
            assert!(
                matches!(found, Some("Allow" | "Deny")),
                "Effect is Allow or Deny: {:?}",
                g.statement
            );
            found == Some(effect)
        })
        .collect()
}

fn function_statements(template: &Value) -> Vec<Grant<'_>> {
    let policies = list(&function(template)["Policies"]);
    assert!(!policies.is_empty(), "KeywatchFunction has no policies");
    conditional(policies.iter().flat_map(|policy| {
        assert!(
            policy.get("Statement").is_some(),
            "only inline policy documents are allowed in KeywatchFunction.Policies, found {policy:?}"
        );
        list(&policy["Statement"])
    }))
}

/// Every `Allow` statement of member-role.yaml's one inline policy, plain or `!If [Condition, statement, !Ref
/// AWS::NoValue]` as in [`grants`].
fn member_grants(member: &Value) -> Vec<Grant<'_>> {
    with_effect(member_statements(member), "Allow")
}

/// Every `Deny` statement of member-role.yaml's policy.
fn member_denials(member: &Value) -> Vec<Grant<'_>> {
    with_effect(member_statements(member), "Deny")
}

fn member_statements(member: &Value) -> Vec<Grant<'_>> {
    let properties = &member["Resources"]["MemberRole"]["Properties"];
    let policies = list(&properties["Policies"]);
    assert_eq!(policies.len(), 1, "one inline policy: {policies:?}");
    conditional(list(&policies[0]["PolicyDocument"]["Statement"]))
}

fn conditional<'a>(statements: impl IntoIterator<Item = &'a Value>) -> Vec<Grant<'a>> {
    statements
        .into_iter()
        .map(|item| match tagged(item, "If") {
            None => Grant {
                condition: None,
                statement: item,
            },
            Some(branches) => {
                let branches = list(branches);
                assert!(
                    branches.len() == 3 && is_no_value(&branches[2]),
                    "a conditional statement is !If [Condition, statement, !Ref AWS::NoValue]: {item:?}"
                );
                Grant {
                    condition: Some(branches[0].as_str().expect("a condition name")),
                    statement: &branches[1],
                }
            }
        })
        .collect()
}

fn statements(template: &Value) -> Vec<&Value> {
    grants(template).into_iter().map(|g| g.statement).collect()
}

fn actions(statement: &Value) -> Vec<&str> {
    for forbidden in ["NotAction", "NotResource", "NotPrincipal"] {
        assert!(
            statement.get(forbidden).is_none(),
            "{forbidden} makes the grant unreadable for this test: {statement:?}"
        );
    }
    match &statement["Action"] {
        Value::String(action) => vec![action.as_str()],
        Value::Sequence(list) => list
            .iter()
            .map(|a| a.as_str().expect("an action is a string"))
            .collect(),
        other => panic!("Action must be a string or a list, found {other:?}"),
    }
}

fn granted(template: &Value) -> BTreeSet<&str> {
    statements(template).into_iter().flat_map(actions).collect()
}

/// A parameter's value: the one given, else the template's default.
fn parameter(template: &Value, name: &str, given: &[(&str, &str)]) -> String {
    if let Some((_, value)) = given.iter().find(|(k, _)| *k == name) {
        return value.to_string();
    }
    match &template["Parameters"][name]["Default"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("parameter {name} has no usable default: {other:?}"),
    }
}

/// Whether the template's condition `name` holds for these parameters (defaults for the rest), evaluated as
/// CloudFormation does: `!Equals`, `!Not`, `!And`, `!Or`, `!Condition`, `!Ref`.
fn condition(template: &Value, name: &str, given: &[(&str, &str)]) -> bool {
    let node = &template["Conditions"][name];
    assert!(!node.is_null(), "the template has no condition {name}");
    holds(template, node, given)
}

/// Whether a condition expression holds for these parameters (a `Conditions` entry, a rule's `RuleCondition`
/// or `Assert`).
fn holds(template: &Value, node: &Value, given: &[(&str, &str)]) -> bool {
    fn scalar(template: &Value, node: &Value, given: &[(&str, &str)]) -> String {
        // `!Sub "${Parameter}"`: the parameter as text (a Number parameter compared as CloudFormation gives it).
        let sub = tagged(node, "Sub")
            .and_then(Value::as_str)
            .and_then(|text| text.strip_prefix("${")?.strip_suffix('}'));
        if let Some(name) = sub {
            return parameter(template, name, given);
        }
        match (tagged(node, "Ref"), node) {
            (Some(name), _) => parameter(template, name.as_str().expect("a name"), given),
            (None, Value::String(s)) => s.clone(),
            (None, Value::Number(n)) => n.to_string(),
            (None, other) => panic!("unsupported operand {other:?}"),
        }
    }
    if let Some(name) = tagged(node, "Condition") {
        return condition(template, name.as_str().expect("a condition name"), given);
    }
    if let Some(operands) = tagged(node, "Equals") {
        let operands = list(operands);
        return scalar(template, &operands[0], given) == scalar(template, &operands[1], given);
    }
    if let Some(operands) = tagged(node, "Not") {
        return !holds(template, &list(operands)[0], given);
    }
    if let Some(operands) = tagged(node, "And") {
        return list(operands).iter().all(|o| holds(template, o, given));
    }
    if let Some(operands) = tagged(node, "Or") {
        return list(operands).iter().any(|o| holds(template, o, given));
    }
    panic!("unsupported condition expression {node:?}")
}

/// The actions the function's policy grants for these parameters: plain statements, and conditional ones
/// whose condition holds.
fn granted_with(template: &Value, given: &[(&str, &str)]) -> BTreeSet<String> {
    resolved(template, grants(template), given)
}

/// The same for member-role.yaml's policy.
fn member_granted_with(member: &Value, given: &[(&str, &str)]) -> BTreeSet<String> {
    resolved(member, member_grants(member), given)
}

fn resolved(template: &Value, grants: Vec<Grant<'_>>, given: &[(&str, &str)]) -> BTreeSet<String> {
    grants
        .into_iter()
        .filter(|g| g.condition.is_none_or(|c| condition(template, c, given)))
        .flat_map(|g| actions(g.statement))
        .map(str::to_string)
        .collect()
}

/// The keywatch settings for `ACCOUNTS=accounts`, read exactly as the Lambda reads them at cold start.
fn scope(accounts: &str) -> keywatch::Result<Scope> {
    let vars = [
        ("DRY_RUN", "true"),
        ("ACCOUNTS", accounts),
        (
            "WORK_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/work",
        ),
    ];
    Settings::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
    .map(|settings| settings.fleet.scope)
}

/// The function's environment for these parameters (defaults for the rest), resolved from the template's own
/// `Environment.Variables`, plus what Lambda sets: so the test follows the template's wiring of parameter to
/// variable. A variable that refers to a resource gets a stand-in of that resource's kind.
fn environment(template: &Value, given: &[(&str, &str)]) -> Vec<(String, String)> {
    fn value(template: &Value, node: &Value, given: &[(&str, &str)]) -> Option<String> {
        if let Some(branches) = tagged(node, "If") {
            let branches = list(branches);
            let holds = condition(template, branches[0].as_str().expect("a condition"), given);
            return value(template, &branches[if holds { 1 } else { 2 }], given);
        }
        // `!GetAtt X.Arn`: a stand-in ARN of that resource's kind.
        if let Some(attribute) = tagged(node, "GetAtt").and_then(Value::as_str) {
            let resource = attribute.trim_end_matches(".Arn");
            return Some(
                match template["Resources"][resource]["Type"].as_str() {
                    Some("AWS::SQS::Queue") => "arn:aws:sqs:us-east-1:123456789012:events",
                    Some("AWS::IAM::Role") => "arn:aws:iam::123456789012:role/recheck",
                    other => panic!("no stand-in for !GetAtt {attribute} ({other:?})"),
                }
                .to_string(),
            );
        }
        let name = tagged(node, "Ref")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("a variable is !Ref, !GetAtt or !If: {node:?}"));
        if name == "AWS::NoValue" {
            return None;
        }
        if !template["Parameters"][name].is_null() {
            return Some(parameter(template, name, given));
        }
        let stand_in = match template["Resources"][name]["Type"].as_str() {
            Some("AWS::SNS::Topic") => "arn:aws:sns:us-east-1:123456789012:keywatch-findings",
            Some("AWS::SQS::Queue") => "https://sqs.us-east-1.amazonaws.com/123456789012/work",
            // `!Ref` of a table is its name; CloudFormation names it `<stack>-<logical ID>-<suffix>`.
            Some("AWS::DynamoDB::Table") => LEDGER_STAND_IN,
            // `!Ref` of a schedule group is its name.
            Some("AWS::Scheduler::ScheduleGroup") => "keywatch-rechecks",
            other => panic!("no stand-in for !Ref {name} ({other:?})"),
        };
        Some(stand_in.to_string())
    }
    function(template)["Environment"]["Variables"]
        .as_mapping()
        .expect("Environment.Variables")
        .iter()
        .filter_map(|(name, node)| {
            let name = name.as_str().expect("a variable name").to_string();
            value(template, node, given).map(|v| (name, v))
        })
        .chain([("AWS_REGION".to_string(), "us-east-1".to_string())])
        .collect()
}

/// What `!Ref Ledger` stands for in [`environment`]: a table name as CloudFormation makes one.
const LEDGER_STAND_IN: &str = "keywatch-Ledger-1A2B3C4D5E6F";

/// The settings the function reads at cold start from an environment (as `Settings::from_env` would).
fn read(environment: &[(String, String)]) -> keywatch::Result<Settings> {
    Settings::from_lookup(|name| {
        environment
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    })
}

/// The settings the function reads when deployed with these parameters.
fn settings_with(template: &Value, given: &[(&str, &str)]) -> Settings {
    read(&environment(template, given))
        .unwrap_or_else(|e| panic!("deployed with {given:?}, the function fails its init: {e}"))
}

/// What the code may call with these settings (src/permissions.rs), plus what Lambda's mapping needs of the
/// role. The ledger's actions whenever `LEDGER_TABLE` is set: always with the function's own role, whatever
/// account is checked.
/// `event_checks`: the template's `EventChecks`, whose event source mapping reads IAM's events with the role (no
/// setting of the code's: the function reads whatever events arrive).
fn called_for(settings: &Settings, event_checks: bool) -> BTreeSet<String> {
    let scope = &settings.fleet.scope;
    let mut lists = vec![IAM_ACTIONS, EVENT_ACTIONS, SNS_ACTIONS];
    if event_checks {
        lists.push(QUEUE_CONSUME_ACTIONS);
    }
    if *scope != Scope::Own {
        lists.extend([
            MEMBER_ROLE_ACTIONS,
            QUEUE_SEND_ACTIONS,
            QUEUE_CONSUME_ACTIONS,
        ]);
    }
    if *scope == Scope::Organization {
        lists.push(ORGANIZATION_ACTIONS);
        if settings.owner_tag_key.is_some() {
            lists.push(OWNER_ACTIONS);
        }
    }
    if settings.ledger_table.is_some() {
        lists.push(LEDGER_ACTIONS);
    }
    if settings.recheck.is_some() {
        lists.extend([RECHECK_ACTIONS, PASS_ROLE_ACTIONS]);
    }
    lists.extend(feature_actions(settings));
    lists.into_iter().flatten().map(|a| a.to_string()).collect()
}

/// What a check calls in the checked account for these settings beyond the IAM reads: in the function's role
/// for its own account, in the member role for every other.
fn feature_actions(settings: &Settings) -> Vec<&'static [&'static str]> {
    let mut lists = Vec::new();
    if settings.security_hub.is_some() {
        lists.push(SECURITY_HUB_ACTIONS);
    }
    if settings.remediation != Remediation::Off {
        lists.push(REMEDIATION_ACTIONS);
    }
    lists
}

/// What a member check calls as the member role with these settings: never the ledger's actions, which the
/// function's role calls on the central table.
fn member_called_for(settings: &Settings) -> BTreeSet<String> {
    let mut lists = vec![IAM_ACTIONS, EVENT_ACTIONS];
    lists.extend(feature_actions(settings));
    lists.into_iter().flatten().map(|a| a.to_string()).collect()
}

/// Every action in src/permissions.rs that a grant may name.
fn every_listed() -> BTreeSet<&'static str> {
    [
        IAM_ACTIONS,
        EVENT_ACTIONS,
        SNS_ACTIONS,
        ORGANIZATION_ACTIONS,
        OWNER_ACTIONS,
        MEMBER_ROLE_ACTIONS,
        QUEUE_SEND_ACTIONS,
        QUEUE_CONSUME_ACTIONS,
        SECURITY_HUB_ACTIONS,
        REMEDIATION_ACTIONS,
        LEDGER_ACTIONS,
        RECHECK_ACTIONS,
        PASS_ROLE_ACTIONS,
    ]
    .concat()
    .into_iter()
    .collect()
}

/// The values of `Accounts` the tests resolve the template with: one of each kind.
const ACCOUNTS: [&str; 3] = ["self", "organization", "111111111111,222222222222"];

/// How `template.yaml` must grant one list of src/permissions.rs: under which condition, on which resource.
struct Expected {
    list: &'static [&'static str],
    condition: Option<&'static str>,
    resource: Resource,
    /// The statement's own IAM condition (operator, key), whose value
    /// [`assume_role_is_bound_to_the_organization_or_the_listed_accounts`] checks; `None`: it has none.
    bound: Option<(&'static str, &'static str)>,
}

enum Resource {
    Star,
    FindingsTopic,
    /// A short-form intrinsic, e.g. `!GetAtt WorkQueue.Arn`.
    Tagged(&'static str, &'static str),
}

const EXPECTED: [Expected; 16] = [
    // The credential report has no resource ARN, so IAM reads cannot be scoped.
    Expected {
        list: IAM_ACTIONS,
        condition: None,
        resource: Resource::Star,
        bound: None,
    },
    Expected {
        list: EVENT_ACTIONS,
        condition: None,
        resource: Resource::Star,
        bound: None,
    },
    Expected {
        list: SNS_ACTIONS,
        condition: None,
        resource: Resource::FindingsTopic,
        bound: None,
    },
    // Owners' own topics: only those named as the code requires, in the stack's account and region.
    Expected {
        list: SNS_ACTIONS,
        condition: Some("PublishToOwnerTopics"),
        resource: Resource::Tagged(
            "Sub",
            "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:keywatch-owner-*",
        ),
        bound: None,
    },
    // Organizations has no resource ARN for the account list.
    Expected {
        list: ORGANIZATION_ACTIONS,
        condition: Some("ListOrganization"),
        resource: Resource::Star,
        bound: None,
    },
    // An account's tags have no narrower resource for accounts the function does not know in advance.
    Expected {
        list: OWNER_ACTIONS,
        condition: Some("ReadAccountOwners"),
        resource: Resource::Star,
        bound: None,
    },
    // The member role, in the organization's accounts or in the listed ones only.
    Expected {
        list: MEMBER_ROLE_ACTIONS,
        condition: Some("ListOrganization"),
        resource: Resource::Tagged("Sub", "arn:${AWS::Partition}:iam::*:role/${MemberRoleName}"),
        bound: Some(("StringEquals", "aws:ResourceOrgID")),
    },
    Expected {
        list: MEMBER_ROLE_ACTIONS,
        condition: Some("CheckListedAccounts"),
        resource: Resource::Tagged("Sub", "arn:${AWS::Partition}:iam::*:role/${MemberRoleName}"),
        bound: Some(("StringEquals", "aws:ResourceAccount")),
    },
    Expected {
        list: QUEUE_SEND_ACTIONS,
        condition: Some("CheckAccounts"),
        resource: Resource::Tagged("GetAtt", "WorkQueue.Arn"),
        bound: None,
    },
    Expected {
        list: QUEUE_CONSUME_ACTIONS,
        condition: Some("CheckAccounts"),
        resource: Resource::Tagged("GetAtt", "WorkQueue.Arn"),
        bound: None,
    },
    // The grace period's re-checks: schedules only in the stack's own group, and their role passed only to
    // EventBridge Scheduler.
    Expected {
        list: RECHECK_ACTIONS,
        condition: Some("RecheckAfterGrace"),
        resource: Resource::Tagged(
            "Sub",
            "arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule/${RecheckScheduleGroup}/*",
        ),
        bound: None,
    },
    Expected {
        list: PASS_ROLE_ACTIONS,
        condition: Some("RecheckAfterGrace"),
        resource: Resource::Tagged("GetAtt", "RecheckSchedulerRole.Arn"),
        bound: Some(("StringEquals", "iam:PassedToService")),
    },
    // IAM's events, read by their own mapping.
    Expected {
        list: QUEUE_CONSUME_ACTIONS,
        condition: Some("CheckOnEvents"),
        resource: Resource::Tagged("GetAtt", "IamEventQueue.Arn"),
        bound: None,
    },
    // A finding has no ARN to scope to before it is imported.
    Expected {
        list: SECURITY_HUB_ACTIONS,
        condition: Some("UseSecurityHub"),
        resource: Resource::Star,
        bound: None,
    },
    // Like the IAM reads: an identity policy reaches only its own account's users.
    Expected {
        list: REMEDIATION_ACTIONS,
        condition: Some("DeactivateKeys"),
        resource: Resource::Star,
        bound: None,
    },
    // Always (the template always sets LEDGER_TABLE), on the stack's own table and nothing else.
    Expected {
        list: LEDGER_ACTIONS,
        condition: None,
        resource: Resource::Tagged("GetAtt", "Ledger.Arn"),
        bound: None,
    },
];

/// `!If [CreateTopic, !Ref FindingsTopic, !Ref ExistingTopicArn]`: the findings topic either way.
fn assert_is_the_findings_topic(value: &Value, what: &str) {
    let Value::Tagged(tagged) = value else {
        panic!("{what} must be !If [CreateTopic, !Ref FindingsTopic, !Ref ExistingTopicArn], found {value:?}")
    };
    assert_eq!(tagged.tag, "If", "{what}: {value:?}");
    let branches: Vec<String> = tagged
        .value
        .as_sequence()
        .expect("!If takes a list")
        .iter()
        .map(|branch| match branch {
            Value::Tagged(t) if t.tag == "Ref" => {
                format!("!Ref {}", t.value.as_str().unwrap_or("?"))
            }
            Value::String(s) => s.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        branches,
        ["CreateTopic", "!Ref FindingsTopic", "!Ref ExistingTopicArn"],
        "{what}"
    );
}

/// SAM builds exactly the function's binary: the package's other one, keywatch-audit, is never deployed, and
/// with two binaries and no `Binary` cargo-lambda would not know which to build.
#[test]
fn sam_builds_the_function_binary_only() {
    let template = template();
    let metadata = &template["Resources"]["KeywatchFunction"]["Metadata"];
    assert_eq!(metadata["BuildMethod"], "rust-cargolambda");
    assert_eq!(metadata["BuildProperties"]["Binary"], "keywatch");
    let manifest =
        std::fs::read_to_string(support::project_dir().join("Cargo.toml")).expect("Cargo.toml");
    let bins: Vec<&str> = manifest
        .split("[[bin]]")
        .skip(1)
        .filter_map(|bin| bin.lines().find_map(|l| l.strip_prefix("name = ")))
        .map(|name| name.trim_matches('"'))
        .collect();
    assert_eq!(bins, ["keywatch", "keywatch-audit"]);
}

#[test]
fn policy_grants_exactly_the_actions_the_code_calls() {
    let template = template();
    let granted = granted(&template);
    let called = every_listed();
    let missing: Vec<_> = called.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&called).collect();
    assert!(
        missing.is_empty(),
        "called by the code (src/permissions.rs) but not granted in template.yaml: {missing:?}"
    );
    assert!(
        unused.is_empty(),
        "granted in template.yaml but never called (not in src/permissions.rs): {unused:?}"
    );
    for action in UNGATED_ACTIONS {
        assert!(
            !granted.contains(action),
            "{action} needs no permission; do not grant it"
        );
    }
}

/// Resolved for each kind of `Accounts`, the policy is exactly what the code calls for the scope the code
/// reads from that same value: nothing of the organization's for a single account, and ListAccounts only for
/// `organization`.
#[test]
fn policy_for_each_accounts_value_is_exactly_what_that_scope_calls() {
    let template = template();
    for accounts in ACCOUNTS {
        let scope = scope(accounts).unwrap_or_else(|e| panic!("ACCOUNTS={accounts}: {e}"));
        let given = [("Accounts", accounts)];
        let settings = settings_with(&template, &given);
        assert_eq!(settings.fleet.scope, scope, "Accounts={accounts}");
        assert_eq!(
            granted_with(&template, &given),
            called_for(&settings, true),
            "Accounts={accounts} ({scope:?})"
        );
    }
    // The defaults: what a single account needs and nothing more.
    assert_eq!(
        granted_with(&template, &[]),
        listed(&[
            IAM_ACTIONS,
            EVENT_ACTIONS,
            SNS_ACTIONS,
            LEDGER_ACTIONS,
            QUEUE_CONSUME_ACTIONS
        ]),
        "the defaults"
    );
    // Routing by owner reads account tags only in an organization, and not at all when it is off.
    for owner_tag_key in ["owner", ""] {
        let given = [("Accounts", "organization"), ("OwnerTagKey", owner_tag_key)];
        let settings = settings_with(&template, &given);
        assert_eq!(
            settings.owner_tag_key.as_deref(),
            Some(owner_tag_key).filter(|k| !k.is_empty())
        );
        let granted = granted_with(&template, &given);
        assert_eq!(
            granted,
            called_for(&settings, true),
            "OwnerTagKey={owner_tag_key:?}"
        );
        assert_eq!(
            granted.contains("organizations:ListTagsForResource"),
            !owner_tag_key.is_empty(),
            "OwnerTagKey={owner_tag_key:?}"
        );
    }
}

/// Every combination of `Accounts`, `EnableSecurityHub` and `Remediation`: the policy is exactly what the code
/// calls with the settings it reads from the environment the template gives it. Security Hub's actions exist
/// only with `EnableSecurityHub=true`, `iam:UpdateAccessKey` only with `Remediation=deactivate`, and no
/// combination grants a delete.
#[test]
fn policy_for_every_combination_of_features_is_exactly_what_the_code_calls() {
    let template = template();
    let hub_values = allowed_values(&template, "EnableSecurityHub");
    let remediation_values = allowed_values(&template, "Remediation");
    assert_eq!(hub_values, ["true", "false"]);
    assert_eq!(remediation_values, ["off", "deactivate"]);
    for accounts in ACCOUNTS {
        for hub in &hub_values {
            for remediation in &remediation_values {
                let given = [
                    ("Accounts", accounts),
                    ("EnableSecurityHub", hub.as_str()),
                    ("Remediation", remediation.as_str()),
                ];
                let settings = settings_with(&template, &given);
                // The code reads what the parameters say; else the comparison below would prove nothing.
                assert_eq!(settings.security_hub.is_some(), hub == "true", "{given:?}");
                assert_eq!(
                    settings.remediation != Remediation::Off,
                    remediation == "deactivate",
                    "{given:?}"
                );
                let granted = granted_with(&template, &given);
                assert_eq!(granted, called_for(&settings, true), "{given:?}");
                for action in SECURITY_HUB_ACTIONS {
                    assert_eq!(
                        granted.contains(*action),
                        hub == "true",
                        "{action}, {given:?}"
                    );
                }
                for action in REMEDIATION_ACTIONS {
                    assert_eq!(
                        granted.contains(*action),
                        remediation == "deactivate",
                        "{action}, {given:?}"
                    );
                }
                assert!(
                    !granted.iter().any(|a| a.starts_with("iam:Delete")),
                    "keywatch never deletes: {granted:?}"
                );
            }
        }
    }
}

fn allowed_values(template: &Value, parameter: &str) -> Vec<String> {
    list(&template["Parameters"][parameter]["AllowedValues"])
        .iter()
        .map(|v| v.as_str().expect("a string value").to_string())
        .collect()
}

fn listed(lists: &[&[&str]]) -> BTreeSet<String> {
    lists
        .iter()
        .flat_map(|l| l.iter())
        .map(|a| a.to_string())
        .collect()
}

/// `EnableSecurityHub`, `Remediation` and `DeactivateAfterDays` reach the function as the variables the code
/// reads, with the code's defaults and range.
#[test]
fn security_hub_and_remediation_parameters_are_the_functions_settings() {
    let template = template();
    let variables = &function(&template)["Environment"]["Variables"];
    for (variable, parameter) in [
        ("SECURITY_HUB", "EnableSecurityHub"),
        ("REMEDIATION", "Remediation"),
        ("DEACTIVATE_AFTER_DAYS", "DeactivateAfterDays"),
    ] {
        assert_eq!(
            tagged(&variables[variable], "Ref").and_then(Value::as_str),
            Some(parameter),
            "{variable}"
        );
    }
    // The defaults are the code's: nothing into Security Hub, nothing deactivated.
    let defaults = settings_with(&template, &[]);
    assert_eq!(defaults.security_hub, None);
    assert_eq!(defaults.remediation, Remediation::Off);
    let parameters = &template["Parameters"];
    let days = &parameters["DeactivateAfterDays"];
    assert_eq!(days["Type"], "Number");
    assert_eq!(days["Default"], DEFAULT_DEACTIVATE_AFTER_DAYS);
    assert_eq!(days["MinValue"], 0);
    assert_eq!(days["MaxValue"], MAX_DEACTIVATE_AFTER_DAYS);
    // Every value the range lets through, the code reads as that many days; one more it refuses.
    for after_days in [0, DEFAULT_DEACTIVATE_AFTER_DAYS, MAX_DEACTIVATE_AFTER_DAYS] {
        let days = after_days.to_string();
        let given = [
            ("Remediation", "deactivate"),
            ("DeactivateAfterDays", &days),
        ];
        assert_eq!(
            settings_with(&template, &given).remediation,
            Remediation::Deactivate { after_days }
        );
    }
    let beyond = (MAX_DEACTIVATE_AFTER_DAYS + 1).to_string();
    let given = [
        ("Remediation", "deactivate"),
        ("DeactivateAfterDays", &beyond),
    ];
    assert!(read(&environment(&template, &given)).is_err());
    assert_eq!(
        settings_with(&template, &[("Remediation", "deactivate")]).remediation,
        Remediation::Deactivate {
            after_days: DEFAULT_DEACTIVATE_AFTER_DAYS
        }
    );
}

/// The ledger reaches the function: `LEDGER_TABLE` is the stack's own table (`!Ref Ledger`, its name), and
/// `ALERTS` and `REMIND_EVERY_DAYS` are the `Alerts` and `RemindEveryDays` parameters, whose values, defaults and
/// range the code reads as the template means them. Without `LEDGER_TABLE` the code refuses to start with the
/// template's own defaults (`Alerts=changes`) or with `Remediation=deactivate`: the wiring is what lets it run.
/// `Rules`, `UnusedDays` and `RotateDays` reach the function as `RULES`, `UNUSED_DAYS` and `ROTATE_DAYS`: the
/// defaults are today's rule alone at CIS's days, every value the parameters let through is read as given, and
/// the pattern refuses a list the code would not read.
#[test]
fn rules_parameters_are_the_functions_settings() {
    let template = template();
    let ids =
        |settings: &Settings| -> Vec<&str> { settings.rules.iter().map(|r| r.id()).collect() };
    let defaults = settings_with(&template, &[]);
    assert_eq!(ids(&defaults), ["cis-1.11-never-used-key-on-console-user"]);
    assert_eq!(
        (defaults.unused_days, defaults.rotate_days),
        (
            keywatch::evaluate::DEFAULT_UNUSED_DAYS,
            keywatch::evaluate::DEFAULT_ROTATE_DAYS
        )
    );
    let all = settings_with(&template, &[("Rules", "all")]);
    assert_eq!(ids(&all).len(), keywatch::evaluate::RULES.len());
    let parameters = &template["Parameters"];
    for name in ["UnusedDays", "RotateDays"] {
        assert_eq!(parameters[name]["Type"], "Number");
        assert_eq!(
            parameters[name]["MinValue"],
            *keywatch::evaluate::RULE_DAYS.start()
        );
        assert_eq!(
            parameters[name]["MaxValue"],
            *keywatch::evaluate::RULE_DAYS.end()
        );
    }
    for days in [
        *keywatch::evaluate::RULE_DAYS.start(),
        *keywatch::evaluate::RULE_DAYS.end(),
    ] {
        let days = days.to_string();
        let given = settings_with(
            &template,
            &[
                ("Rules", "key-not-rotated,unused-key"),
                ("UnusedDays", &days),
                ("RotateDays", &days),
            ],
        );
        assert_eq!(ids(&given), ["unused-key", "key-not-rotated"]);
        assert_eq!(
            (given.unused_days.to_string(), given.rotate_days.to_string()),
            (days.clone(), days)
        );
    }
    let pattern = parameters["Rules"]["AllowedPattern"]
        .as_str()
        .expect("Rules has an AllowedPattern");
    let accepted = [
        "all",
        "unused-key",
        "unused-key,two-active-keys,key-not-rotated",
    ];
    let rejected = [
        "",
        "unused-key,",
        ",unused-key",
        "unused-key, two-active-keys",
        "unused key",
    ];
    let values: Vec<&str> = accepted.iter().chain(rejected.iter()).copied().collect();
    for (value, matched) in values.iter().zip(full_matches(pattern, &values)) {
        assert_eq!(
            matched,
            accepted.contains(value),
            "Rules {pattern:?} on {value:?}"
        );
    }
    // What the pattern lets through but names no rule fails the init, naming RULES.
    match read(&environment(&template, &[("Rules", "unused-keys")])) {
        Err(Error::Config { variable, .. }) => assert_eq!(variable, "RULES"),
        other => panic!("{other:?}"),
    }
}

/// IAM's events reach the function as the code reads them: the rule's pattern is the code's own
/// (`cloudtrail::event_pattern`, which tests/runtime_api.rs routes through moto's EventBridge), its one target is
/// the event queue, only EventBridge may send to that queue and only for this rule, and the mapping reports
/// partial batch failures. On by default; EventChecks=false drops all of it.
#[test]
fn the_iam_event_rule_sends_what_the_code_reads_to_its_queue() {
    let template = template();
    let resources = &template["Resources"];
    assert_eq!(template["Parameters"]["EventChecks"]["Default"], "true");
    for name in EVENT_CHECKS
        .iter()
        .chain(EVENT_CHECKS_SKIPPED.iter().map(|(name, _)| name))
    {
        assert_eq!(resources[*name]["Condition"], "CheckOnEvents", "{name}");
    }
    let rule = &resources["IamEventRule"]["Properties"];
    let pattern: Json = serde_json::to_value(&rule["EventPattern"]).expect("a JSON pattern");
    assert_eq!(pattern, keywatch::cloudtrail::event_pattern());
    let targets = list(&rule["Targets"]);
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert_eq!(
        tagged(&targets[0]["Arn"], "GetAtt").and_then(Value::as_str),
        Some("IamEventQueue.Arn")
    );
    let policy = &resources["IamEventQueuePolicy"]["Properties"]["PolicyDocument"];
    let statements = list(&policy["Statement"]);
    assert_eq!(statements.len(), 1, "{statements:?}");
    let statement = &statements[0];
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(statement["Principal"]["Service"], "events.amazonaws.com");
    assert_eq!(statement["Action"], "sqs:SendMessage");
    assert_eq!(
        tagged(
            &statement["Condition"]["ArnEquals"]["aws:SourceArn"],
            "GetAtt"
        )
        .and_then(Value::as_str),
        Some("IamEventRule.Arn"),
        "only this rule: {statement:?}"
    );
    let mapping = &resources["IamEventMapping"]["Properties"];
    assert_eq!(
        tagged(&mapping["EventSourceArn"], "GetAtt").and_then(Value::as_str),
        Some("IamEventQueue.Arn")
    );
    assert_eq!(
        mapping["FunctionResponseTypes"][0],
        "ReportBatchItemFailures"
    );
    let redrive = &resources["IamEventQueue"]["Properties"]["RedrivePolicy"];
    assert_eq!(
        tagged(&redrive["maxReceiveCount"], "Ref").and_then(Value::as_str),
        Some("MaxReceiveCount"),
        "the retries the code counts (MAX_RECEIVE_COUNT)"
    );
    assert!(!condition(
        &template,
        "CheckOnEvents",
        &[("EventChecks", "false")]
    ));
}

/// IAM's events from elsewhere reach the function's bus, and only those: member-role.yaml's us-east-1 rule and
/// events-forwarder.yaml's (for a stack outside us-east-1) have the code's pattern and forward to a default bus
/// through a role of their own that may only put events on that one bus; the function's bus admits members'
/// events only from the organization (`aws:PrincipalOrgID`), and only for an organization with event checks.
#[test]
fn iam_events_are_forwarded_with_the_codes_pattern_by_roles_that_can_do_nothing_else() {
    let pattern = keywatch::cloudtrail::event_pattern();
    let member = member_template();
    let forwarder: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(project_dir().join("events-forwarder.yaml"))
            .expect("events-forwarder.yaml"),
    )
    .expect("YAML");
    for (file, template, rule, role, bus) in [
        (
            "member-role.yaml",
            &member,
            "MemberIamEventRule",
            "MemberIamEventForwarderRole",
            "arn:${AWS::Partition}:events:${KeywatchRegion}:${KeywatchAccount}:event-bus/default",
        ),
        (
            "events-forwarder.yaml",
            &forwarder,
            "IamEventForwardRule",
            "IamEventForwarderRole",
            "arn:${AWS::Partition}:events:${KeywatchRegion}:${AWS::AccountId}:event-bus/default",
        ),
    ] {
        let resources = &template["Resources"];
        let properties = &resources[rule]["Properties"];
        let json: Json = serde_json::to_value(&properties["EventPattern"]).expect("JSON");
        assert_eq!(json, pattern, "{file}: the code's pattern");
        let targets = list(&properties["Targets"]);
        assert_eq!(targets.len(), 1, "{file}");
        let sub = |value: &Value| -> String {
            match tagged(value, "Sub") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Sequence(parts)) => parts[0].as_str().unwrap_or_default().to_string(),
                _ => panic!("{file}: a !Sub ARN, found {value:?}"),
            }
        };
        assert_eq!(
            sub(&targets[0]["Arn"]),
            bus,
            "{file}: the keywatch region's default bus"
        );
        assert_eq!(
            tagged(&targets[0]["RoleArn"], "GetAtt").and_then(Value::as_str),
            Some(format!("{role}.Arn").as_str()),
            "{file}"
        );
        let role = &resources[role]["Properties"];
        let trust = list(&role["AssumeRolePolicyDocument"]["Statement"]);
        assert_eq!(trust.len(), 1, "{file}");
        assert_eq!(
            trust[0]["Principal"]["Service"], "events.amazonaws.com",
            "{file}"
        );
        let policies = list(&role["Policies"]);
        assert_eq!(policies.len(), 1, "{file}");
        let statements = list(&policies[0]["PolicyDocument"]["Statement"]);
        assert_eq!(statements.len(), 1, "{file}: {statements:?}");
        assert_eq!(statements[0]["Effect"], "Allow");
        assert_eq!(
            statements[0]["Action"], "events:PutEvents",
            "{file}: nothing else"
        );
        assert_eq!(
            sub(&statements[0]["Resource"]),
            bus,
            "{file}: that bus only"
        );
    }
    // In a member, only the us-east-1 instance forwards, and only with event checks.
    for name in ["MemberIamEventRule", "MemberIamEventForwarderRole"] {
        assert_eq!(member["Resources"][name]["Condition"], "ForwardIamEvents");
    }
    let in_region = |region: &str, events: &str| {
        condition(
            &member,
            "ForwardIamEvents",
            &[("AWS::Region", region), ("EventChecks", events)],
        )
    };
    assert!(in_region("us-east-1", "true"));
    assert!(
        !in_region("eu-west-1", "true"),
        "IAM's events are only in us-east-1"
    );
    assert!(!in_region("us-east-1", "false"));
    // The function's bus: members of the organization only.
    let template = template();
    let policy = &template["Resources"]["OrganizationEventBusPolicy"];
    assert_eq!(policy["Condition"], "ForwardOrganizationEvents");
    let statement = &policy["Properties"]["Statement"];
    assert_eq!(statement["Action"], "events:PutEvents");
    assert_eq!(
        tagged(
            &statement["Condition"]["StringEquals"]["aws:PrincipalOrgID"],
            "Ref"
        )
        .and_then(Value::as_str),
        Some("OrganizationId")
    );
    for (accounts, events, admitted) in [
        ("organization", "true", true),
        ("organization", "false", false),
        ("self", "true", false),
        ("111111111111,222222222222", "true", false),
    ] {
        let given = [
            ("Accounts", accounts),
            ("EventChecks", events),
            ("OrganizationId", "o-a1b2c3d4e5"),
        ];
        assert_eq!(
            condition(&template, "ForwardOrganizationEvents", &given),
            admitted,
            "{given:?}"
        );
    }
}

/// The grace period's re-check exists exactly when it can run (event checks on and a grace period): the function
/// then gets its queue, role and schedule group, and the role may create schedules only in that group and pass
/// only the schedules' role, only to EventBridge Scheduler; that role may only send to the event queue.
#[test]
fn the_grace_period_recheck_is_granted_exactly_when_it_can_run() {
    let template = template();
    for (grace, events) in [
        ("0", "true"),
        ("24", "true"),
        ("24", "false"),
        ("0", "false"),
    ] {
        let given = [("GracePeriodHours", grace), ("EventChecks", events)];
        let settings = settings_with(&template, &given);
        let on = grace != "0" && events == "true";
        assert_eq!(settings.recheck.is_some(), on, "{given:?}");
        assert_eq!(
            granted_with(&template, &given),
            called_for(&settings, events == "true"),
            "{given:?}"
        );
        assert_eq!(
            settings.services().scheduler,
            on,
            "{given:?}: its client only then"
        );
    }
    let role = &template["Resources"]["RecheckSchedulerRole"];
    assert_eq!(role["Condition"], "RecheckAfterGrace");
    let trust = list(&role["Properties"]["AssumeRolePolicyDocument"]["Statement"]);
    assert_eq!(trust.len(), 1);
    assert_eq!(trust[0]["Principal"]["Service"], "scheduler.amazonaws.com");
    assert_eq!(
        tagged(
            &trust[0]["Condition"]["StringEquals"]["aws:SourceAccount"],
            "Ref"
        )
        .and_then(Value::as_str),
        Some("AWS::AccountId")
    );
    let statements = list(&list(&role["Properties"]["Policies"])[0]["PolicyDocument"]["Statement"]);
    assert_eq!(statements.len(), 1, "{statements:?}");
    assert_eq!(statements[0]["Action"], "sqs:SendMessage");
    assert_eq!(
        tagged(&statements[0]["Resource"], "GetAtt").and_then(Value::as_str),
        Some("IamEventQueue.Arn")
    );
    let variables = &function(&template)["Environment"]["Variables"];
    for variable in [
        "RECHECK_QUEUE_ARN",
        "RECHECK_ROLE_ARN",
        "RECHECK_SCHEDULE_GROUP",
    ] {
        let branches = tagged(&variables[variable], "If").expect("!If");
        assert_eq!(list(branches)[0], "RecheckAfterGrace", "{variable}");
    }
}

#[test]
fn ledger_parameters_are_the_functions_settings() {
    let template = template();
    let variables = &function(&template)["Environment"]["Variables"];
    let ledger = &template["Resources"]["Ledger"];
    assert_eq!(ledger["Type"], "AWS::DynamoDB::Table");
    assert!(
        ledger.get("Condition").is_none(),
        "every deployment has the ledger"
    );
    for (variable, name) in [
        ("LEDGER_TABLE", "Ledger"),
        ("ALERTS", "Alerts"),
        ("REMIND_EVERY_DAYS", "RemindEveryDays"),
        ("OWNER_TAG_KEY", "OwnerTagKey"),
    ] {
        assert_eq!(
            tagged(&variables[variable], "Ref").and_then(Value::as_str),
            Some(name),
            "{variable}"
        );
    }
    assert_eq!(
        tagged(&template["Outputs"]["LedgerTableName"]["Value"], "Ref").and_then(Value::as_str),
        Some("Ledger")
    );

    // The defaults: the stack's table, and only what changed is published, reminded weekly.
    let defaults = settings_with(&template, &[]);
    assert_eq!(defaults.ledger_table.as_deref(), Some(LEDGER_STAND_IN));
    assert_eq!(
        defaults.alerts,
        Alerts::Changes {
            remind_every_days: DEFAULT_REMIND_EVERY_DAYS
        }
    );
    assert_eq!(
        allowed_values(&template, "Alerts"),
        ["changes", "every-run"]
    );
    for (value, wanted) in [
        (
            "changes",
            Alerts::Changes {
                remind_every_days: DEFAULT_REMIND_EVERY_DAYS,
            },
        ),
        ("every-run", Alerts::EveryRun),
    ] {
        let settings = settings_with(&template, &[("Alerts", value)]);
        assert_eq!(settings.alerts, wanted, "Alerts={value}");
        assert_eq!(settings.ledger_table.as_deref(), Some(LEDGER_STAND_IN));
    }

    // RemindEveryDays: every value the range lets through, the code reads as that many days; one outside it
    // the code refuses, naming the variable.
    let remind = &template["Parameters"]["RemindEveryDays"];
    assert_eq!(remind["Type"], "Number");
    assert_eq!(remind["Default"], DEFAULT_REMIND_EVERY_DAYS);
    let (min, max) = (
        remind["MinValue"].as_u64().expect("MinValue"),
        remind["MaxValue"].as_u64().expect("MaxValue"),
    );
    assert_eq!((min, max), (1, u64::from(MAX_DEACTIVATE_AFTER_DAYS)));
    for days in [min, u64::from(DEFAULT_REMIND_EVERY_DAYS), max] {
        let value = days.to_string();
        assert_eq!(
            settings_with(&template, &[("RemindEveryDays", &value)]).alerts,
            Alerts::Changes {
                remind_every_days: u32::try_from(days).expect("a u32")
            }
        );
    }
    for outside in [min - 1, max + 1] {
        let value = outside.to_string();
        match read(&environment(&template, &[("RemindEveryDays", &value)])) {
            Err(Error::Config { variable, .. }) => assert_eq!(variable, "REMIND_EVERY_DAYS"),
            other => panic!("RemindEveryDays={outside}: {other:?}"),
        }
    }

    // The template's environment without LEDGER_TABLE: the defaults, and deactivation, cannot start.
    for given in [
        &[][..],
        &[("Alerts", "every-run"), ("Remediation", "deactivate")][..],
    ] {
        let without_ledger: Vec<(String, String)> = environment(&template, given)
            .into_iter()
            .filter(|(name, _)| name != "LEDGER_TABLE")
            .collect();
        match read(&without_ledger) {
            Err(Error::Config { variable, .. }) => {
                assert_eq!(variable, "LEDGER_TABLE", "{given:?}")
            }
            other => panic!("without LEDGER_TABLE ({given:?}): {other:?}"),
        }
    }
    // With it, every-run and no remediation need no ledger, but the template still gives one (and its grant).
    let every_run = settings_with(&template, &[("Alerts", "every-run")]);
    assert!(every_run.ledger_table.is_some());
    assert!(called_for(&every_run, true).contains("dynamodb:Query"));
}

/// The Ledger table: keyed as the code reads and writes it (partition key `account_id`, sort key
/// `access_key_id`, both strings, as `keywatch::ledger::Item` serializes them), TTL on the attribute the code
/// writes expiry times to (a number, as TTL needs), on-demand, encrypted, with point-in-time recovery, and
/// retained when the stack is deleted or the table replaced: forgetting who was warned would restart every
/// notice period.
#[test]
fn the_ledger_table_is_keyed_as_the_code_uses_it_and_kept_safe() {
    let template = template();
    let ledger = &template["Resources"]["Ledger"];
    assert_eq!(ledger["Type"], "AWS::DynamoDB::Table");
    assert_eq!(ledger["DeletionPolicy"], "Retain");
    assert_eq!(ledger["UpdateReplacePolicy"], "Retain");
    let properties = &ledger["Properties"];
    assert_eq!(properties["BillingMode"], "PAY_PER_REQUEST");
    assert!(
        properties.get("ProvisionedThroughput").is_none(),
        "on-demand: {properties:?}"
    );
    assert!(
        properties.get("TableName").is_none(),
        "no fixed name: a retained table would block re-creating the stack"
    );
    assert_eq!(properties["SSESpecification"]["SSEEnabled"], true);
    assert_eq!(
        properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    let ttl = &properties["TimeToLiveSpecification"];
    assert_eq!(ttl["Enabled"], true);
    let ttl_attribute = ttl["AttributeName"].as_str().expect("a TTL attribute");
    assert_eq!(ttl_attribute, "expires_at");

    let keys: Vec<(&str, &str)> = list(&properties["KeySchema"])
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().expect("a name"),
                k["KeyType"].as_str().expect("a key type"),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [("account_id", "HASH"), ("access_key_id", "RANGE")],
        "one partition per account (one Query per check), one item per key"
    );
    let definitions: BTreeSet<(&str, &str)> = list(&properties["AttributeDefinitions"])
        .iter()
        .map(|d| {
            (
                d["AttributeName"].as_str().expect("a name"),
                d["AttributeType"].as_str().expect("a type"),
            )
        })
        .collect();
    assert_eq!(
        definitions,
        [("account_id", "S"), ("access_key_id", "S")].into(),
        "exactly the key attributes are defined"
    );

    // An item as the code writes it (built through the code's own serde type, from its required fields and an
    // expiry): the keys are strings under those names, the expiry a number under the TTL attribute.
    let item: keywatch::ledger::Item = serde_json::from_value(serde_json::json!({
        "account_id": "123456789012",
        "access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "user_name": "alice",
        "state": "resolved",
        "first_seen_at": "2026-01-01T00:00:00Z",
        "expires_at": 1_800_000_000,
    }))
    .expect("a ledger item");
    let written: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
        serde_dynamo::to_item(&item).expect("an item");
    for (name, _) in &keys {
        assert!(
            written.get(*name).is_some_and(|v| v.is_s()),
            "{name} is a string attribute of the item the code writes: {written:?}"
        );
    }
    assert_eq!(
        written.get(ttl_attribute).and_then(|v| v.as_n().ok()),
        Some(&"1800000000".to_string()),
        "the TTL attribute holds the expiry in epoch seconds: {written:?}"
    );
}

#[test]
fn no_action_is_a_wildcard_or_listed_twice() {
    let template = template();
    for action in statements(&template).into_iter().flat_map(actions) {
        assert!(!action.contains('*'), "template.yaml grants {action}");
    }
    // sts:AssumeRole has a statement for an organization and one for a list; no parameters give both. The
    // queue consumer's actions are granted once per queue: each action once on each resource.
    for accounts in ACCOUNTS {
        let given = [
            ("Accounts", accounts),
            ("EnableSecurityHub", "true"),
            ("Remediation", "deactivate"),
        ];
        let mut seen = BTreeSet::new();
        for grant in grants(&template) {
            if grant
                .condition
                .is_none_or(|c| condition(&template, c, &given))
            {
                let resource = format!("{:?}", grant.statement["Resource"]);
                for action in actions(grant.statement) {
                    assert!(
                        seen.insert((action, resource.clone())),
                        "template.yaml grants {action} twice on {resource} for {given:?}"
                    );
                }
            }
        }
    }
    let mut listed = BTreeSet::new();
    for action in every_listed().iter().chain(UNGATED_ACTIONS) {
        assert!(!action.contains('*'), "src/permissions.rs lists {action}");
        assert!(
            listed.insert(action),
            "src/permissions.rs lists {action} twice"
        );
    }
    let prefixed = |list: &[&str], prefix: &str| list.iter().all(|a| a.starts_with(prefix));
    assert!(prefixed(IAM_ACTIONS, "iam:"));
    assert!(prefixed(SNS_ACTIONS, "sns:"));
    assert!(prefixed(ORGANIZATION_ACTIONS, "organizations:"));
    assert!(prefixed(MEMBER_ROLE_ACTIONS, "sts:"));
    assert!(prefixed(QUEUE_SEND_ACTIONS, "sqs:"));
    assert!(prefixed(QUEUE_CONSUME_ACTIONS, "sqs:"));
    assert!(prefixed(SECURITY_HUB_ACTIONS, "securityhub:"));
    assert!(prefixed(LEDGER_ACTIONS, "dynamodb:"));
    assert_eq!(
        LEDGER_ACTIONS,
        ["dynamodb:Query", "dynamodb:PutItem", "dynamodb:DeleteItem"],
        "one query, conditional puts, and the lease's delete: no Scan, no table management"
    );
    assert_eq!(
        REMEDIATION_ACTIONS,
        ["iam:UpdateAccessKey"],
        "never a delete"
    );
}

/// Each statement grants exactly one list of src/permissions.rs, under that list's condition and on its
/// resource: IAM (reads, and UpdateAccessKey under `DeactivateKeys`), ListAccounts and Security Hub (under
/// `UseSecurityHub`) on `*`, Publish on the findings topic, AssumeRole on the member role's ARN in any account,
/// the queue actions on the work queue, the ledger's Query, PutItem and DeleteItem on the ledger table's ARN only.
#[test]
fn each_statement_grants_one_list_under_its_condition_on_its_resource() {
    let template = template();
    for grant in grants(&template) {
        let statement = grant.statement;
        let actions: BTreeSet<&str> = actions(statement).into_iter().collect();
        let expected = EXPECTED
            .iter()
            .filter(|e| e.list.iter().any(|a| actions.contains(a)))
            .find(|e| e.condition == grant.condition)
            .unwrap_or_else(|| {
                panic!(
                    "no list of src/permissions.rs under {:?} in {statement:?}",
                    grant.condition
                )
            });
        assert_eq!(
            actions,
            expected.list.iter().copied().collect(),
            "a statement holds exactly one list: {statement:?}"
        );
        assert_eq!(
            grant.condition, expected.condition,
            "{actions:?} exists only under this condition"
        );
        let resource = &statement["Resource"];
        match expected.resource {
            Resource::Star => assert_eq!(resource, "*", "{actions:?}"),
            Resource::FindingsTopic => {
                assert_is_the_findings_topic(resource, &format!("{actions:?}'s Resource"))
            }
            Resource::Tagged(tag, value) => assert_eq!(
                tagged(resource, tag).and_then(Value::as_str),
                Some(value),
                "{actions:?}'s Resource must be !{tag} {value}, found {resource:?}"
            ),
        }
        match expected.bound {
            None => assert!(
                statement.get("Condition").is_none(),
                "{actions:?} carries no IAM condition: {statement:?}"
            ),
            Some((operator, key)) => {
                let keys: Vec<&str> = statement["Condition"]
                    .as_mapping()
                    .unwrap_or_else(|| panic!("{actions:?} has a Condition: {statement:?}"))
                    .iter()
                    .flat_map(|(op, keys)| {
                        assert_eq!(op.as_str(), Some(operator), "{statement:?}");
                        keys.as_mapping().expect("condition keys").keys()
                    })
                    .map(|k| k.as_str().expect("a key"))
                    .collect();
                assert_eq!(keys, [key], "{statement:?}");
            }
        }
    }
    // Every expected grant exists.
    for expected in &EXPECTED {
        assert!(
            grants(&template)
                .iter()
                .any(|g| g.condition == expected.condition
                    && actions(g.statement)
                        .iter()
                        .any(|a| expected.list.contains(a))),
            "no statement grants {:?} under {:?}",
            expected.list,
            expected.condition
        );
    }
    // And the function publishes to the very topic it may publish to.
    assert_is_the_findings_topic(
        &function(&template)["Environment"]["Variables"]["FINDINGS_TOPIC_ARN"],
        "FINDINGS_TOPIC_ARN",
    );
}

/// The conditions mean what the code reads from the same `Accounts` value: the organization's resources and
/// grants exist exactly when the code leaves its own account, ListAccounts exactly for `organization`, and a
/// reserved concurrency only for a single account.
#[test]
fn conditions_follow_the_scope_the_code_reads() {
    let template = template();
    for accounts in ACCOUNTS {
        let scope = scope(accounts).unwrap_or_else(|e| panic!("ACCOUNTS={accounts}: {e}"));
        let given = [("Accounts", accounts)];
        assert_eq!(
            condition(&template, "CheckAccounts", &given),
            scope != Scope::Own,
            "{accounts}"
        );
        assert_eq!(
            condition(&template, "ListOrganization", &given),
            scope == Scope::Organization,
            "{accounts}"
        );
        // A reserved concurrency of 1 would throttle the work queue's mapping (MaximumConcurrency >= 2), and
        // throttled records come back as receives, pushing accounts toward the dead-letter queue.
        assert_eq!(
            condition(&template, "ReserveConcurrency", &given),
            scope == Scope::Own,
            "{accounts}"
        );
        let unreserved = [("Accounts", accounts), ("ReservedConcurrency", "0")];
        assert!(!condition(&template, "ReserveConcurrency", &unreserved));
    }
    let fleet = [
        "WorkQueue",
        "WorkDeadLetterQueue",
        "WorkQueueMapping",
        "WorkDeadLetterAlarm",
    ];
    for name in fleet {
        assert_eq!(
            template["Resources"][name]["Condition"], "CheckAccounts",
            "{name} exists only when Accounts is not self"
        );
    }
    for name in ["WorkQueueUrl", "DeadLetterQueueUrl"] {
        assert_eq!(template["Outputs"][name]["Condition"], "CheckAccounts");
    }
    let reserved = &function(&template)["ReservedConcurrentExecutions"];
    let branches = list(tagged(reserved, "If").expect("ReservedConcurrentExecutions is an !If"));
    assert_eq!(branches[0], "ReserveConcurrency");
    assert_eq!(branches[1], 1);
    assert!(is_no_value(&branches[2]), "{reserved:?}");
}

/// The parameters reach the function as the variables the code reads, with the code's defaults and ranges.
#[test]
fn accounts_parameters_are_the_functions_settings() {
    let template = template();
    let variables = &function(&template)["Environment"]["Variables"];
    for (variable, parameter) in [
        ("ACCOUNTS", "Accounts"),
        ("EXCLUDE_ACCOUNTS", "ExcludeAccounts"),
        ("MEMBER_ROLE_NAME", "MemberRoleName"),
        ("MAX_RECEIVE_COUNT", "MaxReceiveCount"),
    ] {
        assert_eq!(
            tagged(&variables[variable], "Ref").and_then(Value::as_str),
            Some(parameter),
            "{variable}"
        );
    }
    let queue_url =
        list(tagged(&variables["WORK_QUEUE_URL"], "If").expect("WORK_QUEUE_URL is an !If"));
    assert_eq!(queue_url[0], "CheckAccounts");
    assert_eq!(
        tagged(&queue_url[1], "Ref").and_then(Value::as_str),
        Some("WorkQueue")
    );
    assert!(
        is_no_value(&queue_url[2]),
        "no WORK_QUEUE_URL for a single account"
    );

    let parameters = &template["Parameters"];
    assert_eq!(parameters["Accounts"]["Default"], "self");
    assert_eq!(parameters["ExcludeAccounts"]["Default"], "");
    assert_eq!(parameters["MemberRoleName"]["Default"], MemberRole::DEFAULT);
    assert_eq!(
        parameters["MaxReceiveCount"]["Default"],
        DEFAULT_MAX_RECEIVE_COUNT
    );
    // The code accepts MAX_RECEIVE_COUNT from 1 to 1000.
    assert_eq!(parameters["MaxReceiveCount"]["MinValue"], 1);
    assert_eq!(parameters["MaxReceiveCount"]["MaxValue"], 1000);
    // Lambda's MaximumConcurrency for SQS: 2 to 1000.
    assert_eq!(parameters["AccountConcurrency"]["Default"], 10);
    assert_eq!(parameters["AccountConcurrency"]["MinValue"], 2);
    assert_eq!(parameters["AccountConcurrency"]["MaxValue"], 1000);
    assert_eq!(
        tagged(&template["Outputs"]["FunctionRoleArn"]["Value"], "GetAtt").and_then(Value::as_str),
        Some("KeywatchFunctionRole.Arn"),
        "member-role.yaml's KeywatchRoleArn comes from this output"
    );
}

/// Whether `pattern` matches each value whole, as CloudFormation matches an AllowedPattern. Python's `re` reads
/// these patterns as Java's does: they are anchored and use no Java-only syntax.
fn full_matches(pattern: &str, values: &[&str]) -> Vec<bool> {
    let output = std::process::Command::new(venv_tool("python"))
        .args([
            "-c",
            "import json, re, sys; p, vs = json.loads(sys.argv[1]); print(json.dumps([re.fullmatch(p, v) is not None for v in vs]))",
        ])
        .arg(serde_json::json!([pattern, values]).to_string())
        .output()
        .expect("run python");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("a JSON list")
}

/// Every value the template's AllowedPattern lets through, the code reads without error (the Lambda would
/// otherwise fail its init after a clean deploy), and with the meaning the template's conditions give it.
/// The template is stricter: `Self` would read as self in the code but create the organization's resources.
#[test]
fn allowed_patterns_let_through_only_what_the_code_reads() {
    let template = template();
    let samples: &[(&str, &[&str], &[&str])] = &[
        (
            "Accounts",
            &[
                "self",
                "organization",
                "111111111111",
                "111111111111,222222222222",
            ],
            &[
                // The template splits the list on commas into aws:ResourceAccount values.
                "111111111111, 222222222222",
                "Self",
                "ORGANIZATION",
                "organisation",
                "",
                "11111111111",
                "1111111111111",
                "111111111111;222222222222",
                "111111111111,",
                "self,111111111111",
            ],
        ),
        (
            "ExcludeAccounts",
            &["", "111111111111", "111111111111,222222222222"],
            &["self", "11111111111", "111111111111,", "abc"],
        ),
        (
            "MemberRoleName",
            &[
                "keywatch-member",
                "security/keywatch-member",
                "a/b/keywatch+=,.@_-member",
            ],
            &[
                "",
                "/keywatch-member",
                "security//keywatch-member",
                "keywatch member",
                &"x".repeat(65),
            ],
        ),
    ];
    for (parameter, accepted, rejected) in samples {
        let pattern = template["Parameters"][*parameter]["AllowedPattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{parameter} has an AllowedPattern"));
        let values: Vec<&str> = accepted.iter().chain(rejected.iter()).copied().collect();
        for (value, matched) in values.iter().zip(full_matches(pattern, &values)) {
            assert_eq!(
                matched,
                accepted.contains(value),
                "{parameter}'s AllowedPattern {pattern:?} on {value:?}"
            );
            if !matched {
                continue;
            }
            let variable = match *parameter {
                "Accounts" => "ACCOUNTS",
                "ExcludeAccounts" => "EXCLUDE_ACCOUNTS",
                _ => "MEMBER_ROLE_NAME",
            };
            let vars = [
                ("DRY_RUN", "true"),
                ("ACCOUNTS", "organization"),
                (
                    "WORK_QUEUE_URL",
                    "https://sqs.us-east-1.amazonaws.com/123456789012/work",
                ),
                (variable, *value),
            ];
            let read = Settings::from_lookup(|name| {
                vars.iter()
                    .rev()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.trim().to_string())
                    .filter(|v| !v.is_empty())
            });
            let settings = read.unwrap_or_else(|e| {
                panic!("{parameter}={value:?} passes the template but the code rejects it: {e}")
            });
            if *parameter == "Accounts" {
                let given = [("Accounts", *value)];
                assert_eq!(
                    condition(&template, "CheckAccounts", &given),
                    settings.fleet.scope != Scope::Own,
                    "{value:?}"
                );
                assert_eq!(
                    condition(&template, "ListOrganization", &given),
                    settings.fleet.scope == Scope::Organization,
                    "{value:?}"
                );
            }
        }
    }
}

/// The work queue is encrypted and outlasts six function timeouts; its dead-letter queue keeps messages 14
/// days and alarms on the findings topic; the mapping hands each account its own invocation.
#[test]
fn accounts_get_a_work_queue_a_dead_letter_queue_and_a_mapping() {
    let template = template();
    let resources = &template["Resources"];
    let timeout = function(&template)["Timeout"]
        .as_u64()
        .expect("a function Timeout");

    let queue = &resources["WorkQueue"];
    assert_eq!(queue["Type"], "AWS::SQS::Queue");
    let properties = &queue["Properties"];
    assert_eq!(properties["SqsManagedSseEnabled"], true, "encrypted");
    let visibility = properties["VisibilityTimeout"]
        .as_u64()
        .expect("a VisibilityTimeout");
    assert!(
        visibility >= 6 * timeout,
        "VisibilityTimeout {visibility} must be at least 6 x the function Timeout {timeout}"
    );
    let redrive = &properties["RedrivePolicy"];
    assert_eq!(
        tagged(&redrive["deadLetterTargetArn"], "GetAtt").and_then(Value::as_str),
        Some("WorkDeadLetterQueue.Arn")
    );
    assert_eq!(
        tagged(&redrive["maxReceiveCount"], "Ref").and_then(Value::as_str),
        Some("MaxReceiveCount")
    );

    let dead_letters = &resources["WorkDeadLetterQueue"];
    assert_eq!(dead_letters["Type"], "AWS::SQS::Queue");
    assert_eq!(dead_letters["Properties"]["SqsManagedSseEnabled"], true);
    assert_eq!(
        dead_letters["Properties"]["MessageRetentionPeriod"], 1_209_600,
        "14 days"
    );

    let mapping = &resources["WorkQueueMapping"];
    assert_eq!(mapping["Type"], "AWS::Lambda::EventSourceMapping");
    let properties = &mapping["Properties"];
    assert_eq!(
        tagged(&properties["EventSourceArn"], "GetAtt").and_then(Value::as_str),
        Some("WorkQueue.Arn")
    );
    assert_eq!(
        tagged(&properties["FunctionName"], "Ref").and_then(Value::as_str),
        Some("KeywatchFunction")
    );
    // One account per invocation: its own deadline, retries and place in the dead-letter queue.
    assert_eq!(properties["BatchSize"], 1);
    assert_eq!(
        properties["FunctionResponseTypes"],
        serde_yaml_ng::from_str::<Value>("[ReportBatchItemFailures]").expect("yaml")
    );
    assert_eq!(
        tagged(&properties["ScalingConfig"]["MaximumConcurrency"], "Ref").and_then(Value::as_str),
        Some("AccountConcurrency")
    );

    let alarm = &resources["WorkDeadLetterAlarm"];
    assert_eq!(alarm["Type"], "AWS::CloudWatch::Alarm");
    let properties = &alarm["Properties"];
    assert_eq!(properties["Namespace"], "AWS/SQS");
    assert_eq!(
        properties["MetricName"],
        "ApproximateNumberOfMessagesVisible"
    );
    let dimensions = list(&properties["Dimensions"]);
    assert_eq!(dimensions.len(), 1);
    assert_eq!(dimensions[0]["Name"], "QueueName");
    assert_eq!(
        tagged(&dimensions[0]["Value"], "GetAtt").and_then(Value::as_str),
        Some("WorkDeadLetterQueue.QueueName")
    );
    assert_eq!(properties["Threshold"], 0);
    assert_eq!(properties["ComparisonOperator"], "GreaterThanThreshold");
    let actions = list(&properties["AlarmActions"]);
    assert_eq!(actions.len(), 1);
    assert_is_the_findings_topic(&actions[0], "WorkDeadLetterAlarm's action");
}

/// member-role.yaml: one role, granting exactly the IAM reads of an account check on `*`, assumable only by
/// the function's role (the central account's root narrowed to KeywatchRoleArn), with the same default name
/// the code and template.yaml use.
#[test]
fn member_role_reads_exactly_the_iam_actions_and_trusts_only_the_function_role() {
    let member = member_template();
    assert!(
        member.get("Transform").is_none(),
        "plain CloudFormation, for StackSets"
    );
    // One role always; the IAM event forwarder (its rule and the rule's own role) only under its condition.
    let resources = member["Resources"].as_mapping().expect("Resources");
    let always: Vec<&str> = resources
        .iter()
        .filter(|(_, resource)| resource.get("Condition").is_none())
        .filter_map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        always,
        ["MemberRole"],
        "one role and nothing else: {resources:?}"
    );
    let role = &member["Resources"]["MemberRole"];
    assert_eq!(role["Type"], "AWS::IAM::Role");
    let properties = &role["Properties"];
    for absent in ["ManagedPolicyArns", "PermissionsBoundary"] {
        assert!(
            properties.get(absent).is_none(),
            "{absent}: only the inline policy grants"
        );
    }
    assert_eq!(
        tagged(&properties["RoleName"], "Ref").and_then(Value::as_str),
        Some("MemberRoleName")
    );
    assert_eq!(
        tagged(&properties["Path"], "Ref").and_then(Value::as_str),
        Some("MemberRolePath")
    );
    assert_eq!(
        member["Parameters"]["MemberRoleName"]["Default"],
        MemberRole::DEFAULT
    );
    assert_eq!(
        member["Parameters"]["MemberRoleName"]["Default"],
        template()["Parameters"]["MemberRoleName"]["Default"]
    );
    assert_eq!(member["Parameters"]["MemberRolePath"]["Default"], "/");
    assert!(
        member["Parameters"]["KeywatchRoleArn"]
            .get("Default")
            .is_none(),
        "KeywatchRoleArn has no default: a member role must name the role it trusts"
    );

    // Policy = code: exactly IAM_ACTIONS and EVENT_ACTIONS, on "*", each in a statement that always exists (the
    // others are conditional: see member_role_grants_each_feature_only_when_its_parameter_asks).
    let always: Vec<&Value> = member_grants(&member)
        .into_iter()
        .filter(|g| g.condition.is_none())
        .map(|g| g.statement)
        .collect();
    assert_eq!(always.len(), 2, "{always:?}");
    for (statement, list) in always.iter().zip([IAM_ACTIONS, EVENT_ACTIONS]) {
        let granted: Vec<&str> = actions(statement);
        assert_eq!(
            granted.iter().copied().collect::<BTreeSet<_>>(),
            list.iter().copied().collect::<BTreeSet<_>>(),
            "member-role.yaml grants exactly {list:?}"
        );
        assert_eq!(granted.len(), list.len(), "no action twice");
        assert_eq!(statement["Resource"], "*");
    }
    assert_eq!(
        member_granted_with(&member, &[]),
        listed(&[IAM_ACTIONS, EVENT_ACTIONS]),
        "the defaults: the IAM reads only"
    );

    // Trust: one statement, sts:AssumeRole for the central account narrowed to the function's role ARN.
    let trust = list(&properties["AssumeRolePolicyDocument"]["Statement"]);
    assert_eq!(trust.len(), 1, "{trust:?}");
    let trust = &trust[0];
    assert_eq!(trust["Effect"], "Allow");
    assert_eq!(trust["Action"], "sts:AssumeRole");
    let principal = trust["Principal"].as_mapping().expect("Principal");
    assert_eq!(principal.len(), 1, "an AWS principal only: {principal:?}");
    let sub = list(tagged(&trust["Principal"]["AWS"], "Sub").expect("Principal.AWS is !Sub [...]"));
    assert_eq!(sub[0], "arn:${Partition}:iam::${Account}:root");
    for (variable, index) in [("Partition", 1), ("Account", 4)] {
        let select = list(tagged(&sub[1][variable], "Select").expect("!Select"));
        assert_eq!(
            select[0], index,
            "{variable} is field {index} of KeywatchRoleArn"
        );
        let split = list(tagged(&select[1], "Split").expect("!Split"));
        assert_eq!(split[0], ":");
        assert_eq!(
            tagged(&split[1], "Ref").and_then(Value::as_str),
            Some("KeywatchRoleArn")
        );
    }
    let conditions = trust["Condition"].as_mapping().expect("a Condition");
    assert_eq!(conditions.len(), 1, "{conditions:?}");
    let arn_equals = trust["Condition"]["ArnEquals"]
        .as_mapping()
        .expect("ArnEquals");
    assert_eq!(arn_equals.len(), 1, "{arn_equals:?}");
    assert_eq!(
        tagged(&trust["Condition"]["ArnEquals"]["aws:PrincipalArn"], "Ref").and_then(Value::as_str),
        Some("KeywatchRoleArn")
    );
}

/// member-role.yaml's `EnableSecurityHub` and `Remediation` (the keywatch stack's parameters, with the same
/// defaults and values): for each combination the member role grants exactly what a member check calls as it
/// with the settings the keywatch stack reads from the same values, each feature's actions in a statement of
/// their own, under their condition, on `*`.
#[test]
fn member_role_grants_each_feature_only_when_its_parameter_asks() {
    let member = member_template();
    let template = template();
    for name in ["EnableSecurityHub", "Remediation"] {
        for key in ["Type", "Default", "AllowedValues"] {
            assert!(!member["Parameters"][name][key].is_null(), "{name}.{key}");
            assert_eq!(
                member["Parameters"][name][key], template["Parameters"][name][key],
                "member-role.yaml's {name}.{key} is template.yaml's"
            );
        }
    }
    for hub in allowed_values(&member, "EnableSecurityHub") {
        for remediation in allowed_values(&member, "Remediation") {
            let given = [
                ("EnableSecurityHub", hub.as_str()),
                ("Remediation", remediation.as_str()),
            ];
            let organization = [("Accounts", "organization"), given[0], given[1]];
            let settings = settings_with(&template, &organization);
            let granted = member_granted_with(&member, &given);
            assert_eq!(granted, member_called_for(&settings), "{given:?}");
            assert!(
                !granted.iter().any(|a| a.starts_with("iam:Delete")),
                "keywatch never deletes: {granted:?}"
            );
            // The keywatch stack reads a ledger with these settings, and still the member role grants none of
            // its actions: the function's role writes every account's items to the central table.
            assert!(settings.ledger_table.is_some(), "{given:?}");
            assert!(
                !granted.iter().any(|a| a.starts_with("dynamodb:")),
                "member-role.yaml never grants DynamoDB: {granted:?}"
            );
        }
    }
    let text = std::fs::read_to_string(project_dir().join("member-role.yaml")).expect("readable");
    assert!(
        !text.to_ascii_lowercase().contains("dynamodb"),
        "member-role.yaml names no DynamoDB action or resource"
    );
    let expected: [(&[&str], Option<&str>); 4] = [
        (IAM_ACTIONS, None),
        (EVENT_ACTIONS, None),
        (SECURITY_HUB_ACTIONS, Some("UseSecurityHub")),
        (REMEDIATION_ACTIONS, Some("DeactivateKeys")),
    ];
    let grants = member_grants(&member);
    assert_eq!(grants.len(), expected.len(), "one statement per list");
    for grant in grants {
        let actions: BTreeSet<&str> = actions(grant.statement).into_iter().collect();
        let (list, condition) = expected
            .iter()
            .find(|(list, _)| list.iter().any(|a| actions.contains(a)))
            .unwrap_or_else(|| panic!("no list of src/permissions.rs in {:?}", grant.statement));
        assert_eq!(actions, list.iter().copied().collect(), "{actions:?}");
        assert_eq!(grant.condition, *condition, "{actions:?}");
        assert_eq!(grant.statement["Resource"], "*", "{actions:?}");
    }
}

/// Issue 8: a failed scheduled run is retried once, not Lambda's default twice (every retry of a run that
/// failed after publishing publishes every alert part again), and an event an hour old is dropped rather than
/// run late (the next scheduled run supersedes it). No destination: the Errors alarm reports failures.
#[test]
fn a_failed_run_is_retried_once_and_not_after_an_hour() {
    let template = template();
    let config = &function(&template)["EventInvokeConfig"];
    assert_eq!(
        config["MaximumRetryAttempts"], 1,
        "KeywatchFunction.EventInvokeConfig.MaximumRetryAttempts: {config:?}"
    );
    assert_eq!(
        config["MaximumEventAgeInSeconds"], 3600,
        "KeywatchFunction.EventInvokeConfig.MaximumEventAgeInSeconds: {config:?}"
    );
    assert!(
        config.get("DestinationConfig").is_none(),
        "no destination: {config:?}"
    );
}

/// One metric a dashboard widget plots.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plotted {
    namespace: String,
    name: String,
    dimensions: Vec<String>,
    stat: String,
    /// A SEARCH expression: every metric of that schema, whatever its dimension values.
    search: bool,
    /// `SORT(SEARCH(...), MAX, DESC, n)`: only the `n` series with the highest maximum, highest first.
    top: Option<usize>,
}

/// The metrics a widget plots: explicit metric arrays `[namespace, name, (dimension, value)*, {options}]` and
/// `SEARCH('{namespace,dimension...} MetricName="name"', 'stat', period)` expressions. Anything else (a metric
/// math expression, the `"..."` shorthand) fails the test: it could not vouch for what that plots.
fn plotted(widget: &Json) -> Vec<Plotted> {
    let properties = &widget["properties"];
    let widget_stat = properties["stat"].as_str();
    properties["metrics"]
        .as_array()
        .unwrap_or_else(|| panic!("a metric widget lists its metrics: {widget}"))
        .iter()
        .map(|entry| {
            let entry = entry.as_array().expect("a metric entry is a list");
            if let Some(expression) = entry[0].get("expression") {
                assert_eq!(entry.len(), 1, "{entry:?}");
                return search(expression.as_str().expect("an expression string"));
            }
            let (options, fields) = match entry.last() {
                Some(Json::Object(options)) => (Some(options), &entry[..entry.len() - 1]),
                _ => (None, &entry[..]),
            };
            let fields: Vec<&str> = fields
                .iter()
                .map(|f| f.as_str().unwrap_or_else(|| panic!("{entry:?}")))
                .collect();
            assert!(
                fields.len() >= 2 && fields.len() % 2 == 0 && !fields.contains(&"..."),
                "[namespace, name, (dimension, value)*]: {entry:?}"
            );
            let stat = options
                .and_then(|o| o.get("stat"))
                .and_then(Json::as_str)
                .or(widget_stat)
                .unwrap_or_else(|| panic!("no stat for {entry:?}"));
            Plotted {
                namespace: fields[0].to_string(),
                name: fields[1].to_string(),
                dimensions: fields[2..].chunks(2).map(|d| d[0].to_string()).collect(),
                stat: stat.to_string(),
                search: false,
                top: None,
            }
        })
        .collect()
}

/// `SEARCH('{keywatch,AccountId} MetricName="Findings"', 'Maximum', 86400)`, or that inside
/// `SORT(..., MAX, DESC, n)`.
fn search(expression: &str) -> Plotted {
    if let Some(inner) = expression.strip_prefix("SORT(") {
        let (searched, top) = inner
            .strip_suffix(')')
            .and_then(|i| i.rsplit_once(", MAX, DESC, "))
            .unwrap_or_else(|| panic!("only SORT(SEARCH(...), MAX, DESC, n): {expression}"));
        let top: usize = top.parse().expect("a number of series");
        return Plotted {
            top: Some(top),
            ..search(searched)
        };
    }
    let unsupported = || -> ! {
        panic!("only SEARCH('{{schema}} MetricName=\"name\"', 'stat', period): {expression}")
    };
    let Some(arguments) = expression
        .strip_prefix("SEARCH('")
        .and_then(|e| e.strip_suffix(')'))
    else {
        unsupported()
    };
    let Some((term, rest)) = arguments.split_once("', '") else {
        unsupported()
    };
    let Some((stat, _period)) = rest.split_once("', ") else {
        unsupported()
    };
    let Some((schema, metric)) = term.strip_prefix('{').and_then(|t| t.split_once("} ")) else {
        unsupported()
    };
    let Some(name) = metric
        .strip_prefix("MetricName=\"")
        .and_then(|m| m.strip_suffix('"'))
    else {
        unsupported()
    };
    let mut schema = schema.split(',');
    Plotted {
        namespace: schema.next().expect("a namespace").to_string(),
        name: name.to_string(),
        dimensions: schema.map(str::to_string).collect(),
        stat: stat.to_string(),
        search: true,
        top: None,
    }
}

/// Every metric the dashboard plots is one the code emits (src/metrics.rs: its namespace, a name of METRICS,
/// per account or rolled up), in the stack's region; the three widgets of issue 10 are there: findings
/// per account (a SEARCH, as accounts come and go), failed checks (the roll-up's sum) and check duration (the
/// roll-up's maximum); and the ledger's: new and resolved findings (the roll-up's sums) and the oldest open
/// finding (the roll-up's maximum). Returns the widgets by title.
fn assert_dashboard_plots_what_the_code_emits(
    body: &Json,
    region: &str,
) -> BTreeMap<String, Vec<Plotted>> {
    let names: BTreeSet<&str> = metrics::METRICS.iter().map(|(name, _)| *name).collect();
    let widgets = body["widgets"].as_array().expect("widgets");
    let mut by_title = BTreeMap::new();
    for widget in widgets {
        assert_eq!(widget["type"], "metric", "only metric widgets: {widget}");
        assert_eq!(widget["properties"]["region"], region, "{widget}");
        let title = widget["properties"]["title"]
            .as_str()
            .expect("a title")
            .to_string();
        let plotted = plotted(widget);
        assert!(!plotted.is_empty(), "{title}: plots nothing");
        for metric in &plotted {
            assert_eq!(metric.namespace, metrics::NAMESPACE, "{title}: {metric:?}");
            assert!(
                names.contains(metric.name.as_str()),
                "{title}: {} is not a metric the code emits ({names:?})",
                metric.name
            );
            assert!(
                metric.dimensions.is_empty() || metric.dimensions == [metrics::DIMENSION],
                "{title}: the code emits {} or no dimension, not {:?}",
                metrics::DIMENSION,
                metric.dimensions
            );
        }
        by_title.insert(title, plotted);
    }
    let plots = |wanted: &dyn Fn(&Plotted) -> bool| by_title.values().any(|p| p.iter().any(wanted));
    for metric in by_title.values().flatten() {
        assert!(
            metric.dimensions.is_empty() || metrics::PER_ACCOUNT.contains(&metric.name.as_str()),
            "{} is written per deployment only, not per {}",
            metric.name,
            metrics::DIMENSION
        );
    }
    // CloudWatch's SEARCH returns at most 500 series: the accounts with the most findings first, cut at 100,
    // and the title says so.
    let findings: Vec<(&String, &Plotted)> = by_title
        .iter()
        .flat_map(|(title, p)| p.iter().map(move |m| (title, m)))
        .filter(|(_, m)| m.name == "Findings" && m.search && m.dimensions == [metrics::DIMENSION])
        .collect();
    let [(title, findings)] = &findings[..] else {
        panic!(
            "findings per account: one SEARCH over {{{},{}}}: {body}",
            metrics::NAMESPACE,
            metrics::DIMENSION
        )
    };
    assert_eq!(findings.top, Some(100), "{title}");
    assert!(title.contains("100 accounts with the most"), "{title}");
    assert!(
        plots(&|m| m.name == "CheckFailed" && m.dimensions.is_empty() && m.stat == "Sum"),
        "failed checks: the roll-up's Sum: {body}"
    );
    assert!(
        plots(&|m| m.name == "DurationMs" && m.dimensions.is_empty() && m.stat == "Maximum"),
        "check duration: the roll-up's Maximum: {body}"
    );
    for (name, stat) in [
        ("NewFindings", "Sum"),
        ("ResolvedFindings", "Sum"),
        ("OldestOpenFindingDays", "Maximum"),
    ] {
        assert!(names.contains(name), "{name} is in src/metrics.rs METRICS");
        assert!(
            plots(&|m| m.name == name && m.dimensions.is_empty() && m.stat == stat),
            "{name}: the roll-up's {stat}: {body}"
        );
    }
    by_title
}

/// The dashboard body as the template writes it (`!Sub` over a JSON string), resolved for `region`. Only
/// `${AWS::Region}` is substituted; `${!...}` is a literal `${...}` (CloudWatch's dynamic labels).
fn dashboard_body(template: &Value, region: &str) -> Json {
    let dashboard = &template["Resources"]["KeywatchDashboard"];
    assert_eq!(dashboard["Type"], "AWS::CloudWatch::Dashboard");
    assert!(
        dashboard.get("Condition").is_none(),
        "every deployment has the dashboard"
    );
    let text = tagged(&dashboard["Properties"]["DashboardBody"], "Sub")
        .and_then(Value::as_str)
        .expect("DashboardBody is !Sub over a JSON string");
    let text = text.replace("${AWS::Region}", region);
    let leftover: Vec<&str> = text
        .match_indices("${")
        .map(|(at, _)| &text[at..(at + 12).min(text.len())])
        .filter(|s| !s.starts_with("${!"))
        .collect();
    assert!(
        leftover.is_empty(),
        "substitutions the test does not resolve: {leftover:?}"
    );
    serde_json::from_str(&text.replace("${!", "${"))
        .unwrap_or_else(|e| panic!("DashboardBody is JSON once substituted: {e}\n{text}"))
}

/// Issue 10: the dashboard plots findings per account over time, failed checks and check duration, and the
/// ledger's new, resolved and oldest open findings, and only metrics, namespace and dimensions the code emits.
/// Its duration graph marks the function's timeout.
#[test]
fn dashboard_plots_only_what_the_code_emits() {
    let template = template();
    // An account's failed check alarms the day it happens, on the findings topic, for every deployment that
    // checks other accounts: the roll-up of the metric the code writes once per account whose check failed.
    let alarm = &template["Resources"]["CheckFailedAlarm"];
    assert_eq!(alarm["Type"], "AWS::CloudWatch::Alarm");
    assert_eq!(alarm["Condition"], "CheckAccounts");
    let properties = &alarm["Properties"];
    assert_eq!(properties["Namespace"], metrics::NAMESPACE);
    assert_eq!(properties["MetricName"], "CheckFailed");
    assert!(metrics::PER_ACCOUNT.contains(&"CheckFailed"));
    assert!(
        properties.get("Dimensions").is_none(),
        "the roll-up, over every account"
    );
    assert_eq!(properties["Statistic"], "Sum");
    assert_eq!(
        parameter(&template, "ScheduleExpression", &[]),
        "rate(1 day)",
        "the alarm's period is the default schedule's"
    );
    assert_eq!(properties["Period"], 86400);
    assert_eq!(properties["EvaluationPeriods"], 1);
    assert_eq!(properties["Threshold"], 0);
    assert_eq!(properties["ComparisonOperator"], "GreaterThanThreshold");
    assert_eq!(properties["TreatMissingData"], "notBreaching");
    let actions = list(&properties["AlarmActions"]);
    assert_eq!(actions.len(), 1);
    assert_is_the_findings_topic(&actions[0], "CheckFailedAlarm's action");

    let body = dashboard_body(&template, "eu-west-3");
    let widgets = assert_dashboard_plots_what_the_code_emits(&body, "eu-west-3");
    assert_eq!(widgets.len(), 5, "{:?}", widgets.keys());
    let timeout_ms = function(&template)["Timeout"].as_u64().expect("Timeout") * 1000;
    let duration = body["widgets"]
        .as_array()
        .expect("widgets")
        .iter()
        .find(|w| plotted(w).iter().any(|m| m.name == "DurationMs"))
        .expect("the duration widget");
    assert_eq!(
        duration["properties"]["annotations"]["horizontal"][0]["value"], timeout_ms,
        "the timeout line is the function's Timeout"
    );
    assert_eq!(
        tagged(&template["Outputs"]["DashboardName"]["Value"], "Ref").and_then(Value::as_str),
        Some("KeywatchDashboard")
    );
}

/// The stack's expected resources for one set of parameters: all CREATE_COMPLETE, except the types moto's
/// CloudFormation cannot create, which must be exactly `unsupported` (deploy_template.py then creates them
/// through their own API, so their properties are still checked).
fn assert_deployed(summary: &Json, complete: &[&str], unsupported: &[(&str, &str)]) {
    let problems = summary["problems"].as_array().expect("problems");
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(summary["stack_status"], "CREATE_COMPLETE");
    let resources = summary["resources"].as_object().expect("resources");
    let names: BTreeSet<&str> = resources.keys().map(String::as_str).collect();
    assert_eq!(names, complete.iter().copied().collect(), "{summary:#}");
    for (name, resource) in resources {
        assert_eq!(resource["status"], "CREATE_COMPLETE", "{name}: {resource}");
    }
    let skipped: BTreeSet<(&str, &str)> = summary["unsupported"]
        .as_object()
        .expect("unsupported")
        .iter()
        .map(|(name, kind)| (name.as_str(), kind.as_str().unwrap_or("?")))
        .collect();
    assert_eq!(
        skipped,
        unsupported.iter().copied().collect(),
        "moto 5.2.5's CloudFormation skips exactly these types; if this changed, update the list"
    );

    // Lambda holds the template's retry settings for the function (the script also compares them).
    let template = template();
    let wanted = &function(&template)["EventInvokeConfig"];
    let deployed = &summary["event_invoke_config"];
    for key in ["MaximumRetryAttempts", "MaximumEventAgeInSeconds"] {
        let wanted = wanted[key]
            .as_u64()
            .unwrap_or_else(|| panic!("template.yaml sets EventInvokeConfig.{key}"));
        assert_eq!(deployed[key].as_u64(), Some(wanted), "{key}: {deployed}");
    }

    // The deployed role grants what permissions.rs lists for the settings the deployed function reads (its
    // environment as Lambda holds it), each on its resource as deployed.
    let given: Vec<(&str, &str)> = summary["parameters"]
        .as_object()
        .expect("parameters")
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().expect("a string")))
        .collect();
    let accounts = parameter(&template, "Accounts", &given);
    let member_role = parameter(&template, "MemberRoleName", &given);
    let function = &summary["function"];
    let environment = &function["environment"];
    let deployed: Vec<(String, String)> = environment
        .as_object()
        .expect("the function's environment")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("a string").to_string()))
        .chain([("AWS_REGION".to_string(), "us-east-1".to_string())])
        .collect();
    let settings = read(&deployed)
        .unwrap_or_else(|e| panic!("the deployed function fails its init ({given:?}): {e}"));
    assert_eq!(
        Some(&settings.fleet.scope),
        scope(&accounts).ok().as_ref(),
        "{given:?}"
    );
    let scope = &settings.fleet.scope;
    let role = &summary["role"];
    let policies = role["inline_policies"]
        .as_object()
        .expect("inline policies");
    assert_eq!(policies.len(), 1, "one inline policy: {policies:?}");
    let statements = policies.values().next().expect("one")["Statement"]
        .as_array()
        .expect("statements");
    let mut granted = BTreeSet::new();
    let mut denied = BTreeSet::new();
    for statement in statements {
        if statement["Effect"] == "Deny" {
            assert_eq!(statement["Resource"], "*", "{statement}");
            let conditioned = statement.get("Condition").is_some();
            for action in statement["Action"].as_array().expect("actions") {
                denied.insert((action.as_str().expect("action").to_string(), conditioned));
            }
            continue;
        }
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        let actions: Vec<&str> = statement["Action"]
            .as_array()
            .expect("actions")
            .iter()
            .map(|a| a.as_str().expect("action"))
            .collect();
        let service = actions[0].split(':').next().expect("a service");
        assert!(
            actions
                .iter()
                .all(|a| a.starts_with(&format!("{service}:"))),
            "one service per statement: {statement}"
        );
        let wanted = match service {
            "iam" | "organizations" | "securityhub" => Json::from("*"),
            "sns" => summary["outputs"]["TopicArn"].clone(),
            "sts" => Json::from(format!("arn:aws:iam::*:role/{member_role}")),
            "sqs" if statement["Sid"] == "ConsumeIamEvents" => {
                summary["queues"]["IamEventQueue.Arn"].clone()
            }
            "sqs" => summary["queues"]["WorkQueue.Arn"].clone(),
            "dynamodb" => summary["ledger"]["arn"].clone(),
            other => panic!("no resource known for {other} actions: {statement}"),
        };
        assert!(!wanted.is_null(), "{statement}");
        assert_eq!(statement["Resource"], wanted, "{statement}");
        // The member role only in the organization's accounts, or only in the listed ones.
        let bound = match scope {
            _ if service != "sts" => Json::Null,
            Scope::Organization => serde_json::json!({"StringEquals": {
                "aws:ResourceOrgID": parameter(&template, "OrganizationId", &given),
            }}),
            Scope::Listed(_) => serde_json::json!({"StringEquals": {
                "aws:ResourceAccount": accounts.split(',').collect::<Vec<_>>(),
            }}),
            Scope::Own => panic!("no sts statement for a single account: {statement}"),
        };
        assert_eq!(
            statement.get("Condition").unwrap_or(&Json::Null),
            &bound,
            "{statement}"
        );
        granted.extend(actions.into_iter().map(str::to_string));
    }
    let event_checks = parameter(&template, "EventChecks", &given) == "true";
    assert_eq!(granted, called_for(&settings, event_checks), "{given:?}");
    let mut wanted_denied: BTreeSet<(String, bool)> = keywatch::permissions::DENIED_ACTIONS
        .iter()
        .map(|a| (a.to_string(), false))
        .collect();
    if parameter(&template, "ExemptTagKey", &given) == "keywatch:exempt" {
        wanted_denied.insert(("iam:UpdateAccessKey".to_string(), true));
    }
    assert_eq!(denied, wanted_denied, "{given:?}");
    // The dashboard as CloudWatch holds it (the script compared it with the template's): only what the code
    // emits.
    assert_dashboard_plots_what_the_code_emits(&summary["dashboard"]["body"], "us-east-1");
    assert_eq!(
        summary["outputs"]["DashboardName"],
        summary["dashboard"]["name"]
    );
    // SAM adds the basic execution role (CloudWatch Logs only) and nothing else.
    assert_eq!(
        role["managed_policy_arns_in_template"],
        serde_json::json!(["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"])
    );
    assert_eq!(summary["outputs"]["FunctionRoleArn"], role["arn"]);
    assert_deployed_topic_policy(summary, &given);
    assert_deployed_alarms(summary, scope);

    // The function's settings as Lambda holds them.
    assert_eq!(environment["ACCOUNTS"], accounts.as_str());
    assert_eq!(environment["MEMBER_ROLE_NAME"], member_role.as_str());
    for (variable, parameter_name) in [
        ("EXCLUDE_ACCOUNTS", "ExcludeAccounts"),
        ("MAX_RECEIVE_COUNT", "MaxReceiveCount"),
        ("SECURITY_HUB", "EnableSecurityHub"),
        ("REMEDIATION", "Remediation"),
        ("DEACTIVATE_AFTER_DAYS", "DeactivateAfterDays"),
        ("ALERTS", "Alerts"),
        ("REMIND_EVERY_DAYS", "RemindEveryDays"),
    ] {
        assert_eq!(
            environment[variable],
            parameter(&template, parameter_name, &given).as_str(),
            "{variable}"
        );
    }
    assert_deployed_ledger(summary, &settings);
    let all_mappings = function["event_source_mappings"]
        .as_array()
        .expect("mappings");
    // IAM's events (EventChecks): batches of 10, whatever Accounts says.
    let (events, work): (Vec<&Json>, Vec<&Json>) = all_mappings
        .iter()
        .partition(|m| m["EventSourceArn"] == summary["queues"]["IamEventQueue.Arn"]);
    let event_checks = parameter(&template, "EventChecks", &given) == "true";
    let wanted_events: Vec<Json> = if event_checks {
        vec![serde_json::json!({
            "EventSourceArn": summary["queues"]["IamEventQueue.Arn"],
            "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": { "MaximumConcurrency": 2 },
            "State": "Enabled",
        })]
    } else {
        Vec::new()
    };
    assert_eq!(
        events.into_iter().cloned().collect::<Vec<_>>(),
        wanted_events
    );
    let mappings: Vec<Json> = work.into_iter().cloned().collect();
    let mappings = &mappings;
    if *scope == Scope::Own {
        assert!(environment.get("WORK_QUEUE_URL").is_none(), "{environment}");
        assert!(mappings.is_empty(), "{mappings:?}");
        let reserved = parameter(&template, "ReservedConcurrency", &given);
        let wanted = (reserved == "1").then_some(1);
        assert_eq!(function["reserved_concurrency"].as_u64(), wanted);
    } else {
        assert_eq!(
            environment["WORK_QUEUE_URL"],
            summary["outputs"]["WorkQueueUrl"]
        );
        assert_eq!(
            summary["queues"]["WorkQueue.QueueUrl"],
            summary["outputs"]["WorkQueueUrl"]
        );
        // Never reserved: the mapping's MaximumConcurrency bounds the function.
        assert!(function["reserved_concurrency"].is_null(), "{function}");
        let concurrency: u64 = parameter(&template, "AccountConcurrency", &given)
            .parse()
            .expect("a number");
        assert_eq!(
            mappings,
            &vec![serde_json::json!({
                "EventSourceArn": summary["queues"]["WorkQueue.Arn"],
                "BatchSize": 1,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "ScalingConfig": { "MaximumConcurrency": concurrency },
                "State": "Enabled",
            })]
        );
    }
}

/// The heartbeat and the queue-age alarms as CloudWatch holds them (deploy_template.py compared every alarm
/// with the template's resolved properties): the heartbeat always, on the metric the code writes, breaching
/// when missing; the queue age only with a work queue, on that queue. Both notify the deployed topic.
fn assert_deployed_alarms(summary: &Json, scope: &Scope) {
    let alarms = summary["alarms"].as_object().expect("the alarms");
    let topic = &summary["outputs"]["TopicArn"];
    let heartbeat = &alarms["HeartbeatAlarm"];
    assert_eq!(heartbeat["Namespace"], metrics::NAMESPACE, "{heartbeat}");
    assert_eq!(heartbeat["MetricName"], metrics::CHECKS_COMPLETED);
    assert_eq!(
        heartbeat["Dimensions"],
        serde_json::json!([]),
        "the roll-up"
    );
    assert_eq!(heartbeat["TreatMissingData"], "breaching");
    assert_eq!(heartbeat["AlarmActions"], serde_json::json!([topic]));
    match (scope, alarms.get("WorkQueueAgeAlarm")) {
        (Scope::Own, None) => {}
        (Scope::Own, Some(age)) => panic!("a queue-age alarm without a work queue: {age}"),
        (_, None) => panic!("no queue-age alarm on the work queue: {alarms:?}"),
        (_, Some(age)) => {
            assert_eq!(age["Namespace"], "AWS/SQS");
            assert_eq!(age["MetricName"], "ApproximateAgeOfOldestMessage");
            assert_eq!(
                age["Dimensions"],
                serde_json::json!([{
                    "Name": "QueueName",
                    "Value": summary["queues"]["WorkQueue.QueueName"],
                }])
            );
            assert_eq!(age["AlarmActions"], serde_json::json!([topic]));
        }
    }
}

/// The topic's policy as SNS holds it (deploy_template.py set it with SetTopicAttributes, from the template's
/// resolved document, and compared the two): on the created topic only, denying every action without TLS,
/// letting publish only the deployed function role, this account's root and this account's CloudWatch alarms.
/// None on an existing topic, which is not the stack's to change.
fn assert_deployed_topic_policy(summary: &Json, given: &[(&str, &str)]) {
    let policy = &summary["topic_policy"];
    if given
        .iter()
        .any(|(k, v)| *k == "ExistingTopicArn" && !v.is_empty())
    {
        assert!(policy.is_null(), "{policy}");
        return;
    }
    let topic = &summary["outputs"]["TopicArn"];
    let account = "123456789012";
    let statements = policy["Statement"].as_array().expect("the topic's policy");
    let mut allowed = BTreeSet::new();
    for statement in statements {
        assert_eq!(&statement["Resource"], topic, "{statement}");
        if statement["Effect"] == "Deny" {
            assert_eq!(statement["Principal"], "*");
            assert_eq!(
                statement["Condition"],
                serde_json::json!({ "Bool": { "aws:SecureTransport": "false" } })
            );
            assert_eq!(statement["Action"], serde_json::json!(TOPIC_POLICY_ACTIONS));
            continue;
        }
        assert_eq!(statement["Action"], "sns:Publish", "{statement}");
        allowed.insert((
            statement["Principal"].to_string(),
            statement.get("Condition").map(Json::to_string),
        ));
    }
    let wanted: BTreeSet<(String, Option<String>)> = [
        (serde_json::json!({ "AWS": summary["role"]["arn"] }), None),
        (
            serde_json::json!({ "AWS": format!("arn:aws:iam::{account}:root") }),
            None,
        ),
        (
            serde_json::json!({ "Service": "cloudwatch.amazonaws.com" }),
            Some(serde_json::json!({ "StringEquals": { "aws:SourceAccount": account } })),
        ),
    ]
    .into_iter()
    .map(|(p, c)| (p.to_string(), c.map(|c| c.to_string())))
    .collect();
    assert_eq!(allowed, wanted, "{policy}");
}

/// The ledger as deployed: the function's `LEDGER_TABLE` (read by the code) is the table the stack created
/// and outputs, and the one its role's ledger statement names; DynamoDB holds it keyed, billed and with TTL and
/// point-in-time recovery as the template says. moto 5.2.5's CloudFormation drops the TTL and point-in-time
/// recovery properties (deploy_template.py applies them through DynamoDB's API from the template's own
/// resolved properties, then reads them back) and keeps SSE where DescribeTable cannot show it: this lists
/// exactly those, so a moto that starts keeping them is noticed.
fn assert_deployed_ledger(summary: &Json, settings: &Settings) {
    let ledger = &summary["ledger"];
    let name = ledger["name"].as_str().expect("the ledger's name");
    assert_eq!(settings.ledger_table.as_deref(), Some(name), "{ledger}");
    assert_eq!(summary["function"]["environment"]["LEDGER_TABLE"], name);
    assert_eq!(summary["outputs"]["LedgerTableName"], name);
    assert_eq!(summary["resources"]["Ledger"]["physical_id"], name);
    assert_eq!(
        ledger["arn"],
        format!("arn:aws:dynamodb:us-east-1:123456789012:table/{name}")
    );
    let statements = summary["role"]["inline_policies"]
        .as_object()
        .and_then(|p| p.values().next())
        .expect("the inline policy")["Statement"]
        .as_array()
        .expect("statements");
    let ledger_statement = statements
        .iter()
        .find(|s| s["Action"] == serde_json::json!(LEDGER_ACTIONS))
        .unwrap_or_else(|| panic!("a statement of exactly {LEDGER_ACTIONS:?}: {statements:?}"));
    assert_eq!(ledger_statement["Resource"], ledger["arn"]);
    assert_eq!(
        ledger["key_schema"],
        serde_json::json!([
            { "AttributeName": "account_id", "KeyType": "HASH" },
            { "AttributeName": "access_key_id", "KeyType": "RANGE" },
        ])
    );
    assert_eq!(
        ledger["attribute_definitions"],
        serde_json::json!([
            { "AttributeName": "access_key_id", "AttributeType": "S" },
            { "AttributeName": "account_id", "AttributeType": "S" },
        ])
    );
    assert_eq!(ledger["billing_mode"], "PAY_PER_REQUEST");
    assert_eq!(
        ledger["time_to_live"],
        serde_json::json!({ "TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at" })
    );
    assert_eq!(ledger["point_in_time_recovery"], "ENABLED");
    assert_eq!(
        ledger["applied_by_api"],
        serde_json::json!([
            "TimeToLiveSpecification",
            "PointInTimeRecoverySpecification"
        ]),
        "moto 5.2.5's CloudFormation drops exactly these; if this changed, update the list"
    );
    assert_eq!(
        ledger["not_kept_by_moto"],
        serde_json::json!(["SSESpecification"]),
        "moto 5.2.5 shows no SSEDescription for a table CloudFormation created; if it does now, the script \
         compares it and this list shrinks"
    );
    assert!(ledger["sse"].is_null(), "{ledger}");
}

const SINGLE_ACCOUNT: [&str; 9] = [
    "TopicKey",
    "FindingsTopic",
    "KeywatchLogs",
    "KeywatchDashboard",
    "KeywatchFunction",
    "KeywatchFunctionRole",
    "KeywatchFunctionSchedule",
    "KeywatchFunctionSchedulePermission",
    "Ledger",
];

/// What `EventChecks=true` (the default) adds: the rule, the event queue, its dead-letter queue and the mapping,
/// created by moto's CloudFormation; the queue's policy and the dead-letter alarm, through their own APIs.
const EVENT_CHECKS: [&str; 4] = [
    "IamEventRule",
    "IamEventQueue",
    "IamEventDeadLetterQueue",
    "IamEventMapping",
];
const EVENT_CHECKS_SKIPPED: [(&str, &str); 2] = [
    ("IamEventQueuePolicy", "AWS::SQS::QueuePolicy"),
    ("IamEventDeadLetterAlarm", "AWS::CloudWatch::Alarm"),
];

/// `base` and what event checks add to it.
fn with_events<T: Copy>(base: &[T], events: &[T]) -> Vec<T> {
    base.iter().chain(events).copied().collect()
}

const ALARM: (&str, &str) = ("KeywatchErrorsAlarm", "AWS::CloudWatch::Alarm");
const TOPIC_POLICY: (&str, &str) = ("FindingsTopicPolicy", "AWS::SNS::TopicPolicy");
const HEARTBEAT: (&str, &str) = ("HeartbeatAlarm", "AWS::CloudWatch::Alarm");
const INVOKE_CONFIG: (&str, &str) = (
    "KeywatchFunctionEventInvokeConfig",
    "AWS::Lambda::EventInvokeConfig",
);

#[tokio::test]
async fn template_deploys_on_moto() {
    let moto = Moto::start();

    // Defaults: a new KMS-encrypted topic, no email subscription, this account only.
    let summary = deploy_template(&moto, "keywatch", &[]);
    assert_deployed(
        &summary,
        &with_events(&SINGLE_ACCOUNT, &EVENT_CHECKS),
        &with_events(
            &[ALARM, HEARTBEAT, INVOKE_CONFIG, TOPIC_POLICY],
            &EVENT_CHECKS_SKIPPED,
        ),
    );

    // Deleting the stack deletes the function and the topic, and keeps the ledger (DeletionPolicy: Retain,
    // which moto's CloudFormation honours), with its items.
    let table = summary["ledger"]["name"]
        .as_str()
        .expect("the ledger's name");
    let dynamodb = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    dynamodb
        .put_item()
        .table_name(table)
        .item("account_id", AttributeValue::S("123456789012".into()))
        .item(
            "access_key_id",
            AttributeValue::S("AKIAIOSFODNN7EXAMPLE".into()),
        )
        .send()
        .await
        .expect("an item in the ledger");
    let left = delete_stack(&moto, "keywatch");
    assert_eq!(left["stacks"], serde_json::json!([]), "{left}");
    assert_eq!(left["functions"], serde_json::json!([]), "{left}");
    assert_eq!(left["topics"], serde_json::json!([]), "{left}");
    assert_eq!(left["tables"], serde_json::json!([table]), "{left}");
    let items = support::ledger::LedgerTable::open(&moto.sdk_config().await, table)
        .raw()
        .await;
    assert_eq!(items.len(), 1, "the retained ledger keeps its items");

    // An existing topic and an email subscriber: no topic or key is created.
    let existing = moto
        .account()
        .await
        .sns
        .create_topic()
        .name("existing-alerts")
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("arn");
    let summary = deploy_template(
        &moto,
        "keywatch-existing",
        &[
            ("ExistingTopicArn", &existing),
            ("AlertEmail", "security@example.com"),
            ("ReservedConcurrency", "0"),
            // No rule, queue or mapping for IAM's events.
            ("EventChecks", "false"),
        ],
    );
    assert_eq!(summary["outputs"]["TopicArn"], existing.as_str());
    assert_deployed(
        &summary,
        &SINGLE_ACCOUNT[2..],
        &[
            ALARM,
            HEARTBEAT,
            ("EmailSubscription", "AWS::SNS::Subscription"),
            INVOKE_CONFIG,
        ],
    );
}

/// Deletes a stack on moto and returns what is left: the stacks, Lambda functions, SNS topics and DynamoDB
/// tables of the account.
fn delete_stack(moto: &Moto, stack_name: &str) -> Json {
    let script = r#"
import json, sys, boto3
def client(service):
    return boto3.client(service, endpoint_url=sys.argv[1], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")
client("cloudformation").delete_stack(StackName=sys.argv[2])
stacks = client("cloudformation").list_stacks()["StackSummaries"]
print(json.dumps({
    "stacks": [s["StackName"] for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"],
    "functions": [f["FunctionName"] for f in client("lambda").list_functions()["Functions"]],
    "topics": [t["TopicArn"] for t in client("sns").list_topics()["Topics"]],
    "tables": client("dynamodb").list_tables()["TableNames"],
}))
"#;
    let output = std::process::Command::new(venv_tool("python"))
        .args(["-c", script, &moto.endpoint, stack_name])
        .output()
        .expect("run python");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("a JSON summary")
}

/// `Accounts=organization` and a list: the work queue, its dead-letter queue and the mapping are created,
/// the DLQ alarm notifies the findings topic, and the role gains exactly the organization's actions (no
/// ListAccounts for a list), each on its resource. No reserved concurrency, even when asked for.
#[tokio::test]
async fn template_for_accounts_deploys_on_moto() {
    let moto = Moto::start();
    let fleet: Vec<&str> = SINGLE_ACCOUNT
        .iter()
        .copied()
        .chain(["WorkQueue", "WorkDeadLetterQueue", "WorkQueueMapping"])
        .chain(EVENT_CHECKS)
        .collect();
    let dead_letter_alarm = ("WorkDeadLetterAlarm", "AWS::CloudWatch::Alarm");
    let queue_policy = ("WorkQueuePolicy", "AWS::SQS::QueuePolicy");
    let failed_alarm = ("CheckFailedAlarm", "AWS::CloudWatch::Alarm");
    // What moto's CloudFormation skips for these stacks (deploy_template.py creates them through their APIs).
    let skipped = [
        ALARM,
        HEARTBEAT,
        ("WorkQueueAgeAlarm", "AWS::CloudWatch::Alarm"),
        dead_letter_alarm,
        failed_alarm,
        queue_policy,
        INVOKE_CONFIG,
        TOPIC_POLICY,
        EVENT_CHECKS_SKIPPED[0],
        EVENT_CHECKS_SKIPPED[1],
    ];

    // As CloudFormation, the deploy refuses an organization without its ID, naming the rule.
    let output = std::process::Command::new(venv_tool("python"))
        .arg(project_dir().join("tools/deploy_template.py"))
        .args([
            "--endpoint",
            &moto.endpoint,
            "--stack-name",
            "keywatch-no-org-id",
        ])
        .args(["--parameter", "Accounts=organization"])
        .output()
        .expect("run tools/deploy_template.py");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains("OrganizationIdForOrganization: Accounts=organization needs OrganizationId"),
        "{stderr}"
    );

    let summary = deploy_template(
        &moto,
        "keywatch-org",
        &[
            ("Accounts", "organization"),
            ("OrganizationId", "o-a1b2c3d4e5"),
        ],
    );
    // An organization's members forward their IAM events to this account's bus.
    let bus_policy = ("OrganizationEventBusPolicy", "AWS::Events::EventBusPolicy");
    assert_deployed(&summary, &fleet, &with_events(&skipped, &[bus_policy]));

    let summary = deploy_template(
        &moto,
        "keywatch-list",
        &[
            ("Accounts", "111111111111,222222222222"),
            ("ExcludeAccounts", "222222222222"),
            ("MemberRoleName", "security/keywatch-member"),
            ("AccountConcurrency", "25"),
            ("MaxReceiveCount", "5"),
            ("ReservedConcurrency", "1"),
            ("EnableSecurityHub", "true"),
            ("Remediation", "deactivate"),
            ("DeactivateAfterDays", "30"),
        ],
    );
    assert_deployed(&summary, &fleet, &skipped);
}

/// `EnableSecurityHub=true` and `Remediation=deactivate` for a single account: the role gains exactly Security
/// Hub's two actions and `iam:UpdateAccessKey`, on `*`, and the function reads the settings the parameters
/// give (assert_deployed compares the deployed policy with the code for the deployed environment).
#[tokio::test]
async fn template_with_security_hub_and_remediation_deploys_on_moto() {
    let moto = Moto::start();
    let summary = deploy_template(
        &moto,
        "keywatch-features",
        &[
            ("EnableSecurityHub", "true"),
            ("Remediation", "deactivate"),
            ("DeactivateAfterDays", "0"),
        ],
    );
    assert_deployed(
        &summary,
        &with_events(&SINGLE_ACCOUNT, &EVENT_CHECKS),
        &with_events(
            &[ALARM, HEARTBEAT, INVOKE_CONFIG, TOPIC_POLICY],
            &EVENT_CHECKS_SKIPPED,
        ),
    );
    let statements = summary["role"]["inline_policies"]
        .as_object()
        .and_then(|p| p.values().next())
        .expect("the inline policy")["Statement"]
        .as_array()
        .expect("statements")
        .clone();
    for list in [SECURITY_HUB_ACTIONS, REMEDIATION_ACTIONS] {
        let wanted: Vec<&str> = list.to_vec();
        let statement = statements
            .iter()
            .find(|s| s["Action"] == serde_json::json!(wanted))
            .unwrap_or_else(|| panic!("a statement of exactly {wanted:?}: {statements:?}"));
        assert_eq!(statement["Resource"], "*");
    }
}

/// The statement of `list` under the template condition `name`.
fn grant_under<'a>(grants: &[Grant<'a>], list: &[&str], name: &str) -> &'a Value {
    grants
        .iter()
        .find(|g| {
            g.condition == Some(name) && actions(g.statement).iter().any(|a| list.contains(a))
        })
        .unwrap_or_else(|| panic!("no statement of {list:?} under {name}"))
        .statement
}

/// `sts:AssumeRole` reaches only the organization's accounts (`aws:ResourceOrgID` equal to the `OrganizationId`
/// parameter) or only the listed accounts (`aws:ResourceAccount` equal to `Accounts` split on its commas, which
/// are the accounts the code checks), and exactly one of the two exists whenever the code leaves its account.
#[test]
fn assume_role_is_bound_to_the_organization_or_the_listed_accounts() {
    let template = template();
    let grants = grants(&template);
    let organization = grant_under(&grants, MEMBER_ROLE_ACTIONS, "ListOrganization");
    let org_id = &organization["Condition"]["StringEquals"]["aws:ResourceOrgID"];
    assert_eq!(
        tagged(org_id, "Ref").and_then(Value::as_str),
        Some("OrganizationId"),
        "{organization:?}"
    );
    let listed = grant_under(&grants, MEMBER_ROLE_ACTIONS, "CheckListedAccounts");
    let split = list(
        tagged(
            &listed["Condition"]["StringEquals"]["aws:ResourceAccount"],
            "Split",
        )
        .unwrap_or_else(|| panic!("aws:ResourceAccount is !Split: {listed:?}")),
    );
    assert_eq!(split[0], ",", "{listed:?}");
    assert_eq!(
        tagged(&split[1], "Ref").and_then(Value::as_str),
        Some("Accounts")
    );
    for accounts in ACCOUNTS.iter().copied().chain(["111111111111"]) {
        let given = [("Accounts", accounts)];
        let scope = scope(accounts).unwrap_or_else(|e| panic!("ACCOUNTS={accounts}: {e}"));
        let in_organization = condition(&template, "ListOrganization", &given);
        let in_list = condition(&template, "CheckListedAccounts", &given);
        assert!(!(in_organization && in_list), "{accounts}");
        assert_eq!(
            in_organization || in_list,
            scope != Scope::Own,
            "{accounts}"
        );
        if let Scope::Listed(checked) = &scope {
            assert!(in_list, "{accounts}");
            let mut resource_accounts: Vec<String> = parameter(&template, "Accounts", &given)
                .split(',')
                .map(str::to_string)
                .collect();
            resource_accounts.sort();
            let mut checked = checked.clone();
            checked.sort();
            assert_eq!(
                resource_accounts, checked,
                "exactly the accounts the code checks"
            );
        }
    }
}

/// `Accounts=organization` cannot deploy without the organization's ID (a rule CloudFormation checks before it
/// creates anything), and the ID has the organization ID's shape.
#[test]
fn organization_id_is_required_for_an_organization_and_validated() {
    let template = template();
    let rule = &template["Rules"]["OrganizationIdForOrganization"];
    let assertions = list(&rule["Assertions"]);
    assert_eq!(assertions.len(), 1);
    let passes = |given: &[(&str, &str)]| {
        !holds(&template, &rule["RuleCondition"], given)
            || holds(&template, &assertions[0]["Assert"], given)
    };
    let org_id = "o-a1b2c3d4e5";
    assert!(!passes(&[("Accounts", "organization")]));
    assert!(passes(&[
        ("Accounts", "organization"),
        ("OrganizationId", org_id)
    ]));
    assert!(passes(&[("Accounts", "self")]));
    assert!(passes(&[("Accounts", "111111111111,222222222222")]));
    assert!(assertions[0]["AssertDescription"]
        .as_str()
        .is_some_and(|d| d.contains("OrganizationId")));

    let pattern = template["Parameters"]["OrganizationId"]["AllowedPattern"]
        .as_str()
        .expect("OrganizationId has an AllowedPattern");
    let accepted = ["", "o-a1b2c3d4e5", &format!("o-{}", "a".repeat(32))];
    let rejected = [
        "o-a1b2c3d4e",
        "O-A1B2C3D4E5",
        "r-a1b2c3d4e5",
        "o-a1b2c3d4e5 ",
        &format!("o-{}", "a".repeat(33)),
    ];
    let values: Vec<&str> = accepted
        .iter()
        .chain(rejected.iter())
        .map(|v| v.as_ref())
        .collect();
    for (value, matched) in values.iter().zip(full_matches(pattern, &values)) {
        assert_eq!(
            matched,
            accepted.contains(value),
            "OrganizationId {value:?}"
        );
    }
}

/// Whether an IAM `Condition` block holds for a request whose only context key is `key`, present with `value`
/// or absent: the operators these templates use, as IAM evaluates them (a negated operator holds when the key
/// is absent).
fn iam_condition_holds(block: &Value, key: &str, value: Option<&str>) -> bool {
    fn like(pattern: &[u8], text: &[u8]) -> bool {
        match (pattern.first(), text.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                like(&pattern[1..], text) || (!text.is_empty() && like(pattern, &text[1..]))
            }
            (Some(b'?'), Some(_)) => like(&pattern[1..], &text[1..]),
            (Some(p), Some(t)) if p == t => like(&pattern[1..], &text[1..]),
            _ => false,
        }
    }
    let block = block.as_mapping().expect("a Condition block");
    block.iter().all(|(operator, keys)| {
        let keys = keys.as_mapping().expect("condition keys");
        assert_eq!(keys.len(), 1, "{keys:?}");
        let (named, wanted) = keys.iter().next().expect("a key");
        assert_eq!(named.as_str(), Some(key));
        let wanted: Vec<&str> = match wanted {
            Value::String(s) => vec![s.as_str()],
            Value::Sequence(items) => items
                .iter()
                .map(|i| i.as_str().expect("a string"))
                .collect(),
            other => panic!("a condition value is a string or a list: {other:?}"),
        };
        match (operator.as_str().expect("an operator"), value) {
            ("Null", _) => {
                assert_eq!(wanted, ["false"], "Null: false (the key is present)");
                value.is_some()
            }
            ("StringNotEqualsIgnoreCase" | "StringNotLike", None) => true,
            ("StringNotEqualsIgnoreCase", Some(v)) => {
                wanted.iter().all(|w| !w.eq_ignore_ascii_case(v))
            }
            ("StringNotLike", Some(v)) => wanted.iter().all(|w| !like(w.as_bytes(), v.as_bytes())),
            (other, _) => panic!("this proof does not evaluate {other}"),
        }
    })
}

/// Every IAM action that creates, changes or deletes a user or one of its credentials (password, access key,
/// service-specific credential, SSH public key, signing certificate), except `iam:UpdateAccessKey`, which
/// remediation needs: what the roles' unconditioned deny claims to cover. Written out here, not read from
/// `DENIED_ACTIONS`, so dropping one from both the code and the templates still fails.
const NEVER_CALLED: [&str; 13] = [
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

/// Both roles deny, with no condition, exactly the actions keywatch never calls (creating, changing or
/// deleting users and their credentials: [`NEVER_CALLED`]), and deny `iam:UpdateAccessKey` on users exempt for good. That deny is keyed on
/// `aws:ResourceTag/<tag>` for the tag the function reads as `EXEMPT_TAG_KEY` (the `ExemptTagKey` parameter),
/// exists exactly when the parameter is that tag, and, evaluated as IAM does over tag values, denies only
/// where the code's own reading of the tag exempts the user now and forever: an expired date, `false` or no
/// tag leaves the key deactivatable. moto cannot evaluate these condition keys (tests/least_privilege.rs
/// leaves the conditioned deny out of its runs, and says so), so this is their proof.
#[test]
fn both_roles_deny_creating_and_deleting_credentials_and_touching_users_exempt_for_good() {
    use keywatch::evaluate::exemption::{read_tag, TagExemption};
    use keywatch::permissions::DENIED_ACTIONS;
    let template = template();
    let member = member_template();
    let variables = &function(&template)["Environment"]["Variables"];
    assert_eq!(
        tagged(&variables["EXEMPT_TAG_KEY"], "Ref").and_then(Value::as_str),
        Some("ExemptTagKey")
    );
    let default_key = parameter(&template, "ExemptTagKey", &[]);
    assert_eq!(parameter(&member, "ExemptTagKey", &[]), default_key);
    let denied: BTreeSet<&str> = DENIED_ACTIONS.iter().copied().collect();
    assert_eq!(
        denied,
        NEVER_CALLED.into_iter().collect(),
        "DENIED_ACTIONS is every create, change and delete of a user or its credentials"
    );
    assert!(
        denied.is_disjoint(&every_listed()),
        "a denied action is never called"
    );

    for (file, doc, denials) in [
        ("template.yaml", &template, denials(&template)),
        ("member-role.yaml", &member, member_denials(&member)),
    ] {
        let (plain, conditioned): (Vec<_>, Vec<_>) = denials
            .iter()
            .partition(|g| g.statement.get("Condition").is_none());
        assert_eq!(plain.len(), 1, "{file}: one unconditioned deny");
        let statement = plain[0].statement;
        assert_eq!(plain[0].condition, None, "{file}: always");
        assert_eq!(statement["Resource"], "*", "{file}");
        let never: BTreeSet<&str> = actions(statement).into_iter().collect();
        assert_eq!(never, denied, "{file}: exactly DENIED_ACTIONS");

        assert_eq!(conditioned.len(), 1, "{file}: one conditioned deny");
        let grant = conditioned[0];
        let statement = grant.statement;
        assert_eq!(actions(statement), REMEDIATION_ACTIONS, "{file}");
        assert_eq!(statement["Resource"], "*", "{file}");
        let block = &statement["Condition"];
        let keys: BTreeSet<&str> = block
            .as_mapping()
            .expect("a Condition")
            .values()
            .flat_map(|keys| keys.as_mapping().expect("keys").keys())
            .map(|k| k.as_str().expect("a key"))
            .collect();
        assert_eq!(keys.len(), 1, "{file}: one condition key: {keys:?}");
        let key = *keys.first().expect("a key");
        let tag = key
            .strip_prefix("aws:ResourceTag/")
            .unwrap_or_else(|| panic!("{file}: keyed on the user's tag, found {key}"));
        assert_eq!(
            tag, default_key,
            "{file}: the tag EXEMPT_TAG_KEY names by default"
        );
        let name = grant
            .condition
            .unwrap_or_else(|| panic!("{file}: only for its tag key"));
        assert!(condition(doc, name, &[("ExemptTagKey", tag)]), "{file}");
        for other in ["owner", "", "keywatch:Exempt"] {
            assert!(
                !condition(doc, name, &[("ExemptTagKey", other)]),
                "{file}: with ExemptTagKey={other:?} the deny would key on a tag the code does not read"
            );
        }

        let now = time::OffsetDateTime::now_utc();
        let forever = now + time::Duration::days(365 * 200);
        let exempt_forever = |value: &str| {
            [now, forever]
                .into_iter()
                .all(|at| matches!(read_tag(tag, value, at), TagExemption::Exempt(_)))
        };
        let samples = [
            "",
            "SEC-1234",
            "true",
            "yes",
            "ticket 42",
            "false",
            "FALSE",
            "False",
            " false ",
            "2099-01-01",
            "1999-01-01",
            "2026-02-30",
            " SEC-1",
            "until 2099-01-01",
        ];
        for value in samples {
            let denies = iam_condition_holds(block, key, Some(value));
            if denies {
                assert!(
                    exempt_forever(value),
                    "{file}: IAM denies deactivating a key of a user tagged {value:?}, which the code may deactivate"
                );
            }
        }
        for value in ["", "SEC-1234", "true", "yes", "ticket 42"] {
            assert!(
                iam_condition_holds(block, key, Some(value)),
                "{file}: {value:?} is exempt for good"
            );
        }
        assert!(
            !iam_condition_holds(block, key, None),
            "{file}: an untagged user"
        );
    }
}

/// The work queue takes messages only from the function's role: a `Deny` of `sqs:SendMessage` to every other
/// principal, which holds even against a principal of this account whose own policy allows sending.
#[test]
fn only_the_function_role_may_send_work() {
    let template = template();
    let policy = &template["Resources"]["WorkQueuePolicy"];
    assert_eq!(policy["Type"], "AWS::SQS::QueuePolicy");
    assert_eq!(policy["Condition"], "CheckAccounts");
    let queues = list(&policy["Properties"]["Queues"]);
    assert_eq!(queues.len(), 1);
    assert_eq!(
        tagged(&queues[0], "Ref").and_then(Value::as_str),
        Some("WorkQueue")
    );
    let statements = list(&policy["Properties"]["PolicyDocument"]["Statement"]);
    assert_eq!(statements.len(), 1, "{statements:?}");
    let statement = &statements[0];
    assert_eq!(statement["Effect"], "Deny");
    assert_eq!(statement["Principal"], "*");
    assert_eq!(
        actions(statement),
        QUEUE_SEND_ACTIONS,
        "SendMessageBatch is authorized as SendMessage"
    );
    assert_eq!(
        tagged(&statement["Resource"], "GetAtt").and_then(Value::as_str),
        Some("WorkQueue.Arn")
    );
    assert_eq!(
        tagged(
            &statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"],
            "GetAtt"
        )
        .and_then(Value::as_str),
        Some("KeywatchFunctionRole.Arn"),
        "{statement:?}"
    );
    assert_eq!(
        statement["Condition"].as_mapping().map(|m| m.len()),
        Some(1),
        "{statement:?}"
    );
}

/// Every action an SNS topic policy can name (Amazon SNS API permissions reference, "Valid Amazon SNS policy
/// actions"): what the topic's TLS deny must cover to deny every action without TLS.
const TOPIC_POLICY_ACTIONS: [&str; 11] = [
    "sns:AddPermission",
    "sns:DeleteTopic",
    "sns:GetDataProtectionPolicy",
    "sns:GetTopicAttributes",
    "sns:ListSubscriptionsByTopic",
    "sns:ListTagsForResource",
    "sns:Publish",
    "sns:PutDataProtectionPolicy",
    "sns:RemovePermission",
    "sns:SetTopicAttributes",
    "sns:Subscribe",
];

/// `!Ref FindingsTopic`.
fn is_the_created_topic(value: &Value) -> bool {
    tagged(value, "Ref").and_then(Value::as_str) == Some("FindingsTopic")
}

/// The topic the template creates has a policy of its own: every action is denied without TLS, and only the
/// function's role, this account's CloudWatch alarms (`aws:SourceAccount`) and this account's root may publish;
/// nothing else is allowed at all. The KMS key lets CloudWatch use it only for this account's alarms too.
/// moto's CloudFormation cannot create `AWS::SNS::TopicPolicy` and moto's SNS never evaluates a topic policy,
/// so this is the proof of its statements; the deployed tests check SNS holds exactly this document.
#[test]
fn the_topic_lets_only_the_function_its_alarms_and_its_account_publish_and_only_over_tls() {
    let template = template();
    let resources = &template["Resources"];
    let policy = &resources["FindingsTopicPolicy"];
    assert_eq!(policy["Type"], "AWS::SNS::TopicPolicy");
    assert_eq!(
        policy["Condition"], resources["FindingsTopic"]["Condition"],
        "exactly when the topic is created"
    );
    let topics = list(&policy["Properties"]["Topics"]);
    assert!(
        topics.len() == 1 && is_the_created_topic(&topics[0]),
        "{topics:?}"
    );
    let document = &policy["Properties"]["PolicyDocument"];
    assert_eq!(document["Version"], "2012-10-17");
    let statements = list(&document["Statement"]);
    for statement in statements {
        assert!(
            is_the_created_topic(&statement["Resource"]),
            "on the topic only: {statement:?}"
        );
    }

    let (denies, allows): (Vec<&Value>, Vec<&Value>) =
        statements.iter().partition(|s| s["Effect"] == "Deny");
    assert_eq!(denies.len(), 1, "one deny: {denies:?}");
    let deny = denies[0];
    assert_eq!(deny["Principal"], "*", "{deny:?}");
    let denied: BTreeSet<&str> = actions(deny).into_iter().collect();
    assert_eq!(
        denied,
        TOPIC_POLICY_ACTIONS.into_iter().collect(),
        "every topic action"
    );
    assert_eq!(
        deny["Condition"],
        serde_yaml_ng::from_str::<Value>(r#"{ Bool: { "aws:SecureTransport": "false" } }"#)
            .expect("yaml"),
        "denied exactly when the request is not over TLS"
    );

    // Each allow: sns:Publish alone, to one principal.
    let mut principals: Vec<((String, &Value), Option<&Value>)> = Vec::new();
    for allow in &allows {
        assert_eq!(allow["Effect"], "Allow", "{allow:?}");
        assert_eq!(actions(allow), SNS_ACTIONS, "only publishing: {allow:?}");
        let principal = allow["Principal"].as_mapping().expect("a principal");
        assert_eq!(principal.len(), 1, "{allow:?}");
        let (kind, who) = principal.iter().next().expect("one");
        principals.push((
            (kind.as_str().expect("AWS or Service").to_string(), who),
            allow.get("Condition"),
        ));
    }
    assert_eq!(principals.len(), 3, "{principals:?}");
    let role = principals
        .iter()
        .find(|((kind, who), _)| {
            kind == "AWS"
                && tagged(who, "GetAtt").and_then(Value::as_str) == Some("KeywatchFunctionRole.Arn")
        })
        .expect("the function's role publishes");
    assert!(role.1.is_none(), "{role:?}");
    let root = principals
        .iter()
        .find(|((kind, who), _)| {
            kind == "AWS"
                && tagged(who, "Sub").and_then(Value::as_str)
                    == Some("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")
        })
        .expect("this account (its root) publishes");
    assert!(root.1.is_none(), "{root:?}");
    let alarms = principals
        .iter()
        .find(|((kind, who), _)| {
            kind == "Service" && who.as_str() == Some("cloudwatch.amazonaws.com")
        })
        .expect("CloudWatch alarms publish");
    let source_account = serde_yaml_ng::from_str::<Value>(
        r#"{ StringEquals: { "aws:SourceAccount": !Ref AWS::AccountId } }"#,
    )
    .expect("yaml");
    assert_eq!(
        alarms.1,
        Some(&source_account),
        "only this account's alarms"
    );
    // Every alarm of the stack notifies this topic (or the existing one), so CloudWatch is the one service that
    // needs to publish.
    for (name, resource) in resources.as_mapping().expect("resources") {
        if resource["Type"] == "AWS::CloudWatch::Alarm" {
            let actions = list(&resource["Properties"]["AlarmActions"]);
            assert_eq!(actions.len(), 1, "{name:?}");
            assert_is_the_findings_topic(&actions[0], &format!("{name:?}'s action"));
        }
    }

    // The key: CloudWatch may use it only for this account's alarms.
    let key_statements = list(&resources["TopicKey"]["Properties"]["KeyPolicy"]["Statement"]);
    let cloudwatch: Vec<&Value> = key_statements
        .iter()
        .filter(|s| s["Principal"]["Service"] == "cloudwatch.amazonaws.com")
        .collect();
    assert_eq!(cloudwatch.len(), 1, "{key_statements:?}");
    assert_eq!(cloudwatch[0]["Condition"], source_account, "{cloudwatch:?}");
}

/// Seconds between runs of an EventBridge `rate(N unit)` expression.
fn rate_seconds(expression: &str) -> i64 {
    let inner = expression
        .strip_prefix("rate(")
        .and_then(|e| e.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a rate() expression: {expression}"));
    let (value, unit) = inner.split_once(' ').expect("rate(N unit)");
    let value: i64 = value.parse().expect("a number");
    let unit = match unit.trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        other => panic!("unknown rate unit {other}"),
    };
    value * unit
}

/// A metric alarm as template.yaml defines it: what CloudWatch evaluates.
#[derive(Debug)]
struct AlarmDefinition {
    namespace: String,
    metric: String,
    dimensions: Vec<String>,
    statistic: String,
    period: i64,
    evaluation_periods: i64,
    datapoints_to_alarm: i64,
    threshold: f64,
    comparison: String,
    treat_missing_data: String,
}

fn alarm_definition(template: &Value, name: &str) -> AlarmDefinition {
    let alarm = &template["Resources"][name];
    assert_eq!(alarm["Type"], "AWS::CloudWatch::Alarm", "{name}");
    let p = &alarm["Properties"];
    let text = |key: &str| {
        p[key]
            .as_str()
            .unwrap_or_else(|| panic!("{name}.{key} is a literal string: {:?}", p[key]))
            .to_string()
    };
    let number = |key: &str| {
        p[key]
            .as_i64()
            .unwrap_or_else(|| panic!("{name}.{key} is a literal number: {:?}", p[key]))
    };
    let evaluation_periods = number("EvaluationPeriods");
    AlarmDefinition {
        namespace: text("Namespace"),
        metric: text("MetricName"),
        dimensions: p
            .get("Dimensions")
            .map(|d| {
                list(d)
                    .iter()
                    .map(|d| d["Name"].as_str().expect("a name").to_string())
                    .collect()
            })
            .unwrap_or_default(),
        statistic: text("Statistic"),
        period: number("Period"),
        evaluation_periods,
        // CloudWatch's default: every evaluated period must breach.
        datapoints_to_alarm: p
            .get("DatapointsToAlarm")
            .map_or(evaluation_periods, |_| number("DatapointsToAlarm")),
        threshold: p["Threshold"].as_f64().expect("a Threshold"),
        comparison: text("ComparisonOperator"),
        treat_missing_data: text("TreatMissingData"),
    }
}

/// The datapoints (epoch milliseconds, value) CloudWatch would extract from Embedded Metric Format lines for
/// this alarm's metric: the lines whose directives declare it in the alarm's namespace under exactly the
/// alarm's dimension set.
fn datapoints(lines: &[Json], alarm: &AlarmDefinition) -> Vec<(i64, f64)> {
    let dimensions = serde_json::json!(alarm.dimensions);
    lines
        .iter()
        .filter(|line| {
            line["_aws"]["CloudWatchMetrics"]
                .as_array()
                .expect("directives")
                .iter()
                .any(|d| {
                    d["Namespace"] == alarm.namespace.as_str()
                        && d["Dimensions"]
                            .as_array()
                            .is_some_and(|sets| sets.contains(&dimensions))
                        && d["Metrics"]
                            .as_array()
                            .is_some_and(|m| m.iter().any(|m| m["Name"] == alarm.metric.as_str()))
                })
        })
        .map(|line| {
            (
                line["_aws"]["Timestamp"].as_i64().expect("a Timestamp"),
                line[alarm.metric.as_str()]
                    .as_f64()
                    .expect("the metric's value at the top level"),
            )
        })
        .collect()
}

/// The alarm's state at `at` (epoch milliseconds), evaluated as CloudWatch evaluates a metric alarm over a
/// sliding window: the last `EvaluationPeriods` periods ending at `at`, each the statistic of the datapoints in
/// it or missing; missing counts as breaching or not as `TreatMissingData` says; ALARM when at least
/// `DatapointsToAlarm` of them breach. CloudWatch also waits a little for late data; this does not.
fn alarm_state(alarm: &AlarmDefinition, points: &[(i64, f64)], at: i64) -> &'static str {
    let period = alarm.period * 1000;
    let breaching = (0..alarm.evaluation_periods)
        .filter(|k| {
            let (start, end) = (at - (k + 1) * period, at - k * period);
            let values: Vec<f64> = points
                .iter()
                .filter(|(t, _)| (start..end).contains(t))
                .map(|(_, v)| *v)
                .collect();
            if values.is_empty() {
                return match alarm.treat_missing_data.as_str() {
                    "breaching" => true,
                    "notBreaching" => false,
                    other => panic!("this evaluation does not model TreatMissingData {other}"),
                };
            }
            let value = match alarm.statistic.as_str() {
                "Sum" => values.iter().sum(),
                "Maximum" => values.iter().copied().fold(f64::MIN, f64::max),
                "Minimum" => values.iter().copied().fold(f64::MAX, f64::min),
                "SampleCount" => values.len() as f64,
                "Average" => values.iter().sum::<f64>() / values.len() as f64,
                other => panic!("unknown statistic {other}"),
            };
            match alarm.comparison.as_str() {
                "LessThanThreshold" => value < alarm.threshold,
                "LessThanOrEqualToThreshold" => value <= alarm.threshold,
                "GreaterThanThreshold" => value > alarm.threshold,
                "GreaterThanOrEqualToThreshold" => value >= alarm.threshold,
                other => panic!("unknown comparison {other}"),
            }
        })
        .count() as i64;
    if breaching >= alarm.datapoints_to_alarm {
        "ALARM"
    } else {
        "OK"
    }
}

/// A report of a completed check with nothing found, as the metrics line builder takes it.
fn completed_report(account_id: &str, at: time::OffsetDateTime) -> keywatch::report::Report {
    keywatch::report::Report {
        run_id: "r".into(),
        account_id: account_id.into(),
        checked_at: at,
        report_generated_at: Some(at),
        inventory_source: keywatch::inventory::Source::CredentialReport,
        dry_run: false,
        grace_period_hours: 0,
        rule_settings: Default::default(),
        users_examined: 3,
        users_checked: None,
        keys_examined: 3,
        candidates_verified: 0,
        api_calls: keywatch::report::ApiCalls::default(),
        phase_ms: Default::default(),
        findings: vec![],
        pending: vec![],
        exempted: vec![],
        remediated: vec![],
        remediation_skipped: vec![],
        remediation_failed: vec![],
        deactivate_after_days: None,
        security_hub: None,
        rechecks: Vec::new(),
        notifications: vec![],
        new: None,
        open: None,
        resolved: None,
        alert: String::new(),
        owner: None,
    }
}

/// Nothing stops silently: a heartbeat alarm on the metric every completed check writes, breaching when it is
/// missing, over two schedule intervals, for every deployment; and, with a work queue, an alarm on the age of
/// its oldest message, well before SQS drops it. Both notify the findings topic.
#[test]
fn a_heartbeat_and_the_work_queue_age_alarm_on_the_findings_topic() {
    let template = template();
    let resources = &template["Resources"];
    let heartbeat = &resources["HeartbeatAlarm"];
    assert!(
        heartbeat.get("Condition").is_none(),
        "every deployment: {heartbeat:?}"
    );
    let alarm = alarm_definition(&template, "HeartbeatAlarm");
    assert_eq!(alarm.namespace, metrics::NAMESPACE);
    assert_eq!(alarm.metric, metrics::CHECKS_COMPLETED);
    assert!(metrics::METRICS.iter().any(|(m, _)| *m == alarm.metric));
    assert!(
        alarm.dimensions.is_empty() && !metrics::PER_ACCOUNT.contains(&alarm.metric.as_str()),
        "the roll-up, never per account: {alarm:?}"
    );
    assert_eq!(alarm.statistic, "Sum");
    assert_eq!(
        alarm.treat_missing_data, "breaching",
        "missing is the signal"
    );
    assert_eq!(
        (alarm.comparison.as_str(), alarm.threshold),
        ("LessThanThreshold", 1.0)
    );
    // Two schedule intervals of the default schedule, and every period of them must be empty.
    let interval = rate_seconds(&parameter(&template, "ScheduleExpression", &[]));
    assert_eq!(alarm.period * alarm.evaluation_periods, 2 * interval);
    assert_eq!(alarm.datapoints_to_alarm, alarm.evaluation_periods);
    // CloudWatch's limits: a period of 60 s multiples, at most a day per period, and at most 7 days evaluated
    // (1 day with periods under an hour).
    assert_eq!(alarm.period % 60, 0);
    assert!(alarm.period <= 86_400, "{alarm:?}");
    let range = alarm.period * alarm.evaluation_periods;
    assert!(
        range <= if alarm.period < 3600 { 86_400 } else { 604_800 },
        "{alarm:?}"
    );
    let actions = list(&heartbeat["Properties"]["AlarmActions"]);
    assert_eq!(actions.len(), 1);
    assert_is_the_findings_topic(&actions[0], "HeartbeatAlarm's action");

    let age = &resources["WorkQueueAgeAlarm"];
    assert_eq!(
        age["Condition"], resources["WorkQueue"]["Condition"],
        "exactly where the work queue exists"
    );
    let definition = alarm_definition(&template, "WorkQueueAgeAlarm");
    assert_eq!(definition.namespace, "AWS/SQS");
    assert_eq!(definition.metric, "ApproximateAgeOfOldestMessage");
    let dimensions = list(&age["Properties"]["Dimensions"]);
    assert_eq!(dimensions.len(), 1);
    assert_eq!(dimensions[0]["Name"], "QueueName");
    assert_eq!(
        tagged(&dimensions[0]["Value"], "GetAtt").and_then(Value::as_str),
        Some("WorkQueue.QueueName")
    );
    assert_eq!(definition.statistic, "Maximum");
    assert_eq!(definition.comparison, "GreaterThanThreshold");
    assert_eq!(
        definition.treat_missing_data, "notBreaching",
        "an idle queue"
    );
    // Above the default retries of a message (MaxReceiveCount visibility timeouts), below SQS's retention (the
    // queue sets none: SQS keeps a message 4 days), with the alarm's own evaluation time to spare.
    let queue = &resources["WorkQueue"]["Properties"];
    assert!(
        queue.get("MessageRetentionPeriod").is_none(),
        "the default retention"
    );
    let retention = f64::from(4 * 86_400);
    let retries = DEFAULT_MAX_RECEIVE_COUNT as f64
        * queue["VisibilityTimeout"]
            .as_f64()
            .expect("a VisibilityTimeout");
    assert_eq!(
        parameter(&template, "MaxReceiveCount", &[]),
        DEFAULT_MAX_RECEIVE_COUNT.to_string()
    );
    let evaluated = (definition.period * definition.evaluation_periods) as f64;
    assert!(
        retries < definition.threshold && definition.threshold + evaluated < retention,
        "{definition:?}"
    );
    let actions = list(&age["Properties"]["AlarmActions"]);
    assert_eq!(actions.len(), 1);
    assert_is_the_findings_topic(&actions[0], "WorkQueueAgeAlarm's action");
}

/// The heartbeat fires when the checks stop. moto does not evaluate alarms (it only stores them), so this
/// evaluates `HeartbeatAlarm`'s own definition, read from template.yaml, over the datapoints of metrics lines
/// the real code builds ([`metrics::line`]): three accounts checked once per schedule interval for five
/// intervals, then only failed checks. It is OK from the first completed check on, while the checks run and
/// until two intervals have passed without one, and ALARM from then on: a failed check is no heartbeat. Before
/// the first check (a new stack) it is ALARM too, as the README says.
#[test]
fn the_heartbeat_alarm_fires_once_two_intervals_pass_without_a_completed_check() {
    use time::macros::datetime;
    let template = template();
    let alarm = alarm_definition(&template, "HeartbeatAlarm");
    let interval = time::Duration::seconds(rate_seconds(&parameter(
        &template,
        "ScheduleExpression",
        &[],
    )));
    let first = datetime!(2026-12-01 12:00 UTC);
    let accounts = ["111111111111", "222222222222", "333333333333"];
    let runs = 5;
    let mut lines = Vec::new();
    let mut last_completed = first;
    for run in 0..runs + 4 {
        for (i, account) in accounts.iter().enumerate() {
            let at = first + interval * run + time::Duration::minutes(5 * i as i64);
            let report = completed_report(account, at);
            let outcome = if run < runs {
                last_completed = at;
                Ok(&report)
            } else {
                Err(metrics::Failed {
                    api_calls: 3,
                    final_failure: true,
                })
            };
            lines.push(
                serde_json::to_value(metrics::line(account, "r", outcome, 900, at)).expect("json"),
            );
        }
    }
    let points = datapoints(&lines, &alarm);
    assert_eq!(
        points.len(),
        runs as usize * accounts.len(),
        "one heartbeat per completed check, none per failed one"
    );
    let ms = |at: time::OffsetDateTime| (at.unix_timestamp_nanos() / 1_000_000) as i64;
    let state = |at: time::OffsetDateTime| alarm_state(&alarm, &points, ms(at));

    assert_eq!(
        state(first - time::Duration::minutes(1)),
        "ALARM",
        "before any check"
    );
    let silent_from = last_completed + interval * 2;
    let end = first + interval * (runs + 4);
    let step = time::Duration::minutes(10);
    let mut at = first + time::Duration::minutes(1);
    while at <= silent_from {
        assert_eq!(state(at), "OK", "at {at}: checks ran within two intervals");
        at += step;
    }
    assert_eq!(
        state(silent_from + time::Duration::minutes(1)),
        "ALARM",
        "two intervals after the last completed check ({last_completed})"
    );
    while at <= end {
        assert_eq!(
            state(at),
            "ALARM",
            "at {at}: no completed check for two intervals"
        );
        at += step;
    }
}

/// The README's SCP that keeps exempting users to a security role: it denies `iam:TagUser` and `iam:UntagUser`
/// when any tag key of the request is the default `ExemptTagKey` (in any case, as keywatch reads tag keys),
/// to every principal but the named role, and nothing else. Evaluated here as IAM evaluates its two operators.
#[test]
fn the_readme_scp_keeps_exemptions_to_the_security_role() {
    fn glob(pattern: &[u8], text: &[u8]) -> bool {
        match (pattern.first(), text.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
            }
            (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
            (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
            _ => false,
        }
    }
    let readme = std::fs::read_to_string(project_dir().join("README.md")).expect("README.md");
    let block = readme
        .split_once("<!-- scp:exempt-tag")
        .and_then(|(_, rest)| rest.split_once("```json\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(json, _)| json)
        .expect("the README's SCP block");
    let scp: Json = serde_json::from_str(block).expect("the SCP is JSON");
    let statements = scp["Statement"].as_array().expect("statements");
    assert_eq!(statements.len(), 1, "{scp}");
    let statement = &statements[0];
    assert_eq!(statement["Effect"], "Deny");
    assert_eq!(statement["Resource"], "*");
    let actions: BTreeSet<&str> = statement["Action"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| a.as_str().expect("an action"))
        .collect();
    assert_eq!(
        actions,
        ["iam:TagUser", "iam:UntagUser"].into_iter().collect()
    );
    let condition = statement["Condition"].as_object().expect("a Condition");
    assert_eq!(condition.len(), 2, "{condition:?}");
    let keys: Vec<&str> = condition["ForAnyValue:StringEqualsIgnoreCase"]["aws:TagKeys"]
        .as_array()
        .expect("aws:TagKeys")
        .iter()
        .map(|k| k.as_str().expect("a key"))
        .collect();
    let role = condition["ArnNotLike"]["aws:PrincipalArn"]
        .as_str()
        .expect("aws:PrincipalArn");
    let default_key = parameter(&template(), "ExemptTagKey", &[]);
    assert_eq!(keys, [default_key.as_str()]);

    // Denied when any of the request's tag keys matches, and the principal is not the security role.
    let denies = |principal: &str, tag_keys: &[&str]| {
        tag_keys
            .iter()
            .any(|k| keys.iter().any(|w| w.eq_ignore_ascii_case(k)))
            && !glob(role.as_bytes(), principal.as_bytes())
    };
    let admin = "arn:aws:iam::111122223333:role/Admin";
    let security = role.replace('*', "111122223333");
    assert!(denies(admin, &["keywatch:exempt"]));
    assert!(
        denies(admin, &["owner", "Keywatch:Exempt"]),
        "any case, among others"
    );
    assert!(!denies(admin, &["owner"]), "other tags stay free");
    assert!(
        !denies(&security, &["keywatch:exempt"]),
        "the security role may"
    );
    assert!(denies(
        "arn:aws:iam::111122223333:role/security-admin-not",
        &["keywatch:exempt"]
    ));
}

/// Chat: `CHAT_NOTIFICATIONS` is the `ChatNotifications` parameter, read by the code as the template means it
/// (off by default). A Slack or Teams channel exists only when all its IDs are given, and only with custom
/// notifications (a rule). Each subscribes to the findings topic, with a role of its own that holds no
/// permission and a guardrail that denies every action: a channel reads notifications and does nothing else.
#[test]
fn chat_channels_exist_only_with_their_ids_and_can_only_read() {
    let template = template();
    let variables = &function(&template)["Environment"]["Variables"];
    assert_eq!(
        tagged(&variables["CHAT_NOTIFICATIONS"], "Ref").and_then(Value::as_str),
        Some("ChatNotifications")
    );
    assert_eq!(settings_with(&template, &[]).chat, Chat::Off);
    assert_eq!(
        allowed_values(&template, "ChatNotifications"),
        ["off", "custom"]
    );
    assert_eq!(
        settings_with(&template, &[("ChatNotifications", "custom")]).chat,
        Chat::Custom
    );

    let slack = [
        ("SlackWorkspaceId", "T0123ABCD"),
        ("SlackChannelId", "C0123ABCD"),
    ];
    let teams = [
        ("TeamsTenantId", "11111111-2222-3333-4444-555555555555"),
        ("TeamsTeamId", "66666666-7777-8888-9999-000000000000"),
        (
            "TeamsChannelId",
            "19%3ab6ef35dc342d56ba5654e6fc6d25a071%40thread.tacv2",
        ),
    ];
    assert!(!condition(&template, "SlackChannel", &[]));
    assert!(!condition(&template, "SlackChannel", &slack[..1]));
    assert!(condition(&template, "SlackChannel", &slack));
    assert!(!condition(&template, "TeamsChannel", &teams[..2]));
    assert!(condition(&template, "TeamsChannel", &teams));
    assert!(!condition(&template, "ChatChannel", &[]));

    let rule = &template["Rules"]["ChatChannelsNeedCustomNotifications"];
    let assertions = list(&rule["Assertions"]);
    let passes = |given: &[(&str, &str)]| {
        !holds(&template, &rule["RuleCondition"], given)
            || assertions
                .iter()
                .all(|a| holds(&template, &a["Assert"], given))
    };
    assert!(passes(&[]));
    assert!(!passes(&slack));
    assert!(!passes(&teams));
    assert!(passes(
        &[&slack[..], &teams[..], &[("ChatNotifications", "custom")]].concat()
    ));

    let resources = &template["Resources"];
    for (name, condition) in [
        ("SlackChannelConfiguration", "SlackChannel"),
        ("TeamsChannelConfiguration", "TeamsChannel"),
    ] {
        let channel = &resources[name];
        assert_eq!(channel["Condition"], condition, "{name}");
        let properties = &channel["Properties"];
        assert_eq!(
            tagged(&properties["IamRoleArn"], "GetAtt").and_then(Value::as_str),
            Some("ChatRole.Arn"),
            "{name}"
        );
        let guardrails = list(&properties["GuardrailPolicies"]);
        assert_eq!(guardrails.len(), 1, "{name}");
        assert_eq!(
            tagged(&guardrails[0], "Sub").and_then(Value::as_str),
            Some("arn:${AWS::Partition}:iam::aws:policy/AWSDenyAll"),
            "{name}: the guardrail denies every action"
        );
        assert_eq!(properties["UserRoleRequired"], false, "{name}");
        let topics = list(&properties["SnsTopicArns"]);
        assert_eq!(topics.len(), 1, "{name}");
        assert_is_the_findings_topic(&topics[0], name);
    }
    let role = &resources["ChatRole"];
    assert_eq!(role["Condition"], "ChatChannel");
    let properties = role["Properties"].as_mapping().expect("properties");
    let keys: BTreeSet<&str> = properties.keys().filter_map(Value::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["AssumeRolePolicyDocument", "Description"]),
        "no policy, managed policy or boundary: the role can do nothing"
    );
    let trust = list(&role["Properties"]["AssumeRolePolicyDocument"]["Statement"]);
    assert_eq!(trust.len(), 1);
    assert_eq!(trust[0]["Principal"]["Service"], "chatbot.amazonaws.com");
    assert_eq!(trust[0]["Action"], "sts:AssumeRole");

    // A team's own channel takes a topic of its own: OWNER_TOPIC_ARNS is the OwnerTopicArns parameter, whose
    // pattern lets through what the code reads, and the grant's topic names are the ones the code allows.
    assert_eq!(
        tagged(&variables["OWNER_TOPIC_ARNS"], "Ref").and_then(Value::as_str),
        Some("OwnerTopicArns")
    );
    let one = format!("team-a=arn:aws:sns:us-east-1:123456789012:{OWNER_TOPIC_PREFIX}team-a");
    let two = format!("{one},Équipe 42=arn:aws:sns:us-east-1:123456789012:{OWNER_TOPIC_PREFIX}b");
    let pattern = template["Parameters"]["OwnerTopicArns"]["AllowedPattern"]
        .as_str()
        .expect("OwnerTopicArns has an AllowedPattern");
    assert_eq!(full_matches(pattern, &["", &one, &two]), [true, true, true]);
    for given in [&one, &two] {
        let settings = settings_with(&template, &[("OwnerTopicArns", given)]);
        assert_eq!(
            settings.owner_topics.len(),
            given.split(',').count(),
            "{given}"
        );
    }
    assert_eq!(
        full_matches(
            pattern,
            &[
                "team-a=arn:aws:sns:us-east-1:123456789012:alerts",
                "arn:aws:sns:us-east-1:123456789012:keywatch-owner-a",
            ]
        ),
        [false, false],
        "a topic the role may not publish to, or no owner, is refused at deploy"
    );
    let granted = EXPECTED
        .iter()
        .find(|e| e.condition == Some("PublishToOwnerTopics"))
        .expect("the owner topics grant");
    let Resource::Tagged("Sub", arn) = granted.resource else {
        panic!("the owner topics grant is a !Sub ARN")
    };
    assert!(arn.ends_with(&format!(":{OWNER_TOPIC_PREFIX}*")), "{arn}");
}
