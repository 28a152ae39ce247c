//! S1 gateway binary. `--print-openapi` writes the OpenAPI document to stdout;
//! regenerate the committed copy with
//! `cargo run -p polystream-s1-gateway -- --print-openapi > docs/openapi.json`.

use polystream_s1_gateway::{Config, openapi, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--print-openapi") {
        print!("{}", openapi::document());
        return Ok(());
    }
    let telemetry = polystream_common::telemetry::init("polystream-s1-gateway")?;
    let served = match Config::from_env() {
        Ok(config) => run(config, polystream_common::telemetry::shutdown_signal()).await,
        Err(e) => Err(e.into()),
    };
    // Flush the spans of the last requests, also after a failure.
    telemetry.shutdown().await;
    served
}
