use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Polystream's Kubernetes operator.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the StreamingPlatform CustomResourceDefinition as YAML
    /// (`polystream-operator crd > crds/streamingplatform.yaml`).
    Crd,
    /// Run the controller. Not implemented yet: exits with status 2.
    Run,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => match polystream_operator::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render the CRD: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run => {
            eprintln!("error: `run` is not implemented yet (only `crd` is)");
            ExitCode::from(2)
        }
    }
}
