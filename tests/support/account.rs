//! Seeded accounts: an account on a moto server as the real SDK sees it, with the calls a person would make to
//! build a scenario (users, passwords, keys and their use, queues subscribed to a topic, an organization and its
//! members), and the readers of what keywatch did (alerts delivered, key statuses, Security Hub findings). Use it
//! to seed every scenario; never seed through keywatch itself.

use std::collections::BTreeSet;

use crate::seeded::Seeded;
use crate::{pump, Moto};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_iam::types::{StatusType, Tag};
use aws_sdk_securityhub::types::AwsSecurityFinding;
use keywatch::aws::http_client;
use serde_json::Value;

/// The emulated account, seeded through the SDK as a user's automation would.
pub struct Account {
    pub iam: aws_sdk_iam::Client,
    pub sns: aws_sdk_sns::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// This account's credentials and endpoint, for any other client.
    pub config: SdkConfig,
    pub(crate) moto_endpoint: String,
}

pub struct Key {
    pub id: String,
    pub secret: String,
}

impl Account {
    pub async fn user(&self, name: &str) {
        self.user_at(name, "/", &[]).await
    }

    pub async fn user_at(&self, name: &str, path: &str, tags: &[(&str, &str)]) {
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| {
                Tag::builder()
                    .key(*k)
                    .value(*v)
                    .build()
                    .expect("key and value set")
            })
            .collect();
        self.iam
            .create_user()
            .user_name(name)
            .path(path)
            .set_tags(Some(tags))
            .send()
            .await
            .expect("create user");
    }

    pub async fn password(&self, name: &str) {
        self.iam
            .create_login_profile()
            .user_name(name)
            .password("Corr3ct-Horse!")
            .send()
            .await
            .expect("login profile");
    }

    pub async fn console_user(&self, name: &str) {
        self.user(name).await;
        self.password(name).await;
    }

    pub async fn key(&self, name: &str) -> Key {
        let key = self
            .iam
            .create_access_key()
            .user_name(name)
            .send()
            .await
            .expect("create key")
            .access_key
            .expect("key");
        Key {
            id: key.access_key_id,
            secret: key.secret_access_key,
        }
    }

    /// Signs one request with the key, which is how IAM (and moto) record a use.
    pub async fn use_key(&self, key: &Key) {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client())
            .endpoint_url(&self.moto_endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_iam::config::Credentials::new(
                &key.id,
                &key.secret,
                None,
                None,
                "test",
            ))
            .load()
            .await;
        aws_sdk_sts::Client::new(&config)
            .get_caller_identity()
            .send()
            .await
            .expect("signed request with the key");
    }

    pub async fn deactivate(&self, name: &str, key: &Key) {
        self.iam
            .update_access_key()
            .user_name(name)
            .access_key_id(&key.id)
            .status(StatusType::Inactive)
            .send()
            .await
            .expect("deactivate key");
    }

    /// Every key of the account and its status (`Active`, `Inactive`), read directly.
    pub async fn key_statuses(&self) -> std::collections::BTreeMap<String, String> {
        let mut statuses = std::collections::BTreeMap::new();
        for user in self
            .iam
            .list_users()
            .send()
            .await
            .expect("list users")
            .users
        {
            let keys = self
                .iam
                .list_access_keys()
                .user_name(&user.user_name)
                .send()
                .await
                .expect("list keys")
                .access_key_metadata;
            for key in keys {
                let status = key
                    .status
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                statuses.insert(key.access_key_id.expect("a key ID"), status);
            }
        }
        statuses
    }

    /// A new SQS queue: its URL.
    pub async fn queue(&self, name: &str) -> String {
        self.sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("queue")
            .queue_url
            .expect("url")
    }

    /// A findings topic with an SQS queue subscribed, as an automation subscriber would have.
    pub async fn topic_with_queue(&self) -> (String, String) {
        let topic = self
            .sns
            .create_topic()
            .name("keywatch-findings")
            .send()
            .await
            .expect("topic")
            .topic_arn
            .expect("arn");
        let queue = self.queue("keywatch-findings").await;
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes");
        let queue_arn = attributes.attributes.and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        });
        self.sns
            .subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(queue_arn.expect("queue arn"))
            .send()
            .await
            .expect("subscribe");
        (topic, queue)
    }

    /// Every SNS notification waiting in the queue, as (subject, parsed JSON document).
    pub async fn delivered(&self, queue: &str) -> Vec<(String, Value)> {
        self.delivered_with_attributes(queue)
            .await
            .into_iter()
            .map(|(subject, document, _)| (subject, document))
            .collect()
    }

    /// Every SNS notification waiting in the queue, as (subject, parsed JSON document, message attributes as
    /// `{name: value}`), deleting each.
    pub async fn delivered_with_attributes(&self, queue: &str) -> Vec<(String, Value, Value)> {
        pump::take_messages(&self.sqs, queue)
            .await
            .into_iter()
            .map(|message| {
                let envelope: Value = serde_json::from_str(message.body.as_deref().unwrap_or(""))
                    .expect("SNS envelope is JSON");
                let document = serde_json::from_str(envelope["Message"].as_str().expect("Message"))
                    .expect("document is JSON");
                let attributes: serde_json::Map<String, Value> = envelope["MessageAttributes"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, value)| (name.clone(), value["Value"].clone()))
                    .collect();
                (
                    envelope["Subject"].as_str().unwrap_or("").to_string(),
                    document,
                    Value::Object(attributes),
                )
            })
            .collect()
    }

    /// Every finding in this account's Security Hub, read with the test's own credentials (enforcement off).
    pub async fn hub_findings(&self) -> Vec<AwsSecurityFinding> {
        hub_findings(&aws_sdk_securityhub::Client::new(&self.config)).await
    }

    /// A random small account drawn from `rng`: `users` users named `{prefix}user-N`, or `svc-{prefix}N` (10 %:
    /// names that `EXEMPT_USERS=svc-*` exempts), under `/` or `/team/` (40 %), with the exemption tag (10 %), a
    /// password (65 %) and up to two keys, each used (30 %) or Inactive (20 %). Returns what it holds that keywatch
    /// must report. The one random seeder of the tests.
    pub async fn seed_random(&self, rng: &mut Seeded, users: usize, prefix: &str) -> RandomAccount {
        let mut seeded = RandomAccount::default();
        for i in 0..users {
            let svc_name = rng.chance(10);
            let name = if svc_name {
                format!("svc-{prefix}{i}")
            } else {
                format!("{prefix}user-{i}")
            };
            let path = if rng.chance(40) { "/team/" } else { "/" };
            let tag_exempt = rng.chance(10);
            let tags: &[(&str, &str)] = if tag_exempt {
                &[("keywatch:exempt", "seeded")]
            } else {
                &[]
            };
            self.user_at(&name, path, tags).await;
            let password = rng.chance(65);
            if password {
                self.password(&name).await;
            }
            for _ in 0..rng.below(3) {
                let key = self.key(&name).await;
                let (used, inactive) = (rng.chance(30), rng.chance(20));
                if used {
                    self.use_key(&key).await;
                }
                if inactive {
                    self.deactivate(&name, &key).await;
                }
                seeded.keys.push(RandomKey {
                    user: name.clone(),
                    access_key_id: key.id.clone(),
                    flagged: password && !used && !inactive,
                    tag_exempt,
                    svc_name,
                });
            }
        }
        seeded
    }

    /// A queue subscribed to `topic` with a filter policy on the `owner` message attribute, as a team would
    /// subscribe: its URL.
    pub async fn owner_queue(&self, topic: &str, name: &str, owner: &str) -> String {
        let queue = self.queue(name).await;
        let queue_arn = pump::queue_arn(&self.sqs, &queue).await;
        self.sns
            .subscribe()
            .topic_arn(topic)
            .protocol("sqs")
            .endpoint(queue_arn)
            .attributes(
                "FilterPolicy",
                serde_json::json!({ "owner": [owner] }).to_string(),
            )
            .send()
            .await
            .expect("subscribe with a filter policy");
        queue
    }
}

/// moto's default account (123456789012) as the management account of a new organization, all features on.
/// Keys as (user name, access key ID) pairs.
pub type KeyPairs = BTreeSet<(String, String)>;

/// What [`Account::seed_random`] seeded: every key, and what keywatch must make of it.
#[derive(Debug, Default, Clone)]
pub struct RandomAccount {
    pub keys: Vec<RandomKey>,
}

#[derive(Debug, Clone)]
pub struct RandomKey {
    pub user: String,
    pub access_key_id: String,
    /// Active and never used, on a user with a password: a finding unless exempt.
    pub flagged: bool,
    pub tag_exempt: bool,
    /// Named `svc-…`: exempt where the deployment sets `EXEMPT_USERS=svc-*`.
    pub svc_name: bool,
}

impl RandomAccount {
    /// (findings, exempted) as (user, access key ID) pairs, for a deployment that exempts `svc-*` names or not.
    pub fn truth(&self, svc_exempt: bool) -> (KeyPairs, KeyPairs) {
        let (exempted, findings): (Vec<_>, Vec<_>) = self
            .keys
            .iter()
            .filter(|k| k.flagged)
            .partition(|k| k.tag_exempt || (svc_exempt && k.svc_name));
        let pairs = |keys: Vec<&RandomKey>| {
            keys.into_iter()
                .map(|k| (k.user.clone(), k.access_key_id.clone()))
                .collect()
        };
        (pairs(findings), pairs(exempted))
    }
}

/// Every finding in a Security Hub, every page. moto ignores GetFindings filters, so a test filters what it reads.
pub async fn hub_findings(hub: &aws_sdk_securityhub::Client) -> Vec<AwsSecurityFinding> {
    let mut findings = Vec::new();
    let mut pages = hub.get_findings().into_paginator().send();
    while let Some(page) = pages.next().await {
        findings.extend(page.expect("GetFindings").findings.unwrap_or_default());
    }
    findings
}

pub async fn create_organization(moto: &Moto) -> aws_sdk_organizations::Client {
    let organizations = aws_sdk_organizations::Client::new(&moto.sdk_config().await);
    organizations
        .create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .expect("create organization");
    organizations
}

/// A new member account of that organization: its ID (moto creates it at once).
pub async fn create_member(organizations: &aws_sdk_organizations::Client, name: &str) -> String {
    organizations
        .create_account()
        .account_name(name)
        .email(format!("{name}@example.com"))
        .send()
        .await
        .expect("create account")
        .create_account_status
        .and_then(|status| status.account_id)
        .expect("an account ID")
}

/// A member account of the emulated organization, seeded through `OrganizationAccountAccessRole`, as AWS
/// Organizations creates it in every new account.
pub async fn member_account(moto: &Moto, account_id: &str) -> Account {
    let sts = aws_sdk_sts::Client::new(&moto.sdk_config().await);
    let credentials = sts
        .assume_role()
        .role_arn(format!(
            "arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole"
        ))
        .role_session_name("seed")
        .send()
        .await
        .expect("assume OrganizationAccountAccessRole")
        .credentials
        .expect("credentials");
    let config = moto
        .sdk_config_with(
            &credentials.access_key_id,
            &credentials.secret_access_key,
            Some(credentials.session_token),
        )
        .await;
    Account {
        iam: aws_sdk_iam::Client::new(&config),
        sns: aws_sdk_sns::Client::new(&config),
        sqs: aws_sdk_sqs::Client::new(&config),
        config,
        moto_endpoint: moto.endpoint.clone(),
    }
}
