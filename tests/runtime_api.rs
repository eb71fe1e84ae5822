//! The built binary under a real Lambda Runtime API (cargo-lambda's emulator) against moto: what Lambda does
//! with `events/*.json`, with bad events, and with a bad configuration at init. The other tests call the
//! handler in-process; this one covers the bootstrap, the runtime loop and the error responses.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{log_file, project_dir, Account, Moto, RuntimeApi};

/// The built `keywatch` binary, polling a [`RuntimeApi`] for events; killed when dropped, even on a panic.
struct Function {
    child: Child,
    log: PathBuf,
}

impl Function {
    /// Starts the binary with only the variables Lambda and keywatch read, so no AWS profile, token or
    /// endpoint from the developer's environment can reach it: every call goes to `endpoint`.
    fn start(api: &RuntimeApi, endpoint: &str, vars: &[(&str, &str)]) -> Function {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let (file, log) = log_file(&format!("keywatch-{}-{n}", api.port));
        let child = Command::new(env!("CARGO_BIN_EXE_keywatch"))
            .env_clear()
            .envs([
                ("AWS_LAMBDA_RUNTIME_API", api.runtime_api().as_str()),
                ("AWS_LAMBDA_FUNCTION_NAME", support::EMULATED_FUNCTION),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
                ("AWS_ENDPOINT_URL", endpoint),
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_REGION", "us-east-1"),
                // No shared config or credentials file, and no instance metadata: nothing but the above.
                ("AWS_CONFIG_FILE", "/dev/null"),
                ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ])
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .spawn()
            .expect("the keywatch binary starts");
        Function { child, log }
    }

    fn logs(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!("{}\n{text}", self.log.display())
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("keywatch exited ({status}); logs:\n{}", self.logs());
        }
    }

    fn wait_for_exit(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("process status") {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "keywatch still running after {within:?}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Invokes through the emulator and returns the report, failing with the function's logs otherwise.
    fn invoke_ok(&mut self, api: &RuntimeApi, event: &str, payload: &str) -> Value {
        let (status, body) = api.invoke(payload);
        // The emulator's deadline header is a constant 600000 (ten minutes as a duration), not the epoch
        // milliseconds Lambda sends; a runtime that trusts it believes the deadline passed in 1970.
        let hint = if body.contains("Keywatch.Deadline") {
            "\n(cargo-lambda sends `lambda-runtime-deadline-ms: 600000`, not an epoch time: the deadline \
             handling must not take it for a deadline in 1970)"
        } else {
            ""
        };
        assert_eq!(
            status,
            200,
            "{event} failed: {body}{hint}\nkeywatch logs:\n{}",
            self.logs()
        );
        self.assert_running();
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("report is not JSON ({e}): {body}"))
    }

    /// Invokes through the emulator, expects a Lambda error response, returns (errorType, errorMessage).
    fn invoke_err(&mut self, api: &RuntimeApi, payload: &str) -> (String, String) {
        let (status, body) = api.invoke(payload);
        assert_ne!(status, 200, "{payload} should fail, got {body}");
        let error: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("error response is not JSON ({e}): {body}"));
        let field = |name: &str| error[name].as_str().unwrap_or_default().to_string();
        self.assert_running();
        (field("errorType"), field("errorMessage"))
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The log is kept only for a failed test, whose message names it.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn event_file(name: &str) -> String {
    let path = project_dir().join("events").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn finding_keys(report: &Value) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = report["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings array in {report}"))
        .iter()
        .map(|f| {
            let field = |name: &str| f[name].as_str().unwrap_or_default().to_string();
            (field("user_name"), field("access_key_id"))
        })
        .collect();
    keys.sort();
    keys
}

/// One emulator and one process for the whole sequence, as a warm Lambda container serves them.
#[tokio::test]
async fn the_binary_serves_events_through_the_runtime_api() {
    let moto = Moto::start();
    let account: Account = moto.account().await;
    account.console_user("alice").await;
    let alice_key = account.key("alice").await.id;
    // No console password: never a finding.
    account.user("bob").await;
    account.key("bob").await;
    let (topic, queue) = account.topic_with_queue().await;

    let api = RuntimeApi::start();
    let mut function = Function::start(&api, &moto.endpoint, &[("FINDINGS_TOPIC_ARN", &topic)]);
    let expected = vec![("alice".to_string(), alice_key.clone())];

    // A schedule: the findings, and exactly one alert delivered to the subscribed queue.
    let report = function.invoke_ok(&api, "events/scheduled.json", &event_file("scheduled.json"));
    assert_eq!(finding_keys(&report), expected, "{report:#}");
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["notifications"].as_array().map(Vec::len), Some(1));
    let delivered = account.delivered(&queue).await;
    assert_eq!(delivered.len(), 1, "exactly one SNS message: {delivered:?}");
    let (subject, document) = &delivered[0];
    assert_eq!(
        subject,
        "keywatch: 1 never-used access key on a console user in 123456789012"
    );
    assert_eq!(document["findings"][0]["access_key_id"], alice_key.as_str());
    // The run ID is the Lambda request ID the emulator assigned: the alert ties back to the invocation.
    assert_eq!(document["run_id"], report["run_id"]);
    assert!(!report["run_id"].as_str().unwrap_or_default().is_empty());

    // Bad events: a clear Lambda error each time, and the same process serves the next event.
    let rejected = [
        (r#"{"dry_run": "yes"}"#, "field `dry_run`"),
        (r#"{"dryrun": true}"#, "unknown field `dryrun`"),
        ("[1, 2]", "expected a JSON object"),
    ];
    for (payload, needle) in rejected {
        let (error_type, message) = function.invoke_err(&api, payload);
        assert_eq!(error_type, "Keywatch.InvalidEvent", "{payload}: {message}");
        assert!(message.contains(needle), "{payload}: {message}");
        assert!(message.contains("dry_run"), "says what to send: {message}");
    }
    // Not JSON at all: lambda_runtime rejects it before the handler runs, with its own error type.
    let (error_type, message) = function.invoke_err(&api, "run it please");
    assert!(
        error_type.ends_with("DeserializeError"),
        "{error_type}: {message}"
    );
    assert!(
        message.contains("failed to deserialize the incoming data"),
        "{message}"
    );

    // A manual dry run after the errors: served, same findings, nothing published.
    let report = function.invoke_ok(&api, "events/manual.json", &event_file("manual.json"));
    assert_eq!(report["dry_run"], true);
    assert_eq!(finding_keys(&report), expected, "{report:#}");
    assert_eq!(report["notifications"], serde_json::json!([]));
    let delivered = account.delivered(&queue).await;
    assert!(
        delivered.is_empty(),
        "a dry run publishes nothing: {delivered:?}"
    );
}

#[test]
fn a_missing_or_invalid_topic_fails_the_init() {
    let api = RuntimeApi::start();
    // Nothing listens there: a run that got past init would fail differently, and never reach AWS.
    let endpoint = format!("http://127.0.0.1:{}", support::free_port());
    let cases: [&[(&str, &str)]; 3] = [
        &[],
        &[("FINDINGS_TOPIC_ARN", "not-an-arn")],
        &[(
            "FINDINGS_TOPIC_ARN",
            "arn:aws:sqs:us-east-1:123456789012:keywatch",
        )],
    ];
    for vars in cases {
        let mut function = Function::start(&api, &endpoint, vars);
        // A process that passed init would poll the emulator for events and never exit.
        let status = function.wait_for_exit(Duration::from_secs(20));
        let logs = function.logs();
        assert!(
            !status.success(),
            "{vars:?}: exited with {status}; logs:\n{logs}"
        );
        let named = logs
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .any(|line| {
                line["level"] == "ERROR" && line.to_string().contains("FINDINGS_TOPIC_ARN")
            });
        assert!(
            named,
            "{vars:?}: no ERROR log line names FINDINGS_TOPIC_ARN:\n{logs}"
        );
    }
}
