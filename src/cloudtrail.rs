//! IAM's CloudTrail events, as EventBridge delivers them (`AWS API Call via CloudTrail`, source `aws.iam`): which
//! user an IAM change touched, in which account, and who made it. An event is only a hint of whom to check: every
//! verdict still comes from live IAM reads, so a forged event can at most cause a check of a user in scope.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::fleet::is_account_id;
use crate::error::{Error, Result};

pub const DETAIL_TYPE: &str = "AWS API Call via CloudTrail";
pub const SOURCE: &str = "aws.iam";
pub const EVENT_SOURCE: &str = "iam.amazonaws.com";

/// The calls that can make a finding, or resolve one: what the template's rule matches.
pub const EVENT_NAMES: [&str; 9] = [
    "CreateAccessKey",
    "UpdateAccessKey",
    "CreateLoginProfile",
    "TagUser",
    "UntagUser",
    "CreateUser",
    "DeleteAccessKey",
    "DeleteLoginProfile",
    "DeleteUser",
];

/// The EventBridge pattern of these events: what the template's rule (and the forwarder's) must match.
pub fn event_pattern() -> Value {
    serde_json::json!({
        "source": [SOURCE],
        "detail-type": [DETAIL_TYPE],
        "detail": {
            "eventSource": [EVENT_SOURCE],
            "eventName": EVENT_NAMES,
        }
    })
}

/// One IAM change: the user to check again, and who did what, for the alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IamChange {
    pub account_id: String,
    pub user_name: String,
    pub event_name: String,
    /// `detail.userIdentity.arn`: who made the call.
    pub actor_arn: String,
    pub event_time: String,
    pub source_ip: String,
    /// The caller acted on their own user (a key created by the user for themselves).
    pub by_self: bool,
    pub event_id: String,
}

impl IamChange {
    /// The change as an EventBridge CloudTrail event again, which [`read`] reads back as the same change: what a
    /// re-check schedule puts on the event queue.
    pub fn as_event(&self) -> Value {
        let caller = if self.by_self {
            serde_json::json!({"type": "IAMUser", "arn": self.actor_arn, "accountId": self.account_id,
                               "userName": self.user_name})
        } else {
            serde_json::json!({"type": "Unknown", "arn": self.actor_arn})
        };
        serde_json::json!({
            "version": "0",
            "id": self.event_id,
            "detail-type": DETAIL_TYPE,
            "source": SOURCE,
            "account": self.account_id,
            "detail": {
                "eventSource": EVENT_SOURCE,
                "eventName": self.event_name,
                "eventTime": self.event_time,
                "sourceIPAddress": self.source_ip,
                "eventID": self.event_id,
                "recipientAccountId": self.account_id,
                "userIdentity": caller,
                "requestParameters": {"userName": self.user_name},
            }
        })
    }
}

/// What one event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// Check this user again.
    Check(IamChange),
    /// Nothing to check, and why (a failed call changes nothing).
    Skip(String),
}

#[derive(Deserialize)]
struct Envelope {
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    detail: Detail,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    event_source: String,
    event_name: String,
    #[serde(default)]
    event_time: String,
    #[serde(default, rename = "sourceIPAddress")]
    source_ip_address: String,
    #[serde(rename = "eventID", default)]
    event_id: String,
    recipient_account_id: String,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    user_identity: Identity,
    #[serde(default)]
    request_parameters: Option<Value>,
    #[serde(default)]
    response_elements: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Identity {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    arn: String,
    #[serde(default)]
    account_id: String,
    #[serde(default)]
    user_name: Option<String>,
}

/// Whether `payload` is shaped as an EventBridge CloudTrail event at all (its `detail-type`).
pub fn is_cloudtrail(payload: &Value) -> bool {
    payload.get("detail-type").and_then(Value::as_str) == Some(DETAIL_TYPE)
}

/// Whether an SQS body is an EventBridge CloudTrail event rather than a work item: its `detail-type` says so
/// (a body that is not JSON is neither, and fails as a work item does).
pub fn is_cloudtrail_body(body: &str) -> bool {
    body.contains(DETAIL_TYPE)
        && serde_json::from_str::<Value>(body).is_ok_and(|payload| is_cloudtrail(&payload))
}

/// Reads one event. A body that is not an IAM CloudTrail event is an error naming what is missing.
pub fn read(payload: Value) -> Result<Read> {
    let envelope: Envelope = serde_path_to_error::deserialize(payload).map_err(|error| {
        let path = error.path().to_string();
        Error::InvalidEvent(format!(
            "a CloudTrail event's field `{path}`: {}; keywatch reads EventBridge's \"{DETAIL_TYPE}\" events of \
             {SOURCE}",
            error.into_inner()
        ))
    })?;
    let detail = envelope.detail;
    if envelope.source != SOURCE
        || envelope.detail_type != DETAIL_TYPE
        || detail.event_source != EVENT_SOURCE
    {
        return Err(Error::InvalidEvent(format!(
            "an event of source {:?}, detail-type {:?} and eventSource {:?}; keywatch reads only {SOURCE} \
             \"{DETAIL_TYPE}\" events from {EVENT_SOURCE}",
            envelope.source, envelope.detail_type, detail.event_source
        )));
    }
    if let Some(code) = detail.error_code {
        return Ok(Read::Skip(format!(
            "{} failed ({code}): a failed call changes nothing",
            detail.event_name
        )));
    }
    if !is_account_id(&detail.recipient_account_id) {
        return Err(Error::InvalidEvent(format!(
            "a CloudTrail event's recipientAccountId {:?} is not a 12-digit account ID",
            detail.recipient_account_id
        )));
    }
    let text = |value: Option<&Value>, path: &[&str]| -> Option<String> {
        let mut at = value?;
        for key in path {
            at = at.get(key)?;
        }
        at.as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let identity = &detail.user_identity;
    // The caller's own user, when the caller is an IAM user of this account.
    let caller = identity.user_name.clone().filter(|_| {
        identity.kind == "IAMUser" && identity.account_id == detail.recipient_account_id
    });
    let named = text(detail.request_parameters.as_ref(), &["userName"]).or_else(|| {
        text(
            detail.response_elements.as_ref(),
            &["accessKey", "userName"],
        )
    });
    let Some(user_name) = named.clone().or_else(|| caller.clone()) else {
        return Err(Error::InvalidEvent(format!(
            "{} event {}: no user in requestParameters.userName, responseElements.accessKey.userName or an IAM \
             user as the caller",
            detail.event_name, detail.event_id
        )));
    };
    Ok(Read::Check(IamChange {
        account_id: detail.recipient_account_id,
        by_self: caller.as_deref() == Some(user_name.as_str()),
        user_name,
        event_name: detail.event_name,
        actor_arn: identity.arn.clone(),
        event_time: detail.event_time,
        source_ip: detail.source_ip_address,
        event_id: detail.event_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/cloudtrail/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(
            &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
        )
        .unwrap()
    }

    /// The shared fixtures, as AWS documents the events: the user from requestParameters, else the response,
    /// else the caller; a failed call skipped; who made each change.
    #[test]
    fn each_fixture_reads_as_its_change() {
        let check = |name: &str| match read(fixture(name)).unwrap() {
            Read::Check(change) => change,
            other => panic!("{name}: {other:?}"),
        };
        let other = check("create-access-key-for-another-user.json");
        assert_eq!(
            (
                other.user_name.as_str(),
                other.by_self,
                other.actor_arn.as_str()
            ),
            (
                "new-hire",
                false,
                "arn:aws:iam::111122223333:user/ops-admin"
            )
        );
        assert_eq!(other.account_id, "111122223333");
        assert_eq!(other.source_ip, "198.51.100.23");
        assert_eq!(other.event_time, "2026-11-30T10:02:41Z");
        let own = check("create-access-key-for-self.json");
        assert_eq!((own.user_name.as_str(), own.by_self), ("dev-sam", true));
        assert_eq!(check("create-login-profile.json").user_name, "svc-build");
        assert_eq!(
            check("update-access-key-reactivated.json").event_name,
            "UpdateAccessKey"
        );
        assert!(matches!(
            read(fixture("create-access-key-failed.json")).unwrap(),
            Read::Skip(why) if why.contains("failed")
        ));
    }

    /// A change written back as an event (a re-check's) reads as the same change.
    #[test]
    fn a_change_round_trips_through_its_event() {
        for name in [
            "create-access-key-for-another-user.json",
            "create-access-key-for-self.json",
            "create-login-profile.json",
        ] {
            let Read::Check(change) = read(fixture(name)).unwrap() else {
                panic!("{name}")
            };
            assert_eq!(
                read(change.as_event()).unwrap(),
                Read::Check(change),
                "{name}"
            );
        }
    }

    #[test]
    fn events_it_cannot_read_say_why() {
        let mut event = fixture("create-access-key-for-another-user.json");
        event["detail"]["eventSource"] = "sts.amazonaws.com".into();
        assert!(read(event).unwrap_err().to_string().contains("eventSource"));
        let mut event = fixture("create-access-key-for-another-user.json");
        event["detail"]["requestParameters"] = Value::Null;
        event["detail"]["responseElements"] = Value::Null;
        event["detail"]["userIdentity"] = serde_json::json!({"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/admin/x"});
        let error = read(event).unwrap_err().to_string();
        assert!(error.contains("no user"), "{error}");
        let mut event = fixture("create-access-key-for-another-user.json");
        event["detail"]["recipientAccountId"] = "1111".into();
        assert!(read(event)
            .unwrap_err()
            .to_string()
            .contains("recipientAccountId"));
        let error = read(serde_json::json!({"detail-type": DETAIL_TYPE})).unwrap_err();
        assert!(error.to_string().contains("source"), "{error}");
    }
}
