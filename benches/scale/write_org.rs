//! The document's organization section: the dispatch and the work queue's drains.

use crate::measure::*;
use crate::seed::*;
use crate::write::*;
use crate::{FIXED_OPS, PER_CANDIDATE_OPS};
use std::fmt::Write as _;
use std::time::Duration;

pub(crate) fn milliseconds(value: f64) -> String {
    format!("{value:.0}")
}

/// The organization's section of the document; whatever went wrong goes to `mismatches`.
pub(crate) fn render_org(
    out: &mut String,
    bench: &OrgBench,
    latency: Duration,
    mismatches: &mut Vec<String>,
    unmet: &mut Vec<String>,
) {
    let org = &bench.org;
    let accounts = org.accounts.len();
    let rounds = bench.drains.len() / ORG_CONCURRENCY.len();
    let plans = || org.plans.values();
    let planned: usize = plans().map(Plan::findings).sum();
    let most = *ORG_CONCURRENCY.iter().max().expect("a concurrency");
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let _ = writeln!(
        out,
        "\n## Organization: {} accounts × {} users\n",
        count(accounts as f64),
        count(org.users as f64)
    );
    let _ = writeln!(
        out,
        "An AWS Organization in moto (`create_organization`): the management account, which is the function's own \
         ({MANAGEMENT}), and {} member{} from `create_account`, each seeded through its \
         `OrganizationAccountAccessRole`. Every account holds {} users of the mix above, from a seed plan of its own \
         (the management account's is the {}-user account's): {} users and {} keys ({} Inactive) in all, and the \
         plans' findings: {}. Creating and seeding the organization took {:.0} s.\n",
        count(accounts.saturating_sub(1) as f64),
        plural(accounts.saturating_sub(1)),
        count(org.users as f64),
        count(org.users as f64),
        count((accounts * org.users) as f64),
        count(plans().map(|p| p.keys(None, None, None)).sum::<usize>() as f64),
        count(plans().map(|p| p.keys(None, Some(false), None)).sum::<usize>() as f64),
        count(planned as f64),
        org.seeding.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "A drain: first the dispatch, a fresh release binary with `ACCOUNTS=organization` given the scheduled event, \
         which sends one work message per ACTIVE account to a work queue with a dead-letter queue \
         (`WorkQueue::create`; visibility {WORK_VISIBILITY_S} s, and one receive before the DLQ, so no failure is \
         retried away). Then the pump (`tests/support/pump.rs`, Lambda's SQS poller, batch size 1 as in the \
         template) with N pollers hands the records to N worker processes: the release binary, each under a Runtime \
         API of its own and given one event at a time, as N Lambda instances are. The workers start fresh for each \
         drain and are polling before the clock starts; a drain's wall time runs from the pump's start to the last \
         answer, and account checks per second are the accounts over it. Not a dry run: each check publishes its \
         alert to an SNS topic in moto, reads a member through `sts:AssumeRole` into the member role, and otherwise \
         runs with the defaults (credential-report source, `CONCURRENCY` 8). Dispatcher and workers reach moto \
         through the proxy ({} ms per request); the pump talks to moto directly. Per-check figures come from the \
         workers' stdout: each check's EMF line (`src/metrics.rs`) and its `keywatch run complete` log line (calls by \
         operation). A first drain at concurrency {most}, not measured, has every account generate its credential \
         report; the measured drains ({rounds} round{} of concurrency {}) find it ready, as any run within 4 hours \
         of the last would.\n",
        latency.as_millis(),
        plural(rounds),
        ORG_CONCURRENCY
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    );

    let _ = writeln!(
        out,
        "| pollers = worker processes | drain wall time | account checks/s | one check (EMF `DurationMs`, all checks) | peak RSS of a worker (highest of the drain's) | retries |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    let mut row = |label: String, drains: &[&Drain]| {
        if drains.is_empty() {
            return;
        }
        let stat = |f: &dyn Fn(&Drain) -> f64| Stat::of(drains.iter().map(|d| f(d)));
        let durations = Stat::of(
            drains
                .iter()
                .flat_map(|d| d.checks.iter().map(|c| c.duration_ms as f64)),
        );
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} |",
            stat(&|d| d.wall.as_secs_f64()).show(seconds, " s"),
            stat(&Drain::checks_per_second).show(one_decimal, ""),
            durations.show(milliseconds, " ms"),
            stat(&|d| d.peak_rss_kib as f64 / 1024.0).show(one_decimal, " MiB"),
            stat(&Drain::retries).count(),
        );
    };
    row(
        format!("{most}, first drain (credential reports generated; not measured)"),
        &[&bench.warmup],
    );
    for concurrency in ORG_CONCURRENCY {
        row(concurrency.to_string(), &bench.drains_at(concurrency));
    }
    let _ = writeln!(out);

    // Dispatch.
    let drains: Vec<&Drain> = bench.all_drains().collect();
    let dispatch = Stat::of(
        drains
            .iter()
            .map(|d| d.dispatch.took.as_secs_f64() * 1000.0),
    );
    let mut actions: Vec<&String> = drains
        .iter()
        .flat_map(|d| d.dispatch.requests.keys())
        .collect();
    actions.sort();
    actions.dedup();
    let requests: Vec<String> = actions
        .iter()
        .map(|action| {
            let stat = Stat::of(
                drains
                    .iter()
                    .map(|d| d.dispatch.requests.get(*action).copied().unwrap_or(0) as f64),
            );
            format!("{action} {}", stat.count())
        })
        .collect();
    let listed = drains
        .iter()
        .all(|d| d.dispatch.status == 200 && d.dispatch.accounts == org.accounts);
    let _ = writeln!(
        out,
        "- Dispatch, from the scheduled event handed over to the response, median of the {} dispatch{} (one before \
         each drain): {}. Requests per dispatch: {}. Every response listed exactly the {} ACTIVE accounts: {}.",
        drains.len(),
        if drains.len() == 1 { "" } else { "es" },
        dispatch.show(one_decimal, " ms"),
        requests.join(", "),
        count(accounts as f64),
        if listed { "yes" } else { "**no**" }
    );

    // Throughput.
    let wall = |c: usize| {
        let drains = bench.drains_at(c);
        (!drains.is_empty()).then(|| Stat::of(drains.iter().map(|d| d.wall.as_secs_f64())))
    };
    let (least, most_measured) = (
        ORG_CONCURRENCY[0],
        ORG_CONCURRENCY[ORG_CONCURRENCY.len() - 1],
    );
    if let (Some(one), Some(many)) = (wall(least), wall(most_measured)) {
        let _ = writeln!(
            out,
            "- Concurrency {most_measured} against {least} (median drain wall times): {:.1}x. No target: on these {} \
             cores moto (one Python process), the proxy, the pump and the workers share the CPU.",
            one.median / many.median.max(f64::EPSILON),
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
        );
    }

    // Calls per account check, over the measured drains.
    let checks: Vec<&Check> = bench
        .drains
        .iter()
        .flat_map(|d| d.checks.iter())
        .filter(|c| !c.failed)
        .collect();
    if !checks.is_empty() {
        let iam = Stat::of(checks.iter().map(|c| iam_calls(&c.calls) as f64));
        let all = Stat::of(checks.iter().map(|c| c.api_calls as f64));
        let mut ops: Vec<&String> = checks
            .iter()
            .flat_map(|c| c.calls.keys())
            .filter(|op| op.starts_with("iam:"))
            .collect();
        ops.sort();
        ops.dedup();
        let ops: Vec<String> = ops
            .into_iter()
            .map(|op| {
                let stat = Stat::of(
                    checks
                        .iter()
                        .map(|c| c.calls.get(op).copied().unwrap_or(0) as f64),
                );
                format!("{op} {}", stat.count())
            })
            .collect();
        let per_drain = Stat::of(
            bench
                .drains
                .iter()
                .map(|d| d.checks.iter().map(|c| iam_calls(&c.calls)).sum::<u64>() as f64),
        );
        let _ = writeln!(
            out,
            "- IAM calls per account check, over the {} checks of the measured drains: {} (by operation: {}); per \
             drain {}. All AWS calls per check, the member role's `sts:AssumeRole`, the alert's `sns:Publish` and \
             each worker's one `sts:GetCallerIdentity` included: {}.",
            count(checks.len() as f64),
            iam.count(),
            ops.join(", "),
            per_drain.count(),
            all.count()
        );
    }
    // Failed checks are the last bullet's.
    let succeeded = || {
        drains
            .iter()
            .flat_map(|d| d.checks.iter())
            .filter(|c| !c.failed)
    };
    let within = succeeded().all(|c| {
        let Some(plan) = org.plans.get(&c.account_id) else {
            return false;
        };
        let (fixed, per) = call_bounds(plan);
        calls_of(&c.calls, &FIXED_OPS) as usize <= fixed
            && calls_of(&c.calls, &PER_CANDIDATE_OPS) as usize <= per
    });
    let _ = writeln!(
        out,
        "- Every successful check of every drain within the single-account IAM call bounds of its account's plan (fixed calls \
         at most 3 + ⌈users / 1,000⌉, per-candidate calls at most 3 × candidates + lookups): {}.",
        target(unmet, "organization checks within the IAM call bounds".into(), within)
    );

    // Correctness.
    let findings = Stat::of(
        drains
            .iter()
            .map(|d| d.checks.iter().filter_map(|c| c.findings).sum::<u64>() as f64),
    );
    let as_planned = succeeded().all(|c| {
        org.plans.get(&c.account_id).is_some_and(|plan| {
            c.findings == Some(plan.findings() as u64)
                && c.candidates == Some(plan.candidates() as u64)
        })
    });
    let _ = writeln!(
        out,
        "- Findings per drain: {} (the plans: {}); every successful check's findings and verified candidates \
         equal to its account's plan's: {}.",
        findings.count(),
        count(planned as f64),
        if as_planned { "yes" } else { "**MISMATCH**" }
    );
    let mut problems: Vec<String> = drains.iter().flat_map(|d| d.problems(org)).collect();
    if bench.stopped_early {
        problems
            .push("the organization's runs stopped after the first drain that went wrong".into());
    }
    let _ = writeln!(
        out,
        "- Every account checked exactly once per drain, every record a success (no `batchItemFailures`, no \
         function error), work queue and DLQ empty after every drain ({} drain{}): {}.",
        drains.len(),
        plural(drains.len()),
        if problems.is_empty() {
            "yes".to_string()
        } else {
            format!("**no**: {}", problems.join("; "))
        }
    );
    mismatches.append(&mut problems);
}
