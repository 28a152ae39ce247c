use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> ExitCode {
    let cli = polystream_faults::Cli::parse();
    match polystream_faults::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fault suite: {e:#}");
            ExitCode::FAILURE
        }
    }
}
