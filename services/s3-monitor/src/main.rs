//! The S3 monitor binary: configuration from the environment, stops on SIGINT/SIGTERM.

use polystream_s3_monitor::{Config, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    polystream_common::telemetry::init_logging("s3-monitor");
    let config = Config::from_env()?;
    run(config, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
