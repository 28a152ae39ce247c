//! The S3 monitor binary: configuration from the environment, logs and traces
//! (`OTEL_*`); stops on SIGINT/SIGTERM, flushing the spans last.

use polystream_s3_monitor::{Config, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = polystream_common::telemetry::init("polystream-s3-monitor")?;
    let result = match Config::from_env() {
        Ok(config) => run(config, polystream_common::telemetry::shutdown_signal()).await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "the monitor stopped on an error");
    }
    telemetry.shutdown().await;
    result
}
