//! What Lambda's SQS event source mapping does with the work queue, for tests and the benchmark: receive a batch
//! (with every system attribute, so `ApproximateReceiveCount` is there), hand it to the function as Lambda's SQS
//! event, delete the records that succeeded, and leave the failed ones to come back after the visibility timeout.
//! The queue's own RedrivePolicy (moto honours it on receive) moves a message to the dead-letter queue after
//! `maxReceiveCount` receives, as SQS does.
//!
//! Lambda's rules for a response with `ReportBatchItemFailures`: a function error, a response that is not JSON,
//! or an `itemIdentifier` that is empty, missing or not in the batch fails the whole batch; an empty or absent
//! `batchItemFailures` list is a complete success.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use serde_json::{json, Map, Value};

/// One synchronous invocation of the function: (HTTP status, response body). Any status but 200 is a function
/// error, as the Runtime API reports it. A closure `Fn(String) -> impl Future<Output = (u16, String)>` is one,
/// so a benchmark can bring its own runtime; a test's is [`crate::Function`], which watches the process.
pub trait Invoke {
    fn invoke(&self, payload: String) -> impl Future<Output = (u16, String)>;
}

impl<F, Fut> Invoke for F
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = (u16, String)>,
{
    fn invoke(&self, payload: String) -> impl Future<Output = (u16, String)> {
        self(payload)
    }
}

/// A work queue with a dead-letter queue, as the template creates them.
#[derive(Debug, Clone)]
pub struct WorkQueue {
    pub url: String,
    pub arn: String,
    pub dlq_url: String,
    pub max_receive_count: u32,
}

impl WorkQueue {
    /// `name` and `name-dlq`; a failed message is received `max_receive_count` times, `visibility_timeout_s`
    /// apart, then moved to the DLQ.
    pub async fn create(
        sqs: &aws_sdk_sqs::Client,
        name: &str,
        visibility_timeout_s: u32,
        max_receive_count: u32,
    ) -> WorkQueue {
        let create = |name: String, attributes: Vec<(QueueAttributeName, String)>| async move {
            let url = sqs
                .create_queue()
                .queue_name(&name)
                .set_attributes(Some(attributes.into_iter().collect()))
                .send()
                .await
                .unwrap_or_else(|e| panic!("create queue {name}: {e:?}"))
                .queue_url
                .expect("queue url");
            let arn = queue_arn(sqs, &url).await;
            (url, arn)
        };
        let (dlq_url, dlq_arn) = create(format!("{name}-dlq"), Vec::new()).await;
        let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count});
        let (url, arn) = create(
            name.to_string(),
            vec![
                (
                    QueueAttributeName::VisibilityTimeout,
                    visibility_timeout_s.to_string(),
                ),
                (QueueAttributeName::RedrivePolicy, redrive.to_string()),
            ],
        )
        .await;
        WorkQueue {
            url,
            arn,
            dlq_url,
            max_receive_count,
        }
    }
}

pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap_or_else(|e| panic!("attributes of {url}: {e:?}"))
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_else(|| panic!("{url} has no QueueArn"))
}

/// Messages in the queue: (visible, in flight, delayed).
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> (u64, u64, u64) {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap_or_else(|e| panic!("attributes of {url}: {e:?}"))
        .attributes
        .unwrap_or_default();
    let count = |name: QueueAttributeName| {
        attributes
            .get(&name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{url}: no {name:?} in {attributes:?}"))
    };
    (
        count(QueueAttributeName::ApproximateNumberOfMessages),
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
    )
}

/// Every message in the queue, each deleted as it is read: the one drain of a queue that the tests and the bench
/// share (a DLQ at the end of a test, SNS deliveries, work messages handed over by hand).
pub async fn take_messages(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Message> {
    let mut taken = Vec::new();
    loop {
        let messages = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap_or_else(|e| panic!("receive from {url}: {e:?}"))
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            return taken;
        }
        for message in messages {
            sqs.delete_message()
                .queue_url(url)
                .set_receipt_handle(message.receipt_handle.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("delete from {url}: {e:?}"));
            taken.push(message);
        }
    }
}

/// Every message body in the queue, each deleted as it is read.
pub async fn take_bodies(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    take_messages(sqs, url)
        .await
        .into_iter()
        .map(|message| message.body.unwrap_or_default())
        .collect()
}

/// The work queue's messages as the SQS records Lambda's poller would hand over, each on its first receive, for
/// a test that hands them to the handler itself.
pub async fn take_records(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<keywatch::event::SqsRecord> {
    take_messages(sqs, url)
        .await
        .into_iter()
        .map(|message| keywatch::event::SqsRecord {
            message_id: message.message_id.expect("a message ID"),
            body: message.body.expect("a body"),
            receive_count: 1,
        })
        .collect()
}

/// Why the pump stopped. Only `Drained` means the queue was worked off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// No message visible, in flight or delayed for `quiet_for`.
    Drained,
    InvocationLimit,
    TimeLimit,
}

/// One record as it was handed to the function.
#[derive(Debug, Clone)]
pub struct Record {
    pub message_id: String,
    pub receive_count: u32,
    pub body: String,
}

/// One invocation: its records, the function's answer, and which records failed.
#[derive(Debug, Clone)]
pub struct Batch {
    pub records: Vec<Record>,
    pub status: u16,
    pub response: String,
    /// Message IDs left on the queue for another attempt.
    pub failed: Vec<String>,
    pub took: Duration,
}

/// What a pump run did.
#[derive(Debug, Clone)]
pub struct Pumped {
    pub invocations: usize,
    /// Records handed to the function, retries included.
    pub records: usize,
    pub deleted: usize,
    pub failed: usize,
    /// Invocations answered with a function error (every record failed).
    pub function_errors: usize,
    pub stopped: Stop,
    pub elapsed: Duration,
    /// In the order they finished.
    pub batches: Vec<Batch>,
}

/// Lambda's SQS poller for one queue.
#[derive(Debug, Clone)]
pub struct Pump {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue_arn: String,
    pub region: String,
    /// Records per invocation, 1 to 10 (the template's BatchSize is 1).
    pub batch_size: i32,
    /// Pollers, each with an invocation of its own in flight (Lambda's concurrency for the queue).
    pub workers: usize,
    /// How long an idle poller waits before it looks again.
    pub poll_interval: Duration,
    /// How long the queue must stay empty before the pump stops.
    pub quiet_for: Duration,
    /// Bounds: the pump never runs longer or invokes more often than this, whatever the queue does.
    pub max_invocations: usize,
    pub time_limit: Duration,
}

impl Pump {
    /// One poller, batches of 1, at most 1,000 invocations or 2 minutes.
    pub async fn new(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Pump {
        let region = sqs
            .config()
            .region()
            .map_or("us-east-1".to_string(), |r| r.to_string());
        Pump {
            sqs: sqs.clone(),
            queue_url: queue_url.to_string(),
            queue_arn: queue_arn(sqs, queue_url).await,
            region,
            batch_size: 1,
            workers: 1,
            poll_interval: Duration::from_millis(100),
            quiet_for: Duration::from_millis(300),
            max_invocations: 1_000,
            time_limit: Duration::from_secs(120),
        }
    }

    pub fn batch_size(mut self, records: i32) -> Pump {
        assert!((1..=10).contains(&records), "SQS receives 1 to 10 messages");
        self.batch_size = records;
        self
    }

    pub fn workers(mut self, workers: usize) -> Pump {
        self.workers = workers.max(1);
        self
    }

    pub fn max_invocations(mut self, invocations: usize) -> Pump {
        self.max_invocations = invocations;
        self
    }

    pub fn time_limit(mut self, limit: Duration) -> Pump {
        self.time_limit = limit;
        self
    }

    /// Works the queue off with `function`, `workers` batches at a time, until it stays empty or a bound is hit.
    pub async fn run(&self, function: &impl Invoke) -> Pumped {
        let started = Instant::now();
        let shared = Shared {
            invocations: AtomicUsize::new(0),
            stop: Mutex::new(None),
            stopping: AtomicBool::new(false),
            batches: Mutex::new(Vec::new()),
        };
        // Workers share one task: the invocations overlap on I/O, and a closure needs not be Send.
        futures_util::future::join_all(
            (0..self.workers).map(|_| self.worker(function, &shared, started)),
        )
        .await;
        let batches = shared.batches.into_inner().expect("batches");
        let records: usize = batches.iter().map(|b| b.records.len()).sum();
        let failed: usize = batches.iter().map(|b| b.failed.len()).sum();
        Pumped {
            invocations: batches.len(),
            records,
            deleted: records - failed,
            failed,
            function_errors: batches.iter().filter(|b| b.status != 200).count(),
            stopped: shared
                .stop
                .into_inner()
                .expect("stop")
                .expect("a worker says why it stopped"),
            elapsed: started.elapsed(),
            batches,
        }
    }

    async fn worker(&self, function: &impl Invoke, shared: &Shared, started: Instant) {
        let mut empty_since: Option<Instant> = None;
        loop {
            if shared.stopping.load(Ordering::SeqCst) {
                return;
            }
            if started.elapsed() >= self.time_limit {
                return shared.finish(Stop::TimeLimit);
            }
            let messages = self.receive().await;
            if messages.is_empty() {
                // Failed records are in flight until their visibility timeout ends: not empty yet.
                let (visible, in_flight, delayed) = queue_depth(&self.sqs, &self.queue_url).await;
                if visible + in_flight + delayed == 0 {
                    let since = *empty_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.quiet_for {
                        return shared.finish(Stop::Drained);
                    }
                } else {
                    empty_since = None;
                }
                tokio::time::sleep(self.poll_interval).await;
                continue;
            }
            empty_since = None;
            if shared.invocations.fetch_add(1, Ordering::SeqCst) >= self.max_invocations {
                // Not handed over: back on the queue after its visibility timeout, as if never received.
                return shared.finish(Stop::InvocationLimit);
            }
            let batch = self.invoke(function, messages).await;
            shared.batches.lock().expect("batches").push(batch);
        }
    }

    async fn receive(&self) -> Vec<Message> {
        self.sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap_or_else(|e| panic!("receive from {}: {e:?}", self.queue_url))
            .messages
            .unwrap_or_default()
    }

    async fn invoke(&self, function: &impl Invoke, messages: Vec<Message>) -> Batch {
        let event = self.event(&messages);
        let records: Vec<Record> = messages
            .iter()
            .map(|m| Record {
                message_id: m.message_id.clone().unwrap_or_default(),
                receive_count: m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .expect("ApproximateReceiveCount, asked for with All"),
                body: m.body.clone().unwrap_or_default(),
            })
            .collect();
        let start = Instant::now();
        let (status, response) = function.invoke(event.to_string()).await;
        let took = start.elapsed();
        let ids: Vec<&str> = records.iter().map(|r| r.message_id.as_str()).collect();
        let failed: Vec<String> = match failed_records(status, &response, &ids) {
            Some(failed) => failed,
            None => ids.iter().map(|id| id.to_string()).collect(),
        };
        let done: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| !failed.contains(m.message_id.as_ref().expect("message id")))
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle.clone())
                    .build()
                    .expect("id and receipt handle")
            })
            .collect();
        if !done.is_empty() {
            let deleted = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(done))
                .send()
                .await
                .unwrap_or_else(|e| panic!("delete from {}: {e:?}", self.queue_url));
            assert!(
                deleted.failed.is_empty(),
                "deletes failed: {:?}",
                deleted.failed
            );
        }
        Batch {
            records,
            status,
            response,
            failed,
            took,
        }
    }

    /// Lambda's SQS event, field for field.
    pub fn event(&self, messages: &[Message]) -> Value {
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attributes: Map<String, Value> = m
                    .attributes
                    .iter()
                    .flatten()
                    .map(|(name, value)| (name.as_str().to_string(), json!(value)))
                    .collect();
                let message_attributes: Map<String, Value> = m
                    .message_attributes
                    .iter()
                    .flatten()
                    .map(|(name, value)| {
                        let blob = |b: &aws_smithy_types::Blob| aws_smithy_types::base64::encode(b.as_ref());
                        (
                            name.clone(),
                            json!({
                                "stringValue": value.string_value,
                                "binaryValue": value.binary_value.as_ref().map(blob),
                                "stringListValues": value.string_list_values.clone().unwrap_or_default(),
                                "binaryListValues": value.binary_list_values.iter().flatten().map(blob).collect::<Vec<_>>(),
                                "dataType": value.data_type,
                            }),
                        )
                    })
                    .collect();
                let mut record = json!({
                    "messageId": m.message_id,
                    "receiptHandle": m.receipt_handle,
                    "body": m.body,
                    "attributes": attributes,
                    "messageAttributes": message_attributes,
                    "md5OfBody": m.md5_of_body,
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": self.region,
                });
                if let Some(md5) = &m.md5_of_message_attributes {
                    record["md5OfMessageAttributes"] = json!(md5);
                }
                record
            })
            .collect();
        json!({ "Records": records })
    }
}

struct Shared {
    invocations: AtomicUsize,
    stop: Mutex<Option<Stop>>,
    stopping: AtomicBool,
    batches: Mutex<Vec<Batch>>,
}

impl Shared {
    /// The first worker to stop says why; the others stop at their next look.
    fn finish(&self, why: Stop) {
        self.stop.lock().expect("stop").get_or_insert(why);
        self.stopping.store(true, Ordering::SeqCst);
    }
}

/// The message IDs the response names as failed, or `None` when Lambda would fail the whole batch.
pub fn failed_records(status: u16, response: &str, batch: &[&str]) -> Option<Vec<String>> {
    if status != 200 {
        return None;
    }
    let response: Value = serde_json::from_str(response).ok()?;
    let failures = match response.get("batchItemFailures") {
        None | Some(Value::Null) => return Some(Vec::new()),
        Some(Value::Array(failures)) => failures,
        Some(_) => return None,
    };
    failures
        .iter()
        .map(|failure| match failure.get("itemIdentifier") {
            Some(Value::String(id)) if batch.contains(&id.as_str()) => Some(id.clone()),
            _ => None,
        })
        .collect()
}
