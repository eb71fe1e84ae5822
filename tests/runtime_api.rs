//! The built binary under a real Lambda Runtime API (cargo-lambda's emulator) against moto: what Lambda does
//! with `events/*.json`, with bad events, with a bad configuration at init, and with an organization's work
//! queue (`support::pump` plays Lambda's SQS poller). The other tests call the handler in-process; this one
//! covers the bootstrap, the runtime loop and the error responses.
//!
//! The binary is the one Lambda runs in all that matters here ([`support::shipped_binary`], Cargo.toml's
//! `shipped` profile): `panic = "abort"`, so a panic in any check ends the process and the invocation fails,
//! and main.rs's runtime thread with its stack size. A debug build would catch the panic in its task.

use keywatch_test_support as support;

use std::time::Duration;

use serde_json::Value;
use support::ledger::LedgerTable;
use support::proxy::Proxy;
use support::{emf_directives, project_dir, shipped_binary, Account, Function, Moto, RuntimeApi};

/// The one EMF line the function printed for `run_id` (and `account_id`, in an organization's run), parsed from
/// its real output.
fn emf_line(function: &Function, run_id: &str, account_id: Option<&str>) -> Value {
    let logs = function.logs();
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line.get("_aws").is_some() && line["run_id"] == run_id)
        .filter(|line| line.get("AccountId").is_some())
        .filter(|line| account_id.is_none_or(|account| line["AccountId"] == account))
        .collect();
    match &lines[..] {
        [line] => line.clone(),
        other => panic!("expected one EMF line for {run_id}, got {other:?} in:\n{logs}"),
    }
}

fn event_file(name: &str) -> String {
    let path = project_dir().join("events").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn finding_keys(report: &Value) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = report["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings array in {report}"))
        .iter()
        .map(|f| {
            let field = |name: &str| f[name].as_str().unwrap_or_default().to_string();
            (field("user_name"), field("access_key_id"))
        })
        .collect();
    keys.sort();
    keys
}

/// One emulator and one process for the whole sequence, as a warm Lambda container serves them.
#[tokio::test]
async fn the_binary_serves_events_through_the_runtime_api() {
    let moto = Moto::start();
    let account: Account = moto.account().await;
    account.console_user("alice").await;
    let alice_key = account.key("alice").await.id;
    // No console password: never a finding.
    account.user("bob").await;
    account.key("bob").await;
    let (topic, queue) = account.topic_with_queue().await;

    let api = RuntimeApi::start();
    let function = Function::start(
        shipped_binary(),
        &api,
        &moto.endpoint,
        &[("FINDINGS_TOPIC_ARN", &topic)],
    );
    let expected = vec![("alice".to_string(), alice_key.clone())];

    // A schedule: the findings, and exactly one alert delivered to the subscribed queue.
    let report = function.invoke_ok("events/scheduled.json", &event_file("scheduled.json"));
    assert_eq!(finding_keys(&report), expected, "{report:#}");
    assert_eq!(report["dry_run"], false);
    // Each finding names the control it fails in every CIS version; a key created today is not v7.0's yet.
    let controls = &report["findings"][0]["controls"];
    for control in [
        "CIS AWS v1.4.0 1.11",
        "CIS AWS v5.0 1.10",
        "CIS AWS v6.0 2.10",
    ] {
        assert!(
            controls
                .as_array()
                .is_some_and(|c| c.iter().any(|x| x == control)),
            "{control}: {controls}"
        );
    }
    assert!(!controls.to_string().contains("v7.0"), "{controls}");
    assert_eq!(report["notifications"].as_array().map(Vec::len), Some(1));
    let delivered = account.delivered_with_attributes(&queue).await;
    assert_eq!(delivered.len(), 1, "exactly one SNS message: {delivered:?}");
    let (subject, document, attributes) = &delivered[0];
    assert_eq!(
        subject,
        "keywatch: 1 never-used access key on a console user in 123456789012"
    );
    // One identity per message, as attribute and in the document (the shipped binary's publish).
    assert_eq!(attributes["alert_id"], document["alert_id"]);
    assert_eq!(document["alert_id"].as_str().map(str::len), Some(32));
    assert_eq!(document["findings"][0]["access_key_id"], alice_key.as_str());
    // The run ID is the Lambda request ID the emulator assigned: the alert ties back to the invocation.
    assert_eq!(document["run_id"], report["run_id"]);
    assert!(!report["run_id"].as_str().unwrap_or_default().is_empty());
    // The metrics line the process printed for this check (CloudWatch Embedded Metric Format), from its output.
    let emf = emf_line(
        &function,
        report["run_id"].as_str().unwrap_or_default(),
        None,
    );
    // Findings and CheckFailed per account and rolled up; the rest rolled up only.
    assert_eq!(
        emf_directives(&emf),
        [
            (
                serde_json::json!([["AccountId"], []]),
                vec!["Findings", "CheckFailed"]
            ),
            (
                serde_json::json!([[]]),
                vec![
                    "Pending",
                    "Exempted",
                    "UsersExamined",
                    "ApiCalls",
                    "DurationMs",
                    "ChecksCompleted"
                ]
            ),
        ]
    );
    assert_eq!(emf["AccountId"], "123456789012");
    assert_eq!(
        emf["Findings"].as_u64(),
        report["findings"].as_array().map(|f| f.len() as u64)
    );
    assert_eq!(emf["UsersExamined"], report["users_examined"]);
    assert_eq!(emf["ApiCalls"], report["api_calls"]["total"]);
    assert_eq!(emf["CheckFailed"], 0);

    // Bad events: a clear Lambda error each time, and the same process serves the next event.
    let rejected = [
        (r#"{"dry_run": "yes"}"#, "field `dry_run`"),
        (r#"{"dryrun": true}"#, "unknown field `dryrun`"),
        ("[1, 2]", "expected a JSON object"),
    ];
    for (payload, needle) in rejected {
        let (error_type, message) = function.invoke_err(payload);
        assert_eq!(error_type, "Keywatch.InvalidEvent", "{payload}: {message}");
        assert!(message.contains(needle), "{payload}: {message}");
        assert!(message.contains("dry_run"), "says what to send: {message}");
    }
    // Not JSON at all: lambda_runtime rejects it before the handler runs, with its own error type.
    let (error_type, message) = function.invoke_err("run it please");
    assert!(
        error_type.ends_with("DeserializeError"),
        "{error_type}: {message}"
    );
    assert!(
        message.contains("failed to deserialize the incoming data"),
        "{message}"
    );

    // A manual dry run after the errors: served, same findings, nothing published.
    let report = function.invoke_ok("events/manual.json", &event_file("manual.json"));
    assert_eq!(report["dry_run"], true);
    assert_eq!(finding_keys(&report), expected, "{report:#}");
    assert_eq!(report["notifications"], serde_json::json!([]));
    let delivered = account.delivered(&queue).await;
    assert!(
        delivered.is_empty(),
        "a dry run publishes nothing: {delivered:?}"
    );
}

/// The binary's own logging (`keywatch::logging::init`, as main.rs calls it), asked for TRACE through Lambda's
/// log-level control: it logs DEBUG, so the request was read, and never a TRACE line, at which the SDK would log
/// whole response bodies, the credential report among them.
#[tokio::test]
async fn the_binary_logs_at_most_debug_whatever_is_asked() {
    let moto = Moto::start();
    let account = moto.account().await;
    account.console_user("alice").await;
    account.key("alice").await;
    let (topic, _queue) = account.topic_with_queue().await;
    let api = RuntimeApi::start();
    let function = Function::start(
        shipped_binary(),
        &api,
        &moto.endpoint,
        &[
            ("FINDINGS_TOPIC_ARN", &topic),
            ("AWS_LAMBDA_LOG_LEVEL", "TRACE"),
        ],
    );
    let report = function.invoke_ok("events/manual.json", &event_file("manual.json"));
    assert_eq!(report["findings"].as_array().map(Vec::len), Some(1));
    let logs = function.logs();
    let levels: std::collections::BTreeMap<String, usize> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .fold(Default::default(), |mut levels, line| {
            *levels
                .entry(line["level"].as_str().unwrap_or("none").to_string())
                .or_default() += 1;
            levels
        });
    assert!(
        levels.contains_key("DEBUG"),
        "TRACE asked for, DEBUG given: {levels:?}"
    );
    assert!(!levels.contains_key("TRACE"), "never TRACE: {levels:?}");
    assert!(
        !logs.contains("GetCredentialReportResult"),
        "no response body in the logs"
    );
}

/// One scheduled run of an organization through the binary, as AWS drives it: the schedule's invocation dispatches
/// every account, then the pump plays Lambda's SQS poller until the work queue is drained, every record a success.
/// Returns the run ID.
async fn organization_run(
    function: &Function,
    sqs: &aws_sdk_sqs::Client,
    work_url: &str,
    accounts: usize,
) -> String {
    use support::pump::{Pump, Stop};
    let dispatched = function.invoke_ok("events/scheduled.json", &event_file("scheduled.json"));
    assert_eq!(dispatched["dispatched"], accounts, "{dispatched:#}");
    let pumped = Pump::new(sqs, work_url).await.run(function).await;
    function.assert_running();
    assert_eq!(pumped.stopped, Stop::Drained, "{pumped:#?}");
    assert_eq!(
        (
            pumped.records,
            pumped.deleted,
            pumped.failed,
            pumped.function_errors
        ),
        (accounts, accounts, 0, 0),
        "every account checked once, none failed: {pumped:#?}"
    );
    dispatched["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Key ID → (record state, the key's status as the finding shows it), every page of the account's hub.
async fn hub_keys(account: &Account) -> std::collections::BTreeMap<String, (String, String)> {
    let mut found = std::collections::BTreeMap::new();
    for finding in account.hub_findings().await {
        let resource = &finding.resources.unwrap_or_default()[0];
        // The resource's Id ends with the key ID.
        let id = resource.id.clone().unwrap_or_default();
        let key = id.rsplit(':').next().unwrap_or_default().to_string();
        let status = resource
            .details
            .as_ref()
            .and_then(|d| d.aws_iam_access_key.as_ref())
            .and_then(|k| k.status.as_ref())
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        let state = finding.record_state.map(|s| s.as_str().to_string());
        found.insert(key, (state.unwrap_or_default(), status));
    }
    found
}

/// The one alert delivered for `account_id`, as (subject, document).
fn alert_for<'a>(delivered: &'a [(String, Value)], account_id: &str) -> &'a (String, Value) {
    let mine: Vec<&(String, Value)> = delivered
        .iter()
        .filter(|(_, document)| document["account_id"] == account_id)
        .collect();
    match mine[..] {
        [alert] => alert,
        _ => panic!("one alert for {account_id}: {delivered:?}"),
    }
}

/// The sorted access key IDs of a list of findings or remediations.
fn key_ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|r| r["access_key_id"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

/// First enablement of deactivation, with Security Hub on, through the binary as `cargo test` builds it (a debug
/// build, where the runtime thread's stack matters most: the Security Hub SDK decodes findings on it), for an
/// organization of two whose work goes through the queue and the pump. The management account's 120 keys and the
/// member's 3, 30 days old, that no alert ever named are alerted with their deactivation date, imported into each
/// account's own hub (more than one import of 100 in the management account) and left Active; once the ledger says
/// those alerts are a week old, the next run reads each hub's findings back page by page, deactivates exactly those
/// keys, shows them Inactive in the hub, and each alert says so with the undo commands. The notice period comes
/// from the ledger, not from the keys' age.
#[tokio::test]
async fn the_binary_deactivates_only_after_a_delivered_alert_and_the_notice_period() {
    const USERS: usize = 120;
    const MEMBER_USERS: usize = 3;
    let moto = Moto::start();
    let account: Account = moto.account().await;
    let organizations = support::create_organization(&moto).await;
    let member_id = support::create_member(&organizations, "dev").await;
    let member = support::member_account(&moto, &member_id).await;
    let mut keys = Vec::new();
    for n in 0..USERS {
        let user = format!("user-{n:03}");
        account.console_user(&user).await;
        keys.push(account.key(&user).await.id);
    }
    keys.sort();
    let mut member_keys = Vec::new();
    for n in 0..MEMBER_USERS {
        let user = format!("dev-{n}");
        member.console_user(&user).await;
        member_keys.push(member.key(&user).await.id);
    }
    member_keys.sort();
    let expected = |id: &str| {
        if id == MANAGEMENT {
            &keys
        } else {
            &member_keys
        }
    };
    let (topic, queue) = account.topic_with_queue().await;
    let ledger = LedgerTable::create(&account.config).await;
    let work = support::pump::WorkQueue::create(&account.sqs, "keywatch-work", 60, 3).await;
    let proxy = Proxy::start(&moto.endpoint);
    proxy.age_keys(30);

    let api = RuntimeApi::start();
    let function = Function::start(
        shipped_binary(),
        &api,
        &proxy.url,
        &[
            ("FINDINGS_TOPIC_ARN", &topic),
            ("REMEDIATION", "deactivate"),
            ("LEDGER_TABLE", &ledger.name),
            ("SECURITY_HUB", "true"),
            ("ACCOUNTS", "organization"),
            ("WORK_QUEUE_URL", &work.url),
        ],
    );
    let accounts = [(MANAGEMENT, &account), (member_id.as_str(), &member)];

    let first = organization_run(&function, &account.sqs, &work.url, 2).await;
    let delivered = account.delivered(&queue).await;
    assert_eq!(delivered.len(), 2, "one alert per account: {delivered:?}");
    for (id, checked) in accounts {
        let (_, alert) = alert_for(&delivered, id);
        assert_eq!(alert["run_id"], first.as_str(), "{alert:#}");
        assert_eq!(&key_ids(&alert["findings"]), expected(id), "{alert:#}");
        assert_eq!(alert["remediated"], serde_json::json!([]), "{alert:#}");
        for finding in alert["findings"].as_array().into_iter().flatten() {
            assert_eq!(finding["key_age_days"], 30);
            assert_eq!(finding["change"], "new");
            assert!(finding["deactivate_on"].is_string(), "{finding}");
        }
        assert!(checked.key_statuses().await.values().all(|s| s == "Active"));
        let imported = hub_keys(checked).await;
        assert_eq!(
            imported.keys().cloned().collect::<Vec<_>>(),
            *expected(id),
            "{id}: each account's findings in its own hub"
        );
        assert!(
            imported
                .values()
                .all(|(state, status)| state == "ACTIVE" && status == "Active"),
            "{imported:?}"
        );
        let emf = emf_line(&function, &first, Some(id));
        let new = expected(id).len() as u64;
        assert_eq!(
            (
                emf["NewFindings"].as_u64(),
                emf["OldestOpenFindingDays"].as_u64()
            ),
            (Some(new), Some(0))
        );
    }

    ledger.age(7).await;
    proxy.take_log();
    let second = organization_run(&function, &account.sqs, &work.url, 2).await;
    let requests = proxy.requests();
    assert_eq!(
        requests.get("securityhub:GetFindings"),
        Some(&3),
        "120 findings read back 100 a page in the management account, 3 in one page in the member: {requests:?}"
    );
    let delivered = account.delivered(&queue).await;
    assert_eq!(delivered.len(), 2, "one alert per account: {delivered:?}");
    let emails = moto.published_emails(&topic);
    for (id, checked) in accounts {
        let updated = hub_keys(checked).await;
        assert_eq!(updated.keys().cloned().collect::<Vec<_>>(), *expected(id));
        assert!(
            updated
                .values()
                .all(|(state, status)| state == "ACTIVE" && status == "Inactive"),
            "deactivated in the run, shown Inactive: {updated:?}"
        );
        assert!(checked
            .key_statuses()
            .await
            .values()
            .all(|s| s == "Inactive"));
        let (subject, alert) = alert_for(&delivered, id);
        assert_eq!(alert["run_id"], second.as_str(), "{alert:#}");
        let n = expected(id).len();
        assert!(
            subject.ends_with(&format!(", {n} deactivated")),
            "{subject}"
        );
        assert_eq!(&key_ids(&alert["remediated"]), expected(id));
        let (_, email) = emails
            .iter()
            .rev()
            .find(|(subject, _)| subject.contains(id))
            .unwrap_or_else(|| panic!("an email for {id}"));
        for key in expected(id) {
            assert!(
                email.contains(&format!("--access-key-id {key} --status Active")),
                "the undo command for {key}:\n{email}"
            );
        }
        let emf = emf_line(&function, &second, Some(id));
        assert_eq!(emf["OldestOpenFindingDays"], 7);
    }
}

/// Every rule on (`RULES=all`), through the shipped binary, the credential report and live reads, against moto
/// with the proxy dating keys and their last uses per user (moto dates both "now"; the proxy rewrites
/// `CreateDate`, `LastUsedDate` and the report's dates in IAM's answers, in the open). Each user breaks exactly
/// the rule seeded for them; each finding names its rule, controls and evidence; the alert counts each rule;
/// Security Hub holds each under its own generator; an EMF line a rule counts its findings; and the next run with
/// `ALERTS=changes` announces nothing again.
#[tokio::test]
async fn every_rule_through_the_binary_finds_exactly_what_it_should() {
    let moto = Moto::start();
    let account: Account = moto.account().await;
    let proxy = Proxy::start(&moto.endpoint);
    // (user, console password, keys, used, key age in days, days since the last use, the rules it breaks)
    type Plan<'a> = (&'a str, bool, usize, bool, i64, i64, &'a [&'a str]);
    let plan: [Plan; 6] = [
        (
            "ann",
            true,
            1,
            false,
            10,
            0,
            &["cis-1.11-never-used-key-on-console-user"],
        ),
        ("bob", false, 1, true, 60, 50, &["unused-key"]),
        ("cat", false, 2, true, 30, 1, &["two-active-keys"]),
        ("dan", false, 1, true, 200, 1, &["key-not-rotated"]),
        ("eve", true, 1, true, 20, 2, &[]),
        (
            "fay",
            false,
            1,
            false,
            100,
            0,
            &["unused-key", "key-not-rotated"],
        ),
    ];
    let mut expected: Vec<(String, String)> = Vec::new();
    let mut keys_of = std::collections::BTreeMap::new();
    for (user, password, keys, used, created_days, used_days, rules) in plan {
        if password {
            account.console_user(user).await;
        } else {
            account.user(user).await;
        }
        let mut ids = Vec::new();
        for _ in 0..keys {
            let key = account.key(user).await;
            if used {
                account.use_key(&key).await;
            }
            ids.push(key.id);
        }
        ids.sort();
        proxy.age_user(user, created_days, used_days);
        for rule in rules {
            expected.push((user.to_string(), rule.to_string()));
        }
        keys_of.insert(user, ids);
    }
    expected.sort();
    let (topic, queue) = account.topic_with_queue().await;
    let ledger = LedgerTable::create(&account.config).await;

    let api = RuntimeApi::start();
    let function = Function::start(
        shipped_binary(),
        &api,
        &proxy.url,
        &[
            ("FINDINGS_TOPIC_ARN", &topic),
            ("RULES", "all"),
            ("LEDGER_TABLE", &ledger.name),
            ("ALERTS", "changes"),
            ("SECURITY_HUB", "true"),
        ],
    );
    let report = function.invoke_ok("events/scheduled.json", &event_file("scheduled.json"));
    let findings = report["findings"].as_array().expect("findings");
    let mut got: Vec<(String, String)> = findings
        .iter()
        .map(|f| {
            (
                f["user_name"].as_str().unwrap_or_default().to_string(),
                f["rule"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, expected, "{report:#}");
    assert_eq!(
        report["rules"].as_array().map(Vec::len),
        Some(4),
        "{report:#}"
    );
    let of = |user: &str, rule: &str| -> &Value {
        findings
            .iter()
            .find(|f| f["user_name"] == user && f["rule"] == rule)
            .unwrap_or_else(|| panic!("{user} {rule}"))
    };
    // The evidence each rule used, and the key it names.
    let bob = of("bob", "unused-key");
    assert_eq!(bob["access_key_id"], keys_of["bob"][0].as_str());
    assert_eq!(bob["days_counted"], 50, "{bob}");
    assert!(bob["key_last_used"].is_string(), "{bob}");
    assert!(
        bob["controls"].to_string().contains("CIS AWS v7.0 2.11"),
        "{bob}"
    );
    assert!(
        bob["controls"]
            .to_string()
            .contains("AWS Security Hub IAM.22"),
        "{bob}"
    );
    let fay = of("fay", "unused-key");
    assert_eq!(
        (fay["days_counted"].as_i64(), fay["key_last_used"].is_null()),
        (Some(100), true)
    );
    let cat = of("cat", "two-active-keys");
    let mut cat_keys = vec![cat["access_key_id"]
        .as_str()
        .unwrap_or_default()
        .to_string()];
    cat_keys.extend(
        cat["other_access_key_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|id| id.as_str().map(str::to_string)),
    );
    cat_keys.sort();
    assert_eq!(cat_keys, keys_of["cat"], "one finding naming both: {cat}");
    assert_eq!(
        cat["finding_id"], "123456789012/cat/two-active-keys",
        "{cat}"
    );
    assert_eq!(of("dan", "key-not-rotated")["days_counted"], 200);
    assert_eq!(
        of("ann", "cis-1.11-never-used-key-on-console-user")["finding_id"],
        format!("123456789012/ann/{}", keys_of["ann"][0]),
        "today's rule keeps its finding IDs"
    );

    // One alert, each rule counted in its subject, each group in its own words.
    let delivered = account.delivered(&queue).await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let (subject, document) = &delivered[0];
    assert_eq!(
        subject,
        "keywatch: 123456789012: 1 never used (console), 2 unused, 1 two active keys, 2 not rotated (6 new)"
    );
    assert_eq!(
        document["findings_by_rule"]["unused-key"], 2,
        "{document:#}"
    );
    let (_, email) = moto.published_emails(&topic).pop().expect("an email");
    for needle in [
        "== access keys unused for 45 days (unused-key): 2 ==",
        "never used, created",
        "(100 days ago)",
        "(50 days ago)",
        &format!(
            "aws iam get-access-key-last-used --access-key-id {}",
            keys_of["cat"][1]
        ),
        "== access keys not rotated in 90 days (key-not-rotated): 2 ==",
    ] {
        assert!(email.contains(needle), "{needle:?}:\n{email}");
    }

    // Security Hub: each rule a generator of its own, with its own requirements.
    let hub = account.hub_findings().await;
    let mut generators: Vec<(String, String)> = hub
        .iter()
        .map(|f| {
            (
                f.generator_id.clone().unwrap_or_default(),
                f.id.clone().unwrap_or_default(),
            )
        })
        .collect();
    generators.sort();
    let mut want: Vec<(String, String)> = findings
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_string(),
                f["finding_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    want.sort();
    assert_eq!(generators, want);
    let rotated = hub
        .iter()
        .find(|f| f.generator_id.as_deref() == Some("key-not-rotated"))
        .expect("a key-not-rotated finding");
    let requirements = rotated
        .compliance
        .as_ref()
        .and_then(|c| c.related_requirements.clone())
        .unwrap_or_default();
    assert!(
        requirements.contains(&"CIS AWS Foundations Benchmark v7.0/2.12".to_string()),
        "{requirements:?}"
    );

    // A metrics line a rule, each with its own count.
    let run_id = report["run_id"].as_str().unwrap_or_default();
    let by_rule: std::collections::BTreeMap<String, u64> = function
        .logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line.get("_aws").is_some() && line["run_id"] == run_id)
        .filter_map(|line| {
            Some((
                line["Rule"].as_str()?.to_string(),
                line["Findings"].as_u64()?,
            ))
        })
        .collect();
    assert_eq!(
        by_rule,
        [
            ("cis-1.11-never-used-key-on-console-user", 1),
            ("key-not-rotated", 2),
            ("two-active-keys", 1),
            ("unused-key", 2),
        ]
        .map(|(rule, n)| (rule.to_string(), n))
        .into()
    );

    // Fully live (`inventory_source: api`, no report): every user's keys read live, a last use that only a
    // live read gives included, to the same findings.
    let live = function.invoke_ok(
        "manual, live inventory",
        r#"{"dry_run": true, "inventory_source": "api"}"#,
    );
    let mut live_got: Vec<(String, String)> = live["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["user_name"].as_str().unwrap_or_default().to_string(),
                f["rule"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    live_got.sort();
    assert_eq!(live_got, expected, "{live:#}");

    // The next run finds the same, and says nothing: every finding is open, none new.
    let again = function.invoke_ok("events/scheduled.json", &event_file("scheduled.json"));
    assert_eq!(
        again["findings"].as_array().map(Vec::len),
        Some(expected.len())
    );
    assert_eq!(again["new"], serde_json::json!([]), "{again:#}");
    assert!(
        account.delivered(&queue).await.is_empty(),
        "nothing changed, nothing published"
    );
}

/// The `EventsOutOfScope` values of the EMF lines the function printed, in order.
fn out_of_scope_counts(function: &Function) -> Vec<u64> {
    function
        .logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line.get("_aws").is_some())
        .filter_map(|line| line[keywatch::metrics::EVENTS_OUT_OF_SCOPE].as_u64())
        .collect()
}

/// A shared CloudTrail fixture (`tests/fixtures/cloudtrail`), moved into moto's account and onto `user`.
fn cloudtrail_event(name: &str, user: &str, key: Option<&str>) -> Value {
    let path = project_dir().join("tests/fixtures/cloudtrail").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut event: Value = serde_json::from_str(&text.replace("111122223333", MANAGEMENT))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let detail = &mut event["detail"];
    if detail["requestParameters"].get("userName").is_some() {
        detail["requestParameters"]["userName"] = user.into();
    }
    if detail["responseElements"].get("accessKey").is_some() {
        detail["responseElements"]["accessKey"]["userName"] = user.into();
        if let Some(key) = key {
            detail["responseElements"]["accessKey"]["accessKeyId"] = key.into();
        }
    }
    event
}

/// The rule's pattern against moto's own EventBridge: each of the nine calls it lists, as IAM's CloudTrail event,
/// reaches the queue; the same calls from another event source, another detail-type, and IAM calls that cannot
/// make or resolve a finding do not.
#[tokio::test]
async fn the_event_pattern_matches_each_listed_call_and_nothing_else() {
    use support::pump::{take_bodies, WorkQueue};
    let moto = Moto::start();
    let account: Account = moto.account().await;
    let queue = WorkQueue::create(&account.sqs, "keywatch-events", 60, 3).await;
    let base = cloudtrail_event("create-access-key-for-another-user.json", "u", None);
    let named = |name: &str| {
        let mut event = base.clone();
        event["detail"]["eventName"] = name.into();
        event["detail"]["eventID"] = format!("id-{name}").into();
        event
    };
    let mut events: Vec<Value> = keywatch::cloudtrail::EVENT_NAMES
        .iter()
        .map(|n| named(n))
        .collect();
    for unrelated in [
        "DeleteRole",
        "CreateRole",
        "AttachUserPolicy",
        "GetUser",
        "ListAccessKeys",
    ] {
        events.push(named(unrelated));
    }
    let mut other_source = named("CreateAccessKey");
    other_source["detail"]["eventSource"] = "sts.amazonaws.com".into();
    other_source["detail"]["eventID"] = "id-other-source".into();
    let mut other_type = named("CreateAccessKey");
    other_type["detail-type"] = "AWS Console Sign In via CloudTrail".into();
    other_type["detail"]["eventID"] = "id-other-type".into();
    events.extend([other_source, other_type]);
    support::eventbridge::route_through_rule(
        &moto.endpoint,
        &keywatch::cloudtrail::event_pattern(),
        &queue.arn,
        &events,
    );
    let mut delivered: Vec<String> = take_bodies(&account.sqs, &queue.url)
        .await
        .iter()
        .map(|body| {
            let event: Value = serde_json::from_str(body).expect("EventBridge delivers JSON");
            event["detail"]["eventID"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    delivered.sort();
    let mut wanted: Vec<String> = keywatch::cloudtrail::EVENT_NAMES
        .iter()
        .map(|n| format!("id-{n}"))
        .collect();
    wanted.sort();
    assert_eq!(delivered, wanted);
}

/// Minutes, not a day: an administrator creates a key for a console user; its CloudTrail event goes through
/// moto's EventBridge (a rule with keywatch's pattern, an SQS target) into the queue, the pump hands it to the
/// shipped binary, and the alert names the key and who created it for whom. Unrelated events never reach the
/// queue; another user's open finding is neither resolved nor announced again; the next scheduled run with
/// `ALERTS=changes` says nothing about the key.
#[tokio::test]
async fn an_iam_event_checks_its_user_through_eventbridge_and_the_queue() {
    use support::pump::{Pump, Stop, WorkQueue};
    let moto = Moto::start();
    let account: Account = moto.account().await;
    account.console_user("old-hand").await;
    let old_key = account.key("old-hand").await.id;
    account.console_user("new-hire").await;
    let (topic, queue) = account.topic_with_queue().await;
    let ledger = LedgerTable::create(&account.config).await;
    let events = WorkQueue::create(&account.sqs, "keywatch-events", 60, 3).await;
    let api = RuntimeApi::start();
    let function = Function::start(
        shipped_binary(),
        &api,
        &moto.endpoint,
        &[
            ("FINDINGS_TOPIC_ARN", &topic),
            ("LEDGER_TABLE", &ledger.name),
            ("ALERTS", "changes"),
            ("SECURITY_HUB", "true"),
        ],
    );
    let sweep = function.invoke_ok("events/scheduled.json", &event_file("scheduled.json"));
    assert_eq!(
        finding_keys(&sweep),
        [("old-hand".to_string(), old_key.clone())]
    );
    assert_eq!(account.delivered(&queue).await.len(), 1);
    let old_item = ledger.raw_attributes(&old_key).await;

    let new_key = account.key("new-hire").await.id;
    let created = cloudtrail_event(
        "create-access-key-for-another-user.json",
        "new-hire",
        Some(&new_key),
    );
    let mut other_source = created.clone();
    other_source["detail"]["eventSource"] = "sts.amazonaws.com".into();
    let mut delete_role = created.clone();
    delete_role["detail"]["eventName"] = "DeleteRole".into();
    support::eventbridge::route_through_rule(
        &moto.endpoint,
        &keywatch::cloudtrail::event_pattern(),
        &events.arn,
        &[other_source, created, delete_role],
    );
    let pumped = Pump::new(&account.sqs, &events.url)
        .await
        .run(&function)
        .await;
    function.assert_running();
    assert_eq!(pumped.stopped, Stop::Drained, "{pumped:#?}");
    assert_eq!(
        (
            pumped.records,
            pumped.deleted,
            pumped.failed,
            pumped.function_errors
        ),
        (1, 1, 0, 0),
        "only the CreateAccessKey event of iam.amazonaws.com matched: {pumped:#?}"
    );

    let delivered = account.delivered(&queue).await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let (subject, alert) = &delivered[0];
    assert_eq!(
        subject,
        "keywatch: 1 never-used access key on a console user in 123456789012 (1 new)"
    );
    assert_eq!(
        key_ids(&alert["findings"]),
        std::slice::from_ref(&new_key),
        "only the user the event named: {alert:#}"
    );
    let cause = &alert["findings"][0]["caused_by"];
    assert_eq!(cause["event_name"], "CreateAccessKey", "{alert:#}");
    assert_eq!(
        cause["actor_arn"],
        "arn:aws:iam::123456789012:user/ops-admin"
    );
    assert_eq!(cause["by_self"], false);
    assert_eq!(cause["source_ip"], "198.51.100.23");
    assert_eq!(alert["resolved"], serde_json::json!([]), "{alert:#}");
    let (_, email) = moto.published_emails(&topic).pop().expect("an email");
    assert!(
        email.contains(
            "CreateAccessKey by arn:aws:iam::123456789012:user/ops-admin (someone else, for this user) at \
             2026-11-30T10:02:41Z from 198.51.100.23"
        ),
        "{email}"
    );
    // In Security Hub too: new-hire's finding imported, old-hand's left ACTIVE, not archived by a check that
    // did not read old-hand.
    let hub = hub_keys(&account).await;
    for key in [&old_key, &new_key] {
        assert_eq!(
            hub.get(key).map(|(state, _)| state.as_str()),
            Some("ACTIVE"),
            "{hub:?}"
        );
    }
    // old-hand's item is as the sweep left it: an event-driven check touches only its own users.
    assert_eq!(ledger.raw_attributes(&old_key).await, old_item);

    // The same change invoked by hand (events/cloudtrail-create-access-key.json): the manual check's report,
    // of the one user, read with the user check's calls alone (no credential report, no ListUsers).
    let by_hand = function.invoke_ok(
        "events/cloudtrail-create-access-key.json",
        &event_file("cloudtrail-create-access-key.json"),
    );
    assert_eq!(
        finding_keys(&by_hand),
        [("new-hire".to_string(), new_key.clone())],
        "{by_hand:#}"
    );
    assert_eq!(by_hand["users_checked"], serde_json::json!(["new-hire"]));
    let iam: std::collections::BTreeMap<String, u64> = by_hand["api_calls"]["by_operation"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(op, _)| op.starts_with("iam:"))
        .map(|(op, n)| (op.clone(), n.as_u64().unwrap_or_default()))
        .collect();
    assert_eq!(
        iam,
        [
            ("iam:GetAccessKeyLastUsed", 1),
            ("iam:GetLoginProfile", 1),
            ("iam:GetUser", 1),
            ("iam:ListAccessKeys", 1),
            ("iam:ListUserTags", 1),
        ]
        .map(|(op, n)| (op.to_string(), n))
        .into(),
        "{by_hand:#}"
    );
    assert!(
        account.delivered(&queue).await.is_empty(),
        "open already: nothing new"
    );
    // A failed call, and an account outside the deployment: nothing checked, and why.
    let failed = function.invoke_ok(
        "create-access-key-failed.json",
        &cloudtrail_event("create-access-key-failed.json", "new-hire", None).to_string(),
    );
    assert!(
        failed["skipped"]
            .as_str()
            .unwrap_or_default()
            .contains("failed"),
        "{failed}"
    );
    let mut elsewhere = cloudtrail_event("create-access-key-for-self.json", "new-hire", None);
    elsewhere["detail"]["recipientAccountId"] = "999999999999".into();
    let outside = function.invoke_ok("an event of another account", &elsewhere.to_string());
    assert!(
        outside["skipped"]
            .as_str()
            .unwrap_or_default()
            .contains("999999999999"),
        "{outside}"
    );
    assert_eq!(out_of_scope_counts(&function), [1], "counted in a metric");

    // The key deleted: the user's DeleteAccessKey event resolves its finding, with the reason, at once.
    account
        .iam
        .delete_access_key()
        .user_name("new-hire")
        .access_key_id(&new_key)
        .send()
        .await
        .expect("delete the key");
    let mut deleted = cloudtrail_event("create-access-key-for-another-user.json", "new-hire", None);
    deleted["detail"]["eventName"] = "DeleteAccessKey".into();
    deleted["detail"]["requestParameters"]["accessKeyId"] = new_key.clone().into();
    deleted["detail"]["responseElements"] = Value::Null;
    let resolved = function.invoke_ok("DeleteAccessKey", &deleted.to_string());
    assert_eq!(resolved["findings"], serde_json::json!([]), "{resolved:#}");
    assert_eq!(
        resolved["resolved"][0]["access_key_id"],
        new_key.as_str(),
        "{resolved:#}"
    );
    assert_eq!(
        resolved["resolved"][0]["reason"], "key_deleted",
        "{resolved:#}"
    );
    let delivered = account.delivered(&queue).await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert!(delivered[0].0.contains("1 resolved"), "{}", delivered[0].0);

    // The next sweep: old-hand's finding open, nothing new, nothing published.
    let next = function.invoke_ok("events/scheduled.json", &event_file("scheduled.json"));
    assert_eq!(
        next["findings"].as_array().map(Vec::len),
        Some(1),
        "{next:#}"
    );
    assert_eq!(next["new"], serde_json::json!([]), "{next:#}");
    assert!(account.delivered(&queue).await.is_empty());
}

/// A burst, and events that cannot be checked, from the queue as EventBridge fills it: 200 events for 100 users
/// in batches of 10, each user's two events side by side, checked once per batch (GetUser counts the users each
/// batch named), every finding alerted once; a body that is not JSON and an event naming no user fail their own
/// records (and reach the dead-letter queue), while a failed call, a user deleted since and an account outside
/// the deployment are acknowledged, with nothing checked or published for them.
#[tokio::test]
async fn a_burst_of_iam_events_and_events_that_cannot_be_checked() {
    use support::pump::{Pump, Stop, WorkQueue};
    const USERS: usize = 100;
    let moto = Moto::start();
    let account: Account = moto.account().await;
    let names: Vec<String> = (0..USERS).map(|n| format!("u{n:03}")).collect();
    let seeded = account.owned_console_users(&names, "team-a").await;
    let (topic, queue) = account.topic_with_queue().await;
    let ledger = LedgerTable::create(&account.config).await;
    // Visible again after a second, dead-lettered at the second receive: a bad record is retried once.
    let events = WorkQueue::create(&account.sqs, "keywatch-events", 1, 2).await;
    let proxy = Proxy::start(&moto.endpoint);
    let api = RuntimeApi::start();
    let function = Function::start(
        shipped_binary(),
        &api,
        &proxy.url,
        &[
            ("FINDINGS_TOPIC_ARN", &topic),
            ("LEDGER_TABLE", &ledger.name),
            ("ALERTS", "changes"),
            ("OWNER_TAG_KEY", ""),
        ],
    );
    let mut bodies: Vec<String> = Vec::new();
    for name in &names {
        bodies.push(
            cloudtrail_event("create-access-key-for-another-user.json", name, None).to_string(),
        );
        bodies.push(cloudtrail_event("create-login-profile.json", name, None).to_string());
    }
    let send = |bodies: Vec<String>| {
        let sqs = account.sqs.clone();
        let url = events.url.clone();
        async move {
            for body in bodies {
                sqs.send_message()
                    .queue_url(&url)
                    .message_body(body)
                    .send()
                    .await
                    .expect("send an event");
            }
        }
    };
    send(bodies).await;
    let pumped = Pump::new(&account.sqs, &events.url)
        .await
        .batch_size(10)
        .run(&function)
        .await;
    function.assert_running();
    assert_eq!(pumped.stopped, Stop::Drained, "{pumped:#?}");
    assert_eq!(
        (
            pumped.records,
            pumped.deleted,
            pumped.failed,
            pumped.function_errors
        ),
        (200, 200, 0, 0),
        "{pumped:#?}"
    );
    // Each batch checks each user it names once, whatever the number of its events.
    let named_per_batch: usize = pumped
        .batches
        .iter()
        .map(|batch| {
            batch
                .records
                .iter()
                .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
                .filter_map(|e| {
                    e["detail"]["requestParameters"]["userName"]
                        .as_str()
                        .map(str::to_string)
                })
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        })
        .sum();
    let requests = proxy.requests();
    assert_eq!(
        requests.get("iam:GetUser"),
        Some(&(named_per_batch as u64)),
        "{requests:?}"
    );
    assert!(
        named_per_batch < 200,
        "checked per user, not per event: {named_per_batch}"
    );
    assert_eq!(
        requests.get("iam:GetCredentialReport"),
        None,
        "{requests:?}"
    );
    assert_eq!(requests.get("iam:ListUsers"), None, "{requests:?}");
    // Every finding alerted exactly once, across the batches' alerts.
    let delivered = account.delivered(&queue).await;
    let mut alerted: Vec<String> = delivered
        .iter()
        .flat_map(|(_, alert)| key_ids(&alert["findings"]))
        .collect();
    alerted.sort();
    let mut keys: Vec<String> = seeded.iter().map(|(_, key)| key.clone()).collect();
    keys.sort();
    assert_eq!(alerted, keys, "each of the {USERS} findings once");

    // What cannot be checked.
    let no_user = {
        let mut event = cloudtrail_event("create-access-key-for-self.json", "u000", None);
        event["detail"]["responseElements"] = Value::Null;
        event["detail"]["userIdentity"] = serde_json::json!({"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/admin/x"});
        event.to_string()
    };
    let mut elsewhere = cloudtrail_event("create-access-key-for-another-user.json", "u001", None);
    elsewhere["detail"]["recipientAccountId"] = "999999999999".into();
    send(vec![
        "this is not JSON".to_string(),
        no_user,
        cloudtrail_event("create-access-key-failed.json", "u002", None).to_string(),
        cloudtrail_event(
            "create-access-key-for-another-user.json",
            "deleted-since",
            None,
        )
        .to_string(),
        elsewhere.to_string(),
    ])
    .await;
    proxy.take_log();
    let pumped = Pump::new(&account.sqs, &events.url)
        .await
        .batch_size(10)
        .run(&function)
        .await;
    function.assert_running();
    assert_eq!(pumped.function_errors, 0, "never a crash: {pumped:#?}");
    let failed: std::collections::BTreeSet<String> = pumped
        .batches
        .iter()
        .flat_map(|batch| {
            batch
                .records
                .iter()
                .filter(|r| batch.failed.contains(&r.message_id))
                .map(|r| r.body.chars().take(40).collect::<String>())
        })
        .collect();
    assert_eq!(
        failed.len(),
        2,
        "the two unreadable records, each its own: {failed:?}"
    );
    assert!(failed.contains("this is not JSON"), "{failed:?}");
    let dead = support::pump::take_bodies(&account.sqs, &events.dlq_url).await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    let requests = proxy.requests();
    assert_eq!(
        requests.get("iam:GetUser"),
        Some(&1),
        "only the user deleted since is looked up: {requests:?}"
    );
    // No alert: at most the failed-check notice of the body that is no message at all, on its last attempt.
    let said = account.delivered(&queue).await;
    assert!(
        said.iter()
            .all(|(_, message)| message.get("findings").is_none()),
        "{said:?}"
    );
    assert_eq!(out_of_scope_counts(&function), [1], "counted in a metric");
    let logs = function.logs();
    for said in [
        "IAM event not read",
        "no user in requestParameters.userName",
        "a failed call changes nothing",
        "IAM event for an account this deployment does not check",
    ] {
        assert!(logs.contains(said), "{said:?} in the logs");
    }
}

/// The grace period (`GRACE_PERIOD_HOURS=24`): a key an event finds fresh is pending, not alerted, and a one-time
/// EventBridge Scheduler schedule (in moto: stored, never fired) is made to put the same change back on the event
/// queue when the grace ends, deleting itself after; a retried check makes no second one. Fired by the test (the
/// key then a day past its grace, through the proxy), it checks the user again and alerts, still saying who made
/// the key.
#[tokio::test]
async fn a_fresh_key_is_checked_again_when_its_grace_period_ends() {
    use support::pump::{Pump, WorkQueue};
    let moto = Moto::start();
    let account: Account = moto.account().await;
    account.console_user("new-hire").await;
    let key = account.key("new-hire").await.id;
    let (topic, queue) = account.topic_with_queue().await;
    let ledger = LedgerTable::create(&account.config).await;
    let events = WorkQueue::create(&account.sqs, "keywatch-events", 60, 3).await;
    let scheduler = aws_sdk_scheduler::Client::new(&account.config);
    scheduler
        .create_schedule_group()
        .name("keywatch-rechecks")
        .send()
        .await
        .expect("a schedule group");
    let role = "arn:aws:iam::123456789012:role/keywatch-recheck";
    let proxy = Proxy::start(&moto.endpoint);
    let api = RuntimeApi::start();
    let function = Function::start(
        shipped_binary(),
        &api,
        &proxy.url,
        &[
            ("FINDINGS_TOPIC_ARN", &topic),
            ("LEDGER_TABLE", &ledger.name),
            ("ALERTS", "changes"),
            ("GRACE_PERIOD_HOURS", "24"),
            ("RECHECK_QUEUE_ARN", &events.arn),
            ("RECHECK_ROLE_ARN", role),
            ("RECHECK_SCHEDULE_GROUP", "keywatch-rechecks"),
        ],
    );
    let event = cloudtrail_event(
        "create-access-key-for-another-user.json",
        "new-hire",
        Some(&key),
    );
    let report = function.invoke_ok("CreateAccessKey", &event.to_string());
    assert_eq!(report["findings"], serde_json::json!([]), "{report:#}");
    assert_eq!(
        report["pending"][0]["access_key_id"],
        key.as_str(),
        "{report:#}"
    );
    let grace_ends = time::OffsetDateTime::parse(
        report["pending"][0]["grace_ends"]
            .as_str()
            .expect("grace_ends"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("an RFC 3339 time");
    let recheck = &report["rechecks"][0];
    assert_eq!(recheck["user_name"], "new-hire", "{report:#}");
    let at = time::OffsetDateTime::parse(
        recheck["at"].as_str().expect("at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("an RFC 3339 time");
    assert!(
        at >= grace_ends && at - grace_ends <= time::Duration::minutes(1),
        "{at} for a grace ending {grace_ends}"
    );
    assert!(
        account.delivered(&queue).await.is_empty(),
        "pending: no alert yet"
    );
    // A retry of the same check: the same schedule, not a second one.
    function.invoke_ok("CreateAccessKey again", &event.to_string());
    let listed = scheduler
        .list_schedules()
        .group_name("keywatch-rechecks")
        .send()
        .await
        .expect("list the schedules")
        .schedules;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let schedule = scheduler
        .get_schedule()
        .group_name("keywatch-rechecks")
        .name(recheck["schedule_name"].as_str().expect("a name"))
        .send()
        .await
        .expect("the schedule");
    let expected = at
        .format(time::macros::format_description!(
            "at([year]-[month]-[day]T[hour]:[minute]:[second])"
        ))
        .expect("a time");
    assert_eq!(schedule.schedule_expression(), Some(expected.as_str()));
    assert_eq!(schedule.schedule_expression_timezone(), Some("UTC"));
    assert_eq!(
        schedule.action_after_completion(),
        Some(&aws_sdk_scheduler::types::ActionAfterCompletion::Delete)
    );
    let target = schedule.target().expect("a target");
    assert_eq!(
        (target.arn(), target.role_arn()),
        (events.arn.as_str(), role)
    );

    // The grace has ended (the key a day older, through the proxy): the schedule fires, by the test's hand.
    proxy.age_user("new-hire", 2, 0);
    account
        .sqs
        .send_message()
        .queue_url(&events.url)
        .message_body(target.input().expect("the change").to_string())
        .send()
        .await
        .expect("fire the schedule");
    let pumped = Pump::new(&account.sqs, &events.url)
        .await
        .run(&function)
        .await;
    assert_eq!((pumped.records, pumped.failed), (1, 0), "{pumped:#?}");
    let delivered = account.delivered(&queue).await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let alert = &delivered[0].1;
    assert_eq!(key_ids(&alert["findings"]), std::slice::from_ref(&key));
    assert_eq!(
        alert["findings"][0]["caused_by"]["actor_arn"],
        "arn:aws:iam::123456789012:user/ops-admin"
    );
}

/// An organization: a member account's IAM event is checked in that account through the member role (one
/// `sts:AssumeRole`), its alert owned by the account's owner tag as a dispatched check's would be; an event of an
/// account the deployment excludes is acknowledged, never checked.
#[tokio::test]
async fn a_member_accounts_iam_event_is_checked_through_the_member_role() {
    use support::pump::WorkQueue;
    let moto = Moto::start();
    let own: Account = moto.account().await;
    let organizations = support::create_organization(&moto).await;
    let dev = support::create_member(&organizations, "dev").await;
    let excluded = support::create_member(&organizations, "excluded").await;
    let denied = support::create_member(&organizations, "denied").await;
    organizations
        .tag_resource()
        .resource_id(&dev)
        .tags(
            aws_sdk_organizations::types::Tag::builder()
                .key("owner")
                .value("team-dev")
                .build()
                .expect("a tag"),
        )
        .send()
        .await
        .expect("tag the account");
    let member = support::member_account(&moto, &dev).await;
    member.console_user("dev-alice").await;
    let key = member.key("dev-alice").await.id;
    let (topic, queue) = own.topic_with_queue().await;
    let work = WorkQueue::create(&own.sqs, "keywatch-work", 60, 3).await;
    let proxy = Proxy::start(&moto.endpoint);
    let api = RuntimeApi::start();
    let function = Function::start(
        shipped_binary(),
        &api,
        &proxy.url,
        &[
            ("FINDINGS_TOPIC_ARN", &topic),
            ("ACCOUNTS", "organization"),
            ("EXCLUDE_ACCOUNTS", &excluded),
            ("WORK_QUEUE_URL", &work.url),
        ],
    );
    let mut event = cloudtrail_event(
        "create-access-key-for-another-user.json",
        "dev-alice",
        Some(&key),
    );
    event["detail"]["recipientAccountId"] = dev.clone().into();
    let report = function.invoke_ok("a member's CreateAccessKey", &event.to_string());
    assert_eq!(report["account_id"], dev.as_str(), "{report:#}");
    assert_eq!(
        finding_keys(&report),
        [("dev-alice".to_string(), key.clone())]
    );
    assert_eq!(report["findings"][0]["owner"], "team-dev", "{report:#}");
    let requests = proxy.requests();
    assert_eq!(requests.get("sts:AssumeRole"), Some(&1), "{requests:?}");
    assert_eq!(requests.get("iam:GetUser"), Some(&1), "{requests:?}");
    assert_eq!(
        requests.get("iam:GetCredentialReport"),
        None,
        "{requests:?}"
    );
    let delivered = own.delivered(&queue).await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0].1["account_id"], dev.as_str());
    assert_eq!(delivered[0].1["owner"], "team-dev");

    proxy.take_log();
    event["detail"]["recipientAccountId"] = excluded.clone().into();
    let skipped = function.invoke_ok("an excluded account's event", &event.to_string());
    assert!(
        skipped["skipped"]
            .as_str()
            .unwrap_or_default()
            .contains(&excluded),
        "{skipped}"
    );
    let requests = proxy.requests();
    assert_eq!(
        requests.get("sts:AssumeRole"),
        None,
        "never checked: {requests:?}"
    );
    assert!(own.delivered(&queue).await.is_empty());

    // A member whose role is denied, from the queue: a permanent failure, announced once with the failed-check
    // notice, and its record acknowledged, not retried in vain.
    use support::proxy::{Fault, Rule};
    proxy.add(Rule::on("sts:AssumeRole", Fault::AccessDenied).param("RoleArn", &denied));
    let events = WorkQueue::create(&own.sqs, "keywatch-events", 1, 3).await;
    event["detail"]["recipientAccountId"] = denied.clone().into();
    own.sqs
        .send_message()
        .queue_url(&events.url)
        .message_body(event.to_string())
        .send()
        .await
        .expect("send the event");
    let pumped = support::pump::Pump::new(&own.sqs, &events.url)
        .await
        .run(&function)
        .await;
    assert_eq!(
        (pumped.records, pumped.deleted, pumped.failed),
        (1, 1, 0),
        "acknowledged: {pumped:#?}"
    );
    let notices = own.delivered(&queue).await;
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].0.contains(&denied), "{}", notices[0].0);
    assert!(
        notices[0].0.contains("could not be checked"),
        "{}",
        notices[0].0
    );
}

#[test]
fn a_missing_or_invalid_topic_fails_the_init() {
    let api = RuntimeApi::start();
    // Nothing listens there: a run that got past init would fail differently, and never reach AWS.
    let endpoint = format!("http://127.0.0.1:{}", support::free_port());
    let cases: [&[(&str, &str)]; 3] = [
        &[],
        &[("FINDINGS_TOPIC_ARN", "not-an-arn")],
        &[(
            "FINDINGS_TOPIC_ARN",
            "arn:aws:sqs:us-east-1:123456789012:keywatch",
        )],
    ];
    for vars in cases {
        let function = Function::start(shipped_binary(), &api, &endpoint, vars);
        // A process that passed init would poll the emulator for events and never exit.
        let status = function.wait_for_exit(Duration::from_secs(20));
        let logs = function.logs();
        assert!(
            !status.success(),
            "{vars:?}: exited with {status}; logs:\n{logs}"
        );
        let named = logs
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .any(|line| {
                line["level"] == "ERROR" && line.to_string().contains("FINDINGS_TOPIC_ARN")
            });
        assert!(
            named,
            "{vars:?}: no ERROR log line names FINDINGS_TOPIC_ARN:\n{logs}"
        );
    }
}

/// The function's own account: moto's default, and the organization's management account.
const MANAGEMENT: &str = "123456789012";

/// An emulated Organization: the management account and three ACTIVE members (two with findings or none, one
/// whose member role is denied through the proxy), plus a closed one. Returns (account ID by name, seeded
/// findings by account ID); `closed` is SUSPENDED and has no findings.
async fn organization(
    moto: &Moto,
    own: &Account,
) -> (
    std::collections::BTreeMap<&'static str, String>,
    std::collections::BTreeMap<String, Vec<(String, String)>>,
) {
    let organizations = support::create_organization(moto).await;
    let mut ids = std::collections::BTreeMap::new();
    ids.insert("management", MANAGEMENT.to_string());
    let mut findings = std::collections::BTreeMap::new();
    // Each account: (console users with a never-used key, users that are never a finding).
    let seeds: [(&str, &[&str], &[&str]); 5] = [
        ("management", &["root-admin"], &["ci-bot"]),
        ("dev", &["dev-alice", "dev-bob"], &["dev-ci"]),
        ("prod", &[], &["prod-svc"]),
        ("audit", &["audit-admin"], &[]),
        ("closed", &[], &[]),
    ];
    for (name, console_users, clean_users) in seeds {
        let account = if name == "management" {
            own
        } else {
            let id = support::create_member(&organizations, name).await;
            ids.insert(name, id.clone());
            if name == "closed" {
                organizations
                    .close_account()
                    .account_id(&id)
                    .send()
                    .await
                    .expect("close account");
                continue;
            }
            &support::member_account(moto, &id).await
        };
        let mut keys = Vec::new();
        for user in console_users {
            account.console_user(user).await;
            keys.push((user.to_string(), account.key(user).await.id));
        }
        // No console password: a programmatic user, never a finding.
        for user in clean_users {
            account.user(user).await;
            account.key(user).await;
        }
        keys.sort();
        findings.insert(ids[name].clone(), keys);
    }
    (ids, findings)
}

/// The organization through the built binary: the plan and a one-account check first (nothing sent), then the
/// schedule dispatches every ACTIVE account, and a pump plays Lambda's SQS poller over the work queue. One
/// member's role is denied, a permanent failure: its notice comes at once and its message is acknowledged, not
/// retried. Another member's STS answers 500, a transient failure: retried, its notice on the last attempt only,
/// and its message ends in the DLQ. `CheckFailed` is written once per account, not per attempt.
#[tokio::test]
async fn an_organization_goes_through_the_work_queue() {
    use support::proxy::{Fault, Proxy, Rule};
    use support::pump::{queue_depth, take_bodies, Invoke, Pump, Stop, WorkQueue};

    const MAX_RECEIVE_COUNT: u32 = 3;
    let moto = Moto::start();
    let own = moto.account().await;
    let (ids, seeded) = organization(&moto, &own).await;
    let (dev, audit, prod, closed) = (&ids["dev"], &ids["audit"], &ids["prod"], &ids["closed"]);
    let (topic, alerts) = own.topic_with_queue().await;
    // Two accounts with owners of their own, each team subscribed with a filter policy on `owner`.
    let organizations = aws_sdk_organizations::Client::new(&own.config);
    let mut team_queues = std::collections::BTreeMap::new();
    for (account, team) in [(MANAGEMENT, "platform"), (dev.as_str(), "team-dev")] {
        organizations
            .tag_resource()
            .resource_id(account)
            .tags(
                aws_sdk_organizations::types::Tag::builder()
                    .key("owner")
                    .value(team)
                    .build()
                    .expect("a tag"),
            )
            .send()
            .await
            .expect("tag the account");
        let queue = own.owner_queue(&topic, team, team).await;
        team_queues.insert(account.to_string(), (team, queue));
    }
    // The denied member has an owner too: its notice goes to that owner and to `unowned`.
    organizations
        .tag_resource()
        .resource_id(audit)
        .tags(
            aws_sdk_organizations::types::Tag::builder()
                .key("owner")
                .value("team-audit")
                .build()
                .expect("a tag"),
        )
        .send()
        .await
        .expect("tag the account");
    // One ledger, in the management account, written with the function's role for every account.
    let ledger = support::ledger::LedgerTable::create(&own.config).await;
    // 1 s visibility: a failed check is back on the queue a second later.
    let work = WorkQueue::create(&own.sqs, "keywatch-work", 1, MAX_RECEIVE_COUNT).await;

    // moto's cross-account AssumeRole ignores trust policies: the denial is the proxy's.
    let proxy = Proxy::start(&moto.endpoint);
    proxy.add(Rule::on("sts:AssumeRole", Fault::AccessDenied).param("RoleArn", audit));
    proxy.add(Rule::on("sts:AssumeRole", Fault::ServiceFailure).param("RoleArn", prod));
    // The audit team's own topic (its chat channel's): its failed-check notice goes there too.
    let audit_topic = own
        .sns
        .create_topic()
        .name("keywatch-owner-team-audit")
        .send()
        .await
        .expect("a topic")
        .topic_arn
        .expect("arn");
    let owner_topics = format!("team-audit={audit_topic}");
    let api = RuntimeApi::start();
    let max_receive_count = MAX_RECEIVE_COUNT.to_string();
    let function = Function::start(
        shipped_binary(),
        &api,
        &proxy.url,
        &[
            ("FINDINGS_TOPIC_ARN", &topic),
            ("ACCOUNTS", "organization"),
            ("WORK_QUEUE_URL", &work.url),
            ("MAX_RECEIVE_COUNT", &max_receive_count),
            // One try per call: the 500s below reach the check at once instead of after the SDK's backoff.
            ("AWS_MAX_ATTEMPTS", "1"),
            ("LEDGER_TABLE", &ledger.name),
            ("CHAT_NOTIFICATIONS", "custom"),
            ("OWNER_TOPIC_ARNS", &owner_topics),
        ],
    );
    let active: Vec<String> = seeded.keys().cloned().collect();
    assert!(
        !active.contains(closed),
        "the closed account is seeded as closed"
    );

    // The plan: every ACTIVE account and the role it is read through; nothing sent.
    let plan = function.invoke_ok("organization dry run", r#"{"dry_run": true}"#);
    assert_eq!(plan["dry_run"], true, "{plan:#}");
    let planned: Vec<(String, Value)> = plan["accounts"]
        .as_array()
        .unwrap_or_else(|| panic!("no accounts in {plan:#}"))
        .iter()
        .map(|a| {
            (
                a["account_id"].as_str().unwrap_or_default().to_string(),
                a["role_arn"].clone(),
            )
        })
        .collect();
    let expected_plan: Vec<(String, Value)> = active
        .iter()
        .map(|id| {
            let role =
                (id != MANAGEMENT).then(|| format!("arn:aws:iam::{id}:role/keywatch-member"));
            (id.clone(), serde_json::json!(role))
        })
        .collect();
    assert_eq!(planned, expected_plan, "{plan:#}");
    assert_eq!(
        queue_depth(&own.sqs, &work.url).await,
        (0, 0, 0),
        "a dry run dispatches nothing"
    );

    // One member, checked now through its role: its own findings, nothing published.
    let payload = format!(r#"{{"account_id": "{dev}", "dry_run": true}}"#);
    let report = function.invoke_ok("one-account dry run", &payload);
    assert_eq!(report["account_id"], dev.as_str(), "{report:#}");
    assert_eq!(finding_keys(&report), seeded[dev], "{report:#}");
    assert_eq!(report["notifications"], serde_json::json!([]));
    assert_eq!(queue_depth(&own.sqs, &work.url).await, (0, 0, 0));
    let delivered = own.delivered(&alerts).await;
    assert!(
        delivered.is_empty(),
        "dry runs publish nothing: {delivered:?}"
    );

    // The schedule dispatches exactly the ACTIVE accounts.
    let dispatched = function.invoke_ok("events/scheduled.json", &event_file("scheduled.json"));
    let run_id = dispatched["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!run_id.is_empty(), "{dispatched:#}");
    assert_eq!(
        dispatched,
        serde_json::json!({"run_id": run_id, "dispatched": active.len(), "accounts": active}),
        "every ACTIVE account, not the closed one {closed}"
    );

    // Lambda's poller, one record per invocation as the template configures it. What reached the findings
    // topic is read after each invocation, so each alert or notice is tied to the attempt that sent it.
    let after_each = std::cell::RefCell::new(Vec::new());
    let observed = |payload: String| {
        let (function, own, alerts, after_each) = (&function, &own, &alerts, &after_each);
        async move {
            let answer = Invoke::invoke(function, payload).await;
            let delivered = own.delivered(alerts).await;
            after_each.borrow_mut().push(delivered);
            answer
        }
    };
    let pumped = Pump::new(&own.sqs, &work.url).await.run(&observed).await;
    function.assert_running();
    let after_each = after_each.into_inner();
    assert_eq!(pumped.stopped, Stop::Drained, "{pumped:#?}");
    let attempts = MAX_RECEIVE_COUNT as usize;
    assert_eq!(
        (
            pumped.invocations,
            pumped.records,
            pumped.deleted,
            pumped.failed,
            pumped.function_errors
        ),
        (
            active.len() - 1 + attempts,
            active.len() - 1 + attempts,
            active.len() - 1,
            attempts,
            0
        ),
        "each account once, the one with 500s {attempts} times: {pumped:#?}"
    );

    let mut checked = Vec::new();
    let mut transient_counts = Vec::new();
    for (batch, delivered) in pumped.batches.iter().zip(&after_each) {
        let [record] = &batch.records[..] else {
            panic!("one record per invocation: {batch:#?}")
        };
        let item: Value = serde_json::from_str(&record.body).expect("a work item");
        assert_eq!(item["run_id"], run_id.as_str(), "{item}");
        let account = item["account_id"].as_str().expect("account_id").to_string();
        if account == *prod {
            assert_eq!(
                batch.failed,
                std::slice::from_ref(&record.message_id),
                "{batch:#?}"
            );
            transient_counts.push(record.receive_count);
            if record.receive_count < MAX_RECEIVE_COUNT {
                assert!(
                    delivered.is_empty(),
                    "a notice before the last attempt: {delivered:?}"
                );
                continue;
            }
            let [(subject, notice)] = &delivered[..] else {
                panic!("one notice on the last attempt, got {delivered:#?}")
            };
            assert_eq!(
                subject,
                &format!("keywatch: account {prod} could not be checked")
            );
            assert_eq!(notice["schema"], "keywatch.check-failed/v1", "{notice:#}");
            assert_eq!(notice["account_id"], prod.as_str(), "{notice:#}");
            assert_eq!(notice["run_id"], run_id.as_str(), "{notice:#}");
            assert_eq!(notice["permanent"], false, "{notice:#}");
            assert_eq!(notice["attempts"], MAX_RECEIVE_COUNT, "{notice:#}");
            let error = notice["error"].as_str().unwrap_or_default();
            assert!(
                error.contains("sts:AssumeRole failed (ServiceFailure)"),
                "{error}"
            );
            continue;
        }
        if account == *audit {
            // Denied: permanent, so said at once and acknowledged.
            assert!(batch.failed.is_empty(), "not retried in vain: {batch:#?}");
            assert_eq!(record.receive_count, 1);
            let [(subject, notice), (_, copy)] = &delivered[..] else {
                panic!("one notice at once, to its owner and to unowned, got {delivered:#?}")
            };
            let mut owners = [notice["owner"].clone(), copy["owner"].clone()];
            owners.sort_by_key(|o| o.to_string());
            assert_eq!(
                owners,
                [
                    serde_json::json!("team-audit"),
                    serde_json::json!("unowned")
                ]
            );
            assert_eq!(
                subject,
                &format!("keywatch: account {audit} could not be checked")
            );
            assert_eq!(
                notice["error_type"], "Keywatch.AssumeRoleFailed",
                "{notice:#}"
            );
            assert_eq!(notice["permanent"], true, "{notice:#}");
            assert_eq!(notice["attempts"], 1, "{notice:#}");
            let error = notice["error"].as_str().unwrap_or_default();
            for needle in [
                "sts:AssumeRole failed (AccessDenied)",
                "member-role.yaml",
                audit,
            ] {
                assert!(error.contains(needle), "{needle:?} not in {error}");
            }
            continue;
        }
        assert!(batch.failed.is_empty(), "{account}: {batch:#?}");
        checked.push(account.clone());
        if seeded[&account].is_empty() {
            assert!(delivered.is_empty(), "{account} is clean: {delivered:?}");
            continue;
        }
        let [(subject, document)] = &delivered[..] else {
            panic!("{account}: one alert, got {delivered:#?}")
        };
        assert!(subject.contains(&format!(" in {account}")), "{subject}");
        assert_eq!(document["account_id"], account.as_str(), "{document:#}");
        assert_eq!(document["run_id"], run_id.as_str(), "{document:#}");
        assert_eq!(
            finding_keys(document),
            seeded[&account],
            "{account}: {document:#}"
        );
    }
    checked.sort();
    let others: Vec<String> = active
        .iter()
        .filter(|a| *a != audit && *a != prod)
        .cloned()
        .collect();
    assert_eq!(checked, others, "every other account checked exactly once");
    assert_eq!(
        transient_counts,
        (1..=MAX_RECEIVE_COUNT).collect::<Vec<_>>()
    );
    // Each fault came from the proxy, once per attempt (neither is retried within an attempt here).
    let served = |fault: Fault| {
        proxy
            .log()
            .iter()
            .filter(|s| s.fault == Some(fault.clone()))
            .count()
    };
    assert_eq!(served(Fault::AccessDenied), 1);
    assert_eq!(served(Fault::ServiceFailure), attempts);

    // The metrics lines the binary wrote: CheckFailed once per account that failed, on its final failure only,
    // and never a Findings value for a check that could not look.
    let emf: Vec<Value> = function
        .logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line.get("_aws").is_some() && line["run_id"] == run_id.as_str())
        .filter(|line| line.get("AccountId").is_some())
        .collect();
    for (account, lines, counted) in [(audit, 1, 1), (prod, attempts, 1)] {
        let of: Vec<&Value> = emf
            .iter()
            .filter(|l| l["AccountId"] == account.as_str())
            .collect();
        assert_eq!(of.len(), lines, "{account}: {of:#?}");
        assert!(of.iter().all(|l| l.get("Findings").is_none()), "{of:#?}");
        let failed: u64 = of.iter().filter_map(|l| l["CheckFailed"].as_u64()).sum();
        assert_eq!(
            failed, counted,
            "{account}: CheckFailed counts the account once: {of:#?}"
        );
        // The final failure's line declares CheckFailed per account, and nothing it cannot vouch for.
        let last = of.last().expect("a line");
        assert_eq!(last["CheckFailed"], 1, "{last}");
        assert_eq!(
            emf_directives(last),
            [
                (serde_json::json!([["AccountId"], []]), vec!["CheckFailed"]),
                (serde_json::json!([[]]), vec!["ApiCalls", "DurationMs"]),
            ],
            "{account}"
        );
    }
    assert!(emf
        .iter()
        .filter(|l| l["AccountId"] != audit.as_str() && l["AccountId"] != prod.as_str())
        .all(|l| l["CheckFailed"] == 0 && l["Findings"].is_u64()));

    // Worked off: the others deleted, the transient account's message in the DLQ, and nothing else anywhere.
    assert_eq!(queue_depth(&own.sqs, &work.url).await, (0, 0, 0));
    let dead: Vec<Value> = take_bodies(&own.sqs, &work.dlq_url)
        .await
        .iter()
        .map(|b| serde_json::from_str(b).expect("a work item"))
        .collect();
    assert_eq!(
        dead,
        [serde_json::json!({"account_id": prod, "run_id": run_id})]
    );
    let late = own.delivered(&alerts).await;
    assert!(
        late.is_empty(),
        "nothing published after the pump: {late:?}"
    );
    // CHAT_NOTIFICATIONS=custom: every publish, alerts and failed-check notices alike, has a chat variant of the
    // documented schema, threaded by account and owner.
    let chat = moto.published_chat(&topic);
    support::https_sink::assert_matches_schema(
        &support::project_dir().join("tests/fixtures/chat-custom-notification.schema.json"),
        &chat,
    );
    // (eventType, threadId) of each notification.
    let threads_of = |chat: &[Value]| -> Vec<(String, String)> {
        chat.iter()
            .map(|c| {
                let field =
                    |name: &str| c["metadata"][name].as_str().unwrap_or_default().to_string();
                (field("eventType"), field("threadId"))
            })
            .collect()
    };
    let threads: std::collections::BTreeSet<(String, String)> =
        threads_of(&chat).into_iter().collect();
    for notice in [
        format!("{audit}/team-audit"),
        format!("{audit}/unowned"),
        format!("{prod}/unowned"),
    ] {
        assert!(
            threads.contains(&("check-failed".to_string(), notice.clone())),
            "{notice}: {threads:?}"
        );
    }
    assert!(
        threads.contains(&("findings".to_string(), format!("{dev}/team-dev"))),
        "{threads:?}"
    );
    assert_eq!(
        threads_of(&moto.published_chat(&audit_topic)),
        [("check-failed".to_string(), format!("{audit}/team-audit"))],
        "the team's own topic gets exactly its notice"
    );
    // The ledger: each checked account's findings under its own account ID, nothing for the others.
    let mut stored: std::collections::BTreeMap<String, Vec<(String, String)>> =
        std::collections::BTreeMap::new();
    for item in ledger.items().await {
        stored
            .entry(item.account_id)
            .or_default()
            .push((item.user_name, item.access_key_id));
    }
    for keys in stored.values_mut() {
        keys.sort();
    }
    let expected: std::collections::BTreeMap<String, Vec<(String, String)>> = seeded
        .iter()
        .filter(|(account, keys)| *account != audit && *account != prod && !keys.is_empty())
        .map(|(account, keys)| (account.clone(), keys.clone()))
        .collect();
    assert_eq!(stored, expected);

    // Each team's queue got exactly its account's alert, routed by the account's owner tag.
    for (account, (team, queue)) in &team_queues {
        let delivered = own.delivered_with_attributes(queue).await;
        let [(_, document, attributes)] = &delivered[..] else {
            panic!("{team}: one alert, got {delivered:#?}")
        };
        assert_eq!(document["account_id"], account.as_str());
        assert_eq!(finding_keys(document), seeded[account], "{team}");
        assert_eq!(attributes["owner"], *team);
        assert_eq!(attributes["kind"], "findings");
    }
}

/// Each account's calls, by operation, as its "run complete" line in the function's logs gives them for `run_id`.
fn calls_by_account(
    function: &Function,
    run_id: &str,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> {
    let logs = function.logs();
    logs.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| {
            line["fields"]["message"] == "keywatch run complete"
                && line["fields"]["run_id"] == run_id
        })
        .map(|line| {
            let fields = &line["fields"];
            let by_operation = fields["api_calls_by_operation"]
                .as_str()
                .unwrap_or_default();
            let calls = serde_json::from_str(by_operation)
                .unwrap_or_else(|e| panic!("api_calls_by_operation ({e}): {line}"));
            let account = fields["account_id"].as_str().unwrap_or_default();
            (account.to_string(), calls)
        })
        .collect()
}

/// The checks of one SQS batch run side by side in one invocation (`RECORDS_IN_PARALLEL`), and each counts only
/// its own calls: an organization's accounts checked one record a batch, then all in one batch, give each account
/// the same calls by operation, and the accounts' counts differ, so a count that took a neighbour's calls would
/// show. (The first run is not compared: it also generates each account's credential report.)
#[tokio::test]
async fn checks_side_by_side_in_one_batch_count_only_their_own_calls() {
    use support::pump::{Pump, Stop, WorkQueue};

    let moto = Moto::start();
    let own = moto.account().await;
    let (_, seeded) = organization(&moto, &own).await;
    let (topic, _alerts) = own.topic_with_queue().await;
    let work = WorkQueue::create(&own.sqs, "keywatch-work", 30, 3).await;
    let api = RuntimeApi::start();
    let function = Function::start(
        shipped_binary(),
        &api,
        &moto.endpoint,
        &[
            ("FINDINGS_TOPIC_ARN", &topic),
            ("ACCOUNTS", "organization"),
            ("WORK_QUEUE_URL", &work.url),
        ],
    );
    let accounts = seeded.len(); // the closed one is not seeded, nor checked
    let mut runs = Vec::new();
    // A first run generates each account's credential report; the two compared runs find it there alike.
    for batch_size in [1, 1, 10] {
        let dispatched = function.invoke_ok("events/scheduled.json", &event_file("scheduled.json"));
        assert_eq!(dispatched["dispatched"], accounts, "{dispatched:#}");
        let pumped = Pump::new(&own.sqs, &work.url)
            .await
            .batch_size(batch_size)
            .run(&function)
            .await;
        function.assert_running();
        assert_eq!(pumped.stopped, Stop::Drained, "{pumped:#?}");
        let sizes: Vec<usize> = pumped.batches.iter().map(|b| b.records.len()).collect();
        let expected = if batch_size == 1 {
            vec![1; accounts]
        } else {
            vec![accounts]
        };
        assert_eq!(sizes, expected, "{pumped:#?}");
        assert_eq!(
            (pumped.deleted, pumped.failed),
            (accounts, 0),
            "{pumped:#?}"
        );
        let run_id = dispatched["run_id"].as_str().unwrap_or_default();
        let calls = calls_by_account(&function, run_id);
        assert_eq!(calls.len(), accounts, "{calls:#?}");
        runs.push(calls);
    }
    let (alone, side_by_side) = (&runs[1], &runs[2]);
    let totals: std::collections::BTreeSet<u64> =
        alone.values().map(|calls| calls.values().sum()).collect();
    assert!(
        totals.len() > 1,
        "the accounts' checks must differ in calls for a mix-up to show: {alone:#?}"
    );
    assert_eq!(side_by_side, alone);
}

/// A work message that is not a work item fails its own record only, and is reported on its last attempt; the
/// runtime keeps serving. The pump's own rule: a function error leaves every record of the batch on the queue.
#[tokio::test]
async fn a_malformed_work_message_is_a_failed_record_not_a_crash() {
    use support::pump::{queue_depth, take_bodies, Pump, Stop, WorkQueue};

    let moto = Moto::start();
    let own = moto.account().await;
    own.console_user("alice").await;
    let alice = own.key("alice").await.id;
    let (topic, alerts) = own.topic_with_queue().await;
    let work = WorkQueue::create(&own.sqs, "keywatch-work", 1, 2).await;
    let send = |body: &'static str| {
        let (sqs, url) = (&own.sqs, &work.url);
        async move {
            sqs.send_message()
                .queue_url(url)
                .message_body(body)
                .send()
                .await
                .expect("send")
                .message_id
                .expect("message id")
        }
    };
    let malformed = send(r#"{"account": "123456789012"}"#).await;
    send(r#"{"account_id": "123456789012", "run_id": "run-1"}"#).await;

    let api = RuntimeApi::start();
    let function = Function::start(
        shipped_binary(),
        &api,
        &moto.endpoint,
        &[("FINDINGS_TOPIC_ARN", &topic), ("MAX_RECEIVE_COUNT", "2")],
    );
    let pumped = Pump::new(&own.sqs, &work.url)
        .await
        .batch_size(10)
        .run(&function)
        .await;
    function.assert_running();
    assert_eq!(pumped.stopped, Stop::Drained, "{pumped:#?}");
    // Both records in the first batch: only the malformed one fails, and it fails again on its own.
    let failed: Vec<(usize, Vec<String>)> = pumped
        .batches
        .iter()
        .map(|b| (b.records.len(), b.failed.clone()))
        .collect();
    assert_eq!(
        failed,
        [(2, vec![malformed.clone()]), (1, vec![malformed.clone()])],
        "{pumped:#?}"
    );
    assert_eq!((pumped.deleted, pumped.function_errors), (1, 0));
    let mut delivered = own.delivered(&alerts).await;
    delivered.sort_by(|a, b| a.0.cmp(&b.0));
    let [(alert, document), (notice_subject, notice)] = &delivered[..] else {
        panic!("one alert and one notice, got {delivered:#?}")
    };
    assert_eq!(
        alert,
        "keywatch: 1 never-used access key on a console user in 123456789012"
    );
    assert_eq!(document["run_id"], "run-1");
    assert_eq!(
        finding_keys(document),
        [("alice".to_string(), alice.clone())]
    );
    assert_eq!(
        notice_subject,
        "keywatch: account an unknown account could not be checked"
    );
    assert_eq!(notice["account_id"], Value::Null, "{notice:#}");
    assert_eq!(notice["error_type"], "Keywatch.InvalidEvent", "{notice:#}");
    assert_eq!(notice["message_id"], malformed.as_str(), "{notice:#}");
    assert_eq!(
        take_bodies(&own.sqs, &work.dlq_url).await,
        [r#"{"account": "123456789012"}"#]
    );
    // Still serving.
    let report = function.invoke_ok("events/manual.json", &event_file("manual.json"));
    assert_eq!(finding_keys(&report), [("alice".to_string(), alice)]);

    // A function error fails the whole batch: nothing deleted, received until the DLQ takes it.
    send(r#"{"account_id": "123456789012", "run_id": "run-2"}"#).await;
    let crashing =
        |_payload: String| async { (500, r#"{"errorType": "Runtime.ExitError"}"#.to_string()) };
    let pumped = Pump::new(&own.sqs, &work.url).await.run(&crashing).await;
    assert_eq!(pumped.stopped, Stop::Drained, "{pumped:#?}");
    assert_eq!(
        (
            pumped.invocations,
            pumped.deleted,
            pumped.failed,
            pumped.function_errors
        ),
        (2, 0, 2, 2),
        "{pumped:#?}"
    );
    assert_eq!(take_bodies(&own.sqs, &work.dlq_url).await.len(), 1);
    // Bounded: a pump that may invoke once stops there, whatever is left.
    send(r#"{"account_id": "123456789012", "run_id": "run-3"}"#).await;
    let pumped = Pump::new(&own.sqs, &work.url)
        .await
        .max_invocations(1)
        .run(&crashing)
        .await;
    assert_eq!(
        (pumped.stopped, pumped.invocations),
        (Stop::InvocationLimit, 1),
        "{pumped:#?}"
    );
    assert_ne!(queue_depth(&own.sqs, &work.url).await, (0, 0, 0));
}
