//! Pod-spec replay: proves the operator's wiring boots a working platform,
//! not just plausible YAML.
//!
//! The controller runs in-process against the real API server and renders the
//! Deployments of a StreamingPlatform whose Secret points at the local stores.
//! The test then reads those Deployments back from the API server, resolves
//! their environment exactly as the kubelet would (envFrom ConfigMap,
//! `configMapKeyRef`, `secretKeyRef`, read from the API server), starts each
//! service's binary (`command[0]`) as a local process with that command, args
//! and environment — nothing inherited from the test's own environment — and
//! runs the platform's smoke flow through S1: register a user, wait for the
//! command to complete, log in, read the profile back, and find the audit
//! trail in S3.
//!
//! Only what a pod gets from its own network namespace and volumes is
//! substituted: every pod listens on `0.0.0.0:8080` (and the metrics port),
//! which three local processes cannot share, so `HTTP_ADDR`/`METRICS_ADDR`
//! become free 127.0.0.1 ports; `PUBLIC_URL` (the in-cluster Service URL)
//! becomes S1's local address; `SPOOL_DIR` (an emptyDir in the pod) becomes a
//! temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use polystream_operator::StreamingPlatform;
use polystream_operator::builders::{Component, component_name};
use polystream_operator::controller;
use polystream_smoke_tests::{endpoints, env_or, service_binary, unique};
use serde_json::{Value, json};
use support::{
    InProcessController, block_on_elsewhere, delete_topics, free_port, live_uris, local_sample,
    namespace_with_crd, put_secret,
};
use tokio::process::{Child, Command};

pub mod support;

/// The variables a pod's own network namespace or volumes decide.
const SUBSTITUTED: [&str; 4] = ["HTTP_ADDR", "METRICS_ADDR", "PUBLIC_URL", "SPOOL_DIR"];

/// Where S3's audit trail goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Audit {
    /// `stores.opensearch.urlSecretRef`: the trail is read back from S3's API.
    OpenSearch,
    /// No `stores.opensearch` (`OPENSEARCH_URL=""`): S3 keeps events in its spool.
    SpoolOnly,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operators_deployments_boot_a_working_platform() {
    replay(Audit::OpenSearch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_opensearch_the_monitor_spools() {
    replay(Audit::SpoolOnly).await;
}

async fn replay(mode: Audit) {
    let (client, ns) = namespace_with_crd("op-replay").await;
    let id = unique("replay");
    let bootstrap = endpoints().kafka_bootstrap_servers;

    // A Secret with the local stores' URIs, referenced by the platform.
    put_secret(&client, &ns.name, "replay-stores", &live_uris()).await;

    // The sample, on this run's own topics, consumer groups and audit indices
    // (set through the spec, so they are part of what is replayed).
    let topics = [
        format!("{id}-user"),
        format!("{id}-resp"),
        format!("{id}-dlq"),
    ];
    // The services' logs and S3's spool.
    let work = std::env::temp_dir().join(&id);
    std::fs::create_dir_all(&work).unwrap();
    let _leftovers = Leftovers {
        bootstrap,
        topics: topics.to_vec(),
        id: id.clone(),
        work: work.clone(),
    };
    let mut sp = local_sample();
    let kafka = &mut sp.spec.stores.kafka;
    kafka.topics.user_events = topics[0].clone();
    kafka.topics.response_events = topics[1].clone();
    kafka.topics.dead_letter = topics[2].clone();
    kafka.partitions = 3;
    for store in [
        &mut sp.spec.stores.postgres.uri_secret_ref,
        &mut sp.spec.stores.mongodb.uri_secret_ref,
        &mut sp.spec.stores.redis.uri_secret_ref,
    ] {
        store.name = "replay-stores".into();
    }
    match mode {
        Audit::OpenSearch => {
            sp.spec
                .stores
                .opensearch
                .as_mut()
                .unwrap()
                .url_secret_ref
                .as_mut()
                .unwrap()
                .name = "replay-stores".into();
        }
        Audit::SpoolOnly => sp.spec.stores.opensearch = None,
    }
    sp.spec.observability.otlp_endpoint = Some(env_or(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "http://127.0.0.1:4317",
    ));
    sp.spec.processor.extra_env = vec![env_var("KAFKA_GROUP_ID", &format!("{id}-s2"))];
    sp.spec.monitor.extra_env.extend([
        env_var("KAFKA_GROUP_ID", &format!("{id}-s3")),
        env_var("AUDIT_INDEX_PREFIX", &format!("{id}-audit")),
    ]);
    Api::<StreamingPlatform>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &sp)
        .await
        .unwrap();

    // The operator, in-process, watching only this namespace.
    let controller = InProcessController::start(&client, &ns.name, controller::DEFAULT_REQUEUE);

    let deployments = wait_for_deployments(&client, &ns.name, &sp).await;

    // Each pod would listen on 0.0.0.0:8080 in its own network namespace;
    // here the three share the host's, so each gets free local ports.
    let ports: BTreeMap<Component, (u16, u16)> = Component::ALL
        .iter()
        .map(|&c| (c, (free_port(), free_port())))
        .collect();
    let api = format!("http://127.0.0.1:{}", ports[&Component::Gateway].0);
    let audit = format!("http://127.0.0.1:{}", ports[&Component::Monitor].0);

    let mut services = Vec::new();
    // S2 first: it creates the topics and migrates; S1 and S3 then find both.
    for c in [Component::Processor, Component::Monitor, Component::Gateway] {
        let container = &deployments[&c];
        let mut env = resolve_env(&client, &ns.name, container).await;
        assert_pod_addresses_match_the_spec(c, container, &env);
        let (http, metrics) = ports[&c];
        let local = BTreeMap::from([
            ("HTTP_ADDR", format!("127.0.0.1:{http}")),
            ("METRICS_ADDR", format!("127.0.0.1:{metrics}")),
            ("PUBLIC_URL", api.clone()),
            ("SPOOL_DIR", work.join("spool").display().to_string()),
        ]);
        for (var, value) in local {
            if let Some(v) = env.get_mut(var) {
                *v = value;
            }
        }
        let mut service = Service::start(c, container, env, &work);
        service.wait_ready(http).await;
        // The liveness/startup probe's path answers too.
        let health = format!("http://127.0.0.1:{http}/health");
        let res = reqwest::get(&health).await;
        assert!(
            res.as_ref().is_ok_and(|r| r.status() == 200),
            "{health}: {res:?}\n{}",
            service.log()
        );
        services.push(service);
    }

    let http = reqwest::Client::new();

    // The smoke flow through S1.
    let email = format!("{id}@example.com");
    let password = format!("Pw-{id}");
    let (status, accepted) = send(
        &http,
        reqwest::Method::POST,
        &format!("{api}/v1/users"),
        None,
        Some(json!({"name": "Replay User", "email": email, "password": password})),
    )
    .await;
    assert_eq!(status, 202, "registration: {accepted}\n{}", logs(&services));
    let outcome = wait_outcome(&http, &accepted, &services).await;
    assert_eq!(
        outcome["state"],
        "completed",
        "{outcome}\n{}",
        logs(&services)
    );
    let user_id = accepted["user_id"].as_i64().expect("user_id in the 202");
    let token = login(&http, &api, &email, &password).await;
    let (status, profile) = send(
        &http,
        reqwest::Method::GET,
        &format!("{api}/v1/users/{user_id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["email"], email.as_str(), "{profile}");

    if mode == Audit::OpenSearch {
        // The audit trail, indexed by S3 into OpenSearch (asynchronously).
        let correlation = accepted["correlation_id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, trail) = audit_trail(&http, &audit, &correlation).await;
            let types: Vec<&str> = trail["events"]
                .as_array()
                .map(|events| events.iter().filter_map(|e| e["type"].as_str()).collect())
                .unwrap_or_default();
            if status == 200 && types.len() >= 2 {
                assert_eq!(
                    types,
                    [
                        "polystream.user.registered.v1",
                        "polystream.command.completed.v1"
                    ],
                    "{trail}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no complete audit trail for {correlation} within 60s: {status} {trail}\n{}",
                logs(&services)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    } else {
        // No OpenSearch to read the trail from: the audit API says so.
        let correlation = accepted["correlation_id"].as_str().unwrap();
        let (status, body) = audit_trail(&http, &audit, correlation).await;
        assert_eq!(status, 503, "spool-only audit API: {body}");
        // S3 consumed the command and its outcome into spool segments.
        let spool = work.join("spool");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_dir(&spool).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("segment-"))
        }) {
            assert!(
                Instant::now() < deadline,
                "no spool segment in {} within 30s\n{}",
                spool.display(),
                logs(&services)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    // Every service serves its metrics on METRICS_ADDR, as the pods' metrics port.
    for service in &services {
        let (_, metrics) = ports[&service.component];
        let url = format!("http://127.0.0.1:{metrics}/metrics");
        let res = http.get(&url).send().await;
        assert!(
            res.as_ref().is_ok_and(|r| r.status() == 200),
            "{} does not serve {url} (METRICS_ADDR): {res:?}\n{}",
            service.component.name(),
            service.log()
        );
    }

    // Stop everything; the namespace (and so the platform) goes with `ns`.
    // Killed and reaped before the topics are deleted, so no client of theirs
    // re-creates one (the local broker auto-creates topics). After a failure
    // `kill_on_drop` does the killing.
    for mut service in services {
        let _ = service.child.kill().await;
    }
    controller.stop().await;
}

/// What is substituted must agree with the pod spec: the services bind the
/// container ports, and the probes hit the port the service listens on.
fn assert_pod_addresses_match_the_spec(
    c: Component,
    container: &Container,
    env: &BTreeMap<String, String>,
) {
    let port = |name: &str| {
        container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{}: no container port named {name}", c.name()))
            .container_port
    };
    let http_port = port(c.http_port_name());
    assert_eq!(
        env.get("HTTP_ADDR").map(String::as_str),
        Some(format!("0.0.0.0:{http_port}").as_str()),
        "{}: HTTP_ADDR",
        c.name()
    );
    assert_eq!(
        env.get("METRICS_ADDR").map(String::as_str),
        Some(format!("0.0.0.0:{}", port("metrics")).as_str()),
        "{}: METRICS_ADDR",
        c.name()
    );
    for (probe, path) in [
        (&container.startup_probe, "/health"),
        (&container.liveness_probe, "/health"),
        (&container.readiness_probe, "/ready"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("{}: missing an HTTP probe", c.name()));
        assert_eq!(get.path.as_deref(), Some(path), "{}", c.name());
        let target = match &get.port {
            IntOrString::Int(n) => *n,
            IntOrString::String(name) => port(name),
        };
        assert_eq!(target, http_port, "{}: a probe misses HTTP_ADDR", c.name());
    }
}

fn env_var(name: &str, value: &str) -> k8s_openapi::api::core::v1::EnvVar {
    k8s_openapi::api::core::v1::EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// The three Deployments' containers, once the operator has written them.
async fn wait_for_deployments(
    client: &Client,
    ns: &str,
    sp: &StreamingPlatform,
) -> BTreeMap<Component, Container> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sp = sp.clone();
    sp.metadata.namespace = Some(ns.to_owned());
    loop {
        let list = api.list(&ListParams::default()).await.unwrap();
        let found: BTreeMap<Component, Container> = Component::ALL
            .iter()
            .filter_map(|&c| {
                let name = component_name(&sp, c);
                let d = list
                    .items
                    .iter()
                    .find(|d| d.metadata.name.as_deref() == Some(name.as_str()))?;
                let pod = d.spec.as_ref()?.template.spec.as_ref()?;
                assert_eq!(pod.containers.len(), 1, "{name}: one container expected");
                Some((c, pod.containers[0].clone()))
            })
            .collect();
        if found.len() == Component::ALL.len() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "the operator did not write the three Deployments within 60s (found {:?})",
            found.keys().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The container's environment as the kubelet builds it: `envFrom` sources in
/// order, then `env` (which wins), with references read from the API server.
async fn resolve_env(client: &Client, ns: &str, c: &Container) -> BTreeMap<String, String> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut env = BTreeMap::new();
    for source in c.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        if let Some(r) = &source.config_map_ref {
            let cm = config_maps.get(&r.name).await.unwrap_or_else(|e| {
                panic!("{}: envFrom ConfigMap {}: {e}", c.name, r.name);
            });
            for (k, v) in cm.data.unwrap_or_default() {
                env.insert(format!("{prefix}{k}"), v);
            }
        }
        if let Some(r) = &source.secret_ref {
            let secret = secrets.get(&r.name).await.unwrap_or_else(|e| {
                panic!("{}: envFrom Secret {}: {e}", c.name, r.name);
            });
            for (k, v) in secret.data.unwrap_or_default() {
                env.insert(format!("{prefix}{k}"), String::from_utf8(v.0).unwrap());
            }
        }
    }
    for var in c.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => {
                assert!(
                    !v.contains("$("),
                    "{}: {} uses $(VAR) expansion, which this replay does not implement",
                    c.name,
                    var.name
                );
                v.clone()
            }
            (None, None) => String::new(),
            (None, Some(from)) => {
                if let Some(r) = &from.secret_key_ref {
                    let secret = secrets.get(&r.name).await.unwrap_or_else(|e| {
                        panic!("{}: {} from Secret {}: {e}", c.name, var.name, r.name)
                    });
                    let bytes = secret
                        .data
                        .unwrap_or_default()
                        .remove(&r.key)
                        .unwrap_or_else(|| {
                            panic!("{}: Secret {} has no key {}", var.name, r.name, r.key)
                        });
                    String::from_utf8(bytes.0).unwrap()
                } else if let Some(r) = &from.config_map_key_ref {
                    let cm = config_maps.get(&r.name).await.unwrap_or_else(|e| {
                        panic!("{}: {} from ConfigMap {}: {e}", c.name, var.name, r.name)
                    });
                    cm.data
                        .unwrap_or_default()
                        .remove(&r.key)
                        .unwrap_or_else(|| {
                            panic!("{}: ConfigMap {} has no key {}", var.name, r.name, r.key)
                        })
                } else {
                    panic!(
                        "{}: {} uses a valueFrom this replay does not resolve: {from:?}",
                        c.name, var.name
                    )
                }
            }
        };
        env.insert(var.name.clone(), value);
    }
    env
}

/// One service started from its container spec; killed when dropped.
struct Service {
    component: Component,
    child: Child,
    log_path: PathBuf,
}

impl Service {
    fn start(
        component: Component,
        container: &Container,
        env: BTreeMap<String, String>,
        work: &Path,
    ) -> Self {
        let command = container
            .command
            .clone()
            .expect("the container sets its command");
        let binary = service_binary(&command[0]);
        let log_path = work.join(format!("{}.log", component.name()));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(&binary)
            .args(&command[1..])
            .args(container.args.iter().flatten())
            // Exactly the pod's environment: nothing inherited from the test.
            .env_clear()
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let substituted: Vec<&str> = SUBSTITUTED
            .iter()
            .copied()
            .filter(|v| env.contains_key(*v))
            .collect();
        eprintln!(
            "started {} ({}) with {} variables, substituted {substituted:?}; log {}",
            component.name(),
            command.join(" "),
            env.len(),
            log_path.display()
        );
        Self {
            component,
            child,
            log_path,
        }
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- {} log (last 40 lines) ---\n{}",
            self.component.name(),
            tail.join("\n")
        )
    }

    /// Waits until `/ready` answers 200, failing with the log if the process
    /// exits or stays unready for 90 s.
    async fn wait_ready(&mut self, http_port: u16) {
        let url = format!("http://127.0.0.1:{http_port}/ready");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{} exited during start-up ({status})\n{}",
                    self.component.name(),
                    self.log()
                );
            }
            let res = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if res.as_ref().is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready at {url} within 90s: {res:?}\n{}",
                self.component.name(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn logs(services: &[Service]) -> String {
    services
        .iter()
        .map(Service::log)
        .collect::<Vec<_>>()
        .join("\n")
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, Value) {
    send(http, reqwest::Method::GET, url, None, None).await
}

/// S3's audit trail of one request.
async fn audit_trail(http: &reqwest::Client, audit: &str, correlation: &str) -> (u16, Value) {
    get(http, &format!("{audit}/v1/audit/{correlation}")).await
}

/// Long-polls the command's `status_url` until it is no longer pending.
async fn wait_outcome(http: &reqwest::Client, accepted: &Value, services: &[Service]) -> Value {
    let url = accepted["status_url"]
        .as_str()
        .expect("status_url in the 202");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(http, &format!("{url}?wait=10")).await;
        if status == 200 && body["state"] != "pending" {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no outcome at {url} within 60s: {status} {body}\n{}",
            logs(services)
        );
    }
}

async fn login(http: &reqwest::Client, api: &str, email: &str, password: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = send(
            http,
            reqwest::Method::POST,
            &format!("{api}/v1/sessions"),
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await;
        if status == 201 {
            return body["token"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "cannot log in as {email}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// This run's topics, audit indices and work directory, deleted when dropped
/// (best effort); after a failure the work directory (the services' logs,
/// named in the failure message) is kept.
struct Leftovers {
    bootstrap: String,
    topics: Vec<String>,
    id: String,
    work: PathBuf,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.work);
        }
        let (bootstrap, topics, id) =
            (self.bootstrap.clone(), self.topics.clone(), self.id.clone());
        block_on_elsewhere(async move {
            delete_topics(&bootstrap, &topics).await;
            let opensearch = endpoints().opensearch_url;
            let _ = reqwest::Client::new()
                .delete(format!("{opensearch}/{id}-audit-*"))
                .send()
                .await;
        });
    }
}
