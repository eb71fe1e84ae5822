//! The SNS sink. One publish per alert part, with `MessageStructure=json`: email subscribers get plain text,
//! HTTPS subscribers a chat custom notification with `CHAT_NOTIFICATIONS=custom`, and every other protocol
//! (SQS, Lambda, HTTPS otherwise) the JSON document under `default`. Every publish carries message
//! attributes (`account_id`, `kind`, `findings`, `alert_id`, and `owner` when routing by owner), so a
//! subscription's filter policy picks what reaches it, and a subscriber drops a duplicate by `alert_id`.

use std::collections::BTreeMap;

use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sns::Client as SnsClient;

use super::render::{render_parts, AlertPart};
use super::when::Kind;
use super::Sink;
use crate::aws::aws_error;
use crate::config::Chat;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::report::{Notification, Report};

/// The longest owner attribute, in characters: an IAM tag value's limit. A longer one is cut, ending in
/// [`CUT_MARKER`]; the message body keeps it whole.
pub const MAX_OWNER_CHARS: usize = 256;
pub const CUT_MARKER: &str = "…";

#[derive(Debug, Clone)]
pub struct SnsSink {
    pub client: SnsClient,
    pub topic_arn: String,
    /// `CHAT_NOTIFICATIONS`: whether the `https` variant is a chat custom notification.
    pub chat: Chat,
    /// `OWNER_TOPIC_ARNS`: owners whose alerts also go to a topic of their own.
    pub owner_topics: BTreeMap<String, String>,
}

/// What a publish says about itself, for subscription filter policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes<'a> {
    pub account_id: &'a str,
    /// `None` when routing by owner is off: no `owner` attribute at all.
    pub owner: Option<&'a str>,
    pub kind: Kind,
    pub findings: usize,
}

impl Attributes<'_> {
    /// As SNS takes them: names, types and values within SNS's limits.
    pub fn to_sns(&self) -> Result<Vec<(&'static str, MessageAttributeValue)>> {
        let string = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| Error::Render(e.to_string()))
        };
        let mut attributes = vec![
            ("account_id", string(self.account_id)?),
            ("kind", string(self.kind.as_str())?),
            (
                "findings",
                MessageAttributeValue::builder()
                    .data_type("Number")
                    .string_value(self.findings.to_string())
                    .build()
                    .map_err(|e| Error::Render(e.to_string()))?,
            ),
        ];
        if let Some(owner) = self.owner {
            attributes.push(("owner", string(&owner_attribute(owner))?));
        }
        Ok(attributes)
    }
}

fn string_attribute(value: &str) -> Result<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| Error::Render(e.to_string()))
}

/// The owner as an attribute value: never empty, at most [`MAX_OWNER_CHARS`] characters.
pub fn owner_attribute(owner: &str) -> String {
    if owner.chars().count() <= MAX_OWNER_CHARS {
        return owner.to_string();
    }
    let keep = MAX_OWNER_CHARS - CUT_MARKER.chars().count();
    owner.chars().take(keep).chain(CUT_MARKER.chars()).collect()
}

impl SnsSink {
    /// The findings topic, and the owner's own topic when `OWNER_TOPIC_ARNS` names one.
    pub fn topics<'a>(&'a self, owner: Option<&str>) -> impl Iterator<Item = (&'a str, bool)> {
        std::iter::once((self.topic_arn.as_str(), false)).chain(
            owner
                .and_then(|owner| self.owner_topics.get(owner))
                .map(|arn| (arn.as_str(), true)),
        )
    }

    pub async fn publish_part(
        &self,
        topic_arn: &str,
        part: &AlertPart,
        attributes: &Attributes<'_>,
    ) -> Result<String> {
        let out = self
            .client
            .publish()
            .topic_arn(topic_arn)
            .subject(&part.subject)
            .message_structure("json")
            .message(&part.message)
            .set_message_attributes(Some(
                attributes
                    .to_sns()?
                    .into_iter()
                    .chain([("alert_id", string_attribute(&part.alert_id)?)])
                    .map(|(name, value)| (name.to_string(), value))
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| aws_error("sns:Publish", e))?;
        Ok(out.message_id.unwrap_or_default())
    }
}

impl Sink for SnsSink {
    /// Tries every part, so as much as possible is delivered, then fails if any part failed.
    async fn publish(
        &self,
        report: &Report,
        kind: Kind,
        deadline: &Deadline,
    ) -> Result<Vec<Notification>> {
        let parts = render_parts(report, kind, self.chat)?;
        let attributes = Attributes {
            account_id: &report.account_id,
            owner: report.owner.as_deref(),
            kind,
            findings: report.findings.len(),
        };
        let mut delivered = Vec::new();
        let mut failures = Vec::new();
        for (topic_arn, owners_own) in self.topics(report.owner.as_deref()) {
            for part in &parts {
                match deadline
                    .run(
                        "publishing the alert",
                        self.publish_part(topic_arn, part, &attributes),
                    )
                    .await
                {
                    Ok(message_id) => {
                        tracing::info!(
                            part = part.part,
                            parts = part.parts,
                            owner = report.owner.as_deref(),
                            topic_arn,
                            message_id,
                            "alert part published"
                        );
                        delivered.push(Notification {
                            part: part.part,
                            parts: part.parts,
                            message_id,
                            owner: report.owner.clone(),
                            owner_topic_arn: owners_own.then(|| topic_arn.to_string()),
                        });
                    }
                    Err(error) => {
                        tracing::error!(part = part.part, parts = part.parts, topic_arn, %error, "alert part not published");
                        failures.push((part.part, error));
                    }
                }
            }
        }
        let mut failures = failures.into_iter();
        match failures.next() {
            None => Ok(delivered),
            Some((first, cause)) => Err(Error::Publish {
                run_id: report.run_id.clone(),
                parts: parts.len(),
                failed: std::iter::once(first)
                    .chain(failures.map(|(part, _)| part))
                    .collect(),
                delivered: delivered
                    .iter()
                    .filter(|n| n.owner_topic_arn.is_none())
                    .map(|n| n.part)
                    .collect(),
                cause: Box::new(cause),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_stay_within_snss_limits() {
        assert_eq!(owner_attribute("team-a"), "team-a");
        let exact = "é".repeat(MAX_OWNER_CHARS);
        assert_eq!(owner_attribute(&exact), exact, "256 characters pass whole");
        let cut = owner_attribute(&"x".repeat(1_000));
        assert_eq!(cut.chars().count(), MAX_OWNER_CHARS);
        assert!(cut.ends_with(CUT_MARKER));
        let attributes = Attributes {
            account_id: "123456789012",
            owner: None,
            kind: Kind::Findings,
            findings: 3,
        }
        .to_sns()
        .unwrap();
        let names: Vec<&str> = attributes.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            ["account_id", "kind", "findings"],
            "no owner when routing is off"
        );
        assert_eq!(attributes[2].1.data_type(), "Number");
    }
}
