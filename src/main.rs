//! Cold-start wiring: settings and AWS clients are built once, then every invocation reuses them. Each event is
//! routed by `keywatch::route`.

use keywatch::aws::Clients;
use keywatch::config::Settings;
use keywatch::handler::Keywatch;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

/// The runtime's thread stack. The Security Hub SDK decodes its very large finding type on the stack; 32 MiB of
/// address space costs only the pages touched.
const STACK_BYTES: usize = 32 << 20;

fn main() -> Result<(), lambda_runtime::Error> {
    let runtime = std::thread::Builder::new()
        .name("keywatch".into())
        .stack_size(STACK_BYTES)
        .spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(serve())
        })?;
    runtime
        .join()
        .unwrap_or_else(|_| Err("the keywatch runtime thread panicked".into()))
}

async fn serve() -> Result<(), lambda_runtime::Error> {
    keywatch::logging::init();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            // Lambda records the init failure with this log line and the exit; never half-configured.
            tracing::error!(error_type = error.error_type(), %error, "keywatch failed to start");
            std::process::exit(1);
        }
    };
    // Only the clients these settings use: a cold start pays for nothing it will not call.
    let services = settings.services();
    let clients = Clients::from_env(settings.retry_mode, settings.max_attempts, services).await;
    let keywatch = Keywatch::new(settings, clients);
    let keywatch = &keywatch;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Box::pin(keywatch.handle(event))
            .await
            .map_err(Diagnostic::from)
    }))
    .await
}
