//! The S3 monitor binary: configuration from the environment (`--help` lists
//! every variable with its default), logs and traces (`OTEL_*`); stops on
//! SIGINT/SIGTERM, flushing the spans last.

use polystream_common::cli::{self, clap};
use polystream_s3_monitor::{Config, run};

#[global_allocator]
static ALLOCATOR: polystream_common::Allocator = polystream_common::Allocator;

const NAME: &str = "polystream-s3-monitor";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = cli::settings(NAME, |r| {
        Config::read(r);
    });
    let matches = cli::command(
        NAME,
        "Polystream's S3 monitor: indexes every event into OpenSearch (spooling locally while it \
         is down) and tracks request-to-response flows. Configured by environment variables only.",
        &settings,
    )
    .arg(
        clap::Arg::new("print-openapi")
            .long("print-openapi")
            .help("Print the OpenAPI document (docs/s3-openapi.json) and exit")
            .action(clap::ArgAction::SetTrue),
    )
    .get_matches();
    if matches.get_flag("print-openapi") {
        print!("{}", polystream_s3_monitor::api::document());
        return Ok(());
    }
    let telemetry = polystream_common::telemetry::init(NAME)?;
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
