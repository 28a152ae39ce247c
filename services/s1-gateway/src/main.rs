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
    run(config, shutdown()).await
}

/// Ctrl-C or SIGTERM (what Kubernetes sends): stop accepting, finish in-flight requests.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
