//! Seeded accounts: an account on a moto server as the real SDK sees it, with the calls a person would make to
//! build a scenario (users, passwords, keys and their use, queues subscribed to a topic, an organization and its
//! members), and the readers of what keywatch did (alerts delivered, key statuses, Security Hub findings). Use it
//! to seed every scenario; never seed through keywatch itself.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt;

use crate::seeded::{AccountPlan, Mix, Seeded};
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

    /// Console users tagged `owner=<owner>`, each with a key never used, a few at a time: (user, key ID) each.
    pub async fn owned_console_users(
        &self,
        names: &[String],
        owner: &str,
    ) -> Vec<(String, String)> {
        futures_util::stream::iter(names)
            .map(|name| async move {
                self.user_at(name, "/", &[("owner", owner)]).await;
                self.password(name).await;
                (name.clone(), self.key(name).await.id)
            })
            // moto is one process; a few requests in flight is what it serves fastest.
            .buffer_unordered(4)
            .collect()
            .await
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
        let queue = self
            .subscribed_queue(&topic, "keywatch-findings", None)
            .await;
        (topic, queue)
    }

    /// A queue `name` subscribed to `topic`, with a filter policy when given: its URL.
    pub async fn subscribed_queue(
        &self,
        topic: &str,
        name: &str,
        filter_policy: Option<Value>,
    ) -> String {
        let queue = self.queue(name).await;
        let queue_arn = pump::queue_arn(&self.sqs, &queue).await;
        self.sns
            .subscribe()
            .topic_arn(topic)
            .protocol("sqs")
            .endpoint(queue_arn)
            .set_attributes(
                filter_policy
                    .map(|policy| [("FilterPolicy".to_string(), policy.to_string())].into()),
            )
            .send()
            .await
            .expect("subscribe");
        queue
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

    /// A random small account drawn from `rng` with [`Mix::TESTS`] and seeded here, named with `prefix`.
    /// Returns what it holds that keywatch must report. The one random seeder of the tests.
    pub async fn seed_random(&self, rng: &mut Seeded, users: usize, prefix: &str) -> RandomAccount {
        let plan = AccountPlan::draw(rng, &Mix::TESTS, users, prefix);
        let ids = seed_plans(&[(self, &plan)]).await.remove(0);
        let keys = plan
            .users
            .iter()
            .flat_map(|user| {
                user.keys
                    .iter()
                    .zip(&ids[&user.name])
                    .map(|(key, id)| RandomKey {
                        user: user.name.clone(),
                        access_key_id: id.clone(),
                        flagged: user.console && key.active && !key.used,
                        tag_exempt: user.tag_exempt,
                        svc_name: user.svc_name,
                    })
            })
            .collect();
        RandomAccount { keys }
    }

    /// A queue subscribed to `topic` with a filter policy on the `owner` message attribute, as a team would
    /// subscribe: its URL.
    pub async fn owner_queue(&self, topic: &str, name: &str, owner: &str) -> String {
        let policy = serde_json::json!({ "owner": [owner] });
        self.subscribed_queue(topic, name, Some(policy)).await
    }
}

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

/// Creates each plan's users and keys in its account: each user (with its path and tag, and a password if a
/// console user), each key created, used if planned (a signed request), then deactivated if planned. Accounts are
/// seeded together, a few requests in flight in all: moto is one process. Returns, per account, each user's key
/// IDs in the plan's order.
pub async fn seed_plans(
    accounts: &[(&Account, &AccountPlan)],
) -> Vec<BTreeMap<String, Vec<String>>> {
    let mut ids: Vec<BTreeMap<String, Vec<String>>> = vec![BTreeMap::new(); accounts.len()];
    // Two passes, so a user's second key is created in a later second than its first: real keys are created
    // apart, and keywatch matches report slots to live keys by creation second.
    for pass in 0..2 {
        if pass == 1 {
            if !accounts
                .iter()
                .any(|(_, plan)| plan.users.iter().any(|u| u.keys.len() > 1))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1_100)).await;
        }
        let users = accounts
            .iter()
            .enumerate()
            .flat_map(|(index, &(account, plan))| {
                plan.users.iter().map(move |user| (index, account, user))
            });
        let created: Vec<Option<(usize, String, String)>> = futures_util::stream::iter(users)
            .map(|(index, account, user)| async move {
                if pass == 0 {
                    let tags: &[(&str, &str)] = if user.tag_exempt {
                        &[("keywatch:exempt", "seeded")]
                    } else {
                        &[]
                    };
                    account.user_at(&user.name, user.path, tags).await;
                    if user.console {
                        account.password(&user.name).await;
                    }
                }
                let planned = user.keys.get(pass)?;
                let key = account.key(&user.name).await;
                if planned.used {
                    account.use_key(&key).await;
                }
                if !planned.active {
                    account.deactivate(&user.name, &key).await;
                }
                Some((index, user.name.clone(), key.id))
            })
            // moto 5.2 answers 500 to some concurrent STS calls above a handful in flight.
            .buffer_unordered(4)
            .collect()
            .await;
        for (index, user, key) in created.into_iter().flatten() {
            ids[index].entry(user).or_default().push(key);
        }
    }
    for (index, (_, plan)) in accounts.iter().enumerate() {
        for user in &plan.users {
            ids[index].entry(user.name.clone()).or_default();
        }
    }
    ids
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

/// moto's default account (123456789012) as the management account of a new organization, all features on.
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
