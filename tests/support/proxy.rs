//! A fault-injecting HTTP proxy between the SDK and moto, so faults travel the real wire protocol: the SDK
//! parses real error responses, retries, times out and sees reset connections as it would against AWS.
//!
//! IAM, STS and SNS speak the query protocol, a form-encoded POST that names its `Action`; SQS and Organizations
//! speak JSON and name it in `X-Amz-Target`. The service comes from the SigV4 credential scope. Faults are chosen by [`Rule`]s, in order; rules
//! with a rate share one seeded draw per request, so `Throttling` at 0.20 and `ServiceFailure` at 0.05 on the
//! same action mean exactly 20% and 5%. Concurrent requests make the order of draws, and so each run's exact
//! faults, depend on scheduling: a seed fixes the rates and the mix, not the interleaving.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use aws_config::{ConfigLoader, Region, SdkConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use keywatch::aws::Clients;
use tokio::sync::oneshot;

/// What the proxy does to a request instead of (or besides) forwarding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 400 `Throttling`: the account's request rate is exceeded. Retryable.
    Throttling,
    /// 500 `ServiceFailure`: IAM's internal error. Retryable.
    ServiceFailure,
    /// 409 `LimitExceeded`: GenerateCredentialReport while too many reports are being generated.
    LimitExceeded,
    /// 404 `ReportInProgress`: GetCredentialReport before generation finished.
    ReportInProgress,
    /// 410 `ReportNotPresent`: GetCredentialReport with no report.
    ReportNotPresent,
    /// 410 `ReportExpired`: GetCredentialReport on a report older than 4 hours.
    ReportExpired,
    /// 403 `AccessDenied`: the role lacks the action.
    AccessDenied,
    /// Forwarded after this long: a slow or hung endpoint.
    Delay(Duration),
    /// The connection is reset (RST) before forwarding: moto never sees the request.
    Reset,
    /// Forwarded, then the connection is reset: moto acted, but the client never hears the answer.
    ResetAfterForward,
    /// GetCredentialReport answered with the first report this proxy forwarded: a report older than the keys.
    StaleReport,
    /// 404 `NoSuchEntity`: the user (or key) was deleted since it was listed.
    NoSuchEntity,
    /// Forwarded, and the answer's element of this name is renamed so the SDK cannot see it: a response that
    /// lacks a field (`GeneratedTime`, `Content`, `AccessKeyId`, `Account`).
    Strip(&'static str),
    /// Forwarded without the SQS batch entry of this `Id`, and the answer reports it failed (`InternalError`): a
    /// partial batch failure, in which SQS enqueued none of that entry.
    FailBatchEntry(&'static str),
    /// Before forwarding, the key signs one request of its own to moto, which records a use: the key is used
    /// between two of keywatch's calls.
    UseKeyFirst { id: String, secret: String },
    /// Before forwarding, the key is set Inactive in moto, as by another person: someone deactivates it between
    /// two of keywatch's calls.
    DeactivateKeyFirst { user: String, id: String },
    /// Forwarded, and the answer held back this long: moto acted, but a deadline may cut the call first.
    DelayAfterForward(Duration),
    /// Answered 200 with this JSON body instead of forwarding: a service's own account of partial failure, such
    /// as Security Hub's `FailedFindings`.
    RespondJson(&'static str),
    /// GetCredentialReport answered with this CSV, generated now, instead of moto's: a report with the dates and
    /// spellings of a real account, which moto cannot age.
    RespondCredentialReport(String),
}

impl Fault {
    /// The AWS error code this fault answers with; empty for faults that are not an error response.
    pub fn code(&self) -> &'static str {
        self.error().map_or("", |(_, _, code, _)| code)
    }

    /// Status, `Type`, `Code` and `Message` of the AWS error this fault answers with, if it is one.
    /// Status codes are IAM's (botocore's model): 404 ReportInProgress, 410 ReportNotPresent and ReportExpired.
    fn error(&self) -> Option<(u16, &'static str, &'static str, &'static str)> {
        Some(match self {
            Fault::Throttling => (400, "Sender", "Throttling", "Rate exceeded"),
            Fault::ServiceFailure => (
                500,
                "Receiver",
                "ServiceFailure",
                "The request processing has failed because of an unknown error",
            ),
            Fault::LimitExceeded => (
                409,
                "Sender",
                "LimitExceeded",
                "Cannot exceed quota for credential report generation",
            ),
            Fault::ReportInProgress => (
                404,
                "Sender",
                "ReportInProgress",
                "Report generation in progress",
            ),
            Fault::ReportNotPresent => (
                410,
                "Sender",
                "ReportNotPresent",
                "Credential report not present",
            ),
            Fault::ReportExpired => (410, "Sender", "ReportExpired", "Credential report expired"),
            Fault::NoSuchEntity => (
                404,
                "Sender",
                "NoSuchEntity",
                "The user with name alice cannot be found.",
            ),
            Fault::AccessDenied => (
                403,
                "Sender",
                "AccessDenied",
                "User: arn:aws:sts::123456789012:assumed-role/keywatch/fn is not authorized to perform this action",
            ),
            _ => return None,
        })
    }
}

/// When a fault applies: to which action, which of its requests, and how often.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `service:Action` as in IAM policies (`iam:ListAccessKeys`, `sns:Publish`), or `*` for every request.
    action: String,
    /// A form parameter that must contain this text, e.g. `Subject` containing `(part 2 of 3)`.
    param: Option<(String, String)>,
    /// Only the nth matching request (1-based, retries included).
    nth: Option<u64>,
    /// Only the first n matching requests.
    times: Option<u64>,
    /// Fires with this probability, drawn from the proxy's seeded RNG.
    rate: Option<f64>,
    fault: Fault,
    matched: u64,
}

impl Rule {
    /// Every request for `action` (`iam:ListUsers`, or `*`) gets `fault`.
    pub fn on(action: &str, fault: Fault) -> Rule {
        Rule {
            action: action.to_string(),
            param: None,
            nth: None,
            times: None,
            rate: None,
            fault,
            matched: 0,
        }
    }

    pub fn param(mut self, name: &str, contains: &str) -> Rule {
        self.param = Some((name.to_string(), contains.to_string()));
        self
    }

    pub fn nth(mut self, n: u64) -> Rule {
        self.nth = Some(n);
        self
    }

    pub fn times(mut self, n: u64) -> Rule {
        self.times = Some(n);
        self
    }

    pub fn rate(mut self, probability: f64) -> Rule {
        self.rate = Some(probability);
        self
    }

    fn matches(&self, action: &str, form: &[(String, String)]) -> bool {
        (self.action == "*" || self.action == action)
            && self.param.as_ref().is_none_or(|(name, text)| {
                form.iter()
                    .any(|(key, value)| key == name && value.contains(text.as_str()))
            })
    }
}

/// One request as the proxy saw it, and the fault it got, if any.
#[derive(Debug, Clone)]
pub struct Seen {
    pub action: String,
    pub fault: Option<Fault>,
    /// A digest of the request's body: the call's parameters, the same on every retry of one call.
    pub request: u64,
}

struct State {
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    rules: Mutex<Vec<Rule>>,
    rng: Mutex<fastrand::Rng>,
    log: Mutex<Vec<Seen>>,
    /// The first successful GetCredentialReport response, for [`Fault::StaleReport`].
    first_report: Mutex<Option<(StatusCode, HeaderMap, Bytes)>>,
    /// Page moto's ListUsers answer as IAM does (see [`Proxy::page_list_users`]).
    page_list_users: AtomicBool,
    /// At most this many users a ListUsers page (0: IAM's own limit), see [`Proxy::page_list_users_by`].
    list_users_page_cap: AtomicUsize,
    /// Seconds to move every key's `CreateDate` back in ListAccessKeys answers (see [`Proxy::age_keys`]).
    key_age_seconds: AtomicU64,
    /// Per user: days to move their keys' creation and last use back (see [`Proxy::age_user`]).
    user_ages: Mutex<BTreeMap<String, UserAge>>,
}

/// [`Proxy::age_user`]'s name for every user without an age of their own.
pub const EVERY_USER: &str = "*";

/// How much older one user's keys look: their creation, and their last use (a key never used stays so).
#[derive(Debug, Clone, Copy)]
struct UserAge {
    created_days: i64,
    used_days: i64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock has already failed; the data is still fine to read.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The proxy, listening on a free 127.0.0.1 port, on its own thread and runtime; stopped when dropped.
pub struct Proxy {
    pub url: String,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Forwards to `upstream` (moto's endpoint, `http://127.0.0.1:PORT`). No faults until rules are added.
    pub fn start(upstream: &str) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let address = listener.local_addr().expect("bound address");
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            rules: Mutex::new(Vec::new()),
            rng: Mutex::new(fastrand::Rng::with_seed(0)),
            log: Mutex::new(Vec::new()),
            first_report: Mutex::new(None),
            page_list_users: AtomicBool::new(false),
            list_users_page_cap: AtomicUsize::new(0),
            key_age_seconds: AtomicU64::new(0),
            user_ages: Mutex::new(BTreeMap::new()),
        });
        let (stop, stopped) = oneshot::channel();
        let served = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    _ = accept(listener, served) => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection task, including responses still being delayed.
        });
        Proxy {
            url: format!("http://{address}"),
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn add(&self, rule: Rule) -> &Self {
        lock(&self.state.rules).push(rule);
        self
    }

    /// Removes every rule: requests are forwarded untouched again.
    pub fn clear(&self) {
        lock(&self.state.rules).clear();
    }

    /// From now on, ListUsers answers in pages as IAM does: `MaxItems` users (default 100, at most 1,000) from
    /// `Marker` on, with `IsTruncated` and the next `Marker`. moto itself always answers with every user.
    pub fn page_list_users(&self) {
        self.state.page_list_users.store(true, Ordering::SeqCst);
    }

    /// As [`Proxy::page_list_users`], with at most `cap` users a page whatever `MaxItems` asks (IAM, too, may
    /// answer fewer than asked and say `IsTruncated`): a few dozen users then take many pages.
    pub fn page_list_users_by(&self, cap: usize) {
        self.state.list_users_page_cap.store(cap, Ordering::SeqCst);
        self.page_list_users();
    }

    /// From now on, every access key looks `days` older in ListAccessKeys answers: moto dates each key "now",
    /// and nothing can backdate it.
    pub fn age_keys(&self, days: u64) {
        self.state
            .key_age_seconds
            .store(days * 86_400, Ordering::SeqCst);
    }

    /// From now on, `user`'s keys look `created_days` older and, if used, last used `used_days` earlier, in every
    /// answer that dates them: ListAccessKeys (`CreateDate`), GetAccessKeyLastUsed (`LastUsedDate`) and the
    /// credential report (`access_key_N_last_rotated`, `access_key_N_last_used_date`). moto dates a key and its
    /// use "now", and nothing can backdate either; this rewrite is the test's, in the open.
    /// `user` [`EVERY_USER`] ages every user without an age of their own.
    pub fn age_user(&self, user: &str, created_days: i64, used_days: i64) {
        lock(&self.state.user_ages).insert(
            user.to_string(),
            UserAge {
                created_days,
                used_days,
            },
        );
    }

    /// Every key dated as moto dates it again.
    pub fn clear_ages(&self) {
        lock(&self.state.user_ages).clear();
    }

    /// Forgets the recorded credential report: the next successful GetCredentialReport is the one
    /// [`Fault::StaleReport`] replays.
    pub fn forget_report(&self) {
        *lock(&self.state.first_report) = None;
    }

    /// Reseeds the RNG that rules with a rate draw from.
    pub fn seed(&self, seed: u64) {
        *lock(&self.state.rng) = fastrand::Rng::with_seed(seed);
    }

    /// Every request so far, in arrival order.
    pub fn log(&self) -> Vec<Seen> {
        lock(&self.state.log).clone()
    }

    /// Whether some request so far got this fault.
    pub fn served(&self, fault: &Fault) -> bool {
        lock(&self.state.log)
            .iter()
            .any(|seen| seen.fault.as_ref() == Some(fault))
    }

    /// The log so far, leaving it empty: one run's requests.
    pub fn take_log(&self) -> Vec<Seen> {
        std::mem::take(&mut *lock(&self.state.log))
    }

    /// How many requests (attempts, retries included) each action received.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for seen in lock(&self.state.log).iter() {
            *counts.entry(seen.action.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Points a config loader at the proxy, with moto's test credentials: never real AWS.
    pub fn configure(&self, loader: ConfigLoader) -> ConfigLoader {
        loader
            .endpoint_url(&self.url)
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_iam::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
    }

    /// The production SDK configuration (`keywatch::aws::config_loader`), through the proxy.
    pub async fn sdk_config(&self, max_attempts: u32) -> SdkConfig {
        self.configure(keywatch::aws::config_loader(max_attempts))
            .load()
            .await
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `Clients::from_config`, but with retry state of their own ([`Clients::isolated`]): without it, one test's
/// throttling would slow down or starve the retries of every other test in the binary. A Lambda container does
/// share that state across its invocations; the soak keeps one partition across its runs for that.
pub fn isolated_clients(config: &SdkConfig) -> Clients {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    Clients::isolated(config, &format!("faults-{id}"))
}

async fn accept(listener: tokio::net::TcpListener, state: Arc<State>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(connection(stream, state.clone()));
    }
}

/// Serves one client connection. A fault that resets asks for it through `reset`; the socket is then closed
/// with SO_LINGER 0, which sends RST instead of FIN, as a dropped load balancer connection does.
async fn connection(mut stream: tokio::net::TcpStream, state: Arc<State>) {
    let reset = Arc::new(AtomicBool::new(false));
    let service = {
        let reset = reset.clone();
        hyper::service::service_fn(move |request| handle(state.clone(), reset.clone(), request))
    };
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(&mut stream), service)
        .await;
    if reset.load(Ordering::SeqCst) {
        let _ = stream.set_zero_linger();
    }
}

#[derive(Debug)]
struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the fault proxy")
    }
}

impl std::error::Error for ResetConnection {}

type Answer = Result<Response<Full<Bytes>>, ResetConnection>;

async fn handle(state: Arc<State>, reset: Arc<AtomicBool>, request: Request<Incoming>) -> Answer {
    let (head, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Err(ResetConnection),
    };
    let form = parse_form(&body);
    let action = action_name(&head.headers, head.uri.path(), &form);
    let fault = choose_fault(&state, &action, &form);
    lock(&state.log).push(Seen {
        action: action.clone(),
        fault: fault.clone(),
        request: {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            body.hash(&mut hasher);
            hasher.finish()
        },
    });

    if let Some((status, kind, code, message)) = fault.as_ref().and_then(Fault::error) {
        return Ok(error_response(status, kind, code, message));
    }
    match &fault {
        Some(Fault::Reset) => {
            reset.store(true, Ordering::SeqCst);
            return Err(ResetConnection);
        }
        Some(Fault::Delay(delay)) => tokio::time::sleep(*delay).await,
        Some(Fault::StaleReport) => {
            // Never a fresh report in its place: a test that asked for a stale one would prove nothing.
            let Some((status, headers, body)) = lock(&state.first_report).clone() else {
                panic!(
                    "proxy: StaleReport asked for before any credential report went through this proxy; \
                     record one first (a run, or a GetCredentialReport through the proxy)"
                )
            };
            return Ok(response(status, headers, body));
        }
        Some(Fault::UseKeyFirst { id, secret }) => use_key(&state.upstream, id, secret).await,
        Some(Fault::DeactivateKeyFirst { user, id }) => {
            deactivate_key(&state.upstream, user, id).await
        }
        Some(Fault::RespondCredentialReport(csv)) => return Ok(credential_report_response(csv)),
        Some(Fault::RespondJson(body)) => {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return Ok(response(
                StatusCode::OK,
                headers,
                Bytes::from_static(body.as_bytes()),
            ));
        }
        _ => {}
    }

    // Security Hub's limit, which moto does not enforce: at most 100 findings per import.
    if action == "securityhub:BatchImportFindings" {
        let findings = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|b| b["Findings"].as_array().map(Vec::len))
            .unwrap_or_else(|| panic!("proxy: a BatchImportFindings request without Findings"));
        if findings > HUB_MAX_IMPORT {
            return Ok(hub_error(
                "InvalidInputException",
                &format!("Findings: {findings} findings in one call; at most {HUB_MAX_IMPORT}"),
            ));
        }
    }

    // SQS enqueues none of a failed entry: moto must not see it either.
    let (head, body) = match &fault {
        Some(Fault::FailBatchEntry(id)) => without_batch_entry(head, body, id),
        _ => (head, body),
    };
    let forwarded = forward(&state, head, body).await;
    let (status, headers, body) = match forwarded {
        Some(answer) => answer,
        None => {
            return Ok(error_response(
                502,
                "Receiver",
                "BadGateway",
                "moto did not answer",
            ))
        }
    };
    if action == "iam:GetCredentialReport" && status == StatusCode::OK {
        lock(&state.first_report).get_or_insert_with(|| (status, headers.clone(), body.clone()));
    }
    if let Some(Fault::DelayAfterForward(delay)) = &fault {
        tokio::time::sleep(*delay).await;
    }
    if fault == Some(Fault::ResetAfterForward) {
        reset.store(true, Ordering::SeqCst);
        return Err(ResetConnection);
    }
    let body = match fault {
        Some(Fault::Strip(element)) => strip(&body, element),
        Some(Fault::FailBatchEntry(id)) => fail_batch_entry(&body, id).unwrap_or(body),
        _ => body,
    };
    let age = state.key_age_seconds.load(Ordering::SeqCst);
    let body = if action == "iam:ListAccessKeys" && status == StatusCode::OK && age > 0 {
        backdate(&body, "CreateDate", age)
    } else {
        body
    };
    let ages = lock(&state.user_ages).clone();
    let body = match action.as_str() {
        _ if ages.is_empty() || status != StatusCode::OK => body,
        "iam:ListAccessKeys" => age_members(&body, &ages),
        "iam:GetAccessKeyLastUsed" => age_last_use(&body, &ages),
        "iam:GetCredentialReport" => age_report(&body, &ages),
        _ => body,
    };
    let body = if action == "iam:ListUsers"
        && status == StatusCode::OK
        && state.page_list_users.load(Ordering::SeqCst)
    {
        // Never moto's unpaged answer in its place: a paging test would pass without paging.
        let cap = state.list_users_page_cap.load(Ordering::SeqCst);
        page_users(&body, &form, cap).unwrap_or_else(|| {
            panic!("proxy: cannot page moto's ListUsers answer (not the XML expected, or a Marker this proxy did not give)")
        })
    } else {
        body
    };
    Ok(response(status, headers, body))
}

/// One request signed with the key, straight to moto: how IAM (and moto) record a use.
async fn use_key(upstream: &str, id: &str, secret: &str) {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(keywatch::aws::http_client())
        .endpoint_url(upstream)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_iam::config::Credentials::new(
            id, secret, None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .expect("a request signed with the key");
}

/// Sets the key Inactive straight in moto, as the account's administrator.
async fn deactivate_key(upstream: &str, user: &str, id: &str) {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(keywatch::aws::http_client())
        .endpoint_url(upstream)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_iam::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_iam::Client::new(&config)
        .update_access_key()
        .user_name(user)
        .access_key_id(id)
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .expect("deactivate the key as someone else");
}

/// Moves every `<element>` time back by `seconds`. A time it cannot read is a broken test: it panics.
fn backdate(body: &[u8], element: &str, seconds: u64) -> Bytes {
    use time::format_description::well_known::{Iso8601, Rfc3339};
    let text = String::from_utf8_lossy(body);
    let (open, close) = (format!("<{element}>"), format!("</{element}>"));
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(&open) {
        let value_start = start + open.len();
        let end = value_start
            + rest[value_start..]
                .find(&close)
                .unwrap_or_else(|| panic!("an unclosed {open} in {text}"));
        let value = &rest[value_start..end];
        let parsed = time::OffsetDateTime::parse(value, &Iso8601::DEFAULT)
            .unwrap_or_else(|e| panic!("{element} {value:?} is not ISO 8601: {e}"));
        let moved = parsed - time::Duration::seconds(seconds as i64);
        out.push_str(&rest[..value_start]);
        out.push_str(&moved.format(&Rfc3339).expect("an RFC 3339 time"));
        rest = &rest[end..];
    }
    out.push_str(rest);
    Bytes::from(out)
}

/// The user an IAM answer (or one `<member>` of it) is about.
fn user_of(text: &str, ages: &BTreeMap<String, UserAge>) -> Option<UserAge> {
    let start = text.find("<UserName>")? + "<UserName>".len();
    let end = start + text[start..].find("</UserName>")?;
    ages.get(&text[start..end])
        .or_else(|| ages.get(EVERY_USER))
        .copied()
}

/// ListAccessKeys: each member's `CreateDate` moved back by its user's age.
fn age_members(body: &[u8], ages: &BTreeMap<String, UserAge>) -> Bytes {
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_ref();
    while let Some(start) = rest.find("<member>") {
        let end = start
            + rest[start..]
                .find("</member>")
                .unwrap_or_else(|| panic!("an unclosed <member> in {text}"));
        out.push_str(&rest[..start]);
        let member = &rest[start..end];
        match user_of(member, ages) {
            Some(age) => out.push_str(&String::from_utf8_lossy(&backdate(
                member.as_bytes(),
                "CreateDate",
                (age.created_days * 86_400) as u64,
            ))),
            None => out.push_str(member),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    Bytes::from(out)
}

/// GetAccessKeyLastUsed: `LastUsedDate` moved back by its user's age (absent for a key never used).
fn age_last_use(body: &[u8], ages: &BTreeMap<String, UserAge>) -> Bytes {
    let text = String::from_utf8_lossy(body);
    match user_of(&text, ages) {
        Some(age) => backdate(body, "LastUsedDate", (age.used_days * 86_400) as u64),
        None => Bytes::copy_from_slice(body),
    }
}

/// GetCredentialReport: each aged user's `access_key_N_last_rotated` and `access_key_N_last_used_date` moved
/// back, in the base64 CSV of `Content`.
fn age_report(body: &[u8], ages: &BTreeMap<String, UserAge>) -> Bytes {
    use time::format_description::well_known::{Iso8601, Rfc3339};
    let text = String::from_utf8_lossy(body);
    let (Some(start), Some(end)) = (text.find("<Content>"), text.find("</Content>")) else {
        panic!("proxy: a credential report without Content: {text}");
    };
    let start = start + "<Content>".len();
    let csv = aws_smithy_types::base64::decode(text[start..end].trim())
        .unwrap_or_else(|e| panic!("proxy: the report's Content is not base64: {e}"));
    let csv = String::from_utf8(csv).expect("a UTF-8 report");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("a header row").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let mut out = vec![header.join(",")];
    for line in lines {
        let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
        if let Some(age) = cells
            .first()
            .and_then(|user| ages.get(user).or_else(|| ages.get(EVERY_USER)))
        {
            for (suffix, days) in [
                ("last_rotated", age.created_days),
                ("last_used_date", age.used_days),
            ] {
                for slot in [1, 2] {
                    let Some(index) = column(&format!("access_key_{slot}_{suffix}")) else {
                        continue;
                    };
                    if let Ok(at) = time::OffsetDateTime::parse(&cells[index], &Iso8601::DEFAULT) {
                        cells[index] = (at - time::Duration::days(days))
                            .format(&Rfc3339)
                            .expect("an RFC 3339 time");
                    }
                }
            }
        }
        out.push(cells.join(","));
    }
    let mut csv = out.join("\n");
    csv.push('\n');
    Bytes::from(format!(
        "{}{}{}",
        &text[..start],
        aws_smithy_types::base64::encode(csv),
        &text[end..]
    ))
}

/// Renames every `<element>` so the SDK's parser skips it as an unknown field.
fn strip(body: &[u8], element: &str) -> Bytes {
    let text = String::from_utf8_lossy(body)
        .replace(&format!("<{element}>"), "<KeywatchTestStripped>")
        .replace(&format!("</{element}>"), "</KeywatchTestStripped>");
    Bytes::from(text)
}

/// Moves the entry `id` of a JSON batch answer (`SendMessageBatch`) from `Successful` to `Failed`.
/// The SendMessageBatch request without the entry of this `Id`, its length header to match. A request of another
/// shape is a broken test: it panics.
fn without_batch_entry(
    mut head: hyper::http::request::Parts,
    body: Bytes,
    id: &str,
) -> (hyper::http::request::Parts, Bytes) {
    let mut request: serde_json::Value =
        serde_json::from_slice(&body).expect("a SendMessageBatch request in JSON");
    let entries = request["Entries"]
        .as_array_mut()
        .expect("a SendMessageBatch request has Entries");
    entries.retain(|entry| entry["Id"] != id);
    let body = Bytes::from(serde_json::to_vec(&request).expect("JSON"));
    head.headers
        .insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    (head, body)
}

fn fail_batch_entry(body: &[u8], id: &str) -> Option<Bytes> {
    let mut answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    if let Some(successful) = answer.get_mut("Successful").and_then(|s| s.as_array_mut()) {
        successful.retain(|entry| entry["Id"] != id);
    }
    let failed = serde_json::json!({
        "Id": id, "SenderFault": false, "Code": "InternalError", "Message": "injected by the test proxy"
    });
    match answer.get_mut("Failed").and_then(|f| f.as_array_mut()) {
        Some(list) => list.push(failed),
        None => answer["Failed"] = serde_json::json!([failed]),
    }
    serde_json::to_vec(&answer).ok().map(Bytes::from)
}

/// Security Hub's limit of findings per BatchImportFindings call. (moto pages GetFindings itself, 100 a page.)
const HUB_MAX_IMPORT: usize = 100;

/// A Security Hub (REST JSON) error.
fn hub_error(code: &str, message: &str) -> Response<Full<Bytes>> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(value) = HeaderValue::from_str(code) {
        headers.insert("x-amzn-errortype", value);
    }
    let body = serde_json::json!({ "Code": code, "Message": message }).to_string();
    response(StatusCode::BAD_REQUEST, headers, Bytes::from(body))
}

/// IAM's defaults for ListUsers: 100 users a page unless `MaxItems` asks for more, and never more than 1,000.
const IAM_DEFAULT_PAGE: usize = 100;
const IAM_MAX_PAGE: usize = 1_000;
const MARKER_PREFIX: &str = "keywatch-test-page-";

/// One IAM-sized page of moto's full ListUsers answer; `None` if the XML is not the shape expected.
fn page_users(body: &[u8], form: &[(String, String)], cap: usize) -> Option<Bytes> {
    let xml = std::str::from_utf8(body).ok()?;
    let param = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let size = param("MaxItems")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(IAM_DEFAULT_PAGE)
        .clamp(1, IAM_MAX_PAGE);
    let size = if cap > 0 { size.min(cap) } else { size };
    let from = match param("Marker") {
        None => 0,
        Some(marker) => marker.strip_prefix(MARKER_PREFIX)?.parse().ok()?,
    };
    let (head, rest) = xml.split_once("<Users>")?;
    let (users, tail) = rest.split_once("</Users>")?;
    let members = top_level_members(users);
    let page: String = members.iter().skip(from).take(size).copied().collect();
    let next = from + size;
    let truncation = if next < members.len() {
        format!("<IsTruncated>true</IsTruncated><Marker>{MARKER_PREFIX}{next}</Marker>")
    } else {
        "<IsTruncated>false</IsTruncated>".to_string()
    };
    let tail = tail
        .replacen("<IsTruncated>false</IsTruncated>", &truncation, 1)
        .replacen("<IsTruncated>true</IsTruncated>", &truncation, 1);
    Some(Bytes::from(format!("{head}<Users>{page}</Users>{tail}")))
}

/// The `<member>...</member>` elements directly inside a list, with nested members (tags) kept inside.
fn top_level_members(list: &str) -> Vec<&str> {
    let mut members = Vec::new();
    let (mut depth, mut start, mut at) = (0usize, 0usize, 0usize);
    while at < list.len() {
        let rest = &list[at..];
        if rest.starts_with("<member>") {
            if depth == 0 {
                start = at;
            }
            depth += 1;
            at += "<member>".len();
        } else if rest.starts_with("</member>") {
            depth = depth.saturating_sub(1);
            at += "</member>".len();
            if depth == 0 {
                members.push(&list[start..at]);
            }
        } else {
            at += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    members
}

fn choose_fault(state: &State, action: &str, form: &[(String, String)]) -> Option<Fault> {
    let draw = lock(&state.rng).f64();
    let mut window = 0.0;
    let mut rules = lock(&state.rules);
    for rule in rules.iter_mut() {
        if !rule.matches(action, form) {
            continue;
        }
        rule.matched += 1;
        let counted = rule.nth.is_none_or(|n| rule.matched == n)
            && rule.times.is_none_or(|n| rule.matched <= n);
        let drawn = match rule.rate {
            None => true,
            Some(rate) => {
                // Rated rules take consecutive slices of [0, 1), so their rates add up instead of overlapping.
                let hit = (window..window + rate).contains(&draw);
                window += rate;
                hit
            }
        };
        if counted && drawn {
            return Some(rule.fault.clone());
        }
    }
    None
}

async fn forward(
    state: &State,
    head: hyper::http::request::Parts,
    body: Bytes,
) -> Option<(StatusCode, HeaderMap, Bytes)> {
    let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = Request::builder()
        .method(head.method)
        .uri(format!("{}{path}", state.upstream))
        .body(Full::new(body))
        .ok()?;
    *request.headers_mut() = head.headers;
    let response = state.client.request(request).await.ok()?;
    let (head, body) = response.into_parts();
    let body = body.collect().await.ok()?.to_bytes();
    Some((head.status, head.headers, body))
}

fn response(status: StatusCode, mut headers: HeaderMap, body: Bytes) -> Response<Full<Bytes>> {
    // Framing is hyper's job on this side of the proxy.
    for hop in [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
    ] {
        headers.remove(hop);
    }
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// AWS's query-protocol error document, as IAM, STS and SNS send it.
/// IAM's GetCredentialReport answer holding `csv`, generated now.
fn credential_report_response(csv: &str) -> Response<Full<Bytes>> {
    let generated = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let body = format!(
        "<GetCredentialReportResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><GetCredentialReportResult><Content>{}</Content><ReportFormat>text/csv</ReportFormat><GeneratedTime>{generated}</GeneratedTime></GetCredentialReportResult><ResponseMetadata><RequestId>fa017000-0000-4000-8000-report</RequestId></ResponseMetadata></GetCredentialReportResponse>",
        aws_smithy_types::base64::encode(csv)
    );
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    response(StatusCode::OK, headers, Bytes::from(body))
}

fn error_response(status: u16, kind: &str, code: &str, message: &str) -> Response<Full<Bytes>> {
    static REQUEST: AtomicU64 = AtomicU64::new(1);
    let request_id = format!(
        "fa017000-0000-4000-8000-{:012}",
        REQUEST.fetch_add(1, Ordering::Relaxed)
    );
    let body = format!(
        "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    );
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("x-amzn-requestid", value);
    }
    response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        headers,
        Bytes::from(body),
    )
}

/// `iam:ListUsers`: the service from the SigV4 credential scope (`Credential=AKID/DATE/REGION/SERVICE/...`),
/// the action from the form body.
fn action_name(headers: &HeaderMap, path: &str, form: &[(String, String)]) -> String {
    let service = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .and_then(|scope| scope.split('/').nth(3))
        .unwrap_or("unknown");
    // Query protocols (IAM, STS, SNS) name the action in the form; JSON protocols (SQS, Organizations) in
    // `X-Amz-Target: AmazonSQS.SendMessageBatch`.
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit('.').next());
    // REST protocols (Security Hub) in the path.
    let rest = match path {
        "/findings/import" => Some("BatchImportFindings"),
        "/findings" => Some("GetFindings"),
        _ => None,
    };
    let action = form
        .iter()
        .find(|(key, _)| key == "Action")
        .map(|(_, value)| value.as_str())
        .or(target)
        .or(rest)
        .unwrap_or("unknown");
    format!("{service}:{action}")
}

/// `application/x-www-form-urlencoded`, decoded.
fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut halves = pair.splitn(2, |&b| b == b'=');
            let decode = |part: &[u8]| String::from_utf8_lossy(&percent_decode(part)).into_owned();
            let key = decode(halves.next().unwrap_or_default());
            let value = decode(halves.next().unwrap_or_default());
            (key, value)
        })
        .collect()
}

/// A form name or value, percent-decoded (`+` is a space); a `%` not followed by two hex digits stays as it is.
/// The suite's one decoder: the SNS signing quirk in tests/least_privilege.rs uses it too.
pub fn percent_decode(part: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(part.len());
    let mut i = 0;
    while i < part.len() {
        let hex = part
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (part[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}
