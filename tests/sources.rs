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
