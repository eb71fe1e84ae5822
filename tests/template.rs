//! template.yaml proven: the function's policy grants exactly the actions `src/permissions.rs` says the code
//! calls (both directions, no wildcards, each on the right resource), and the SAM-transformed template deploys
//! as a CloudFormation stack on moto with every resource complete.

mod support;

use std::collections::BTreeSet;

use keywatch::permissions::{IAM_ACTIONS, SNS_ACTIONS, UNGATED_ACTIONS};
use serde_json::Value as Json;
use serde_yaml_ng::Value;
use support::{deploy_template, project_dir, Moto};

fn template() -> Value {
    let path = project_dir().join("template.yaml");
    let text = std::fs::read_to_string(&path).expect("template.yaml is readable");
    // serde_yaml_ng keeps SAM's short-form tags (!Ref, !If, !Sub) as `Value::Tagged`, so nothing is lost.
    serde_yaml_ng::from_str(&text).expect("template.yaml is valid YAML")
}

fn function(template: &Value) -> &Value {
    let function = &template["Resources"]["KeywatchFunction"];
    assert_eq!(function["Type"], "AWS::Serverless::Function");
    &function["Properties"]
}

/// Every statement of the function's policies. Only inline policy documents are allowed: a SAM policy
/// template or a managed policy name would grant actions this test cannot see.
fn statements(template: &Value) -> Vec<&Value> {
    let policies = function(template)["Policies"]
        .as_sequence()
        .expect("KeywatchFunction.Policies is a list");
    assert!(!policies.is_empty(), "KeywatchFunction has no policies");
    policies
        .iter()
        .flat_map(|policy| {
            assert!(
                policy.get("Statement").is_some(),
                "only inline policy documents are allowed in KeywatchFunction.Policies, found {policy:?}"
            );
            policy["Statement"]
                .as_sequence()
                .expect("Statement is a list")
        })
        .collect()
}

fn actions(statement: &Value) -> Vec<&str> {
    for forbidden in ["NotAction", "NotResource"] {
        assert!(
            statement.get(forbidden).is_none(),
            "{forbidden} makes the grant unreadable for this test: {statement:?}"
        );
    }
    assert_eq!(statement["Effect"], "Allow", "{statement:?}");
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

fn called() -> BTreeSet<&'static str> {
    IAM_ACTIONS.iter().chain(SNS_ACTIONS).copied().collect()
}

/// The statement that grants `action`; exactly one must.
fn statement_for<'a>(template: &'a Value, action: &str) -> &'a Value {
    let matching: Vec<&Value> = statements(template)
        .into_iter()
        .filter(|s| actions(s).contains(&action))
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "{action} must be granted by exactly one statement"
    );
    matching[0]
}

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

#[test]
fn policy_grants_exactly_the_actions_the_code_calls() {
    let template = template();
    let granted = granted(&template);
    let called = called();
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

#[test]
fn no_action_is_a_wildcard_or_listed_twice() {
    let template = template();
    let mut seen = BTreeSet::new();
    for action in statements(&template).into_iter().flat_map(actions) {
        assert!(!action.contains('*'), "template.yaml grants {action}");
        assert!(seen.insert(action), "template.yaml grants {action} twice");
    }
    let mut listed = BTreeSet::new();
    for action in IAM_ACTIONS.iter().chain(SNS_ACTIONS).chain(UNGATED_ACTIONS) {
        assert!(!action.contains('*'), "src/permissions.rs lists {action}");
        assert!(
            listed.insert(action),
            "src/permissions.rs lists {action} twice"
        );
    }
    assert!(IAM_ACTIONS.iter().all(|a| a.starts_with("iam:")));
    assert!(SNS_ACTIONS.iter().all(|a| a.starts_with("sns:")));
}

#[test]
fn iam_is_granted_on_star_and_publish_only_on_the_findings_topic() {
    let template = template();
    for action in IAM_ACTIONS {
        let statement = statement_for(&template, action);
        // The credential report has no resource ARN, so IAM reads cannot be scoped.
        assert_eq!(statement["Resource"], "*", "{action}");
        assert!(
            actions(statement).iter().all(|a| a.starts_with("iam:")),
            "the IAM statement on * must hold only IAM actions: {statement:?}"
        );
    }
    for action in SNS_ACTIONS {
        let statement = statement_for(&template, action);
        assert_is_the_findings_topic(&statement["Resource"], &format!("{action}'s Resource"));
        assert!(
            actions(statement).iter().all(|a| a.starts_with("sns:")),
            "the topic statement must hold only SNS actions: {statement:?}"
        );
    }
    // And the function publishes to the very topic it may publish to.
    assert_is_the_findings_topic(
        &function(&template)["Environment"]["Variables"]["FINDINGS_TOPIC_ARN"],
        "FINDINGS_TOPIC_ARN",
    );
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

    // The deployed role grants what permissions.rs lists, the topic statement on the stack's topic.
    let role = &summary["role"];
    let policies = role["inline_policies"]
        .as_object()
        .expect("inline policies");
    assert_eq!(policies.len(), 1, "one inline policy: {policies:?}");
    let statements = policies.values().next().expect("one")["Statement"]
        .as_array()
        .expect("statements");
    let mut granted = BTreeSet::new();
    for statement in statements {
        let actions: Vec<&str> = statement["Action"]
            .as_array()
            .expect("actions")
            .iter()
            .map(|a| a.as_str().expect("action"))
            .collect();
        let wanted = if actions.iter().all(|a| a.starts_with("sns:")) {
            summary["outputs"]["TopicArn"].clone()
        } else {
            Json::from("*")
        };
        assert_eq!(statement["Resource"], wanted, "{statement}");
        granted.extend(actions);
    }
    assert_eq!(granted, called());
    // SAM adds the basic execution role (CloudWatch Logs only) and nothing else.
    assert_eq!(
        role["managed_policy_arns_in_template"],
        serde_json::json!(["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"])
    );
}

#[tokio::test]
async fn template_deploys_on_moto() {
    let moto = Moto::start();

    // Defaults: a new KMS-encrypted topic, no email subscription.
    let summary = deploy_template(&moto, "keywatch", &[]);
    assert_deployed(
        &summary,
        &[
            "TopicKey",
            "FindingsTopic",
            "KeywatchLogs",
            "KeywatchFunction",
            "KeywatchFunctionRole",
            "KeywatchFunctionSchedule",
            "KeywatchFunctionSchedulePermission",
        ],
        &[
            ("KeywatchErrorsAlarm", "AWS::CloudWatch::Alarm"),
            (
                "KeywatchFunctionEventInvokeConfig",
                "AWS::Lambda::EventInvokeConfig",
            ),
        ],
    );

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
        ],
    );
    assert_eq!(summary["outputs"]["TopicArn"], existing.as_str());
    assert_deployed(
        &summary,
        &[
            "KeywatchLogs",
            "KeywatchFunction",
            "KeywatchFunctionRole",
            "KeywatchFunctionSchedule",
            "KeywatchFunctionSchedulePermission",
        ],
        &[
            ("KeywatchErrorsAlarm", "AWS::CloudWatch::Alarm"),
            ("EmailSubscription", "AWS::SNS::Subscription"),
            (
                "KeywatchFunctionEventInvokeConfig",
                "AWS::Lambda::EventInvokeConfig",
            ),
        ],
    );
}
