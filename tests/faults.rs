//! Faults on the real wire protocol. A proxy between the SDK and moto (tests/support/proxy.rs) answers with
//! AWS's own error documents, delays, resets connections and replays stale credential reports. keywatch's
//! promise is checked against each: the findings are exactly the truth and every one was delivered, or the run
//! fails loudly, naming the call and what to do. Never an `Ok` with fewer findings.

use keywatch_test_support as support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_sdk_iam::operation::generate_credential_report::GenerateCredentialReportError;
use aws_sdk_iam::operation::get_credential_report::GetCredentialReportError;
use keywatch::aws::config_loader;
use keywatch::deadline::Deadline;
use keywatch::error::Error;
use keywatch::event::{Event, Invocation};
use keywatch::handler::Keywatch;
use keywatch::inventory::Source;
use keywatch::report::Report;
use support::ledger::LedgerTable;
use support::proxy::{isolated_clients, Fault, Proxy, Rule};
use support::seeded::Seeded;
use support::{settings, Account, Moto};

/// moto names a topic's ARN after its fixed account and the region, so it survives `/moto-api/reset`.
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:keywatch-findings";
const SOURCES: [Source; 2] = [Source::CredentialReport, Source::Api];

/// moto, the fault proxy in front of it, and the account (seeded directly, never through the proxy).
struct Bench {
    moto: Moto,
    proxy: Proxy,
    account: Account,
    queue: String,
}

impl Bench {
    async fn start() -> Bench {
        Bench::on(Moto::start()).await
    }

    async fn on(moto: Moto) -> Bench {
        let proxy = Proxy::start(&moto.endpoint);
        let account = moto.account().await;
        let (topic, queue) = account.topic_with_queue().await;
        assert_eq!(topic, TOPIC);
        Bench {
            moto,
            proxy,
            account,
            queue,
        }
    }

    /// Empties moto for the next account; the topic and queue come back with the same ARN and URL.
    async fn reset(&mut self) {
        let port = self.moto.port;
        // A blocking call: off the runtime's thread, so the soak's other lanes keep going.
        tokio::task::spawn_blocking(move || support::moto::reset(port))
            .await
            .expect("the reset call");
        let (_, queue) = self.account.topic_with_queue().await;
        self.queue = queue;
    }

    /// keywatch as the Lambda builds it (`config_loader`, `Keywatch::new`), talking to AWS through the proxy.
    /// `retry` replaces only the retry settings; every client gets retry state of its own.
    async fn keywatch(&self, retry: Option<RetryConfig>) -> Keywatch {
        let mut loader = self.proxy.configure(config_loader(10));
        if let Some(retry) = retry {
            loader = loader.retry_config(retry);
        }
        let vars = [("FINDINGS_TOPIC_ARN", TOPIC), ("AWS_REGION", "us-east-1")];
        Keywatch::new(settings(&vars), isolated_clients(&loader.load().await))
    }

    /// keywatch with these settings, as the Lambda builds it, through the proxy (3 attempts per call).
    async fn keywatch_with(&self, vars: &[(&str, &str)]) -> Keywatch {
        let loader = self.proxy.configure(config_loader(3));
        Keywatch::new(settings(vars), isolated_clients(&loader.load().await))
    }

    /// keywatch with `REMEDIATION=deactivate` and no notice period, through the proxy, after a first run whose
    /// delivered alert named every finding: the next run deactivates them. Add faults after this.
    async fn deactivating(&self) -> Keywatch {
        let ledger = LedgerTable::create(&self.account.config).await;
        let loader = self.proxy.configure(config_loader(3));
        let vars = [
            ("FINDINGS_TOPIC_ARN", TOPIC),
            ("AWS_REGION", "us-east-1"),
            ("REMEDIATION", "deactivate"),
            ("DEACTIVATE_AFTER_DAYS", "0"),
            ("LEDGER_TABLE", ledger.name.as_str()),
        ];
        let keywatch = Keywatch::new(settings(&vars), isolated_clients(&loader.load().await));
        let first = keywatch
            .run(
                &Invocation::SCHEDULED.with_source(Source::CredentialReport),
                "first-alert",
                &Deadline::after(Duration::from_secs(30)),
            )
            .await
            .expect("the first alert");
        assert!(first.remediated.is_empty() && !first.findings.is_empty());
        self.account.delivered(&self.queue).await;
        self.proxy.take_log();
        keywatch
    }

    /// Everything delivered to the queue for `run_id`, as (user, key) pairs, and the parts seen.
    async fn delivered(
        &self,
        run_id: &str,
    ) -> (BTreeSet<(String, String)>, Vec<serde_json::Value>) {
        let mut findings = BTreeSet::new();
        let mut documents = Vec::new();
        for (_, document) in self.account.delivered(&self.queue).await {
            assert_eq!(document["run_id"], run_id, "a part from another run");
            for finding in document["findings"].as_array().expect("findings") {
                findings.insert(pair(&finding["user_name"], &finding["access_key_id"]));
            }
            documents.push(document);
        }
        (findings, documents)
    }
}

fn pair(user: &serde_json::Value, key: &serde_json::Value) -> (String, String) {
    let text = |v: &serde_json::Value| v.as_str().expect("a string").to_string();
    (text(user), text(key))
}

/// Adaptive retry as in production, with a short backoff where waiting out the default (1 s base, 20 s cap) only
/// costs time. The cap also bounds the adaptive rate limiter's wait before a retry, which is up to 20 s in
/// production once a throttle was seen (see `moderate_retryable_faults_give_the_exact_truth`).
fn fast_retry(max_attempts: u32) -> Option<RetryConfig> {
    Some(
        RetryConfig::adaptive()
            .with_max_attempts(max_attempts)
            .with_initial_backoff(Duration::from_millis(10))
            .with_max_backoff(Duration::from_millis(200)),
    )
}

/// What a run must find: (user, access key ID) pairs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Truth {
    findings: BTreeSet<(String, String)>,
    exempted: BTreeSet<(String, String)>,
    pending: BTreeSet<(String, String)>,
}

impl Truth {
    fn of(report: &Report) -> Truth {
        Truth {
            findings: report
                .findings
                .iter()
                .map(|f| (f.user_name.clone(), f.access_key_id.clone()))
                .collect(),
            exempted: report
                .exempted
                .iter()
                .map(|e| (e.finding.user_name.clone(), e.finding.access_key_id.clone()))
                .collect(),
            pending: report
                .pending
                .iter()
                .map(|p| (p.finding.user_name.clone(), p.finding.access_key_id.clone()))
                .collect(),
        }
    }
}

/// The proxy's error documents parse as the SDK's typed errors, so keywatch sees what it would see from IAM.
#[tokio::test]
async fn injected_errors_parse_as_the_sdk_expects() {
    let bench = Bench::start().await;
    let config = bench
        .proxy
        .configure(config_loader(1))
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    let iam = isolated_clients(&config).own_account.iam;

    for (fault, expected) in [
        (Fault::ReportInProgress, "CredentialReportNotReadyException"),
        (
            Fault::ReportNotPresent,
            "CredentialReportNotPresentException",
        ),
        (Fault::ReportExpired, "CredentialReportExpiredException"),
        (Fault::ServiceFailure, "ServiceFailureException"),
    ] {
        bench.proxy.clear();
        bench
            .proxy
            .add(Rule::on("iam:GetCredentialReport", fault.clone()));
        let error = iam.get_credential_report().send().await.unwrap_err();
        let error = error.into_service_error();
        let variant = match &error {
            GetCredentialReportError::CredentialReportNotReadyException(_) => {
                "CredentialReportNotReadyException"
            }
            GetCredentialReportError::CredentialReportNotPresentException(_) => {
                "CredentialReportNotPresentException"
            }
            GetCredentialReportError::CredentialReportExpiredException(_) => {
                "CredentialReportExpiredException"
            }
            GetCredentialReportError::ServiceFailureException(_) => "ServiceFailureException",
            _ => "unhandled",
        };
        assert_eq!(variant, expected, "{fault:?}: {error:?}");
    }

    bench.proxy.clear();
    bench.proxy.add(Rule::on(
        "iam:GenerateCredentialReport",
        Fault::LimitExceeded,
    ));
    let error = iam.generate_credential_report().send().await.unwrap_err();
    assert!(matches!(
        error.into_service_error(),
        GenerateCredentialReportError::LimitExceededException(_)
    ));

    // Retryable faults are retried by the SDK: three attempts reach the proxy, then the last error surfaces.
    let config = bench
        .proxy
        .configure(config_loader(3))
        .retry_config(fast_retry(3).expect("a retry config"))
        .load()
        .await;
    let iam = isolated_clients(&config).own_account.iam;
    for (fault, code) in [
        (Fault::Throttling, Some("Throttling")),
        (Fault::ServiceFailure, Some("ServiceFailure")),
        (Fault::Reset, None),
        (Fault::ResetAfterForward, None),
    ] {
        bench.proxy.clear();
        bench.proxy.take_log();
        bench.proxy.add(Rule::on("iam:ListUsers", fault.clone()));
        let error = iam.list_users().send().await.unwrap_err();
        assert_eq!(
            aws_sdk_iam::error::ProvideErrorMetadata::code(&error),
            code,
            "{fault:?}: {error:?}"
        );
        if code.is_none() {
            // A reset is an I/O failure, which the SDK retries as transient.
            assert!(
                matches!(error, aws_sdk_iam::error::SdkError::DispatchFailure(_)),
                "{fault:?}: {error:?}"
            );
        }
        assert_eq!(
            bench.proxy.requests().get("iam:ListUsers"),
            Some(&3),
            "{fault:?} is retried"
        );
    }
}

/// 20% throttled and 5% server errors on every call, with the production retry settings: the exact truth, and
/// every finding delivered, within the deadline. Slow by design of adaptive retry: after the first throttle its
/// client-side rate limiter wants 10 tokens per retry but, at keywatch's low request rate, holds only a few, so
/// each retry waits up to the 20 s backoff cap. A 12-user account takes 20-50 s here (2-3 s in standard mode).
#[tokio::test]
async fn moderate_retryable_faults_give_the_exact_truth() {
    let bench = Bench::start().await;
    // No EXEMPT_USERS in this deployment: `svc-` names are findings like any other.
    let (findings, exempted) = bench
        .account
        .seed_random(&mut Seeded::new(7), 12, "m")
        .await
        .truth(false);
    let truth = Truth {
        findings,
        exempted,
        pending: BTreeSet::new(),
    };
    assert!(
        truth.findings.len() >= 3,
        "the seed gives some findings: {truth:?}"
    );
    bench.proxy.seed(20_261_129);
    bench
        .proxy
        .add(Rule::on("*", Fault::Throttling).rate(0.20))
        .add(Rule::on("*", Fault::ServiceFailure).rate(0.05));

    let keywatch = bench.keywatch(None).await;
    let budget = Duration::from_secs(180);
    for source in SOURCES {
        let run_id = format!("moderate-{source:?}");
        let started = Instant::now();
        let report = keywatch
            .run(
                &Invocation::SCHEDULED.with_source(source),
                &run_id,
                &Deadline::after(budget),
            )
            .await
            .unwrap_or_else(|e| panic!("{source:?}: retryable faults must not fail the run: {e}"));
        let elapsed = started.elapsed();
        let log = bench.proxy.take_log();
        let faults = log.iter().filter(|s| s.fault.is_some()).count();
        println!(
            "{source:?}: {} requests, {faults} faults injected, {} operations, {elapsed:?}",
            log.len(),
            report.api_calls.total
        );
        assert!(faults > 0, "the proxy injected faults");
        assert_eq!(Truth::of(&report), truth, "{source:?}");
        let (delivered, _) = bench.delivered(&run_id).await;
        assert_eq!(
            delivered, truth.findings,
            "{source:?}: every finding delivered"
        );
    }
}

/// A fault that outlasts every retry fails the run, naming the call and what to do.
#[tokio::test]
async fn persistent_faults_fail_loudly_naming_the_call() {
    let bench = Bench::start().await;
    bench.account.console_user("alice").await;
    bench.account.key("alice").await;

    let report_only = ["iam:GenerateCredentialReport", "iam:GetCredentialReport"];
    let everywhere = [
        "sts:GetCallerIdentity",
        "iam:ListUsers",
        "iam:ListAccessKeys",
        "iam:GetLoginProfile",
        "iam:GetAccessKeyLastUsed",
        "iam:ListUserTags",
        "sns:Publish",
    ];
    let faults = [
        (Fault::AccessDenied, "Keywatch.AccessDenied", "Grant "),
        (
            Fault::Throttling,
            "Keywatch.Throttled",
            "raise AWS_MAX_ATTEMPTS",
        ),
        (Fault::ServiceFailure, "Keywatch.AwsError", "Run again"),
    ];
    let max_attempts = 3;
    for source in SOURCES {
        let actions = everywhere.iter().chain(
            report_only
                .iter()
                .filter(|_| source == Source::CredentialReport),
        );
        for action in actions {
            for (fault, error_type, hint) in &faults {
                bench.proxy.clear();
                bench.proxy.take_log();
                bench.proxy.add(Rule::on(action, fault.clone()));
                let keywatch = bench.keywatch(fast_retry(max_attempts)).await;
                let case = format!("{source:?}, {fault:?} on {action}");
                let started = Instant::now();
                let result = keywatch
                    .run(
                        &Invocation::SCHEDULED.with_source(source),
                        "persistent",
                        &Deadline::after(Duration::from_secs(30)),
                    )
                    .await;
                let error = match result {
                    Ok(report) => panic!("{case}: Ok with {} findings", report.findings.len()),
                    Err(error) => error,
                };
                let message = error.to_string();
                // A publish failure is reported as such, with the AWS error as its cause.
                let (expected_type, cause) = match &error {
                    Error::Publish {
                        cause, delivered, ..
                    } => {
                        assert!(delivered.is_empty(), "{case}");
                        ("Keywatch.PublishFailed", cause.as_ref())
                    }
                    other => (*error_type, other),
                };
                assert_eq!(error.error_type(), expected_type, "{case}: {message}");
                assert_eq!(cause.error_type(), *error_type, "{case}: {message}");
                assert!(
                    message.contains(action) && message.contains(hint),
                    "{case}: {message}"
                );
                let attempts = bench.proxy.requests().get(*action).copied().unwrap_or(0);
                if *fault == Fault::AccessDenied {
                    // Never retried in vain: each denied call (its parameters) reached AWS exactly once. Other
                    // calls of the same action may have been in flight side by side.
                    let mut tries: BTreeMap<u64, usize> = BTreeMap::new();
                    for seen in bench.proxy.log().iter().filter(|s| s.action == *action) {
                        *tries.entry(seen.request).or_default() += 1;
                    }
                    assert!(!tries.is_empty(), "{case}: never called");
                    assert!(
                        tries.values().all(|n| *n == 1),
                        "{case}: a denied call was retried: {tries:?}"
                    );
                } else {
                    let expected: u64 = max_attempts.into();
                    assert!(attempts >= expected, "{case}: {attempts} attempts");
                }
                assert!(
                    bench.account.delivered(&bench.queue).await.is_empty(),
                    "{case}: nothing is published by a failed run"
                );
                println!("{case}: {:?} → {}", started.elapsed(), error.error_type());
            }
        }
    }
}

/// A report state IAM answers once (`times(1)`) and then not again: the run waits, asks again and is exact, with
/// exactly the calls that takes. Without a fault a run generates twice (moto answers `STARTED`, then `COMPLETE`)
/// and gets once; a failed GetCredentialReport costs one more of each, a refused generation one more generation.
async fn a_one_off_report_state_is_recovered_from(
    action: &str,
    fault: Fault,
    generate: u64,
    get: u64,
) {
    let bench = Bench::start().await;
    bench.account.console_user("alice").await;
    let key = bench.account.key("alice").await.id;
    bench.proxy.add(Rule::on(action, fault.clone()).times(1));
    let keywatch = bench.keywatch(None).await;
    bench.proxy.take_log();
    let report = keywatch
        .run(
            &Invocation::SCHEDULED.with_source(Source::CredentialReport),
            "one-off",
            &Deadline::after(Duration::from_secs(30)),
        )
        .await
        .unwrap_or_else(|e| panic!("{fault:?} once on {action}: {e}"));
    assert!(bench.proxy.served(&fault), "{fault:?} was served");
    assert_eq!(
        Truth::of(&report).findings,
        BTreeSet::from([("alice".to_string(), key)]),
        "{fault:?}"
    );
    let requests = bench.proxy.requests();
    let count = |action: &str| requests.get(action).copied().unwrap_or(0);
    assert_eq!(
        (
            count("iam:GenerateCredentialReport"),
            count("iam:GetCredentialReport")
        ),
        (generate, get),
        "{fault:?} once on {action}: {requests:?}"
    );
}

#[tokio::test]
async fn a_report_in_progress_once_is_asked_for_again() {
    a_one_off_report_state_is_recovered_from(
        "iam:GetCredentialReport",
        Fault::ReportInProgress,
        3,
        2,
    )
    .await;
}

#[tokio::test]
async fn a_report_expired_once_is_generated_again() {
    a_one_off_report_state_is_recovered_from("iam:GetCredentialReport", Fault::ReportExpired, 3, 2)
        .await;
}

#[tokio::test]
async fn generation_over_its_limit_once_is_tried_again() {
    a_one_off_report_state_is_recovered_from(
        "iam:GenerateCredentialReport",
        Fault::LimitExceeded,
        3,
        1,
    )
    .await;
}

/// A report that never completes, or generation that is always over its limit, ends before a short deadline.
#[tokio::test]
async fn report_that_never_completes_fails_before_the_deadline() {
    let bench = Bench::start().await;
    bench.account.console_user("alice").await;
    bench.account.key("alice").await;
    let budget = Duration::from_secs(3);
    for (action, fault) in [
        ("iam:GetCredentialReport", Fault::ReportInProgress),
        ("iam:GetCredentialReport", Fault::ReportNotPresent),
        ("iam:GetCredentialReport", Fault::ReportExpired),
        ("iam:GenerateCredentialReport", Fault::LimitExceeded),
    ] {
        bench.proxy.clear();
        bench.proxy.add(Rule::on(action, fault.clone()));
        let keywatch = bench.keywatch(None).await;
        let started = Instant::now();
        let result = keywatch
            .run(
                &Invocation::SCHEDULED.with_source(Source::CredentialReport),
                "never-ready",
                &Deadline::after(budget),
            )
            .await;
        let elapsed = started.elapsed();
        match result {
            Err(error @ Error::ReportNotReady { .. }) => {
                assert_eq!(error.error_type(), "Keywatch.ReportNotReady");
                let code = fault.code();
                assert!(error.to_string().contains(code), "{fault:?}: {error}");
            }
            other => panic!("{fault:?}: expected ReportNotReady, got {other:?}"),
        }
        assert!(elapsed < budget + DEADLINE_SLACK, "{fault:?}: {elapsed:?}");
        println!("{fault:?} on {action}: ReportNotReady after {elapsed:?}");
    }
}

/// How late after its deadline a run may end on 2 busy cores: room for a stalled scheduler, and still far short of
/// the 60 s a hung endpoint holds a call, or of a report that never comes.
const DEADLINE_SLACK: Duration = Duration::from_secs(3);

/// A hung endpoint ends the run at the deadline with the phase it was in, not when Lambda kills it.
#[tokio::test]
async fn delayed_response_ends_the_run_at_the_deadline() {
    let bench = Bench::start().await;
    bench.account.console_user("alice").await;
    bench.account.key("alice").await;
    let budget = Duration::from_secs(2);
    for (source, action, phase) in [
        (
            Source::CredentialReport,
            "sts:GetCallerIdentity",
            "identifying the account",
        ),
        (
            Source::CredentialReport,
            "iam:GenerateCredentialReport",
            "credential report generation",
        ),
        (
            Source::CredentialReport,
            "iam:GetCredentialReport",
            "credential report generation",
        ),
        (Source::CredentialReport, "iam:ListUsers", "ListUsers"),
        (
            Source::CredentialReport,
            "iam:GetAccessKeyLastUsed",
            "live verification",
        ),
        (Source::Api, "iam:ListAccessKeys", "live inventory"),
        (
            Source::CredentialReport,
            "sns:Publish",
            "publishing the alert",
        ),
    ] {
        bench.proxy.clear();
        bench
            .proxy
            .add(Rule::on(action, Fault::Delay(Duration::from_secs(60))));
        let keywatch = bench.keywatch(None).await;
        let started = Instant::now();
        let result = keywatch
            .run(
                &Invocation::SCHEDULED.with_source(source),
                "hung",
                &Deadline::after(budget),
            )
            .await;
        let elapsed = started.elapsed();
        let deadline = match &result {
            Err(Error::Publish { cause, .. }) => cause.as_ref(),
            Err(error) => error,
            Ok(report) => panic!("{action}: Ok with {} findings", report.findings.len()),
        };
        match deadline {
            Error::Deadline { phase: p } => assert_eq!(*p, phase, "{action}"),
            other => panic!("{action}: expected a deadline error, got {other:?}"),
        }
        assert!(elapsed < budget + DEADLINE_SLACK, "{action}: {elapsed:?}");
        println!("{action}: {} after {elapsed:?}", deadline.error_type());
    }
}

/// A credential report older than the keys still lists a deleted, a deactivated and a used key, and a deleted
/// user: live verification drops them all, and a user re-created since is reported with the new key.
#[tokio::test]
async fn stale_report_never_reports_keys_changed_since() {
    let bench = Bench::start().await;
    let a = &bench.account;
    let mut keys = BTreeMap::new();
    for name in [
        "deleted",
        "deactivated",
        "used",
        "gone",
        "recreated",
        "kept",
    ] {
        a.console_user(name).await;
        keys.insert(name, a.key(name).await);
    }
    let keywatch = bench.keywatch(None).await;
    let deadline = Deadline::after(Duration::from_secs(30));
    let fresh = keywatch
        .run(
            &Invocation::SCHEDULED.with_source(Source::CredentialReport),
            "fresh",
            &deadline,
        )
        .await
        .expect("a clean run");
    assert_eq!(fresh.findings.len(), 6, "the recorded report knows all six");

    a.iam
        .delete_access_key()
        .user_name("deleted")
        .access_key_id(&keys["deleted"].id)
        .send()
        .await
        .unwrap();
    a.deactivate("deactivated", &keys["deactivated"]).await;
    a.use_key(&keys["used"]).await;
    for user in ["gone", "recreated"] {
        a.iam
            .delete_access_key()
            .user_name(user)
            .access_key_id(&keys[user].id)
            .send()
            .await
            .unwrap();
        a.iam
            .delete_login_profile()
            .user_name(user)
            .send()
            .await
            .unwrap();
        a.iam.delete_user().user_name(user).send().await.unwrap();
    }
    a.console_user("recreated").await;
    let new_key = a.key("recreated").await;

    bench.delivered("fresh").await;
    bench.proxy.take_log();
    bench
        .proxy
        .add(Rule::on("iam:GetCredentialReport", Fault::StaleReport));
    let stale = keywatch
        .run(
            &Invocation::SCHEDULED.with_source(Source::CredentialReport),
            "stale",
            &deadline,
        )
        .await
        .expect("a clean run on a stale report");
    assert!(
        bench.proxy.served(&Fault::StaleReport),
        "the stale report was served"
    );
    let expected: BTreeSet<(String, String)> = [
        ("kept".to_string(), keys["kept"].id.clone()),
        ("recreated".to_string(), new_key.id.clone()),
    ]
    .into();
    assert_eq!(Truth::of(&stale).findings, expected);
    assert_eq!(bench.delivered("stale").await.0, expected);
}

/// What changed since an old report, on users it lists: a password added to a user with a never-used key, and
/// a never-used key reactivated, are both found live. A new key on a user the report lists with no never-used
/// key is the one blind spot the README names: it waits for the next report.
#[tokio::test]
async fn stale_report_still_finds_passwords_added_and_keys_reactivated_since() {
    let bench = Bench::start().await;
    let a = &bench.account;
    a.user("pw-later").await;
    let pw_later = a.key("pw-later").await;
    a.console_user("reactivated").await;
    let reactivated = a.key("reactivated").await;
    a.deactivate("reactivated", &reactivated).await;
    a.user("svc-no-password").await;
    a.key("svc-no-password").await;
    a.console_user("blind-spot").await;
    let used = a.key("blind-spot").await;
    a.use_key(&used).await;

    let keywatch = bench.keywatch(None).await;
    let deadline = Deadline::after(Duration::from_secs(30));
    let fresh = keywatch
        .run(
            &Invocation::SCHEDULED
                .with_source(Source::CredentialReport)
                .dry(),
            "fresh",
            &deadline,
        )
        .await
        .expect("a clean run");
    assert!(fresh.findings.is_empty(), "{:?}", fresh.findings);

    a.password("pw-later").await;
    a.iam
        .update_access_key()
        .user_name("reactivated")
        .access_key_id(&reactivated.id)
        .status(aws_sdk_iam::types::StatusType::Active)
        .send()
        .await
        .unwrap();
    let unseen = a.key("blind-spot").await;

    bench
        .proxy
        .add(Rule::on("iam:GetCredentialReport", Fault::StaleReport));
    let stale = keywatch
        .run(
            &Invocation::SCHEDULED
                .with_source(Source::CredentialReport)
                .dry(),
            "stale",
            &deadline,
        )
        .await
        .expect("a clean run on a stale report");
    assert!(
        bench.proxy.served(&Fault::StaleReport),
        "the stale report was served"
    );
    let expected: BTreeSet<(String, String)> = [
        ("pw-later".to_string(), pw_later.id.clone()),
        ("reactivated".to_string(), reactivated.id.clone()),
    ]
    .into();
    assert_eq!(Truth::of(&stale).findings, expected);
    // Every user with a never-used key in the report is looked at live: the three above, not blind-spot.
    assert_eq!(stale.candidates_verified, 3);

    // The live inventory has no blind spot.
    let live = keywatch
        .run(
            &Invocation::SCHEDULED.with_source(Source::Api).dry(),
            "live",
            &deadline,
        )
        .await
        .expect("a clean live run");
    let mut with_blind_spot = expected.clone();
    with_blind_spot.insert(("blind-spot".to_string(), unseen.id.clone()));
    assert_eq!(Truth::of(&live).findings, with_blind_spot);
}

/// ListUsers is read page by page to its end (`Marker` after `Marker`): 50 reported users and a stale report,
/// pages of at most 7 users, and 10 users created after the report on the last pages give exact findings in
/// exactly the 9 ListUsers calls 60 users need. (The benchmark runs IAM-sized pages over thousands of users.)
#[tokio::test]
async fn list_users_is_read_to_its_last_page_with_a_stale_report() {
    const REPORTED: usize = 50;
    const LATE: usize = 10;
    const PAGE: usize = 7;
    let bench = Bench::start().await;
    bench.proxy.page_list_users_by(PAGE);
    let a = &bench.account;
    // Every 5th reported user is a console user with a never-used key.
    for i in 0..REPORTED {
        let name = format!("user-{i:02}");
        a.user(&name).await;
        if i % 5 == 0 {
            a.password(&name).await;
            a.key(&name).await;
        }
    }
    let keywatch = bench.keywatch(None).await;
    let deadline = Deadline::after(Duration::from_secs(60));
    let fresh = keywatch
        .run(
            &Invocation::SCHEDULED
                .with_source(Source::CredentialReport)
                .dry(),
            "paged-fresh",
            &deadline,
        )
        .await
        .expect("a clean run");
    assert_eq!(fresh.findings.len(), REPORTED / 5);
    assert_eq!(fresh.users_examined, REPORTED);

    // Created after the report: the report does not list them, and ListUsers has them on its last pages.
    let mut expected = Truth::of(&fresh).findings;
    for i in 0..LATE {
        let name = format!("zz-late-{i:02}");
        a.user(&name).await;
        if i % 3 == 0 {
            a.password(&name).await;
            expected.insert((name.clone(), a.key(&name).await.id));
        }
    }
    bench
        .proxy
        .add(Rule::on("iam:GetCredentialReport", Fault::StaleReport));
    bench.proxy.take_log();
    let stale = keywatch
        .run(
            &Invocation::SCHEDULED
                .with_source(Source::CredentialReport)
                .dry(),
            "paged-stale",
            &deadline,
        )
        .await
        .expect("a clean run on a stale report");
    let log = bench.proxy.take_log();
    assert!(log.iter().any(|s| s.fault == Some(Fault::StaleReport)));
    let list_calls = log.iter().filter(|s| s.action == "iam:ListUsers").count();
    assert_eq!(
        list_calls,
        (REPORTED + LATE).div_ceil(PAGE),
        "one call per page, to the last"
    );
    assert_eq!(stale.users_examined, REPORTED + LATE);
    assert_eq!(Truth::of(&stale).findings, expected);
}

/// A user deleted while the run reads it answers NoSuchEntity on its next call: it drops out, and is never
/// reported (GetLoginProfile's NoSuchEntity means no password, which also ends the case).
#[tokio::test]
async fn a_user_that_vanishes_mid_run_is_never_reported() {
    let bench = Bench::start().await;
    bench.account.console_user("alice").await;
    let key = bench.account.key("alice").await;
    let keywatch = bench.keywatch(None).await;
    let deadline = Deadline::after(Duration::from_secs(30));
    let before = keywatch
        .run(
            &Invocation::SCHEDULED
                .with_source(Source::CredentialReport)
                .dry(),
            "present",
            &deadline,
        )
        .await
        .expect("a clean run");
    assert_eq!(
        Truth::of(&before).findings,
        [("alice".to_string(), key.id.clone())].into()
    );
    for action in [
        "iam:ListAccessKeys",
        "iam:GetLoginProfile",
        "iam:GetAccessKeyLastUsed",
        "iam:ListUserTags",
    ] {
        for source in SOURCES {
            bench.proxy.clear();
            bench.proxy.add(Rule::on(action, Fault::NoSuchEntity));
            let report = keywatch
                .run(
                    &Invocation::SCHEDULED.with_source(source).dry(),
                    "vanished",
                    &deadline,
                )
                .await
                .unwrap_or_else(|e| panic!("{action} {source:?}: {e}"));
            assert_eq!(
                Truth::of(&report),
                Truth::default(),
                "{action} {source:?}: a vanished user is not reported"
            );
        }
    }
}

/// An answer that lacks what a verdict needs fails the run with a message that says so; nothing is defaulted.
#[tokio::test]
async fn answers_missing_a_field_fail_loudly() {
    let bench = Bench::start().await;
    bench.account.console_user("alice").await;
    bench.account.key("alice").await;
    let deadline = Deadline::after(Duration::from_secs(30));
    for (action, element, error_type, needle) in [
        (
            "iam:GetCredentialReport",
            "GeneratedTime",
            "Keywatch.ReportMalformed",
            "has no GeneratedTime",
        ),
        (
            "iam:GetCredentialReport",
            "Content",
            "Keywatch.ReportMalformed",
            "has no Content",
        ),
        (
            "iam:ListAccessKeys",
            "AccessKeyId",
            "Keywatch.IncompleteResponse",
            "a key of user alice",
        ),
        (
            "sts:GetCallerIdentity",
            "Account",
            "Keywatch.IncompleteResponse",
            "without an account ID",
        ),
    ] {
        bench.proxy.clear();
        bench.proxy.add(Rule::on(action, Fault::Strip(element)));
        // A new container each time: the account ID is asked once per container.
        let keywatch = bench.keywatch(None).await;
        let error = keywatch
            .run(
                &Invocation::SCHEDULED
                    .with_source(Source::CredentialReport)
                    .dry(),
                "missing",
                &deadline,
            )
            .await
            .expect_err("a missing field fails the run");
        assert_eq!(error.error_type(), error_type, "{element}: {error}");
        assert!(error.to_string().contains(needle), "{element}: {error}");
        // The failure is not remembered: the same container succeeds once the answer is whole.
        bench.proxy.clear();
        let report = keywatch
            .run(
                &Invocation::SCHEDULED
                    .with_source(Source::CredentialReport)
                    .dry(),
                "whole",
                &deadline,
            )
            .await
            .unwrap_or_else(|e| panic!("{element}: after the fault: {e}"));
        assert_eq!(report.account_id, "123456789012");
        assert_eq!(report.findings.len(), 1);
    }
}

/// Dispatch over a listed fleet of 12 accounts (two SQS batches). An entry SQS did not accept is sent again within
/// the run, and only it: every account is sent exactly once. Batches that keep failing fail the run after the
/// retries, naming exactly the accounts not sent.
#[tokio::test]
async fn a_partial_dispatch_resends_only_what_failed_then_fails_naming_the_rest() {
    let bench = Bench::start().await;
    let queue = bench.account.queue("keywatch-work").await;
    let accounts: Vec<String> = (0..12).map(|i| format!("1000000000{i:02}")).collect();
    let listed = accounts.join(",");
    let vars = [
        ("FINDINGS_TOPIC_ARN", TOPIC),
        ("AWS_REGION", "us-east-1"),
        ("ACCOUNTS", listed.as_str()),
        ("WORK_QUEUE_URL", queue.as_str()),
    ];
    let keywatch = bench.keywatch_with(&vars).await;
    let deadline = Deadline::after(Duration::from_secs(30));
    let dispatch = || {
        keywatch.route(
            Event::Check(Invocation::SCHEDULED.with_source(Source::CredentialReport)),
            "fan-out",
            &deadline,
        )
    };
    let sent_accounts = || async {
        let mut sent: Vec<String> = support::pump::take_bodies(&bench.account.sqs, &queue)
            .await
            .iter()
            .map(|body| {
                keywatch::event::WorkItem::decode(body)
                    .expect("a work item")
                    .account_id
            })
            .collect();
        sent.sort();
        sent
    };

    // The first batch's answer reports the entry of account 3 failed, once.
    bench
        .proxy
        .add(Rule::on("sqs:SendMessageBatch", Fault::FailBatchEntry("3")).nth(1));
    let sent = dispatch().await.expect("a dispatch that recovers");
    let keywatch::route::Response::Dispatched(sent) = sent else {
        panic!("a dispatch response: {sent:?}")
    };
    assert_eq!((sent.dispatched, &sent.accounts), (12, &accounts));
    assert!(bench.proxy.served(&Fault::FailBatchEntry("3")));
    assert_eq!(sent_accounts().await, accounts, "each account exactly once");
    assert_eq!(
        bench.proxy.requests().get("sqs:SendMessageBatch"),
        Some(&3),
        "two batches, then only the failed entry"
    );

    // Every batch denied: tried in each round, then the run fails naming every account.
    bench.proxy.clear();
    bench.proxy.take_log();
    bench
        .proxy
        .add(Rule::on("sqs:SendMessageBatch", Fault::AccessDenied));
    let error = dispatch()
        .await
        .expect_err("a dispatch that cannot recover");
    match &error {
        Error::Dispatch { failed, sent, .. } => {
            assert_eq!(failed, &accounts);
            assert_eq!(*sent, 0);
        }
        other => panic!("expected a dispatch error, got {other:?}"),
    }
    assert_eq!(error.error_type(), "Keywatch.DispatchFailed");
    assert!(
        error
            .to_string()
            .contains(&format!("not sent: {}", accounts.join(", "))),
        "{error}"
    );
    assert_eq!(
        bench.proxy.requests().get("sqs:SendMessageBatch"),
        Some(&6),
        "two batches in each of three rounds"
    );
    assert!(sent_accounts().await.is_empty());
}

/// An organization listing that leaves nothing to check fails loudly, naming why: a management account that is not
/// one (moto's ListAccounts from a member lists nothing), and a fleet whose every account is excluded.
#[tokio::test]
async fn a_dispatch_with_no_account_to_check_fails_naming_why() {
    let bench = Bench::start().await;
    let queue = bench.account.queue("keywatch-work").await;
    let deadline = Deadline::after(Duration::from_secs(30));
    let keywatch_with = |vars: Vec<(&'static str, String)>| {
        let bench = &bench;
        async move {
            let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
            bench.keywatch_with(&vars).await
        }
    };
    let base = |accounts: &str, exclude: &str| {
        vec![
            ("FINDINGS_TOPIC_ARN", TOPIC.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("ACCOUNTS", accounts.to_string()),
            ("EXCLUDE_ACCOUNTS", exclude.to_string()),
            ("WORK_QUEUE_URL", queue.clone()),
        ]
    };
    for (vars, needle) in [
        // No organization at all: ListAccounts lists nothing.
        (
            base("organization", ""),
            "not the organization's management account",
        ),
        (
            base("111111111111,222222222222", "111111111111,222222222222"),
            "every account of ACCOUNTS (2) is in EXCLUDE_ACCOUNTS",
        ),
    ] {
        let keywatch = keywatch_with(vars).await;
        for event in [
            Event::Check(Invocation::SCHEDULED.with_source(Source::CredentialReport)),
            Event::Check(Invocation {
                dry_run: true,
                ..Invocation::default()
            }),
        ] {
            let error = keywatch
                .route(event, "nothing", &deadline)
                .await
                .expect_err("nothing to check is a failure");
            assert_eq!(error.error_type(), "Keywatch.NoAccounts", "{error}");
            assert!(error.to_string().contains(needle), "{error}");
        }
    }
    assert!(support::pump::take_bodies(&bench.account.sqs, &queue)
        .await
        .is_empty());
}

/// Remediation looks at each key once more right before acting: a key used between verification and that
/// look (the proxy signs a request with it just then) is skipped, with the reason; the other is deactivated.
#[tokio::test]
async fn a_key_used_between_verification_and_remediation_is_skipped() {
    let bench = Bench::start().await;
    let a = &bench.account;
    a.console_user("ann").await;
    let ann = a.key("ann").await;
    a.console_user("bob").await;
    let bob = a.key("bob").await;
    let keywatch = bench.deactivating().await;
    bench.proxy.add(
        Rule::on(
            "iam:GetAccessKeyLastUsed",
            Fault::UseKeyFirst {
                id: ann.id.clone(),
                secret: ann.secret.clone(),
            },
        )
        .param("AccessKeyId", &ann.id)
        .nth(2),
    );
    let report = keywatch
        .run(
            &Invocation::SCHEDULED.with_source(Source::CredentialReport),
            "used-meanwhile",
            &Deadline::after(Duration::from_secs(30)),
        )
        .await
        .expect("a clean run");
    assert!(
        bench
            .proxy
            .log()
            .iter()
            .any(|s| matches!(s.fault, Some(Fault::UseKeyFirst { .. }))),
        "the key was used between the two looks"
    );
    let remediated: Vec<&str> = report
        .remediated
        .iter()
        .map(|r| r.access_key_id.as_str())
        .collect();
    assert_eq!(remediated, [bob.id.as_str()]);
    let [skipped] = &report.remediation_skipped[..] else {
        panic!("one skip: {:?}", report.remediation_skipped)
    };
    assert_eq!(skipped.access_key_id, ann.id);
    assert!(skipped.reason.contains("was used at"), "{}", skipped.reason);
    assert_eq!(bench.account.key_statuses().await[&ann.id], "Active");
    assert_eq!(bench.account.key_statuses().await[&bob.id], "Inactive");
    let (_, documents) = bench.delivered("used-meanwhile").await;
    assert_eq!(
        documents[0]["remediated"][0]["access_key_id"],
        bob.id.as_str()
    );
    assert_eq!(
        documents[0]["remediation_skipped"][0]["access_key_id"],
        ann.id.as_str()
    );
}

/// A denied UpdateAccessKey: the other key is still deactivated, the alert still goes out saying which key
/// failed, and then the run fails naming it.
#[tokio::test]
async fn a_denied_deactivation_is_alerted_then_fails_the_run() {
    let bench = Bench::start().await;
    let a = &bench.account;
    a.console_user("ann").await;
    let ann = a.key("ann").await;
    a.console_user("bob").await;
    let bob = a.key("bob").await;
    let keywatch = bench.deactivating().await;
    bench
        .proxy
        .add(Rule::on("iam:UpdateAccessKey", Fault::AccessDenied).param("AccessKeyId", &ann.id));
    let error = keywatch
        .run(
            &Invocation::SCHEDULED.with_source(Source::CredentialReport),
            "denied",
            &Deadline::after(Duration::from_secs(30)),
        )
        .await
        .expect_err("a key that could not be deactivated fails the run");
    assert_eq!(error.error_type(), "Keywatch.RemediationFailed");
    let message = error.to_string();
    assert!(message.contains(&format!("{} (ann)", ann.id)), "{message}");
    assert!(!message.contains(&bob.id), "{message}");
    assert_eq!(bench.account.key_statuses().await[&ann.id], "Active");
    assert_eq!(bench.account.key_statuses().await[&bob.id], "Inactive");
    let (findings, documents) = bench.delivered("denied").await;
    assert_eq!(
        findings.len(),
        2,
        "the alert went out before the run failed"
    );
    assert_eq!(
        documents[0]["remediation_failed"][0]["access_key_id"],
        ann.id.as_str()
    );
    assert_eq!(
        documents[0]["remediated"][0]["access_key_id"],
        bob.id.as_str()
    );
}

/// Every finding in the account's own Security Hub, read by [`support::hub_findings`] (the one reader), as
/// Id → (RecordState, Compliance status, CreatedAt).
async fn hub_states(
    hub: &aws_sdk_securityhub::Client,
) -> BTreeMap<String, (String, String, String)> {
    support::hub_findings(hub)
        .await
        .into_iter()
        .map(|f| {
            (
                f.id.unwrap_or_default(),
                (
                    f.record_state
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    f.compliance
                        .and_then(|c| c.status)
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    f.created_at.unwrap_or_default(),
                ),
            )
        })
        .collect()
}

/// Security Hub's lifecycle: the first run imports complete findings; after a key is deleted, a failed run
/// archives nothing; the next successful run archives that finding while the others keep their CreatedAt; an
/// exempted key's finding is archived; a dry run writes nothing.
#[tokio::test]
async fn security_hub_findings_are_imported_kept_and_archived_only_after_a_successful_check() {
    let bench = Bench::start().await;
    let a = &bench.account;
    let mut keys = BTreeMap::new();
    for user in ["ann", "bob", "cy"] {
        a.console_user(user).await;
        keys.insert(user, a.key(user).await);
    }
    let loader = bench.proxy.configure(config_loader(3));
    let vars = [
        ("FINDINGS_TOPIC_ARN", TOPIC),
        ("AWS_REGION", "us-east-1"),
        ("SECURITY_HUB", "true"),
    ];
    let keywatch = Keywatch::new(settings(&vars), isolated_clients(&loader.load().await));
    let hub = aws_sdk_securityhub::Client::new(&bench.moto.sdk_config().await);
    let deadline = Deadline::after(Duration::from_secs(30));
    let id = |user: &str| format!("123456789012/{user}/{}", keys[user].id);

    // A dry run writes nothing.
    keywatch
        .run(
            &Invocation::SCHEDULED
                .with_source(Source::CredentialReport)
                .dry(),
            "dry",
            &deadline,
        )
        .await
        .expect("a dry run");
    assert!(
        hub_states(&hub).await.is_empty(),
        "a dry run imported findings"
    );

    let first = keywatch
        .run(
            &Invocation::SCHEDULED.with_source(Source::CredentialReport),
            "first",
            &deadline,
        )
        .await
        .expect("a clean run");
    assert_eq!(
        first
            .security_hub
            .as_ref()
            .map(|s| (s.imported, s.archived)),
        Some((3, 0))
    );
    let imported = hub_states(&hub).await;
    assert_eq!(
        imported.keys().cloned().collect::<Vec<_>>(),
        ["ann", "bob", "cy"].map(id)
    );
    assert!(imported
        .values()
        .all(|(state, status, _)| state == "ACTIVE" && status == "FAILED"));
    // Complete ASFF, as Security Hub stores it.
    let stored = support::hub_findings(&hub).await;
    for finding in &stored {
        assert_eq!(finding.schema_version.as_deref(), Some("2018-10-08"));
        assert_eq!(
            finding.product_arn.as_deref(),
            Some("arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default")
        );
        assert_eq!(
            finding.generator_id.as_deref(),
            Some("cis-1.11-never-used-key-on-console-user")
        );
        let resources = finding.resources.as_ref().unwrap();
        assert_eq!(resources[0].r#type.as_deref(), Some("AwsIamAccessKey"));
        assert_eq!(resources[1].r#type.as_deref(), Some("AwsIamUser"));
        assert!(
            finding.title.is_some()
                && finding.description.is_some()
                && finding.updated_at.is_some()
        );
    }

    // bob's key is deleted; then a run that fails before it could look archives nothing.
    a.iam
        .delete_access_key()
        .user_name("bob")
        .access_key_id(&keys["bob"].id)
        .send()
        .await
        .unwrap();
    bench
        .proxy
        .add(Rule::on("iam:GetCredentialReport", Fault::AccessDenied));
    keywatch
        .run(
            &Invocation::SCHEDULED.with_source(Source::CredentialReport),
            "failed",
            &deadline,
        )
        .await
        .expect_err("a denied report fails the run");
    assert_eq!(
        hub_states(&hub).await,
        imported,
        "a failed check changed the hub"
    );
    bench.proxy.clear();

    // cy is exempted since; the next successful run archives bob's and cy's findings and keeps ann's CreatedAt.
    a.iam
        .tag_user()
        .user_name("cy")
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("keywatch:exempt")
                .value("SEC-7")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let next = keywatch
        .run(
            &Invocation::SCHEDULED.with_source(Source::CredentialReport),
            "next",
            &deadline,
        )
        .await
        .expect("a clean run");
    assert_eq!(
        next.security_hub.as_ref().map(|s| (s.imported, s.archived)),
        Some((1, 2))
    );
    let after = hub_states(&hub).await;
    assert_eq!(after[&id("ann")].0, "ACTIVE");
    assert_eq!(
        after[&id("ann")].2,
        imported[&id("ann")].2,
        "CreatedAt is kept"
    );
    for user in ["bob", "cy"] {
        assert_eq!(
            (after[&id(user)].0.as_str(), after[&id(user)].1.as_str()),
            ("ARCHIVED", "PASSED"),
            "{user}"
        );
    }
    let updated = support::hub_findings(&hub).await;
    let ann = updated
        .iter()
        .find(|f| f.id.as_deref() == Some(id("ann").as_str()))
        .unwrap();
    assert_ne!(
        ann.updated_at, ann.created_at,
        "UpdatedAt is the run's time"
    );
}

/// Security Hub's limits: 250 findings go in as imports of at most 100 (the proxy refuses a larger one, as AWS
/// does and moto does not), each finding once; the hub's findings are read back a page of 100 at a time (moto
/// pages GetFindings as AWS does); when 120 keys are deleted, the next run archives exactly those 120, past the first page too.
#[tokio::test]
async fn security_hub_takes_250_findings_100_at_a_time_and_reads_them_back_in_pages() {
    let bench = Bench::start().await;
    let a = &bench.account;
    let mut keys = Vec::new();
    for n in 0..250 {
        let user = format!("u{n:03}");
        a.console_user(&user).await;
        keys.push((user.clone(), a.key(&user).await.id));
    }
    let loader = bench.proxy.configure(config_loader(3));
    let vars = [
        ("FINDINGS_TOPIC_ARN", TOPIC),
        ("AWS_REGION", "us-east-1"),
        ("SECURITY_HUB", "true"),
        ("ALERTS", "every-run"),
    ];
    let keywatch = Keywatch::new(settings(&vars), isolated_clients(&loader.load().await));
    let hub = aws_sdk_securityhub::Client::new(&bench.moto.sdk_config().await);
    let deadline = Deadline::after(Duration::from_secs(120));
    let calls = |action: &str| {
        bench
            .proxy
            .take_log()
            .iter()
            .filter(|s| s.action == action)
            .count()
    };
    bench.proxy.take_log();

    let first = keywatch
        .run(
            &Invocation::SCHEDULED.with_source(Source::CredentialReport),
            "first",
            &deadline,
        )
        .await
        .expect("250 findings imported");
    assert_eq!(first.findings.len(), 250);
    assert_eq!(
        first
            .security_hub
            .as_ref()
            .map(|s| (s.imported, s.archived)),
        Some((250, 0))
    );
    assert_eq!(
        calls("securityhub:BatchImportFindings"),
        3,
        "100 + 100 + 50, none refused"
    );
    let stored = hub_states(&hub).await;
    assert_eq!(stored.len(), 250);
    assert!(stored.values().all(|(state, _, _)| state == "ACTIVE"));

    for (user, key) in keys.iter().take(120) {
        a.iam
            .delete_access_key()
            .user_name(user)
            .access_key_id(key)
            .send()
            .await
            .expect("delete a key");
    }
    bench.proxy.take_log();
    let next = keywatch
        .run(
            &Invocation::SCHEDULED.with_source(Source::CredentialReport),
            "next",
            &deadline,
        )
        .await
        .expect("the next run");
    assert_eq!(
        next.security_hub.as_ref().map(|s| (s.imported, s.archived)),
        Some((130, 120))
    );
    let log = bench.proxy.take_log();
    let count = |action: &str| log.iter().filter(|s| s.action == action).count();
    assert_eq!(
        count("securityhub:GetFindings"),
        3,
        "250 findings in the hub, read 100 a page"
    );
    assert_eq!(count("securityhub:BatchImportFindings"), 3, "250 updates");
    let stored = hub_states(&hub).await;
    for (n, (user, key)) in keys.iter().enumerate() {
        let state = &stored[&format!("123456789012/{user}/{key}")].0;
        let wanted = if n < 120 { "ARCHIVED" } else { "ACTIVE" };
        assert_eq!(state, wanted, "{user}");
    }
}

/// Security Hub answers a batch with `FailedFindings`: the run fails, naming the IDs it did not take.
#[tokio::test]
async fn findings_security_hub_rejects_fail_the_run_naming_them() {
    let bench = Bench::start().await;
    bench.account.console_user("ann").await;
    bench.account.key("ann").await;
    bench.proxy.add(Rule::on(
        "securityhub:BatchImportFindings",
        Fault::RespondJson(
            r#"{"FailedCount":1,"SuccessCount":0,"FailedFindings":[{"Id":"123456789012/ann/AKIAREJECTED","ErrorCode":"InvalidInput","ErrorMessage":"injected"}]}"#,
        ),
    ));
    let loader = bench.proxy.configure(config_loader(3));
    let vars = [
        ("FINDINGS_TOPIC_ARN", TOPIC),
        ("AWS_REGION", "us-east-1"),
        ("SECURITY_HUB", "true"),
    ];
    let keywatch = Keywatch::new(settings(&vars), isolated_clients(&loader.load().await));
    let error = keywatch
        .run(
            &Invocation::SCHEDULED.with_source(Source::CredentialReport),
            "rejected",
            &Deadline::after(Duration::from_secs(30)),
        )
        .await
        .expect_err("rejected findings fail the run");
    assert_eq!(error.error_type(), "Keywatch.SecurityHubFailed");
    assert!(
        error.to_string().contains("123456789012/ann/AKIAREJECTED")
            && error.to_string().contains("InvalidInput"),
        "{error}"
    );
    assert!(
        bench
            .proxy
            .log()
            .iter()
            .any(|s| s.action == "securityhub:GetFindings"),
        "the proxy names Security Hub's REST calls"
    );
}

/// Report data may skip a live lookup only for a key it identifies beyond doubt. The report has no key IDs, so
/// two keys created in the same second, one used and one never used, must both be looked up live.
#[tokio::test]
async fn keys_created_in_the_same_second_are_told_apart() {
    let bench = Bench::start().await;
    let a = &bench.account;
    a.console_user("twins").await;
    let (used, unused) = loop {
        let (first, second) = (a.key("twins").await, a.key("twins").await);
        let listed = a
            .iam
            .list_access_keys()
            .user_name("twins")
            .send()
            .await
            .unwrap()
            .access_key_metadata;
        let seconds: BTreeSet<i64> = listed
            .iter()
            .filter_map(|k| k.create_date.map(|d| d.secs()))
            .collect();
        if seconds.len() == 1 {
            break (first, second);
        }
        for key in [first, second] {
            a.iam
                .delete_access_key()
                .user_name("twins")
                .access_key_id(key.id)
                .send()
                .await
                .unwrap();
        }
    };
    a.use_key(&used).await;
    let keywatch = bench.keywatch(None).await;
    for source in SOURCES {
        let report = keywatch
            .run(
                &Invocation {
                    dry_run: true,
                    ..Invocation::SCHEDULED.with_source(source)
                },
                "twins",
                &Deadline::after(Duration::from_secs(30)),
            )
            .await
            .expect("a clean run");
        let expected: BTreeSet<_> = [("twins".to_string(), unused.id.clone())].into();
        assert_eq!(Truth::of(&report).findings, expected, "{source:?}");
    }
}

/// An alert split into three parts whose second part cannot be published: the run fails, says which parts
/// were delivered, and each delivered part carries its number and the run ID.
#[tokio::test]
async fn failed_second_part_names_the_delivered_parts() {
    let bench = Bench::start().await;
    // IAM's longest path and user name make each finding about 1.4 KB, so 400 findings need three parts.
    let path = format!("/{}/", "p".repeat(510));
    let users: Vec<String> = (0..200)
        .map(|i| format!("{i:03}-{}", "n".repeat(60)))
        .collect();
    let started = Instant::now();
    futures_util::future::join_all(users.chunks(25).map(|chunk| {
        let (a, path) = (&bench.account, &path);
        async move {
            for user in chunk {
                a.user_at(user, path, &[]).await;
                a.password(user).await;
                a.key(user).await;
                a.key(user).await;
            }
        }
    }))
    .await;
    println!("seeded 200 users, 400 keys in {:?}", started.elapsed());

    bench
        .proxy
        .add(Rule::on("sns:Publish", Fault::ServiceFailure).param("Subject", "(part 2 of "));
    let keywatch = bench.keywatch(fast_retry(3)).await;
    let started = Instant::now();
    let result = keywatch
        .run(
            &Invocation::SCHEDULED.with_source(Source::CredentialReport),
            "split-run",
            &Deadline::after(Duration::from_secs(100)),
        )
        .await;
    let elapsed = started.elapsed();
    let error = result.expect_err("a part was not delivered");
    let Error::Publish {
        run_id,
        parts,
        failed,
        delivered,
        ..
    } = &error
    else {
        panic!("expected a publish error, got {error:?}");
    };
    println!("{parts} parts, part 2 failing: {elapsed:?}");
    assert_eq!(run_id, "split-run");
    assert!(*parts >= 3, "{parts} parts");
    assert_eq!(failed, &[2]);
    let others: Vec<usize> = (1..=*parts).filter(|p| *p != 2).collect();
    assert_eq!(delivered, &others);
    let message = error.to_string();
    let listed = others
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    assert!(
        message.contains(&format!("Delivered parts: {listed}")) && message.contains("sns:Publish"),
        "{message}"
    );
    assert_eq!(error.error_type(), "Keywatch.PublishFailed");

    let (findings, documents) = bench.delivered("split-run").await;
    let mut numbers: Vec<u64> = documents
        .iter()
        .map(|d| {
            assert_eq!(d["parts"], *parts as u64);
            d["part"].as_u64().expect("part number")
        })
        .collect();
    numbers.sort();
    assert_eq!(
        numbers,
        others.iter().map(|&p| p as u64).collect::<Vec<_>>()
    );
    assert!(findings.len() < 400 && !findings.is_empty());

    // The same fault once only: the SDK's retry delivers part 2, and the run succeeds with every finding.
    bench.proxy.clear();
    bench.proxy.add(
        Rule::on("sns:Publish", Fault::ServiceFailure)
            .param("Subject", "(part 2 of ")
            .times(1),
    );
    let report = keywatch
        .run(
            &Invocation::SCHEDULED.with_source(Source::CredentialReport),
            "split-retry",
            &Deadline::after(Duration::from_secs(100)),
        )
        .await
        .expect("a transient publish failure is retried");
    assert_eq!(report.notifications.len(), *parts);
    let (findings, _) = bench.delivered("split-retry").await;
    assert_eq!(findings.len(), 400);
    assert_eq!(findings, Truth::of(&report).findings);
}

/// What the soak saw, added up over its lanes.
#[derive(Debug, Default)]
struct SoakCounts {
    runs: u32,
    ok: u32,
    /// Ok, the findings exactly the truth, and every finding delivered.
    exact: u32,
    errors: BTreeMap<&'static str, u32>,
    runs_with_faults: u32,
    faults_injected: usize,
    /// Runs whose account was seeded after the report the run was served (a stale report).
    stale_runs: u32,
    grace_runs: u32,
    /// Ok runs whose alert was split into parts.
    split_runs: u32,
    /// Alert parts delivered more than once (a reset after SNS accepted a publish makes the SDK retry it).
    duplicate_parts: Vec<String>,
    /// Failed runs that were served an AccessDenied: the one fault retrying cannot heal.
    denied: u32,
    /// Errors in runs that got no non-retryable fault: every retryable fault must be healed, so these fail the
    /// soak.
    unexplained_errors: Vec<String>,
    silent_wrong: Vec<String>,
}

impl SoakCounts {
    fn add(&mut self, other: SoakCounts) {
        self.runs += other.runs;
        self.ok += other.ok;
        self.exact += other.exact;
        for (error_type, n) in other.errors {
            *self.errors.entry(error_type).or_insert(0) += n;
        }
        self.runs_with_faults += other.runs_with_faults;
        self.faults_injected += other.faults_injected;
        self.stale_runs += other.stale_runs;
        self.grace_runs += other.grace_runs;
        self.split_runs += other.split_runs;
        self.duplicate_parts.extend(other.duplicate_parts);
        self.denied += other.denied;
        self.unexplained_errors.extend(other.unexplained_errors);
        self.silent_wrong.extend(other.silent_wrong);
    }
}

/// The soak exempts these users by name; seeding spells some of them in upper case, as IAM allows.
const SOAK_EXEMPT_USERS: &str = "svc-*";

/// The truth, read straight from moto (never through the proxy): every Active key never used on a user with a
/// login profile, exempt by the soak's name pattern or tag, or pending when a grace period covers it (every
/// key here is minutes old).
async fn oracle(account: &Account, grace: bool) -> Truth {
    let mut truth = Truth::default();
    let users = account.iam.list_users().send().await.unwrap().users;
    for user in users {
        let name = user.user_name;
        let password = match account
            .iam
            .get_login_profile()
            .user_name(&name)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_no_such_entity_exception()) =>
            {
                false
            }
            Err(e) => panic!("oracle: GetLoginProfile {name}: {e:?}"),
        };
        if !password {
            continue;
        }
        let tags = account
            .iam
            .list_user_tags()
            .user_name(&name)
            .send()
            .await
            .unwrap()
            .tags;
        let exempt = name.to_ascii_lowercase().starts_with("svc-")
            || tags.iter().any(|t| t.key == "keywatch:exempt");
        let keys = account
            .iam
            .list_access_keys()
            .user_name(&name)
            .send()
            .await
            .unwrap();
        for key in keys.access_key_metadata {
            let id = key.access_key_id.expect("a key ID");
            if key.status != Some(aws_sdk_iam::types::StatusType::Active) {
                continue;
            }
            let used = account
                .iam
                .get_access_key_last_used()
                .access_key_id(&id)
                .send()
                .await
                .unwrap()
                .access_key_last_used
                .and_then(|u| u.last_used_date)
                .is_some();
            if used {
                continue;
            }
            let pair = (name.clone(), id);
            if exempt {
                truth.exempted.insert(pair);
            } else if grace {
                truth.pending.insert(pair);
            } else {
                truth.findings.insert(pair);
            }
        }
    }
    truth
}

/// Changes the account after the credential report was recorded, in the ways a stale report must not hide:
/// passwords added, keys reactivated, deleted or used, and users created. Never a new key on a listed user:
/// that is the README's one named blind spot.
async fn change_after_report(account: &Account, rng: &mut Seeded) {
    let users = account.iam.list_users().send().await.unwrap().users;
    for user in users {
        let name = user.user_name;
        if !rng.chance(60) {
            continue;
        }
        let keys = account
            .iam
            .list_access_keys()
            .user_name(&name)
            .send()
            .await
            .unwrap()
            .access_key_metadata;
        let inactive = keys
            .iter()
            .find(|k| k.status == Some(aws_sdk_iam::types::StatusType::Inactive));
        let password = account
            .iam
            .get_login_profile()
            .user_name(&name)
            .send()
            .await
            .is_ok();
        if !password && rng.chance(50) {
            account.password(&name).await;
        } else if let Some(key) = inactive.filter(|_| rng.chance(50)) {
            account
                .iam
                .update_access_key()
                .user_name(&name)
                .access_key_id(key.access_key_id.clone().unwrap())
                .status(aws_sdk_iam::types::StatusType::Active)
                .send()
                .await
                .unwrap();
        } else if let Some(key) = keys.first().filter(|_| rng.chance(25)) {
            account
                .iam
                .delete_access_key()
                .user_name(&name)
                .access_key_id(key.access_key_id.clone().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    if rng.chance(50) {
        let name = format!("after-report-{}", rng.below(10_000));
        account.console_user(&name).await;
        let key = account.key(&name).await;
        if rng.chance(50) {
            account.use_key(&key).await;
        }
    }
}

/// An account whose alert needs more than one SNS message: IAM's longest path and user names.
async fn seed_large(account: &Account, rng: &mut Seeded) {
    let path = format!("/{}/", "p".repeat(510));
    let tag = rng.below(10_000);
    let users: Vec<String> = (0..100)
        .map(|i| format!("big{tag}-{i:03}-{}", "n".repeat(50)))
        .collect();
    futures_util::future::join_all(users.chunks(13).map(|chunk| {
        let path = &path;
        async move {
            for user in chunk {
                account.user_at(user, path, &[]).await;
                account.password(user).await;
                account.key(user).await;
                account.key(user).await;
            }
        }
    }))
    .await;
}

/// Fault rules for every soak run: retryable everywhere, report states where IAM sends them, and a rare
/// AccessDenied so some runs must fail (not on the large accounts: at hundreds of calls nearly every run would).
fn soak_faults(p: &Proxy, denials: bool) {
    let denied = if denials { 0.002 } else { 0.0 };
    p.add(Rule::on("*", Fault::Throttling).rate(0.15))
        .add(Rule::on("*", Fault::ServiceFailure).rate(0.05))
        .add(Rule::on("*", Fault::Reset).rate(0.02))
        .add(Rule::on("*", Fault::ResetAfterForward).rate(0.02))
        .add(Rule::on("*", Fault::Delay(Duration::from_millis(30))).rate(0.02))
        .add(Rule::on("*", Fault::AccessDenied).rate(denied))
        .add(Rule::on("iam:GenerateCredentialReport", Fault::LimitExceeded).rate(0.1))
        .add(Rule::on("iam:GetCredentialReport", Fault::ReportInProgress).rate(0.05))
        .add(Rule::on("iam:GetCredentialReport", Fault::ReportExpired).rate(0.05));
}

/// Records the account's credential report in the proxy, with no faults, for a later stale run.
async fn record_report(bench: &Bench) {
    bench.proxy.clear();
    bench.proxy.forget_report();
    let iam = aws_sdk_iam::Client::new(&bench.proxy.sdk_config(3).await);
    iam.generate_credential_report().send().await.unwrap();
    iam.get_credential_report().send().await.unwrap();
}

/// One soak lane: its own moto, proxy and warm keywatch (one Lambda container), running the given seeds.
async fn soak_lane(mut bench: Bench, seeds: Vec<u64>) -> SoakCounts {
    // The production retry mode (standard), with short backoffs so waiting does not dominate.
    let retry = RetryConfig::standard()
        .with_max_attempts(10)
        .with_initial_backoff(Duration::from_millis(10))
        .with_max_backoff(Duration::from_millis(200));
    let loader = bench.proxy.configure(config_loader(10)).retry_config(retry);
    let vars = [
        ("FINDINGS_TOPIC_ARN", TOPIC),
        ("AWS_REGION", "us-east-1"),
        ("EXEMPT_USERS", SOAK_EXEMPT_USERS),
    ];
    let keywatch = Keywatch::new(settings(&vars), isolated_clients(&loader.load().await));
    let mut counts = SoakCounts::default();
    for seed in seeds {
        bench.reset().await;
        bench.proxy.clear();
        let mut rng = Seeded::new(seed);
        let users = rng.below(5) as usize;
        bench.account.seed_random(&mut rng, users, "").await;
        for _ in 0..rng.below(2) {
            let name = format!(
                "{}-{}",
                ["svc", "SVC", "Svc"][rng.below(3) as usize],
                rng.below(10_000)
            );
            bench.account.console_user(&name).await;
            bench.account.key(&name).await;
        }
        let large = rng.below(25) == 0;
        if large {
            seed_large(&bench.account, &mut rng).await;
        }
        let stale = rng.chance(30);
        if stale {
            record_report(&bench).await;
            change_after_report(&bench.account, &mut rng).await;
        }
        // Every seed holds something to find (a finding, or a pending key under a grace period), so an empty
        // answer can never pass for exact. After the stale report: in those runs ListUsers must bring it in.
        let keeper = format!("keeper-{seed}");
        bench.account.console_user(&keeper).await;
        bench.account.key(&keeper).await;
        let grace = rng.chance(20);
        let truth = oracle(&bench.account, grace).await;
        assert!(
            !(truth.findings.is_empty() && truth.pending.is_empty()),
            "seed {seed}: nothing to find"
        );
        let source = if stale {
            Source::CredentialReport
        } else {
            SOURCES[rng.below(SOURCES.len() as u64) as usize]
        };
        soak_faults(&bench.proxy, !large);
        if stale {
            // After the rated rules: a report-state fault still takes its share of GetCredentialReport calls.
            bench
                .proxy
                .add(Rule::on("iam:GetCredentialReport", Fault::StaleReport));
        }
        bench.proxy.seed(seed);
        bench.proxy.take_log();
        let run_id = format!("soak-{seed}");
        let invocation = Invocation {
            grace_period_hours: grace.then_some(24),
            ..Invocation::SCHEDULED.with_source(source)
        };
        let budget = Duration::from_secs(if large { 90 } else { 30 });
        let result = keywatch
            .run(&invocation, &run_id, &Deadline::after(budget))
            .await;
        let log = bench.proxy.take_log();
        let faults = log
            .iter()
            .filter(|s| s.fault.is_some() && s.fault != Some(Fault::StaleReport))
            .count();
        counts.runs += 1;
        counts.faults_injected += faults;
        counts.runs_with_faults += u32::from(faults > 0);
        // What the proxy served, not what was seeded.
        counts.stale_runs += u32::from(log.iter().any(|s| s.fault == Some(Fault::StaleReport)));
        counts.grace_runs += u32::from(grace);
        let (delivered, documents) = bench.delivered(&run_id).await;
        let mut parts: Vec<u64> = documents
            .iter()
            .filter_map(|d| d["part"].as_u64())
            .collect();
        parts.sort();
        for pair in parts.windows(2).filter(|pair| pair[0] == pair[1]) {
            counts
                .duplicate_parts
                .push(format!("{run_id} part {}", pair[0]));
        }
        let what = format!("seed {seed} ({source:?}, stale {stale}, grace {grace}, large {large})");
        match result {
            Ok(report) => {
                counts.ok += 1;
                counts.split_runs += u32::from(report.notifications.len() > 1);
                let found = Truth::of(&report);
                if found == truth && delivered == truth.findings {
                    counts.exact += 1;
                } else {
                    counts.silent_wrong.push(format!(
                        "{what}: expected {truth:?}, got {found:?}, delivered {delivered:?}"
                    ));
                }
            }
            Err(error) => {
                *counts.errors.entry(error.error_type()).or_insert(0) += 1;
                if log.iter().any(|s| s.fault == Some(Fault::AccessDenied)) {
                    counts.denied += 1;
                } else {
                    counts.unexplained_errors.push(format!("{what}: {error}"));
                }
            }
        }
    }
    counts
}

/// Hundreds of runs with seeded random faults on seeded random accounts: stale reports, a grace period,
/// EXEMPT_USERS and alerts large enough to split among them. Each lane is one warm keywatch, as in a Lambda
/// container, so retry state carries over between its runs; lanes run side by side because most of a run is
/// spent waiting. The truth comes from moto directly. Every run must be exact unless an injected AccessDenied
/// (the one fault retrying cannot heal) failed it loudly; an error no denial explains fails the soak, as does
/// an `Ok` that differs from the truth or whose alert does not carry every finding (a silent wrong answer).
/// Denials may fail at most one run in four, and most runs must get faults.
///
/// `SOAK_RUNS` runs (40 in `make test`; `make soak` runs 200).
#[tokio::test]
async fn soak_random_faults_never_give_a_silent_wrong_answer() {
    const LANES: u64 = 8;
    let runs: u64 = std::env::var("SOAK_RUNS").map_or(40, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("SOAK_RUNS={v:?} is not a number of runs"))
    });
    let started = Instant::now();
    // moto takes seconds to start; start the lanes' servers side by side.
    let motos: Vec<Moto> = std::thread::scope(|scope| {
        let starting: Vec<_> = (0..LANES).map(|_| scope.spawn(Moto::start)).collect();
        starting
            .into_iter()
            .map(|s| s.join().expect("moto starts"))
            .collect()
    });
    let mut lanes = Vec::new();
    for (lane, moto) in (0..LANES).zip(motos) {
        let seeds = (1..=runs).filter(|s| s % LANES == lane).collect();
        lanes.push(soak_lane(Bench::on(moto).await, seeds));
    }
    let mut total = SoakCounts::default();
    for counts in futures_util::future::join_all(lanes).await {
        total.add(counts);
    }
    println!(
        "soak: {} runs in {LANES} lanes, {:?}: {} exact, {} ok, errors {:?}; {} runs with faults ({} faults); \
         {} stale-report runs, {} grace runs, {} split alerts; {} alert parts delivered twice",
        total.runs,
        started.elapsed(),
        total.exact,
        total.ok,
        total.errors,
        total.runs_with_faults,
        total.faults_injected,
        total.stale_runs,
        total.grace_runs,
        total.split_runs,
        total.duplicate_parts.len(),
    );
    for duplicate in &total.duplicate_parts {
        println!("delivered twice (same run_id and part, as subscribers deduplicate): {duplicate}");
    }
    assert!(
        total.silent_wrong.is_empty(),
        "silent wrong answers:\n{}",
        total.silent_wrong.join("\n")
    );
    assert!(
        total.unexplained_errors.is_empty(),
        "errors that no injected denial explains (a retryable fault was not healed):\n{}",
        total.unexplained_errors.join("\n")
    );
    assert_eq!(u64::from(total.runs), runs);
    // Exactness follows from the faults: every run is exact but those an injected denial failed.
    assert_eq!(
        total.exact + total.denied,
        total.runs,
        "{} exact and {} denied of {} runs",
        total.exact,
        total.denied,
        total.runs
    );
    assert!(
        total.denied * 4 <= total.runs,
        "{} of {} runs were denied: a soak where most runs fail proves nothing",
        total.denied,
        total.runs
    );
    assert!(
        total.runs_with_faults * 2 > total.runs,
        "faults were injected in only {} of {} runs",
        total.runs_with_faults,
        total.runs
    );
    for (what, n) in [
        ("stale-report", total.stale_runs),
        ("grace", total.grace_runs),
        ("split-alert", total.split_runs),
    ] {
        assert!(n > 0, "no {what} run: the seeds no longer cover it");
    }
}

/// A check that runs out of time on its last attempt still puts its notice on the topic: the notice has a reserve
/// of the invocation's time that the check never uses.
#[tokio::test]
async fn a_check_out_of_time_on_its_last_attempt_still_sends_its_notice() {
    let bench = Bench::start().await;
    bench.account.console_user("ann").await;
    bench.account.key("ann").await;
    let work = bench.account.queue("keywatch-work").await;
    let vars = [
        ("FINDINGS_TOPIC_ARN", TOPIC),
        ("AWS_REGION", "us-east-1"),
        ("ACCOUNTS", "123456789012"),
        ("WORK_QUEUE_URL", work.as_str()),
        ("MAX_RECEIVE_COUNT", "3"),
    ];
    let keywatch = bench.keywatch_with(&vars).await;
    // The report hangs past the whole invocation's budget.
    bench.proxy.add(Rule::on(
        "iam:GenerateCredentialReport",
        Fault::Delay(Duration::from_secs(30)),
    ));
    // The figure stated too: a change of the constant fails this test.
    assert_eq!(keywatch::route::NOTICE_RESERVE, Duration::from_secs(2));
    let budget = keywatch::route::NOTICE_RESERVE + Duration::from_secs(2);
    let batch = keywatch
        .work(
            vec![keywatch::event::SqsRecord {
                message_id: "m1".into(),
                body: r#"{"account_id":"123456789012","run_id":"late"}"#.into(),
                receive_count: 3,
            }],
            &Deadline::after(budget),
        )
        .await;
    assert_eq!(
        batch.batch_item_failures.len(),
        1,
        "the deadline is transient"
    );
    let delivered = bench.account.delivered(&bench.queue).await;
    let [(subject, notice)] = &delivered[..] else {
        panic!("the notice, published in the reserve: {delivered:?}")
    };
    assert_eq!(
        subject,
        "keywatch: account 123456789012 could not be checked"
    );
    assert_eq!(notice["error_type"], "Keywatch.Deadline", "{notice}");
}

/// A failure that retrying cannot heal, after SNS accepted the alert (Security Hub denied here): the record is
/// acknowledged at once, not retried into re-alerts, and the notice says the findings were delivered and what
/// was not done.
#[tokio::test]
async fn a_permanent_failure_after_the_alert_is_said_once_and_not_retried() {
    let bench = Bench::start().await;
    bench.account.console_user("ann").await;
    let ann = bench.account.key("ann").await.id;
    let work = bench.account.queue("keywatch-work").await;
    let vars = [
        ("FINDINGS_TOPIC_ARN", TOPIC),
        ("AWS_REGION", "us-east-1"),
        ("ACCOUNTS", "123456789012"),
        ("WORK_QUEUE_URL", work.as_str()),
        ("SECURITY_HUB", "true"),
    ];
    let keywatch = bench.keywatch_with(&vars).await;
    bench
        .proxy
        .add(Rule::on("securityhub:GetFindings", Fault::AccessDenied));
    let batch = keywatch
        .work(
            vec![keywatch::event::SqsRecord {
                message_id: "m1".into(),
                body: r#"{"account_id":"123456789012","run_id":"hub"}"#.into(),
                receive_count: 1,
            }],
            &Deadline::after(Duration::from_secs(30)),
        )
        .await;
    assert!(
        batch.batch_item_failures.is_empty(),
        "acknowledged: {batch:?}"
    );
    let delivered = bench.account.delivered(&bench.queue).await;
    let [(_, alert), (subject, notice)] = &delivered[..] else {
        panic!("the alert, then the notice: {delivered:?}")
    };
    assert_eq!(alert["findings"][0]["access_key_id"], ann.as_str());
    assert_eq!(
        subject,
        "keywatch: account 123456789012 was checked, but not every step completed"
    );
    assert_eq!(notice["permanent"], true, "{notice}");
    assert_eq!(notice["alert_parts_delivered"], 1, "{notice}");
    // The proxy's denial is IAM's XML, which the JSON SDK cannot read a code from: its 403 still says denied.
    assert_eq!(notice["error_type"], "Keywatch.AccessDenied", "{notice}");
    assert!(
        notice["error"]
            .as_str()
            .unwrap()
            .contains("securityhub:GetFindings failed"),
        "{notice}"
    );
}
