//! `make bench` (`cargo test --test scale`; not part of `cargo test`): how keywatch scales with the number of IAM users,
//! measured. It fails (after writing the document) only when keywatch's candidates or findings differ from the seed plan.
//!
//! First, before moto or anything else starts, the cold start: the release binary started 20 times per settings
//! profile, timed from spawn to its first Runtime API poll.
//!
//! For each account size it seeds moto once from a deterministic plan (console users and service users, Active
//! and Inactive keys, mostly used), then runs the RELEASE `keywatch` binary under a minimal Lambda Runtime API
//! served here, `BENCH_RUNS` times per configuration (inventory source and concurrency). The runs are dry runs
//! signed with moto's test credentials, so they change nothing. Every request passes through the test proxy
//! (`tests/support/proxy.rs`), which adds a fixed latency (moto on loopback answers far faster than IAM, which would
//! hide what concurrency buys) and answers ListUsers in IAM-sized pages (moto never pages). It records wall time, IAM
//! calls by operation and peak RSS, and compares the candidate count and call counts with what the seed plan
//! implies; a run whose report lacks a count the plan requires fails the bench. It writes `docs/benchmarks.md` and draws
//! `docs/benchmarks.svg`; every figure and verdict in them comes from this run.
//!
//! Then an organization (issue 9's scale): `BENCH_ORG_ACCOUNTS` accounts of `BENCH_ORG_USERS` users each, in moto's
//! Organizations. Each drain dispatches every account to a work queue with the binary (`ACCOUNTS=organization`),
//! then `tests/support/pump.rs` works the queue off through 1 or 4 worker processes, each the binary under a Runtime
//! API of its own. It records the dispatch time, account checks per second, each check's calls and findings (from
//! the workers' EMF and log lines) and the workers' peak RSS; any failed record or wrong finding fails the bench.
//!
//! This file runs the steps in order; `scale/seed.rs` plans and seeds the accounts, `scale/measure.rs` runs and
//! times the binary, and `scale/write.rs` writes the document and the plot from what was measured.
//!
//! Sizes: `BENCH_SIZES=100,1000,5000` (default). Runs per configuration: `BENCH_RUNS=3`. Latency:
//! `BENCH_LATENCY_MS=10`. Binary: `BENCH_BINARY` (default `target/release/keywatch`). Organization:
//! `BENCH_ORG_ACCOUNTS=50` (0: none), `BENCH_ORG_USERS=100`.

use keywatch_test_support as support;

// The crate root is this file, so its modules are found by path.
#[path = "scale/events.rs"]
mod events;
#[path = "scale/instance.rs"]
mod instance;
#[path = "scale/measure.rs"]
mod measure;
#[path = "scale/rules.rs"]
mod rules;
#[path = "scale/seed.rs"]
mod seed;
#[path = "scale/write.rs"]
mod write;
#[path = "scale/write_ledger.rs"]
mod write_ledger;
#[path = "scale/write_org.rs"]
mod write_org;
#[path = "scale/write_plot.rs"]
mod write_plot;

use std::time::{Duration, Instant};

use measure::*;
use seed::*;
use support::proxy::{Fault, Proxy, Rule};
use support::{project_dir, Moto};
use write::*;
use write_plot::plot;

/// One way of running keywatch, and the largest account it is run on.
struct Config {
    source: &'static str,
    concurrency: usize,
    max_users: usize,
}

impl Config {
    fn name(&self) -> String {
        format!("{} c={}", self.source, self.concurrency)
    }
}

const CONFIGS: [Config; 3] = [
    Config {
        source: "credential-report",
        concurrency: 8,
        max_users: usize::MAX,
    },
    // One user at a time: every call's latency adds up, so large accounts would take most of the time budget.
    Config {
        source: "api",
        concurrency: 1,
        max_users: 1_000,
    },
    Config {
        source: "api",
        concurrency: 8,
        max_users: usize::MAX,
    },
];

/// The IAM calls of the credential-report source that do not depend on candidates.
pub(crate) const FIXED_OPS: [&str; 3] = [
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:ListUsers",
];
/// The IAM calls live verification makes per candidate user.
pub(crate) const PER_CANDIDATE_OPS: [&str; 4] = [
    "iam:ListAccessKeys",
    "iam:GetLoginProfile",
    "iam:ListUserTags",
    "iam:GetAccessKeyLastUsed",
];

/// One seeded account size.
struct SeededSize {
    size: usize,
    plan: Plan,
    seeding: Duration,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let binary = std::env::var("BENCH_BINARY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| project_dir().join("target/release/keywatch"));
    assert!(
        binary.exists(),
        "build the release binary first: cargo build --release --bin keywatch (make bench does)"
    );
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "100,1000,5000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("BENCH_SIZES is a comma-separated list of numbers")
        })
        .collect();
    let latency = Duration::from_millis(env_number("BENCH_LATENCY_MS", 10));
    let runs = env_number("BENCH_RUNS", 3) as usize;
    assert!(runs >= 1, "BENCH_RUNS must be at least 1");
    let org_accounts = env_number("BENCH_ORG_ACCOUNTS", 50) as usize;
    let org_users = env_number("BENCH_ORG_USERS", 100) as usize;

    // First, before moto or anything else of the bench runs: init alone, on an idle machine.
    let cold_starts = cold_starts(&binary).await;

    let moto = Moto::start();
    let proxy = Proxy::start(&moto.endpoint);
    proxy.add(Rule::on("*", Fault::Delay(latency)));
    proxy.page_list_users();

    let mut results = Vec::new();
    let mut seeded = Vec::new();
    for &size in &sizes {
        moto.reset();
        let plan = Plan::new(size);
        let started = Instant::now();
        seed(&[(&moto.account().await, &plan)]).await;
        let seeding = started.elapsed();
        eprintln!(
            "seeded {size} users in {seeding:.1?}: {} findings, {} candidates (old rule {})",
            plan.findings(),
            plan.candidates(),
            plan.old_rule_candidates()
        );
        // Rounds of every configuration rather than one configuration's runs in a row, so drift hits all alike.
        for round in 1..=runs {
            for (index, config) in CONFIGS.iter().enumerate() {
                if size > config.max_users {
                    continue;
                }
                proxy.take_log();
                let mut run = invoke(&binary, &proxy.url, size, index, &[]).await;
                run.requests = proxy.take_log().len();
                eprintln!(
                    "  run {round}/{runs} {:<21}: {:>7.2?} wall, {} IAM calls, {} candidates, {} findings, {} KiB peak RSS",
                    config.name(),
                    run.wall,
                    iam_calls(&run.calls),
                    run.candidates,
                    run.findings,
                    run.peak_rss_kib,
                );
                results.push(run);
            }
        }
        seeded.push(SeededSize {
            size,
            plan,
            seeding,
        });
    }

    // moto still holds the largest account: the ledger's calls on it, a first run and an unchanged second one.
    let ledger = match seeded.iter().max_by_key(|s| s.size) {
        Some(largest) => bench_ledger(&moto, &binary, &proxy, largest.size).await,
        None => Vec::new(),
    };

    // moto still holds the largest account: every rule against the default, every key aged.
    let rules = match seeded.iter().max_by_key(|s| s.size) {
        Some(largest) => rules::bench_rules(&binary, &proxy, largest.size, runs).await,
        None => Vec::new(),
    };

    // IAM events, one at a time, from the queue to the alert.
    let event_runs = if seeded.is_empty() {
        Vec::new()
    } else {
        events::bench_events(&moto, &proxy, &binary, runs.max(5)).await
    };

    // Last: it resets moto for an organization of its own.
    let org = if org_accounts > 0 {
        Some(bench_organization(&moto, &proxy, &binary, org_accounts, org_users, runs).await)
    } else {
        None
    };

    let bench = Bench {
        cold_starts: &cold_starts,
        runs: &results,
        sizes: &seeded,
        rounds: runs,
        latency,
        org: org.as_ref(),
        ledger: &ledger,
        rules: &rules,
        events: &event_runs,
    };
    let plot_path = project_dir().join("docs/benchmarks.svg");
    plot(&bench, &plot_path).expect("draw docs/benchmarks.svg");
    let (doc, mismatches, unmet) = render(&bench, &binary);
    std::fs::write(project_dir().join("docs/benchmarks.md"), doc)
        .expect("write docs/benchmarks.md");
    eprintln!("wrote docs/benchmarks.md and docs/benchmarks.svg");
    let mut failed = false;
    if !mismatches.is_empty() {
        eprintln!(
            "MISMATCH between keywatch and the seed plan, or a failed organization run (see docs/benchmarks.md):\n  {}",
            mismatches.join("\n  ")
        );
        failed = true;
    }
    let unexplained = unexplained(&unmet);
    if !unexplained.is_empty() {
        eprintln!(
            "TARGETS NOT MET, and not among the known ones in benches/scale/write.rs (KNOWN_UNMET):\n  {}",
            unexplained.join("\n  ")
        );
        failed = true;
    }
    if failed {
        std::process::exit(1);
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}")),
        Err(_) => default,
    }
}
