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
