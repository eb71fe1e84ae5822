//! The whole pipeline against moto over the real AWS wire protocol: seeded accounts in, findings and SNS
//! deliveries (read back from a subscribed SQS queue) out.

use keywatch_test_support as support;

use keywatch::event::Invocation;
use keywatch::permissions;
use keywatch::report::Report;
use std::time::Duration;

use keywatch::deadline::Deadline;
use keywatch::handler::Keywatch;
use keywatch::ledger::{Change, Reason, State};
use support::ledger::LedgerTable;
use support::proxy::{isolated_clients, Fault, Proxy, Rule};
use support::{run, settings, Account, Moto};

/// Seeds an account, runs one scheduled invocation, and returns the report and what SNS delivered.
async fn scan<F, Fut>(
    extra_settings: &[(&str, &str)],
    seed: F,
) -> (Report, Vec<(String, serde_json::Value)>)
where
    F: FnOnce(Account) -> Fut,
    Fut: std::future::Future<Output = Account>,
{
    let moto = Moto::start();
    let account = seed(moto.account().await).await;
    let (topic, queue) = account.topic_with_queue().await;
    let mut vars = vec![
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
    ];
    vars.extend_from_slice(extra_settings);
    let report = run(&moto, settings(&vars), Invocation::SCHEDULED)
        .await
        .expect("the run succeeds");
    let delivered = account.delivered(&queue).await;
    (report, delivered)
}

fn finding_keys(report: &Report) -> Vec<(&str, &str)> {
    let mut keys: Vec<(&str, &str)> = report
        .findings
        .iter()
        .map(|f| (f.user_name.as_str(), f.access_key_id.as_str()))
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn one_unused_key_is_reported_and_delivered() {
    let mut key_id = String::new();
    let (report, delivered) = scan(&[], |a| async {
        a.console_user("alice").await;
        key_id = a.key("alice").await.id;
        a
    })
    .await;
    assert_eq!(finding_keys(&report), [("alice", key_id.as_str())]);
    let finding = &report.findings[0];
    assert_eq!(finding.finding_id, format!("123456789012/alice/{key_id}"));
    assert!(finding.created_at_user_setup);
    assert_eq!(delivered.len(), 1, "one SNS message");
    let (subject, document) = &delivered[0];
    assert_eq!(
        subject,
        "keywatch: 1 never-used access key on a console user in 123456789012"
    );
    assert_eq!(document["findings"][0]["access_key_id"], key_id.as_str());
    assert_eq!(document["run_id"], "test-run");
    assert_eq!(report.notifications.len(), 1);
}

#[tokio::test]
async fn user_without_password_is_not_reported() {
    let (report, delivered) = scan(&[], |a| async {
        a.user("bob").await;
        a.key("bob").await;
        a
    })
    .await;
    assert!(report.findings.is_empty());
    assert!(
        delivered.is_empty(),
        "nothing is published for a clean account"
    );
    assert!(report.notifications.is_empty());
}

#[tokio::test]
async fn used_key_is_not_reported() {
    let (report, _) = scan(&[], |a| async {
        a.console_user("carol").await;
        let key = a.key("carol").await;
        a.use_key(&key).await;
        a
    })
    .await;
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

#[tokio::test]
async fn only_the_unused_one_of_two_keys_is_reported() {
    let mut unused = String::new();
    let (report, _) = scan(&[], |a| async {
        a.console_user("dave").await;
        let used = a.key("dave").await;
        a.use_key(&used).await;
        unused = a.key("dave").await.id;
        a
    })
    .await;
    assert_eq!(finding_keys(&report), [("dave", unused.as_str())]);
}

#[tokio::test]
async fn a_key_the_report_saw_used_needs_no_live_lookup() {
    let mut unused = String::new();
    let (report, _) = scan(&[], |a| async {
        a.console_user("dave").await;
        let used = a.key("dave").await;
        a.use_key(&used).await;
        // Keys are matched to report slots by creation second, so they must differ.
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        unused = a.key("dave").await.id;
        a
    })
    .await;
    assert_eq!(finding_keys(&report), [("dave", unused.as_str())]);
    // A use is never undone, so only the key the report saw unused is looked up live.
    let calls = &report.api_calls.by_operation;
    assert_eq!(calls.get("iam:GetAccessKeyLastUsed"), Some(&1));
}

/// The email subscriber's text is read from what SNS accepted, not rendered again here.
#[tokio::test]
async fn two_unused_keys_give_two_findings_and_the_email_lists_both() {
    let moto = Moto::start();
    let a = moto.account().await;
    a.console_user("frank").await;
    let ids = [a.key("frank").await.id, a.key("frank").await.id];
    let (topic, queue) = a.topic_with_queue().await;
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
    ];
    let report = run(&moto, settings(&vars), Invocation::SCHEDULED)
        .await
        .expect("the run succeeds");
    assert_eq!(report.findings.len(), 2);
    let delivered = a.delivered(&queue).await;
    assert_eq!(delivered.len(), 1, "both findings in one message");
    let delivered_ids: Vec<&str> = delivered[0].1["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["access_key_id"].as_str().unwrap())
        .collect();
    let emails = moto.published_emails(&topic);
    let [(subject, email)] = &emails[..] else {
        panic!("one message published, got {emails:?}")
    };
    assert_eq!(
        subject,
        "keywatch: 2 never-used access keys on console users in 123456789012"
    );
    for id in &ids {
        assert!(
            delivered_ids.contains(&id.as_str()),
            "SQS subscriber gets {id}"
        );
        assert!(
            email.contains(&format!("- frank  key {id}"))
                && email.contains(&format!("--access-key-id {id}")),
            "email lists {id}:\n{email}"
        );
    }
}

#[tokio::test]
async fn inactive_key_is_not_reported() {
    let (report, _) = scan(&[], |a| async {
        a.console_user("erin").await;
        let key = a.key("erin").await;
        a.deactivate("erin", &key).await;
        a
    })
    .await;
    assert!(report.findings.is_empty());
    assert_eq!(report.keys_examined, 1);
}

#[tokio::test]
async fn deleted_login_profile_is_not_reported() {
    let (report, _) = scan(&[], |a| async {
        a.console_user("gina").await;
        a.key("gina").await;
        a.iam
            .delete_login_profile()
            .user_name("gina")
            .send()
            .await
            .unwrap();
        a
    })
    .await;
    assert!(report.findings.is_empty());
}

#[tokio::test]
async fn user_under_a_path_is_reported() {
    let (report, _) = scan(&[], |a| async {
        a.user_at("hank", "/engineering/", &[]).await;
        a.password("hank").await;
        a.key("hank").await;
        a
    })
    .await;
    assert_eq!(report.findings.len(), 1);
    assert_eq!(
        report.findings[0].user_arn,
        "arn:aws:iam::123456789012:user/engineering/hank"
    );
}

#[tokio::test]
async fn exempt_tag_and_name_pattern_are_exempted_not_alerted() {
    let (report, delivered) = scan(&[("EXEMPT_USERS", "svc-*")], |a| async {
        for (user, tag) in [
            ("ivy", "break-glass account, ticket SEC-42"),
            ("kim", "FALSE"),
            ("lee", "2000-01-31"),
            ("max", "2999-12-31"),
        ] {
            a.user_at(user, "/", &[("keywatch:exempt", tag)]).await;
            a.password(user).await;
            a.key(user).await;
        }
        for user in ["svc-deploy", "SVC-Upload"] {
            a.console_user(user).await;
            a.key(user).await;
        }
        a
    })
    .await;
    let mut reasons: Vec<(&str, &str)> = report
        .exempted
        .iter()
        .map(|e| (e.finding.user_name.as_str(), e.reason.as_str()))
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("SVC-Upload", "user matches EXEMPT_USERS pattern \"svc-*\""),
            (
                "ivy",
                "user has tag keywatch:exempt=\"break-glass account, ticket SEC-42\""
            ),
            (
                "max",
                "user has tag keywatch:exempt=\"2999-12-31\": exempt through 2999-12-31 (UTC)"
            ),
            ("svc-deploy", "user matches EXEMPT_USERS pattern \"svc-*\""),
        ]
    );
    // `false` exempts nothing; a date that has passed is a finding again, and says when it ran out.
    let findings: Vec<(&str, Option<String>)> = report
        .findings
        .iter()
        .map(|f| {
            (
                f.user_name.as_str(),
                f.exemption_expired_on.map(|d| d.to_string()),
            )
        })
        .collect();
    assert_eq!(
        findings,
        [("kim", None), ("lee", Some("2000-01-31".to_string()))]
    );
    let [(_, document)] = &delivered[..] else {
        panic!("one alert: {delivered:?}")
    };
    let alerted: Vec<(&str, &serde_json::Value)> = document["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["user_name"].as_str().unwrap(), &f["exemption_expired_on"]))
        .collect();
    assert_eq!(
        alerted,
        [
            ("kim", &serde_json::Value::Null),
            ("lee", &serde_json::json!("2000-01-31"))
        ],
        "exempted keys are not alerted"
    );
}

#[tokio::test]
async fn grace_period_lists_new_keys_as_pending() {
    let (report, delivered) = scan(&[("GRACE_PERIOD_HOURS", "24")], |a| async {
        a.console_user("jo").await;
        a.key("jo").await;
        a
    })
    .await;
    assert!(report.findings.is_empty());
    assert_eq!(report.pending.len(), 1);
    assert!(delivered.is_empty());
}

#[tokio::test]
async fn dry_run_returns_findings_and_publishes_nothing() {
    let moto = Moto::start();
    let account = moto.account().await;
    account.console_user("alice").await;
    account.key("alice").await;
    let (topic, queue) = account.topic_with_queue().await;
    let report = run(
        &moto,
        settings(&[("FINDINGS_TOPIC_ARN", &topic)]),
        Invocation::DRY_RUN,
    )
    .await
    .unwrap();
    assert!(report.dry_run);
    assert_eq!(report.findings.len(), 1);
    assert!(report.notifications.is_empty());
    assert!(
        account.delivered(&queue).await.is_empty(),
        "a dry run publishes nothing"
    );
    assert!(!report.api_calls.by_operation.contains_key("sns:Publish"));
}

/// An all-clear, also as a chat custom notification.
#[tokio::test]
async fn notify_when_clean_publishes_an_all_clear() {
    let moto = Moto::start();
    let a = moto.account().await;
    let (topic, queue) = a.topic_with_queue().await;
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("NOTIFY_WHEN_CLEAN", "true"),
        ("CHAT_NOTIFICATIONS", "custom"),
    ];
    let report = run(&moto, settings(&vars), Invocation::SCHEDULED)
        .await
        .expect("the run succeeds");
    let delivered = a.delivered(&queue).await;
    assert!(report.findings.is_empty());
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        delivered[0].0,
        "keywatch: no never-used access keys on console users in 123456789012"
    );
    assert_eq!(delivered[0].1["total_findings"], 0);
    let chat = moto.published_chat(&topic);
    support::https_sink::assert_matches_schema(
        &support::project_dir().join("tests/fixtures/chat-custom-notification.schema.json"),
        &chat,
    );
    assert_eq!(chat[0]["metadata"]["eventType"], "all-clear");
    assert_eq!(
        chat[0]["content"]["title"],
        ":white_check_mark: keywatch: no never-used access keys on console users in 123456789012"
    );
    let description = chat[0]["content"]["description"].as_str().unwrap();
    assert!(description.contains("All clear"), "{description}");
}

#[tokio::test]
async fn response_contract_and_call_accounting() {
    let (report, _) = scan(&[], |a| async {
        for name in ["u1", "u2", "u3"] {
            a.console_user(name).await;
        }
        a.key("u1").await;
        let used = a.key("u2").await;
        a.use_key(&used).await;
        a
    })
    .await;
    let json = serde_json::to_value(&report).unwrap();
    for field in [
        "account_id",
        "checked_at",
        "report_generated_at",
        "users_examined",
        "keys_examined",
        "api_calls",
        "findings",
        "pending",
        "exempted",
        "notifications",
    ] {
        assert!(json.get(field).is_some(), "response lacks {field}");
    }
    for field in [
        "finding_id",
        "user_name",
        "user_arn",
        "access_key_id",
        "key_created",
        "user_created",
        "password_last_used",
        "created_at_user_setup",
    ] {
        assert!(
            json["findings"][0].get(field).is_some(),
            "finding lacks {field}"
        );
    }
    assert_eq!(json["account_id"], "123456789012");
    assert_eq!((report.users_examined, report.keys_examined), (3, 2));
    for action in report.api_calls.by_operation.keys() {
        assert!(
            permissions::is_known(action),
            "{action} is called but not in permissions.rs"
        );
    }
    let calls = &report.api_calls.by_operation;
    assert_eq!(calls.get("iam:GetCredentialReport"), Some(&1));
    assert_eq!(
        calls.get("iam:ListAccessKeys"),
        Some(&1),
        "only the one candidate (u1) is verified live"
    );
    assert_eq!(calls.get("sns:Publish"), Some(&1));
}

/// An emulated organization: the scheduled run dispatches one work message per ACTIVE account, and the worker
/// checks each through its member role (the management account with its own credentials), each alert naming
/// its account and carrying only its findings.
#[tokio::test]
async fn an_organization_is_dispatched_and_each_account_checked_on_its_own() {
    use keywatch::event::Event;
    use keywatch::route::Response;

    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let own = moto.account().await;
    let organizations = support::create_organization(&moto).await;
    let mut expected = std::collections::BTreeMap::new();
    own.console_user("root-admin").await;
    expected.insert(
        "123456789012".to_string(),
        ("root-admin".to_string(), own.key("root-admin").await.id),
    );
    for name in ["dev", "prod", "closed"] {
        let account_id = support::create_member(&organizations, name).await;
        if name == "closed" {
            organizations
                .close_account()
                .account_id(&account_id)
                .send()
                .await
                .unwrap();
            continue;
        }
        let member = support::member_account(&moto, &account_id).await;
        let user = format!("{name}-admin");
        member.console_user(&user).await;
        expected.insert(account_id, (user.clone(), member.key(&user).await.id));
    }
    let work_queue = own.queue("keywatch-work").await;
    let (topic, alerts) = own.topic_with_queue().await;
    // One ledger, in the management account: moto keeps each account's tables apart, so a member check that
    // wrote with the member role's credentials would not find it.
    let ledger = LedgerTable::create(&own.config).await;
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("ACCOUNTS", "organization"),
        ("WORK_QUEUE_URL", work_queue.as_str()),
        ("LEDGER_TABLE", ledger.name.as_str()),
    ];
    let keywatch = keywatch::handler::Keywatch::new(
        settings(&vars),
        keywatch::aws::Clients::from_config(&config),
    );
    let deadline = keywatch::deadline::Deadline::after(std::time::Duration::from_secs(60));
    let dispatched = keywatch
        .route(Event::Check(Invocation::SCHEDULED), "org-run", &deadline)
        .await
        .expect("dispatch");
    let Response::Dispatched(dispatched) = dispatched else {
        panic!("a dispatch response: {dispatched:?}")
    };
    assert_eq!(
        dispatched.accounts,
        expected.keys().cloned().collect::<Vec<_>>(),
        "every ACTIVE account, not the closed one"
    );

    let records = support::pump::take_records(&own.sqs, &work_queue).await;
    let batch = keywatch.work(records, &deadline).await;
    assert!(batch.batch_item_failures.is_empty(), "{batch:?}");
    let mut delivered = std::collections::BTreeMap::new();
    for (subject, document) in own.delivered(&alerts).await {
        let account = document["account_id"].as_str().unwrap().to_string();
        assert!(subject.contains(&format!(" in {account}")), "{subject}");
        let findings: Vec<(String, String)> = document["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["user_name"].as_str().unwrap().to_string(),
                    f["access_key_id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(document["run_id"], "org-run");
        delivered.insert(account, findings);
    }
    let expected: std::collections::BTreeMap<String, Vec<(String, String)>> =
        expected.into_iter().map(|(k, v)| (k, vec![v])).collect();
    assert_eq!(delivered, expected);
    // Each account's ledger items are its own.
    let mut stored = std::collections::BTreeMap::new();
    for item in ledger.items().await {
        assert_eq!((item.state, item.alerts), (State::Open, 1));
        let raw = ledger.raw_attributes(&item.access_key_id).await;
        assert_eq!(raw["state"], ("S", "open".to_string()), "{raw:?}");
        assert_eq!(raw["alerts"], ("N", "1".to_string()));
        assert_eq!(raw["account_id"], ("S", item.account_id.clone()));
        assert_eq!(raw["first_alerted_at"].0, "S");
        stored
            .entry(item.account_id.clone())
            .or_insert_with(Vec::new)
            .push((item.user_name, item.access_key_id));
    }
    assert_eq!(stored, expected);
}

/// REMEDIATION: off by default nothing changes; with the default notice period keys created today are only
/// alerted, with the day they will be deactivated; a dry run and pending keys change nothing; with no notice
/// period exactly the reported keys become Inactive, none is deleted, and the report and the delivered alert
/// say what was done.
#[tokio::test]
async fn remediation_deactivates_exactly_the_reported_keys_after_the_notice_period() {
    let moto = Moto::start();
    let a = moto.account().await;
    let mut reported = Vec::new();
    for user in ["ann", "bob"] {
        a.console_user(user).await;
        reported.push(a.key(user).await.id);
    }
    reported.push(a.key("bob").await.id);
    a.console_user("svc-exempt").await;
    a.key("svc-exempt").await;
    a.user_at("ivy", "/", &[("keywatch:exempt", "SEC-1")]).await;
    a.password("ivy").await;
    a.key("ivy").await;
    a.console_user("carol").await;
    let used = a.key("carol").await;
    a.use_key(&used).await;
    a.user("dan").await;
    a.key("dan").await;
    a.console_user("erin").await;
    let inactive = a.key("erin").await;
    a.deactivate("erin", &inactive).await;
    let (topic, queue) = a.topic_with_queue().await;
    let ledger = LedgerTable::create(&a.config).await;
    let before = a.key_statuses().await;
    reported.sort();

    let base = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("EXEMPT_USERS", "svc-*"),
        ("LEDGER_TABLE", ledger.name.as_str()),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut vars = base.to_vec();
        vars.extend_from_slice(extra);
        settings(&vars)
    };
    let reported_by = |report: &Report| {
        let mut keys: Vec<String> = report
            .findings
            .iter()
            .map(|f| f.access_key_id.clone())
            .collect();
        keys.sort();
        keys
    };

    // Off by default.
    let report = run(&moto, with(&[]), Invocation::SCHEDULED)
        .await
        .expect("run");
    assert_eq!(reported_by(&report), reported);
    assert!(report.remediated.is_empty() && report.deactivate_after_days.is_none());
    assert_eq!(a.key_statuses().await, before);

    // On, with the default notice period: keys created today are only alerted.
    let report = run(
        &moto,
        with(&[("REMEDIATION", "deactivate")]),
        Invocation::SCHEDULED,
    )
    .await
    .expect("run");
    assert!(report.remediated.is_empty());
    assert_eq!(report.deactivate_after_days, Some(7));
    assert_eq!(a.key_statuses().await, before);
    let emails = moto.published_emails(&topic);
    let (_, email) = emails.last().unwrap();
    assert!(
        email.contains("keywatch deactivates it on or after"),
        "{email}"
    );

    // The notice's date has come (lowering the period to 0 would not have brought it forward).
    ledger.age(7).await;
    let now = [
        ("REMEDIATION", "deactivate"),
        ("DEACTIVATE_AFTER_DAYS", "0"),
    ];
    // A dry run, and keys still in their grace period, change nothing.
    for invocation in [
        Invocation::DRY_RUN,
        Invocation {
            grace_period_hours: Some(24),
            ..Invocation::SCHEDULED
        },
    ] {
        let report = run(&moto, with(&now), invocation).await.expect("run");
        assert!(report.remediated.is_empty());
        assert_eq!(a.key_statuses().await, before);
    }
    a.delivered(&queue).await;

    // The delivered notice named every key with a date now past, so exactly the reported keys become Inactive,
    // and nothing is deleted.
    let report = run(&moto, with(&now), Invocation::SCHEDULED)
        .await
        .expect("run");
    let mut remediated: Vec<String> = report
        .remediated
        .iter()
        .map(|r| {
            assert_eq!(r.action, "deactivated");
            r.access_key_id.clone()
        })
        .collect();
    remediated.sort();
    assert_eq!(remediated, reported);
    let after = a.key_statuses().await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "no key deleted"
    );
    for (key, status) in &after {
        let expected = if reported.contains(key) {
            "Inactive"
        } else {
            before[key].as_str()
        };
        assert_eq!(status, expected, "{key}");
    }
    let delivered = a.delivered(&queue).await;
    let [(subject, document)] = &delivered[..] else {
        panic!("one alert: {delivered:?}")
    };
    assert!(subject.ends_with(", 3 deactivated"), "{subject}");
    let mut alerted: Vec<&str> = document["remediated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["access_key_id"].as_str().unwrap())
        .collect();
    alerted.sort();
    assert_eq!(alerted, reported);
    let emails = moto.published_emails(&topic);
    let (_, email) = emails.last().unwrap();
    for key in &reported {
        assert!(
            email.contains(&format!("--access-key-id {key} --status Active")),
            "the undo command for {key}:\n{email}"
        );
    }

    // The next run finds nothing to do: the keys are Inactive, so no longer findings.
    let report = run(&moto, with(&now), Invocation::SCHEDULED)
        .await
        .expect("run");
    assert!(report.findings.is_empty() && report.remediated.is_empty());
}

/// With SECURITY_HUB=true, a member account's findings go into the member's own hub (through the member role),
/// under the member's default product, and none into the management account's.
#[tokio::test]
async fn a_member_accounts_findings_land_in_its_own_security_hub() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let own = moto.account().await;
    let organizations = support::create_organization(&moto).await;
    let member_id = support::create_member(&organizations, "dev").await;
    let member = support::member_account(&moto, &member_id).await;
    member.console_user("dev-admin").await;
    let key = member.key("dev-admin").await;
    let (topic, _) = own.topic_with_queue().await;
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("SECURITY_HUB", "true"),
        ("ACCOUNTS", "organization"),
        ("WORK_QUEUE_URL", "http://127.0.0.1:1/123456789012/unused"),
    ];
    let report = run(
        &moto,
        settings(&vars),
        Invocation {
            account_id: Some(member_id.clone()),
            ..Invocation::SCHEDULED
        },
    )
    .await
    .expect("the member check");
    assert_eq!(report.security_hub.map(|s| s.imported), Some(1));

    let findings = member.hub_findings().await;
    let [finding] = &findings[..] else {
        panic!("one finding in the member's hub: {findings:?}")
    };
    assert_eq!(
        finding.id.as_deref(),
        Some(format!("{member_id}/dev-admin/{}", key.id).as_str())
    );
    assert_eq!(finding.aws_account_id.as_deref(), Some(member_id.as_str()));
    assert_eq!(
        finding.product_arn.as_deref(),
        Some(
            format!("arn:aws:securityhub:us-east-1:{member_id}:product/{member_id}/default")
                .as_str()
        )
    );
    let own_findings = support::hub_findings(&aws_sdk_securityhub::Client::new(&config)).await;
    assert!(own_findings.is_empty(), "{own_findings:?}");
}

/// A manual check names an account the deployment covers; a work message for an account excluded since it was
/// dispatched is done (deleted), never retried into the dead-letter queue.
#[tokio::test]
async fn manual_checks_stay_in_scope_and_excluded_work_is_acknowledged() {
    use keywatch::event::SqsRecord;

    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let deadline = keywatch::deadline::Deadline::after(std::time::Duration::from_secs(30));
    let keywatch_with = |vars: &[(&str, &str)]| {
        keywatch::handler::Keywatch::new(
            settings(vars),
            keywatch::aws::Clients::from_config(&config),
        )
    };
    let manual = |account: &str| Invocation {
        account_id: Some(account.to_string()),
        ..Invocation::DRY_RUN
    };
    let own = keywatch_with(&[("DRY_RUN", "true"), ("AWS_REGION", "us-east-1")]);
    own.run(&manual("123456789012"), "own", &deadline)
        .await
        .expect("the own account is always in scope");
    let error = own
        .run(&manual("111122223333"), "other", &deadline)
        .await
        .expect_err("ACCOUNTS=self covers only the own account");
    assert_eq!(error.error_type(), "Keywatch.InvalidEvent");
    assert!(error.to_string().contains("ACCOUNTS is self"), "{error}");

    let queue = "http://127.0.0.1:1/123456789012/unused";
    let listed = keywatch_with(&[
        ("DRY_RUN", "true"),
        ("AWS_REGION", "us-east-1"),
        ("ACCOUNTS", "111122223333"),
        ("EXCLUDE_ACCOUNTS", "444455556666"),
        ("WORK_QUEUE_URL", queue),
    ]);
    let error = listed
        .run(&manual("222233334444"), "unlisted", &deadline)
        .await
        .expect_err("not in ACCOUNTS");
    assert!(
        error.to_string().contains("ACCOUNTS is 111122223333"),
        "{error}"
    );
    let error = listed
        .run(&manual("444455556666"), "excluded", &deadline)
        .await
        .expect_err("excluded");
    assert!(error.to_string().contains("EXCLUDE_ACCOUNTS"), "{error}");
    let batch = listed
        .work(
            vec![SqsRecord {
                message_id: "m1".into(),
                body: r#"{"account_id":"444455556666","run_id":"r"}"#.into(),
                receive_count: 1,
            }],
            &deadline,
        )
        .await;
    assert!(batch.batch_item_failures.is_empty(), "{batch:?}");

    // A work message for an account the deployment does not cover: acknowledged with a notice, never checked.
    let account = moto.account().await;
    let (topic, alerts) = account.topic_with_queue().await;
    let publishing = keywatch_with(&[
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("ACCOUNTS", "111122223333"),
        ("WORK_QUEUE_URL", queue),
    ]);
    let batch = publishing
        .work(
            vec![SqsRecord {
                message_id: "m2".into(),
                body: r#"{"account_id":"222233334444","run_id":"r"}"#.into(),
                receive_count: 1,
            }],
            &deadline,
        )
        .await;
    assert!(
        batch.batch_item_failures.is_empty(),
        "not retried: {batch:?}"
    );
    let delivered = account.delivered(&alerts).await;
    let [(subject, notice)] = &delivered[..] else {
        panic!("one notice: {delivered:?}")
    };
    assert_eq!(
        subject,
        "keywatch: account 222233334444 could not be checked"
    );
    assert_eq!(notice["error_type"], "Keywatch.InvalidEvent");
    assert!(
        notice["error"]
            .as_str()
            .unwrap()
            .contains("ACCOUNTS is 111122223333"),
        "{notice}"
    );
}

/// With remediation and Security Hub both on, a key deactivated in the run shows as Inactive in its finding.
#[tokio::test]
async fn a_key_deactivated_in_the_run_shows_inactive_in_security_hub() {
    let moto = Moto::start();
    let a = moto.account().await;
    a.console_user("ann").await;
    let key = a.key("ann").await;
    let (topic, _) = a.topic_with_queue().await;
    let ledger = LedgerTable::create(&a.config).await;
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("SECURITY_HUB", "true"),
        ("REMEDIATION", "deactivate"),
        ("DEACTIVATE_AFTER_DAYS", "0"),
        ("LEDGER_TABLE", ledger.name.as_str()),
    ];
    // The first run alerts the key; the next deactivates it.
    let report = run(&moto, settings(&vars), Invocation::SCHEDULED)
        .await
        .expect("run");
    assert!(report.remediated.is_empty());
    let report = run(&moto, settings(&vars), Invocation::SCHEDULED)
        .await
        .expect("run");
    assert_eq!(report.remediated.len(), 1);
    let findings = a.hub_findings().await;
    let status = findings[0].resources.as_ref().unwrap()[0]
        .details
        .as_ref()
        .and_then(|d| d.aws_iam_access_key.as_ref())
        .and_then(|k| k.status.clone());
    assert_eq!(
        status,
        Some(aws_sdk_securityhub::types::AwsIamAccessKeyStatus::Inactive),
        "{key:?}",
        key = key.id
    );
}

/// keywatch as the Lambda builds it, talking to moto through the proxy (keys aged, faults injected).
async fn through(proxy: &Proxy, vars: &[(&str, &str)]) -> Keywatch {
    Keywatch::new(settings(vars), isolated_clients(&proxy.sdk_config(3).await))
}

async fn check(keywatch: &Keywatch, run_id: &str) -> keywatch::Result<Report> {
    keywatch
        .run(
            &Invocation::SCHEDULED,
            run_id,
            &Deadline::after(Duration::from_secs(60)),
        )
        .await
}

fn keys_of<T>(list: &[T], key: impl Fn(&T) -> &str) -> Vec<String> {
    let mut keys: Vec<String> = list.iter().map(|x| key(x).to_string()).collect();
    keys.sort();
    keys
}

fn sorted(keys: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    keys.sort();
    keys
}

/// The notice period counts from the first delivered alert, never from a key's age: keys 31 days old in an
/// account keywatch never alerted (with a 30-day grace period, so they become findings only now) are alerted,
/// each with its deactivation date, and none is deactivated; 7 days after that alert (the ledger moved back),
/// exactly those keys are deactivated and the alert says so with the undo commands; a password added today to a
/// user with a 90-day-old never-used key makes a new finding that is alerted, not deactivated.
#[tokio::test]
async fn the_notice_period_counts_from_the_first_delivered_alert() {
    let moto = Moto::start();
    let a = moto.account().await;
    let (topic, queue) = a.topic_with_queue().await;
    let ledger = LedgerTable::create(&a.config).await;
    let mut old = Vec::new();
    for user in ["ann", "bob"] {
        a.console_user(user).await;
        old.push(a.key(user).await.id);
    }
    old.sort();
    a.user("late").await;
    let late = a.key("late").await.id;
    let proxy = Proxy::start(&moto.endpoint);
    proxy.age_keys(31);
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("REMEDIATION", "deactivate"),
        ("GRACE_PERIOD_HOURS", "720"),
        ("LEDGER_TABLE", ledger.name.as_str()),
    ];
    let keywatch = through(&proxy, &vars).await;

    let first = check(&keywatch, "run-1").await.expect("run 1");
    assert!(first.remediated.is_empty(), "{:?}", first.remediated);
    assert_eq!(keys_of(&first.findings, |f| &f.access_key_id), old);
    assert_eq!(first.new.as_deref().map(<[String]>::len), Some(2));
    // Counted from the alert's publish (after the check), in whole seconds.
    let due = first.findings[0].history.deactivate_on.expect("a date");
    assert!(
        due > first.checked_at + time::Duration::days(7) - time::Duration::seconds(1),
        "{due}"
    );
    assert!(due <= first.checked_at + time::Duration::days(7) + time::Duration::seconds(30));
    assert_eq!(due.nanosecond(), 0);
    for finding in &first.findings {
        assert_eq!(finding.key_age_days, Some(31));
        assert_eq!(finding.history.change, Some(Change::New));
        assert_eq!(finding.history.notice, Some(keywatch::ledger::Notice::New));
        assert_eq!(finding.history.deactivate_on, Some(due));
    }
    assert!(a.key_statuses().await.values().all(|s| s == "Active"));
    let delivered = a.delivered(&queue).await;
    let [(_, document)] = &delivered[..] else {
        panic!("one alert: {delivered:?}")
    };
    assert_eq!(document["schema"], "keywatch.alert/v4");
    assert_eq!(document["new"].as_array().unwrap().len(), 2);
    let (_, email) = moto.published_emails(&topic).pop().expect("an email");
    let on = due
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert!(
        email.contains(&format!("keywatch deactivates it on or after {on}")),
        "{email}"
    );
    for item in ledger.items().await {
        assert_eq!((item.state, item.alerts), (State::Open, 1));
        assert!(item.first_alerted_at.is_some_and(|t| t >= first.checked_at));
        // The notice as delivered: when, the date it said, and the period.
        assert_eq!(item.notice_at, item.first_alerted_at);
        assert_eq!((item.deactivate_on, item.notice_days), (Some(due), Some(7)));
    }

    // The same day: nothing is due yet.
    let second = check(&keywatch, "run-2").await.expect("run 2");
    assert!(second.remediated.is_empty());
    assert_eq!(second.open.as_deref().map(<[String]>::len), Some(2));
    a.delivered(&queue).await;

    // A week after the first alert; a password added today to a user whose never-used key is 90 days old.
    ledger.age(7).await;
    a.password("late").await;
    proxy.age_keys(90);
    let third = check(&keywatch, "run-3").await.expect("run 3");
    assert_eq!(keys_of(&third.remediated, |r| &r.access_key_id), old);
    let statuses = a.key_statuses().await;
    for key in &old {
        assert_eq!(statuses[key], "Inactive", "{key}");
    }
    assert_eq!(
        statuses[&late], "Active",
        "never alerted before: only alerted"
    );
    assert_eq!(
        third.new.as_deref(),
        Some(&[format!("123456789012/late/{late}")][..])
    );
    let delivered = a.delivered(&queue).await;
    let [(subject, document)] = &delivered[..] else {
        panic!("one alert: {delivered:?}")
    };
    assert!(subject.ends_with("(1 new), 2 deactivated"), "{subject}");
    assert_eq!(
        keys_of(document["remediated"].as_array().unwrap(), |r| r
            ["access_key_id"]
            .as_str()
            .unwrap()),
        old
    );
    let (_, email) = moto.published_emails(&topic).pop().expect("an email");
    for key in &old {
        assert!(
            email.contains(&format!("--access-key-id {key} --status Active")),
            "the undo command for {key}:\n{email}"
        );
    }
    for key in &old {
        let item = ledger.item(key).await;
        assert_eq!(item.state, State::Deactivated);
        assert!(item.deactivation_announced && item.deactivated_run.as_deref() == Some("run-3"));
    }
    assert_eq!(ledger.item(&late).await.state, State::Open);
}

/// Publish denied once right after a deactivation: the run fails, the ledger holds the deactivation as not
/// announced, and the next run's alert announces it with its undo command, once.
#[tokio::test]
async fn a_deactivation_whose_alert_failed_is_announced_by_the_next_alert_once() {
    let moto = Moto::start();
    let a = moto.account().await;
    let (topic, queue) = a.topic_with_queue().await;
    let ledger = LedgerTable::create(&a.config).await;
    a.console_user("ann").await;
    let ann = a.key("ann").await.id;
    let proxy = Proxy::start(&moto.endpoint);
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("REMEDIATION", "deactivate"),
        ("DEACTIVATE_AFTER_DAYS", "0"),
        ("LEDGER_TABLE", ledger.name.as_str()),
    ];
    let keywatch = through(&proxy, &vars).await;
    check(&keywatch, "alerts").await.expect("the first alert");
    a.delivered(&queue).await;

    proxy.add(Rule::on("sns:Publish", Fault::AccessDenied).times(1));
    let error = check(&keywatch, "deactivates")
        .await
        .expect_err("the publish is denied");
    assert_eq!(error.error_type(), "Keywatch.PublishFailed");
    assert_eq!(a.key_statuses().await[&ann], "Inactive");
    assert!(a.delivered(&queue).await.is_empty());
    let item = ledger.item(&ann).await;
    assert_eq!(item.state, State::Deactivated);
    assert!(!item.deactivation_announced, "stored before the publish");
    let raw = ledger.raw_attributes(&ann).await;
    assert_eq!(raw["state"], ("S", "deactivated".to_string()), "{raw:?}");
    assert_eq!(raw["deactivated_at"].0, "S");
    assert_eq!(raw["deactivation_announced"], ("BOOL", "false".to_string()));

    let next = check(&keywatch, "announces").await.expect("the next run");
    assert!(next.findings.is_empty(), "Inactive now: no finding");
    assert_eq!(
        keys_of(&next.remediated, |r| &r.access_key_id),
        std::slice::from_ref(&ann)
    );
    let delivered = a.delivered(&queue).await;
    let [(subject, document)] = &delivered[..] else {
        panic!("one alert: {delivered:?}")
    };
    assert!(subject.ends_with(", 1 deactivated"), "{subject}");
    assert_eq!(document["remediated"][0]["access_key_id"], ann.as_str());
    let (_, email) = moto.published_emails(&topic).pop().expect("an email");
    assert!(
        email.contains(&format!(
            "aws iam update-access-key --user-name ann --access-key-id {ann} --status Active"
        )),
        "{email}"
    );
    assert!(ledger.item(&ann).await.deactivation_announced);

    let after = check(&keywatch, "quiet").await.expect("a later run");
    assert!(after.remediated.is_empty() && after.notifications.is_empty());
    assert!(a.delivered(&queue).await.is_empty(), "announced once");
}

/// ALERTS=changes: an unchanged account publishes nothing (and the report says why); a new key is alerted as
/// new beside the open ones; a deleted key is alerted as resolved once; after REMIND_EVERY_DAYS a reminder.
#[tokio::test]
async fn alerts_on_changes_say_what_is_new_open_and_resolved() {
    let moto = Moto::start();
    let a = moto.account().await;
    let (topic, queue) = a.topic_with_queue().await;
    let ledger = LedgerTable::create(&a.config).await;
    a.console_user("ann").await;
    let ann = a.key("ann").await.id;
    a.console_user("bob").await;
    let bob = a.key("bob").await.id;
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("ALERTS", "changes"),
        ("LEDGER_TABLE", ledger.name.as_str()),
    ];
    let run = || run(&moto, settings(&vars), Invocation::SCHEDULED);
    let published = |report: &Report| !report.notifications.is_empty();

    let first = run().await.expect("run 1");
    assert!(published(&first), "{}", first.alert);
    assert_eq!(first.new.as_ref().unwrap().len(), 2);
    assert_eq!(a.delivered(&queue).await.len(), 1);

    let unchanged = run().await.expect("run 2");
    assert!(!published(&unchanged));
    assert!(
        unchanged
            .alert
            .contains("nothing changed since the last alert"),
        "{}",
        unchanged.alert
    );
    assert!(a.delivered(&queue).await.is_empty());

    a.console_user("carol").await;
    let carol = a.key("carol").await.id;
    let third = run().await.expect("run 3");
    assert!(published(&third));
    let delivered = a.delivered(&queue).await;
    let [(_, document)] = &delivered[..] else {
        panic!("one alert: {delivered:?}")
    };
    assert_eq!(
        document["new"],
        serde_json::json!([format!("123456789012/carol/{carol}")])
    );
    assert_eq!(document["open"].as_array().unwrap().len(), 2);
    let (_, email) = moto.published_emails(&topic).pop().expect("an email");
    assert!(
        email.find("New since the last alert:").unwrap() < email.find("Still open:").unwrap(),
        "{email}"
    );

    a.iam
        .delete_access_key()
        .user_name("bob")
        .access_key_id(&bob)
        .send()
        .await
        .expect("delete bob's key");
    let fourth = run().await.expect("run 4");
    assert!(published(&fourth));
    let resolved = fourth.resolved.as_ref().unwrap();
    assert_eq!(
        keys_of(resolved, |r| &r.access_key_id),
        std::slice::from_ref(&bob)
    );
    assert_eq!(resolved[0].reason, Reason::KeyDeleted);
    let delivered = a.delivered(&queue).await;
    assert_eq!(delivered[0].1["resolved"][0]["access_key_id"], bob.as_str());
    assert_eq!(delivered[0].1["resolved"][0]["reason"], "key_deleted");
    let (_, email) = moto.published_emails(&topic).pop().expect("an email");
    assert!(
        email.contains(&format!("- bob  key {bob}  the key was deleted")),
        "{email}"
    );
    assert_eq!(ledger.item(&bob).await.state, State::Resolved);
    assert!(ledger.item(&bob).await.expires_at.is_some());
    // As stored, by the names the AWS CLI shows and the template's TTL reads.
    let raw = ledger.raw_attributes(&bob).await;
    assert_eq!(raw["state"], ("S", "resolved".to_string()), "{raw:?}");
    assert_eq!(raw["resolved_reason"], ("S", "key_deleted".to_string()));
    assert_eq!(raw["resolved_at"].0, "S");
    assert_eq!(raw["expires_at"].0, "N", "the TTL attribute is a number");
    assert_eq!(raw["user_name"], ("S", "bob".to_string()));

    let fifth = run().await.expect("run 5");
    assert!(!published(&fifth) && fifth.resolved.as_ref().unwrap().is_empty());

    ledger.age(7).await;
    let reminder = run().await.expect("run 6");
    assert!(published(&reminder), "{}", reminder.alert);
    assert!(reminder.alert.contains("reminder"), "{}", reminder.alert);
    assert_eq!(
        keys_of(&reminder.findings, |f| &f.access_key_id),
        sorted(&[&ann, &carol])
    );
    let delivered = a.delivered(&queue).await;
    assert_eq!(delivered.len(), 1);
    let (_, email) = moto.published_emails(&topic).pop().expect("an email");
    assert!(email.contains("open for 7 days"), "{email}");
}

/// A dry run reads the ledger and writes nothing; a failed check writes nothing; a ledger that cannot be read
/// or written fails the check naming the table and the action, after the alert went out.
#[tokio::test]
async fn the_ledger_is_written_only_by_checks_that_completed_and_fails_loudly() {
    let moto = Moto::start();
    let a = moto.account().await;
    let (topic, queue) = a.topic_with_queue().await;
    let ledger = LedgerTable::create(&a.config).await;
    a.console_user("ann").await;
    a.key("ann").await;
    let proxy = Proxy::start(&moto.endpoint);
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("LEDGER_TABLE", ledger.name.as_str()),
    ];
    let keywatch = through(&proxy, &vars).await;
    check(&keywatch, "first").await.expect("the first run");
    a.delivered(&queue).await;
    let before = ledger.raw().await;
    assert_eq!(before.len(), 1);

    a.console_user("bob").await;
    let bob = a.key("bob").await.id;
    let dry = keywatch
        .run(
            &Invocation::DRY_RUN,
            "dry",
            &Deadline::after(Duration::from_secs(60)),
        )
        .await
        .expect("a dry run");
    assert_eq!(
        dry.new.as_deref(),
        Some(&[format!("123456789012/bob/{bob}")][..]),
        "the dry run shows what would be new"
    );
    assert_eq!(ledger.raw().await, before, "a dry run writes nothing");

    proxy.add(Rule::on("iam:ListAccessKeys", Fault::AccessDenied));
    check(&keywatch, "failed")
        .await
        .expect_err("a denied read fails the check");
    assert_eq!(ledger.raw().await, before, "a failed check writes nothing");
    proxy.clear();

    for action in ["dynamodb:Query", "dynamodb:PutItem"] {
        proxy.add(Rule::on(action, Fault::AccessDenied));
        let error = check(&keywatch, action)
            .await
            .expect_err("an unusable ledger fails the check");
        proxy.clear();
        assert_eq!(error.error_type(), "Keywatch.LedgerUnavailable", "{error}");
        let message = error.to_string();
        assert!(
            message.contains(&ledger.name) && message.contains(action),
            "{message}"
        );
        let delivered = a.delivered(&queue).await;
        assert_eq!(delivered.len(), 1, "the alert went out first ({action})");
        assert_eq!(
            delivered[0].1["findings"].as_array().unwrap().len(),
            2,
            "every finding ({action})"
        );
    }
}

/// Dispatches the organization and works every message off, as the event source mapping would.
async fn dispatch_and_work(keywatch: &Keywatch, own: &Account, work_queue: &str, run_id: &str) {
    let deadline = Deadline::after(Duration::from_secs(60));
    keywatch
        .route(
            keywatch::event::Event::Check(Invocation::SCHEDULED),
            run_id,
            &deadline,
        )
        .await
        .expect("dispatch");
    let batch = keywatch
        .work(
            support::pump::take_records(&own.sqs, work_queue).await,
            &deadline,
        )
        .await;
    assert!(batch.batch_item_failures.is_empty(), "{batch:?}");
}

/// Routing by owner: in a member account tagged owner=platform, users owned by team-a, team-b, nobody (so the
/// account's owner), a 256-character owner and one with spaces and non-ASCII letters: one alert per owner, and a
/// queue subscribed with a filter policy on `owner` receives exactly that owner's keys, whole. The account tags
/// are read once per account per dispatch, and the user tags no more often than without routing. With routing
/// off, one alert per check, still with `account_id` and `kind` attributes.
#[tokio::test]
async fn each_owner_receives_exactly_their_keys_through_a_filter_policy() {
    use std::collections::BTreeMap;

    let moto = Moto::start();
    let own = moto.account().await;
    let organizations = support::create_organization(&moto).await;
    let dev_id = support::create_member(&organizations, "dev").await;
    organizations
        .tag_resource()
        .resource_id(&dev_id)
        .tags(
            aws_sdk_organizations::types::Tag::builder()
                .key("owner")
                .value("platform")
                .build()
                .expect("a tag"),
        )
        .send()
        .await
        .expect("tag the account");
    let dev = support::member_account(&moto, &dev_id).await;
    let long: String = "o".repeat(255) + "z";
    let users: [(&str, Option<&str>); 5] = [
        ("alice", Some("team-a")),
        ("bob", Some(" team-b ")),
        ("carol", None),
        ("dave", Some(long.as_str())),
        ("erin", Some("Équipe données 42")),
    ];
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (user, owner) in users {
        let tags: Vec<(&str, &str)> = owner.map(|o| ("owner", o)).into_iter().collect();
        dev.user_at(user, "/", &tags).await;
        dev.password(user).await;
        let key = dev.key(user).await.id;
        let owner = owner.map_or("platform", str::trim).to_string();
        expected.entry(owner).or_default().push(key);
    }
    let (topic, everything) = own.topic_with_queue().await;
    let mut queues = BTreeMap::new();
    for (index, owner) in expected.keys().enumerate() {
        let queue = own
            .owner_queue(&topic, &format!("owner-{index}"), owner)
            .await;
        queues.insert(owner.clone(), queue);
    }
    let work_queue = own.queue("keywatch-work").await;
    let proxy = Proxy::start(&moto.endpoint);
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("ACCOUNTS", "organization"),
        ("WORK_QUEUE_URL", work_queue.as_str()),
    ];
    let keywatch = through(&proxy, &vars).await;
    dispatch_and_work(&keywatch, &own, &work_queue, "owners").await;

    for (owner, queue) in &queues {
        let delivered = own.delivered_with_attributes(queue).await;
        let [(_, document, attributes)] = &delivered[..] else {
            panic!("one alert for {owner}: {delivered:?}")
        };
        let mut keys: Vec<String> = document["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                assert_eq!(f["owner"], owner.as_str());
                f["access_key_id"].as_str().unwrap().to_string()
            })
            .collect();
        keys.sort();
        let mut want = expected[owner].clone();
        want.sort();
        assert_eq!(keys, want, "{owner}");
        assert_eq!(document["owner"], owner.as_str());
        assert_eq!(attributes["owner"], owner.as_str());
        assert_eq!(attributes["account_id"], dev_id.as_str());
        assert_eq!(attributes["kind"], "findings");
        assert_eq!(attributes["findings"], want.len().to_string().as_str());
    }
    let all = own.delivered(&everything).await;
    assert_eq!(
        all.len(),
        expected.len(),
        "the unfiltered subscription sees every owner's alert"
    );
    let emails = moto.published_emails(&topic);
    assert!(
        emails
            .iter()
            .any(|(_, email)| email.contains("Owner:     team-a\nAccount:   ")),
        "the email names its owner at the top"
    );
    let calls = proxy.requests();
    assert_eq!(
        calls.get("organizations:ListTagsForResource"),
        Some(&2),
        "once per account (the management account and dev): {calls:?}"
    );
    assert_eq!(
        calls.get("iam:ListUserTags"),
        Some(&5),
        "one per reported user: {calls:?}"
    );

    // Routing off: one alert per check, attributes without an owner, and no account tags read.
    proxy.take_log();
    let off = through(&proxy, &[&vars[..], &[("OWNER_TAG_KEY", "")]].concat()).await;
    dispatch_and_work(&off, &own, &work_queue, "routing-off").await;
    for (owner, queue) in &queues {
        assert!(
            own.delivered(queue).await.is_empty(),
            "{owner}: nothing without the attribute"
        );
    }
    let all = own.delivered_with_attributes(&everything).await;
    let [(_, document, attributes)] = &all[..] else {
        panic!("one alert: {all:?}")
    };
    assert_eq!(document["findings"].as_array().unwrap().len(), 5);
    assert!(document["owner"].is_null());
    assert_eq!(attributes["account_id"], dev_id.as_str());
    assert_eq!(attributes["kind"], "findings");
    assert!(attributes.get("owner").is_none(), "{attributes}");
    let calls = proxy.requests();
    assert_eq!(calls.get("organizations:ListTagsForResource"), None);
    assert_eq!(
        calls.get("iam:ListUserTags"),
        Some(&5),
        "routing adds no IAM call"
    );
}

/// Remediation starts no key later than `REMEDIATION_RESERVE` before the deadline, so the ledger and the alert
/// still get their time: a run with less than that left when keys fall due deactivates none, reports each as
/// skipped with the reason (in the report and the delivered alert), keeps them open in the ledger, and the next
/// run with time to spare deactivates them.
#[tokio::test]
async fn keys_not_reached_before_the_deadline_are_skipped_and_deactivated_next_run() {
    use keywatch::remediate::REMEDIATION_RESERVE;
    let moto = Moto::start();
    let a = moto.account().await;
    let (topic, queue) = a.topic_with_queue().await;
    let ledger = LedgerTable::create(&a.config).await;
    let mut keys = Vec::new();
    for user in ["ann", "bob", "cat"] {
        a.console_user(user).await;
        keys.push(a.key(user).await.id);
    }
    keys.sort();
    let proxy = Proxy::start(&moto.endpoint);
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("REMEDIATION", "deactivate"),
        ("DEACTIVATE_AFTER_DAYS", "0"),
        ("LEDGER_TABLE", ledger.name.as_str()),
        ("CONCURRENCY", "2"),
        ("ALERTS", "every-run"),
    ];
    let keywatch = through(&proxy, &vars).await;
    check(&keywatch, "alerts").await.expect("the first alert");
    a.delivered(&queue).await;

    // The figure the README promises, stated here too: a change of the constant fails this test.
    assert_eq!(REMEDIATION_RESERVE, Duration::from_secs(10));
    let short = Deadline::after(REMEDIATION_RESERVE - Duration::from_secs(1));
    let report = keywatch
        .run(&Invocation::SCHEDULED, "short", &short)
        .await
        .expect("a run short of time still alerts");
    assert!(report.remediated.is_empty(), "{:?}", report.remediated);
    assert!(report.remediation_failed.is_empty());
    assert_eq!(
        keys_of(&report.remediation_skipped, |s| &s.access_key_id),
        keys
    );
    for skipped in &report.remediation_skipped {
        assert!(
            skipped
                .reason
                .contains("not reached before the invocation's deadline"),
            "{skipped:?}"
        );
    }
    assert_eq!(
        proxy.requests().get("iam:UpdateAccessKey"),
        None,
        "no key was started"
    );
    assert!(a.key_statuses().await.values().all(|s| s == "Active"));
    for key in &keys {
        assert_eq!(ledger.item(key).await.state, State::Open, "{key}");
    }
    let delivered = a.delivered(&queue).await;
    let [(_, document)] = &delivered[..] else {
        panic!("one alert: {delivered:?}")
    };
    let skipped = document["remediation_skipped"]
        .as_array()
        .unwrap_or_else(|| panic!("the alert lists the keys skipped: {document}"));
    assert_eq!(
        keys_of(skipped, |s| s["access_key_id"].as_str().unwrap()),
        keys
    );

    let next = check(&keywatch, "next").await.expect("the next run");
    assert_eq!(keys_of(&next.remediated, |r| &r.access_key_id), keys);
    assert!(a.key_statuses().await.values().all(|s| s == "Inactive"));
}

// Promises kept before acting: the notice, one check per account at a time, alerts that never block, one
// identity per message, and the truth about each deactivation.

/// `base` with `extra` set, replacing any setting of the same name.
fn vars_with<'a>(
    base: &[(&'a str, &'a str)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut vars: Vec<_> = base
        .iter()
        .filter(|(name, _)| !extra.iter().any(|(other, _)| other == name))
        .copied()
        .collect();
    vars.extend_from_slice(extra);
    vars
}

async fn tag_user(a: &Account, user: &str, key: &str, value: &str) {
    a.iam
        .tag_user()
        .user_name(user)
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key(key)
                .value(value)
                .build()
                .expect("a tag"),
        )
        .send()
        .await
        .expect("tag the user");
}

fn date_of(finding: &serde_json::Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        finding["deactivate_on"]
            .as_str()
            .expect("a deactivation date"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("an RFC 3339 date")
}

/// The scenario of the trust issue: 60 days of alerts with remediation off announce nothing; the first run with
/// REMEDIATION=deactivate deactivates nothing and publishes a notice naming every finding with its date (a
/// change, under ALERTS=changes); lowering DEACTIVATE_AFTER_DAYS never brings the date forward; raising it moves
/// the date later and the next alert says so; a key whose user gets an owner is told to that owner with a full
/// period of its own; on the date, exactly the keys whose date was announced to their owner are deactivated.
#[tokio::test]
async fn keys_are_deactivated_only_on_a_date_a_delivered_notice_announced_to_their_owner() {
    let moto = Moto::start();
    let a = moto.account().await;
    let (topic, queue) = a.topic_with_queue().await;
    let ledger = LedgerTable::create(&a.config).await;
    a.console_user("ann").await;
    let ann = a.key("ann").await.id;
    a.console_user("bob").await;
    let bob = a.key("bob").await.id;
    let proxy = Proxy::start(&moto.endpoint);
    let base = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("LEDGER_TABLE", ledger.name.as_str()),
        ("ALERTS", "changes"),
    ];
    let deactivate = |days: &'static str| {
        vars_with(
            &base,
            &[
                ("REMEDIATION", "deactivate"),
                ("DEACTIVATE_AFTER_DAYS", days),
            ],
        )
    };

    // Remediation off: alerts that say nothing of deactivation, for 60 days.
    let off = through(&proxy, &base).await;
    let first = check(&off, "off-1").await.expect("run");
    assert!(first
        .findings
        .iter()
        .all(|f| f.history.deactivate_on.is_none()));
    let (_, email) = moto.published_emails(&topic).pop().expect("an email");
    assert!(!email.contains("deactivates it"), "{email}");
    ledger.age(60).await;
    check(&off, "off-60").await.expect("a reminder");
    assert_eq!(
        a.delivered(&queue).await.len(),
        2,
        "the alert and a reminder"
    );

    // Remediation on, 7 days: the notice, and nothing deactivated.
    let on7 = through(&proxy, &deactivate("7")).await;
    let notice = check(&on7, "notice").await.expect("run");
    assert!(notice.remediated.is_empty(), "{:?}", notice.remediated);
    assert!(a.key_statuses().await.values().all(|s| s == "Active"));
    let delivered = a.delivered(&queue).await;
    let [(subject, document)] = &delivered[..] else {
        panic!("one notice: {delivered:?}")
    };
    assert!(subject.contains("(2 notices)"), "{subject}");
    let findings = document["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2);
    for finding in findings {
        assert_eq!(finding["notice"], "new");
        assert!(
            date_of(finding)
                > notice.checked_at + time::Duration::days(7) - time::Duration::seconds(1)
        );
    }
    let (_, email) = moto.published_emails(&topic).pop().expect("an email");
    assert!(email.contains("Deactivation notice"), "{email}");
    for key in [&ann, &bob] {
        assert!(
            email.contains(&format!("key {key}")),
            "the notice names {key}"
        );
    }
    let announced = ledger
        .item(&ann)
        .await
        .deactivate_on
        .expect("the date announced");

    // Lowered to 0 the same day: the announced date stands, and nothing is news.
    let on0 = through(&proxy, &deactivate("0")).await;
    let lowered = check(&on0, "lowered").await.expect("run");
    assert!(lowered.remediated.is_empty(), "{:?}", lowered.remediated);
    assert!(a.delivered(&queue).await.is_empty(), "{}", lowered.alert);
    for finding in &lowered.findings {
        assert_eq!(finding.history.notice, None);
        assert!(finding.history.deactivate_on.is_some());
    }
    assert_eq!(ledger.item(&ann).await.deactivate_on, Some(announced));

    // Raised to 10: later dates, said in the next alert.
    let on10 = through(&proxy, &deactivate("10")).await;
    check(&on10, "raised").await.expect("run");
    let delivered = a.delivered(&queue).await;
    let [(_, document)] = &delivered[..] else {
        panic!("one alert: {delivered:?}")
    };
    let item = ledger.item(&ann).await;
    let later = item.notice_at.expect("the notice") + time::Duration::days(10);
    for finding in document["findings"].as_array().unwrap() {
        assert_eq!(finding["notice"], "later");
        assert_eq!(date_of(finding), later);
    }
    assert_eq!(
        (item.deactivate_on, item.notice_days),
        (Some(later), Some(10))
    );
    let (_, email) = moto.published_emails(&topic).pop().expect("an email");
    assert!(
        email.contains("the deactivation date moved later"),
        "{email}"
    );

    // bob gets an owner, and ann's date comes: ann is deactivated, team-b is told of bob with a full period.
    tag_user(&a, "bob", "owner", "team-b").await;
    ledger.age(10).await;
    let due = check(&on10, "due").await.expect("run");
    assert_eq!(
        keys_of(&due.remediated, |r| &r.access_key_id),
        std::slice::from_ref(&ann)
    );
    let statuses = a.key_statuses().await;
    assert_eq!(
        (statuses[&ann].as_str(), statuses[&bob].as_str()),
        ("Inactive", "Active")
    );
    let delivered = a.delivered_with_attributes(&queue).await;
    let team_b: Vec<_> = delivered
        .iter()
        .filter(|(_, _, attributes)| attributes["owner"] == "team-b")
        .collect();
    let [(_, document, _)] = &team_b[..] else {
        panic!("one alert for team-b: {delivered:?}")
    };
    assert_eq!(document["findings"][0]["notice"], "new");
    assert!(
        date_of(&document["findings"][0])
            > due.checked_at + time::Duration::days(10) - time::Duration::seconds(1)
    );
    assert_eq!(
        ledger.item(&bob).await.notice_owner.as_deref(),
        Some("team-b")
    );

    // team-b's date comes.
    ledger.age(10).await;
    let last = check(&on10, "due-b").await.expect("run");
    assert_eq!(
        keys_of(&last.remediated, |r| &r.access_key_id),
        std::slice::from_ref(&bob)
    );
}

/// Two checks of one account at once: the second waits for the first's lease (or stops with
/// Keywatch.CheckInProgress, which is retried), so a finding is announced as new once and a due key is
/// deactivated once. A lease held by another check past this check's patience stops it before it publishes
/// or writes anything; a write by a check whose reading is stale is refused, leaving the newer item.
#[tokio::test]
async fn checks_of_one_account_never_overlap() {
    let moto = Moto::start();
    let a = moto.account().await;
    let (topic, queue) = a.topic_with_queue().await;
    let ledger = LedgerTable::create(&a.config).await;
    a.console_user("ann").await;
    let ann = a.key("ann").await.id;
    let proxy = Proxy::start(&moto.endpoint);
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("LEDGER_TABLE", ledger.name.as_str()),
        ("ALERTS", "changes"),
        ("REMEDIATION", "deactivate"),
        ("DEACTIVATE_AFTER_DAYS", "1"),
    ];
    let keywatch = through(&proxy, &vars).await;
    let side_by_side = || async {
        let (one, two) = tokio::join!(check(&keywatch, "one"), check(&keywatch, "two"));
        for result in [&one, &two] {
            if let Err(error) = result {
                assert_eq!(error.error_type(), "Keywatch.CheckInProgress", "{error}");
            }
        }
        [one, two]
    };

    let [one, two] = side_by_side().await;
    let news: usize = [&one, &two]
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| r.new.as_ref().map_or(0, Vec::len))
        .sum();
    assert_eq!(news, 1, "announced as new once: {one:?} {two:?}");
    let delivered = a.delivered(&queue).await;
    assert_eq!(delivered.len(), 1, "one alert: {delivered:?}");
    assert_eq!(ledger.item(&ann).await.alerts, 1);

    ledger.age(1).await;
    let [one, two] = side_by_side().await;
    let deactivations: usize = [&one, &two]
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| r.remediated.len())
        .sum();
    assert_eq!(deactivations, 1, "deactivated once: {one:?} {two:?}");
    let delivered = a.delivered(&queue).await;
    let announcements: usize = delivered
        .iter()
        .map(|(_, document)| document["remediated"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(announcements, 1, "{delivered:?}");
    assert!(ledger.item(&ann).await.deactivation_announced);
    assert_eq!(
        ledger.raw().await.len(),
        1,
        "both leases were given back: only ann's item is left"
    );

    // Another check holds the lease well past this check's patience.
    a.console_user("bob").await;
    a.key("bob").await;
    let number = |n: i64| aws_sdk_dynamodb::types::AttributeValue::N(n.to_string());
    let string = |s: &str| aws_sdk_dynamodb::types::AttributeValue::S(s.to_string());
    let until = time::OffsetDateTime::now_utc().unix_timestamp() + 600;
    ledger
        .client
        .put_item()
        .table_name(&ledger.name)
        .item("account_id", string("123456789012"))
        .item("access_key_id", string("#lease"))
        .item("holder", string("another-check"))
        .item("lease_until", number(until))
        .send()
        .await
        .expect("hold the lease");
    let before = ledger.raw().await;
    let started = std::time::Instant::now();
    let error = keywatch
        .run(
            &Invocation::SCHEDULED,
            "blocked",
            &Deadline::after(Duration::from_secs(6)),
        )
        .await
        .expect_err("the account is held");
    assert_eq!(error.error_type(), "Keywatch.CheckInProgress", "{error}");
    assert!(!error.is_permanent(), "retried by SQS or Lambda");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited first"
    );
    assert!(a.delivered(&queue).await.is_empty(), "nothing published");
    assert_eq!(
        ledger.raw().await,
        before,
        "nothing written, the lease kept"
    );

    // A stale check's write: refused, and the newer item stays.
    let table = keywatch::ledger::Table {
        client: ledger.client.clone(),
        name: ledger.name.clone(),
    };
    let newer = ledger.item(&ann).await;
    let mut stale = newer.clone();
    stale.version -= 1;
    stale.state = State::Open;
    let (written, error) = table
        .save(&[stale], &Deadline::after(Duration::from_secs(10)))
        .await;
    assert!(written.is_empty());
    let error = error.expect("a stale write fails");
    assert_eq!(error.error_type(), "Keywatch.CheckInProgress", "{error}");
    assert_eq!(
        ledger.item(&ann).await,
        newer,
        "the newer state is not lost"
    );
}

/// A bulk cleanup: 1,000 open findings resolved in one run are all delivered, split across parts like
/// findings (each part under SNS's limit, its subject ending in its part number), each exactly once; the
/// resolutions are recorded, so the next run is quiet.
#[tokio::test]
async fn a_thousand_resolutions_are_delivered_in_parts_and_the_next_run_is_quiet() {
    let moto = Moto::start();
    let a = moto.account().await;
    let (topic, queue) = a.topic_with_queue().await;
    let ledger = LedgerTable::create(&a.config).await;
    let alerted = time::OffsetDateTime::now_utc() - time::Duration::days(3);
    let stamp = alerted
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut keys = Vec::new();
    for i in 0..1_000 {
        // Users deleted since: their open findings resolve. Long names make large entries.
        let user = format!("{}{i:04}", "departed-contractor-".repeat(3));
        let key = format!("AKIA{i:016}");
        let item = serde_json::json!({
            "account_id": "123456789012", "access_key_id": key, "user_name": user, "state": "open",
            "first_seen_at": stamp, "first_alerted_at": stamp, "last_alerted_at": stamp, "alerts": 1,
            "owner": "unowned", "version": 1,
        });
        ledger
            .client
            .put_item()
            .table_name(&ledger.name)
            .set_item(Some(serde_dynamo::to_item(item).expect("an item")))
            .send()
            .await
            .expect("seed an open item");
        keys.push(key);
    }
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("LEDGER_TABLE", ledger.name.as_str()),
        ("ALERTS", "changes"),
    ];
    let proxy = Proxy::start(&moto.endpoint);
    let keywatch = through(&proxy, &vars).await;
    let report = check(&keywatch, "cleanup").await.expect("the cleanup run");
    assert_eq!(report.resolved.as_ref().map(Vec::len), Some(1_000));
    let delivered = a.delivered_with_attributes(&queue).await;
    assert!(
        delivered.len() > 1,
        "more than one message holds 1,000 resolutions"
    );
    let mut seen = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for (subject, document, attributes) in &delivered {
        let parts = delivered.len();
        assert!(
            subject.ends_with(&format!("(part {} of {parts})", document["part"])),
            "{subject}"
        );
        assert_eq!(attributes["kind"], "resolved");
        assert!(ids.insert(document["alert_id"].as_str().unwrap().to_string()));
        for r in document["resolved"].as_array().unwrap() {
            assert_eq!(r["reason"], "user_deleted");
            seen.push(r["access_key_id"].as_str().unwrap().to_string());
        }
    }
    seen.sort();
    assert_eq!(seen, keys, "every resolution exactly once");
    for (subject, body) in moto.published_emails(&topic) {
        assert!(subject.len() + body.len() <= 262_144, "under SNS's 256 KiB");
    }
    assert!(ledger
        .items()
        .await
        .iter()
        .all(|item| item.state == State::Resolved));
    let quiet = check(&keywatch, "after").await.expect("the next run");
    assert!(quiet.notifications.is_empty(), "{}", quiet.alert);
    assert!(a.delivered(&queue).await.is_empty());
}

/// Every message carries `alert_id`, as a message attribute and in its document, the same value: two owners'
/// first parts differ, and a retry that sends the same content again sends the same one.
#[tokio::test]
async fn every_message_carries_one_alert_id() {
    let moto = Moto::start();
    let a = moto.account().await;
    let (topic, queue) = a.topic_with_queue().await;
    for (user, owner) in [("ann", "team-a"), ("bob", "team-b")] {
        a.user_at(user, "/", &[("owner", owner)]).await;
        a.password(user).await;
        a.key(user).await;
    }
    let proxy = Proxy::start(&moto.endpoint);
    let keywatch = through(
        &proxy,
        &[
            ("FINDINGS_TOPIC_ARN", topic.as_str()),
            ("AWS_REGION", "us-east-1"),
        ],
    )
    .await;
    let deadline = Deadline::after(Duration::from_secs(60));
    let mut ids = Vec::new();
    for run_id in ["run-a", "run-a", "run-b"] {
        keywatch
            .run(&Invocation::SCHEDULED, run_id, &deadline)
            .await
            .expect("run");
        let delivered = a.delivered_with_attributes(&queue).await;
        assert_eq!(delivered.len(), 2, "one alert per owner");
        let mut of_run: Vec<(String, String)> = delivered
            .iter()
            .map(|(_, document, attributes)| {
                assert_eq!(document["part"], 1);
                assert_eq!(attributes["alert_id"], document["alert_id"]);
                (
                    attributes["owner"].as_str().unwrap().to_string(),
                    attributes["alert_id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        of_run.sort();
        assert_ne!(of_run[0].1, of_run[1].1, "each owner's part 1 is its own");
        ids.push(of_run);
    }
    assert_eq!(ids[0], ids[1], "the same content again: the same alert_id");
    assert_ne!(ids[0][0].1, ids[2][0].1, "another run: another alert_id");
}

/// What the alert says of a deactivation is what IAM holds: a key someone else deactivated between the check
/// and the call is never claimed; a call the deadline cut is read back and reported as it took effect; and
/// when both the write after the deactivation and the publish fail, the next run still announces it as
/// keywatch's, with its undo command.
#[tokio::test]
async fn deactivation_reports_the_truth() {
    let moto = Moto::start();
    let a = moto.account().await;
    let (topic, queue) = a.topic_with_queue().await;
    let ledger = LedgerTable::create(&a.config).await;
    let mut keys = Vec::new();
    for user in ["ann", "bob", "cy"] {
        a.console_user(user).await;
        keys.push(a.key(user).await.id);
    }
    let [ann, bob, cy] = &keys[..] else {
        unreachable!()
    };
    let proxy = Proxy::start(&moto.endpoint);
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("LEDGER_TABLE", ledger.name.as_str()),
        ("REMEDIATION", "deactivate"),
        ("DEACTIVATE_AFTER_DAYS", "0"),
        ("EXEMPT_USERS", "bob,cy"),
    ];
    let only_ann = through(&proxy, &vars).await;
    check(&only_ann, "notice").await.expect("the notice");
    a.delivered(&queue).await;
    ledger.age(1).await;

    // Someone else deactivates ann's key right before keywatch's own last look.
    proxy.add(
        Rule::on(
            "iam:ListAccessKeys",
            Fault::DeactivateKeyFirst {
                user: "ann".into(),
                id: ann.clone(),
            },
        )
        .param("UserName", "ann")
        .nth(2),
    );
    let report = check(&only_ann, "someone-else").await.expect("run");
    proxy.clear();
    assert!(report.remediated.is_empty(), "{:?}", report.remediated);
    assert!(
        report.remediation_skipped[0]
            .reason
            .contains("someone else"),
        "{:?}",
        report.remediation_skipped
    );
    let delivered = a.delivered(&queue).await;
    assert!(delivered
        .iter()
        .all(|(_, d)| d["remediated"].as_array().unwrap().is_empty()));
    let next = check(&only_ann, "resolved").await.expect("run");
    assert_eq!(
        next.resolved.as_ref().unwrap()[0].reason,
        Reason::DeactivatedBySomeoneElse
    );
    a.delivered(&queue).await;

    // bob: UpdateAccessKey takes effect, but its answer comes after the deadline.
    let vars_bob = vars_with(&vars, &[("EXEMPT_USERS", "ann,cy")]);
    let only_bob = through(&proxy, &vars_bob).await;
    check(&only_bob, "notice-bob").await.expect("the notice");
    a.delivered(&queue).await;
    ledger.age(1).await;
    proxy.add(Rule::on(
        "iam:UpdateAccessKey",
        Fault::DelayAfterForward(Duration::from_secs(30)),
    ));
    let cut = only_bob
        .run(
            &Invocation::SCHEDULED,
            "cut",
            &Deadline::after(Duration::from_secs(20)),
        )
        .await
        .expect("the cut call is read back, not failed");
    proxy.clear();
    assert!(
        cut.remediation_skipped.is_empty(),
        "{:?}",
        cut.remediation_skipped
    );
    assert_eq!(a.key_statuses().await[bob], "Inactive");
    assert_eq!(
        keys_of(&cut.remediated, |r| &r.access_key_id),
        std::slice::from_ref(bob)
    );
    assert!(cut.remediation_failed.is_empty());
    let delivered = a.delivered(&queue).await;
    assert_eq!(
        delivered[0].1["remediated"][0]["access_key_id"],
        bob.as_str()
    );

    // cy: the write after the deactivation and the publish both fail. The lease and the recorded intent are
    // the first two puts.
    let vars_cy = vars_with(&vars, &[("EXEMPT_USERS", "ann,bob")]);
    let only_cy = through(&proxy, &vars_cy).await;
    check(&only_cy, "notice-cy").await.expect("the notice");
    a.delivered(&queue).await;
    ledger.age(1).await;
    proxy.add(Rule::on("dynamodb:PutItem", Fault::AccessDenied).nth(3));
    proxy.add(Rule::on("sns:Publish", Fault::AccessDenied).times(1));
    check(&only_cy, "lost")
        .await
        .expect_err("the publish is denied");
    proxy.clear();
    assert_eq!(a.key_statuses().await[cy], "Inactive");
    let after = check(&only_cy, "announces").await.expect("the next run");
    assert_eq!(
        keys_of(&after.remediated, |r| &r.access_key_id),
        std::slice::from_ref(cy)
    );
    assert!(
        after.resolved.as_ref().is_none_or(|r| r.is_empty()),
        "never someone else's: {:?}",
        after.resolved
    );
    let (_, email) = moto.published_emails(&topic).pop().expect("an email");
    assert!(
        email.contains(&format!(
            "aws iam update-access-key --user-name cy --access-key-id {cy} --status Active"
        )),
        "{email}"
    );
}

/// Whoever may tag users may exempt them: each key that becomes exempt by tag is named once in the next
/// alert, with the tag's value, whether it was an open finding or a new key of an exempt user.
#[tokio::test]
async fn each_key_that_becomes_exempt_is_named_once_with_the_tag() {
    let moto = Moto::start();
    let a = moto.account().await;
    let (topic, queue) = a.topic_with_queue().await;
    let ledger = LedgerTable::create(&a.config).await;
    a.console_user("ann").await;
    let ann = a.key("ann").await.id;
    let proxy = Proxy::start(&moto.endpoint);
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("LEDGER_TABLE", ledger.name.as_str()),
        ("ALERTS", "changes"),
    ];
    let keywatch = through(&proxy, &vars).await;
    check(&keywatch, "open").await.expect("run");
    a.delivered(&queue).await;

    tag_user(&a, "ann", "keywatch:exempt", "break-glass").await;
    a.user_at("ivy", "/", &[("keywatch:exempt", "SEC-42")])
        .await;
    a.password("ivy").await;
    let ivy = a.key("ivy").await.id;
    check(&keywatch, "exempt").await.expect("run");
    let delivered = a.delivered(&queue).await;
    let [(_, document)] = &delivered[..] else {
        panic!("one alert: {delivered:?}")
    };
    let mut named: Vec<(String, String)> = document["resolved"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["reason"], "exempted");
            (
                r["access_key_id"].as_str().unwrap().to_string(),
                r["exempt_tag"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    named.sort();
    let mut expected = vec![
        (ann.clone(), "keywatch:exempt=break-glass".to_string()),
        (ivy.clone(), "keywatch:exempt=SEC-42".to_string()),
    ];
    expected.sort();
    assert_eq!(named, expected);
    let (_, email) = moto.published_emails(&topic).pop().expect("an email");
    assert!(email.contains("(tag keywatch:exempt=SEC-42)"), "{email}");

    let again = check(&keywatch, "again").await.expect("run");
    assert!(
        again.notifications.is_empty(),
        "named once: {}",
        again.alert
    );
    assert!(a.delivered(&queue).await.is_empty());
}

/// `CHAT_NOTIFICATIONS=custom`: each team's HTTPS endpoint receives exactly its owner's custom notifications,
/// subscribed with a filter policy on `owner` (a webhook) or to the team's own topic from `OWNER_TOPIC_ARNS`
/// (as AWS's chat integration subscribes: a whole topic, no filter). Every `https` variant
/// read back from moto's SNS matches the documented schema; 500 findings keep the description under 4,000
/// characters without losing a count; a user name Markdown would read stays code. SQS subscribers still get the
/// JSON document.
#[tokio::test]
async fn chat_notifications_reach_each_teams_channel_within_the_limits() {
    use std::collections::BTreeSet;
    use support::https_sink::{assert_matches_schema, HttpsSink};

    let endpoint = HttpsSink::start();
    let moto = Moto::start_with_env(&endpoint.moto_env());
    let a = moto.account().await;
    let (topic, queue) = a.topic_with_queue().await;
    for team in ["team-a", "team-b"] {
        a.sns
            .subscribe()
            .topic_arn(&topic)
            .protocol("https")
            .endpoint(endpoint.url(&format!("/{team}")))
            .attributes(
                "FilterPolicy",
                serde_json::json!({ "owner": [team] }).to_string(),
            )
            .send()
            .await
            .expect("subscribe the team's endpoint");
    }
    let team_topic = a
        .sns
        .create_topic()
        .name("keywatch-owner-team-b")
        .send()
        .await
        .expect("the team's topic")
        .topic_arn
        .expect("arn");
    a.sns
        .subscribe()
        .topic_arn(&team_topic)
        .protocol("https")
        .endpoint(endpoint.url("/team-b-channel"))
        .send()
        .await
        .expect("subscribe the team's channel");
    let owner_topics = format!("team-b={team_topic}");
    let many: Vec<String> = (0..500).map(|i| format!("contractor-{i:03}")).collect();
    let team_a: BTreeSet<(String, String)> = a
        .owned_console_users(&many, "team-a")
        .await
        .into_iter()
        .collect();
    // `_` would be italics and `@here` a mention, were they read as Markdown.
    let odd = ["_new_hire_".to_string(), "@here".to_string()];
    let team_b: BTreeSet<(String, String)> = a
        .owned_console_users(&odd, "team-b")
        .await
        .into_iter()
        .collect();
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("CHAT_NOTIFICATIONS", "custom"),
        ("OWNER_TOPIC_ARNS", owner_topics.as_str()),
    ];
    let report = run(&moto, settings(&vars), Invocation::SCHEDULED)
        .await
        .expect("the run succeeds");
    assert_eq!(report.findings.len(), 502);
    let to_team_topic: Vec<_> = report
        .notifications
        .iter()
        .filter(|n| n.owner_topic_arn.as_deref() == Some(team_topic.as_str()))
        .collect();
    assert_eq!(to_team_topic.len(), 1, "{:?}", report.notifications);
    assert_eq!(to_team_topic[0].owner.as_deref(), Some("team-b"));
    assert_eq!(moto.published_chat(&team_topic).len(), 1);

    let schema = support::project_dir().join("tests/fixtures/chat-custom-notification.schema.json");
    let published = moto.published_chat(&topic);
    assert_matches_schema(&schema, &published);
    // The schema accepts AWS's own shape of example too.
    let example = support::project_dir().join("tests/fixtures/chat-custom-notification.json");
    let example = std::fs::read_to_string(example).expect("the example");
    assert_matches_schema(&schema, &[serde_json::from_str(&example).expect("JSON")]);

    let documents = a.delivered(&queue).await;
    assert_eq!(
        documents.len(),
        published.len(),
        "the SQS subscriber gets every part"
    );
    for (_, document) in &documents {
        assert_eq!(
            document["schema"], "keywatch.alert/v4",
            "SQS keeps the JSON document"
        );
    }

    for (team, path, keys) in [
        ("team-a", "/team-a", &team_a),
        ("team-b", "/team-b", &team_b),
        ("team-b", "/team-b-channel", &team_b),
    ] {
        let received = endpoint.delivered(path);
        let notifications: Vec<serde_json::Value> = received
            .iter()
            .map(|envelope| {
                assert_eq!(envelope["Type"], "Notification", "{envelope}");
                serde_json::from_str(envelope["Message"].as_str().expect("Message"))
                    .expect("the custom notification is JSON")
            })
            .collect();
        assert!(!notifications.is_empty(), "{team} received nothing");
        assert_matches_schema(&schema, &notifications);
        let (mut listed, mut not_listed) = (BTreeSet::new(), 0);
        for chat in &notifications {
            assert_eq!(chat["metadata"]["threadId"], format!("123456789012/{team}"));
            assert_eq!(chat["metadata"]["additionalContext"]["owner"], team);
            let description = chat["content"]["description"].as_str().unwrap();
            assert!(
                description.chars().count() < 4_000,
                "{team}: {} characters",
                description.chars().count()
            );
            assert!(
                description.contains(&format!("of {}", keys.len())),
                "{team}: the total is kept: {description}"
            );
            for (user, key) in keys.iter() {
                if description.contains(&format!("`{user}` key `{key}`")) {
                    listed.insert((user.clone(), key.clone()));
                }
            }
            if let Some(tail) = description.split("…and ").nth(1) {
                not_listed += tail
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
                    .expect("a count of what is not listed");
                assert!(tail.contains(chat["id"].as_str().unwrap()), "{tail}");
            }
        }
        assert_eq!(
            listed.len() + not_listed,
            keys.len(),
            "{team}: every key listed or counted, none of another team's"
        );
        let all: String = notifications
            .iter()
            .map(|n| n["content"]["description"].as_str().unwrap().to_string())
            .collect();
        for (other, _) in [&team_a, &team_b]
            .iter()
            .filter(|k| !std::ptr::eq(**k, keys))
            .flat_map(|k| k.iter())
        {
            assert!(!all.contains(&format!("`{other}`")), "{team} sees {other}");
        }
        if team == "team-b" {
            assert_eq!(listed.len(), 2, "both listed: {all}");
            for user in &odd {
                assert!(
                    !all.replace(&format!("`{user}`"), "")
                        .contains(user.as_str()),
                    "{user} only ever as code: {all}"
                );
            }
        }
    }
}

/// Security Hub holds findings keywatch did not write: another generator's in keywatch's own product, keywatch's
/// generator for another account, and another product's. moto ignores GetFindings filters, so only keywatch's
/// own filter keeps a check from archiving or updating them: each is left exactly as it was, while the check
/// imports its own finding.
#[tokio::test]
async fn foreign_security_hub_findings_are_never_archived_or_updated() {
    use aws_sdk_securityhub::types::{
        AwsSecurityFinding, RecordState, Resource, Severity, SeverityLabel,
    };
    let moto = Moto::start();
    let a = moto.account().await;
    a.console_user("ann").await;
    let key = a.key("ann").await;
    let (topic, _) = a.topic_with_queue().await;
    let own_product = "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default";
    let rule = "cis-1.11-never-used-key-on-console-user";
    let stamp = "2026-01-01T00:00:00Z";
    let foreign = [
        (
            "another-generator",
            own_product,
            "123456789012",
            "another-tool/check",
        ),
        ("another-account", own_product, "111122223333", rule),
        (
            "another-product",
            "arn:aws:securityhub:us-east-1::product/aws/guardduty",
            "123456789012",
            rule,
        ),
    ];
    let findings: Vec<AwsSecurityFinding> = foreign
        .iter()
        .map(|(id, product, account, generator)| {
            AwsSecurityFinding::builder()
                .schema_version("2018-10-08")
                .id(*id)
                .product_arn(*product)
                .generator_id(*generator)
                .aws_account_id(*account)
                .types("Software and Configuration Checks")
                .created_at(stamp)
                .updated_at(stamp)
                .severity(Severity::builder().label(SeverityLabel::Low).build())
                .title("not keywatch's")
                .description("a finding keywatch must leave alone")
                .record_state(RecordState::Active)
                .resources(Resource::builder().r#type("Other").id("x").build())
                .build()
        })
        .collect();
    let imported = aws_sdk_securityhub::Client::new(&a.config)
        .batch_import_findings()
        .set_findings(Some(findings))
        .send()
        .await
        .expect("seed foreign findings");
    assert_eq!(imported.failed_count, Some(0));
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("SECURITY_HUB", "true"),
    ];
    let report = run(&moto, settings(&vars), Invocation::SCHEDULED)
        .await
        .expect("run");
    let sync = report.security_hub.expect("synced");
    assert_eq!((sync.imported, sync.archived), (1, 0), "{sync:?}");
    let hub = a.hub_findings().await;
    for (id, ..) in foreign {
        let finding = hub
            .iter()
            .find(|f| f.id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("{id} is gone"));
        assert_eq!(finding.record_state, Some(RecordState::Active), "{id}");
        assert_eq!(
            finding.updated_at.as_deref(),
            Some(stamp),
            "{id}: untouched"
        );
    }
    assert!(
        hub.iter()
            .any(|f| f.id.as_deref().is_some_and(|id| id.ends_with(&key.id))),
        "keywatch's own finding was imported"
    );
}
