//! The suite's own S1, S2 and S3: real processes from the workspace's
//! binaries on free 127.0.0.1 ports, on this run's topics, consumer groups,
//! audit indices and MongoDB database, against the shared local servers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::scenario::Service;

pub const S1_BIN: &str = "polystream-s1-gateway";
pub const S2_BIN: &str = "polystream-s2-processor";
pub const S3_BIN: &str = "polystream-s3-monitor";
/// Partitions of the run's topics: enough for a rebalance to move some.
pub const PARTITIONS: i32 = 4;
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Everything that names this run's resources.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub id: String,
    pub bin_dir: PathBuf,
    pub work: PathBuf,
    pub brokers: String,
    pub database_url: String,
    pub redis_url: String,
    /// With the run's own database as its path.
    pub mongodb_uri: String,
    pub mongo_db: String,
    pub opensearch_url: String,
    /// Commands, outcomes, dead letters.
    pub topics: [String; 3],
    pub s2_group: String,
    pub s3_group: String,
    pub audit_prefix: String,
    pub admin_email: String,
    pub admin_password: String,
}

impl RunConfig {
    /// The run's names from its id, and the servers from the environment
    /// (`./dev env`), defaulting to the local ones.
    pub fn new(id: &str, bin_dir: PathBuf, work: PathBuf) -> anyhow::Result<Self> {
        let e = polystream_common::config::StoreEndpoints::from_env()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mongo_db = format!("faults_{}", id.replace('-', "_"));
        let mongodb_uri = mongo_uri_with_db(&e.mongodb_uri, &mongo_db);
        Ok(Self {
            id: id.to_owned(),
            bin_dir,
            work,
            brokers: e.kafka_bootstrap_servers,
            database_url: e.database_url,
            redis_url: e.redis_url,
            mongodb_uri,
            mongo_db,
            opensearch_url: e.opensearch_url.trim_end_matches('/').to_owned(),
            topics: [
                format!("{id}-user"),
                format!("{id}-resp"),
                format!("{id}-dlq"),
            ],
            s2_group: format!("{id}-s2"),
            s3_group: format!("{id}-s3"),
            audit_prefix: format!("{id}-audit"),
            admin_email: format!("admin-{id}@faults.polystream.local"),
            admin_password: format!("faults-admin-{id}"),
        })
    }

    fn common_env(&self, http: &str) -> Vec<(String, String)> {
        [
            ("KAFKA_BOOTSTRAP_SERVERS", self.brokers.clone()),
            ("KAFKA_TOPIC_USER_EVENTS", self.topics[0].clone()),
            ("KAFKA_TOPIC_RESPONSE_EVENTS", self.topics[1].clone()),
            ("KAFKA_TOPIC_DEAD_LETTER", self.topics[2].clone()),
            ("KAFKA_PARTITIONS", PARTITIONS.to_string()),
            ("DATABASE_URL", self.database_url.clone()),
            ("REDIS_URL", self.redis_url.clone()),
            ("MONGODB_URI", self.mongodb_uri.clone()),
            ("OPENSEARCH_URL", self.opensearch_url.clone()),
            ("HTTP_ADDR", http.to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn env_for(&self, service: Service, http: &str) -> Vec<(String, String)> {
        let mut env = self.common_env(http);
        let extra: Vec<(&str, String)> = match service {
            // The load comes from one address far faster than any client's
            // limit allows; limits are not what this suite is about.
            Service::S1 => vec![
                ("RATE_LIMIT_LOGIN", "off".to_owned()),
                ("RATE_LIMIT_REGISTRATION", "off".to_owned()),
                ("RATE_LIMIT_WRITES", "off".to_owned()),
                ("RATE_LIMIT_READS", "off".to_owned()),
                ("RATE_LIMIT_STATUS", "off".to_owned()),
                ("PUBLIC_URL", format!("http://{http}")),
                ("ADMIN_EMAIL", self.admin_email.clone()),
                ("ADMIN_PASSWORD", self.admin_password.clone()),
            ],
            Service::S2 => vec![("KAFKA_GROUP_ID", self.s2_group.clone())],
            Service::S3 => vec![
                ("KAFKA_GROUP_ID", self.s3_group.clone()),
                ("AUDIT_INDEX_PREFIX", self.audit_prefix.clone()),
                ("SPOOL_DIR", self.work.join("spool").display().to_string()),
            ],
        };
        env.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
        env
    }
}

/// `mongodb://host:27017/` (or with a database and options) with `db` as its database.
pub fn mongo_uri_with_db(uri: &str, db: &str) -> String {
    let (base, query) = match uri.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (uri, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let hosts_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..hosts_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn first_line(e: &anyhow::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}

/// A free port on 127.0.0.1 (the listener is dropped; the service binds it next).
pub fn free_addr() -> anyhow::Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.to_string())
}

/// One service process; its output appended to `log` across restarts.
pub struct Proc {
    pub name: String,
    pub http: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn new(
        name: &str,
        binary: PathBuf,
        env: Vec<(String, String)>,
        http: String,
        work: &Path,
    ) -> Self {
        Self {
            name: name.to_owned(),
            http,
            binary,
            env,
            log: work.join(format!("{name}.log")),
            child: None,
        }
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new(&self.binary)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Starts it and waits for `/ready`. A process that exits during
    /// start-up is started again twice, 5 s apart: a shared server may be
    /// restarting (another test's outage, or the previous scenario's).
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let mut attempt = 1;
        loop {
            self.spawn()?;
            match self.wait_ready().await {
                Err(e) if attempt < 3 && self.child.is_none() => {
                    eprintln!("    {} (attempt {attempt}): {}", self.name, first_line(&e));
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                other => return other,
            }
        }
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = format!("http://{}/ready", self.http);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "{} exited during start-up ({status}); last output:\n{}",
                    self.name,
                    self.tail(30)
                );
            }
            let last = match http.get(&url).timeout(Duration::from_secs(3)).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => format!("{}", r.status()),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                bail!(
                    "{} not ready at {url} within {START_TIMEOUT:?} (last answer: {last}); last output:\n{}",
                    self.name,
                    self.tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// `kill -9`, and reaped.
    pub async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// SIGTERM (a graceful stop: the consumer leaves its group), then SIGKILL
    /// after `grace`.
    pub async fn terminate(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if let Some(pid) = c.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(grace, c.wait()).await.is_err() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// The last `n` lines of its output.
    pub fn tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

/// The run's three services (and, during a rebalance, a second S2).
pub struct Platform {
    pub cfg: RunConfig,
    pub s1: Proc,
    pub s2: Proc,
    pub s3: Proc,
}

impl Platform {
    /// Starts S2 (it creates the topics), S3, then S1, each once ready.
    pub async fn start(cfg: RunConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&cfg.work)
            .with_context(|| format!("creating {}", cfg.work.display()))?;
        let bin = |name: &str| -> anyhow::Result<PathBuf> {
            let p = cfg.bin_dir.join(name);
            if !p.is_file() {
                bail!(
                    "{} does not exist: build the services first with `cargo build --workspace --bins` \
                     (`./dev faults` does)",
                    p.display()
                );
            }
            Ok(p)
        };
        let make = |service: Service, name: &str, binary: &str| -> anyhow::Result<Proc> {
            let http = free_addr()?;
            Ok(Proc::new(
                name,
                bin(binary)?,
                cfg.env_for(service, &http),
                http,
                &cfg.work,
            ))
        };
        let mut s2 = make(Service::S2, "s2-processor", S2_BIN)?;
        let mut s3 = make(Service::S3, "s3-monitor", S3_BIN)?;
        let mut s1 = make(Service::S1, "s1-gateway", S1_BIN)?;
        s2.start().await?;
        s3.start().await?;
        s1.start().await?;
        Ok(Self { cfg, s1, s2, s3 })
    }

    pub fn api(&self) -> String {
        format!("http://{}", self.s1.http)
    }

    pub fn service(&mut self, s: Service) -> &mut Proc {
        match s {
            Service::S1 => &mut self.s1,
            Service::S2 => &mut self.s2,
            Service::S3 => &mut self.s3,
        }
    }

    /// A second S2 in the same consumer group, on its own port (not started).
    pub fn second_s2(&self) -> anyhow::Result<Proc> {
        let http = free_addr()?;
        Ok(Proc::new(
            "s2-processor-2",
            self.cfg.bin_dir.join(S2_BIN),
            self.cfg.env_for(Service::S2, &http),
            http,
            &self.cfg.work,
        ))
    }

    /// Stops all three gracefully (S1 first, so nothing new is accepted).
    pub async fn stop(&mut self) {
        for p in [&mut self.s1, &mut self.s2, &mut self.s3] {
            p.terminate(Duration::from_secs(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mongodb_database_is_the_uri_path() {
        assert_eq!(
            mongo_uri_with_db("mongodb://127.0.0.1:27017/", "faults_x"),
            "mongodb://127.0.0.1:27017/faults_x"
        );
        assert_eq!(
            mongo_uri_with_db("mongodb://127.0.0.1:27017", "d"),
            "mongodb://127.0.0.1:27017/d"
        );
        assert_eq!(
            mongo_uri_with_db("mongodb://u:p@h1:1,h2:2/polystream?authSource=admin", "d"),
            "mongodb://u:p@h1:1,h2:2/d?authSource=admin"
        );
    }

    #[test]
    fn each_service_gets_the_runs_names() {
        let cfg = RunConfig {
            id: "faults-x".into(),
            bin_dir: PathBuf::from("/b"),
            work: PathBuf::from("/w"),
            brokers: "k:9092".into(),
            database_url: "pg".into(),
            redis_url: "r".into(),
            mongodb_uri: "m".into(),
            mongo_db: "faults_x".into(),
            opensearch_url: "os".into(),
            topics: ["t-user".into(), "t-resp".into(), "t-dlq".into()],
            s2_group: "g2".into(),
            s3_group: "g3".into(),
            audit_prefix: "faults-x-audit".into(),
            admin_email: "a@x".into(),
            admin_password: "pw-123456".into(),
        };
        let get = |env: &[(String, String)], k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let s2 = cfg.env_for(Service::S2, "127.0.0.1:1");
        assert_eq!(get(&s2, "KAFKA_GROUP_ID"), "g2");
        assert_eq!(get(&s2, "KAFKA_TOPIC_USER_EVENTS"), "t-user");
        let s3 = cfg.env_for(Service::S3, "127.0.0.1:2");
        assert_eq!(get(&s3, "KAFKA_GROUP_ID"), "g3");
        assert_eq!(get(&s3, "AUDIT_INDEX_PREFIX"), "faults-x-audit");
        assert_eq!(get(&s3, "SPOOL_DIR"), "/w/spool");
        let s1 = cfg.env_for(Service::S1, "127.0.0.1:3");
        assert_eq!(get(&s1, "PUBLIC_URL"), "http://127.0.0.1:3");
        assert_eq!(get(&s1, "ADMIN_EMAIL"), "a@x");
    }
}
