//! The S2 processor binary: configuration from the environment (`--help`
//! lists every variable with its default), logs and traces (`OTEL_*`), and a
//! graceful stop on SIGTERM or Ctrl-C that flushes the spans last.

use polystream_common::cli;
use polystream_s2_processor::{Config, run};

#[global_allocator]
static ALLOCATOR: polystream_common::Allocator = polystream_common::Allocator;

const NAME: &str = "polystream-s2-processor";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = cli::settings(NAME, |r| {
        Config::read(r);
    });
    cli::command(
        NAME,
        "Polystream's S2 processor: consumes commands from Kafka, applies the business rules, \
         persists them and publishes outcomes. Configured by environment variables only.",
        &settings,
    )
    .get_matches();
    let telemetry = polystream_common::telemetry::init(NAME)?;
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
