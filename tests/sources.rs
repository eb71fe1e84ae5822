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
        assert_eq!(
            support::http(moto.port, "POST", "/moto-api/reset", "").map(|r| r.0),
            Some(200)
        );
        let account = moto.account().await;
        let mut rng = Seeded::new(seed);
        let mut expected_findings = 0;
        for i in 0..12 {
            let name = if rng.chance(10) {
                format!("svc-{seed}-{i}")
            } else {
                format!("user-{seed}-{i}")
            };
            let path = if rng.chance(30) { "/engineering/" } else { "/" };
            let tags: &[(&str, &str)] = if rng.chance(10) {
                &[("keywatch:exempt", "seeded")]
            } else {
                &[]
            };
            account.user_at(&name, path, tags).await;
            let password = rng.chance(60);
            if password {
                account.password(&name).await;
            }
            for _ in 0..rng.next_u64() % 3 {
                let key = account.key(&name).await;
                let (used, inactive) = (rng.chance(30), rng.chance(20));
                if used {
                    account.use_key(&key).await;
                }
                if inactive {
                    account.deactivate(&name, &key).await;
                }
                expected_findings += usize::from(password && !used && !inactive);
            }
        }
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
        let (findings, _, exempted) = outcome(&by_report);
        assert_eq!(
            findings.len() + exempted.len(),
            expected_findings,
            "seed {seed}: findings match the seeded truth"
        );
        assert_eq!(by_report.users_examined, by_api.users_examined);
        assert!(!by_api
            .api_calls
            .by_operation
            .contains_key("iam:GenerateCredentialReport"));
    }
}
