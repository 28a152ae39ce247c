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
    polystream_common::telemetry::init_logging("s1-gateway");
    let config = Config::from_env()?;
    run(config, polystream_common::telemetry::shutdown_signal()).await
}
