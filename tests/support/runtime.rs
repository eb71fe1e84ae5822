//! The Runtime API and the binary: cargo-lambda's Runtime API emulator ([`RuntimeApi`]) and the built keywatch
//! binary polling it ([`Function`]) with only the environment Lambda gives ([`lambda_env`], which the benchmark's
//! own Runtime API uses too). Use it where the behaviour is the binary's: the bootstrap and its stack, the runtime
//! loop, error responses, init failures. In-process tests call the handler through [`crate::run`].
//!
//! Every process started here is handed to the test's [`crate::Watchdog`], which stops it with the test binary.
//!
//! The benchmark's in-process Runtime API (`benches/scale/instance.rs`) uses [`lambda_env`] and [`peak_rss_kib`]
//! from here; the rest of it is the benchmark's own, so no test binary compiles it.

use crate::moto::{stop_child, watch_child};
use crate::{free_port, http, log_file, project_dir, venv_tool, INSTALL_HINT};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The Lambda Runtime API emulator of cargo-lambda (`cargo lambda watch --only-lambda-apis`) on a free
/// loopback port, killed when dropped. It starts no function of its own: the test runs the built binary
/// against it, as Lambda runs the bootstrap.
pub struct RuntimeApi {
    child: Child,
    log: PathBuf,
    pub port: u16,
}

/// How many ports [`RuntimeApi::start`] tries before it gives up.
const START_ATTEMPTS: usize = 3;

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port`, from Linux's `/proc`: a connection
/// alone would also succeed against whatever else listens there.
fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    // Columns: sl, local address (hex, host byte order on x86 and arm64: 127.0.0.1 is 0100007F), remote
    // address, state (0A is LISTEN), ..., inode (the tenth).
    let local = format!("0100007F:{port:04X}");
    let sockets: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
                .then(|| fields.get(9).map(|inode| format!("socket:[{inode}]")))
                .flatten()
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
    })
}

/// The function name the emulator serves when the runtime is started by hand.
pub const EMULATED_FUNCTION: &str = "_";

impl RuntimeApi {
    /// Starts the emulator from the project's venv. Fails (never skips) when it is not installed.
    ///
    /// Ready means cargo-lambda itself holds the listening socket: a port from [`free_port`] can be taken by
    /// another process before cargo-lambda binds it, and cargo-lambda then exits quietly (status 0) while the
    /// port still answers. It is started again on a new port, up to [`START_ATTEMPTS`] times.
    pub fn start() -> RuntimeApi {
        for _ in 0..START_ATTEMPTS {
            if let Some(api) = RuntimeApi::start_on(free_port()) {
                return api;
            }
        }
        panic!("cargo-lambda could not bind a loopback port in {START_ATTEMPTS} attempts")
    }

    /// `None` when cargo-lambda exits before it listens on `port` (taken by another process).
    fn start_on(port: u16) -> Option<RuntimeApi> {
        let cargo_lambda = venv_tool("cargo-lambda");
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
        watch_child(child.id());
        let mut api = RuntimeApi {
            child,
            log: log_path,
            port,
        };
        let started = Instant::now();
        while !listens_on(api.child.id(), port) {
            if let Ok(Some(status)) = api.child.try_wait() {
                let log = std::fs::read_to_string(&api.log).unwrap_or_default();
                assert!(
                    status.success(),
                    "cargo-lambda exited with {status} before listening on port {port}:\n{log}"
                );
                eprintln!(
                    "cargo-lambda exited before listening on port {port} (taken?); trying another"
                );
                return None;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the Runtime API emulator (pid {}) did not listen on 127.0.0.1:{port} within 30 s (read from \
                 /proc/net/tcp and /proc/PID/fd); see {}",
                api.child.id(),
                api.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(api)
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API` for a runtime served by this emulator.
    pub fn runtime_api(&self) -> String {
        format!("http://127.0.0.1:{}/.rt", self.port)
    }

    /// One synchronous invocation of the function polling the emulator on `port`, as `aws lambda invoke` would
    /// send it: (HTTP status, response body). A function error comes back as status 500 with
    /// `{"errorType": ..., "errorMessage": ...}`. The one invoke path: [`Function`] calls it from a thread of its
    /// own while it watches the process.
    pub fn invoke_on(port: u16, payload: &str) -> (u16, String) {
        let path = format!("/2015-03-31/functions/{EMULATED_FUNCTION}/invocations");
        http(port, "POST", &path, payload, INVOKE_TIMEOUT)
            .unwrap_or_else(|| panic!("no answer from the Runtime API emulator on port {port}"))
    }
}

/// How long an invocation may take before the emulator is taken for dead: the longest check in the suite takes
/// seconds, and 2 busy cores can stretch that several times over.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(120);

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        stop_child(&mut self.child, &self.log);
    }
}

/// The binary as Lambda runs it, built with Cargo.toml's `shipped` profile: the release profile's
/// `panic = "abort"` and main.rs's thread stack, without LTO. Built once per test binary by the cargo running the
/// tests (`make test` builds it first, so this finds it fresh); a failed build fails the test with cargo's output.
pub fn shipped_binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let args = [
            "build",
            "--locked",
            "--profile",
            "shipped",
            "--bin",
            "keywatch",
        ];
        let output = Command::new(&cargo)
            .args(args)
            .current_dir(project_dir())
            .output()
            .unwrap_or_else(|e| panic!("`cargo {}` did not start: {e}", args.join(" ")));
        assert!(
            output.status.success(),
            "`cargo {}` failed ({}):\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| project_dir().join("target"), PathBuf::from);
        target.join("shipped").join("keywatch")
    })
}

/// The environment Lambda gives a function, and nothing else: no AWS profile, token or endpoint from the
/// developer's environment can reach the binary, so every call goes to `endpoint` (moto or the proxy).
pub fn lambda_env(
    runtime_api: &str,
    function_name: &str,
    endpoint: &str,
) -> Vec<(&'static str, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api),
        ("AWS_LAMBDA_FUNCTION_NAME", function_name),
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
    ]
    .into_iter()
    .map(|(name, value)| (name, value.to_string()))
    .collect()
}

/// The built `keywatch` binary, polling a [`RuntimeApi`] for events; killed when dropped, even on a panic.
/// Every invocation through it, one by one or from the pump ([`crate::pump::Invoke`]), watches the process: a
/// binary that dies meanwhile (a panic under `panic = "abort"`, a stack overflow) fails the test at once with
/// its exit status and logs, where the emulator would only wait for an answer that never comes.
pub struct Function {
    child: Mutex<Child>,
    /// The emulator it polls.
    port: u16,
    pub log: PathBuf,
}

impl Function {
    /// Starts the binary with only the variables Lambda and keywatch read, so no AWS profile, token or
    /// endpoint from the developer's environment can reach it: every call goes to `endpoint`.
    pub fn start(
        binary: &Path,
        api: &RuntimeApi,
        endpoint: &str,
        vars: &[(&str, &str)],
    ) -> Function {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let (file, log) = log_file(&format!("keywatch-{}-{n}", api.port));
        let child = Command::new(binary)
            .env_clear()
            .envs(lambda_env(&api.runtime_api(), EMULATED_FUNCTION, endpoint))
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .spawn()
            .expect("the keywatch binary starts");
        watch_child(child.id());
        Function {
            child: Mutex::new(child),
            port: api.port,
            log,
        }
    }

    pub fn logs(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!("{}\n{text}", self.log.display())
    }

    /// `Some(status)` once the process has ended.
    fn exited(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        child.try_wait().expect("process status")
    }

    pub fn assert_running(&self) {
        if let Some(status) = self.exited() {
            panic!("keywatch exited ({status}); logs:\n{}", self.logs());
        }
    }

    pub fn wait_for_exit(&self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
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

    fn assert_running_during_invocation(&self) {
        if let Some(status) = self.exited() {
            panic!(
                "keywatch exited ({status}) during an invocation; logs:\n{}",
                self.logs()
            );
        }
    }

    /// One invocation through the emulator: (HTTP status, response body), as [`RuntimeApi::invoke_on`].
    pub fn invoke(&self, payload: &str) -> (u16, String) {
        let (port, payload) = (self.port, payload.to_string());
        let call = std::thread::spawn(move || RuntimeApi::invoke_on(port, &payload));
        while !call.is_finished() {
            self.assert_running_during_invocation();
            std::thread::sleep(WATCH_INTERVAL);
        }
        call.join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Invokes through the emulator and returns the report, failing with the function's logs otherwise.
    pub fn invoke_ok(&self, event: &str, payload: &str) -> Value {
        let (status, body) = self.invoke(payload);
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
    pub fn invoke_err(&self, payload: &str) -> (String, String) {
        let (status, body) = self.invoke(payload);
        assert_ne!(status, 200, "{payload} should fail, got {body}");
        let error: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("error response is not JSON ({e}): {body}"));
        let field = |name: &str| error[name].as_str().unwrap_or_default().to_string();
        self.assert_running();
        (field("errorType"), field("errorMessage"))
    }
}

/// How often an invocation in flight looks at the process.
const WATCH_INTERVAL: Duration = Duration::from_millis(20);

/// The pump's invocations: on the blocking pool, so workers overlap, with the process watched meanwhile.
impl crate::pump::Invoke for Function {
    async fn invoke(&self, payload: String) -> (u16, String) {
        let port = self.port;
        let call = tokio::task::spawn_blocking(move || RuntimeApi::invoke_on(port, &payload));
        while !call.is_finished() {
            self.assert_running_during_invocation();
            tokio::time::sleep(WATCH_INTERVAL).await;
        }
        call.await
            .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        stop_child(child, &self.log);
    }
}

/// VmHWM: the process's peak resident set, in KiB (0 if it cannot be read).
pub fn peak_rss_kib(pid: u32) -> u64 {
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
