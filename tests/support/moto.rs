//! The emulator: a private moto server per test, started on port 0 (the port read from its own log), reset or
//! switched to IAM enforcement over its API, and killed on drop. [`Watchdog`] stops a test that outruns its time
//! limit, naming it. Use one [`Moto`] per test; tests that switch enforcement must not share one.

use crate::{http, log_file, venv_tool, Account, INSTALL_HINT};
use aws_config::{Region, SdkConfig};
use keywatch::aws::config_loader;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A moto server on a free loopback port, killed when dropped.
pub struct Moto {
    child: Child,
    log: PathBuf,
    pub endpoint: String,
    pub port: u16,
    _watchdog: Watchdog,
}

/// How long a test that starts moto may run, unless `TEST_TIME_LIMIT_SECS` says otherwise (0: no limit; `make
/// bench` runs unlimited). The longest test takes about four minutes on 2 cores.
const TEST_TIME_LIMIT: Duration = Duration::from_secs(900);

/// The processes this test binary runs (moto servers, Runtime API emulators, the binary), for the watchdog to
/// stop: exiting the test binary would leave them running.
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Hands a child process to the watchdog, to stop if a test outruns its limit.
pub fn watch_child(pid: u32) {
    if let Ok(mut pids) = CHILDREN.lock() {
        pids.push(pid);
    }
}

/// The child ended (or is about to be killed by its owner): the watchdog no longer stops it.
pub fn unwatch_child(pid: u32) {
    if let Ok(mut pids) = CHILDREN.lock() {
        pids.retain(|p| *p != pid);
    }
}

/// A per-test time limit: past it, the test binary exits naming the test, so a hung emulator fails CI by name
/// instead of stalling it. Dropped (the test finished), it stands down.
pub struct Watchdog {
    _done: Option<std::sync::mpsc::Sender<()>>,
}

impl Watchdog {
    pub fn start(what: &str) -> Watchdog {
        let limit = match std::env::var("TEST_TIME_LIMIT_SECS") {
            Ok(secs) => Duration::from_secs(secs.parse().unwrap_or_else(|_| {
                panic!("TEST_TIME_LIMIT_SECS={secs:?} is not a number of seconds")
            })),
            Err(_) => TEST_TIME_LIMIT,
        };
        if limit.is_zero() {
            return Watchdog { _done: None };
        }
        // libtest names each test's thread after the test.
        let test = std::thread::current()
            .name()
            .unwrap_or("a test (off its own thread)")
            .to_string();
        let what = what.to_string();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
                // Straight to stderr: the test harness captures eprintln!, and would drop it on exit.
                let _ = writeln!(
                    std::io::stderr(),
                    "TIME LIMIT: {test} ran past {limit:?} ({what}); exiting the test binary so CI fails here"
                );
                // The emulators and binaries of every test in this binary, which exiting would leave running.
                for pid in CHILDREN.lock().map(|p| p.clone()).unwrap_or_default() {
                    let _ = Command::new("kill").arg(pid.to_string()).status();
                }
                std::process::exit(101);
            }
        });
        Watchdog { _done: Some(done) }
    }
}

/// The port in moto's `Running on http://127.0.0.1:PORT` line.
fn bound_port(log: &str) -> Option<u16> {
    log.split("Running on http://127.0.0.1:")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// How long moto may take to answer its first request (it imports every service first).
const MOTO_START_LIMIT: Duration = Duration::from_secs(30);

impl Moto {
    /// Starts moto from the project's venv. Fails (never skips) when it is not installed, and fails fast,
    /// printing moto's own log, when the server exits or never answers.
    pub fn start() -> Moto {
        Moto::start_with_env(&[])
    }

    /// As [`Moto::start`], with variables in moto's environment (`REQUESTS_CA_BUNDLE`, for HTTPS delivery).
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let server = venv_tool("moto_server");
        let name = format!(
            "moto-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (log, log_path) = log_file(&name);
        // Port 0: moto binds a port the kernel picks and logs it, so no other server can take it in between,
        // and the server that answers is this one.
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .envs(env.iter().copied())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL_HINT}", server.display()));
        let mut moto = Moto {
            child,
            log: log_path,
            endpoint: String::new(),
            port: 0,
            _watchdog: Watchdog::start(&name),
        };
        watch_child(moto.child.id());
        let started = Instant::now();
        moto.wait_until(started, "saying which port it bound", |moto| {
            bound_port(&moto.log_text()).is_some()
        });
        let port = bound_port(&moto.log_text()).expect("the port moto logged");
        moto.wait_until(started, &format!("answer on port {port}"), |_| {
            http(port, "GET", "/moto-api/", "", Duration::from_secs(10)).map(|(status, _)| status)
                == Some(200)
        });
        moto.port = port;
        moto.endpoint = format!("http://127.0.0.1:{port}");
        moto
    }

    /// Waits for `ready`, failing fast with moto's log if it exits or takes longer than [`MOTO_START_LIMIT`].
    fn wait_until(&mut self, started: Instant, what: &str, ready: impl Fn(&Moto) -> bool) {
        while !ready(self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "moto_server exited with {status} before {what}; its log:\n{}",
                    self.log_text()
                );
            }
            if started.elapsed() > MOTO_START_LIMIT {
                panic!(
                    "moto_server did not {what} within {MOTO_START_LIMIT:?}; its log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log.display()))
    }

    /// What SNS accepted on `topic_arn`, read from moto's model dump: (subject, the `email` text an email
    /// subscriber receives). moto delivers nothing by email, so this is the delivered message itself.
    pub fn published_emails(&self, topic_arn: &str) -> Vec<(String, String)> {
        self.published(topic_arn)
            .into_iter()
            .map(|(subject, envelope)| {
                let email = envelope["email"].as_str().expect("an email variant");
                (subject, email.to_string())
            })
            .collect()
    }

    /// The `https` variant of every publish on `topic_arn`, parsed: what AWS's chat integration receives.
    /// Fails if a publish has none.
    pub fn published_chat(&self, topic_arn: &str) -> Vec<Value> {
        self.published(topic_arn)
            .into_iter()
            .map(|(subject, envelope)| {
                let https = envelope["https"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{subject:?} has no https variant: {envelope}"));
                serde_json::from_str(https).expect("the https variant is JSON")
            })
            .collect()
    }

    /// Every publish SNS accepted on `topic_arn`, from moto's model dump: (subject, the `MessageStructure=json`
    /// envelope with one variant per protocol).
    pub fn published(&self, topic_arn: &str) -> Vec<(String, Value)> {
        let (status, body) = http(
            self.port,
            "GET",
            "/moto-api/data.json",
            "",
            Duration::from_secs(30),
        )
        .expect("moto answers /moto-api/data.json");
        assert_eq!(status, 200, "{body}");
        let data: Value = serde_json::from_str(&body).expect("data.json is JSON");
        let topics = data["sns"]["Topic"].as_array().cloned().unwrap_or_default();
        let topic = topics
            .iter()
            .find(|t| t["arn"] == topic_arn)
            .unwrap_or_else(|| panic!("moto has no topic {topic_arn}"));
        topic["sent_notifications"]
            .as_array()
            .expect("sent_notifications")
            .iter()
            .map(|sent| {
                // (message_id, message, subject, attributes, group_id)
                let envelope: Value = serde_json::from_str(sent[1].as_str().expect("message"))
                    .expect("a MessageStructure=json envelope");
                (sent[2].as_str().unwrap_or("").to_string(), envelope)
            })
            .collect()
    }

    /// Empties every service's state: the next test or seed starts from nothing.
    pub fn reset(&self) {
        reset(self.port);
    }

    /// Turns IAM authorization on (`0`: from the next request) or off (`inf`).
    pub fn set_auth(&self, enforced: bool) {
        let body = if enforced { "0" } else { "inf" };
        let (status, _) = http(
            self.port,
            "POST",
            "/moto-api/reset-auth",
            body,
            Duration::from_secs(10),
        )
        .expect("moto answers reset-auth");
        assert_eq!(status, 200);
    }

    /// SDK config for this server with moto's default credentials: never real AWS.
    pub async fn sdk_config(&self) -> SdkConfig {
        self.sdk_config_with("testing", "testing", None).await
    }

    pub async fn sdk_config_with(
        &self,
        key: &str,
        secret: &str,
        token: Option<String>,
    ) -> SdkConfig {
        config_loader(3)
            .endpoint_url(&self.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_iam::config::Credentials::new(
                key, secret, token, None, "test",
            ))
            .load()
            .await
    }

    pub async fn account(&self) -> Account {
        let config = self.sdk_config().await;
        Account {
            iam: aws_sdk_iam::Client::new(&config),
            sns: aws_sdk_sns::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            config,
            moto_endpoint: self.endpoint.clone(),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        stop_child(&mut self.child, &self.log);
    }
}

/// Stops a child process of a test, the watchdog's hold on it included. Its log is kept only for a failed test,
/// whose message names it.
pub(crate) fn stop_child(child: &mut Child, log: &std::path::Path) {
    unwatch_child(child.id());
    let _ = child.kill();
    let _ = child.wait();
    if !std::thread::panicking() {
        let _ = std::fs::remove_file(log);
    }
}

/// [`Moto::reset`] of the server on `port`, for a caller that runs it off the async runtime's thread. A blocking
/// call: a large state takes moto seconds to drop.
pub fn reset(port: u16) {
    let answer = http(port, "POST", "/moto-api/reset", "", Duration::from_secs(60));
    assert_eq!(
        answer.as_ref().map(|(status, _)| *status),
        Some(200),
        "moto on port {port} did not reset: {answer:?}"
    );
}
