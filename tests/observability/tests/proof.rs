//! The observability proof (issue 6): S1, S2, S3 and the operator run as
//! real processes on free ports with this run's own topics, groups, audit
//! indices and Kubernetes namespace; the local Prometheus scrapes them
//! through a file_sd target file while a generated load (the demo tool, a
//! failing command, a poison event) runs; then
//!   - every query of every dashboard panel returns data for this run,
//!   - `promtool check metrics` accepts every scrape,
//!   - one request's trace in Jaeger is the chain S1 → Kafka → S2 → Kafka →
//!     S3 with S2's store spans and the correlation id on every span,
//!   - each service's JSON logs carry that trace id and correlation id.
//!
//! Every check runs and the test fails once, listing every problem.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use polystream_observability_tests::dashboard::{Dashboard, bucket_metrics, substitute};
use polystream_observability_tests::jaeger::{self, CORRELATION_KEY, Services};
use polystream_observability_tests::openmetrics::to_classic_text;
use polystream_observability_tests::{dashboards_dir, json_files, logs, repo_root};
use polystream_smoke_tests::api::Api;
use polystream_smoke_tests::jaeger::Jaeger;
use polystream_smoke_tests::metrics_text;
use polystream_smoke_tests::{env_or, service_binary, unique, unreachable};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

const S1: &str = "polystream-s1-gateway";
const S2: &str = "polystream-s2-processor";
const S3: &str = "polystream-s3-monitor";
const OPERATOR: &str = "polystream-operator";
const START_TIMEOUT: Duration = Duration::from_secs(120);

// ---- processes -----------------------------------------------------------------

/// A service started by this test; stopped (TERM, then KILL) on drop, so a
/// failing test leaves nothing running.
struct Proc {
    name: &'static str,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    fn spawn(
        name: &'static str,
        bin: &Path,
        args: &[&str],
        env: &[(&str, String)],
        dir: &Path,
    ) -> Self {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let child = Command::new(bin)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", bin.display()));
        Self {
            name,
            child,
            stdout,
            stderr,
        }
    }

    /// Everything it wrote so far, stdout then stderr.
    fn output(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!("{}{}", read(&self.stdout), read(&self.stderr))
    }

    fn tail(&self) -> String {
        let out = self.output();
        let lines: Vec<&str> = out.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Polls `url` until it answers 2xx; fails naming the process, with the
    /// end of its output, when it exits or does not get there in time.
    async fn wait_ready(&mut self, http: &reqwest::Client, url: &str) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited ({status}) during start-up; last output:\n{}",
                    self.name,
                    self.tail()
                );
            }
            let last = match http.get(url).timeout(Duration::from_secs(3)).send().await {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => e.to_string(),
            };
            assert!(
                Instant::now() < deadline,
                "{} not ready at {url} within {START_TIMEOUT:?} (last answer: {last}); last output:\n{}",
                self.name,
                self.tail()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        // TERM first: the services flush their spans on shutdown.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the run created outside its processes, removed on drop.
struct Cleanup {
    target_file: Option<PathBuf>,
    namespace: Option<String>,
    kubectl: String,
    audit_prefix: String,
    opensearch: String,
    dir: PathBuf,
    keep_dir: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(f) = &self.target_file {
            let _ = std::fs::remove_file(f);
        }
        if let Some(ns) = &self.namespace {
            let _ = Command::new(&self.kubectl)
                .args(["delete", "namespace", ns, "--wait=false"])
                .output();
        }
        let _ = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-X",
                "DELETE",
                &format!("{}/{}-*", self.opensearch, self.audit_prefix),
            ])
            .status();
        if self.keep_dir || std::thread::panicking() {
            eprintln!("service output kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

// ---- Kubernetes (through kubectl: plain manifests, no typed client needed) ----

fn kubectl(kubectl: &str, args: &[&str], stdin: Option<&Value>) -> String {
    let mut child = Command::new(kubectl)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run kubectl ({kubectl}): {e}"));
    if let Some(doc) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(doc.to_string().as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        let api = std::env::var("KUBECONFIG").unwrap_or_default();
        if text.contains("connection refused") || text.contains("Unable to connect") {
            unreachable("the Kubernetes API server", "kube_apiserver", &api, &text);
        }
        panic!("kubectl {} failed: {text}", args.join(" "));
    }
    text
}

fn sample(name: &str) -> Value {
    let path = repo_root().join("k8s/samples").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---- Prometheus ------------------------------------------------------------------

async fn prom_query(http: &reqwest::Client, prom: &str, query: &str) -> Result<Vec<Value>, String> {
    let url = reqwest::Url::parse_with_params(&format!("{prom}/api/v1/query"), [("query", query)])
        .map_err(|e| format!("PROMETHEUS_URL {prom}: {e}"))?;
    let res = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("Prometheus at {prom}: {e}"))?;
    let body: Value = res
        .json()
        .await
        .map_err(|e| format!("Prometheus answer: {e}"))?;
    if body["status"] != "success" {
        return Err(format!("Prometheus refused the query: {body}"));
    }
    Ok(body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn sample_value(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Waits until `query` returns a series whose value satisfies `ok`.
async fn prom_wait(
    http: &reqwest::Client,
    prom: &str,
    query: &str,
    ok: impl Fn(f64) -> bool,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = prom_query(http, prom, query).await?;
        if got.iter().any(|s| ok(sample_value(s))) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{query} not satisfied within {timeout:?}: {got:?}"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One exemplar of `metric` from this run, and the trace it names in Jaeger:
/// what a click on an exemplar dot in Grafana opens.
async fn exemplar_resolves(
    http: &reqwest::Client,
    prom: &str,
    jaeger: &Jaeger,
    metric: &str,
    run: &str,
    since: std::time::SystemTime,
) -> Result<(), String> {
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
            .to_string()
    };
    let query = format!("{metric}{{run=\"{run}\"}}");
    let url = reqwest::Url::parse_with_params(
        &format!("{prom}/api/v1/query_exemplars"),
        [
            ("query", query.as_str()),
            ("start", &secs(since)),
            ("end", &secs(std::time::SystemTime::now())),
        ],
    )
    .map_err(|e| e.to_string())?;
    let body: Value = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("Prometheus: {e}"))?
        .json()
        .await
        .map_err(|e| format!("Prometheus answer: {e}"))?;
    let trace_ids: Vec<String> = body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_owned))
        .collect();
    // The oldest: its spans have certainly been exported by now.
    let Some(trace_id) = trace_ids.first() else {
        return Err(format!(
            "Prometheus stored no exemplar with a trace_id for {query} (answer: {body:.300})"
        ));
    };
    jaeger
        .wait_trace(trace_id, |spans| !spans.is_empty(), Duration::from_secs(15))
        .await
        .map(drop)
        .map_err(|e| format!("exemplar trace_id {trace_id} is not a trace in Jaeger: {e}"))
}

/// `promtool check metrics` accepts `text` without a remark: Err with what it said.
fn promtool_check_metrics(text: &str) -> Result<(), String> {
    match metrics_text::promtool_check_metrics(text)? {
        said if said.is_empty() => Ok(()),
        said => Err(said),
    }
}

// ---- S1 ------------------------------------------------------------------------------

/// Registers a user; returns the 202 body (correlation_id, status_url).
async fn register(api: &Api, email: &str) -> Value {
    let (status, body) = api
        .send(
            reqwest::Method::POST,
            "/v1/users",
            None,
            Some(json!({"name": "Obs Proof", "email": email, "password": "obs-proof-password-1"})),
        )
        .await;
    assert_eq!(status, 202, "POST /v1/users: {body}");
    body
}

async fn poison(brokers: &str, topic: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap_or_else(|e| unreachable("Apache Kafka", "kafka", brokers, e));
    producer
        .send(
            FutureRecord::to(topic)
                .key("poison")
                .payload("this is not a CloudEvent"),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(e, _)| unreachable("Apache Kafka", "kafka", brokers, e));
}

// ---- the test --------------------------------------------------------------------------

/// Where the local servers are (`./dev env`), checked before anything starts.
struct Servers {
    http: reqwest::Client,
    prom: String,
    jaeger: Jaeger,
    brokers: String,
    opensearch: String,
    kubectl: String,
    sd_dir: PathBuf,
}

impl Servers {
    async fn check() -> Self {
        let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| {
            panic!(
                "KUBECTL is not set: `./dev env` prints it (`./dev install kubectl` installs it)"
            )
        });
        let sd_dir = PathBuf::from(std::env::var("PROMETHEUS_FILE_SD_DIR").unwrap_or_else(|_| {
            panic!(
                "PROMETHEUS_FILE_SD_DIR is not set: `./dev env` prints it once Prometheus was \
                 started by a ./dev that knows file_sd (`./dev stop prometheus && ./dev up prometheus`)"
            )
        }));
        let s = Self {
            http: reqwest::Client::new(),
            prom: env_or("PROMETHEUS_URL", "http://127.0.0.1:9090"),
            jaeger: Jaeger::reachable().await,
            brokers: env_or("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            opensearch: env_or("OPENSEARCH_URL", "http://127.0.0.1:9200"),
            kubectl,
            sd_dir,
        };
        let config = match s
            .http
            .get(format!("{}/api/v1/status/config", s.prom))
            .send()
            .await
        {
            Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
            Err(e) => unreachable("Prometheus", "prometheus", &s.prom, e),
        };
        assert!(
            config["data"]["yaml"]
                .as_str()
                .is_some_and(|y| y.contains(&*s.sd_dir.to_string_lossy())),
            "the running Prometheus does not read target files from {}: restart it with \
             `./dev stop prometheus && ./dev up prometheus` (its config is written at start)",
            s.sd_dir.display()
        );
        s
    }
}

/// This run's platform: the four processes and what identifies them.
struct Run {
    id: String,
    started: std::time::SystemTime,
    topics: [String; 3],
    admin: (String, String),
    s1_api: String,
    /// S2's, S3's and the operator's HTTP base URLs (the console polls them).
    others_api: [String; 3],
    dir: PathBuf,
    /// (job, /metrics URL) of each process.
    metrics: Vec<(&'static str, String)>,
    s1: Proc,
    s2: Proc,
    s3: Proc,
    operator: Proc,
    // Declared last: dropped after the processes are stopped.
    cleanup: Cleanup,
}

impl Run {
    /// Starts S2, S3, S1 and the operator (in that order: S2 creates the
    /// topics), and applies a StreamingPlatform in the run's namespace.
    async fn start(srv: &Servers) -> Self {
        let bins: Vec<PathBuf> = [S1, S2, S3, OPERATOR]
            .iter()
            .map(|b| service_binary(b))
            .collect();
        let id = unique("obs");
        let dir = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cleanup = Cleanup {
            target_file: None,
            namespace: None,
            kubectl: srv.kubectl.clone(),
            audit_prefix: format!("{id}-audit"),
            opensearch: srv.opensearch.clone(),
            dir: dir.clone(),
            keep_dir: std::env::var_os("KEEP_OBS_OUTPUT").is_some(),
        };
        let topics = [
            format!("{id}-user"),
            format!("{id}-resp"),
            format!("{id}-dlq"),
        ];

        // The namespace doubles as the dashboards' $namespace for this run.
        kubectl(&srv.kubectl, &["create", "namespace", &id], None);
        cleanup.namespace = Some(id.clone());
        let mut secret = sample("secrets.yaml");
        secret["metadata"]["namespace"] = json!(id);
        kubectl(&srv.kubectl, &["apply", "-f", "-"], Some(&secret));

        let (s1_http, s1_metrics) = (free_addr(), free_addr());
        let (s2_http, s2_metrics) = (free_addr(), free_addr());
        let (s3_http, s3_metrics) = (free_addr(), free_addr());
        let op_http = free_addr();
        let admin = (
            format!("admin-{id}@example.com"),
            "obs-admin-password-1".to_owned(),
        );
        let common = |service: &str, http_addr: &str, metrics_addr: &str| {
            vec![
                ("KAFKA_BOOTSTRAP_SERVERS", srv.brokers.clone()),
                ("KAFKA_TOPIC_USER_EVENTS", topics[0].clone()),
                ("KAFKA_TOPIC_RESPONSE_EVENTS", topics[1].clone()),
                ("KAFKA_TOPIC_DEAD_LETTER", topics[2].clone()),
                ("KAFKA_PARTITIONS", "3".into()),
                ("HTTP_ADDR", http_addr.to_owned()),
                ("METRICS_ADDR", metrics_addr.to_owned()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", srv.jaeger.otlp.clone()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
                ("OTEL_SERVICE_NAME", service.to_owned()),
                ("OTEL_TRACES_SAMPLER", "parentbased_always_on".into()),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    format!("polystream.test_run={id}"),
                ),
                // Export within a second, so the trace is complete soon after the load.
                ("OTEL_BSP_SCHEDULE_DELAY", "500".into()),
                (
                    "RUST_LOG",
                    "info,polystream_s1_gateway=debug,polystream_s2_processor=debug,\
                     polystream_s3_monitor=debug,polystream_common=debug"
                        .into(),
                ),
            ]
        };

        let mut env = common(S2, &s2_http, &s2_metrics);
        env.push(("KAFKA_GROUP_ID", format!("{id}-s2")));
        let mut s2 = Proc::spawn("s2-processor", &bins[1], &[], &env, &dir);
        s2.wait_ready(&srv.http, &format!("http://{s2_http}/ready"))
            .await;

        let mut env = common(S3, &s3_http, &s3_metrics);
        env.extend([
            ("KAFKA_GROUP_ID", format!("{id}-s3")),
            ("AUDIT_INDEX_PREFIX", format!("{id}-audit")),
            ("SPOOL_DIR", dir.join("spool").display().to_string()),
        ]);
        let mut s3 = Proc::spawn("s3-monitor", &bins[2], &[], &env, &dir);
        s3.wait_ready(&srv.http, &format!("http://{s3_http}/ready"))
            .await;

        let mut env = common(S1, &s1_http, &s1_metrics);
        env.extend([
            ("PUBLIC_URL", format!("http://{s1_http}")),
            ("ADMIN_EMAIL", admin.0.clone()),
            ("ADMIN_PASSWORD", admin.1.clone()),
        ]);
        let mut s1 = Proc::spawn("s1-gateway", &bins[0], &[], &env, &dir);
        s1.wait_ready(&srv.http, &format!("http://{s1_http}/ready"))
            .await;

        let env = vec![
            ("WATCH_NAMESPACE", id.clone()),
            ("LEADER_ELECTION", "false".to_owned()),
            ("OPERATOR_HTTP_ADDR", op_http.clone()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", srv.jaeger.otlp.clone()),
            ("OTEL_SERVICE_NAME", OPERATOR.to_owned()),
            ("RUST_LOG", "info,polystream_operator=debug".to_owned()),
        ];
        let mut operator = Proc::spawn("operator", &bins[3], &["run"], &env, &dir);
        operator
            .wait_ready(&srv.http, &format!("http://{op_http}/health"))
            .await;
        // The sample platform, on this run's topics, so the operator has one to report on.
        let mut platform = sample("streamingplatform.yaml");
        platform["metadata"]["namespace"] = json!(id);
        platform["spec"]["stores"]["kafka"]["bootstrapServers"] = json!(srv.brokers);
        platform["spec"]["stores"]["kafka"]["partitions"] = json!(3);
        platform["spec"]["stores"]["kafka"]["topics"] = json!({
            "userEvents": topics[0], "responseEvents": topics[1], "deadLetter": topics[2]
        });
        kubectl(&srv.kubectl, &["apply", "-f", "-"], Some(&platform));

        Self {
            started: std::time::SystemTime::now(),
            topics,
            admin,
            s1_api: format!("http://{s1_http}"),
            others_api: [
                format!("http://{s2_http}"),
                format!("http://{s3_http}"),
                format!("http://{op_http}"),
            ],
            dir: dir.clone(),
            metrics: vec![
                ("s1-gateway", format!("http://{s1_metrics}/metrics")),
                ("s2-processor", format!("http://{s2_metrics}/metrics")),
                ("s3-monitor", format!("http://{s3_metrics}/metrics")),
                ("operator", format!("http://{op_http}/metrics")),
            ],
            s1,
            s2,
            s3,
            operator,
            cleanup,
            id,
        }
    }

    /// Registers the processes with Prometheus (a file_sd target file naming
    /// each job, labelled with the run) and waits until each is scraped.
    async fn register_targets(&mut self, srv: &Servers) {
        let id = &self.id;
        let targets: Vec<Value> = self
            .metrics
            .iter()
            .map(|(job, url)| {
                let target = url
                    .trim_start_matches("http://")
                    .trim_end_matches("/metrics");
                json!({"targets": [target], "labels": {"job": job, "namespace": id, "run": id}})
            })
            .collect();
        std::fs::create_dir_all(&srv.sd_dir).unwrap();
        let target_file = srv.sd_dir.join(format!("{id}.json"));
        // Written aside and renamed: Prometheus never reads half a file.
        let tmp = srv.sd_dir.join(format!(".{id}.tmp"));
        std::fs::write(&tmp, Value::Array(targets).to_string()).unwrap();
        std::fs::rename(&tmp, &target_file).unwrap();
        self.cleanup.target_file = Some(target_file.clone());
        // The job label must be the file's, not the scrape config's job_name.
        for (job, _) in &self.metrics {
            let q = format!("up{{job=\"{job}\",run=\"{id}\"}}");
            let Err(e) = prom_wait(
                &srv.http,
                &srv.prom,
                &q,
                |v| v == 1.0,
                Duration::from_secs(60),
            )
            .await
            else {
                continue;
            };
            let targets: Value = srv
                .http
                .get(format!("{}/api/v1/targets", srv.prom))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let mine: Vec<String> = targets["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["labels"]["run"] == id.as_str())
                .map(|t| {
                    format!(
                        "{} {} {} {}",
                        t["labels"]["job"], t["scrapeUrl"], t["health"], t["lastError"]
                    )
                })
                .collect();
            panic!(
                "Prometheus does not scrape job {job} of this run from {}: {e}\n\
                 this run's targets (job, url, health, last error):\n  {}",
                target_file.display(),
                mine.join("\n  ")
            );
        }
    }

    /// The load: one traced registration (its correlation id is returned),
    /// the demo tool's mixed traffic, failing commands and poison events, and
    /// a spec change for the operator. Returns once Prometheus has scraped it all.
    async fn generate_load(&self, srv: &Servers) -> String {
        let api = Api {
            base: self.s1_api.clone(),
            http: srv.http.clone(),
        };
        api.login(&self.admin.0, &self.admin.1).await;
        let email = format!("{}@example.com", self.id);
        let traced = register(&api, &email).await;
        let corr = traced["correlation_id"]
            .as_str()
            .expect("correlation_id in the 202")
            .to_owned();
        let outcome = api.outcome(&traced).await;
        assert_eq!(
            outcome["state"], "completed",
            "the traced registration: {outcome}"
        );

        let mut demo = Proc::spawn(
            "demo-load",
            &service_binary("polystream-demo"),
            &["load", "--rate", "8", "--duration", "25", "--users", "2"],
            &[
                ("POLYSTREAM_API", api.base.clone()),
                ("ADMIN_EMAIL", self.admin.0.clone()),
                ("ADMIN_PASSWORD", self.admin.1.clone()),
            ],
            &self.cleanup.dir,
        );
        // Failures and dead letters twice: once early, once at the end, so the
        // newest samples of their series fall inside the panels' 1m windows.
        let failures = async || {
            let dup = register(&api, &email).await;
            let out = api.outcome(&dup).await;
            assert_eq!(
                out["state"], "failed",
                "a duplicate registration must fail: {out}"
            );
            poison(&srv.brokers, &self.topics[0]).await;
        };
        failures().await;
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = demo.exited() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the demo load did not finish within 120s:\n{}",
                demo.tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert!(
            status.success(),
            "the demo load failed ({status}):\n{}",
            demo.tail()
        );
        // A spec change: the operator reconciles inside the panels' window.
        kubectl(
            &srv.kubectl,
            &[
                "patch",
                "streamingplatform",
                "polystream",
                "-n",
                &self.id,
                "--type",
                "merge",
                "-p",
                r#"{"spec":{"processor":{"replicas":1}}}"#,
            ],
            None,
        );
        failures().await;

        // Both dead letters scraped, then one scrape more: every series has
        // at least two samples after the last event.
        let dlq = format!(
            "sum(polystream_dead_lettered_events_total{{run=\"{}\"}})",
            self.id
        );
        if let Err(e) = prom_wait(
            &srv.http,
            &srv.prom,
            &dlq,
            |v| v >= 2.0,
            Duration::from_secs(60),
        )
        .await
        {
            panic!("the two poison events never showed in Prometheus: {e}");
        }
        tokio::time::sleep(Duration::from_secs(11)).await;
        corr
    }

    /// Stops the processes and deletes the run's topics (best effort: a
    /// leftover topic harms nobody); the rest goes with `cleanup`.
    async fn stop(self, srv: &Servers, keep_output: bool) {
        let Self {
            s1,
            s2,
            s3,
            operator,
            mut cleanup,
            topics,
            ..
        } = self;
        drop((s1, s2, s3, operator));
        if let Ok(admin) = ClientConfig::new()
            .set("bootstrap.servers", &srv.brokers)
            .create::<AdminClient<DefaultClientContext>>()
        {
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
        }
        cleanup.keep_dir |= keep_output;
    }
}

/// The alert rules the local Prometheus loaded fire on this run's dead letters.
async fn check_alert(srv: &Servers, ns: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alerts: Value = srv
            .http
            .get(format!("{}/api/v1/alerts", srv.prom))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null);
        let firing = alerts["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| {
                a["labels"]["alertname"] == "PolystreamDeadLetters"
                    && a["labels"]["namespace"] == ns
                    && a["state"] == "firing"
            });
        if firing {
            return Vec::new();
        }
        if Instant::now() > deadline {
            return vec![format!(
                "alert PolystreamDeadLetters is not firing for namespace {ns} after two poison \
                 events (are charts/polystream/rules/*.yml loaded? `curl -X POST {}/-/reload`)",
                srv.prom
            )];
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every query of every dashboard panel, for this run's namespace, returns
/// at least one series with a number.
async fn check_panels(srv: &Servers, ns: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let vars = [("__rate_interval", "1m"), ("namespace", ns)];
    let mut queries = 0;
    for (file, text) in json_files(&dashboards_dir()).unwrap() {
        let (d, _) = Dashboard::parse(&file, &text).unwrap_or_else(|e| panic!("{e}"));
        for p in &d.panels {
            for q in &p.queries {
                queries += 1;
                let at = format!(
                    "dashboard {:?} ({file}) panel {:?} query {}",
                    d.title, p.title, q.ref_id
                );
                let expr = match substitute(&q.expr, &vars) {
                    Ok(e) => e,
                    Err(e) => {
                        problems.push(format!("{at}: {e}"));
                        continue;
                    }
                };
                match prom_query(&srv.http, &srv.prom, &expr).await {
                    Err(e) => problems.push(format!("{at}: {e}\n      {expr}")),
                    Ok(r) if r.is_empty() => problems.push(format!("{at}: no data\n      {expr}")),
                    Ok(r) if r.iter().all(|s| sample_value(s).is_nan()) => problems.push(format!(
                        "{at}: only NaN (no events in the window)\n      {expr}"
                    )),
                    Ok(_) => {}
                }
            }
        }
    }
    assert!(
        queries > 0,
        "no dashboard queries found in {}",
        dashboards_dir().display()
    );
    eprintln!("{queries} dashboard queries run against Prometheus for namespace {ns}");
    problems
}

/// The latency panels' exemplars lead to traces Jaeger holds.
async fn check_exemplars(srv: &Servers, run: &Run) -> Vec<String> {
    let mut buckets: Vec<String> = Vec::new();
    for (file, text) in json_files(&dashboards_dir()).unwrap() {
        let (d, _) = Dashboard::parse(&file, &text).unwrap_or_else(|e| panic!("{e}"));
        for q in d
            .panels
            .iter()
            .flat_map(|p| &p.queries)
            .filter(|q| q.exemplar)
        {
            for m in bucket_metrics(&q.expr) {
                if !buckets.contains(&m) {
                    buckets.push(m);
                }
            }
        }
    }
    let mut problems = Vec::new();
    // Reconciles are not requests: the operator's histogram needs no trace links.
    for metric in buckets
        .iter()
        .filter(|m| !m.starts_with("polystream_operator_"))
    {
        if let Err(e) = exemplar_resolves(
            &srv.http,
            &srv.prom,
            &srv.jaeger,
            metric,
            &run.id,
            run.started,
        )
        .await
        {
            problems.push(format!("exemplars of {metric}: {e}"));
        }
    }
    problems
}

/// `promtool check metrics` accepts both answers of every /metrics: the
/// OpenMetrics Prometheus scrapes (rewritten to the classic format, the only
/// one promtool parses) and the classic text a plain client gets.
async fn check_metrics_lint(srv: &Servers, run: &Run) -> Vec<String> {
    const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";
    let mut problems = Vec::new();
    for (job, url) in &run.metrics {
        for accept in [OPENMETRICS, "text/plain"] {
            let res = srv.http.get(url).header("accept", accept).send().await;
            let (content_type, body) = match res {
                Ok(r) if r.status().is_success() => (
                    r.headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    r.text().await.unwrap_or_default(),
                ),
                Ok(r) => {
                    problems.push(format!("{job}: {url} answered {}", r.status()));
                    break;
                }
                Err(e) => {
                    problems.push(format!("{job}: {url} unreachable: {e}"));
                    break;
                }
            };
            // promtool accepts an empty input: make sure there is something to lint.
            if !body.contains("# TYPE ") {
                problems.push(format!(
                    "{job}: {url} (Accept: {accept}) exposes no metric families: {body:.200}"
                ));
                continue;
            }
            problems.extend(undocumented_families(job, &body));
            let text = if content_type.starts_with("application/openmetrics-text") {
                to_classic_text(&body)
            } else {
                body
            };
            if let Err(said) = promtool_check_metrics(&text) {
                problems.push(format!(
                    "{job}: `promtool check metrics` on {url} (Accept: {accept}, answered \
                     {content_type}):\n      {}",
                    said.replace('\n', "\n      ")
                ));
            }
        }
    }
    problems
}

/// Every metric family a service exposes is in the metric reference
/// (docs/observability.md, and docs/operator.md for the operator's own).
fn undocumented_families(job: &str, body: &str) -> Vec<String> {
    let root = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("../..");
    let docs: String = ["docs/observability.md", "docs/operator.md"]
        .iter()
        .map(|doc| std::fs::read_to_string(root.join(doc)).unwrap_or_default())
        .collect();
    body.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|family| !docs.contains(&format!("`{family}")))
        .map(|family| format!("{job}: metric family {family} is not in the metric reference (docs/observability.md)"))
        .collect()
}

/// The traced request is ONE trace S1 → Kafka → S2 → Kafka → S3, found by
/// its correlation id. Returns its trace id (from Jaeger, else from S1's
/// logs) and the problems.
async fn check_trace(srv: &Servers, corr: &str, s1_log: &str) -> (Option<String>, Vec<String>) {
    let services = Services {
        s1: S1,
        s2: S2,
        s3: S3,
    };
    let tags = json!({ CORRELATION_KEY: corr }).to_string();
    let search = [
        ("service", S1),
        ("tags", tags.as_str()),
        ("lookback", "1h"),
        ("limit", "20"),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = srv.jaeger.search(&search).await;
        let found = answer["data"].as_array().cloned().unwrap_or_default();
        let (trace_id, result) = match found.as_slice() {
            [] => {
                let from_logs = logs::trace_id_of(s1_log, corr);
                let hint = match &from_logs {
                    Some(t) => format!(
                        "S1's logs name trace {t} for it: is it in Jaeger? {}/api/traces/{t}",
                        srv.jaeger.query
                    ),
                    None => "and S1's logs name no trace for it either".to_owned(),
                };
                (
                    from_logs,
                    Err(format!(
                        "no trace of service {S1} with tag {CORRELATION_KEY}={corr} in Jaeger \
                         ({}); {hint}",
                        srv.jaeger.query
                    )),
                )
            }
            [trace] => {
                // Jaeger drops leading zeros; logs and W3C ids have all 32 digits.
                let tid = format!("{:0>32}", trace["traceID"].as_str().unwrap_or_default());
                let spans = jaeger::spans_of(&answer);
                let result = jaeger::check_chain(&spans, services, corr)
                    .map(|chain| eprintln!("trace {tid} of {corr}: {chain:?}"))
                    .map_err(|p| {
                        format!(
                            "trace {tid} of {corr}:\n      {}\n    the trace:\n{}",
                            p.join("\n      "),
                            jaeger::render_tree(&spans)
                        )
                    });
                (Some(tid), result)
            }
            many => (
                None,
                Err(format!(
                    "{} traces carry {CORRELATION_KEY}={corr}; one request must be ONE trace: {:?}",
                    many.len(),
                    many.iter()
                        .map(|t| t["traceID"].clone())
                        .collect::<Vec<_>>()
                )),
            ),
        };
        match result {
            Ok(()) => return (trace_id, Vec::new()),
            Err(e) if Instant::now() > deadline => return (trace_id, vec![e]),
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// Each service wrote a JSON log line carrying the trace id and correlation id.
fn check_logs(run: &Run, trace_id: Option<&str>, corr: &str) -> Vec<String> {
    let Some(tid) = trace_id else {
        return vec![format!("logs not checked: no trace id for {corr}")];
    };
    let mut problems = Vec::new();
    for p in [&run.s1, &run.s2, &run.s3] {
        let out = p.output();
        if logs::line_with(&out, tid, corr).is_none() {
            problems.push(format!(
                "{}: no JSON log line with trace_id={tid} and correlation_id={corr} \
                 ({} JSON lines of {} captured in {})",
                p.name,
                logs::json_lines(&out),
                out.lines().count(),
                p.stdout.display()
            ));
        }
    }
    problems
}

/// The console (services/console) over this run, in Debian's Chromium driven
/// by playwright-core (tests/observability/browser/console.cjs): no console
/// errors, a command sent through S1 listed within seconds, its audit trail
/// with the trace's spans of S1, S2 and S3, data in every chart. Screenshots
/// land in the run's directory (kept with `KEEP_OBS_OUTPUT`).
async fn check_console(srv: &Servers, run: &Run) -> Vec<String> {
    let chromium = env_or("CHROMIUM", "/usr/bin/chromium");
    let modules = std::env::var("PLAYWRIGHT_NODE_PATH").unwrap_or_default();
    if !Path::new(&chromium).is_file() || !Path::new(&modules).join("playwright-core").is_dir() {
        return vec![format!(
            "Chromium ({chromium}) or playwright-core (PLAYWRIGHT_NODE_PATH={modules:?}) is not \
             installed: run `./dev install chromium` and `source <(./dev env)`"
        )];
    }
    let addr = free_addr();
    let [s2, s3, operator] = &run.others_api;
    let env = vec![
        ("HTTP_ADDR", addr.clone()),
        ("S1_URL", run.s1_api.clone()),
        ("S2_URL", s2.clone()),
        ("S3_URL", s3.clone()),
        ("OPERATOR_URL", operator.clone()),
        ("PROMETHEUS_URL", srv.prom.clone()),
        ("JAEGER_QUERY_URL", srv.jaeger.query.clone()),
        ("CONSOLE_NAMESPACE", run.id.clone()),
    ];
    let bin = service_binary("polystream-console");
    let mut console = Proc::spawn("console", &bin, &[], &env, &run.dir);
    console
        .wait_ready(&srv.http, &format!("http://{addr}/health"))
        .await;
    let script = repo_root().join("tests/observability/browser/console.cjs");
    let out = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new("node")
            .arg(&script)
            .args([format!("http://{addr}"), run.s1_api.clone()])
            .arg(&run.dir)
            .env("NODE_PATH", &modules)
            .env("CHROMIUM", &chromium)
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let steps = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    match out {
        Ok(Ok(o)) if o.status.success() => {
            eprintln!("console in Chromium:\n{}", steps(&o));
            Vec::new()
        }
        Ok(Ok(o)) => vec![format!(
            "the console in Chromium: {}\nsteps passed:\n{}\nconsole log: {}",
            String::from_utf8_lossy(&o.stderr).trim(),
            steps(&o),
            console.tail()
        )],
        Ok(Err(e)) => vec![format!("cannot run node {}: {e}", script.display())],
        Err(_) => vec!["the console's browser test did not finish in 240 s".to_owned()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_panel_has_data_one_trace_spans_the_platform_and_logs_carry_its_ids() {
    let srv = Servers::check().await;
    let mut run = Run::start(&srv).await;
    run.register_targets(&srv).await;
    let corr = run.generate_load(&srv).await;

    // Every check runs; the test fails once, listing every problem.
    let mut problems = check_alert(&srv, &run.id).await;
    problems.extend(check_panels(&srv, &run.id).await);
    problems.extend(check_exemplars(&srv, &run).await);
    problems.extend(check_metrics_lint(&srv, &run).await);
    let (trace_id, trace_problems) = check_trace(&srv, &corr, &run.s1.output()).await;
    problems.extend(trace_problems);
    problems.extend(check_logs(&run, trace_id.as_deref(), &corr));
    problems.extend(check_console(&srv, &run).await);

    let id = run.id.clone();
    run.stop(&srv, !problems.is_empty()).await;
    assert!(
        problems.is_empty(),
        "{} problem(s) in run {id} (correlation id {corr}):\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
}
