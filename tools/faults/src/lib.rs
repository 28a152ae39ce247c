//! Polystream's fault suite (`./dev faults`): starts its own S1, S2 and S3
//! against the shared local servers, drives a fixed-rate mix of commands
//! through S1 while it injects one fault at a time, and after each fault
//! checks the stores directly: every accepted command applied exactly once
//! with a final status, nothing applied that was not accepted, audit
//! documents equal to events, no partition stalled. See docs/faults.md.

pub mod kafka;
pub mod load;
pub mod platform;
pub mod scenario;
pub mod stores;
pub mod tally;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::StreamExt;
use polystream_demo_data::api::Api;
use polystream_demo_data::data;
use polystream_demo_data::rng::Rng;
use reqwest::Method;

use crate::kafka::{AuditExpectation, GroupWatch};
use crate::load::{Client, Planner, User};
use crate::platform::{Platform, RunConfig};
use crate::scenario::{Scenario, Server, Service};
use crate::stores::Stores;
use crate::tally::{EffectKey, Row, Seen, Sent};

#[derive(Debug, Parser)]
#[command(
    name = "polystream-faults",
    about = "Fault suite: load through S1 while servers and services fail, then every effect checked in the stores"
)]
pub struct Cli {
    /// Scenarios to run, in this order (default: all; see --list).
    pub scenarios: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Commands per second through S1.
    #[arg(long, default_value_t = 30.0)]
    pub rate: f64,
    /// Seconds a stopped server stays down.
    #[arg(long, default_value_t = 30)]
    pub outage: u64,
    /// Longest wait, after the load, for every command to be answered and
    /// every partition to reach its end.
    #[arg(long, default_value_t = 120)]
    pub drain_timeout: u64,
    /// Logged-in users sending the per-user commands.
    #[arg(long, default_value_t = 40)]
    pub users: usize,
    /// The results table (default: $POLYSTREAM_STATE_DIR/faults/results.md).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The `./dev` script that stops and starts the shared servers.
    #[arg(long, env = "POLYSTREAM_DEV", default_value = "./dev")]
    pub dev: PathBuf,
    /// Where the service binaries are (default: next to this program).
    #[arg(long, env = "POLYSTREAM_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Keep the run's topics, MongoDB database and audit indices.
    #[arg(long)]
    pub keep: bool,
}

/// Where `./dev` keeps its state: the same rule as scripts/lib/common.sh.
fn state_dir() -> PathBuf {
    std::env::var_os("POLYSTREAM_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|x| PathBuf::from(x).join("polystream")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/polystream"))
        })
        .unwrap_or_else(|| PathBuf::from("."))
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// `host:port` of a server URL (`postgres://u:p@127.0.0.1:5432/db`,
/// `redis://127.0.0.1:6379`, `127.0.0.1:9092,other:9092`). Pure.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let end = rest.find(['/', '?', ',']).unwrap_or(rest.len());
    rest[..end].to_owned()
}

/// Shared servers this run stopped: started again (`./dev up NAME`) however
/// the run ends, even on an error.
struct Stopped {
    dev: PathBuf,
    names: Arc<Mutex<Vec<&'static str>>>,
}

impl Stopped {
    async fn dev(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = tokio::process::Command::new(&self.dev)
            .args(args)
            .output()
            .await
            .with_context(|| format!("running {}", self.dev.display()))?;
        if !out.status.success() {
            bail!(
                "`{} {}` failed: {}{}",
                self.dev.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    async fn stop(&self, s: Server) -> anyhow::Result<()> {
        if let Ok(mut n) = self.names.lock() {
            n.push(s.component());
        }
        self.dev(&["stop", s.component()]).await
    }

    async fn start(&self, s: Server) -> anyhow::Result<()> {
        self.dev(&["up", s.component()]).await?;
        if let Ok(mut n) = self.names.lock() {
            n.retain(|c| *c != s.component());
        }
        Ok(())
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        for c in names {
            eprintln!("restarting {c}, which this run stopped");
            let _ = std::process::Command::new(&self.dev)
                .args(["up", c])
                .status();
        }
    }
}

fn address_of(cfg: &RunConfig, s: Server) -> String {
    host_port(match s {
        Server::Postgres => &cfg.database_url,
        Server::Redis => &cfg.redis_url,
        Server::Ferretdb => &cfg.mongodb_uri,
        Server::Opensearch => &cfg.opensearch_url,
        Server::Kafka => &cfg.brokers,
    })
}

async fn port_open(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// The run: platform, pool, watchers, and what the previous scenario left.
struct Run {
    cli: Cli,
    platform: Platform,
    stores: Stores,
    client: Client,
    planner: Arc<Mutex<Planner>>,
    pool: Vec<i64>,
    titles: Vec<i64>,
    s2_watch: GroupWatch,
    s3_watch: GroupWatch,
    audit: AuditExpectation,
    stopped: Stopped,
    /// Audit documents minus expected ones, and Redis view counters minus
    /// MongoDB views, after the previous scenario.
    audit_base: i64,
    counter_base: i64,
}

/// What draining found the last time it looked.
#[derive(Debug, Default)]
struct DrainState {
    pending: usize,
    behind: Vec<kafka::Behind>,
    audit_diff: i64,
    error: Option<String>,
}

impl Run {
    async fn drain_state(&self, accepted: &[String]) -> DrainState {
        let mut st = DrainState::default();
        match self.stores.final_statuses(accepted).await {
            Ok(done) => st.pending = accepted.len() - done.len(),
            Err(e) => st.error = Some(format!("{e:#}")),
        }
        match (self.s2_watch.behind().await, self.s3_watch.behind().await) {
            (Ok(a), Ok(b)) => st.behind = [a, b].concat(),
            (Err(e), _) | (_, Err(e)) => st.error = Some(format!("{e:#}")),
        }
        match (self.stores.audit_docs().await, self.audit.expected().await) {
            (Ok(docs), Ok(exp)) => st.audit_diff = docs as i64 - exp as i64,
            (Err(e), _) | (_, Err(e)) => st.error = Some(format!("{e:#}")),
        }
        st
    }

    /// Waits until every accepted command has a final status, every group
    /// reached the end of every partition and the audit documents caught up;
    /// the time it took, or `None` after `timeout`, with the last state.
    async fn drain(
        &self,
        accepted: &[String],
        timeout: Duration,
    ) -> (Option<Duration>, DrainState) {
        let start = Instant::now();
        loop {
            let st = self.drain_state(accepted).await;
            if st.error.is_none()
                && st.pending == 0
                && st.behind.is_empty()
                && st.audit_diff == self.audit_base
            {
                return (Some(start.elapsed()), st);
            }
            if start.elapsed() > timeout {
                return (None, st);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn view_counter_diff(&self) -> anyhow::Result<(i64, Vec<String>)> {
        let counters = self.stores.view_counters(&self.titles).await?;
        let off: Vec<String> = counters
            .iter()
            .filter(|(_, c, d)| c != d)
            .map(|(t, c, d)| format!("title {t}: Redis counter {c}, MongoDB views {d}"))
            .collect();
        Ok((counters.iter().map(|(_, c, d)| c - d).sum(), off))
    }

    /// Runs the load around one fault and checks the result.
    async fn scenario(&mut self, sc: Scenario) -> anyhow::Result<Row> {
        let t = sc.timeline(Duration::from_secs(self.cli.outage));
        if let Ok(mut p) = self.planner.lock() {
            p.new_scenario();
        }
        let since = chrono::Utc::now() - chrono::Duration::milliseconds(500);
        let dlq_before = self
            .s3_watch
            .end_total(&self.platform.cfg.topics[2])
            .await?;
        let load = {
            let client = self.client.clone();
            let planner = self.planner.clone();
            let (rate, dur) = (self.cli.rate, t.load());
            tokio::spawn(async move { load::run(&client, planner, rate, dur).await })
        };
        tokio::time::sleep(t.before).await;
        let mut notes = Vec::new();
        let mut extra: Vec<Sent> = Vec::new();
        let mut poisoned = 0;
        eprintln!("    fault: {}", sc.describe());
        match sc {
            Scenario::Kill(Service::S1) => {
                // Mid-request: only once a request is in flight.
                let deadline = Instant::now() + Duration::from_secs(3);
                while self
                    .client
                    .in_flight
                    .load(std::sync::atomic::Ordering::SeqCst)
                    == 0
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let in_flight = self
                    .client
                    .in_flight
                    .load(std::sync::atomic::Ordering::SeqCst);
                self.platform.s1.kill9().await;
                notes.push(format!("S1 killed with {in_flight} request(s) in flight"));
                self.platform.s1.start().await?;
            }
            Scenario::Kill(s) => {
                self.platform.service(s).kill9().await;
                tokio::time::sleep(t.fault).await;
                self.platform.service(s).start().await?;
            }
            Scenario::Stop(server) => {
                let addr = address_of(&self.platform.cfg, server);
                self.stopped.stop(server).await?;
                if port_open(&addr).await {
                    notes.push(format!(
                        "{} still answers at {addr} after `./dev stop` (not started by ./dev?): no outage",
                        server.component()
                    ));
                }
                tokio::time::sleep(t.fault).await;
                eprintln!("    ./dev up {}", server.component());
                self.stopped.start(server).await?;
            }
            Scenario::Rebalance => {
                let mut second = self.platform.second_s2()?;
                second.start().await?;
                eprintln!("    a second S2 joined ({})", second.http);
                tokio::time::sleep(t.fault).await;
                second.terminate(Duration::from_secs(20)).await;
                eprintln!("    the second S2 left");
            }
            Scenario::Poison => {
                let tag = self.platform.cfg.id.clone();
                let (records, emails) = kafka::poison_records(&tag, "/polystream/faults");
                poisoned = records.len() as i64;
                kafka::produce(
                    &self.platform.cfg.brokers,
                    &self.platform.cfg.topics[0],
                    &records,
                )
                .await?;
                extra.extend(emails.into_iter().map(|email| Sent {
                    key: EffectKey::User { email },
                    seen: Seen::Poison,
                }));
            }
        }
        let fault_end = Instant::now();
        let mut sent = load.await.context("the load task")?;
        sent.extend(extra);
        let accepted: Vec<String> = sent
            .iter()
            .filter_map(|s| match &s.seen {
                Seen::Accepted { correlation_id } => Some(correlation_id.clone()),
                _ => None,
            })
            .collect();
        eprintln!(
            "    load done: {} sent, {} accepted; draining (at most {} s)",
            sent.len(),
            accepted.len(),
            self.cli.drain_timeout
        );
        let (drained, st) = self
            .drain(&accepted, Duration::from_secs(self.cli.drain_timeout))
            .await;
        let drain_secs = drained.map(|_| fault_end.elapsed().as_secs_f64());
        let found = self
            .stores
            .found(&sent, &self.pool, since)
            .await
            .context("reading the effects")?;
        let mut row = tally::evaluate(sc.name(), &sent, &found);
        row.drain_secs = drain_secs;
        row.notes.splice(0..0, notes);
        row.stalled = st.behind.len() as u64;
        row.audit_diff = st.audit_diff - self.audit_base;
        self.audit_base = st.audit_diff;
        if drained.is_none() {
            row.notes.push(format!(
                "not drained after {} s: {} accepted commands without a final status{}{}",
                self.cli.drain_timeout,
                st.pending,
                st.behind
                    .iter()
                    .map(|b| format!("; {b}"))
                    .collect::<String>(),
                st.error
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            ));
        }
        if row.audit_diff != 0 {
            row.notes.push(format!(
                "audit documents minus distinct events on the topics: {:+}",
                row.audit_diff
            ));
        }
        let (counter_diff, off) = self.view_counter_diff().await?;
        let delta = counter_diff - self.counter_base;
        self.counter_base = counter_diff;
        if delta > 0 {
            row.duplicated += delta as u64;
        } else {
            row.lost += delta.unsigned_abs();
        }
        if delta != 0 {
            row.notes
                .push(format!("view counters off: {}", off.join("; ")));
        }
        if sc == Scenario::Poison {
            let dead = self
                .s3_watch
                .end_total(&self.platform.cfg.topics[2])
                .await?
                - dlq_before;
            if dead < poisoned {
                row.lost += (poisoned - dead) as u64;
                row.notes.push(format!(
                    "{poisoned} poison records written, {dead} dead-lettered"
                ));
            }
        }
        if row.stalled > 0 {
            // So the next scenario starts clean: a restart resumes a stalled
            // partition (the stall itself is already counted).
            row.notes.push(
                "S2 and S3 restarted after the stall so the next scenario starts clean".into(),
            );
            for s in [Service::S2, Service::S3] {
                self.platform.service(s).kill9().await;
                self.platform.service(s).start().await?;
            }
            let (_, st) = self.drain(&accepted, Duration::from_secs(60)).await;
            self.audit_base = st.audit_diff;
        }
        Ok(row)
    }
}

async fn login_retrying(api: &Api, email: &str, password: &str) -> anyhow::Result<load::User> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match api.login(email, password).await {
            Ok(s) => {
                return Ok(User {
                    id: s.user_id,
                    token: s.token,
                });
            }
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// A POST followed to its outcome; a `503` (a shared server another test
/// stopped) is retried for up to a minute. The accepted body.
async fn command_retrying(
    api: &Api,
    path: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match api.command(Method::POST, path, token, Some(body)).await {
            Ok((accepted, _)) => return Ok(accepted),
            Err(f) if f.starts_with("HTTP 503") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(f) => bail!("{f}"),
        }
    }
}

/// Titles and a pool of logged-in users, created through S1 and followed to
/// their outcome before any fault.
async fn setup(
    api_base: &str,
    cfg: &RunConfig,
    users: usize,
    seed: u64,
) -> anyhow::Result<(Vec<i64>, Vec<User>)> {
    let api = Api::new(api_base)?;
    let admin = login_retrying(&api, &cfg.admin_email, &cfg.admin_password)
        .await
        .context("the run's administrator (registered by S1 at start-up)")?;
    let mut rng = Rng::new(seed);
    let mut titles = Vec::new();
    for t in data::catalog(&mut rng, 6).titles {
        let accepted = command_retrying(&api, "/v1/titles", Some(&admin.token), &t.body())
            .await
            .context("creating a title")?;
        titles.push(
            accepted["title_id"]
                .as_i64()
                .context("no title_id in the 202")?,
        );
    }
    let specs: Vec<(String, String)> = (0..users)
        .map(|i| {
            (
                format!("{}-pool-{i}@faults.polystream.local", cfg.id),
                format!("faults-pool-{i}-{seed}"),
            )
        })
        .collect();
    let pool: Vec<anyhow::Result<User>> = futures::stream::iter(specs)
        .map(|(email, password)| {
            let api = api.clone();
            async move {
                let body =
                    serde_json::json!({"name": "Fault Pool", "email": email, "password": password});
                command_retrying(&api, "/v1/users", None, &body)
                    .await
                    .with_context(|| format!("registering {email}"))?;
                login_retrying(&api, &email, &password).await
            }
        })
        .buffer_unordered(6)
        .collect()
        .await;
    let pool = pool.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok((titles, pool))
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if cli.list {
        print!("{}", scenario::listing());
        return Ok(ExitCode::SUCCESS);
    }
    let scenarios = match scenario::select(&cli.scenarios) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let now = chrono::Utc::now().timestamp_millis() as u64;
    let id = format!("faults-{}", base36(now));
    let state = state_dir();
    let work = state.join("faults").join(&id);
    let out = cli
        .out
        .clone()
        .unwrap_or_else(|| state.join("faults").join("results.md"));
    let bin_dir = match &cli.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .context("locating the service binaries")?,
    };
    let cfg = RunConfig::new(&id, bin_dir, work.clone())?;
    eprintln!(
        "fault suite {id}: {} scenario(s) at {}/s; service logs in {}",
        scenarios.len(),
        cli.rate,
        work.display()
    );
    let started = Instant::now();
    eprintln!("[setup] starting S2, S3 and S1");
    let platform = Platform::start(cfg.clone()).await?;
    let stores = Stores::new(&cfg);
    let result = async {
        eprintln!(
            "[setup] titles and {} logged-in users through S1",
            cli.users
        );
        let (titles, users) = setup(&platform.api(), &cfg, cli.users, now).await?;
        let pool: Vec<i64> = users.iter().map(|u| u.id).collect();
        let topics = cfg.topics.to_vec();
        let mut run = Run {
            client: Client::new(&platform.api())?,
            planner: Arc::new(Mutex::new(Planner::new(
                now ^ 0x5eed,
                &id,
                users,
                titles.clone(),
            ))),
            pool,
            titles,
            s2_watch: GroupWatch::new(&cfg.brokers, &cfg.s2_group, &topics[..1])?,
            s3_watch: GroupWatch::new(&cfg.brokers, &cfg.s3_group, &topics)?,
            audit: AuditExpectation::new(&cfg.brokers, &id, &topics, &cfg.topics[2])?,
            stopped: Stopped {
                dev: cli.dev.clone(),
                names: Arc::default(),
            },
            audit_base: 0,
            counter_base: 0,
            platform,
            stores,
            cli,
        };
        // The set-up's own commands drain first, so the first row is its own.
        let (_, st) = run.drain(&[], Duration::from_secs(60)).await;
        run.audit_base = st.audit_diff;
        run.counter_base = run.view_counter_diff().await?.0;
        let mut rows = Vec::new();
        for (i, sc) in scenarios.iter().enumerate() {
            eprintln!(
                "[{}/{}] {} ({:.0} s into the run)",
                i + 1,
                scenarios.len(),
                sc.name(),
                started.elapsed().as_secs_f64()
            );
            let row = match run.scenario(*sc).await {
                Ok(r) => r,
                Err(e) => Row {
                    scenario: sc.name().to_owned(),
                    notes: vec![format!("the scenario could not run: {e:#}")],
                    ..Row::default()
                },
            };
            eprintln!(
                "    {}: sent {}, accepted {}, lost {}, duplicated {}, unexpected {}, stalled {}",
                if row.failed() { "FAIL" } else { "ok" },
                row.sent,
                row.accepted,
                row.lost,
                row.duplicated,
                row.unexpected,
                row.stalled
            );
            rows.push(row);
        }
        anyhow::Ok((rows, run))
    }
    .await;
    let (rows, mut run) = result?;
    let table = tally::table(&rows);
    let doc = format!(
        "# Polystream fault suite\n\nRun `{id}`: {} commands/s, outages of {} s, drain timeout {} s, \
         {:.0} s in all. Service logs: `{}`.\n\n{table}",
        run.cli.rate,
        run.cli.outage,
        run.cli.drain_timeout,
        started.elapsed().as_secs_f64(),
        work.display()
    );
    println!("\n{table}");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &doc).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("results written to {}", out.display());
    run.platform.stop().await;
    if !run.cli.keep {
        kafka::delete_topics(&cfg.brokers, &cfg.topics).await;
        run.stores.clean_up().await;
    }
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.failed())
        .map(|r| r.scenario.as_str())
        .collect();
    // The plain closing line test harnesses read: scenarios are the tests here.
    println!(
        "faults: {} passed, {} failed",
        rows.len() - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        eprintln!("every scenario passed");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("failed: {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_come_from_their_urls() {
        assert_eq!(
            host_port("postgres://polystream:pw@127.0.0.1:5432/polystream"),
            "127.0.0.1:5432"
        );
        assert_eq!(host_port("redis://127.0.0.1:6379"), "127.0.0.1:6379");
        assert_eq!(host_port("127.0.0.1:9092,10.0.0.2:9092"), "127.0.0.1:9092");
        assert_eq!(
            host_port("mongodb://127.0.0.1:27017/faults_x"),
            "127.0.0.1:27017"
        );
        assert_eq!(host_port("http://127.0.0.1:9200"), "127.0.0.1:9200");
    }

    #[test]
    fn cli_defaults_keep_the_run_bounded() {
        let cli = Cli::try_parse_from(["polystream-faults"]).unwrap();
        assert_eq!((cli.rate, cli.outage, cli.drain_timeout), (30.0, 30, 120));
        assert!(cli.scenarios.is_empty() && !cli.list);
        let cli = Cli::try_parse_from(["polystream-faults", "kill-s2", "poison", "--rate", "10"])
            .unwrap();
        assert_eq!(cli.scenarios, ["kill-s2", "poison"]);
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }
}
