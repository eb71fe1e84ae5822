//! Both inventory sources, the credential report and the fully live `api` scan, must give the same answers on
//! the same account.

use keywatch_test_support as support;

use keywatch::event::Invocation;
use keywatch::inventory::Source;
use keywatch::report::Report;
use support::seeded::Seeded;
use support::{run, settings, Moto};

fn outcome(report: &Report) -> (Vec<String>, Vec<String>, Vec<(String, String)>) {
    let mut findings: Vec<String> = report
        .findings
        .iter()
        .map(|f| f.finding_id.clone())
        .collect();
    let mut pending: Vec<String> = report
        .pending
        .iter()
        .map(|p| p.finding.finding_id.clone())
        .collect();
    let mut exempted: Vec<(String, String)> = report
        .exempted
        .iter()
        .map(|e| (e.finding.finding_id.clone(), e.reason.clone()))
        .collect();
    findings.sort();
    pending.sort();
    exempted.sort();
    (findings, pending, exempted)
}

#[tokio::test]
async fn report_and_api_sources_agree_on_seeded_accounts() {
    let moto = Moto::start();
    let vars = [("DRY_RUN", "true"), ("EXEMPT_USERS", "svc-*")];
    for seed in 1..=4u64 {
        moto.reset();
        let account = moto.account().await;
        let seeded = account
            .seed_random(&mut Seeded::new(seed), 12, &format!("s{seed}-"))
            .await;
        let (mut findings, exempted) = seeded.truth(true);
        // Something to find in every seed, so two sources agreeing on nothing cannot pass.
        let keeper = format!("keeper-{seed}");
        account.console_user(&keeper).await;
        findings.insert((keeper.clone(), account.key(&keeper).await.id));
        let by_report = run(&moto, settings(&vars), Invocation::DRY_RUN)
            .await
            .unwrap();
        let live = Invocation::DRY_RUN.with_source(Source::Api);
        let by_api = run(&moto, settings(&vars), live).await.unwrap();

        assert_eq!(by_report.inventory_source, Source::CredentialReport);
        assert_eq!(by_api.inventory_source, Source::Api);
        assert_eq!(
            outcome(&by_report),
            outcome(&by_api),
            "seed {seed}: the sources disagree"
        );
        let pairs = |findings: &mut dyn Iterator<Item = &keywatch::evaluate::Finding>| {
            findings
                .map(|f| (f.user_name.clone(), f.access_key_id.clone()))
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(
            pairs(&mut by_report.findings.iter()),
            findings,
            "seed {seed}: findings are the seeded truth"
        );
        assert_eq!(
            pairs(&mut by_report.exempted.iter().map(|e| &e.finding)),
            exempted,
            "seed {seed}: exemptions are the seeded truth"
        );
        assert_eq!(by_report.users_examined, by_api.users_examined);
        assert!(!by_api
            .api_calls
            .by_operation
            .contains_key("iam:GenerateCredentialReport"));
    }
}

/// `keywatch-audit`, the built binary: a downloaded report's verdicts offline, as JSON or a table, from a file or
/// standard input, with an exit status a script can act on (0 clean, 3 findings, 2 usage, 1 unreadable).
#[test]
fn the_offline_audit_reads_a_downloaded_report() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let binary = env!("CARGO_BIN_EXE_keywatch-audit");
    let report = support::project_dir().join("tests/fixtures/credential-report-aws-shapes.csv");
    let now = ["--now", "2026-12-01T00:00:00Z"];

    let out = Command::new(binary)
        .arg(&report)
        .args(["--rules", "all", "--format", "json"])
        .args(now)
        .output()
        .expect("keywatch-audit runs");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let document: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON document");
    assert_eq!(document["verified_live"], false);
    assert!(document["note"]
        .as_str()
        .unwrap()
        .starts_with("Nothing was verified live"));
    let findings = document["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 16, "{document:#}");
    assert!(findings
        .iter()
        .all(|f| f["rule"].is_string() && f["user_name"].is_string()));

    // The same report on standard input, as a table, one rule.
    let mut child = Command::new(binary)
        .args(["-", "--rules", "two-active-keys"])
        .args(now)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("keywatch-audit runs");
    let csv = std::fs::read(&report).expect("the fixture");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&csv)
        .expect("the report written");
    let out = child.wait_with_output().expect("keywatch-audit ends");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("Nothing was verified live"), "{text}");
    assert!(
        text.contains("2 findings in 7 users (two-active-keys: 2)"),
        "{text}"
    );

    // A report with nothing to find, a bad option, a file that is not there.
    let clean =
        std::env::temp_dir().join(format!("keywatch-audit-clean-{}.csv", std::process::id()));
    let header = String::from_utf8_lossy(&csv)
        .lines()
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&clean, format!("{header}\n")).expect("a clean report");
    let status = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(binary)
            .args(args)
            .args(now)
            .output()
            .expect("runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(status(&[clean.as_os_str()]).0, Some(0));
    let (code, stderr) = status(&[report.as_os_str(), "--rules".as_ref(), "nope".as_ref()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("unknown rule \"nope\""), "{stderr}");
    let (code, stderr) = status(&["/nonexistent/report.csv".as_ref()]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("cannot read /nonexistent/report.csv"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(clean);
}

/// Prowler's four access-key checks and keywatch's four rules on one credential report, dated from now: Prowler
/// (5.46, from `.venv-prowler`) run against moto through the proxy, which answers GetCredentialReport with the
/// report, and `keywatch-audit` on the same CSV. They agree on every row but two kinds, each for a reason:
/// - Prowler's `iam_user_accesskey_unused` skips a key whose last use is `N/A`, so a key never used in 100 days
///   is not unused to it; to `unused-key` it is, counted from its creation (CIS v7.0 2.11, Security Hub IAM.22).
/// - Prowler compares `true` case-sensitively, so a row written `TRUE` has no active key or password to it;
///   keywatch reads the report's values case-insensitively, as it does `N/A` and `no_information`.
#[test]
fn the_rules_side_by_side_with_prowlers_checks() {
    use serde_json::Value;
    use std::collections::BTreeSet;
    use std::process::Command;
    use support::proxy::{Fault, Proxy, Rule};
    use time::format_description::well_known::Rfc3339;
    use time::{Duration, OffsetDateTime};

    let prowler = support::project_dir().join(".venv-prowler/bin/prowler");
    assert!(
        prowler.exists(),
        "Prowler is not installed at {}: run `make prowler` (make test does)",
        prowler.display()
    );
    // An hour past each whole day, so that no verdict sits on a boundary while the two tools run.
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let ago = |days: i64| {
        (now - Duration::days(days) - Duration::hours(1))
            .format(&Rfc3339)
            .unwrap()
    };
    let fixture = std::fs::read_to_string(
        support::project_dir().join("tests/fixtures/credential-report-aws-shapes.csv"),
    )
    .unwrap();
    let header = fixture.lines().next().unwrap();
    // (user, password, key 1 (active, created, last used), key 2)
    type Slot = (&'static str, Option<i64>, Option<i64>);
    let none: Slot = ("false", None, None);
    let rows: [(&str, &str, Slot, Slot); 8] = [
        ("initial", "true", ("true", Some(2), None), none),
        ("forgotten", "true", ("true", Some(100), None), none),
        ("svc-stale", "false", ("true", Some(400), Some(60)), none),
        ("svc-fresh", "false", ("true", Some(30), Some(1)), none),
        ("rotated-late", "false", ("true", Some(91), Some(1)), none),
        (
            "pair",
            "false",
            ("true", Some(10), Some(1)),
            ("true", Some(5), Some(1)),
        ),
        (
            "upper",
            "TRUE",
            ("TRUE", Some(3), None),
            ("TRUE", Some(3), None),
        ),
        ("inactive-old", "true", ("false", Some(400), None), none),
    ];
    let date = |days: Option<i64>| days.map_or("N/A".to_string(), ago);
    let slot = |(active, created, used): Slot| {
        let region = if used.is_some() {
            "us-east-1,iam"
        } else {
            "N/A,N/A"
        };
        format!("{active},{},{},{region}", date(created), date(used))
    };
    let mut report = format!(
        "{header}\n<root_account>,arn:aws:iam::123456789012:root,{},not_supported,N/A,not_supported,not_supported,true,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n",
        ago(2000)
    );
    for (user, password, first, second) in rows {
        report.push_str(&format!(
            "{user},arn:aws:iam::123456789012:user/{user},{},{password},N/A,N/A,N/A,false,{},{},false,N/A,false,N/A\n",
            ago(500),
            slot(first),
            slot(second)
        ));
    }
    let columns = header.split(',').count();
    assert!(
        report.lines().all(|row| row.split(',').count() == columns),
        "{report}"
    );

    // Prowler, against moto, reading the report through the proxy.
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.endpoint);
    proxy.add(Rule::on(
        "iam:GetCredentialReport",
        Fault::RespondCredentialReport(report.clone()),
    ));
    let out_dir = std::env::temp_dir().join(format!("keywatch-prowler-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let checks = [
        "iam_user_no_setup_initial_access_key",
        "iam_user_accesskey_unused",
        "iam_user_two_active_access_key",
        "iam_rotate_access_key_90_days",
    ];
    let run = Command::new(&prowler)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &out_dir)
        .envs([
            ("AWS_ENDPOINT_URL", proxy.url.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ])
        .args([
            "aws",
            "--no-banner",
            "-f",
            "us-east-1",
            "--output-formats",
            "json-ocsf",
        ])
        .arg("-o")
        .arg(&out_dir)
        .arg("--checks")
        .args(checks)
        .output()
        .expect("prowler runs");
    // 3: some check failed, as some must here.
    assert_eq!(
        run.status.code(),
        Some(3),
        "prowler: {}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        proxy.served(&Fault::RespondCredentialReport(report.clone())),
        "Prowler read its report elsewhere"
    );
    let ocsf = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.to_string_lossy().ends_with(".ocsf.json"))
        .expect("Prowler's OCSF output");
    let ocsf: Value = serde_json::from_str(&std::fs::read_to_string(ocsf).unwrap()).unwrap();
    let as_rule = |check: &str| match check {
        "iam_user_no_setup_initial_access_key" => "cis-1.11-never-used-key-on-console-user",
        "iam_user_accesskey_unused" => "unused-key",
        "iam_user_two_active_access_key" => "two-active-keys",
        "iam_rotate_access_key_90_days" => "key-not-rotated",
        other => panic!("a check not asked for: {other}"),
    };
    let mut theirs = BTreeSet::new();
    for finding in ocsf.as_array().unwrap() {
        if finding["status_code"] != "FAIL" {
            continue;
        }
        let check = finding["metadata"]["event_code"].as_str().unwrap();
        let arn = finding["resources"][0]["uid"].as_str().unwrap();
        let user = arn.rsplit('/').next().unwrap().to_string();
        let detail = finding["status_detail"].as_str().unwrap_or_default();
        let keys = if check == "iam_user_two_active_access_key" {
            "access_key_1 access_key_2".to_string()
        } else if detail.contains("access key 1") {
            "access_key_1".to_string()
        } else if detail.contains("access key 2") {
            "access_key_2".to_string()
        } else {
            panic!("which key? {detail}")
        };
        theirs.insert((as_rule(check), user, keys));
    }

    // keywatch-audit on the same report, at the same time.
    let csv = out_dir.join("report.csv");
    std::fs::write(&csv, &report).unwrap();
    let audit = Command::new(env!("CARGO_BIN_EXE_keywatch-audit"))
        .arg(&csv)
        .args(["--rules", "all", "--format", "json", "--now"])
        .arg(now.format(&Rfc3339).unwrap())
        .output()
        .expect("keywatch-audit runs");
    let document: Value = serde_json::from_slice(&audit.stdout).expect("keywatch-audit's document");
    let rule_of =
        |id: &str| -> &'static str { keywatch::evaluate::select_rules(id).unwrap()[0].id() };
    let ours: BTreeSet<(&str, String, String)> = document["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let keys: Vec<&str> = f["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap())
                .collect();
            (
                rule_of(f["rule"].as_str().unwrap()),
                f["user_name"].as_str().unwrap().to_string(),
                keys.join(" "),
            )
        })
        .collect();

    let row =
        |rule: &'static str, user: &str, keys: &str| (rule, user.to_string(), keys.to_string());
    let cis = "cis-1.11-never-used-key-on-console-user";
    let both: BTreeSet<_> = [
        row(cis, "initial", "access_key_1"),
        row(cis, "forgotten", "access_key_1"),
        row("key-not-rotated", "forgotten", "access_key_1"),
        row("unused-key", "svc-stale", "access_key_1"),
        row("key-not-rotated", "svc-stale", "access_key_1"),
        row("key-not-rotated", "rotated-late", "access_key_1"),
        row("two-active-keys", "pair", "access_key_1 access_key_2"),
    ]
    .into();
    let only_keywatch: BTreeSet<_> = [
        // Never used in 100 days: Prowler skips a last use of N/A.
        row("unused-key", "forgotten", "access_key_1"),
        // `TRUE`: Prowler reads only a lowercase `true`.
        row(cis, "upper", "access_key_1"),
        row(cis, "upper", "access_key_2"),
        row("two-active-keys", "upper", "access_key_1 access_key_2"),
    ]
    .into();
    assert_eq!(
        theirs.intersection(&ours).cloned().collect::<BTreeSet<_>>(),
        both,
        "Prowler: {theirs:#?}\nkeywatch: {ours:#?}"
    );
    assert_eq!(
        ours.difference(&theirs).cloned().collect::<BTreeSet<_>>(),
        only_keywatch,
        "Prowler: {theirs:#?}\nkeywatch: {ours:#?}"
    );
    assert_eq!(
        theirs.difference(&ours).count(),
        0,
        "nothing Prowler finds escapes keywatch: {theirs:#?}"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}
