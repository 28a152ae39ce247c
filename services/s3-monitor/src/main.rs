//! The S3 monitor binary: configuration from the environment, stops on SIGINT/SIGTERM.

use polystream_s3_monitor::{Config, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    polystream_common::telemetry::init_logging("s3-monitor");
    let config = Config::from_env()?;
    run(config, polystream_common::telemetry::shutdown_signal()).await
}
