//! Shared by the operator's integration tests: the committed CRD and sample,
//! throwaway namespaces, the stores Secret, the controller in-process and the
//! operator binary as a process, polling, and small network and Kafka helpers.
//!
//! Every test file declares it `pub mod support;`: the public items of a test
//! crate's public module count as used, so the parts one file does not need
//! raise no dead-code warning (and no blanket `allow` hides one).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use polystream_operator::StreamingPlatform;
use polystream_operator::controller::{self, ControllerConfig};
use polystream_operator::metrics::OperatorMetrics;
use polystream_smoke_tests::{endpoints, env_or, kube_client, unique};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const CRD: &str = include_str!("../../../crds/streamingplatform.yaml");
const SAMPLE: &str = include_str!("../../../k8s/samples/streamingplatform.yaml");
/// The sample platform's name.
pub const NAME: &str = "polystream";
/// The Secret the sample's stores reference.
pub const STORES_SECRET: &str = "polystream-stores";
/// The field manager of everything the tests apply themselves.
const TEST_MANAGER: &str = "polystream-operator-tests";
/// Poll interval of [`eventually`].
const TICK: Duration = Duration::from_millis(250);

/// Server-side applies `obj` as the tests' field manager, taking over fields
/// another manager set; fails naming `what` with the server's refusal.
pub async fn force_apply<K>(api: &Api<K>, name: &str, obj: &K, what: &str)
where
    K: Clone + DeserializeOwned + Serialize + Debug,
{
    api.patch(
        name,
        &PatchParams::apply(TEST_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .unwrap_or_else(|e| panic!("the API server refused {what}: {e}"));
}

/// Server-side applies the committed CRD and waits until it is served.
pub async fn install_crd(client: &Client) {
    let crd: CustomResourceDefinition = serde_saphyr::from_str(CRD).unwrap();
    let name = crd.metadata.name.clone().unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    force_apply(&crds, &name, &crd, "crds/streamingplatform.yaml").await;
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .expect("the CRD was not Established within 30s")
    .unwrap();
}

/// A client, the CRD installed, and a fresh namespace named after `prefix`.
pub async fn namespace_with_crd(prefix: &str) -> (Client, TestNamespace) {
    let client = kube_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, prefix).await;
    (client, ns)
}

/// Runs `work` to completion on a runtime of its own in another thread: how a
/// `Drop` awaits, since the test's current-thread runtime (which drives the
/// test's clients) is blocked in it.
pub fn block_on_elsewhere(work: impl Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(work);
    })
    .join();
}

/// A namespace deleted when dropped, even if the test panics.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let name = unique(prefix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
        Self { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        block_on_elsewhere(async move {
            if let Ok(client) = Client::try_default().await {
                let _ = Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::background())
                    .await;
            }
        });
    }
}

/// The committed sample, as written.
pub fn sample() -> StreamingPlatform {
    serde_saphyr::from_str(SAMPLE).unwrap()
}

/// The sample on the local Kafka (`./dev env`).
pub fn local_sample() -> StreamingPlatform {
    let mut sp = sample();
    sp.spec.stores.kafka.bootstrap_servers = endpoints().kafka_bootstrap_servers;
    sp
}

/// Gives `sp` topics of its own, named after `prefix`.
pub fn use_unique_topics(sp: &mut StreamingPlatform, prefix: &str) {
    let topics = &mut sp.spec.stores.kafka.topics;
    topics.user_events = unique(&format!("{prefix}-ue"));
    topics.response_events = unique(&format!("{prefix}-re"));
    topics.dead_letter = unique(&format!("{prefix}-dl"));
}

pub fn topic_names(sp: &StreamingPlatform) -> [String; 3] {
    let t = &sp.spec.stores.kafka.topics;
    [
        t.user_events.clone(),
        t.response_events.clone(),
        t.dead_letter.clone(),
    ]
}

/// Deletes `topics` (best effort: cleanup never fails a test).
pub async fn delete_topics(bootstrap: &str, topics: &[String]) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    if let Ok(admin) = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create::<AdminClient<DefaultClientContext>>()
    {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
    }
}

/// The live stores' URIs (`./dev env`), keyed as in the sample's Secret.
pub fn live_uris() -> BTreeMap<String, String> {
    let e = endpoints();
    BTreeMap::from([
        ("postgres-uri".to_owned(), e.database_url),
        ("mongodb-uri".to_owned(), e.mongodb_uri),
        ("redis-uri".to_owned(), e.redis_url),
        ("opensearch-url".to_owned(), e.opensearch_url),
    ])
}

/// A Secret `name` holding `data`.
pub fn store_secret(name: &str, data: &BTreeMap<String, String>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        string_data: Some(data.clone()),
        ..Default::default()
    }
}

/// Creates or replaces the Secret `name` in `ns` (server-side apply).
pub async fn put_secret(client: &Client, ns: &str, name: &str, data: &BTreeMap<String, String>) {
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let what = format!("Secret {name} in {ns}");
    force_apply(&secrets, name, &store_secret(name, data), &what).await;
}

/// (status, reason, message) of the platform's condition `type_`.
pub fn condition<'a>(
    sp: &'a StreamingPlatform,
    type_: &str,
) -> Option<(&'a str, &'a str, &'a str)> {
    sp.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

/// Polls `f` every [`TICK`] until it returns `Ok`, failing with its last
/// `Err` (what it saw) after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {within:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(TICK).await,
        }
    }
}

/// Polls the platform `name` until `accept` takes it; fails showing its last status.
pub async fn wait_platform(
    api: &Api<StreamingPlatform>,
    name: &str,
    what: &str,
    within: Duration,
    accept: impl Fn(&StreamingPlatform) -> bool,
) -> StreamingPlatform {
    eventually(what, within, || async {
        let sp = api.get(name).await.map_err(|e| e.to_string())?;
        if accept(&sp) {
            Ok(sp)
        } else {
            Err(format!("{:#?}", sp.status))
        }
    })
    .await
}

/// The value of one series (name and labels, as written) in a metrics text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(series))
        .find(|rest| rest.starts_with(' '))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// A local port nothing listens on (at the moment of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `kubectl` (`KUBECTL` from `./dev env`: the version matching the API
/// server) and returns its standard output; fails if it does not succeed.
pub async fn kubectl(args: &[&str]) -> String {
    let kubectl = env_or("KUBECTL", "kubectl");
    let output = tokio::process::Command::new(&kubectl)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run kubectl ({kubectl}; set KUBECTL from `./dev env`): {e}")
        });
    assert!(
        output.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The controller running in-process, watching only one namespace; aborted
/// when dropped.
pub struct InProcessController {
    pub metrics: OperatorMetrics,
    /// The controller's readiness flag (what `/ready` serves).
    pub ready: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl InProcessController {
    pub fn start(client: &Client, ns: &str, requeue_after: Duration) -> Self {
        let metrics = OperatorMetrics::new();
        let (ready_tx, ready) = watch::channel(false);
        let config = ControllerConfig {
            requeue_after,
            metrics: metrics.clone(),
            readiness: Some(ready_tx),
            ..ControllerConfig::namespaced(ns)
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(controller::run(client.clone(), config, async {
            let _ = stopped.await;
        }));
        Self {
            metrics,
            ready,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Signals shutdown and fails unless the controller returns within 20 s.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("the controller did not stop within 20s of its shutdown signal")
                .unwrap();
        }
    }
}

impl Drop for InProcessController {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `polystream-operator run` as a child process, killed when dropped; its
/// output goes to a log file, removed on drop unless the test failed.
pub struct OperatorProcess {
    /// Its `POD_NAME` (its leader-election identity).
    pub name: String,
    /// Where it serves `/metrics` and `/ready` (`OPERATOR_HTTP_ADDR`).
    pub http: SocketAddr,
    pub child: tokio::process::Child,
    log: PathBuf,
}

impl OperatorProcess {
    /// Starts it as `name` with `env` on top of the test's environment (less
    /// the OTLP endpoint: no spans from these runs).
    pub fn start(name: &str, env: &[(&str, &str)]) -> Self {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::env::temp_dir().join(format!("{}.log", unique(name)));
        let out = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_polystream-operator"))
            .arg("run")
            .env("POD_NAME", name)
            .env("OPERATOR_HTTP_ADDR", http.to_string())
            .envs(env.iter().copied())
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self {
            name: name.to_owned(),
            http,
            child,
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One series from its `/metrics` (None: not answering, or no such series).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let body = reqwest::get(format!("http://{}/metrics", self.http))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        metric(&body, series)
    }

    pub async fn ready(&self) -> bool {
        reqwest::get(format!("http://{}/ready", self.http))
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the operator already exited")
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        // After a failure the log is named in the failure message: keep it.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// The operators' logs, for a failure message.
pub fn logs(ops: &[&OperatorProcess]) -> String {
    ops.iter()
        .map(|o| format!("--- {} ---\n{}", o.name, o.log()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A TCP forwarder from a local port to `target` that can be cut: a server
/// taken away from (or given back to) one client only. Cut when dropped.
pub struct Forwarder {
    pub addr: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Forwarder {
    /// Listens on `127.0.0.1:port` (0: any free port).
    pub async fn start(port: u16, target: String) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1:{port} for a forwarder: {e}"));
        let addr = listener.local_addr().unwrap();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let conns = Arc::clone(&tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        Self { addr, tasks }
    }

    /// Closes the listener and every connection.
    pub fn cut(&self) {
        let mut tasks = self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for task in tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.cut();
    }
}
