//! What started this invocation: an EventBridge schedule, a person with a manual event, or Lambda's SQS poller
//! with work items from the fan-out queue.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cloudtrail::{self, IamChange};
use crate::config::fleet::is_account_id;
use crate::config::MAX_GRACE_HOURS;
use crate::error::{Error, Result};
use crate::inventory::Source;

/// An invocation, routed by [`crate::route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A schedule or a person: check now, or dispatch the accounts.
    Check(Invocation),
    /// Work items from the fan-out queue, one account each, or IAM's CloudTrail events, one user each.
    Sqs(Vec<SqsRecord>),
    /// One IAM CloudTrail event, invoked directly (a person testing with `events/cloudtrail-*.json`).
    Iam(cloudtrail::Read),
}

impl Event {
    pub fn decode(payload: Value) -> Result<Self> {
        if let Some(records) = payload.get("Records") {
            return SqsRecord::decode_all(records).map(Event::Sqs);
        }
        if cloudtrail::is_cloudtrail(&payload) {
            return cloudtrail::read(payload).map(Event::Iam);
        }
        Invocation::decode(payload).map(Event::Check)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Invocation {
    pub dry_run: bool,
    pub grace_period_hours: Option<u32>,
    pub inventory_source: Option<Source>,
    pub scheduled: bool,
    /// A manual check of this one account.
    pub account_id: Option<String>,
    /// An event-driven check: only the users these IAM changes name, in their account.
    pub changes: Vec<IamChange>,
}

/// One SQS record as Lambda's poller hands it over; the body is read per record, so one bad body fails only
/// its own record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsRecord {
    pub message_id: String,
    pub body: String,
    /// How many times SQS has handed this message out, this time included.
    pub receive_count: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRecord {
    message_id: String,
    #[serde(default)]
    body: String,
    event_source: String,
    #[serde(default)]
    attributes: RawAttributes,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawAttributes {
    approximate_receive_count: Option<String>,
}

impl SqsRecord {
    fn decode_all(records: &Value) -> Result<Vec<SqsRecord>> {
        let records: Vec<RawRecord> =
            serde_path_to_error::deserialize(records).map_err(|error| {
                let path = error.path().to_string();
                Error::InvalidEvent(format!("field `Records{path}`: {}", error.into_inner()))
            })?;
        records
            .into_iter()
            .map(|record| {
                if record.event_source != "aws:sqs" {
                    return Err(Error::InvalidEvent(format!(
                        "a record from {:?}; keywatch reads only its SQS work queue (aws:sqs)",
                        record.event_source
                    )));
                }
                // Without it the last attempt could never be told, and its notice never sent: no default.
                let receive_count = match record.attributes.approximate_receive_count {
                    None => {
                        return Err(Error::InvalidEvent(format!(
                            "record {}: field `attributes.ApproximateReceiveCount` is missing; Lambda's SQS \
                             event source always sends it",
                            record.message_id
                        )))
                    }
                    Some(count) => count.parse().map_err(|_| {
                        Error::InvalidEvent(format!(
                            "record {}: ApproximateReceiveCount {count:?} is not a number",
                            record.message_id
                        ))
                    })?,
                };
                Ok(SqsRecord {
                    message_id: record.message_id,
                    body: record.body,
                    receive_count,
                })
            })
            .collect()
    }
}

/// The body of one fan-out message: which account to check, for which dispatch run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkItem {
    pub account_id: String,
    pub run_id: String,
    /// The account's owner tag (`OWNER_TAG_KEY`), read once at dispatch; absent when the account has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl WorkItem {
    pub fn decode(body: &str) -> Result<WorkItem> {
        let item: WorkItem = serde_json::from_str(body).map_err(|error| {
            Error::InvalidEvent(format!(
                "a work message body is not {{\"account_id\": \"123456789012\", \"run_id\": \"...\"}}: {error}"
            ))
        })?;
        if !is_account_id(&item.account_id) {
            return Err(Error::InvalidEvent(format!(
                "a work message names account {:?}, not a 12-digit account ID",
                item.account_id
            )));
        }
        Ok(item)
    }
}

/// A manual event, e.g. `{"dry_run": true, "grace_period_hours": 24}`. Unknown fields are rejected so a typo
/// (`"dryrun": true`) can never turn a dry run into a publishing one.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ManualEvent {
    #[serde(default)]
    dry_run: bool,
    grace_period_hours: Option<u32>,
    inventory_source: Option<Source>,
    account_id: Option<String>,
}

impl Invocation {
    /// What an EventBridge schedule asks for: a real check of every account in scope.
    pub const SCHEDULED: Invocation = Invocation {
        dry_run: false,
        grace_period_hours: None,
        inventory_source: None,
        scheduled: true,
        account_id: None,
        changes: Vec::new(),
    };

    /// What `{"dry_run": true}` asks for: a check that publishes, records and changes nothing.
    pub const DRY_RUN: Invocation = Invocation {
        dry_run: true,
        grace_period_hours: None,
        inventory_source: None,
        scheduled: false,
        account_id: None,
        changes: Vec::new(),
    };

    /// The users this invocation's changes name in `account_id`, each once, sorted; `None` for a check of the
    /// whole account.
    pub fn named_users(&self, account_id: &str) -> Option<Vec<String>> {
        if self.changes.is_empty() {
            return None;
        }
        let mut names: Vec<String> = self
            .changes
            .iter()
            .filter(|change| change.account_id == account_id)
            .map(|change| change.user_name.clone())
            .collect();
        names.sort();
        names.dedup();
        Some(names)
    }

    /// The latest change to `user_name` in `account_id`, for the alert's "who did it".
    pub fn change_of(&self, account_id: &str, user_name: &str) -> Option<&IamChange> {
        self.changes
            .iter()
            .filter(|change| change.account_id == account_id && change.user_name == user_name)
            .max_by(|a, b| a.event_time.cmp(&b.event_time))
    }

    /// The same invocation, read with `source` (a manual event's `inventory_source`).
    pub fn with_source(self, source: Source) -> Self {
        Invocation {
            inventory_source: Some(source),
            ..self
        }
    }

    /// The same invocation, as a dry run.
    pub fn dry(self) -> Self {
        Invocation {
            dry_run: true,
            ..self
        }
    }

    pub fn decode(payload: Value) -> Result<Self> {
        let Value::Object(fields) = &payload else {
            return Err(Error::InvalidEvent(format!(
                "expected a JSON object, got {}",
                kind_of(&payload)
            )));
        };
        // EventBridge schedules (rules and EventBridge Scheduler) send `detail-type: Scheduled Event`.
        if fields.contains_key("detail-type") || fields.contains_key("source") {
            let detail_type = fields.get("detail-type").and_then(Value::as_str);
            let source = fields.get("source").and_then(Value::as_str);
            return match (source, detail_type) {
                (Some("aws.events" | "aws.scheduler"), Some("Scheduled Event")) => {
                    Ok(Invocation::SCHEDULED)
                }
                _ => Err(Error::InvalidEvent(format!(
                    "an EventBridge event must have source \"aws.events\" and detail-type \"Scheduled Event\", got source {source:?} and detail-type {detail_type:?}"
                ))),
            };
        }
        let manual: ManualEvent = serde_path_to_error::deserialize(payload).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            if path == "." {
                Error::InvalidEvent(inner.to_string())
            } else {
                Error::InvalidEvent(format!("field `{path}`: {inner}"))
            }
        })?;
        if let Some(hours) = manual.grace_period_hours {
            if hours > MAX_GRACE_HOURS {
                return Err(Error::InvalidEvent(format!(
                    "field `grace_period_hours`: {hours} is more than {MAX_GRACE_HOURS}"
                )));
            }
        }
        // Overrides change what a run would publish and store (a longer grace period makes findings pending,
        // and the hub sync would then archive them): they are for looking, never for acting.
        if !manual.dry_run {
            let overridden: Vec<&str> = [
                ("grace_period_hours", manual.grace_period_hours.is_some()),
                ("inventory_source", manual.inventory_source.is_some()),
            ]
            .into_iter()
            .filter_map(|(field, set)| set.then_some(field))
            .collect();
            if !overridden.is_empty() {
                return Err(Error::InvalidEvent(format!(
                    "field `{}` is accepted only with \"dry_run\": true: an override must not change what is \
                     published or stored. Add \"dry_run\": true, or change GRACE_PERIOD_HOURS or INVENTORY_SOURCE",
                    overridden.join("` and `")
                )));
            }
        }
        if let Some(account) = &manual.account_id {
            if !is_account_id(account) {
                return Err(Error::InvalidEvent(format!(
                    "field `account_id`: {account:?} is not a 12-digit account ID"
                )));
            }
        }
        Ok(Invocation {
            dry_run: manual.dry_run,
            grace_period_hours: manual.grace_period_hours,
            inventory_source: manual.inventory_source,
            scheduled: false,
            account_id: manual.account_id,
            changes: Vec::new(),
        })
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepted_events() {
        let scheduled: Value = serde_json::from_str(include_str!("../events/scheduled.json"))
            .expect("events/scheduled.json is JSON");
        let manual: Value = serde_json::from_str(include_str!("../events/manual.json"))
            .expect("events/manual.json is JSON");
        let cases = [
            (
                scheduled,
                Invocation {
                    scheduled: true,
                    ..Default::default()
                },
            ),
            (
                manual,
                Invocation {
                    dry_run: true,
                    ..Default::default()
                },
            ),
            (json!({}), Invocation::default()),
            (
                json!({"dry_run": true, "grace_period_hours": 24, "inventory_source": "api"}),
                Invocation {
                    dry_run: true,
                    grace_period_hours: Some(24),
                    inventory_source: Some(Source::Api),
                    ..Default::default()
                },
            ),
            (
                json!({"account_id": "111122223333", "dry_run": true}),
                Invocation {
                    dry_run: true,
                    account_id: Some("111122223333".into()),
                    ..Default::default()
                },
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(
                Invocation::decode(event.clone()).unwrap(),
                expected,
                "{event}"
            );
        }
    }

    #[test]
    fn rejected_events_name_the_problem() {
        let cases = [
            (json!({"dry_run": "yes"}), "field `dry_run`"),
            (
                json!({"inventory_source": "cloudtrail"}),
                "field `inventory_source`",
            ),
            (json!({"dryrun": true}), "unknown field `dryrun`"),
            (
                json!({"dry_run": false, "grace_period_hours": 24}),
                "field `grace_period_hours` is accepted only with \"dry_run\": true",
            ),
            (
                json!({"inventory_source": "api"}),
                "field `inventory_source` is accepted only with \"dry_run\": true",
            ),
            (
                json!({"grace_period_hours": -1}),
                "field `grace_period_hours`",
            ),
            (
                json!({"grace_period_hours": 100000}),
                "field `grace_period_hours`",
            ),
            (json!([1, 2]), "expected a JSON object, got an array"),
            (json!(null), "got null"),
            (json!("run"), "got a string"),
            (json!({"account_id": "1111"}), "field `account_id`"),
            (json!({"account_id": 111122223333u64}), "field `account_id`"),
            (
                json!({"source": "aws.events", "detail-type": "EC2 Instance State-change Notification"}),
                "Scheduled Event",
            ),
        ];
        for (event, needle) in cases {
            match Invocation::decode(event.clone()) {
                Err(Error::InvalidEvent(message)) => {
                    assert!(message.contains(needle), "{event}: {message}")
                }
                other => panic!("{event}: expected InvalidEvent, got {other:?}"),
            }
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Any JSON: nested junk, huge strings, wrong types.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,64}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 256, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("dry_run".to_string()),
                        Just("grace_period_hours".to_string()),
                        Just("inventory_source".to_string()),
                        Just("source".to_string()),
                        Just("detail-type".to_string()),
                        ".{0,12}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn decoding_never_panics_and_only_fails_as_invalid_event(event in any_json()) {
            match Invocation::decode(event) {
                Ok(_) | Err(Error::InvalidEvent(_)) => {}
                Err(other) => prop_assert!(false, "unexpected error kind: {other:?}"),
            }
        }

        #[test]
        fn well_formed_manual_events_decode_exactly(dry_run in any::<bool>(), hours in proptest::option::of(0..=MAX_GRACE_HOURS)) {
            let mut event = serde_json::json!({ "dry_run": dry_run });
            if let Some(hours) = hours {
                event["grace_period_hours"] = hours.into();
            }
            match Invocation::decode(event) {
                Ok(invocation) => {
                    prop_assert!(dry_run || hours.is_none(), "an override without a dry run was accepted");
                    prop_assert_eq!(invocation.dry_run, dry_run);
                    prop_assert_eq!(invocation.grace_period_hours, hours);
                }
                Err(Error::InvalidEvent(message)) => {
                    prop_assert!(!dry_run && hours.is_some(), "{}", message);
                    prop_assert!(message.contains("grace_period_hours"), "{}", message);
                }
                Err(other) => prop_assert!(false, "{other:?}"),
            }
        }
    }
}

#[cfg(test)]
mod sqs {
    use super::*;
    use serde_json::json;

    fn record(id: &str, body: &str, count: &str) -> Value {
        json!({
            "messageId": id, "receiptHandle": "r", "body": body, "md5OfBody": "x",
            "attributes": {"ApproximateReceiveCount": count, "SentTimestamp": "1"},
            "messageAttributes": {}, "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:111122223333:keywatch-work", "awsRegion": "us-east-1"
        })
    }

    #[test]
    fn sqs_events_decode_per_record() {
        let body = r#"{"account_id":"111122223333","run_id":"r1"}"#;
        let event = json!({"Records": [record("m1", body, "1"), record("m2", "not json", "3")]});
        let Event::Sqs(records) = Event::decode(event).unwrap() else {
            panic!("an SQS event")
        };
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].receive_count, 3);
        let mut without = record("m3", body, "1");
        without["attributes"]
            .as_object_mut()
            .unwrap()
            .remove("ApproximateReceiveCount");
        match Event::decode(json!({ "Records": [without] })) {
            Err(Error::InvalidEvent(message)) => {
                assert!(message.contains("ApproximateReceiveCount"), "{message}")
            }
            other => panic!("a record without its receive count: {other:?}"),
        }
        assert_eq!(
            WorkItem::decode(&records[0].body).unwrap(),
            WorkItem {
                account_id: "111122223333".into(),
                run_id: "r1".into(),
                owner: None,
            }
        );
        for (body, needle) in [
            ("not json", "is not {"),
            (r#"{"account_id":"1","run_id":"r"}"#, "not a 12-digit"),
            (r#"{"account_id":"111122223333"}"#, "missing field `run_id`"),
            (
                r#"{"account_id":"111122223333","run_id":"r","x":1}"#,
                "unknown field",
            ),
        ] {
            match WorkItem::decode(body) {
                Err(Error::InvalidEvent(message)) => {
                    assert!(message.contains(needle), "{body}: {message}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn records_from_elsewhere_are_rejected() {
        let mut other = record("m1", "{}", "1");
        other["eventSource"] = json!("aws:kinesis");
        assert!(matches!(
            Event::decode(json!({"Records": [other]})),
            Err(Error::InvalidEvent(m)) if m.contains("aws:kinesis")
        ));
        assert!(matches!(
            Event::decode(json!({"Records": "x"})),
            Err(Error::InvalidEvent(m)) if m.contains("Records")
        ));
    }
}
