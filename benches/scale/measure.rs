//! The measuring: the release binary run under a Runtime API served here, timed from its first poll; its cold
//! start on its own, before anything else; the ledger's runs; and an organization drained through the work queue by
//! worker processes. What it records goes to [`super::write`].

use crate::instance::{Answer, Instance};
use crate::seed::*;
use crate::support;
use crate::support::ledger::LedgerTable;
use crate::support::proxy::Proxy;
use crate::support::pump::{queue_depth, take_bodies, Pump, Pumped, Stop};
use crate::support::Moto;
use crate::write::*;
use crate::{Config, CONFIGS};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct Run {
    pub(crate) size: usize,
    pub(crate) config: usize,
    pub(crate) wall: Duration,
    pub(crate) peak_rss_kib: u64,
    pub(crate) findings: usize,
    pub(crate) candidates: usize,
    pub(crate) calls: BTreeMap<String, u64>,
    /// Requests the proxy received, retries included.
    pub(crate) requests: usize,
    /// Alert parts SNS accepted (0 in the dry runs).
    pub(crate) notifications: usize,
}

/// How many times each settings profile's process is started to measure init.
pub(crate) const COLD_STARTS: usize = 20;
/// The settings a cold start is measured with: init builds only the clients its settings use.
pub(crate) const COLD_START_PROFILES: [(&str, &[(&str, &str)]); 2] = [
    ("defaults (own account, dry run)", &[("DRY_RUN", "true")]),
    (
        "every feature on (organization, Security Hub, ledger, remediation)",
        &[
            (
                "FINDINGS_TOPIC_ARN",
                "arn:aws:sns:us-east-1:123456789012:keywatch-findings",
            ),
            ("ACCOUNTS", "organization"),
            (
                "WORK_QUEUE_URL",
                "http://127.0.0.1:9/123456789012/keywatch-work",
            ),
            ("SECURITY_HUB", "true"),
            ("LEDGER_TABLE", "keywatch-ledger"),
            ("ALERTS", "changes"),
            ("REMEDIATION", "deactivate"),
        ],
    ),
];

/// One settings profile's init times, from process start to the first Runtime API poll.
pub(crate) struct ColdStart {
    pub(crate) profile: &'static str,
    pub(crate) inits: Vec<Duration>,
}

/// Starts the release binary [`COLD_STARTS`] times per settings profile, the profiles taking turns so drift
/// hits both alike, and times each from spawn to its first poll. Nothing else of the bench runs meanwhile.
pub(crate) async fn cold_starts(binary: &Path) -> Vec<ColdStart> {
    let mut measured: Vec<ColdStart> = COLD_START_PROFILES
        .iter()
        .map(|(profile, _)| ColdStart {
            profile,
            inits: Vec::new(),
        })
        .collect();
    for round in 0..COLD_STARTS {
        for (index, (_, vars)) in COLD_START_PROFILES.iter().enumerate() {
            let vars: Vec<(&str, String)> = vars.iter().map(|(k, v)| (*k, v.to_string())).collect();
            let name = format!("cold-start-{index}-{round}");
            // No AWS call happens before the first poll: the endpoint is never reached.
            let instance = Instance::start(binary, "http://127.0.0.1:9", &vars, &name).await;
            measured[index].inits.push(instance.init);
            instance.stop();
        }
    }
    for cold in &measured {
        let init = Stat::of(cold.inits.iter().map(|d| d.as_secs_f64() * 1000.0));
        eprintln!(
            "cold start, {}: {} ms",
            cold.profile,
            init.show(one_decimal, "")
        );
    }
    measured
}

/// Runs the binary once as an [`Instance`], handed one scheduled event; its wall time runs from the event handed
/// over to the answer, init excluded. With no `vars` it is a dry run; `vars` (a topic, the ledger) make it a real one.
pub(crate) async fn invoke(
    binary: &Path,
    endpoint: &str,
    size: usize,
    config: usize,
    vars: &[(&str, &str)],
) -> Run {
    let Config {
        source,
        concurrency,
        ..
    } = CONFIGS[config];
    let mut env: Vec<(&str, String)> = vec![
        (
            "DRY_RUN",
            (if vars.is_empty() { "true" } else { "false" }).to_string(),
        ),
        ("INVENTORY_SOURCE", source.to_string()),
        ("CONCURRENCY", concurrency.to_string()),
        ("AWS_LAMBDA_LOG_LEVEL", "WARN".to_string()),
    ];
    env.extend(vars.iter().map(|(k, v)| (*k, v.to_string())));
    let instance = Instance::start(binary, endpoint, &env, &format!("bench-{size}-{config}")).await;
    let Answer { status, body, took } = instance.invoke(EVENT.to_string()).await;
    // The high-water mark is read while the process is still alive, waiting for its next event.
    let (peak_rss_kib, _log) = instance.stop();
    assert_eq!(status, 200, "keywatch returned an error: {body}");
    let report: Value = serde_json::from_str(&body).expect("keywatch answered with a JSON report");
    assert!(
        report.get("findings").is_some(),
        "keywatch returned an error: {body}"
    );
    // A run without its counts could meet any call bound: it fails the bench instead.
    let calls = report["api_calls"]["by_operation"]
        .as_object()
        .unwrap_or_else(|| panic!("keywatch's report has no api_calls.by_operation: {body}"))
        .iter()
        .map(|(k, v)| {
            let n = v
                .as_u64()
                .unwrap_or_else(|| panic!("api_calls.by_operation.{k} is not a count: {v}"));
            (k.clone(), n)
        })
        .collect();
    Run {
        size,
        config,
        wall: took,
        peak_rss_kib,
        findings: report["findings"].as_array().map_or(0, Vec::len),
        candidates: report["candidates_verified"].as_u64().unwrap_or(0) as usize,
        calls,
        requests: 0,
        notifications: report["notifications"].as_array().map_or(0, Vec::len),
    }
}

pub(crate) const EVENT: &str = include_str!("../../events/scheduled.json");

/// The ledger's runs: the real binary with `LEDGER_TABLE` and `ALERTS=changes` (not dry runs: they publish and
/// write), on the largest seeded account, through the same proxy and latency. The first run creates an item per
/// finding; the second finds nothing changed, so it publishes nothing and writes nothing.
pub(crate) async fn bench_ledger(
    moto: &Moto,
    binary: &Path,
    proxy: &Proxy,
    size: usize,
) -> Vec<(&'static str, Run)> {
    let account = moto.account().await;
    let table = LedgerTable::create(&account.config).await;
    let topic = account
        .sns
        .create_topic()
        .name("keywatch-bench")
        .send()
        .await
        .expect("a topic")
        .topic_arn
        .expect("its ARN");
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.as_str()),
        ("LEDGER_TABLE", table.name.as_str()),
        ("ALERTS", "changes"),
    ];
    let mut runs = Vec::new();
    for label in ["first run", "unchanged second run"] {
        let run = invoke(binary, &proxy.url, size, 0, &vars).await;
        eprintln!(
            "  ledger, {label}: {} findings, {} parts published, {} Query, {} PutItem",
            run.findings,
            run.notifications,
            calls_of(&run.calls, &["dynamodb:Query"]),
            calls_of(&run.calls, &["dynamodb:PutItem"]),
        );
        runs.push((label, run));
    }
    let stored = table.items().await.len();
    let findings = runs.first().map_or(0, |(_, run)| run.findings);
    assert_eq!(stored, findings, "one ledger item per finding");
    // Routing by owner (OWNER_TAG_KEY's default) against none, back to back on the same account.
    let on = [("DRY_RUN", "true")];
    runs.push((ROUTING_ON, invoke(binary, &proxy.url, size, 0, &on).await));
    let off = [("DRY_RUN", "true"), ("OWNER_TAG_KEY", "")];
    runs.push((ROUTING_OFF, invoke(binary, &proxy.url, size, 0, &off).await));
    runs
}

pub(crate) const ROUTING_ON: &str = "dry run, routing by owner on";
pub(crate) const ROUTING_OFF: &str = "dry run, routing by owner off";

/// Pollers of the pump in the measured drains, each with a worker process of its own.
pub(crate) const ORG_CONCURRENCY: [usize; 2] = [1, 4];
/// Longer than any account's check, so a message never comes back while it is being checked.
pub(crate) const WORK_VISIBILITY_S: u32 = 120;

/// Instances behind the pump's pollers: each invocation goes to an idle one. The pump never has more in
/// flight than it has pollers, and there are as many instances.
pub(crate) struct Fleet {
    pub(crate) instances: Vec<Instance>,
    pub(crate) idle: Mutex<Vec<usize>>,
}

impl Fleet {
    pub(crate) async fn start(
        binary: &Path,
        endpoint: &str,
        vars: &[(&str, String)],
        name: &str,
        n: usize,
    ) -> Fleet {
        let instances = futures_util::future::join_all((0..n).map(|i| async move {
            Instance::start(binary, endpoint, vars, &format!("{name}-worker-{i}")).await
        }))
        .await;
        Fleet {
            instances,
            idle: Mutex::new((0..n).rev().collect()),
        }
    }

    pub(crate) async fn invoke(&self, payload: String) -> Answer {
        let index = self
            .idle
            .lock()
            .expect("idle")
            .pop()
            .expect("no more invocations in flight than instances");
        let answer = self.instances[index].invoke(payload).await;
        self.idle.lock().expect("idle").push(index);
        answer
    }
}

/// One account check, from a worker's stdout: its EMF line, and its "keywatch run complete" log line.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub(crate) account_id: String,
    pub(crate) run_id: String,
    pub(crate) failed: bool,
    pub(crate) findings: Option<u64>,
    /// Every AWS call of the check (the EMF `ApiCalls`).
    pub(crate) api_calls: u64,
    pub(crate) duration_ms: u64,
    /// By operation, from the log line; empty when the check failed.
    pub(crate) calls: BTreeMap<String, u64>,
    pub(crate) candidates: Option<u64>,
}

pub(crate) fn checks_in(log: &str) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut complete = BTreeMap::new();
    for line in log.lines() {
        let Ok(line) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
        // A check's own line: the per-rule and out-of-scope lines carry no AccountId.
        if line.get("_aws").is_some() && line.get("AccountId").is_some() {
            checks.push(Check {
                account_id: text(&line["AccountId"]),
                run_id: text(&line["run_id"]),
                failed: line["CheckFailed"].as_u64() != Some(0),
                findings: line["Findings"].as_u64(),
                api_calls: line["ApiCalls"].as_u64().unwrap_or(0),
                duration_ms: line["DurationMs"].as_u64().unwrap_or(0),
                calls: BTreeMap::new(),
                candidates: None,
            });
        } else if line["fields"]["message"] == "keywatch run complete" {
            let fields = &line["fields"];
            let calls: BTreeMap<String, u64> =
                serde_json::from_str(fields["api_calls_by_operation"].as_str().unwrap_or("{}"))
                    .unwrap_or_default();
            complete.insert(
                (text(&fields["run_id"]), text(&fields["account_id"])),
                (calls, fields["candidates_verified"].as_u64()),
            );
        }
    }
    for check in &mut checks {
        if let Some((calls, candidates)) =
            complete.get(&(check.run_id.clone(), check.account_id.clone()))
        {
            check.calls = calls.clone();
            check.candidates = *candidates;
        }
    }
    checks
}

/// A scheduled event through a fresh instance with `ACCOUNTS=organization`.
pub(crate) struct Dispatch {
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) took: Duration,
    pub(crate) run_id: String,
    pub(crate) accounts: Vec<String>,
    /// The requests the proxy saw, by action.
    pub(crate) requests: BTreeMap<String, u64>,
}

/// A dispatch, then the pump working the queue off through `concurrency` worker processes.
pub(crate) struct Drain {
    pub(crate) concurrency: usize,
    pub(crate) dispatch: Dispatch,
    /// From the pump's start to the last answer (the pump's own quiet time after it is not included).
    pub(crate) wall: Duration,
    pub(crate) checks: Vec<Check>,
    /// The highest of the workers'.
    pub(crate) peak_rss_kib: u64,
    pub(crate) pumped: Pumped,
    /// The work queue after the drain: (visible, in flight, delayed).
    pub(crate) left: (u64, u64, u64),
    /// What the DLQ held after the drain (and no longer does).
    pub(crate) dead: Vec<String>,
    /// Requests the proxy saw from the workers, retries included.
    pub(crate) requests: usize,
}

impl Drain {
    pub(crate) fn checks_per_second(&self) -> f64 {
        self.checks.len() as f64 / self.wall.as_secs_f64().max(f64::EPSILON)
    }

    /// Requests beyond the calls the checks counted.
    pub(crate) fn retries(&self) -> f64 {
        let counted: u64 = self.checks.iter().map(|c| c.api_calls).sum();
        self.requests.saturating_sub(counted as usize) as f64
    }

    /// Everything that makes the drain not a clean run of every account, once, as the seed plans say.
    pub(crate) fn problems(&self, org: &Org) -> Vec<String> {
        let mut problems = Vec::new();
        let label = format!(
            "organization, concurrency {}, run {}",
            self.concurrency, self.dispatch.run_id
        );
        let dispatch = &self.dispatch;
        if dispatch.status != 200 || dispatch.accounts != org.accounts {
            problems.push(format!(
                "{label}: the dispatch answered {} listing {} accounts, not the {} ACTIVE ones: {}",
                dispatch.status,
                dispatch.accounts.len(),
                org.accounts.len(),
                dispatch.body
            ));
        }
        let pumped = &self.pumped;
        if pumped.stopped != Stop::Drained || pumped.failed > 0 || pumped.function_errors > 0 {
            problems.push(format!(
                "{label}: the pump stopped ({:?}) after {} records, {} failed ({} function errors)",
                pumped.stopped, pumped.records, pumped.failed, pumped.function_errors
            ));
        }
        if self.left != (0, 0, 0) || !self.dead.is_empty() {
            problems.push(format!(
                "{label}: left in the work queue {:?} (visible, in flight, delayed); in the DLQ: {:?}",
                self.left, self.dead
            ));
        }
        let mut checked: Vec<&str> = self.checks.iter().map(|c| c.account_id.as_str()).collect();
        checked.sort_unstable();
        if checked != org.accounts {
            problems.push(format!(
                "{label}: {} checks, not one for each of the {} accounts: {checked:?}",
                checked.len(),
                org.accounts.len()
            ));
        }
        for check in &self.checks {
            let account = &check.account_id;
            if check.run_id != dispatch.run_id {
                problems.push(format!(
                    "{label}: {account} checked for run {}",
                    check.run_id
                ));
            }
            if check.failed {
                problems.push(format!("{label}: the check of {account} failed"));
                continue;
            }
            let Some(plan) = org.plans.get(account) else {
                problems.push(format!(
                    "{label}: {account} is no account of the organization"
                ));
                continue;
            };
            if check.findings != Some(plan.findings() as u64) {
                problems.push(format!(
                    "{label}: {account}: {:?} findings, the plan has {}",
                    check.findings,
                    plan.findings()
                ));
            }
            if check.candidates != Some(plan.candidates() as u64) {
                problems.push(format!(
                    "{label}: {account}: {:?} candidates verified, the new rule gives {}",
                    check.candidates,
                    plan.candidates()
                ));
            }
        }
        problems
    }
}

/// The variables of every instance of the organization's deployment. Not a dry run: alerts are published.
pub(crate) fn org_vars(org: &Org) -> Vec<(&'static str, String)> {
    vec![
        ("ACCOUNTS", "organization".to_string()),
        ("WORK_QUEUE_URL", org.work.url.clone()),
        ("FINDINGS_TOPIC_ARN", org.topic.clone()),
        ("MAX_RECEIVE_COUNT", "1".to_string()),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO".to_string()),
    ]
}

pub(crate) fn by_action(seen: &[support::proxy::Seen]) -> BTreeMap<String, u64> {
    let mut requests = BTreeMap::new();
    for request in seen {
        *requests.entry(request.action.clone()).or_insert(0) += 1;
    }
    requests
}

pub(crate) async fn drain(
    org: &Org,
    binary: &Path,
    proxy: &Proxy,
    concurrency: usize,
    name: &str,
) -> Drain {
    let vars = org_vars(org);
    proxy.take_log();
    let dispatcher = Instance::start(binary, &proxy.url, &vars, &format!("{name}-dispatch")).await;
    let answer = dispatcher.invoke(EVENT.to_string()).await;
    let (_, log) = dispatcher.stop();
    let requests = by_action(&proxy.take_log());
    let response: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    let dispatch = Dispatch {
        status: answer.status,
        took: answer.took,
        run_id: response["run_id"].as_str().unwrap_or_default().to_string(),
        accounts: response["accounts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        body: answer.body,
        requests,
    };

    let fleet = Fleet::start(binary, &proxy.url, &vars, name, concurrency).await;
    let pump = Pump::new(&org.own.sqs, &org.work.url)
        .await
        .batch_size(1)
        .workers(concurrency)
        .max_invocations(org.accounts.len() * 2 + 10)
        .time_limit(Duration::from_secs(1_800));
    let last = Mutex::new(None);
    let started = Instant::now();
    let pumped = {
        let invoker = |payload: String| {
            let (fleet, last) = (&fleet, &last);
            async move {
                let answer = fleet.invoke(payload).await;
                *last.lock().expect("last answer") = Some(Instant::now());
                (answer.status, answer.body)
            }
        };
        pump.run(&invoker).await
    };
    let wall = last
        .into_inner()
        .expect("last answer")
        .map_or(pumped.elapsed, |at: Instant| at - started);
    let mut peak_rss_kib = 0;
    let mut logs = vec![log];
    let mut checks = Vec::new();
    for instance in fleet.instances {
        let (peak, log) = instance.stop();
        peak_rss_kib = peak_rss_kib.max(peak);
        checks.extend(checks_in(
            &std::fs::read_to_string(&log).unwrap_or_default(),
        ));
        logs.push(log);
    }
    let drain = Drain {
        concurrency,
        dispatch,
        wall,
        checks,
        peak_rss_kib,
        requests: proxy.take_log().len(),
        left: queue_depth(&org.own.sqs, &org.work.url).await,
        dead: take_bodies(&org.own.sqs, &org.work.dlq_url).await,
        pumped,
    };
    let problems = drain.problems(org);
    if problems.is_empty() {
        for log in logs {
            let _ = std::fs::remove_file(log);
        }
    } else {
        eprintln!(
            "  PROBLEMS (the bench will fail):\n    {}\n  logs: {}",
            problems.join("\n    "),
            logs.iter()
                .map(|l| l.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    drain
}

/// The organization's runs: a warm-up drain, then rounds of every concurrency.
pub(crate) struct OrgBench {
    pub(crate) org: Org,
    pub(crate) warmup: Drain,
    pub(crate) drains: Vec<Drain>,
    /// A drain went wrong, and the rest did not run.
    pub(crate) stopped_early: bool,
}

impl OrgBench {
    pub(crate) fn drains_at(&self, concurrency: usize) -> Vec<&Drain> {
        self.drains
            .iter()
            .filter(|d| d.concurrency == concurrency)
            .collect()
    }

    pub(crate) fn all_drains(&self) -> impl Iterator<Item = &Drain> {
        std::iter::once(&self.warmup).chain(&self.drains)
    }
}

pub(crate) async fn bench_organization(
    moto: &Moto,
    proxy: &Proxy,
    binary: &Path,
    accounts: usize,
    users: usize,
    rounds: usize,
) -> OrgBench {
    moto.reset();
    let org = organization(moto, accounts, users).await;
    let planned: usize = org.plans.values().map(Plan::findings).sum();
    eprintln!(
        "organization of {accounts} accounts × {users} users seeded in {:.1?}: {planned} findings planned",
        org.seeding
    );
    let show = |what: &str, d: &Drain| {
        eprintln!(
            "  {what:<13} c={}: dispatch {:>6.1?}, drain {:>7.2?} ({:.1} checks/s), {} IAM calls, {} findings, {} KiB peak RSS",
            d.concurrency,
            d.dispatch.took,
            d.wall,
            d.checks_per_second(),
            d.checks.iter().map(|c| iam_calls(&c.calls)).sum::<u64>(),
            d.checks.iter().filter_map(|c| c.findings).sum::<u64>(),
            d.peak_rss_kib
        );
    };
    let most = *ORG_CONCURRENCY.iter().max().expect("a concurrency");
    let warmup = drain(&org, binary, proxy, most, "org-warmup").await;
    show("warm-up", &warmup);
    // A drain that went wrong ends the organization's runs: the bench fails now, not after more of them.
    let mut stopped_early = !warmup.problems(&org).is_empty();
    let mut drains = Vec::new();
    'rounds: for round in 1..=rounds {
        for concurrency in ORG_CONCURRENCY {
            if stopped_early {
                break 'rounds;
            }
            let name = format!("org-{round}-c{concurrency}");
            let drained = drain(&org, binary, proxy, concurrency, &name).await;
            show(&format!("run {round}/{rounds}"), &drained);
            stopped_early = !drained.problems(&org).is_empty();
            drains.push(drained);
        }
    }
    OrgBench {
        org,
        warmup,
        drains,
        stopped_early,
    }
}
