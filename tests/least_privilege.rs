//! Least privilege under IAM enforcement: keywatch runs as the role the deployed stack created, with moto
//! checking every call against that role's policy. With the policy as deployed the whole check succeeds, and
//! without any single action of it the run fails loudly, naming the denied action: never a quiet success with
//! fewer findings.
//!
//! One moto server for the whole file: each case swaps the role's inline policy (PutRolePolicy) while
//! enforcement is off, then turns enforcement on for the run. Seeding also happens with enforcement off:
//! moto's default credentials are no IAM principal, so they would be denied too.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use keywatch::aws::{http_client, Clients};
use keywatch::deadline::Deadline;
use keywatch::error::Error;
use keywatch::event::Invocation;
use keywatch::handler::Keywatch;
use keywatch::inventory::Source;
use keywatch::permissions::{IAM_ACTIONS, SNS_ACTIONS, UNGATED_ACTIONS};
use keywatch::report::Report;
use serde_json::{json, Value};
use support::{deploy_template, settings, Account, Moto};

fn scheduled() -> Invocation {
    Invocation {
        scheduled: true,
        ..Invocation::default()
    }
}

fn dry_run(source: Source) -> Invocation {
    Invocation {
        dry_run: true,
        inventory_source: Some(source),
        ..Invocation::default()
    }
}

/// The deployed stack's function role, assumed once: moto reads the role's policy at every request, so the
/// session's credentials see each policy swap.
struct Role {
    name: String,
    policy_name: String,
    policy: Value,
    topic_arn: String,
    credentials: (String, String, String),
}

async fn deploy_and_assume(moto: &Moto) -> Role {
    let summary = deploy_template(moto, "keywatch", &[]);
    let role = &summary["role"];
    let (policy_name, policy) = role["inline_policies"]
        .as_object()
        .and_then(|policies| policies.iter().next())
        .expect("the function role has an inline policy");
    let sts = aws_sdk_sts::Client::new(&moto.sdk_config().await);
    let assumed = sts
        .assume_role()
        .role_arn(role["arn"].as_str().expect("role arn"))
        .role_session_name("keywatch-least-privilege")
        .send()
        .await
        .expect("assume the function role")
        .credentials
        .expect("credentials");
    Role {
        name: role["name"].as_str().expect("role name").to_string(),
        policy_name: policy_name.clone(),
        policy: policy.clone(),
        topic_arn: summary["outputs"]["TopicArn"]
            .as_str()
            .expect("TopicArn output")
            .to_string(),
        credentials: (
            assumed.access_key_id,
            assumed.secret_access_key,
            assumed.session_token,
        ),
    }
}

/// Puts `policy` on the role (enforcement off), then runs one invocation as the role with enforcement on.
async fn run_as_role(
    moto: &Moto,
    account: &Account,
    role: &Role,
    policy: &Value,
    invocation: Invocation,
) -> keywatch::Result<Report> {
    moto.set_auth(false);
    account
        .iam
        .put_role_policy()
        .role_name(&role.name)
        .policy_name(&role.policy_name)
        .policy_document(policy.to_string())
        .send()
        .await
        .expect("swap the role policy");
    let (key, secret, token) = role.credentials.clone();
    let config = moto
        .sdk_config_with(&key, &secret, Some(token))
        .await
        .into_builder()
        .http_client(moto_quirks::AwsQueryErrors::wrap(http_client()))
        .build();
    let mut clients = Clients::from_config(&config);
    // The SNS client as Clients builds it (sharing the call counter), plus the moto signing workaround.
    clients.sns = aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::config::Builder::from(&config)
            .interceptor(clients.calls.clone())
            .interceptor(moto_quirks::QuotePlusForm)
            .build(),
    );
    // A new Keywatch per run, as a cold start: sts:GetCallerIdentity is called every time.
    let keywatch = Keywatch::new(
        settings(&[("FINDINGS_TOPIC_ARN", &role.topic_arn)]),
        clients,
    );
    moto.set_auth(true);
    let result = keywatch
        .run(
            &invocation,
            "least-privilege",
            &Deadline::after(Duration::from_secs(60)),
        )
        .await;
    moto.set_auth(false);
    result
}

/// moto 5.2.5 matches SNS permissions only against Resource `*`, never a topic ARN, so a statement scoped to
/// the topic (as deployed) would be denied there. This copy widens the SNS statement to `*` for moto only; the
/// deployed scope is checked statically (tests/template.rs) and on the deployed role below.
fn relaxed_for_moto(policy: &Value) -> Value {
    let mut policy = policy.clone();
    for statement in policy["Statement"].as_array_mut().expect("statements") {
        let actions = statement["Action"].as_array().expect("actions");
        if actions
            .iter()
            .all(|a| a.as_str().is_some_and(|a| a.starts_with("sns:")))
        {
            statement["Resource"] = json!("*");
        }
    }
    policy
}

fn without(policy: &Value, action: &str) -> Value {
    let mut policy = policy.clone();
    let statements = policy["Statement"].as_array_mut().expect("statements");
    for statement in statements.iter_mut() {
        let actions = statement["Action"].as_array_mut().expect("actions");
        actions.retain(|a| a != action);
    }
    // IAM rejects a statement with no action; drop it like an operator would.
    statements.retain(|s| !s["Action"].as_array().is_some_and(Vec::is_empty));
    policy
}

/// The action whose denial failed the run, looking through a failed publish to its cause.
fn denied_action(error: &Error) -> Option<&str> {
    match error {
        Error::Aws { action, .. } if error.error_type() == "Keywatch.AccessDenied" => Some(action),
        Error::Publish { cause, .. } => denied_action(cause),
        _ => None,
    }
}

fn actions(policy: &Value) -> BTreeSet<String> {
    policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .flat_map(|s| s["Action"].as_array().expect("actions").iter())
        .map(|a| a.as_str().expect("action").to_string())
        .collect()
}

fn listed(lists: &[&[&str]]) -> BTreeSet<String> {
    lists
        .iter()
        .flat_map(|list| list.iter())
        .map(|a| a.to_string())
        .collect()
}

/// One user with a finding (exercising every IAM read: report, list, keys, password, last use, tags), and
/// one exempted by tag (the tag is read, and the key is not alerted).
async fn seed(account: &Account) -> String {
    account.console_user("alice").await;
    let key = account.key("alice").await.id;
    account
        .user_at("ivy", "/", &[("keywatch:exempt", "break-glass, SEC-42")])
        .await;
    account.password("ivy").await;
    account.key("ivy").await;
    key
}

#[tokio::test]
async fn least_privilege_under_enforcement() {
    let moto = Moto::start();
    let account = moto.account().await;
    let alice_key = seed(&account).await;
    let role = deploy_and_assume(&moto).await;

    // The deployed role's policy: exactly the listed actions, IAM on *, SNS on the stack's topic only.
    assert_eq!(actions(&role.policy), listed(&[IAM_ACTIONS, SNS_ACTIONS]));
    for statement in role.policy["Statement"].as_array().expect("statements") {
        let sns = statement["Action"]
            .as_array()
            .expect("actions")
            .iter()
            .all(|a| a.as_str().is_some_and(|a| a.starts_with("sns:")));
        let resource = if sns { role.topic_arn.as_str() } else { "*" };
        assert_eq!(statement["Resource"], resource, "{statement}");
    }

    // The policy exactly as deployed: a dry run from either inventory source succeeds, and needs nothing else.
    // sts:GetCallerIdentity is never granted: moto, like AWS, answers it for any principal.
    let mut api_source_calls = BTreeSet::new();
    for source in [Source::CredentialReport, Source::Api] {
        let report = run_as_role(&moto, &account, &role, &role.policy, dry_run(source))
            .await
            .unwrap_or_else(|e| panic!("{source:?} dry run with the deployed policy: {e}"));
        assert_eq!(
            report.findings.len(),
            1,
            "{source:?}: {:?}",
            report.findings
        );
        assert_eq!(
            report.exempted.len(),
            1,
            "{source:?}: ivy is exempted by her tag"
        );
        let called = called(&report);
        assert!(
            called.is_subset(&listed(&[IAM_ACTIONS, UNGATED_ACTIONS])),
            "{source:?} calls {called:?}"
        );
        if source == Source::Api {
            api_source_calls = called;
        }
    }

    // Publishing (SNS widened to * for moto only): succeeds, and a run with a finding calls every listed action,
    // so nothing granted is unused, by behaviour as well as by the list.
    let relaxed = relaxed_for_moto(&role.policy);
    let report = run_as_role(&moto, &account, &role, &relaxed, scheduled())
        .await
        .unwrap_or_else(|e| panic!("publishing run with the deployed policy (SNS on *): {e}"));
    let findings: Vec<(&str, &str)> = report
        .findings
        .iter()
        .map(|f| (f.user_name.as_str(), f.access_key_id.as_str()))
        .collect();
    assert_eq!(findings, [("alice", alice_key.as_str())]);
    assert_eq!(report.exempted.len(), 1, "ivy is exempted by her tag");
    assert_eq!(report.notifications.len(), 1, "one alert published");
    assert_eq!(
        called(&report),
        listed(&[IAM_ACTIONS, SNS_ACTIONS, UNGATED_ACTIONS]),
        "a full run with a finding calls exactly the actions in src/permissions.rs"
    );

    // Without any one action, the run fails and names it: for the scheduled run, every listed action; for the
    // live inventory (INVENTORY_SOURCE=api), every action it calls.
    let scheduled_actions: Vec<&str> = IAM_ACTIONS.iter().chain(SNS_ACTIONS).copied().collect();
    assert_denied_each(
        &moto,
        &account,
        &role,
        &relaxed,
        scheduled(),
        &scheduled_actions,
    )
    .await;
    let api_actions: Vec<&str> = api_source_calls
        .iter()
        .map(String::as_str)
        .filter(|a| !UNGATED_ACTIONS.contains(a))
        .collect();
    assert!(api_actions.contains(&"iam:ListUsers"), "{api_actions:?}");
    assert_denied_each(
        &moto,
        &account,
        &role,
        &relaxed,
        dry_run(Source::Api),
        &api_actions,
    )
    .await;
}

fn called(report: &Report) -> BTreeSet<String> {
    report.api_calls.by_operation.keys().cloned().collect()
}

/// For each action: with only that action removed from `policy`, the run fails with AccessDenied naming it.
async fn assert_denied_each(
    moto: &Moto,
    account: &Account,
    role: &Role,
    policy: &Value,
    invocation: Invocation,
    actions: &[&str],
) {
    for action in actions {
        let policy = without(policy, action);
        match run_as_role(moto, account, role, &policy, invocation.clone()).await {
            Ok(report) => panic!(
                "without {action} the run ({invocation:?}) must fail, but it succeeded with {} findings",
                report.findings.len()
            ),
            Err(error) => {
                assert_eq!(
                    denied_action(&error),
                    Some(*action),
                    "without {action} ({invocation:?}): {} {error}",
                    error.error_type()
                );
                assert!(
                    error.to_string().contains(action),
                    "the message names {action}: {error}"
                );
            }
        }
    }
}

/// Two ways moto 5.2.5's IAM enforcement differs from AWS on the wire, corrected around the SDK so that what
/// is tested is keywatch's behaviour against AWS-shaped traffic. Neither changes which calls are made or
/// which are allowed.
mod moto_quirks {
    use aws_smithy_runtime_api::box_error::BoxError;
    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
        SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
    use aws_smithy_runtime_api::client::interceptors::Intercept;
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::byte_stream::ByteStream;
    use aws_smithy_types::config_bag::ConfigBag;

    /// moto's enforcement answers a denied call with `<ErrorResponse><Errors><Error>` (EC2's shape) whatever
    /// the service; IAM and SNS, like every AWS query service, send `<ErrorResponse><Error>`, the only shape
    /// the SDK reads a code from. Without this, a denial reads as an unknown error (`Keywatch.AwsError`)
    /// instead of `Keywatch.AccessDenied`. Only 4xx bodies are touched.
    #[derive(Debug)]
    pub struct AwsQueryErrors(SharedHttpConnector);

    impl AwsQueryErrors {
        pub fn wrap(inner: SharedHttpClient) -> SharedHttpClient {
            SharedHttpClient::new(Client(inner))
        }
    }

    #[derive(Debug)]
    struct Client(SharedHttpClient);

    impl HttpClient for Client {
        fn http_connector(
            &self,
            settings: &HttpConnectorSettings,
            components: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(AwsQueryErrors(self.0.http_connector(settings, components)))
        }
    }

    impl HttpConnector for AwsQueryErrors {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let inner = self.0.clone();
            HttpConnectorFuture::new(async move {
                let mut response = inner.call(request).await?;
                if response.status().is_client_error() {
                    let body = std::mem::replace(response.body_mut(), SdkBody::taken());
                    let bytes = ByteStream::new(body)
                        .collect()
                        .await
                        .map_err(|e| ConnectorError::io(e.into()))?
                        .into_bytes();
                    let text = String::from_utf8_lossy(&bytes)
                        .replacen("<Errors><Error>", "<Error>", 1)
                        .replacen("</Error></Errors>", "</Error>", 1);
                    response
                        .headers_mut()
                        .insert("content-length", text.len().to_string());
                    *response.body_mut() = SdkBody::from(text);
                }
                Ok(response)
            })
        }
    }

    /// moto 5.2.5 checks a query-protocol signature against its own re-encoding of the parsed form (Python's
    /// `quote_plus`: a space is `+`), not against the bytes it received. A correctly signed body that encodes a
    /// space as `%20`, as the Rust SDK does, so fails with SignatureDoesNotMatch. This re-encodes the form the
    /// `quote_plus` way before signing: the same parameters in an encoding AWS accepts just as well. Only the SNS
    /// client needs it: the alert text has spaces, IAM parameters (user names, key IDs) do not.
    #[derive(Debug)]
    pub struct QuotePlusForm;

    impl Intercept for QuotePlusForm {
        fn name(&self) -> &'static str {
            "moto_quirks::QuotePlusForm"
        }

        fn modify_before_signing(
            &self,
            context: &mut BeforeTransmitInterceptorContextMut<'_>,
            _components: &RuntimeComponents,
            _cfg: &mut ConfigBag,
        ) -> Result<(), BoxError> {
            let request = context.request_mut();
            let Some(body) = request.body().bytes() else {
                return Ok(());
            };
            let body = quote_plus_form(body);
            request
                .headers_mut()
                .insert("content-length", body.len().to_string());
            *request.body_mut() = SdkBody::from(body);
            Ok(())
        }
    }

    /// `a=x%20y&b=1` becomes `a=x+y&b=1`: each name and value percent-decoded, then encoded like `quote_plus`.
    fn quote_plus_form(body: &[u8]) -> Vec<u8> {
        fn decode(part: &[u8]) -> Vec<u8> {
            let mut out = Vec::with_capacity(part.len());
            let mut i = 0;
            while i < part.len() {
                let hex = part
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match (part[i], hex) {
                    (b'%', Some(byte)) => {
                        out.push(byte);
                        i += 3;
                    }
                    (b'+', _) => {
                        out.push(b' ');
                        i += 1;
                    }
                    (byte, _) => {
                        out.push(byte);
                        i += 1;
                    }
                }
            }
            out
        }
        fn encode(bytes: &[u8], out: &mut Vec<u8>) {
            for &byte in bytes {
                match byte {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                        out.push(byte)
                    }
                    b' ' => out.push(b'+'),
                    _ => out.extend_from_slice(format!("%{byte:02X}").as_bytes()),
                }
            }
        }
        let mut out = Vec::with_capacity(body.len());
        for (i, pair) in body.split(|&b| b == b'&').enumerate() {
            if i > 0 {
                out.push(b'&');
            }
            let mut halves = pair.splitn(2, |&b| b == b'=');
            encode(&decode(halves.next().unwrap_or_default()), &mut out);
            if let Some(value) = halves.next() {
                out.push(b'=');
                encode(&decode(value), &mut out);
            }
        }
        out
    }
}
