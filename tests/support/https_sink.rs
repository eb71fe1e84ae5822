//! An HTTPS endpoint that SNS delivers to, as it delivers to AWS's chat integration: `https_sink.py` in the
//! project venv, with a self-signed certificate that moto is told to trust ([`HttpsSink::moto_env`]). Killed on
//! drop.

use crate::moto::{stop_child, watch_child};
use crate::{log_file, venv_tool};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct HttpsSink {
    child: Child,
    log: PathBuf,
    pub port: u16,
    /// The certificate moto must trust.
    pub ca: String,
    /// Each POST as it came: (path, SNS's JSON envelope).
    received: Arc<Mutex<Vec<(String, Value)>>>,
}

impl HttpsSink {
    pub fn start() -> HttpsSink {
        let python = venv_tool("python");
        let script = crate::project_dir().join("tests/support/https_sink.py");
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (log, log_path) = log_file(&format!("https-sink-{}-{n}", std::process::id()));
        let mut child = Command::new(&python)
            .arg(&script)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        watch_child(child.id());
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let ready = lines.next().and_then(Result::ok).unwrap_or_else(|| {
            panic!(
                "https_sink.py said nothing; its log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            )
        });
        let mut words = ready.split(' ');
        assert_eq!(words.next(), Some("READY"), "{ready}");
        let port = words.next().and_then(|p| p.parse().ok()).expect("a port");
        let ca = words.next().expect("a certificate path").to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let post: Value = serde_json::from_str(&line).expect("a JSON line");
                let body = serde_json::from_str(post["body"].as_str().expect("a body"))
                    .expect("SNS posts a JSON envelope");
                sink.lock()
                    .expect("the list")
                    .push((post["path"].as_str().expect("a path").to_string(), body));
            }
        });
        HttpsSink {
            child,
            log: log_path,
            port,
            ca,
            received,
        }
    }

    /// What moto's environment needs for its HTTPS deliveries to trust this endpoint.
    pub fn moto_env(&self) -> [(&'static str, &str); 1] {
        [("REQUESTS_CA_BUNDLE", self.ca.as_str())]
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// The messages delivered to `path`. moto posts before its Publish answers, so they were sent already; the
    /// wait is for the reader thread, until two reads 200 ms apart agree.
    pub fn delivered(&self, path: &str) -> Vec<Value> {
        let take = || -> Vec<Value> {
            self.received
                .lock()
                .expect("the list")
                .iter()
                .filter(|(p, _)| p == path)
                .map(|(_, body)| body.clone())
                .collect()
        };
        let started = Instant::now();
        let mut seen = take();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = take();
            if now.len() == seen.len() || started.elapsed() > Duration::from_secs(10) {
                return now;
            }
            seen = now;
        }
    }
}

impl Drop for HttpsSink {
    fn drop(&mut self) {
        stop_child(&mut self.child, &self.log);
    }
}

/// Fails naming each error when a value does not match a JSON Schema (Draft 2020-12, Python `jsonschema` from
/// the project venv).
pub fn assert_matches_schema(schema: &std::path::Path, instances: &[Value]) {
    let dir = std::env::temp_dir().join(format!("keywatch-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let file = dir.join(format!("instances-{}.json", fastrand::u64(..)));
    std::fs::write(&file, serde_json::to_vec(instances).expect("JSON")).expect("write instances");
    let out = Command::new(venv_tool("python"))
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             schema = json.load(open(sys.argv[1]))\n\
             jsonschema.Draft202012Validator.check_schema(schema)\n\
             v = jsonschema.Draft202012Validator(schema)\n\
             errors = [f'#{i}: {e.json_path}: {e.message}' for i, x in enumerate(json.load(open(sys.argv[2]))) for e in v.iter_errors(x)]\n\
             print('\\n'.join(errors)); sys.exit(1 if errors else 0)",
        ])
        .arg(schema)
        .arg(&file)
        .output()
        .expect("run the venv's python");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{} of {} value(s) do not match {}:\n{}{}",
        String::from_utf8_lossy(&out.stdout).lines().count(),
        instances.len(),
        schema.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
