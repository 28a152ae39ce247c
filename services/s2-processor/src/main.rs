//! The S2 processor binary: configuration from the environment, logs and
//! traces (`OTEL_*`), and a graceful stop on SIGTERM or Ctrl-C that flushes
//! the spans last.

use polystream_s2_processor::{Config, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = polystream_common::telemetry::init("polystream-s2-processor")?;
    let result = match Config::from_env() {
        Ok(config) => run(config, polystream_common::telemetry::shutdown_signal()).await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = &result {
        tracing::error!(
            error = format!("{e:#}"),
            "the processor stopped on an error"
        );
    }
    telemetry.shutdown().await;
    result
}
