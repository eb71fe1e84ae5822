//! The benchmark's own Lambda instance: the release binary under a Runtime API served in this process, handed
//! one event at a time. It gives what cargo-lambda's emulator does not: the moment of the first poll (init),
//! many instances side by side, and each one's peak memory. Only the benchmark uses it, so it lives here and
//! the test binaries do not compile it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::support::log_file;
use crate::support::moto::{unwatch_child, watch_child};
use crate::support::runtime::{lambda_env, peak_rss_kib};

/// Reads one HTTP/1.1 request (head and Content-Length body) from a keep-alive connection.
pub async fn read_request(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
) -> Option<(String, String)> {
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

/// One event for an [`Instance`], and where its answer goes.
pub struct Job {
    pub payload: String,
    pub answer: oneshot::Sender<Answer>,
}

/// What the function answered: status 200 for a response, 500 for a function error, as the pump reads them.
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// From the event handed over at `next` to the answer: the invocation's duration, init excluded.
    pub took: Duration,
}

/// An instance's Runtime API: the events waiting, and the invocations in flight.
pub struct Runtime {
    pub jobs: tokio::sync::Mutex<mpsc::UnboundedReceiver<Job>>,
    pub in_flight: Mutex<BTreeMap<String, (oneshot::Sender<Answer>, Instant)>>,
    /// When the process first asked for an event: the end of its init.
    pub first_poll: std::sync::OnceLock<Instant>,
}

pub static INVOCATIONS: AtomicUsize = AtomicUsize::new(1);

/// One Lambda instance: the release binary under a Runtime API of its own, handed one event at a time. Its
/// stdout (JSON logs and EMF lines) goes to a log file.
pub struct Instance {
    pub child: Mutex<std::process::Child>,
    pub pid: u32,
    pub log: PathBuf,
    pub jobs: mpsc::UnboundedSender<Job>,
    pub server: tokio::task::JoinHandle<()>,
    /// From spawn to the first Runtime API poll.
    pub init: Duration,
}

impl Instance {
    /// Starts the binary and waits for its first poll, so init is not in any measurement.
    pub async fn start(
        binary: &Path,
        endpoint: &str,
        vars: &[(&str, String)],
        name: &str,
    ) -> Instance {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind runtime api");
        let port = listener.local_addr().expect("runtime address").port();
        let (jobs, waiting) = mpsc::unbounded_channel();
        let runtime = Arc::new(Runtime {
            jobs: tokio::sync::Mutex::new(waiting),
            in_flight: Mutex::new(BTreeMap::new()),
            first_poll: std::sync::OnceLock::new(),
        });
        let server = tokio::spawn(serve_instance(listener, runtime.clone()));
        let (file, log) = log_file(name);
        let spawned = Instant::now();
        let child = Command::new(binary)
            .env_clear()
            .envs(lambda_env(
                &format!("127.0.0.1:{port}"),
                "keywatch",
                endpoint,
            ))
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .spawn()
            .expect("start keywatch");
        watch_child(child.id());
        let instance = Instance {
            pid: child.id(),
            child: Mutex::new(child),
            log,
            jobs,
            server,
            init: Duration::ZERO,
        };
        let first_poll = loop {
            if let Some(first_poll) = runtime.first_poll.get() {
                break *first_poll;
            }
            instance.assert_running();
            assert!(
                spawned.elapsed() < Duration::from_secs(30),
                "keywatch did not poll its Runtime API within 30 s; see {}",
                instance.log.display()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        Instance {
            init: first_poll - spawned,
            ..instance
        }
    }

    pub fn assert_running(&self) {
        if let Ok(Some(status)) = self.child.lock().expect("child").try_wait() {
            panic!(
                "keywatch exited with {status}; its log: {}",
                self.log.display()
            );
        }
    }

    /// One invocation, waited for; a process that dies meanwhile fails the bench at once.
    pub async fn invoke(&self, payload: String) -> Answer {
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
    pub fn stop(self) -> (u64, PathBuf) {
        let peak = peak_rss_kib(self.pid);
        unwatch_child(self.pid);
        let mut child = self.child.into_inner().expect("child");
        let _ = child.kill();
        let _ = child.wait();
        self.server.abort();
        (peak, self.log)
    }
}

/// The Runtime API of one instance: `next` waits for an event, `response` and `error` answer it.
pub async fn serve_instance(listener: tokio::net::TcpListener, runtime: Arc<Runtime>) {
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
                    runtime.first_poll.get_or_init(Instant::now);
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
                         Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:keywatch\r\n\
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
