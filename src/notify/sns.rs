//! The SNS sink. One publish per alert part, with `MessageStructure=json`: email subscribers get plain text,
//! every other protocol (SQS, Lambda, HTTPS) the JSON document under `default`.

use aws_sdk_sns::Client as SnsClient;

use super::render::{render_parts, AlertPart};
use super::Sink;
use crate::aws::aws_error;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::report::{Notification, Report};

#[derive(Debug, Clone)]
pub struct SnsSink {
    pub client: SnsClient,
    pub topic_arn: String,
}

impl SnsSink {
    pub async fn publish_part(&self, part: &AlertPart) -> Result<String> {
        let out = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&part.subject)
            .message_structure("json")
            .message(&part.message)
            .send()
            .await
            .map_err(|e| aws_error("sns:Publish", e))?;
        Ok(out.message_id.unwrap_or_default())
    }
}

impl Sink for SnsSink {
    /// Tries every part, so as much as possible is delivered, then fails if any part failed.
    async fn publish(&self, report: &Report, deadline: &Deadline) -> Result<Vec<Notification>> {
        let parts = render_parts(report)?;
        let mut delivered = Vec::new();
        let mut failures = Vec::new();
        for part in &parts {
            match deadline
                .run("publishing the alert", self.publish_part(part))
                .await
            {
                Ok(message_id) => {
                    tracing::info!(
                        part = part.part,
                        parts = part.parts,
                        message_id,
                        "alert part published"
                    );
                    delivered.push(Notification {
                        part: part.part,
                        parts: part.parts,
                        message_id,
                    });
                }
                Err(error) => {
                    tracing::error!(part = part.part, parts = part.parts, %error, "alert part not published");
                    failures.push((part.part, error));
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
                delivered: delivered.iter().map(|n| n.part).collect(),
                cause: Box::new(cause),
            }),
        }
    }
}
