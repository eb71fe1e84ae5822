//! JSON logs on stdout, one object per line, as CloudWatch Logs Insights expects. Level from
//! `AWS_LAMBDA_LOG_LEVEL` (set by Lambda's advanced logging controls) or `RUST_LOG`, default INFO, at most DEBUG.

use tracing::Level;

pub fn init() {
    let level = ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
        .iter()
        .find_map(|name| std::env::var(name).ok())
        .and_then(|value| value.parse::<Level>().ok())
        .unwrap_or(Level::INFO)
        // Never TRACE: at TRACE the AWS SDK logs whole response bodies, the credential report among them.
        .min(Level::DEBUG);
    tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_target(false)
        .with_current_span(false)
        .with_span_list(false)
        .init();
}
