//! AWS clients, built once at cold start, and what every call shares: retries, timeouts, call counting and
//! the mapping of SDK errors to [`Error`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::{RetryConfig, RetryMode};
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_runtime::retries::classifiers::THROTTLING_ERRORS;
use aws_sdk_iam::config::retry::RetryPartition;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::{ErrorKind, ProvideErrorKind};

use crate::error::{AwsFailure, Error};

/// Counts AWS calls by IAM-policy action name (`iam:ListUsers`), one per operation, however many retries it took.
/// It reads before serialization: that runs once per operation, after the operation's metadata is in the bag.
#[derive(Debug, Default, Clone)]
pub struct CallCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl CallCounter {
    fn counts(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        // A poisoned lock only means another thread panicked mid-increment; the counts are still usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns the counts so far and starts again from zero: one invocation's calls.
    pub fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.counts())
    }

    /// Runs `work` with every AWS call it makes counted here too, besides the clients' own counter, even while
    /// other work on the same task (records checked side by side) counts into counters of its own. No client is
    /// rebuilt for it: the clients' one interceptor finds this counter in the task's context.
    pub async fn counting<F: std::future::Future>(&self, work: F) -> F::Output {
        SCOPED.scope(self.clone(), work).await
    }

    fn add(&self, action: &str) {
        *self.counts().entry(action.to_string()).or_insert(0) += 1;
    }
}

tokio::task_local! {
    /// The counter of the work being polled, set by [`CallCounter::counting`].
    static SCOPED: CallCounter;
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "keywatch::CallCounter"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            let action = format!(
                "{}:{}",
                metadata.service().to_ascii_lowercase(),
                metadata.name()
            );
            self.add(&action);
            let _ = SCOPED.try_with(|scoped| {
                if !Arc::ptr_eq(&scoped.0, &self.0) {
                    scoped.add(&action);
                }
            });
        }
        Ok(())
    }
}

/// The function's own AWS clients, sharing one config and one call counter: what keywatch does as itself
/// whatever account it checks (publish, dispatch, assume roles, the ledger), and, kept apart, the clients of its
/// own account's check.
#[derive(Debug, Clone)]
pub struct Clients {
    pub sns: aws_sdk_sns::Client,
    pub sts: aws_sdk_sts::Client,
    /// Built only where [`Services::queue`]; read through [`Clients::sqs`].
    sqs: Option<aws_sdk_sqs::Client>,
    /// Built only where [`Services::organizations`]; read through [`Clients::organizations`].
    organizations: Option<aws_sdk_organizations::Client>,
    /// Built only where [`Services::scheduler`]; read through [`Clients::scheduler`].
    scheduler: Option<aws_sdk_scheduler::Client>,
    /// The ledger, always with the function's own credentials (never a member role's).
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// IAM and Security Hub of the account keywatch runs in, as the function's role. Another account's come from
    /// [`Clients::assumed`]: a check reads IAM only through the [`AccountClients`] it was given, so a call in the
    /// wrong account's credentials cannot be written.
    pub own_account: AccountClients,
    pub calls: CallCounter,
}

/// The clients of one checked account: its IAM and its Security Hub, with that account's credentials.
#[derive(Debug, Clone)]
pub struct AccountClients {
    pub iam: aws_sdk_iam::Client,
    /// Built only where [`Services::security_hub`]; read through [`AccountClients::security_hub`].
    security_hub: Option<aws_sdk_securityhub::Client>,
}

/// The optional services a deployment's settings use. A client the settings never call is never built, so a
/// cold start pays only for what runs, and a call the settings did not ask for fails by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Services {
    /// SQS: dispatch sends the work queue its messages (`ACCOUNTS` other than `self`).
    pub queue: bool,
    /// Organizations: the accounts and their owner tags (`ACCOUNTS=organization`).
    pub organizations: bool,
    /// Security Hub: `SECURITY_HUB=true`.
    pub security_hub: bool,
    /// EventBridge Scheduler: the grace period's re-check (`RECHECK_*`).
    pub scheduler: bool,
}

impl Services {
    /// Every client: for tests that drive every feature through one set of clients.
    pub const ALL: Services = Services {
        queue: true,
        organizations: true,
        security_hub: true,
        scheduler: true,
    };
}

impl Clients {
    /// Loads region, credentials and `AWS_ENDPOINT_URL` from the environment, the way every AWS SDK does, and
    /// builds only the clients of `services` (the settings' [`crate::config::Settings::services`]).
    pub async fn from_env(mode: RetryMode, max_attempts: u32, services: Services) -> Self {
        let loader = config_loader(max_attempts).retry_config(retry_config(mode, max_attempts));
        Self::for_services(&loader.load().await, services)
    }

    /// Every client, on `config`.
    pub fn from_config(config: &SdkConfig) -> Self {
        Self::for_services(config, Services::ALL)
    }

    pub fn for_services(config: &SdkConfig, services: Services) -> Self {
        Self::build(config, services, None)
    }

    /// Every client, each with retry state (quota and rate limiter) of its own, named `<service>-<tag>`. The SDK
    /// keeps that state in process-wide statics per service and region: tests that throttle on purpose use this,
    /// so one test's throttling cannot starve another's retries.
    pub fn isolated(config: &SdkConfig, tag: &str) -> Self {
        Self::build(config, Services::ALL, Some(tag))
    }

    fn build(config: &SdkConfig, services: Services, partition: Option<&str>) -> Self {
        let calls = CallCounter::default();
        macro_rules! client {
            ($service:ident) => {{
                let mut builder =
                    $service::config::Builder::from(config).interceptor(calls.clone());
                if let Some(tag) = partition {
                    let name = format!("{}-{tag}", stringify!($service));
                    builder = builder.retry_partition(RetryPartition::new(name));
                }
                $service::Client::from_conf(builder.build())
            }};
        }
        Clients {
            dynamodb: client!(aws_sdk_dynamodb),
            sns: client!(aws_sdk_sns),
            sts: client!(aws_sdk_sts),
            sqs: services.queue.then(|| client!(aws_sdk_sqs)),
            organizations: services
                .organizations
                .then(|| client!(aws_sdk_organizations)),
            scheduler: services.scheduler.then(|| client!(aws_sdk_scheduler)),
            own_account: AccountClients {
                iam: client!(aws_sdk_iam),
                security_hub: services.security_hub.then(|| client!(aws_sdk_securityhub)),
            },
            calls,
        }
    }

    pub fn sqs(&self) -> Result<&aws_sdk_sqs::Client, Error> {
        self.sqs
            .as_ref()
            .ok_or_else(|| not_built("WORK_QUEUE_URL", "SQS"))
    }

    pub fn scheduler(&self) -> Result<&aws_sdk_scheduler::Client, Error> {
        self.scheduler
            .as_ref()
            .ok_or_else(|| not_built("RECHECK_QUEUE_ARN", "EventBridge Scheduler"))
    }

    pub fn organizations(&self) -> Result<&aws_sdk_organizations::Client, Error> {
        self.organizations
            .as_ref()
            .ok_or_else(|| not_built("ACCOUNTS", "Organizations"))
    }

    /// The clients of a check of another account: IAM and Security Hub sign with that account's assumed-role
    /// credentials, and count with these clients.
    pub fn assumed(&self, credentials: aws_sdk_iam::config::Credentials) -> AccountClients {
        AccountClients {
            iam: aws_sdk_iam::Client::from_conf(
                self.own_account
                    .iam
                    .config()
                    .to_builder()
                    .credentials_provider(credentials.clone())
                    .build(),
            ),
            security_hub: self.own_account.security_hub.as_ref().map(|hub| {
                aws_sdk_securityhub::Client::from_conf(
                    hub.config()
                        .to_builder()
                        .credentials_provider(credentials)
                        .build(),
                )
            }),
        }
    }
}

impl AccountClients {
    pub fn security_hub(&self) -> Result<&aws_sdk_securityhub::Client, Error> {
        self.security_hub
            .as_ref()
            .ok_or_else(|| not_built("SECURITY_HUB", "Security Hub"))
    }
}

/// A call to a service whose client the settings did not build: a bug in keywatch, named as such.
fn not_built(variable: &'static str, service: &str) -> Error {
    Error::Config {
        variable,
        reason: format!(
            "keywatch called {service}, whose client these settings do not build; this is a bug in keywatch, \
             please report it with this message"
        ),
    }
}

/// The shared SDK configuration: one rustls-on-ring HTTP client, standard retry with `max_attempts`, and
/// timeouts well inside Lambda's. Region, credentials and endpoint still come from the environment.
pub fn config_loader(max_attempts: u32) -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .retry_config(retry_config(RetryMode::Standard, max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(20))
                .build(),
        )
}

/// The one HTTP client stack in the binary: hyper 1 with rustls on ring (cross-compiles without a C toolchain).
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Both retry throttling and 5xx answers with exponential backoff and jitter. Standard is the default: the
/// adaptive mode's client-side rate limiter, after one throttle, holds keywatch's sparse calls back for up to the
/// backoff cap (measured 10-20x slower in tests/faults.rs). Adaptive (`AWS_RETRY_MODE=adaptive`) suits large
/// accounts scanned with `INVENTORY_SOURCE=api`, whose call rate is high enough to keep its bucket filled.
pub fn retry_config(mode: RetryMode, max_attempts: u32) -> RetryConfig {
    match mode {
        RetryMode::Adaptive => RetryConfig::adaptive(),
        _ => RetryConfig::standard(),
    }
    .with_max_attempts(max_attempts)
}

/// The error code of a failed call, if the service sent one (`NoSuchEntity`, `Throttling`, ...).
pub fn error_code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    error.code()
}

/// Maps an SDK error to [`Error::Aws`], classifying it so the message says what to do.
pub fn aws_error<E>(action: &str, error: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + ProvideErrorKind + std::error::Error + Send + Sync + 'static,
{
    let code = error.code().unwrap_or("").to_string();
    let status = error
        .raw_response()
        .map(|response| response.status().as_u16());
    let failure = match &error {
        SdkError::TimeoutError(_) => AwsFailure::Timeout,
        _ if is_throttling(&error) => AwsFailure::Throttled,
        _ if code.starts_with("AccessDenied")
            || code == "UnauthorizedOperation"
            || code == "AuthorizationError" =>
        {
            AwsFailure::AccessDenied
        }
        // A 403 whose body the SDK could not read a code from is still a denial.
        _ if status == Some(403) => AwsFailure::AccessDenied,
        _ => AwsFailure::Other,
    };
    let message = match error.message() {
        Some(message) => message.to_string(),
        None => aws_sdk_iam::error::DisplayErrorContext(&error).to_string(),
    };
    Error::Aws {
        action: action.to_string(),
        failure,
        code: if code.is_empty() {
            "no error code".to_string()
        } else {
            code
        },
        message,
        member_role: None,
    }
}

/// Throttling as the SDK's retry classifiers see it: the error's modeled kind, else the SDK's own list of
/// throttling codes (IAM models none of its errors as retryable, so its `Throttling` is only in that list).
fn is_throttling<E: ProvideErrorKind, R>(error: &SdkError<E, R>) -> bool {
    let Some(service_error) = error.as_service_error() else {
        return false;
    };
    service_error.retryable_error_kind() == Some(ErrorKind::ThrottlingError)
        || service_error
            .code()
            .is_some_and(|code| THROTTLING_ERRORS.contains(&code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use aws_sdk_iam::operation::list_users::ListUsersError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn failure(code: &str, status: u16) -> AwsFailure {
        let error = ListUsersError::generic(ErrorMetadata::builder().code(code).build());
        let response = HttpResponse::new(
            StatusCode::try_from(status).expect("a valid status"),
            SdkBody::empty(),
        );
        match aws_error("iam:ListUsers", SdkError::service_error(error, response)) {
            Error::Aws { failure, .. } => failure,
            other => panic!("{other:?}"),
        }
    }

    /// A deployment's settings build only the clients it calls; a call to another one fails by name.
    #[tokio::test]
    async fn only_the_clients_the_settings_use_are_built() {
        let config = config_loader(1)
            .region(aws_config::Region::new("us-east-1"))
            .load()
            .await;
        let topic = ("FINDINGS_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:t");
        let queue = (
            "WORK_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/w",
        );
        let none = Services {
            queue: false,
            organizations: false,
            security_hub: false,
            scheduler: false,
        };
        for (vars, expected) in [
            (vec![topic], none),
            (
                vec![topic, ("ACCOUNTS", "self"), ("SECURITY_HUB", "false")],
                none,
            ),
            (
                vec![topic, ("ACCOUNTS", "111122223333"), queue],
                Services {
                    queue: true,
                    ..none
                },
            ),
            (
                vec![
                    topic,
                    ("ACCOUNTS", "organization"),
                    queue,
                    ("SECURITY_HUB", "true"),
                    ("AWS_REGION", "us-east-1"),
                    (
                        "RECHECK_QUEUE_ARN",
                        "arn:aws:sqs:us-east-1:123456789012:events",
                    ),
                    ("RECHECK_ROLE_ARN", "arn:aws:iam::123456789012:role/recheck"),
                    ("RECHECK_SCHEDULE_GROUP", "keywatch-rechecks"),
                ],
                Services::ALL,
            ),
        ] {
            let settings = Settings::from_lookup(|name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            })
            .expect("valid settings");
            assert_eq!(settings.services(), expected, "{vars:?}");
            let clients = Clients::for_services(&config, expected);
            let variable = |result: Result<(), Error>| match result {
                Ok(()) => None,
                Err(Error::Config { variable, .. }) => Some(variable),
                Err(other) => panic!("{other:?}"),
            };
            assert_eq!(
                variable(clients.sqs().map(drop)),
                (!expected.queue).then_some("WORK_QUEUE_URL")
            );
            assert_eq!(
                variable(clients.organizations().map(drop)),
                (!expected.organizations).then_some("ACCOUNTS")
            );
            assert_eq!(
                variable(clients.scheduler().map(drop)),
                (!expected.scheduler).then_some("RECHECK_QUEUE_ARN")
            );
            // An assumed account's clients have a hub exactly where the function's own do.
            let member = clients.assumed(aws_sdk_iam::config::Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ));
            for account in [&clients.own_account, &member] {
                assert_eq!(
                    variable(account.security_hub().map(drop)),
                    (!expected.security_hub).then_some("SECURITY_HUB")
                );
            }
        }
    }

    #[test]
    fn failures_are_classified_as_the_sdk_classifies_them() {
        for (code, status, expected) in [
            ("Throttling", 400, AwsFailure::Throttled),
            // In the SDK's list of throttling codes, and in no list keywatch wrote.
            ("RequestThrottledException", 400, AwsFailure::Throttled),
            ("SlowDown", 503, AwsFailure::Throttled),
            ("AccessDenied", 403, AwsFailure::AccessDenied),
            ("", 403, AwsFailure::AccessDenied),
            ("ServiceFailure", 500, AwsFailure::Other),
            ("NoSuchEntity", 404, AwsFailure::Other),
        ] {
            assert_eq!(failure(code, status), expected, "{code} {status}");
        }
    }
}
