//! The test-support library that every test binary and the benchmark link: one place for each way of building
//! a scenario, so a new test reuses it instead of copying it. Its modules, and when to use each:
//! - [`moto`]: the emulator, a private moto server per test;
//! - [`account`]: seeded accounts and organizations, and the readers of what keywatch left in them;
//! - [`proxy`]: the fault-injecting proxy between keywatch and moto, and AWS limits moto does not enforce;
//! - [`seeded`]: the one deterministic generator, and the one way to plan a random account;
//! - [`runtime`]: the Runtime API and the built binary under it;
//! - [`pump`]: Lambda's SQS poller for the work queue, and the one queue drain;
//! - [`ledger`]: the ledger's DynamoDB table, read directly;
//! - [`deploy`]: the templates deployed on moto;
//! - [`https_sink`]: an HTTPS endpoint SNS delivers to, and the JSON Schema check of what it received.
//!
//! Here: the paths and tools every module needs, [`run`], the handler in process on a moto account, and
//! [`emf_directives`], the reader of keywatch's metric lines.

use keywatch::aws::Clients;
use keywatch::config::Settings;
use keywatch::deadline::Deadline;
use keywatch::event::Invocation;
use keywatch::handler::Keywatch;
use keywatch::report::Report;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

pub mod account;
pub mod deploy;
pub mod eventbridge;
pub mod https_sink;
pub mod ledger;
pub mod moto;
pub mod proxy;
pub mod pump;
pub mod runtime;
pub mod seeded;

pub use account::{
    create_member, create_organization, hub_findings, member_account, Account, Key, RandomAccount,
};
pub use deploy::{deploy_member_role, deploy_template};
pub use moto::{Moto, Watchdog};
pub use runtime::{shipped_binary, Function, RuntimeApi, EMULATED_FUNCTION};

pub const INSTALL_HINT: &str =
    "run `make tools` (installs moto and the other emulators into .venv)";

/// The keywatch checkout: this crate lives in its `tests/support`.
pub fn project_dir() -> PathBuf {
    let support = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    support
        .ancestors()
        .nth(2)
        .expect("tests/support is two levels down")
        .to_path_buf()
}

/// A tool from the project's venv. Fails (never skips) when it is not installed, naming the command that installs it.
pub fn venv_tool(name: &str) -> PathBuf {
    let tool = project_dir().join(".venv/bin").join(name);
    assert!(
        tool.exists(),
        "{name} is not installed at {}: {INSTALL_HINT}",
        tool.display()
    );
    tool
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Settings as the Lambda would read them, from a list of variables.
pub fn settings(vars: &[(&str, &str)]) -> Settings {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .expect("valid settings")
}

/// Runs the whole pipeline in-process against moto.
pub async fn run(
    moto: &Moto,
    settings: Settings,
    invocation: Invocation,
) -> keywatch::Result<Report> {
    let clients = Clients::from_config(&moto.sdk_config().await);
    let keywatch = Keywatch::new(settings, clients);
    keywatch
        .run(
            &invocation,
            "test-run",
            &Deadline::after(Duration::from_secs(60)),
        )
        .await
}
/// An EMF line's directives: each one's dimension sets and metric names, all in the keywatch namespace. For the
/// lines the binary prints and those `keywatch::metrics` builds in a unit test alike.
pub fn emf_directives(line: &serde_json::Value) -> Vec<(serde_json::Value, Vec<&str>)> {
    line["_aws"]["CloudWatchMetrics"]
        .as_array()
        .unwrap_or_else(|| panic!("no directives in {line}"))
        .iter()
        .map(|d| {
            assert_eq!(d["Namespace"], "keywatch", "{line}");
            let names = d["Metrics"]
                .as_array()
                .unwrap_or_else(|| panic!("no metrics in {line}"))
                .iter()
                .map(|m| m["Name"].as_str().unwrap_or_default())
                .collect();
            (d["Dimensions"].clone(), names)
        })
        .collect()
}

/// A fresh log file under `target/tmp` (where cargo puts the tests' scratch files), for a child process's output.
pub fn log_file(name: &str) -> (std::fs::File, PathBuf) {
    let dir = project_dir().join("target/tmp");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let path = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    (file, path)
}

/// The one HTTP/1.1 client of the suite, enough for moto's control API and the Runtime API emulator: `None` when
/// nothing answers within `timeout`. A body that starts like JSON is sent as `application/json`, any other as
/// `text/plain` (moto's `reset-auth` takes only that). A chunked answer is decoded.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    let content_type = if body.starts_with(['{', '[']) {
        "application/json"
    } else {
        "text/plain"
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8(response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|line| {
        line.to_ascii_lowercase()
            .replace(' ', "")
            .starts_with("transfer-encoding:chunked")
    });
    let body = if chunked {
        decode_chunked(body)?
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn decode_chunked(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}
