//! Findings in AWS Security Hub (`SECURITY_HUB=true`), in the checked account's own hub: one ASFF finding per
//! key with a stable ID, and a lifecycle. After a successful check, each of keywatch's ACTIVE findings in that
//! account that this run did not report again is re-imported ARCHIVED and PASSED, as Prowler does. A failed
//! check never gets here, so it archives nothing.
//!
//! ASFF is built from serde types ([`Asff`]) and validated here, because Security Hub emulators accept almost
//! anything; the SDK call takes the same values.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_securityhub::types as sdk;
use aws_sdk_securityhub::Client as HubClient;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::aws::aws_error;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::evaluate::{never_used_key, Finding};
use crate::model::path_from_arn;
use crate::notify::render;
use crate::report::{HubSync, Report, RuleSettings};

pub const SCHEMA_VERSION: &str = "2018-10-08";
/// BatchImportFindings takes at most 100 findings a call.
pub const IMPORT_BATCH: usize = 100;
pub const FINDING_TYPE: &str =
    "Software and Configuration Checks/Industry and Regulatory Standards/CIS AWS Foundations Benchmark";
/// The item is 1.11 in v1.4.0 to v4.0.0; it moved to 1.10 in v5.0.0 and to 2.10 in v6.0.0.
pub const RELATED_REQUIREMENTS: [&str; 7] = [
    "CIS AWS Foundations Benchmark v1.4.0/1.11",
    "CIS AWS Foundations Benchmark v1.5.0/1.11",
    "CIS AWS Foundations Benchmark v2.0.0/1.11",
    "CIS AWS Foundations Benchmark v3.0.0/1.11",
    "CIS AWS Foundations Benchmark v4.0.0/1.11",
    "CIS AWS Foundations Benchmark v5.0.0/1.10",
    "CIS AWS Foundations Benchmark v6.0.0/2.10",
];
const REMEDIATION_URL: &str =
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_access-keys.html#Using_CreateAccessKey";

/// A finding's control as Security Hub names requirements: `CIS AWS v4.0.1 1.12` becomes
/// `CIS AWS Foundations Benchmark v4.0.1/1.12`; AWS's own controls stay as they are.
fn requirement(control: &str) -> String {
    control
        .strip_prefix("CIS AWS ")
        .and_then(|rest| rest.split_once(' '))
        .map_or_else(
            || control.to_string(),
            |(version, item)| format!("CIS AWS Foundations Benchmark {version}/{item}"),
        )
}

/// The key's status as the finding shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    /// Deactivated by keywatch in this run.
    Inactive,
}

impl KeyStatus {
    fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "Active",
            KeyStatus::Inactive => "Inactive",
        }
    }
}

/// Where findings go: the checked account's hub in the function's region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hub {
    pub partition: String,
    pub region: String,
    pub account_id: String,
}

impl Hub {
    /// The account's default custom product: only the account itself may import findings under it.
    pub fn product_arn(&self) -> String {
        format!(
            "arn:{p}:securityhub:{r}:{a}:product/{a}/default",
            p = self.partition,
            r = self.region,
            a = self.account_id
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Asff {
    pub schema_version: &'static str,
    pub id: String,
    pub product_arn: String,
    pub generator_id: String,
    pub aws_account_id: String,
    pub region: String,
    pub types: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub severity: Severity,
    pub title: String,
    pub description: String,
    pub resources: Vec<Resource>,
    pub compliance: Compliance,
    pub remediation: Remediation,
    pub finding_provider_fields: FindingProviderFields,
    pub record_state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Severity {
    pub label: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Compliance {
    pub status: &'static str,
    pub related_requirements: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Remediation {
    pub recommendation: Recommendation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Recommendation {
    pub text: String,
    pub url: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FindingProviderFields {
    pub severity: Severity,
    pub types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resource {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub id: String,
    pub partition: String,
    pub region: String,
    pub details: ResourceDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_iam_access_key: Option<AccessKeyDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_iam_user: Option<UserDetails>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessKeyDetails {
    pub access_key_id: String,
    pub principal_name: String,
    pub principal_type: &'static str,
    pub account_id: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserDetails {
    pub user_name: String,
    pub path: String,
    pub create_date: String,
}

fn rfc3339(time: OffsetDateTime) -> Result<String> {
    time.format(&Rfc3339)
        .map_err(|e| Error::Render(format!("a finding time: {e}")))
}

impl Asff {
    /// The ASFF of one finding. `created_at` is when keywatch first reported it (kept across runs).
    pub fn of(
        finding: &Finding,
        settings: &RuleSettings,
        key_status: KeyStatus,
        hub: &Hub,
        created_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Asff> {
        let severity = || Severity { label: "MEDIUM" };
        let types = vec![FINDING_TYPE.to_string()];
        let rule = RuleSettings::rule_of(finding).filter(|rule| rule.id() != never_used_key::ID);
        // Today's rule keeps the words its findings have always had; the others take their own.
        let (title, description, requirements, remediation) = match rule {
            None => (
                format!(
                    "Never-used access key {} on console user {}",
                    finding.access_key_id, finding.user_name
                ),
                format!(
                    "IAM user {} has a console password and an Active access key ({}) that has never been used. \
                     CIS AWS Foundations: do not create access keys during initial setup for IAM users with a \
                     console password. An unused key is an unmonitored way into the account.",
                    finding.user_name, finding.access_key_id
                ),
                RELATED_REQUIREMENTS.map(str::to_string).to_vec(),
                format!(
                    "Delete the key if nothing uses it: aws iam delete-access-key --user-name {} --access-key-id {}. \
                     Stop creating access keys when creating console users.",
                    finding.user_name, finding.access_key_id
                ),
            ),
            Some(rule) => {
                let words = rule.words();
                (
                    format!(
                        "{}: {} of user {}",
                        settings.fill(words.hub_title),
                        finding.access_key_id,
                        finding.user_name
                    ),
                    format!(
                        "IAM user {}, key {}: {}. {}",
                        finding.user_name,
                        finding.access_key_id,
                        render::evidence(finding),
                        settings.fill(words.why).replace('\n', " ")
                    ),
                    finding.controls.iter().map(|c| requirement(c)).collect(),
                    format!("{} {}", words.hub_remediation, render::fix_line(finding)),
                )
            }
        };
        let asff = Asff {
            schema_version: SCHEMA_VERSION,
            id: finding.finding_id.clone(),
            product_arn: hub.product_arn(),
            generator_id: finding.rule.to_string(),
            aws_account_id: hub.account_id.clone(),
            region: hub.region.clone(),
            types: types.clone(),
            created_at: rfc3339(created_at)?,
            updated_at: rfc3339(now)?,
            severity: severity(),
            title,
            description,
            resources: vec![
                Resource {
                    kind: "AwsIamAccessKey",
                    id: format!("AWS::IAM::AccessKey:{}", finding.access_key_id),
                    partition: hub.partition.clone(),
                    region: hub.region.clone(),
                    details: ResourceDetails {
                        aws_iam_access_key: Some(AccessKeyDetails {
                            access_key_id: finding.access_key_id.clone(),
                            principal_name: finding.user_name.clone(),
                            principal_type: "IAMUser",
                            account_id: hub.account_id.clone(),
                            status: key_status.as_str(),
                            created_at: finding.key_created.map(rfc3339).transpose()?,
                        }),
                        aws_iam_user: None,
                    },
                },
                Resource {
                    kind: "AwsIamUser",
                    id: finding.user_arn.clone(),
                    partition: hub.partition.clone(),
                    region: hub.region.clone(),
                    details: ResourceDetails {
                        aws_iam_access_key: None,
                        aws_iam_user: Some(UserDetails {
                            user_name: finding.user_name.clone(),
                            path: path_from_arn(&finding.user_arn),
                            create_date: rfc3339(finding.user_created)?,
                        }),
                    },
                },
            ],
            compliance: Compliance {
                status: "FAILED",
                related_requirements: requirements,
            },
            remediation: Remediation {
                recommendation: Recommendation {
                    text: remediation,
                    url: REMEDIATION_URL,
                },
            },
            finding_provider_fields: FindingProviderFields {
                severity: severity(),
                types,
            },
            record_state: "ACTIVE",
        };
        asff.validate()?;
        Ok(asff)
    }

    /// What Security Hub requires and limits; emulators check none of it.
    pub fn validate(&self) -> Result<()> {
        let invalid =
            |what: String| Err(Error::Render(format!("ASFF finding {}: {what}", self.id)));
        let required = [
            ("Id", &self.id),
            ("ProductArn", &self.product_arn),
            ("GeneratorId", &self.generator_id),
            ("AwsAccountId", &self.aws_account_id),
            ("CreatedAt", &self.created_at),
            ("UpdatedAt", &self.updated_at),
            ("Title", &self.title),
            ("Description", &self.description),
        ];
        for (field, value) in required {
            if value.is_empty() {
                return invalid(format!("{field} is empty"));
            }
        }
        for (field, value, max) in [
            ("Id", &self.id, 512),
            ("GeneratorId", &self.generator_id, 512),
            ("Title", &self.title, 256),
            ("Description", &self.description, 1024),
        ] {
            if value.chars().count() > max {
                return invalid(format!("{field} is longer than {max} characters"));
            }
        }
        if self.types.is_empty() || self.resources.is_empty() {
            return invalid("Types and Resources must not be empty".to_string());
        }
        if self.aws_account_id.len() != 12 || !self.product_arn.contains(":securityhub:") {
            return invalid(format!(
                "AwsAccountId {:?} or ProductArn {:?} is malformed",
                self.aws_account_id, self.product_arn
            ));
        }
        for time in [&self.created_at, &self.updated_at] {
            OffsetDateTime::parse(time, &Rfc3339).map_err(|e| {
                Error::Render(format!(
                    "ASFF finding {}: {time:?} is not RFC 3339: {e}",
                    self.id
                ))
            })?;
        }
        Ok(())
    }

    /// The same values, as the SDK sends them.
    pub fn to_sdk(&self) -> sdk::AwsSecurityFinding {
        let resources = self
            .resources
            .iter()
            .map(|r| {
                let details = sdk::ResourceDetails::builder()
                    .set_aws_iam_access_key(r.details.aws_iam_access_key.as_ref().map(|k| {
                        sdk::AwsIamAccessKeyDetails::builder()
                            .access_key_id(&k.access_key_id)
                            .principal_name(&k.principal_name)
                            .principal_type(k.principal_type)
                            .account_id(&k.account_id)
                            .status(sdk::AwsIamAccessKeyStatus::from(k.status))
                            .set_created_at(k.created_at.clone())
                            .build()
                    }))
                    .set_aws_iam_user(r.details.aws_iam_user.as_ref().map(|u| {
                        sdk::AwsIamUserDetails::builder()
                            .user_name(&u.user_name)
                            .path(&u.path)
                            .create_date(&u.create_date)
                            .build()
                    }))
                    .build();
                sdk::Resource::builder()
                    .r#type(r.kind)
                    .id(&r.id)
                    .partition(sdk::Partition::from(r.partition.as_str()))
                    .region(&r.region)
                    .details(details)
                    .build()
            })
            .collect();
        let label = |s: &Severity| sdk::SeverityLabel::from(s.label);
        sdk::AwsSecurityFinding::builder()
            .schema_version(self.schema_version)
            .id(&self.id)
            .product_arn(&self.product_arn)
            .generator_id(&self.generator_id)
            .aws_account_id(&self.aws_account_id)
            .region(&self.region)
            .set_types(Some(self.types.clone()))
            .created_at(&self.created_at)
            .updated_at(&self.updated_at)
            .severity(
                sdk::Severity::builder()
                    .label(label(&self.severity))
                    .build(),
            )
            .title(&self.title)
            .description(&self.description)
            .set_resources(Some(resources))
            .compliance(
                sdk::Compliance::builder()
                    .status(sdk::ComplianceStatus::from(self.compliance.status))
                    .set_related_requirements(Some(self.compliance.related_requirements.clone()))
                    .build(),
            )
            .remediation(
                sdk::Remediation::builder()
                    .recommendation(
                        sdk::Recommendation::builder()
                            .text(&self.remediation.recommendation.text)
                            .url(self.remediation.recommendation.url)
                            .build(),
                    )
                    .build(),
            )
            .finding_provider_fields(
                sdk::FindingProviderFields::builder()
                    .severity(
                        sdk::FindingProviderSeverity::builder()
                            .label(label(&self.finding_provider_fields.severity))
                            .build(),
                    )
                    .set_types(Some(self.finding_provider_fields.types.clone()))
                    .build(),
            )
            .record_state(sdk::RecordState::from(self.record_state))
            .build()
    }
}

/// Imports this run's findings (keeping each one's first `CreatedAt`) and archives keywatch's ACTIVE findings
/// in this account that the run did not report again: fixed keys, deleted keys, exempted keys.
pub async fn sync(
    client: &HubClient,
    hub: &Hub,
    report: &Report,
    deadline: &Deadline,
) -> Result<HubSync> {
    let now = report.checked_at;
    let existing = deadline
        .run(
            "reading Security Hub findings",
            active_findings(client, hub, &report.rule_settings.rules),
        )
        .await?;
    // An event-driven check archives only what it could see: its own users' findings.
    let existing: Vec<sdk::AwsSecurityFinding> = match &report.users_checked {
        None => existing,
        Some(users) => existing
            .into_iter()
            .filter(|f| {
                f.id.as_deref()
                    .and_then(|id| id.split('/').nth(1))
                    .is_some_and(|user| users.iter().any(|u| u == user))
            })
            .collect(),
    };
    let first_seen: BTreeMap<&str, OffsetDateTime> = existing
        .iter()
        .filter_map(|f| {
            let created = OffsetDateTime::parse(f.created_at.as_deref()?, &Rfc3339).ok()?;
            Some((f.id.as_deref()?, created))
        })
        .collect();
    let current: Vec<Asff> = report
        .findings
        .iter()
        .map(|finding| {
            let created = first_seen
                .get(finding.finding_id.as_str())
                .copied()
                .unwrap_or(now);
            // A key deactivated in this run is a finding still, and shows its true status until it is archived.
            let status = if report
                .remediated
                .iter()
                .any(|r| r.finding_id == finding.finding_id)
            {
                KeyStatus::Inactive
            } else {
                KeyStatus::Active
            };
            Asff::of(finding, &report.rule_settings, status, hub, created, now)
        })
        .collect::<Result<_>>()?;
    let reported: BTreeSet<&str> = current.iter().map(|f| f.id.as_str()).collect();
    let updated_at = rfc3339(now)?;
    let archived: Vec<sdk::AwsSecurityFinding> = existing
        .iter()
        .filter(|f| f.id.as_deref().is_some_and(|id| !reported.contains(id)))
        .cloned()
        .map(|mut finding| {
            finding.record_state = Some(sdk::RecordState::Archived);
            finding.updated_at = Some(updated_at.clone());
            let requirements = finding
                .compliance
                .as_ref()
                .and_then(|c| c.related_requirements.clone());
            finding.compliance = Some(
                sdk::Compliance::builder()
                    .status(sdk::ComplianceStatus::Passed)
                    .set_related_requirements(requirements)
                    .build(),
            );
            finding
        })
        .collect();
    let sync = HubSync {
        imported: current.len(),
        archived: archived.len(),
    };
    let all: Vec<sdk::AwsSecurityFinding> =
        current.iter().map(Asff::to_sdk).chain(archived).collect();
    for batch in all.chunks(IMPORT_BATCH) {
        let out = deadline
            .run("importing Security Hub findings", async {
                client
                    .batch_import_findings()
                    .set_findings(Some(batch.to_vec()))
                    .send()
                    .await
                    .map_err(|e| aws_error("securityhub:BatchImportFindings", e))
            })
            .await?;
        let failed = out.failed_findings.unwrap_or_default();
        if let Some(first) = failed.first() {
            return Err(Error::SecurityHub {
                failed: failed
                    .iter()
                    .map(|f| f.id.clone().unwrap_or_else(|| "(no ID)".to_string()))
                    .collect(),
                cause: format!(
                    "{}: {}",
                    first.error_code.as_deref().unwrap_or("no error code"),
                    first.error_message.as_deref().unwrap_or("no message")
                ),
            });
        }
    }
    Ok(sync)
}

/// keywatch's ACTIVE findings in this account: filtered by the API and again here, since an emulator may not
/// filter at all.
/// Only the findings of `rules`, the rules this check ran: each rule's findings are archived by its own checks,
/// and a rule turned off leaves its findings as they were, never PASSED unchecked.
async fn active_findings(
    client: &HubClient,
    hub: &Hub,
    rules: &[&str],
) -> Result<Vec<sdk::AwsSecurityFinding>> {
    let equals = |value: &str| {
        sdk::StringFilter::builder()
            .value(value)
            .comparison(sdk::StringFilterComparison::Equals)
            .build()
    };
    let product_arn = hub.product_arn();
    let mut filters = sdk::AwsSecurityFindingFilters::builder()
        .product_arn(equals(&product_arn))
        .aws_account_id(equals(&hub.account_id))
        .record_state(equals("ACTIVE"));
    for rule in rules {
        filters = filters.generator_id(equals(rule));
    }
    let mut pages = client
        .get_findings()
        .filters(filters.build())
        .max_results(100)
        .into_paginator()
        .send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error("securityhub:GetFindings", e))?;
        found.extend(page.findings.unwrap_or_default().into_iter().filter(|f| {
            f.product_arn.as_deref() == Some(product_arn.as_str())
                && f.aws_account_id.as_deref() == Some(hub.account_id.as_str())
                && f.record_state == Some(sdk::RecordState::Active)
                && rules
                    .iter()
                    .any(|rule| f.generator_id.as_deref() == Some(*rule))
        }));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// Each rule is a generator of its own, in its own words with its settings, and its controls are the
    /// finding's related requirements; today's rule keeps its words and requirements.
    #[test]
    fn each_rule_is_its_own_generator_with_its_requirements() {
        use crate::notify::render::tests::{finding, finding_of};
        let hub = Hub {
            partition: "aws".into(),
            region: "eu-west-1".into(),
            account_id: "123456789012".into(),
        };
        let now = datetime!(2026-11-30 12:00 UTC);
        let settings = RuleSettings::of(crate::evaluate::RULES, 60, 90);
        let unused = Finding {
            controls: vec![
                "CIS AWS v4.0.1 1.12",
                "CIS AWS v7.0 2.11",
                "AWS Security Hub IAM.22",
            ],
            days_counted: Some(151),
            ..finding_of(crate::evaluate::unused_key::ID, "bob", "AKIABOB")
        };
        let asff = Asff::of(&unused, &settings, KeyStatus::Active, &hub, now, now).unwrap();
        assert_eq!(asff.generator_id, "unused-key");
        assert_eq!(asff.id, "123456789012/bob/AKIABOB/unused-key");
        assert_eq!(
            asff.title,
            "Active IAM access key not used for 60 days: AKIABOB of user bob"
        );
        assert!(
            asff.description
                .contains("never used, created 2026-07-01T00:00:00Z (151 days ago)"),
            "{}",
            asff.description
        );
        assert_eq!(
            asff.compliance.related_requirements,
            [
                "CIS AWS Foundations Benchmark v4.0.1/1.12",
                "CIS AWS Foundations Benchmark v7.0/2.11",
                "AWS Security Hub IAM.22"
            ]
        );
        assert!(asff
            .remediation
            .recommendation
            .text
            .ends_with("--access-key-id AKIABOB --status Inactive"));
        let today = Asff::of(
            &finding("ann", "AKIAANN"),
            &settings,
            KeyStatus::Active,
            &hub,
            now,
            now,
        )
        .unwrap();
        assert_eq!(
            today.generator_id,
            "cis-1.11-never-used-key-on-console-user"
        );
        assert_eq!(
            today.title,
            "Never-used access key AKIAANN on console user ann"
        );
        assert_eq!(today.compliance.related_requirements, RELATED_REQUIREMENTS);
    }

    #[test]
    fn a_finding_is_complete_asff() {
        let finding = crate::notify::render::tests::finding("ann", "AKIAANN");
        let hub = Hub {
            partition: "aws".into(),
            region: "eu-west-1".into(),
            account_id: "123456789012".into(),
        };
        let first = datetime!(2026-11-01 00:00 UTC);
        let now = datetime!(2026-11-30 12:00 UTC);
        let asff = Asff::of(
            &finding,
            &RuleSettings::default(),
            KeyStatus::Active,
            &hub,
            first,
            now,
        )
        .unwrap();
        let json = serde_json::to_value(&asff).unwrap();
        for field in [
            "SchemaVersion",
            "Id",
            "ProductArn",
            "GeneratorId",
            "AwsAccountId",
            "Types",
            "CreatedAt",
            "UpdatedAt",
            "Severity",
            "Title",
            "Description",
            "Resources",
        ] {
            assert!(!json[field].is_null(), "{field} is required: {json}");
        }
        assert_eq!(json["SchemaVersion"], "2018-10-08");
        assert_eq!(json["Id"], "123456789012/ann/AKIAANN");
        assert_eq!(
            json["ProductArn"],
            "arn:aws:securityhub:eu-west-1:123456789012:product/123456789012/default"
        );
        assert_eq!(
            json["GeneratorId"],
            "cis-1.11-never-used-key-on-console-user"
        );
        assert_eq!(json["Severity"]["Label"], "MEDIUM");
        assert_eq!(json["FindingProviderFields"]["Severity"]["Label"], "MEDIUM");
        assert_eq!(json["Compliance"]["Status"], "FAILED");
        assert!(json["Compliance"]["RelatedRequirements"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(
                "CIS AWS Foundations Benchmark v4.0.0/1.11"
            )));
        assert_eq!(json["CreatedAt"], "2026-11-01T00:00:00Z");
        assert_eq!(json["UpdatedAt"], "2026-11-30T12:00:00Z");
        let key = &json["Resources"][0];
        assert_eq!(key["Type"], "AwsIamAccessKey");
        assert_eq!(key["Details"]["AwsIamAccessKey"]["AccessKeyId"], "AKIAANN");
        assert_eq!(key["Details"]["AwsIamAccessKey"]["PrincipalName"], "ann");
        assert_eq!(key["Details"]["AwsIamAccessKey"]["Status"], "Active");
        assert!(key["Details"]["AwsIamAccessKey"]["CreatedAt"].is_string());
        assert_eq!(json["Resources"][1]["Type"], "AwsIamUser");
        assert_eq!(
            json["Resources"][1]["Id"],
            "arn:aws:iam::123456789012:user/ann"
        );
        assert!(json["Remediation"]["Recommendation"]["Url"].is_string());

        // The SDK form carries the same values.
        let sdk = asff.to_sdk();
        assert_eq!(sdk.id.as_deref(), Some("123456789012/ann/AKIAANN"));
        assert_eq!(sdk.record_state, Some(sdk::RecordState::Active));
        assert_eq!(sdk.resources.as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn validation_catches_what_security_hub_would_reject() {
        let finding = crate::notify::render::tests::finding("ann", "AKIAANN");
        let hub = Hub {
            partition: "aws".into(),
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
        };
        let now = datetime!(2026-11-30 12:00 UTC);
        let good = Asff::of(
            &finding,
            &RuleSettings::default(),
            KeyStatus::Active,
            &hub,
            now,
            now,
        )
        .unwrap();
        let cases: Vec<Asff> = vec![
            Asff {
                title: String::new(),
                ..good.clone()
            },
            Asff {
                description: "x".repeat(1025),
                ..good.clone()
            },
            Asff {
                resources: vec![],
                ..good.clone()
            },
            Asff {
                created_at: "yesterday".into(),
                ..good.clone()
            },
            Asff {
                aws_account_id: "1".into(),
                ..good.clone()
            },
        ];
        for bad in cases {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
