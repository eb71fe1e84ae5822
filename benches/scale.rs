//! `make bench` (`cargo test --test scale`; not part of `cargo test`): how keywatch scales with the number of IAM users,
//! measured. It fails (after writing the document) only when keywatch's candidates or findings differ from the seed plan.
//!
//! For each account size it seeds moto once from a deterministic plan (console users and service users, Active
//! and Inactive keys, mostly used), then runs the RELEASE `keywatch` binary under a minimal Lambda Runtime API
//! served here, `BENCH_RUNS` times per configuration (inventory source and concurrency). The runs are dry runs
//! signed with moto's test credentials, so they change nothing. Every request passes through the test proxy
//! (`tests/support/proxy.rs`), which adds a fixed latency (moto on loopback answers far faster than IAM, which would
//! hide what concurrency buys) and answers ListUsers in IAM-sized pages (moto never pages). It records wall time, IAM
//! calls by operation, peak RSS and the time from process start to the first Runtime API poll, and compares the
//! candidate count and call counts with what the seed plan implies. It writes `docs/benchmarks.md` and draws
//! `docs/benchmarks.svg`; every figure and verdict in them comes from this run.
//!
//! Then an organization (issue 9's scale): `BENCH_ORG_ACCOUNTS` accounts of `BENCH_ORG_USERS` users each, in moto's
//! Organizations. Each drain dispatches every account to a work queue with the binary (`ACCOUNTS=organization`),
//! then `tests/support/pump.rs` works the queue off through 1 or 4 worker processes, each the binary under a Runtime
//! API of its own. It records the dispatch time, account checks per second, each check's calls and findings (from
//! the workers' EMF and log lines) and the workers' peak RSS; any failed record or wrong finding fails the bench.
//!
//! Sizes: `BENCH_SIZES=100,1000,5000` (default). Runs per configuration: `BENCH_RUNS=3`. Latency:
//! `BENCH_LATENCY_MS=10`. Binary: `BENCH_BINARY` (default `target/release/keywatch`). Organization:
//! `BENCH_ORG_ACCOUNTS=50` (0: none), `BENCH_ORG_USERS=100`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_organizations::types::OrganizationFeatureSet;
use futures_util::StreamExt;
use plotters::prelude::*;
use serde_json::Value;
use support::ledger::LedgerTable;
use support::proxy::{Fault, Proxy, Rule};
use support::pump::{queue_depth, take_bodies, Pump, Pumped, Stop, WorkQueue};
use support::{http, project_dir, Account, Moto};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

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

/// The seed mix, in percent. The document states these values, so they are changed here only.
const CONSOLE_USERS: u64 = 50;
const CONSOLE_WITHOUT_KEY: u64 = 40;
const CONSOLE_SECOND_KEY: u64 = 25;
const CONSOLE_KEY_NEVER_USED: u64 = 13;
const SERVICE_SECOND_KEY: u64 = 30;
const SERVICE_KEY_NEVER_USED: u64 = 10;
const KEY_INACTIVE: u64 = 20;

/// The IAM calls of the credential-report source that do not depend on candidates.
const FIXED_OPS: [&str; 3] = [
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:ListUsers",
];
/// The IAM calls live verification makes per candidate user.
const PER_CANDIDATE_OPS: [&str; 4] = [
    "iam:ListAccessKeys",
    "iam:GetLoginProfile",
    "iam:ListUserTags",
    "iam:GetAccessKeyLastUsed",
];

struct Run {
    size: usize,
    config: usize,
    wall: Duration,
    init: Duration,
    peak_rss_kib: u64,
    findings: usize,
    candidates: usize,
    calls: BTreeMap<String, u64>,
    /// Requests the proxy received, retries included.
    requests: usize,
    /// Alert parts SNS accepted (0 in the dry runs).
    notifications: usize,
}

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

    let moto = Moto::start();
    let proxy = Proxy::start(&moto.endpoint);
    proxy.add(Rule::on("*", Fault::Delay(latency)));
    proxy.page_list_users();

    let mut results = Vec::new();
    let mut seeded = Vec::new();
    for &size in &sizes {
        assert_eq!(
            http(moto.port, "POST", "/moto-api/reset", "").map(|r| r.0),
            Some(200)
        );
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
                    "  run {round}/{runs} {:<21}: {:>7.2?} wall, {} IAM calls, {} candidates, {} findings, {} KiB peak RSS, init {:.1?}",
                    config.name(),
                    run.wall,
                    iam_calls(&run.calls),
                    run.candidates,
                    run.findings,
                    run.peak_rss_kib,
                    run.init
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

    // Last: it resets moto for an organization of its own.
    let org = if org_accounts > 0 {
        Some(bench_organization(&moto, &proxy, &binary, org_accounts, org_users, runs).await)
    } else {
        None
    };

    let bench = Bench {
        runs: &results,
        sizes: &seeded,
        rounds: runs,
        latency,
        org: org.as_ref(),
        ledger: &ledger,
    };
    let plot_path = project_dir().join("docs/benchmarks.svg");
    plot(&bench, &plot_path).expect("draw docs/benchmarks.svg");
    let (doc, mismatches) = render(&bench, &binary);
    std::fs::write(project_dir().join("docs/benchmarks.md"), doc)
        .expect("write docs/benchmarks.md");
    eprintln!("wrote docs/benchmarks.md and docs/benchmarks.svg");
    if !mismatches.is_empty() {
        eprintln!(
            "MISMATCH between keywatch and the seed plan, or a failed organization run (see docs/benchmarks.md):\n  {}",
            mismatches.join("\n  ")
        );
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

/// Deterministic xorshift64*, so every run seeds the same accounts.
struct Seeded(u64);

impl Seeded {
    fn chance(&mut self, percent: u64) -> bool {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % 100 < percent
    }
}

#[derive(Clone, Copy)]
struct PlannedKey {
    active: bool,
    used: bool,
}

struct PlannedUser {
    name: String,
    console: bool,
    keys: Vec<PlannedKey>,
}

impl PlannedUser {
    fn never_used(&self) -> impl Iterator<Item = &PlannedKey> {
        self.keys.iter().filter(|k| !k.used)
    }

    /// The new candidate rule: a never-used key in any slot, Active or Inactive, password or not. (Users missing
    /// from the report are candidates too; here every user exists before the report.)
    fn is_candidate(&self) -> bool {
        self.never_used().next().is_some()
    }

    /// The old rule: an Active never-used key on a console user.
    fn is_old_rule_candidate(&self) -> bool {
        self.console && self.never_used().any(|k| k.active)
    }

    /// Keys whose last use has to be looked up live: Active keys of a console user the report did not see used
    /// (every used key is used before the report here).
    fn live_lookups(&self) -> usize {
        if self.console {
            self.never_used().filter(|k| k.active).count()
        } else {
            0
        }
    }
}

/// Everything the seed will create, decided up front: the expected figures come from here, not from keywatch.
struct Plan {
    users: Vec<PlannedUser>,
}

impl Plan {
    fn new(size: usize) -> Plan {
        Plan::seeded(size, 0x5EED_0000 + size as u64)
    }

    /// The plan of the organization's account number `index` (0: the management account, whose plan is the
    /// single account's of that size); every member gets a mix of its own.
    fn for_account(size: usize, index: usize) -> Plan {
        Plan::seeded(size, 0x5EED_0000 + size as u64 + ((index as u64) << 32))
    }

    fn seeded(size: usize, seed: u64) -> Plan {
        let mut rng = Seeded(seed);
        let users = (0..size)
            .map(|i| {
                let console = rng.chance(CONSOLE_USERS);
                let (keys, never_used) = if console {
                    let keys = if rng.chance(CONSOLE_WITHOUT_KEY) {
                        0
                    } else if rng.chance(CONSOLE_SECOND_KEY) {
                        2
                    } else {
                        1
                    };
                    (keys, CONSOLE_KEY_NEVER_USED)
                } else {
                    let keys = if rng.chance(SERVICE_SECOND_KEY) { 2 } else { 1 };
                    (keys, SERVICE_KEY_NEVER_USED)
                };
                let keys = (0..keys)
                    .map(|_| PlannedKey {
                        used: !rng.chance(never_used),
                        active: !rng.chance(KEY_INACTIVE),
                    })
                    .collect();
                PlannedUser {
                    name: format!("user-{i:05}"),
                    console,
                    keys,
                }
            })
            .collect();
        Plan { users }
    }

    fn count(&self, f: impl Fn(&PlannedUser) -> usize) -> usize {
        self.users.iter().map(f).sum()
    }

    /// Active never-used keys of console users: what keywatch must report.
    fn findings(&self) -> usize {
        self.count(|u| {
            if u.console {
                u.never_used().filter(|k| k.active).count()
            } else {
                0
            }
        })
    }

    fn candidates(&self) -> usize {
        self.count(|u| usize::from(u.is_candidate()))
    }

    fn old_rule_candidates(&self) -> usize {
        self.count(|u| usize::from(u.is_old_rule_candidate()))
    }

    fn live_lookups(&self) -> usize {
        self.count(|u| {
            if u.is_candidate() {
                u.live_lookups()
            } else {
                0
            }
        })
    }

    /// Keys matching `console`, `active` and `used` (`None`: either).
    fn keys(&self, console: Option<bool>, active: Option<bool>, used: Option<bool>) -> usize {
        self.count(|u| {
            if console.is_some_and(|c| c != u.console) {
                return 0;
            }
            u.keys
                .iter()
                .filter(|k| active.is_none_or(|a| a == k.active))
                .filter(|k| used.is_none_or(|x| x == k.used))
                .count()
        })
    }
}

/// Creates each plan's users and keys in its account: each key is created, used if planned (a signed request),
/// then deactivated if planned. Accounts are seeded together, a few requests in flight in all: moto is one process.
async fn seed(accounts: &[(&Account, &Plan)]) {
    // Two passes, so a user's second key is created in a later second than its first: real keys are created
    // apart, and keywatch matches report slots to live keys by creation second.
    for pass in 0..2 {
        if pass == 1 {
            tokio::time::sleep(Duration::from_millis(1_100)).await;
        }
        let users = accounts
            .iter()
            .flat_map(|&(account, plan)| plan.users.iter().map(move |user| (account, user)));
        futures_util::stream::iter(users)
            .map(|(account, user)| async move {
                if pass == 0 {
                    account.user(&user.name).await;
                    if user.console {
                        account.password(&user.name).await;
                    }
                }
                if let Some(planned) = user.keys.get(pass) {
                    let key = account.key(&user.name).await;
                    if planned.used {
                        account.use_key(&key).await;
                    }
                    if !planned.active {
                        account.deactivate(&user.name, &key).await;
                    }
                }
            })
            // moto 5.2 answers 500 to some concurrent STS calls above a handful in flight.
            .buffer_unordered(4)
            .collect::<Vec<()>>()
            .await;
    }
}

/// What the minimal Runtime API saw.
#[derive(Default)]
struct Seen {
    first_poll: Option<Instant>,
    response: Option<(Instant, String)>,
}

/// Runs the binary once under a Runtime API that hands it one scheduled event.
/// Runs the binary once. With no `vars` it is a dry run; `vars` (a topic, the ledger) make it a real one.
async fn invoke(
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
    let runtime = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind runtime api");
    let runtime_port = runtime.local_addr().expect("runtime address").port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = tokio::spawn(serve_runtime_api(runtime, seen.clone()));

    let spawned = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("127.0.0.1:{runtime_port}"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "keywatch")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("DRY_RUN", if vars.is_empty() { "true" } else { "false" })
        .envs(vars.iter().copied())
        .env("INVENTORY_SOURCE", source)
        .env("CONCURRENCY", concurrency.to_string())
        .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
        .stdout(Stdio::null())
        .spawn()
        .expect("start keywatch");
    let pid = child.id();

    let (first_poll, (responded, body)) = loop {
        let done = {
            let state = seen.lock().expect("runtime state");
            state.first_poll.zip(state.response.clone())
        };
        if let Some(done) = done {
            break done;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("keywatch exited with {status} before responding");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Read the high-water mark while the process is still alive, waiting for its next event.
    let peak_rss_kib = peak_rss_kib(pid);
    let _ = child.kill();
    let _ = child.wait();
    server.abort();

    let report: Value = serde_json::from_str(&body).expect("keywatch answered with a JSON report");
    assert!(
        report.get("findings").is_some(),
        "keywatch returned an error: {body}"
    );
    let calls = report["api_calls"]["by_operation"]
        .as_object()
        .map(|ops| {
            ops.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    Run {
        size,
        config,
        wall: responded - first_poll,
        init: first_poll - spawned,
        peak_rss_kib,
        findings: report["findings"].as_array().map_or(0, Vec::len),
        candidates: report["candidates_verified"].as_u64().unwrap_or(0) as usize,
        calls,
        requests: 0,
        notifications: report["notifications"].as_array().map_or(0, Vec::len),
    }
}

/// VmHWM: the process's peak resident set, in KiB (0 if it cannot be read).
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:").map(str::to_string))
        })
        .and_then(|kib| kib.split_whitespace().next().and_then(|k| k.parse().ok()))
        .unwrap_or(0)
}

const EVENT: &str = include_str!("../events/scheduled.json");

/// Just enough of the Runtime API for one invocation: `next` (once), `response` and `error`.
async fn serve_runtime_api(listener: TcpListener, seen: Arc<Mutex<Seen>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            loop {
                let Some((head, body)) = read_request(&mut stream, &mut buffer).await else {
                    return;
                };
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let reply = if path.ends_with("/invocation/next") {
                    let first = {
                        let mut state = seen.lock().expect("runtime state");
                        let first = state.first_poll.is_none();
                        state.first_poll.get_or_insert_with(Instant::now);
                        first
                    };
                    if !first {
                        // The second poll: keywatch is idle. Never answer; the process is killed.
                        std::future::pending::<()>().await;
                        return;
                    }
                    let deadline = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() + 600_000)
                        .unwrap_or(0);
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: bench-1\r\n\
                         Lambda-Runtime-Deadline-Ms: {deadline}\r\n\
                         Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:keywatch\r\n\
                         Content-Length: {}\r\n\r\n{EVENT}",
                        EVENT.len()
                    )
                } else {
                    seen.lock().expect("runtime state").response = Some((Instant::now(), body));
                    "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_string()
                };
                if stream.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Reads one HTTP/1.1 request (head and Content-Length body) from a keep-alive connection.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(String, String)> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]).to_string();
                buffer.drain(..end + 4 + length);
                return Some((head, body));
            }
        }
        let mut chunk = [0u8; 65536];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn iam_calls(calls: &BTreeMap<String, u64>) -> u64 {
    calls
        .iter()
        .filter(|(op, _)| op.starts_with("iam:"))
        .map(|(_, n)| n)
        .sum()
}

fn calls_of(calls: &BTreeMap<String, u64>, ops: &[&str]) -> u64 {
    ops.iter()
        .map(|op| calls.get(*op).copied().unwrap_or(0))
        .sum()
}

/// Median, minimum and maximum over the runs of one configuration.
#[derive(Clone, Copy)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

impl Stat {
    fn of(values: impl IntoIterator<Item = f64>) -> Stat {
        let mut values: Vec<f64> = values.into_iter().collect();
        assert!(!values.is_empty(), "a statistic of no runs");
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Stat {
            median,
            min: values[0],
            max: values[n - 1],
        }
    }

    /// `median unit (min–max)`, or the median alone when every run gave the same figure at this precision.
    fn show(&self, format: impl Fn(f64) -> String, unit: &str) -> String {
        let (median, min, max) = (format(self.median), format(self.min), format(self.max));
        if min == max {
            format!("{median}{unit}")
        } else {
            format!("{median}{unit} ({min}–{max})")
        }
    }

    fn count(&self) -> String {
        self.show(count, "")
    }
}

/// A count with thousands separators; a median of an even number of runs may end in .5.
fn count(value: f64) -> String {
    if value.fract() != 0.0 {
        return format!("{value:.1}");
    }
    let digits = (value as u64).to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn seconds(value: f64) -> String {
    format!("{value:.2}")
}

fn one_decimal(value: f64) -> String {
    format!("{value:.1}")
}

/// Everything measured, for the document and the plot.
struct Bench<'a> {
    runs: &'a [Run],
    sizes: &'a [SeededSize],
    rounds: usize,
    latency: Duration,
    /// `None` with `BENCH_ORG_ACCOUNTS=0`.
    org: Option<&'a OrgBench>,
    /// The ledger's runs on the largest account: (what the run was, the run).
    ledger: &'a [(&'static str, Run)],
}

impl Bench<'_> {
    /// The runs of one configuration at one size (empty if it did not run there).
    fn of(&self, size: usize, config: usize) -> Vec<&Run> {
        self.runs
            .iter()
            .filter(|r| r.size == size && r.config == config)
            .collect()
    }

    fn stat(&self, size: usize, config: usize, f: impl Fn(&Run) -> f64) -> Option<Stat> {
        let runs = self.of(size, config);
        (!runs.is_empty()).then(|| Stat::of(runs.into_iter().map(f)))
    }

    /// The configurations that ran at `size`, by index.
    fn configs_at(&self, size: usize) -> Vec<usize> {
        (0..CONFIGS.len())
            .filter(|&c| !self.of(size, c).is_empty())
            .collect()
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**NOT met**"
    }
}

/// The document, and the mismatches between keywatch's answers and the seed plan (empty when none).
fn render(bench: &Bench, binary: &Path) -> (String, Vec<String>) {
    let mut mismatches = Vec::new();
    let mut out = String::new();
    let rounds = bench.rounds;
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Written by `make bench` (`benches/scale.rs`) on {}, which also drew the plot; nothing here is edited by hand. \
         Each figure is the median of {rounds} run{} of one configuration, with the minimum–maximum in brackets \
         (a single figure: every run gave the same). Verdicts are computed from these figures.\n",
        command_output("date", &["-u", "+%Y-%m-%d"]),
        if rounds == 1 { "" } else { "s" },
    );
    let _ = writeln!(
        out,
        "![Wall time and IAM calls against the number of IAM users, one line per inventory source and concurrency](benchmarks.svg)\n"
    );

    // Setup.
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let moto = command_output(
        &project_dir().join(".venv/bin/python").to_string_lossy(),
        &["-c", "import moto; print(moto.__version__)"],
    );
    let arm64 = match std::fs::metadata(project_dir().join("target/lambda/keywatch/bootstrap")) {
        Ok(m) => format!(
            "The Lambda artifact, `cargo lambda build --release --arm64` → `target/lambda/keywatch/bootstrap`: {:.1} MiB; target < 8 MB: {}.",
            m.len() as f64 / 1_048_576.0,
            verdict(m.len() < 8_000_000)
        ),
        Err(_) => "The arm64 Lambda artifact was not built (`cargo lambda build --release --arm64`).".to_string(),
    };
    let size_mib = std::fs::metadata(binary)
        .map(|m| m.len() as f64 / 1_048_576.0)
        .unwrap_or(0.0);
    let _ = writeln!(out, "## Setup\n");
    let _ = writeln!(
        out,
        "- Machine: {} cores, {cpu}; {}\n\
         - moto {moto} on loopback, behind the test proxy (`tests/support/proxy.rs`), which delays every AWS request \
         by {} ms (IAM is slower than moto; without it concurrency would only measure moto's CPU) and answers \
         ListUsers in IAM's pages (100 users unless `MaxItems` asks for up to 1,000, with `Marker`), which moto does \
         not. The proxy takes each page from moto's full listing.\n\
         - Release binary (x86_64, `target/release/keywatch`): {size_mib:.1} MiB. {arm64}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        command_output("rustc", &["--version"]),
        bench.latency.as_millis()
    );
    let _ = writeln!(
        out,
        "- Each size is seeded once, then every configuration runs {rounds} time{} in rounds (a dry run with moto's test \
         credentials changes nothing). Configurations and the sizes they ran at:",
        if rounds == 1 { "" } else { "s" },
    );
    for (index, config) in CONFIGS.iter().enumerate() {
        let ran: Vec<String> = bench
            .sizes
            .iter()
            .filter(|s| !bench.of(s.size, index).is_empty())
            .map(|s| count(s.size as f64))
            .collect();
        let skipped: Vec<String> = bench
            .sizes
            .iter()
            .filter(|s| bench.of(s.size, index).is_empty())
            .map(|s| count(s.size as f64))
            .collect();
        let _ = writeln!(
            out,
            "  - `{}`: {} users{}",
            config.name(),
            if ran.is_empty() {
                "no".to_string()
            } else {
                ran.join(", ")
            },
            if skipped.is_empty() {
                String::new()
            } else {
                format!(
                    "; not at {} (it runs only up to {} users)",
                    skipped.join(", "),
                    count(config.max_users as f64)
                )
            }
        );
    }

    // The seeded accounts.
    let _ = writeln!(out, "\n## Seeded accounts\n");
    let _ = writeln!(
        out,
        "Each user is a console user (with a password) with probability {CONSOLE_USERS} %, else a service user. A \
         console user has no key with probability {CONSOLE_WITHOUT_KEY} %, else one key, or two with \
         {CONSOLE_SECOND_KEY} %; each of its keys is never used with probability {CONSOLE_KEY_NEVER_USED} %. A service \
         user has one key, or two with {SERVICE_SECOND_KEY} %; each never used with {SERVICE_KEY_NEVER_USED} %. Any \
         key is Inactive with probability {KEY_INACTIVE} % (deactivated after its use, if used). A used key signed \
         one request before any run; a user's second key was created at least a second after the first. Counts from \
         the seed plan:\n"
    );
    let _ = writeln!(
        out,
        "| users | console users | service users | keys (Inactive) | never-used keys: Active, of console users | Inactive, of console users | of service users | seeding time |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in bench.sizes {
        let plan = &s.plan;
        let console = plan.users.iter().filter(|u| u.console).count();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} ({}) | {} | {} | {} | {:.0} s |",
            count(s.size as f64),
            count(console as f64),
            count((plan.users.len() - console) as f64),
            count(plan.keys(None, None, None) as f64),
            count(plan.keys(None, Some(false), None) as f64),
            count(plan.keys(Some(true), Some(true), Some(false)) as f64),
            count(plan.keys(Some(true), Some(false), Some(false)) as f64),
            count(plan.keys(Some(false), None, Some(false)) as f64),
            s.seeding.as_secs_f64()
        );
    }

    // Results.
    let _ = writeln!(out, "\n## Results\n");
    let _ = writeln!(
        out,
        "| users | source | concurrency | wall time | IAM calls | candidates | findings | peak RSS | init to first poll |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for s in bench.sizes {
        for c in bench.configs_at(s.size) {
            let stat = |f: &dyn Fn(&Run) -> f64| bench.stat(s.size, c, f).expect("ran");
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                count(s.size as f64),
                CONFIGS[c].source,
                CONFIGS[c].concurrency,
                stat(&|r| r.wall.as_secs_f64()).show(seconds, " s"),
                stat(&|r| iam_calls(&r.calls) as f64).count(),
                stat(&|r| r.candidates as f64).count(),
                stat(&|r| r.findings as f64).count(),
                stat(&|r| r.peak_rss_kib as f64 / 1024.0).show(one_decimal, " MiB"),
                stat(&|r| r.init.as_secs_f64() * 1000.0).show(one_decimal, " ms"),
            );
        }
    }

    // Candidates: old rule, new rule, keywatch.
    let report_configs: Vec<usize> = (0..CONFIGS.len())
        .filter(|&c| CONFIGS[c].source == "credential-report")
        .collect();
    let _ = writeln!(out, "\n## Candidates\n");
    let _ = writeln!(
        out,
        "Users the credential-report source verifies live. Old rule: a console user with an Active never-used key. \
         New rule: a user whose report row shows a never-used key in any slot (Active or Inactive, password or not), \
         or whom the report does not list (none here: every user exists before the first run). Both counted from the \
         seed plan; keywatch's `candidates_verified` must equal the new rule's count.\n"
    );
    let _ = writeln!(
        out,
        "| users | old rule (plan) | new rule (plan) | change | keywatch, credential-report | equal to the new rule |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---|");
    for s in bench.sizes {
        let (old, new) = (s.plan.old_rule_candidates(), s.plan.candidates());
        for &c in &report_configs {
            let runs = bench.of(s.size, c);
            if runs.is_empty() {
                continue;
            }
            let measured = Stat::of(runs.iter().map(|r| r.candidates as f64));
            let equal = runs.iter().all(|r| r.candidates == new);
            let check = if equal {
                "yes".to_string()
            } else {
                let hint = if runs.iter().all(|r| r.candidates == old) {
                    " (the old rule's count)"
                } else {
                    ""
                };
                let message = format!(
                    "{} users, {}: keywatch verified {} candidates, the new rule gives {new}{hint}",
                    s.size,
                    CONFIGS[c].name(),
                    measured.count()
                );
                mismatches.push(message);
                format!("**MISMATCH**{hint}")
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {check} |",
                count(s.size as f64),
                count(old as f64),
                count(new as f64),
                if old == 0 {
                    format!("+{}", count(new as f64))
                } else {
                    format!(
                        "{:+} ({:.1}x)",
                        new as i64 - old as i64,
                        new as f64 / old as f64
                    )
                },
                measured.count(),
            );
        }
    }

    // Call bounds.
    let _ = writeln!(out, "\n## IAM call bounds (credential-report source)\n");
    let _ = writeln!(
        out,
        "- Fixed calls ({}) at most 3 + ⌈users / 1,000⌉.\n\
         - Per-candidate calls ({}) at most 3 × candidates + the keys that need a live last-use lookup: Active keys of \
         candidates with a console password that the report did not see used. Candidates and lookups come from the seed \
         plan (new rule).\n\
         - A verdict holds for the highest count of the {rounds} run{}. GenerateCredentialReport calls are listed run by \
         run: a run that finds no report starts one (`STARTED`) and asks again; moto, like IAM while a report is under 4 \
         hours old, answers `COMPLETE` at once when one exists.\n",
        FIXED_OPS.join(" + "),
        PER_CANDIDATE_OPS.join(" + "),
        if rounds == 1 { "" } else { "s" },
    );
    let _ = writeln!(
        out,
        "| users | GenerateCredentialReport, by run | ListUsers | fixed calls | bound | verdict | candidates + lookups (plan) | per-candidate calls | bound | verdict |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---|---:|---:|---:|---|");
    for s in bench.sizes {
        for &c in &report_configs {
            let runs = bench.of(s.size, c);
            if runs.is_empty() {
                continue;
            }
            let fixed = Stat::of(runs.iter().map(|r| calls_of(&r.calls, &FIXED_OPS) as f64));
            let per = Stat::of(
                runs.iter()
                    .map(|r| calls_of(&r.calls, &PER_CANDIDATE_OPS) as f64),
            );
            let list_users = Stat::of(
                runs.iter()
                    .map(|r| calls_of(&r.calls, &["iam:ListUsers"]) as f64),
            );
            let fixed_bound = 3 + s.size.div_ceil(1_000);
            let (candidates, lookups) = (s.plan.candidates(), s.plan.live_lookups());
            let per_bound = 3 * candidates + lookups;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} + {} | {} | {} | {} |",
                count(s.size as f64),
                runs.iter()
                    .map(|r| calls_of(&r.calls, &FIXED_OPS[..1]).to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                list_users.count(),
                fixed.count(),
                count(fixed_bound as f64),
                verdict(fixed.max <= fixed_bound as f64),
                count(candidates as f64),
                count(lookups as f64),
                per.count(),
                count(per_bound as f64),
                verdict(per.max <= per_bound as f64),
            );
        }
    }

    // Other targets.
    let _ = writeln!(out, "\n## Other targets\n");
    let wrong_findings: Vec<String> = bench
        .runs
        .iter()
        .filter_map(|r| {
            let plan = &bench.sizes.iter().find(|s| s.size == r.size)?.plan;
            (r.findings != plan.findings()).then(|| {
                format!(
                    "{} users, {}: {} findings, the plan has {}",
                    r.size,
                    CONFIGS[r.config].name(),
                    r.findings,
                    plan.findings()
                )
            })
        })
        .collect();
    let planned: Vec<String> = bench
        .sizes
        .iter()
        .map(|s| {
            format!(
                "{} at {} users",
                count(s.plan.findings() as f64),
                count(s.size as f64)
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "- Findings: every run reports exactly the plan's Active never-used keys of console users ({}): {}.",
        planned.join(", "),
        if wrong_findings.is_empty() {
            "yes".to_string()
        } else {
            format!("**MISMATCH**: {}", wrong_findings.join("; "))
        }
    );
    mismatches.extend(wrong_findings);
    // Timing and memory targets hold for the highest median (one configuration at one size), not one noisy run.
    let highest = |f: fn(&Run) -> f64| {
        bench
            .sizes
            .iter()
            .flat_map(|s| {
                bench
                    .configs_at(s.size)
                    .into_iter()
                    .map(move |c| (s.size, c))
            })
            .filter_map(|(size, c)| Some((size, c, bench.stat(size, c, f)?)))
            .max_by(|a, b| a.2.median.total_cmp(&b.2.median))
    };
    if let Some((size, c, rss)) = highest(|r| r.peak_rss_kib as f64 / 1024.0) {
        let _ = writeln!(
            out,
            "- Peak RSS, highest median: {} ({} users, {}); target < 32 MiB: {}.",
            rss.show(one_decimal, " MiB"),
            count(size as f64),
            CONFIGS[c].name(),
            verdict(rss.median < 32.0)
        );
    }
    if let Some((size, c, init)) = highest(|r| r.init.as_secs_f64() * 1000.0) {
        let _ = writeln!(
            out,
            "- Release init to first Runtime API poll, highest median: {} ({} users, {}); target < 30 ms: {}.",
            init.show(one_decimal, " ms"),
            count(size as f64),
            CONFIGS[c].name(),
            verdict(init.median < 30.0)
        );
    }
    let serial = CONFIGS
        .iter()
        .position(|c| c.source == "api" && c.concurrency == 1);
    let parallel = CONFIGS
        .iter()
        .position(|c| c.source == "api" && c.concurrency == 8);
    if let (Some(one), Some(eight)) = (serial, parallel) {
        let speedups: Vec<(usize, f64)> = bench
            .sizes
            .iter()
            .filter_map(|s| {
                let wall = |c| bench.stat(s.size, c, |r| r.wall.as_secs_f64());
                let (one, eight) = (wall(one)?, wall(eight)?);
                Some((s.size, one.median / eight.median.max(f64::EPSILON)))
            })
            .collect();
        if let Some(&(largest, speedup)) = speedups.last() {
            let each: Vec<String> = speedups
                .iter()
                .map(|(size, x)| format!("{x:.1}x at {} users", count(*size as f64)))
                .collect();
            let _ = writeln!(
                out,
                "- `api` source, concurrency 8 against 1 (median wall times): {}. Target at least 4x at the largest size \
                 both ran ({} users): {}.",
                each.join(", "),
                count(largest as f64),
                verdict(speedup >= 4.0)
            );
        } else {
            let _ = writeln!(
                out,
                "- `api` source, concurrency 8 against 1: not measured (no size ran both)."
            );
        }
    }

    // Calls by operation.
    let _ = writeln!(out, "\n## AWS calls by operation\n");
    let _ = writeln!(
        out,
        "As keywatch counts them (one per operation, however many attempts); retries are the requests the proxy saw \
         beyond these.\n"
    );
    for s in bench.sizes {
        for c in bench.configs_at(s.size) {
            let runs = bench.of(s.size, c);
            let mut ops: Vec<&String> = runs.iter().flat_map(|r| r.calls.keys()).collect();
            ops.sort();
            ops.dedup();
            let ops: Vec<String> = ops
                .into_iter()
                .map(|op| {
                    let stat = Stat::of(
                        runs.iter()
                            .map(|r| r.calls.get(op).copied().unwrap_or(0) as f64),
                    );
                    format!("{op} {}", stat.count())
                })
                .collect();
            let retries = Stat::of(runs.iter().map(|r| {
                r.requests
                    .saturating_sub(r.calls.values().sum::<u64>() as usize) as f64
            }));
            let _ = writeln!(
                out,
                "- {} users, {}: {}; retries {}",
                count(s.size as f64),
                CONFIGS[c].name(),
                ops.join(", "),
                retries.count()
            );
        }
    }
    render_ledger(&mut out, bench, &mut mismatches);
    if let Some(org) = bench.org {
        render_org(&mut out, org, bench.latency, &mut mismatches);
    }
    (out, mismatches)
}

/// The ledger's runs: the real binary with `LEDGER_TABLE` and `ALERTS=changes` (not dry runs: they publish and
/// write), on the largest seeded account, through the same proxy and latency. The first run creates an item per
/// finding; the second finds nothing changed, so it publishes nothing and writes nothing.
async fn bench_ledger(
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
            "  ledger, {label}: {} findings, {} parts published, {} Query, {} BatchWriteItem",
            run.findings,
            run.notifications,
            calls_of(&run.calls, &["dynamodb:Query"]),
            calls_of(&run.calls, &["dynamodb:BatchWriteItem"]),
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

const ROUTING_ON: &str = "dry run, routing by owner on";
const ROUTING_OFF: &str = "dry run, routing by owner off";

fn render_ledger(out: &mut String, bench: &Bench, mismatches: &mut Vec<String>) {
    let (routing, runs): (Vec<_>, Vec<_>) = bench
        .ledger
        .iter()
        .partition(|(label, _)| [ROUTING_ON, ROUTING_OFF].contains(label));
    let Some((_, first)) = runs.first() else {
        return;
    };
    let _ = writeln!(
        out,
        "\n## The ledger at {} users\n\nThe release binary with `LEDGER_TABLE` and `ALERTS=changes` \
         (`{}`), publishing and writing, twice on the largest account: a first run, and a second run with nothing \
         changed. The bound is what the ledger may add to a run: ⌈findings / 25⌉ + ⌈findings / 100⌉ + 2 calls.\n",
        count(first.size as f64),
        CONFIGS[first.config].name(),
    );
    let _ = writeln!(
        out,
        "| Run | Findings | Alert parts published | `dynamodb:Query` | `dynamodb:BatchWriteItem` | Ledger calls | Bound | IAM calls | Verdict |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (label, run) in &runs {
        let query = calls_of(&run.calls, &["dynamodb:Query"]);
        let writes = calls_of(&run.calls, &["dynamodb:BatchWriteItem"]);
        let f = run.findings as u64;
        let bound = f.div_ceil(25) + f.div_ceil(100) + 2;
        // Every run reads the ledger: a count that is missing is a failure, never a zero that passes.
        let ok = query >= 1 && query + writes <= bound;
        if !ok {
            mismatches.push(format!(
                "ledger, {label}: {query} Query and {writes} BatchWriteItem calls; at least 1 Query and at most \
                 {bound} calls in all"
            ));
        }
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {query} | {writes} | {} | {bound} | {} | {} |",
            run.findings,
            run.notifications,
            query + writes,
            iam_calls(&run.calls),
            verdict(ok)
        );
    }
    if let [(_, first), (_, second)] = runs[..] {
        let quiet = second.notifications == 0
            && calls_of(&second.calls, &["dynamodb:BatchWriteItem"]) == 0
            && first.notifications > 0;
        if !quiet {
            mismatches.push(
                "ledger: the first run must publish and the unchanged second run must neither publish nor write"
                    .to_string(),
            );
        }
        let _ = writeln!(
            out,
            "\nThe unchanged second run published nothing and wrote nothing: {}.",
            verdict(quiet)
        );
    }
    // Routing by owner reads the owner from the tags the exemption already reads: no IAM call of its own.
    if let [(_, on), (_, off)] = routing[..] {
        let iam = |run: &Run| -> BTreeMap<String, u64> {
            run.calls
                .iter()
                .filter(|(op, _)| op.starts_with("iam:"))
                .map(|(op, n)| (op.clone(), *n))
                .collect()
        };
        let same = iam(on) == iam(off) && !iam(on).is_empty();
        if !same {
            mismatches.push(format!(
                "routing by owner changed the IAM calls: {:?} with it, {:?} without",
                iam(on),
                iam(off)
            ));
        }
        let _ = writeln!(
            out,
            "\nRouting by owner (`OWNER_TAG_KEY`) adds no IAM call: two dry runs back to back on this account \
             ({}), {} IAM calls with routing on and {} with it off, the same by operation: {}.",
            CONFIGS[on.config].name(),
            iam_calls(&on.calls),
            iam_calls(&off.calls),
            verdict(same)
        );
    }
}

/// Pollers of the pump in the measured drains, each with a worker process of its own.
const ORG_CONCURRENCY: [usize; 2] = [1, 4];
/// The function's own account: moto's default, and the organization's management account.
const MANAGEMENT: &str = "123456789012";
/// Longer than any account's check, so a message never comes back while it is being checked.
const WORK_VISIBILITY_S: u32 = 120;

/// The emulated organization, seeded.
struct Org {
    own: Account,
    /// Every ACTIVE account, sorted: what each dispatch must list.
    accounts: Vec<String>,
    plans: BTreeMap<String, Plan>,
    users: usize,
    topic: String,
    work: WorkQueue,
    seeding: Duration,
}

/// An organization of `accounts` accounts (the management account and members from `create_account`), each
/// seeded with `users` users of a plan of its own; members through their `OrganizationAccountAccessRole`.
async fn organization(moto: &Moto, accounts: usize, users: usize) -> Org {
    let started = Instant::now();
    let own = moto.account().await;
    let organizations = aws_sdk_organizations::Client::new(&own.config);
    organizations
        .create_organization()
        .feature_set(OrganizationFeatureSet::All)
        .send()
        .await
        .expect("create organization");
    let mut members = Vec::new();
    for i in 1..accounts {
        let id = organizations
            .create_account()
            .account_name(format!("member-{i:03}"))
            .email(format!("member-{i:03}@example.com"))
            .send()
            .await
            .expect("create account")
            .create_account_status
            .and_then(|status| status.account_id)
            .expect("account id");
        members.push((id.clone(), support::member_account(moto, &id).await));
    }
    let mut plans = BTreeMap::new();
    plans.insert(MANAGEMENT.to_string(), Plan::for_account(users, 0));
    for (i, (id, _)) in members.iter().enumerate() {
        plans.insert(id.clone(), Plan::for_account(users, i + 1));
    }
    {
        let seeded: Vec<(&Account, &Plan)> = std::iter::once((&own, &plans[MANAGEMENT]))
            .chain(members.iter().map(|(id, account)| (account, &plans[id])))
            .collect();
        seed(&seeded).await;
    }
    let topic = own
        .sns
        .create_topic()
        .name("keywatch-findings")
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("topic arn");
    // One receive: a failed check goes to the DLQ at its next receive, and fails the bench.
    let work = WorkQueue::create(&own.sqs, "keywatch-work", WORK_VISIBILITY_S, 1).await;
    Org {
        own,
        accounts: plans.keys().cloned().collect(),
        plans,
        users,
        topic,
        work,
        seeding: started.elapsed(),
    }
}

/// One event for an [`Instance`], and where its answer goes.
struct Job {
    payload: String,
    answer: oneshot::Sender<Answer>,
}

/// What the function answered: status 200 for a response, 500 for a function error, as the pump reads them.
struct Answer {
    status: u16,
    body: String,
    /// From the event handed over at `next` to the answer: the invocation's duration, init excluded.
    took: Duration,
}

/// An instance's Runtime API: the events waiting, and the invocations in flight.
struct Runtime {
    jobs: tokio::sync::Mutex<mpsc::UnboundedReceiver<Job>>,
    in_flight: Mutex<BTreeMap<String, (oneshot::Sender<Answer>, Instant)>>,
    polled: AtomicBool,
}

static INVOCATIONS: AtomicUsize = AtomicUsize::new(1);

/// One Lambda instance: the release binary under a Runtime API of its own, handed one event at a time. Its
/// stdout (JSON logs and EMF lines) goes to a log file.
struct Instance {
    child: Mutex<std::process::Child>,
    pid: u32,
    log: PathBuf,
    jobs: mpsc::UnboundedSender<Job>,
    server: tokio::task::JoinHandle<()>,
}

impl Instance {
    /// Starts the binary and waits for its first poll, so init is not in any measurement.
    async fn start(binary: &Path, endpoint: &str, vars: &[(&str, String)], name: &str) -> Instance {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind runtime api");
        let port = listener.local_addr().expect("runtime address").port();
        let (jobs, waiting) = mpsc::unbounded_channel();
        let runtime = Arc::new(Runtime {
            jobs: tokio::sync::Mutex::new(waiting),
            in_flight: Mutex::new(BTreeMap::new()),
            polled: AtomicBool::new(false),
        });
        let server = tokio::spawn(serve_instance(listener, runtime.clone()));
        let (file, log) = support::log_file(name);
        let child = Command::new(binary)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .env("AWS_LAMBDA_FUNCTION_NAME", "keywatch")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .spawn()
            .expect("start keywatch");
        let instance = Instance {
            pid: child.id(),
            child: Mutex::new(child),
            log,
            jobs,
            server,
        };
        let started = Instant::now();
        while !runtime.polled.load(Ordering::SeqCst) {
            instance.assert_running();
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "keywatch did not poll its Runtime API within 30 s; see {}",
                instance.log.display()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        instance
    }

    fn assert_running(&self) {
        if let Ok(Some(status)) = self.child.lock().expect("child").try_wait() {
            panic!(
                "keywatch exited with {status}; its log: {}",
                self.log.display()
            );
        }
    }

    /// One invocation, waited for; a process that dies meanwhile fails the bench at once.
    async fn invoke(&self, payload: String) -> Answer {
        let (answer, mut answered) = oneshot::channel();
        self.jobs
            .send(Job { payload, answer })
            .expect("the Runtime API is serving");
        loop {
            tokio::select! {
                answer = &mut answered => return answer.expect("an answer for every event"),
                _ = tokio::time::sleep(Duration::from_millis(200)) => self.assert_running(),
            }
        }
    }

    /// Kills the process; returns its peak RSS (read while it was alive) and its log file.
    fn stop(self) -> (u64, PathBuf) {
        let peak = peak_rss_kib(self.pid);
        let mut child = self.child.into_inner().expect("child");
        let _ = child.kill();
        let _ = child.wait();
        self.server.abort();
        (peak, self.log)
    }
}

/// The Runtime API of one instance: `next` waits for an event, `response` and `error` answer it.
async fn serve_instance(listener: TcpListener, runtime: Arc<Runtime>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let runtime = runtime.clone();
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            while let Some((head, body)) = read_request(&mut stream, &mut buffer).await {
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let reply = if path.ends_with("/invocation/next") {
                    runtime.polled.store(true, Ordering::SeqCst);
                    let Some(job) = runtime.jobs.lock().await.recv().await else {
                        return;
                    };
                    // Unique across instances, as Lambda's request IDs are: a dispatch's run ID is its request ID.
                    let n = INVOCATIONS.fetch_add(1, Ordering::SeqCst);
                    let id = format!("bench-{n}");
                    runtime
                        .in_flight
                        .lock()
                        .expect("in flight")
                        .insert(id.clone(), (job.answer, Instant::now()));
                    let deadline = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() + 900_000)
                        .unwrap_or(0);
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: {id}\r\n\
                         Lambda-Runtime-Deadline-Ms: {deadline}\r\n\
                         Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:{MANAGEMENT}:function:keywatch\r\n\
                         Content-Length: {}\r\n\r\n{}",
                        job.payload.len(),
                        job.payload
                    )
                } else {
                    // `/runtime/invocation/{id}/response` or `/error`.
                    let mut parts = path.rsplit('/');
                    let status = match parts.next() {
                        Some("response") => 200,
                        _ => 500,
                    };
                    let id = parts.next().unwrap_or_default();
                    let waiting = runtime.in_flight.lock().expect("in flight").remove(id);
                    if let Some((answer, started)) = waiting {
                        let _ = answer.send(Answer {
                            status,
                            body,
                            took: started.elapsed(),
                        });
                    }
                    "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_string()
                };
                if stream.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Instances behind the pump's pollers: each invocation goes to an idle one. The pump never has more in
/// flight than it has pollers, and there are as many instances.
struct Fleet {
    instances: Vec<Instance>,
    idle: Mutex<Vec<usize>>,
}

impl Fleet {
    async fn start(
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

    async fn invoke(&self, payload: String) -> Answer {
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
struct Check {
    account_id: String,
    run_id: String,
    failed: bool,
    findings: Option<u64>,
    /// Every AWS call of the check (the EMF `ApiCalls`).
    api_calls: u64,
    duration_ms: u64,
    /// By operation, from the log line; empty when the check failed.
    calls: BTreeMap<String, u64>,
    candidates: Option<u64>,
}

fn checks_in(log: &str) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut complete = BTreeMap::new();
    for line in log.lines() {
        let Ok(line) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
        if line.get("_aws").is_some() {
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
struct Dispatch {
    status: u16,
    body: String,
    took: Duration,
    run_id: String,
    accounts: Vec<String>,
    /// The requests the proxy saw, by action.
    requests: BTreeMap<String, u64>,
}

/// A dispatch, then the pump working the queue off through `concurrency` worker processes.
struct Drain {
    concurrency: usize,
    dispatch: Dispatch,
    /// From the pump's start to the last answer (the pump's own quiet time after it is not included).
    wall: Duration,
    checks: Vec<Check>,
    /// The highest of the workers'.
    peak_rss_kib: u64,
    pumped: Pumped,
    /// The work queue after the drain: (visible, in flight, delayed).
    left: (u64, u64, u64),
    /// What the DLQ held after the drain (and no longer does).
    dead: Vec<String>,
    /// Requests the proxy saw from the workers, retries included.
    requests: usize,
}

impl Drain {
    fn checks_per_second(&self) -> f64 {
        self.checks.len() as f64 / self.wall.as_secs_f64().max(f64::EPSILON)
    }

    /// Requests beyond the calls the checks counted.
    fn retries(&self) -> f64 {
        let counted: u64 = self.checks.iter().map(|c| c.api_calls).sum();
        self.requests.saturating_sub(counted as usize) as f64
    }

    /// Everything that makes the drain not a clean run of every account, once, as the seed plans say.
    fn problems(&self, org: &Org) -> Vec<String> {
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
fn org_vars(org: &Org) -> Vec<(&'static str, String)> {
    vec![
        ("ACCOUNTS", "organization".to_string()),
        ("WORK_QUEUE_URL", org.work.url.clone()),
        ("FINDINGS_TOPIC_ARN", org.topic.clone()),
        ("MAX_RECEIVE_COUNT", "1".to_string()),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO".to_string()),
    ]
}

fn by_action(seen: &[support::proxy::Seen]) -> BTreeMap<String, u64> {
    let mut requests = BTreeMap::new();
    for request in seen {
        *requests.entry(request.action.clone()).or_insert(0) += 1;
    }
    requests
}

async fn drain(org: &Org, binary: &Path, proxy: &Proxy, concurrency: usize, name: &str) -> Drain {
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
struct OrgBench {
    org: Org,
    warmup: Drain,
    drains: Vec<Drain>,
    /// A drain went wrong, and the rest did not run.
    stopped_early: bool,
}

impl OrgBench {
    fn drains_at(&self, concurrency: usize) -> Vec<&Drain> {
        self.drains
            .iter()
            .filter(|d| d.concurrency == concurrency)
            .collect()
    }

    fn all_drains(&self) -> impl Iterator<Item = &Drain> {
        std::iter::once(&self.warmup).chain(&self.drains)
    }
}

async fn bench_organization(
    moto: &Moto,
    proxy: &Proxy,
    binary: &Path,
    accounts: usize,
    users: usize,
    rounds: usize,
) -> OrgBench {
    assert_eq!(
        http(moto.port, "POST", "/moto-api/reset", "").map(|r| r.0),
        Some(200)
    );
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

/// The single-account bounds of IAM calls for an account of `plan`: (fixed, per-candidate).
fn call_bounds(plan: &Plan) -> (usize, usize) {
    (
        3 + plan.users.len().div_ceil(1_000),
        3 * plan.candidates() + plan.live_lookups(),
    )
}

fn milliseconds(value: f64) -> String {
    format!("{value:.0}")
}

/// The organization's section of the document; whatever went wrong goes to `mismatches`.
fn render_org(out: &mut String, bench: &OrgBench, latency: Duration, mismatches: &mut Vec<String>) {
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
        verdict(within)
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

/// Line colour per configuration (by index in [`CONFIGS`]), and whether its markers are hollow: a hollow, larger
/// marker stays visible where another configuration's point lies on top of it.
const SERIES_STYLE: [(RGBColor, bool); 3] = [
    (RGBColor(31, 119, 180), false),
    (RGBColor(255, 127, 14), true),
    (RGBColor(44, 160, 44), false),
];

fn series_style(config: usize) -> (ShapeStyle, ShapeStyle, u32) {
    let (color, hollow) = SERIES_STYLE[config % SERIES_STYLE.len()];
    if hollow {
        (color.stroke_width(2), color.stroke_width(2), 7)
    } else {
        (color.stroke_width(2), color.filled(), 4)
    }
}

/// `mantissas` x 10^n for every n, between `low` and `high`: tick marks of a log axis.
fn log_ticks(low: f64, high: f64, mantissas: &[f64]) -> Vec<f64> {
    let (first, last) = (low.log10().floor() as i32, high.log10().ceil() as i32);
    (first..=last)
        .flat_map(|exponent| mantissas.iter().map(move |m| m * 10f64.powi(exponent)))
        .filter(|v| (low..=high).contains(v))
        .collect()
}

fn tick_label(value: &f64) -> String {
    if *value >= 1.0 {
        count(value.round())
    } else {
        format!("{value}")
    }
}

/// Wall time and IAM calls against users, one line per configuration: medians, with min–max error bars.
fn plot(bench: &Bench, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    type Metric = (&'static str, &'static str, fn(&Run) -> f64);
    let metrics: [Metric; 2] = [
        ("Wall time", "wall time (s, log scale)", |r| {
            r.wall.as_secs_f64()
        }),
        ("IAM calls", "IAM calls (log scale)", |r| {
            iam_calls(&r.calls) as f64
        }),
    ];
    let (width, height) = (1200u32, 560u32);
    let root = SVGBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "keywatch against account size: median of {} run{}, bars from minimum to maximum",
            bench.rounds,
            if bench.rounds == 1 { "" } else { "s" }
        ),
        ("sans-serif", 20),
    )?;
    let (charts, legend) = root.split_vertically(root.dim_in_pixel().1 - 40);
    let sizes: Vec<f64> = bench.sizes.iter().map(|s| s.size as f64).collect();
    let (x_min, x_max) = sizes
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let (x_low, x_high) = (x_min / 1.5, x_max * 1.5);
    let ran: Vec<usize> = (0..CONFIGS.len())
        .filter(|&c| bench.runs.iter().any(|r| r.config == c))
        .collect();
    for (panel, (caption, axis, metric)) in charts.split_evenly((1, 2)).iter().zip(metrics) {
        // (configuration, [(users, statistic)]) for the configurations that ran.
        let lines: Vec<(usize, Vec<(f64, Stat)>)> = ran
            .iter()
            .map(|&c| {
                let points = bench
                    .sizes
                    .iter()
                    .filter_map(|s| Some((s.size as f64, bench.stat(s.size, c, metric)?)))
                    .collect();
                (c, points)
            })
            .collect();
        let (y_min, y_max) = lines
            .iter()
            .flat_map(|(_, points)| points.iter().map(|(_, s)| s))
            .fold((f64::MAX, f64::MIN), |(lo, hi), s| {
                (lo.min(s.min), hi.max(s.max))
            });
        let (y_low, y_high) = (y_min.max(1e-3) / 1.5, y_max * 1.5);
        let everything = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let mut chart = ChartBuilder::on(panel)
            .margin(20)
            .caption(caption, ("sans-serif", 18))
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (x_low..x_high)
                    .log_scale()
                    .with_key_points(log_ticks(x_low, x_high, &[1.0, 2.0, 5.0]))
                    .with_light_points(log_ticks(x_low, x_high, &everything)),
                (y_low..y_high)
                    .log_scale()
                    .with_key_points(log_ticks(y_low, y_high, &[1.0, 2.0, 5.0]))
                    .with_light_points(log_ticks(y_low, y_high, &everything)),
            )?;
        chart
            .configure_mesh()
            .x_label_formatter(&tick_label)
            .y_label_formatter(&tick_label)
            .x_desc("IAM users in the account (log scale)")
            .y_desc(axis)
            .bold_line_style(BLACK.mix(0.25))
            .light_line_style(BLACK.mix(0.07))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw()?;
        for (c, points) in &lines {
            let (line, marker, radius) = series_style(*c);
            chart.draw_series(LineSeries::new(
                points.iter().map(|(x, s)| (*x, s.median)),
                line,
            ))?;
            chart.draw_series(
                points
                    .iter()
                    .map(|(x, s)| Circle::new((*x, s.median), radius, marker)),
            )?;
            chart.draw_series(points.iter().map(|(x, s)| {
                ErrorBar::new_vertical(*x, s.min, s.median, s.max, line.stroke_width(1), 12)
            }))?;
        }
    }
    // One legend for both panels, below them, so it never hides a point.
    let slot = i32::try_from(width)? / i32::try_from(ran.len().max(1))?;
    for (i, &c) in ran.iter().enumerate() {
        let (line, marker, radius) = series_style(c);
        let x = slot * i32::try_from(i)? + 60;
        legend.draw(&PathElement::new(vec![(x, 20), (x + 36, 20)], line))?;
        legend.draw(&Circle::new((x + 18, 20), radius, marker))?;
        legend.draw(&Text::new(
            format!(
                "{}, concurrency {}",
                CONFIGS[c].source, CONFIGS[c].concurrency
            ),
            (x + 46, 12),
            ("sans-serif", 15),
        ))?;
    }
    root.present()?;
    Ok(())
}
