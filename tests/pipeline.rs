//! The whole pipeline against moto over the real AWS wire protocol: seeded accounts in, findings and SNS
//! deliveries (read back from a subscribed SQS queue) out.

mod support;

use keywatch::event::Invocation;
use keywatch::permissions;
use keywatch::report::Report;
use support::{run, settings, Account, Moto};

const SCHEDULED: Invocation = Invocation {
    dry_run: false,
    grace_period_hours: None,
    inventory_source: None,
    scheduled: true,
    account_id: None,
};
const DRY_RUN: Invocation = Invocation {
    dry_run: true,
    grace_period_hours: None,
    inventory_source: None,
    scheduled: false,
    account_id: None,
};

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
    let report = run(&moto, settings(&vars), SCHEDULED)
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
    let report = run(&moto, settings(&vars), SCHEDULED)
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
    let report = run(&moto, settings(&[("FINDINGS_TOPIC_ARN", &topic)]), DRY_RUN)
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

#[tokio::test]
async fn notify_when_clean_publishes_an_all_clear() {
    let (report, delivered) = scan(&[("NOTIFY_WHEN_CLEAN", "true")], |a| async { a }).await;
    assert!(report.findings.is_empty());
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        delivered[0].0,
        "keywatch: no never-used access keys on console users in 123456789012"
    );
    assert_eq!(delivered[0].1["total_findings"], 0);
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
    use keywatch::event::{Event, SqsRecord};
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
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("ACCOUNTS", "organization"),
        ("WORK_QUEUE_URL", work_queue.as_str()),
    ];
    let keywatch = keywatch::handler::Keywatch::new(
        settings(&vars),
        keywatch::aws::Clients::from_config(&config),
    );
    let deadline = keywatch::deadline::Deadline::after(std::time::Duration::from_secs(60));
    let dispatched = keywatch
        .route(Event::Check(SCHEDULED), "org-run", &deadline)
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

    let messages = own
        .sqs
        .receive_message()
        .queue_url(&work_queue)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    let records = messages
        .into_iter()
        .map(|m| SqsRecord {
            message_id: m.message_id.unwrap(),
            body: m.body.unwrap(),
            receive_count: 1,
        })
        .collect();
    let batch = keywatch.work(records, &deadline).await;
    assert!(batch.batch_item_failures.is_empty(), "{batch:?}");
    let mut delivered = std::collections::BTreeMap::new();
    for (subject, document) in own.delivered(&alerts).await {
        let account = document["account_id"].as_str().unwrap().to_string();
        assert!(subject.ends_with(&account), "{subject}");
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
    let before = a.key_statuses().await;
    reported.sort();

    let base = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("EXEMPT_USERS", "svc-*"),
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
    let report = run(&moto, with(&[]), SCHEDULED).await.expect("run");
    assert_eq!(reported_by(&report), reported);
    assert!(report.remediated.is_empty() && report.deactivate_after_days.is_none());
    assert_eq!(a.key_statuses().await, before);

    // On, with the default notice period: keys created today are only alerted.
    let report = run(&moto, with(&[("REMEDIATION", "deactivate")]), SCHEDULED)
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

    let now = [
        ("REMEDIATION", "deactivate"),
        ("DEACTIVATE_AFTER_DAYS", "0"),
    ];
    // A dry run, and keys still in their grace period, change nothing.
    for invocation in [
        DRY_RUN,
        Invocation {
            grace_period_hours: Some(24),
            ..SCHEDULED
        },
    ] {
        let report = run(&moto, with(&now), invocation).await.expect("run");
        assert!(report.remediated.is_empty());
        assert_eq!(a.key_statuses().await, before);
    }
    a.delivered(&queue).await;

    // No notice period: exactly the reported keys become Inactive, and nothing is deleted.
    let report = run(&moto, with(&now), SCHEDULED).await.expect("run");
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
    let report = run(&moto, with(&now), SCHEDULED).await.expect("run");
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
            ..SCHEDULED
        },
    )
    .await
    .expect("the member check");
    assert_eq!(report.security_hub.map(|s| s.imported), Some(1));

    let member_hub = aws_sdk_securityhub::Client::new(&member.config);
    let findings = member_hub
        .get_findings()
        .send()
        .await
        .unwrap()
        .findings
        .unwrap();
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
    let own_hub = aws_sdk_securityhub::Client::new(&config);
    let own_findings = own_hub
        .get_findings()
        .send()
        .await
        .unwrap()
        .findings
        .unwrap_or_default();
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
        ..DRY_RUN
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
}

/// With remediation and Security Hub both on, a key deactivated in the run shows as Inactive in its finding.
#[tokio::test]
async fn a_key_deactivated_in_the_run_shows_inactive_in_security_hub() {
    let moto = Moto::start();
    let a = moto.account().await;
    a.console_user("ann").await;
    let key = a.key("ann").await;
    let (topic, _) = a.topic_with_queue().await;
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("SECURITY_HUB", "true"),
        ("REMEDIATION", "deactivate"),
        ("DEACTIVATE_AFTER_DAYS", "0"),
    ];
    let report = run(&moto, settings(&vars), SCHEDULED).await.expect("run");
    assert_eq!(report.remediated.len(), 1);
    let hub = aws_sdk_securityhub::Client::new(&a.config);
    let findings = hub.get_findings().send().await.unwrap().findings.unwrap();
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
