//! The S2 processor binary: configuration from the environment, logging, and
//! a graceful stop on SIGTERM or Ctrl-C.

use polystream_s2_processor::{Config, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    polystream_common::telemetry::init_logging("s2-processor");
    let config = Config::from_env()?;
    run(config, polystream_common::telemetry::shutdown_signal()).await
}
