//! Test support: a private moto server per test, and an account seeded through the real AWS SDK.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_iam::types::{StatusType, Tag};
use keywatch::aws::{config_loader, http_client, Clients};
use keywatch::config::Settings;
use keywatch::deadline::Deadline;
use keywatch::event::Invocation;
use keywatch::handler::Keywatch;
use keywatch::report::Report;
use serde_json::Value;

pub const INSTALL_HINT: &str =
    "run `make tools` (installs moto and the other emulators into .venv)";

pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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

/// The moto servers this test binary runs, for the watchdog to stop.
static MOTO_PIDS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

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
                // The emulators of every test in this binary, which exiting would leave running.
                for pid in MOTO_PIDS.lock().map(|p| p.clone()).unwrap_or_default() {
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
        if let Ok(mut pids) = MOTO_PIDS.lock() {
            pids.push(moto.child.id());
        }
        let started = Instant::now();
        moto.wait_until(started, "saying which port it bound", |moto| {
            bound_port(&moto.log_text()).is_some()
        });
        let port = bound_port(&moto.log_text()).expect("the port moto logged");
        moto.wait_until(started, &format!("answer on port {port}"), |_| {
            http(port, "GET", "/moto-api/", "").map(|(status, _)| status) == Some(200)
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
        let (status, body) = http_with_timeout(
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
                (
                    sent[2].as_str().unwrap_or("").to_string(),
                    envelope["email"]
                        .as_str()
                        .expect("an email variant")
                        .to_string(),
                )
            })
            .collect()
    }

    /// Turns IAM authorization on (`0`: from the next request) or off (`inf`).
    pub fn set_auth(&self, enforced: bool) {
        let body = if enforced { "0" } else { "inf" };
        let (status, _) =
            http(self.port, "POST", "/moto-api/reset-auth", body).expect("moto answers reset-auth");
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
        if let Ok(mut pids) = MOTO_PIDS.lock() {
            pids.retain(|pid| *pid != self.child.id());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The log is kept only for a failed test.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A minimal HTTP/1.1 request, enough for moto's control API.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// The emulated account, seeded through the SDK as a user's automation would.
pub struct Account {
    pub iam: aws_sdk_iam::Client,
    pub sns: aws_sdk_sns::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// This account's credentials and endpoint, for any other client.
    pub config: SdkConfig,
    moto_endpoint: String,
}

pub struct Key {
    pub id: String,
    pub secret: String,
}

impl Account {
    pub async fn user(&self, name: &str) {
        self.user_at(name, "/", &[]).await
    }

    pub async fn user_at(&self, name: &str, path: &str, tags: &[(&str, &str)]) {
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| {
                Tag::builder()
                    .key(*k)
                    .value(*v)
                    .build()
                    .expect("key and value set")
            })
            .collect();
        self.iam
            .create_user()
            .user_name(name)
            .path(path)
            .set_tags(Some(tags))
            .send()
            .await
            .expect("create user");
    }

    pub async fn password(&self, name: &str) {
        self.iam
            .create_login_profile()
            .user_name(name)
            .password("Corr3ct-Horse!")
            .send()
            .await
            .expect("login profile");
    }

    pub async fn console_user(&self, name: &str) {
        self.user(name).await;
        self.password(name).await;
    }

    pub async fn key(&self, name: &str) -> Key {
        let key = self
            .iam
            .create_access_key()
            .user_name(name)
            .send()
            .await
            .expect("create key")
            .access_key
            .expect("key");
        Key {
            id: key.access_key_id,
            secret: key.secret_access_key,
        }
    }

    /// Signs one request with the key, which is how IAM (and moto) record a use.
    pub async fn use_key(&self, key: &Key) {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client())
            .endpoint_url(&self.moto_endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_iam::config::Credentials::new(
                &key.id,
                &key.secret,
                None,
                None,
                "test",
            ))
            .load()
            .await;
        aws_sdk_sts::Client::new(&config)
            .get_caller_identity()
            .send()
            .await
            .expect("signed request with the key");
    }

    pub async fn deactivate(&self, name: &str, key: &Key) {
        self.iam
            .update_access_key()
            .user_name(name)
            .access_key_id(&key.id)
            .status(StatusType::Inactive)
            .send()
            .await
            .expect("deactivate key");
    }

    /// Every key of the account and its status (`Active`, `Inactive`), read directly.
    pub async fn key_statuses(&self) -> std::collections::BTreeMap<String, String> {
        let mut statuses = std::collections::BTreeMap::new();
        for user in self
            .iam
            .list_users()
            .send()
            .await
            .expect("list users")
            .users
        {
            let keys = self
                .iam
                .list_access_keys()
                .user_name(&user.user_name)
                .send()
                .await
                .expect("list keys")
                .access_key_metadata;
            for key in keys {
                let status = key
                    .status
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                statuses.insert(key.access_key_id.expect("a key ID"), status);
            }
        }
        statuses
    }

    /// A new SQS queue: its URL.
    pub async fn queue(&self, name: &str) -> String {
        self.sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("queue")
            .queue_url
            .expect("url")
    }

    /// A findings topic with an SQS queue subscribed, as an automation subscriber would have.
    pub async fn topic_with_queue(&self) -> (String, String) {
        let topic = self
            .sns
            .create_topic()
            .name("keywatch-findings")
            .send()
            .await
            .expect("topic")
            .topic_arn
            .expect("arn");
        let queue = self.queue("keywatch-findings").await;
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes");
        let queue_arn = attributes.attributes.and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        });
        self.sns
            .subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(queue_arn.expect("queue arn"))
            .send()
            .await
            .expect("subscribe");
        (topic, queue)
    }

    /// Every SNS notification waiting in the queue, as (subject, parsed JSON document).
    pub async fn delivered(&self, queue: &str) -> Vec<(String, Value)> {
        self.delivered_with_attributes(queue)
            .await
            .into_iter()
            .map(|(subject, document, _)| (subject, document))
            .collect()
    }

    /// Every SNS notification waiting in the queue, as (subject, parsed JSON document, message attributes as
    /// `{name: value}`), deleting each.
    pub async fn delivered_with_attributes(&self, queue: &str) -> Vec<(String, Value, Value)> {
        let mut out = Vec::new();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive");
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return out;
            }
            for message in messages {
                let envelope: Value = serde_json::from_str(message.body.as_deref().unwrap_or(""))
                    .expect("SNS envelope is JSON");
                let document = serde_json::from_str(envelope["Message"].as_str().expect("Message"))
                    .expect("document is JSON");
                let attributes: serde_json::Map<String, Value> = envelope["MessageAttributes"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, value)| (name.clone(), value["Value"].clone()))
                    .collect();
                out.push((
                    envelope["Subject"].as_str().unwrap_or("").to_string(),
                    document,
                    Value::Object(attributes),
                ));
                self.sqs
                    .delete_message()
                    .queue_url(queue)
                    .set_receipt_handle(message.receipt_handle)
                    .send()
                    .await
                    .expect("delete");
            }
        }
    }

    /// A queue subscribed to `topic` with a filter policy on the `owner` message attribute, as a team would
    /// subscribe: its URL.
    pub async fn owner_queue(&self, topic: &str, name: &str, owner: &str) -> String {
        let queue = self.queue(name).await;
        let queue_arn = pump::queue_arn(&self.sqs, &queue).await;
        self.sns
            .subscribe()
            .topic_arn(topic)
            .protocol("sqs")
            .endpoint(queue_arn)
            .attributes(
                "FilterPolicy",
                serde_json::json!({ "owner": [owner] }).to_string(),
            )
            .send()
            .await
            .expect("subscribe with a filter policy");
        queue
    }
}

/// moto's default account (123456789012) as the management account of a new organization, all features on.
pub async fn create_organization(moto: &Moto) -> aws_sdk_organizations::Client {
    let organizations = aws_sdk_organizations::Client::new(&moto.sdk_config().await);
    organizations
        .create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .expect("create organization");
    organizations
}

/// A new member account of that organization: its ID (moto creates it at once).
pub async fn create_member(organizations: &aws_sdk_organizations::Client, name: &str) -> String {
    organizations
        .create_account()
        .account_name(name)
        .email(format!("{name}@example.com"))
        .send()
        .await
        .expect("create account")
        .create_account_status
        .and_then(|status| status.account_id)
        .expect("an account ID")
}

/// A member account of the emulated organization, seeded through `OrganizationAccountAccessRole`, as AWS
/// Organizations creates it in every new account.
pub async fn member_account(moto: &Moto, account_id: &str) -> Account {
    let sts = aws_sdk_sts::Client::new(&moto.sdk_config().await);
    let credentials = sts
        .assume_role()
        .role_arn(format!(
            "arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole"
        ))
        .role_session_name("seed")
        .send()
        .await
        .expect("assume OrganizationAccountAccessRole")
        .credentials
        .expect("credentials");
    let config = moto
        .sdk_config_with(
            &credentials.access_key_id,
            &credentials.secret_access_key,
            Some(credentials.session_token),
        )
        .await;
    Account {
        iam: aws_sdk_iam::Client::new(&config),
        sns: aws_sdk_sns::Client::new(&config),
        sqs: aws_sdk_sqs::Client::new(&config),
        config,
        moto_endpoint: moto.endpoint.clone(),
    }
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
pub mod ledger;
pub mod proxy;
pub mod pump;

/// The Lambda Runtime API emulator of cargo-lambda (`cargo lambda watch --only-lambda-apis`) on a free
/// loopback port, killed when dropped. It starts no function of its own: the test runs the built binary
/// against it, as Lambda runs the bootstrap.
pub struct RuntimeApi {
    child: Child,
    log: PathBuf,
    pub port: u16,
}

/// The function name the emulator serves when the runtime is started by hand.
pub const EMULATED_FUNCTION: &str = "_";

impl RuntimeApi {
    /// Starts the emulator from the project's venv. Fails (never skips) when it is not installed.
    pub fn start() -> RuntimeApi {
        let cargo_lambda = venv_tool("cargo-lambda");
        let port = free_port();
        let (log, log_path) = log_file(&format!("cargo-lambda-{port}"));
        let child = Command::new(&cargo_lambda)
            .args(["lambda", "watch", "--only-lambda-apis", "--invoke-address"])
            .args(["127.0.0.1", "--invoke-port", &port.to_string()])
            // It reads the manifest (`cargo metadata`) even when it builds nothing.
            .current_dir(project_dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; {INSTALL_HINT}",
                    cargo_lambda.display()
                )
            });
        let mut api = RuntimeApi {
            child,
            log: log_path,
            port,
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = api.child.try_wait() {
                panic!(
                    "cargo-lambda exited with {status} before listening on port {port}; see {}",
                    api.log.display()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the Runtime API emulator did not listen on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        api
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API` for a runtime served by this emulator.
    pub fn runtime_api(&self) -> String {
        format!("http://127.0.0.1:{}/.rt", self.port)
    }

    /// One synchronous invocation, as `aws lambda invoke` would send it: (HTTP status, response body).
    /// A function error comes back as status 500 with `{"errorType": ..., "errorMessage": ...}`.
    pub fn invoke(&self, payload: &str) -> (u16, String) {
        let path = format!("/2015-03-31/functions/{EMULATED_FUNCTION}/invocations");
        http_with_timeout(self.port, "POST", &path, payload, Duration::from_secs(60))
            .unwrap_or_else(|| {
                panic!(
                    "no answer from the Runtime API emulator on port {}",
                    self.port
                )
            })
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The log is kept only for a failed test.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A fresh log file under the test target's scratch folder, for a child process's output.
pub fn log_file(name: &str) -> (std::fs::File, PathBuf) {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.log"));
    let file = std::fs::File::create(&path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    (file, path)
}

/// Like [`http`], with a read timeout and chunked response bodies decoded.
pub fn http_with_timeout(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

/// Deploys template.yaml as a CloudFormation stack on this moto server with `tools/deploy_template.py`
/// (SAM transform, create the stack, check what it created), and returns the script's JSON summary. Panics
/// with the script's own messages if anything the template should create is missing or incomplete.
pub fn deploy_template(moto: &Moto, stack_name: &str, parameters: &[(&str, &str)]) -> Value {
    let python = venv_tool("python");
    let mut command = Command::new(&python);
    command
        .arg(project_dir().join("tools/deploy_template.py"))
        .args(["--endpoint", &moto.endpoint, "--stack-name", stack_name]);
    for (key, value) in parameters {
        command.args(["--parameter", &format!("{key}={value}")]);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL_HINT}", python.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tools/deploy_template.py failed ({}) for stack {stack_name}:\n{stderr}\n\
         (exit status 2 means a missing tool: {INSTALL_HINT})",
        output.status
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("deploy_template.py printed no JSON summary ({e}):\n{stderr}"))
}
