//! Log hygiene: a real run against moto, logged as the Lambda logs (JSON lines), must name every finding and
//! must never write a credential or the credential report. CloudWatch Logs are read by more people than IAM.

use keywatch_test_support as support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keywatch::aws::Clients;
use keywatch::deadline::Deadline;
use keywatch::event::Invocation;
use keywatch::handler::Keywatch;
use serde_json::Value;
use support::{settings, Moto};
use tracing::Level;

/// What the function itself runs with: the access key of its role session, as Lambda provides it.
const RUN_KEY_ID: &str = "ASIAKEYWATCHTESTRUN0";
const RUN_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKY";
const RUN_TOKEN: &str =
    "IQoJb3JpZ2luX2VjEKEYWATCH//////////wEaCXVzLWVhc3QtMSJHMEUCIQDtest+session+token==";

/// Everything the subscriber writes, shared between the writer and the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("log buffer").clone()).expect("logs are UTF-8")
    }
}

/// Runs of base64 characters exactly 40 long with both letter cases and a digit, `/` or `+`: the shape of a
/// secret access key. Hex digests (one case), long Rust type names (letters only) and longer tokens (checked by
/// value) do not match.
fn secret_shaped(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '+' | '=')))
        .filter(|run| {
            run.len() == 40
                && run.bytes().any(|b| b.is_ascii_lowercase())
                && run.bytes().any(|b| b.is_ascii_uppercase())
                && run
                    .bytes()
                    .any(|b| b.is_ascii_digit() || b == b'/' || b == b'+')
        })
        .collect()
}

/// Credential fields followed by anything but the SDK's `** redacted **` (its Debug output names the fields).
fn unredacted_credential_fields(text: &str) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    let fields = [
        "secret_access_key",
        "secretaccesskey",
        "session_token",
        "sessiontoken",
    ];
    fields
        .iter()
        .flat_map(|field| lower.match_indices(field))
        // A whole field name, not a longer setting such as `session_token_mode`.
        .filter(|(at, field)| {
            let next = lower.as_bytes().get(at + field.len()).copied();
            !next.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .map(|(at, field)| {
            let end = (at + field.len() + 24).min(lower.len());
            lower.get(at..end).unwrap_or(&lower[at..]).to_string()
        })
        .filter(|context| !context.contains("redacted"))
        .collect()
}

// A current-thread runtime (tokio::test's default): every task of the run polls on this thread, so the
// thread-local subscriber below sees all of the run's events.
#[tokio::test]
async fn logs_name_findings_and_never_credentials_or_the_report() {
    let moto = Moto::start();
    let account = moto.account().await;
    account.console_user("alice").await;
    let unused = account.key("alice").await;
    account.console_user("carol").await;
    let used = account.key("carol").await;
    account.use_key(&used).await;
    let (topic, _queue) = account.topic_with_queue().await;

    // Only the run is captured, not the seeding (whose CreateAccessKey responses carry secrets by design).
    // src/logging.rs's own level and subscriber, asked for TRACE as an operator investigating might set
    // AWS_LAMBDA_LOG_LEVEL: it must clamp that to DEBUG, since at TRACE the SDK logs whole response bodies,
    // the credential report among them.
    let captured = Captured::default();
    let writer = captured.clone();
    let level = keywatch::logging::level(|name| {
        (name == "AWS_LAMBDA_LOG_LEVEL").then(|| "TRACE".to_string())
    });
    assert_eq!(level, Level::DEBUG, "TRACE is clamped to DEBUG");
    let subscriber = keywatch::logging::subscriber(level, move || writer.clone());
    let report = {
        let _guard = tracing::subscriber::set_default(subscriber);
        let config = moto
            .sdk_config_with(RUN_KEY_ID, RUN_SECRET, Some(RUN_TOKEN.to_string()))
            .await;
        let keywatch = Keywatch::new(
            settings(&[("FINDINGS_TOPIC_ARN", &topic), ("AWS_REGION", "us-east-1")]),
            Clients::from_config(&config),
        );
        keywatch
            .run(
                &Invocation::SCHEDULED,
                "logs-run",
                &Deadline::after(Duration::from_secs(60)),
            )
            .await
            .expect("the run succeeds")
    };
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    let logs = captured.text();

    // The finding is in the logs, with the fields an operator searches by, and only that one.
    let lines: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let findings: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "finding")
        .collect();
    assert_eq!(findings.len(), 1, "one finding line:\n{logs}");
    assert_eq!(findings[0]["level"], "WARN");
    assert_eq!(findings[0]["fields"]["user"], "alice");
    assert_eq!(findings[0]["fields"]["access_key_id"], unused.id.as_str());
    assert_eq!(findings[0]["fields"]["run_id"], "logs-run");
    assert!(
        lines.iter().any(|l| l["level"] == "DEBUG"),
        "DEBUG as asked:\n{logs}"
    );
    assert!(
        lines.iter().all(|l| l["level"] != "TRACE"),
        "never TRACE, whatever is asked"
    );
    let summary = lines
        .iter()
        .find(|l| l["fields"]["message"] == "keywatch run complete")
        .unwrap_or_else(|| panic!("no run summary:\n{logs}"));
    assert_eq!(summary["fields"]["findings"], 1);

    // Never a credential: not the seeded keys' secrets, not the function's own session, nor anything shaped
    // like a secret access key.
    for (what, secret) in [
        ("alice's secret access key", unused.secret.as_str()),
        ("carol's secret access key", used.secret.as_str()),
        ("the function's secret access key", RUN_SECRET),
        ("the function's session token", RUN_TOKEN),
        ("the seeded console password", "Corr3ct-Horse!"),
    ] {
        assert!(!logs.contains(secret), "{what} is in the logs:\n{logs}");
    }
    assert_eq!(
        secret_shaped(&logs),
        Vec::<&str>::new(),
        "secret-shaped strings in the logs"
    );
    assert_eq!(
        unredacted_credential_fields(&logs),
        Vec::<String>::new(),
        "credential fields logged with a value"
    );

    // Never the credential report, neither as CSV nor as the base64 content of the API response.
    let header = "user,arn,user_creation_time";
    let encoded = aws_smithy_types::base64::encode(header);
    for shape in [header, &encoded[..32]] {
        assert!(
            !logs.contains(shape),
            "the credential report is in the logs:\n{logs}"
        );
    }
}

#[test]
fn secret_shape_matches_keys_and_spares_digests() {
    assert_eq!(
        secret_shaped(&format!("{{\"k\":\"{RUN_SECRET}\"}}")),
        [RUN_SECRET]
    );
    // A SHA-1 in hex, a type name the SDK logs at TRACE, an access key ID, a longer token: none is shaped like
    // a secret access key.
    let benign =
        "da39a3ee5e6b4b0d3255bfef95601890afd80709 GetLoginProfileEndpointParamsInterceptor \
                  AKIAIOSFODNN7EXAMPLE x/";
    assert!(secret_shaped(&format!("{benign} {RUN_TOKEN}")).is_empty());
}

#[test]
fn credential_fields_must_be_redacted() {
    let redacted = r#"Credentials { access_key_id: "ASIA", secret_access_key: "** redacted **" }"#;
    assert!(unredacted_credential_fields(redacted).is_empty());
    let leaked = format!(r#"{{"aws_session_token":"{RUN_TOKEN}"}}"#);
    assert_eq!(unredacted_credential_fields(&leaked).len(), 1);
}
