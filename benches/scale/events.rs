//! The document's event-driven section: from an IAM event entering the queue to its alert, and the IAM calls of
//! the user check it causes, against their bound.

use crate::measure::*;
use crate::support::proxy::Proxy;
use crate::support::pump::{Pump, WorkQueue};
use crate::support::Moto;
use crate::write::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// IAM calls of a user check, per user named: GetUser, ListAccessKeys, GetLoginProfile and ListUserTags once, and
/// GetAccessKeyLastUsed once per Active key (IAM allows two). The credential report and ListUsers: never.
pub(crate) const USER_CHECK_BOUND: u64 = 6;
/// The calls a user check may make at all.
const USER_CHECK_OPS: [&str; 5] = [
    "iam:GetUser",
    "iam:ListAccessKeys",
    "iam:GetLoginProfile",
    "iam:GetAccessKeyLastUsed",
    "iam:ListUserTags",
];

/// One event, from the queue to the alert.
pub(crate) struct EventRun {
    /// From the event sent to the queue to its alert readable by a subscriber's queue.
    pub(crate) latency: Duration,
    /// The IAM calls of its check, by operation.
    pub(crate) calls: BTreeMap<String, u64>,
    /// Whether the alert named exactly the new key.
    pub(crate) alerted: bool,
}

/// `runs` events, one at a time: a console user gets a key, its CloudTrail event (as EventBridge delivers it)
/// enters the event queue, the pump hands it to a release binary (one instance, as Lambda's poller would), and
/// the clock stops when the alert reaches the subscribed queue.
pub(crate) async fn bench_events(
    moto: &Moto,
    proxy: &Proxy,
    binary: &Path,
    runs: usize,
) -> Vec<EventRun> {
    let account = moto.account().await;
    let (topic, alerts) = account.topic_with_queue().await;
    let queue = WorkQueue::create(&account.sqs, "keywatch-iam-events", 60, 3).await;
    let vars = [
        ("FINDINGS_TOPIC_ARN", topic.clone()),
        ("AWS_LAMBDA_LOG_LEVEL", "WARN".to_string()),
    ];
    let fleet = Fleet::start(binary, &proxy.url, &vars, "events", 1).await;
    let mut measured = Vec::new();
    for run in 0..runs {
        let user = format!("event-bench-{run}");
        account.console_user(&user).await;
        let key = account.key(&user).await.id;
        let event = cloudtrail_event(&user, &key);
        proxy.take_log();
        let sent = Instant::now();
        account
            .sqs
            .send_message()
            .queue_url(&queue.url)
            .message_body(event.to_string())
            .send()
            .await
            .expect("the event enters the queue");
        let pump = Pump::new(&account.sqs, &queue.url)
            .await
            .batch_size(10)
            .time_limit(Duration::from_secs(60));
        let invoker = |payload: String| {
            let fleet = &fleet;
            async move {
                let answer = fleet.invoke(payload).await;
                (answer.status, answer.body)
            }
        };
        let (_, alert) = tokio::join!(pump.run(&invoker), first_alert(&account.sqs, &alerts));
        let latency = alert
            .as_ref()
            .map_or_else(|| sent.elapsed(), |(at, _)| *at - sent);
        let alerted = alert.is_some_and(|(_, document)| {
            document["findings"]
                .as_array()
                .is_some_and(|f| f.len() == 1 && f[0]["access_key_id"] == key.as_str())
        });
        let calls: BTreeMap<String, u64> = by_action(&proxy.take_log())
            .into_iter()
            .filter(|(op, _)| op.starts_with("iam:"))
            .collect();
        eprintln!(
            "  event {}/{runs}: alert after {latency:.2?}, IAM calls {calls:?}",
            run + 1
        );
        measured.push(EventRun {
            latency,
            calls,
            alerted,
        });
    }
    for instance in fleet.instances {
        instance.stop();
    }
    measured
}

/// IAM's CloudTrail event of a key created for `user` by an administrator, as EventBridge delivers it.
fn cloudtrail_event(user: &str, key: &str) -> Value {
    serde_json::json!({
        "version": "0",
        "id": format!("bench-{key}"),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.iam",
        "account": "123456789012",
        "time": "2026-12-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.09",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/ops-admin",
                             "accountId": "123456789012", "userName": "ops-admin"},
            "eventTime": "2026-12-01T00:00:00Z",
            "eventSource": "iam.amazonaws.com",
            "eventName": "CreateAccessKey",
            "awsRegion": "us-east-1",
            "sourceIPAddress": "198.51.100.23",
            "requestParameters": {"userName": user},
            "responseElements": {"accessKey": {"userName": user, "accessKeyId": key, "status": "Active"}},
            "eventID": format!("bench-{key}"),
            "recipientAccountId": "123456789012",
        }
    })
}

/// When the first alert reached the subscribed queue, and its JSON document; `None` after 60 s.
async fn first_alert(sqs: &aws_sdk_sqs::Client, queue: &str) -> Option<(Instant, Value)> {
    let give_up = Instant::now() + Duration::from_secs(60);
    while Instant::now() < give_up {
        let received = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .send()
            .await
            .ok()?;
        if let Some(message) = received.messages.unwrap_or_default().into_iter().next() {
            let at = Instant::now();
            let envelope: Value =
                serde_json::from_str(message.body.as_deref().unwrap_or("{}")).ok()?;
            let document =
                serde_json::from_str(envelope["Message"].as_str().unwrap_or("{}")).ok()?;
            sqs.delete_message()
                .queue_url(queue)
                .set_receipt_handle(message.receipt_handle)
                .send()
                .await
                .ok()?;
            return Some((at, document));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

pub(crate) fn render_events(
    out: &mut String,
    bench: &Bench,
    mismatches: &mut Vec<String>,
    unmet: &mut Vec<String>,
) {
    let runs = bench.events;
    if runs.is_empty() {
        return;
    }
    let latency = Stat::of(runs.iter().map(|r| r.latency.as_secs_f64()));
    let calls = Stat::of(runs.iter().map(|r| iam_calls(&r.calls) as f64));
    let _ = writeln!(
        out,
        "\n## Event to alert\n\nAn administrator creates a key for a console user; IAM's CloudTrail event (as EventBridge \
         delivers it) enters the event queue; the pump (Lambda's SQS poller, batches of up to 10, polling every 100 ms) \
         hands it to the release binary (one instance, `FINDINGS_TOPIC_ARN` set, otherwise the defaults), which checks \
         that one user and publishes; the clock stops when the alert reaches an SQS queue subscribed to the topic. \
         {} events, one at a time, on the largest account (the proxy's {} ms per request included). On AWS, add \
         CloudTrail's delivery to EventBridge (best effort, typically minutes) and the mapping's batching window (5 s).\n",
        runs.len(),
        bench.latency.as_millis()
    );
    let mut ops: Vec<String> = Vec::new();
    for op in USER_CHECK_OPS {
        let n = Stat::of(runs.iter().map(|r| calls_of(&r.calls, &[op]) as f64));
        ops.push(format!("{} {}", op.trim_start_matches("iam:"), n.count()));
    }
    let only_user_check = runs.iter().all(|r| {
        r.calls
            .keys()
            .all(|op| USER_CHECK_OPS.contains(&op.as_str()))
    });
    let within = runs
        .iter()
        .all(|r| iam_calls(&r.calls) <= USER_CHECK_BOUND && only_user_check);
    let alerted = runs.iter().all(|r| r.alerted);
    if !alerted {
        mismatches.push("an event's alert did not name exactly its new key".to_string());
    }
    let _ = writeln!(
        out,
        "| Events | Event to alert, s | IAM calls of the user check | By operation (median) | Bound | Every event alerted | Verdict |\n\
         |---:|---:|---:|---|---:|---|---|\n| {} | {} | {} | {} | {USER_CHECK_BOUND} | {} | {} |",
        runs.len(),
        latency.show(seconds, ""),
        calls.count(),
        ops.join(", "),
        if alerted { "yes" } else { "no" },
        target(
            unmet,
            "user check within its IAM call bound".into(),
            within && alerted
        ),
    );
    let _ = writeln!(
        out,
        "\nThe bound, per user an event names: `GetUser`, `ListAccessKeys`, `GetLoginProfile` and `ListUserTags` once \
         each, and `GetAccessKeyLastUsed` once per Active key (at most two): {USER_CHECK_BOUND}. Never the credential \
         report or `ListUsers`, whatever the account's size; events about one user in one batch check it once."
    );
}
