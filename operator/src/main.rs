use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use polystream_common::cli;
use polystream_common::config::{ConfigErrors, ProcessEnv, Reader, Source};
use polystream_operator::controller::{self, ControllerConfig};
use polystream_operator::http;
use polystream_operator::leader::{LeaderConfig, LeaderElector};
use polystream_operator::metrics::OperatorMetrics;
use tokio::sync::watch;

/// Polystream's Kubernetes operator.
#[derive(Parser)]
#[command(about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the StreamingPlatform CustomResourceDefinition as YAML
    /// (`polystream-operator crd > crds/streamingplatform.yaml`).
    Crd,
    /// Run the controller (configuration from the environment: see
    /// docs/configuration.md, "Operator").
    Run,
}

const NAME: &str = "polystream-operator";

/// The derived command with `--version` and, on itself and on `run`, the
/// list of every variable `run` reads with its default (from
/// [`RunConfig::read`] itself, so it cannot drift).
fn command() -> clap::Command {
    let settings = cli::settings(NAME, |r| {
        RunConfig::read(r);
    });
    let variables = cli::render(&settings);
    Cli::command()
        .name(NAME)
        .version(cli::version())
        .after_help(variables.clone())
        .mut_subcommand("run", |run| run.after_help(variables))
}

fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
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
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "operator stopped");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `polystream-operator run`'s settings.
#[derive(Debug, PartialEq)]
struct RunConfig {
    /// `WATCH_NAMESPACE`: only this namespace; unset or empty = all namespaces.
    watch_namespace: Option<String>,
    /// `OPERATOR_HTTP_ADDR`: `/health`, `/ready`, `/metrics`.
    http_addr: SocketAddr,
    leader: LeaderConfig,
}

impl RunConfig {
    fn read<S: Source>(r: &mut Reader<S>) -> Self {
        let namespace = r.string("WATCH_NAMESPACE", "");
        if !namespace.is_empty() && !is_dns_label(&namespace) {
            r.invalid(
                "WATCH_NAMESPACE",
                &namespace,
                "not a namespace name (lowercase letters, digits and '-', at most 63)",
            );
        }
        let http_addr = r.parse("OPERATOR_HTTP_ADDR", SocketAddr::from(([0, 0, 0, 0], 8080)));
        let leader = LeaderConfig::read(r);
        Self {
            watch_namespace: Some(namespace).filter(|n| !n.is_empty()),
            http_addr,
            leader,
        }
    }

    fn from_env() -> Result<Self, ConfigErrors> {
        let mut r = Reader::new(ProcessEnv);
        let config = Self::read(&mut r);
        r.finish().map(|()| config)
    }
}

fn is_dns_label(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Resolves when `stop` turns true (or its sender is gone). A spawned task
/// behind a JoinHandle, because the controller wants a `Sync` future.
fn stopped(mut stop: watch::Receiver<bool>) -> impl Future<Output = ()> + Send + Sync + 'static {
    let task = tokio::spawn(async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    async move {
        let _ = task.await;
    }
}

async fn run() -> anyhow::Result<()> {
    let telemetry = polystream_common::telemetry::init("polystream-operator")?;
    let result = operate().await;
    // Flush the last spans, also after a failure.
    telemetry.shutdown().await;
    result
}

async fn operate() -> anyhow::Result<()> {
    // kube uses ring; another dependency may bring a second rustls provider.
    let _ = rustls_provider();
    let config = RunConfig::from_env()?;
    let client = kube::Client::try_default().await.context(
        "cannot configure the Kubernetes client (KUBECONFIG, ~/.kube/config or the in-cluster service account)",
    )?;
    let metrics = OperatorMetrics::new();
    let (ready_tx, ready_rx) = watch::channel(false);

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        polystream_common::telemetry::shutdown_signal().await;
        stop_tx.send_replace(true);
    });
    let server = tokio::spawn(http::serve(
        config.http_addr,
        metrics.registry(),
        ready_rx,
        stopped(stop_rx.clone()),
    ));

    let mut controller_config = ControllerConfig {
        namespace: config.watch_namespace.clone(),
        instance: Some(config.leader.identity.clone()),
        metrics: metrics.clone(),
        ..ControllerConfig::default()
    };

    let result = if config.leader.enabled {
        let elector = LeaderElector::from_config(client.clone(), &config.leader)
            .with_metrics(metrics.clone());
        let mut leading = elector.subscribe();
        let mut contacted = elector.contacted();
        // A standby is ready once the API server answers; see crate::http.
        tokio::spawn(async move {
            if contacted.wait_for(|c| *c).await.is_ok() {
                ready_tx.send_replace(true);
            }
        });
        let election = tokio::spawn(elector.run(stopped(stop_rx.clone())));
        tracing::info!(
            identity = %config.leader.identity,
            lease = %format!("{}/{}", config.leader.namespace, config.leader.lease_name),
            "waiting for leadership"
        );
        let mut stop = stop_rx.clone();
        let became_leader = tokio::select! {
            r = leading.wait_for(|l| *l) => r.is_ok(),
            _ = stop.wait_for(|s| *s) => false,
        };
        let result = if became_leader {
            tracing::info!("leading: starting the controller");
            // Stop on shutdown or on losing the Lease, whichever comes first.
            let (lost_tx, lost_rx) = watch::channel(false);
            let mut watch_leading = leading.clone();
            tokio::spawn(async move {
                let _ = watch_leading.wait_for(|l| !*l).await;
                lost_tx.send_replace(true);
            });
            let (either_tx, either_rx) = watch::channel(false);
            let mut a = stop_rx.clone();
            let mut b = lost_rx.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = a.wait_for(|s| *s) => {}
                    _ = b.wait_for(|s| *s) => {}
                }
                either_tx.send_replace(true);
            });
            controller::run(client, controller_config, stopped(either_rx)).await;
            if *lost_rx.borrow() && !*stop_rx.borrow() {
                // A deposed leader's cached view is not safe to act on: exit
                // and let Kubernetes restart this replica as a candidate.
                Err(anyhow::anyhow!("lost the leader Lease"))
            } else {
                Ok(())
            }
        } else {
            Ok(())
        };
        let _ = election.await;
        result
    } else {
        tracing::info!("leader election off (LEADER_ELECTION=false): run one replica only");
        metrics.set_leader(true);
        controller_config.readiness = Some(ready_tx);
        controller::run(client, controller_config, stopped(stop_rx.clone())).await;
        Ok(())
    };
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => return Err(anyhow::anyhow!("the HTTP server task failed: {e}")),
    }
    result
}

fn rustls_provider() -> Result<(), ()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn defaults_watch_everything_on_8080_with_leader_election() {
        let mut r = Reader::new([("POD_NAME", "op-0")]);
        let c = RunConfig::read(&mut r);
        r.finish().unwrap();
        assert_eq!(c.watch_namespace, None);
        assert_eq!(c.http_addr, "0.0.0.0:8080".parse().unwrap());
        assert!(c.leader.enabled);
        assert_eq!(c.leader.identity, "op-0");
    }

    #[test]
    fn bad_values_are_named() {
        let mut r = Reader::new([
            ("WATCH_NAMESPACE", "Not_A_Namespace"),
            ("OPERATOR_HTTP_ADDR", "localhost"),
            ("LEADER_ELECTION", "maybe"),
        ]);
        let _ = RunConfig::read(&mut r);
        let message = r.finish().unwrap_err().to_string();
        for var in ["WATCH_NAMESPACE", "OPERATOR_HTTP_ADDR", "LEADER_ELECTION"] {
            assert!(message.contains(var), "{var} not named in: {message}");
        }
    }

    #[test]
    fn a_namespace_scopes_the_watch() {
        let mut r = Reader::new([
            ("WATCH_NAMESPACE", "media"),
            ("OPERATOR_HTTP_ADDR", "127.0.0.1:9000"),
        ]);
        let c = RunConfig::read(&mut r);
        r.finish().unwrap();
        assert_eq!(c.watch_namespace.as_deref(), Some("media"));
        assert_eq!(c.http_addr.port(), 9000);
    }
}
