//! Cold-start wiring: settings and AWS clients are built once, then every invocation reuses them. Each event is
//! routed by `keywatch::route`.

use keywatch::aws::Clients;
use keywatch::config::Settings;
use keywatch::handler::Keywatch;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    keywatch::logging::init();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            // Lambda records the init failure with this log line and the exit; never half-configured.
            tracing::error!(error_type = error.error_type(), %error, "keywatch failed to start");
            std::process::exit(1);
        }
    };
    let clients = Clients::from_env(settings.retry_mode, settings.max_attempts).await;
    let keywatch = Keywatch::new(settings, clients);
    let keywatch = &keywatch;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Box::pin(keywatch.handle(event))
            .await
            .map_err(Diagnostic::from)
    }))
    .await
}
