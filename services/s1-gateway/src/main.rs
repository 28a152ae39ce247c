//! S1 gateway binary. `--help` lists every environment variable with its
//! default; `--print-openapi` writes the OpenAPI document to stdout;
//! regenerate the committed copy with
//! `cargo run -p polystream-s1-gateway -- --print-openapi > docs/openapi.json`.

use polystream_common::cli::{self, clap};
use polystream_s1_gateway::{Config, openapi, run};

#[global_allocator]
static ALLOCATOR: polystream_common::Allocator = polystream_common::Allocator;

const NAME: &str = "polystream-s1-gateway";

fn command() -> clap::Command {
    let settings = cli::settings(NAME, |r| {
        Config::read(r);
    });
    cli::command(
        NAME,
        "Polystream's S1 gateway: the REST API. Writes become events on Kafka, reads go to the \
         owning store. Configured by environment variables only.",
        &settings,
    )
    .arg(
        clap::Arg::new("print-openapi")
            .long("print-openapi")
            .help("Print the OpenAPI document (docs/openapi.json) and exit")
            .action(clap::ArgAction::SetTrue),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if command().get_matches().get_flag("print-openapi") {
        print!("{}", openapi::document());
        return Ok(());
    }
    let telemetry = polystream_common::telemetry::init(NAME)?;
    let served = match Config::from_env() {
        Ok(config) => run(config, polystream_common::telemetry::shutdown_signal()).await,
        Err(e) => Err(e.into()),
    };
    // Flush the spans of the last requests, also after a failure.
    telemetry.shutdown().await;
    served
}
