//! Polystream's demo-data and load generator. It speaks only S1's public HTTP
//! API, so everything it sends flows through Kafka, S2 and S3 like real traffic.

pub mod api;
pub mod data;
pub mod load;
pub mod rng;
pub mod seed;
pub mod stats;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Parser)]
#[command(
    name = "polystream-demo",
    version,
    about = "Demo data and load for Polystream, through S1's public API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Common {
    /// S1's base URL.
    #[arg(long, env = "POLYSTREAM_API", default_value = "http://127.0.0.1:8000")]
    pub api: String,
    /// Administrator email (creates titles).
    #[arg(long, env = "ADMIN_EMAIL", default_value = "admin@polystream.local")]
    pub admin_email: String,
    /// Administrator password.
    #[arg(
        long,
        env = "ADMIN_PASSWORD",
        default_value = "polystream-admin",
        hide_env_values = true
    )]
    pub admin_password: String,
    /// RNG seed: the same seed gives the same catalog and activity (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a catalog, users, subscriptions, payments, preferences, views, ratings and
    /// recommendations; each command is followed to its outcome.
    Seed {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=10_000))]
        users: u32,
        #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(0..=10_000))]
        titles: u32,
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
        views: u32,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
        ratings: u32,
        /// Commands in flight at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
        concurrency: u32,
    },
    /// Steady traffic (60% reads, 40% writes) at a fixed rate for a bounded time,
    /// then a results table.
    Load {
        #[command(flatten)]
        common: Common,
        /// Requests per second (0.1–10000).
        #[arg(long, value_parser = parse_rate)]
        rate: f64,
        /// Seconds to run (1–86400).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        duration: u64,
        /// Users created and logged in to send the per-user requests.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
        users: u32,
        /// Requests in flight at most; beyond it a due request is skipped and counted.
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        max_in_flight: u32,
        /// Also write the results table, as Markdown, to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if r.is_finite() && (0.1..=10_000.0).contains(&r) {
        Ok(r)
    } else {
        Err(format!(
            "{r} is out of range: requests per second must be 0.1–10000"
        ))
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn connect(common: &Common) -> anyhow::Result<(api::Api, api::Session)> {
    let api = api::Api::new(&common.api)?;
    api.check_reachable().await?;
    let admin = api
        .login(&common.admin_email, &common.admin_password)
        .await
        .context("the administrator login (ADMIN_EMAIL / ADMIN_PASSWORD)")?;
    Ok((api, admin))
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let started = now_millis();
    let run_tag = seed::base36(started);
    match cli.command {
        Command::Seed {
            common,
            users,
            titles,
            views,
            ratings,
            concurrency,
        } => {
            let args = seed::SeedArgs {
                users: users as usize,
                titles: titles as usize,
                views: views as usize,
                ratings: ratings as usize,
                seed: common.seed.unwrap_or(started),
                run_tag,
                concurrency: concurrency as usize,
            };
            eprintln!(
                "seeding {} (seed {}, run {}): {} titles, {} users, {} views, {} ratings",
                common.api,
                args.seed,
                args.run_tag,
                args.titles,
                args.users,
                args.views,
                args.ratings
            );
            let (api, admin) = connect(&common).await?;
            let clock = std::time::Instant::now();
            let tally = seed::run(&api, &admin, &args).await?;
            println!("{}", tally.render());
            println!("done in {:.1} s", clock.elapsed().as_secs_f64());
            if tally.failed() > 0 {
                eprintln!("seed: {} commands failed (reasons above)", tally.failed());
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Load {
            common,
            rate,
            duration,
            users,
            max_in_flight,
            out,
        } => {
            let args = load::LoadArgs {
                rate,
                duration: Duration::from_secs(duration),
                users: users as usize,
                max_in_flight: max_in_flight as usize,
                seed: common.seed.unwrap_or(started),
                run_tag,
            };
            eprintln!("load against {}: {rate}/s for {duration} s", common.api);
            let (api, admin) = connect(&common).await?;
            let report = load::run(&api, &admin, &args).await?;
            let md = report.markdown();
            println!("{md}");
            if let Some(path) = out {
                let doc = format!(
                    "# Polystream load: {rate} req/s for {duration} s against {}\n\n{md}",
                    common.api
                );
                std::fs::write(&path, doc)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("results written to {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_flags_are_rejected_with_a_reason() {
        let err =
            Cli::try_parse_from(["polystream-demo", "load", "--rate", "0", "--duration", "5"])
                .unwrap_err()
                .to_string();
        assert!(err.contains("out of range"), "{err}");
        let err = Cli::try_parse_from(["polystream-demo", "load", "--rate", "5"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--duration"), "{err}");
        let err = Cli::try_parse_from(["polystream-demo", "seed", "--users=-1"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--users"), "{err}");
        assert!(Cli::try_parse_from(["polystream-demo", "seed", "--views", "x"]).is_err());
        assert!(Cli::try_parse_from(["polystream-demo", "nonsense"]).is_err());
    }

    #[test]
    fn defaults_match_the_local_platform() {
        let cli = Cli::try_parse_from(["polystream-demo", "seed"]).unwrap();
        let Command::Seed {
            common,
            users,
            titles,
            views,
            ratings,
            concurrency,
        } = cli.command
        else {
            panic!("not seed");
        };
        assert_eq!(
            (users, titles, views, ratings, concurrency),
            (20, 40, 200, 100, 8)
        );
        assert!(common.api.starts_with("http://127.0.0.1"));
    }
}
