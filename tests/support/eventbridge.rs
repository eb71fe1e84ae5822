//! moto's own EventBridge, as AWS routes IAM's CloudTrail events: a rule on the default bus with a pattern, an SQS
//! target, and events put onto the bus. Through boto3 in the project's venv (moto's own dependency): the Rust
//! SDK's EventBridge crate is not linked for this one use.

use crate::venv_tool;

const SCRIPT: &str = r#"
import boto3, json, sys
endpoint, pattern, queue_arn, events = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
client = boto3.client("events", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
client.put_rule(Name="keywatch-iam-events", EventPattern=pattern, State="ENABLED")
client.put_targets(Rule="keywatch-iam-events", Targets=[{"Id": "events-queue", "Arn": queue_arn}])
entries = [{"Source": e["source"], "DetailType": e["detail-type"], "Detail": json.dumps(e["detail"]),
            "Resources": e.get("resources", [])} for e in events]
for start in range(0, len(entries), 10):
    out = client.put_events(Entries=entries[start:start + 10])
    assert out["FailedEntryCount"] == 0, out
"#;

/// A rule with `pattern` on moto's default bus that targets `queue_arn`, then each of `events` (EventBridge
/// envelopes, as AWS delivers them) put onto the bus: the queue receives those the pattern matches.
pub fn route_through_rule(
    endpoint: &str,
    pattern: &serde_json::Value,
    queue_arn: &str,
    events: &[serde_json::Value],
) {
    let output = std::process::Command::new(venv_tool("python"))
        .args([
            "-c",
            SCRIPT,
            endpoint,
            &pattern.to_string(),
            queue_arn,
            &serde_json::Value::from(events.to_vec()).to_string(),
        ])
        .output()
        .unwrap_or_else(|e| panic!("the venv's python runs (make tools installs it): {e}"));
    assert!(
        output.status.success(),
        "EventBridge through boto3 against moto failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
