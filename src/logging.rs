//! JSON logs on stdout, one object per line, as CloudWatch Logs Insights expects. Level from
//! `AWS_LAMBDA_LOG_LEVEL` (set by Lambda's advanced logging controls) or `RUST_LOG`, default INFO, at most DEBUG.

use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

/// The level these variables ask for, read through `lookup`: never above DEBUG.
pub fn level(lookup: impl Fn(&str) -> Option<String>) -> Level {
    ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
        .iter()
        .find_map(|name| lookup(name))
        .and_then(|value| value.parse::<Level>().ok())
        .unwrap_or(Level::INFO)
        // Never TRACE: at TRACE the AWS SDK logs whole response bodies, the credential report among them.
        .min(Level::DEBUG)
}

/// The subscriber [`init`] installs, writing to `writer` (stdout in Lambda; a buffer in tests/logs.rs).
pub fn subscriber<W>(level: Level, writer: W) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_target(false)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(writer)
        .finish()
}

pub fn init() {
    subscriber(level(|name| std::env::var(name).ok()), std::io::stdout).init();
}
