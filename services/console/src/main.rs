//! The console binary: configuration from the environment (`--help` lists
//! every variable with its default); stops on SIGINT/SIGTERM.

use polystream_common::cli;
use polystream_console::{Config, run};

#[global_allocator]
static ALLOCATOR: polystream_common::Allocator = polystream_common::Allocator;

const NAME: &str = "polystream-console";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = cli::settings(NAME, |r| {
        Config::read(r);
    });
    cli::command(
        NAME,
        "Polystream's console: one page with every component's readiness, live request → \
         response flows, failures, dead letters, audit trails with their traces, store counts \
         and the dashboards' key series. Configured by environment variables only.",
        &settings,
    )
    .get_matches();
    let telemetry = polystream_common::telemetry::init(NAME)?;
    let result = match Config::from_env() {
        Ok(config) => run(config, polystream_common::telemetry::shutdown_signal()).await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "the console stopped on an error");
    }
    telemetry.shutdown().await;
    result
}
