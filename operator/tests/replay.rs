//! Pod-spec replay on the real node: proves the operator's wiring boots a
//! working platform, not just plausible YAML.
//!
//! The controller runs in-process against the real API server and renders the
//! Deployments of a StreamingPlatform whose Secret points at the local stores
//! (as pods reach them: the relays at the node's address). The kubelet of the
//! real node (`./dev up node`) runs those Deployments from the image `./dev
//! image` built, in a namespace enforcing Pod Security `restricted`: the
//! environment, probes, ports, volumes and security context are exactly what
//! the operator wrote, with nothing substituted. The test then runs the
//! platform's smoke flow through the gateway's Service: register a user, wait
//! for the command to complete, log in, read the profile back, and find the
//! audit trail in S3 (or, without OpenSearch, S3's spool counting the events);
//! and every pod serves its metrics on the port the spec names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use polystream_operator::StreamingPlatform;
use polystream_operator::builders::{Component, component_name};
use polystream_operator::controller;
use polystream_operator::crd::{PullPolicy, SchedulingSpec};
use polystream_smoke_tests::node::{RealNode, image, wait_service};
use polystream_smoke_tests::{endpoints, env_or, unique};
use serde_json::{Value, json};
use support::{
    InProcessController, block_on_elsewhere, delete_topics, live_uris, local_sample, metric,
    namespace_with_crd, put_secret,
};

pub mod support;

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
    let node = RealNode::require(&client).await;
    node.import(&image());
    restrict(&client, &ns.name).await;
    let id = unique("replay");
    let bootstrap = endpoints().kafka_bootstrap_servers;

    // A Secret with the local stores' URIs as pods reach them.
    let uris: BTreeMap<String, String> = live_uris()
        .into_iter()
        .map(|(k, v)| (k, node.from_pods(&v)))
        .collect();
    put_secret(&client, &ns.name, "replay-stores", &uris).await;

    // The sample, on this run's own topics, consumer groups and audit indices
    // (set through the spec, so they are part of what is replayed), on the
    // real node, from the local image.
    let topics = [
        format!("{id}-user"),
        format!("{id}-resp"),
        format!("{id}-dlq"),
    ];
    let _leftovers = Leftovers {
        bootstrap,
        topics: topics.to_vec(),
        id: id.clone(),
        work: std::env::temp_dir().join(&id),
    };
    let mut sp = local_sample();
    sp.spec.image.repository = "polystream".into();
    sp.spec.image.tag = env!("CARGO_PKG_VERSION").into();
    sp.spec.image.pull_policy = PullPolicy::Never;
    let scheduling: SchedulingSpec = serde_json::from_value(node.scheduling()).unwrap();
    for component in [
        &mut sp.spec.gateway,
        &mut sp.spec.processor,
        &mut sp.spec.monitor,
    ] {
        component.replicas = 1;
        component.autoscaling = None;
        component.scheduling = scheduling.clone();
    }
    let kafka = &mut sp.spec.stores.kafka;
    kafka.bootstrap_servers = std::env::var("POLYSTREAM_NODE_KAFKA")
        .expect("POLYSTREAM_NODE_KAFKA (./dev env, with the node up)");
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
    sp.spec.observability.otlp_endpoint = Some(node.from_pods(&env_or(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "http://127.0.0.1:4317",
    )));
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

    // The kubelet runs what the operator wrote; Ready means the probes passed.
    wait_available(&client, &ns.name, &sp).await;
    let service_url = |c: Component| {
        let client = client.clone();
        let ns = ns.name.clone();
        let name = component_name(&sp, c);
        async move {
            let svc = Api::<Service>::namespaced(client, &ns)
                .get(&name)
                .await
                .unwrap();
            let spec = svc.spec.unwrap();
            let port = spec.ports.unwrap()[0].port;
            format!("http://{}:{port}", spec.cluster_ip.unwrap())
        }
    };
    let api = service_url(Component::Gateway).await;
    let audit = service_url(Component::Monitor).await;
    let http = reqwest::Client::new();
    wait_service(&api).await;
    wait_service(&audit).await;

    // The smoke flow through S1's Service.
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
    assert_eq!(
        status,
        202,
        "registration: {accepted}\n{}",
        pod_logs(&client, &ns.name).await
    );
    let correlation = accepted["correlation_id"].as_str().unwrap().to_owned();
    // The status URL names the Service by its DNS name; the host polls by address.
    assert!(
        accepted["status_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/status/{correlation}")),
        "{accepted}"
    );
    let outcome = wait_outcome(&http, &format!("{api}/v1/status/{correlation}")).await;
    assert_eq!(
        outcome["state"],
        "completed",
        "{outcome}\n{}",
        pod_logs(&client, &ns.name).await
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

    let pods = Api::<Pod>::namespaced(client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let metrics_url = |c: Component| {
        let pod = pods
            .iter()
            .find(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("app.kubernetes.io/component"))
                    == Some(&c.name().to_owned())
            })
            .unwrap_or_else(|| panic!("no {} pod", c.name()));
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let port = container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some("metrics"))
            .unwrap_or_else(|| panic!("{}: no container port named metrics", c.name()))
            .container_port;
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap();
        format!("http://{ip}:{port}/metrics")
    };

    if mode == Audit::OpenSearch {
        // The audit trail, indexed by S3 into OpenSearch (asynchronously).
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
                pod_logs(&client, &ns.name).await
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    } else {
        // No OpenSearch to read the trail from: the audit API says so.
        let (status, body) = audit_trail(&http, &audit, &correlation).await;
        assert_eq!(status, 503, "spool-only audit API: {body}");
        // S3 consumed the command and its outcome into its spool (an emptyDir).
        let url = metrics_url(Component::Monitor);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = http.get(&url).send().await.unwrap().text().await.unwrap();
            if metric(&text, "polystream_audit_spooled_events_total").unwrap_or(0.0) >= 2.0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "S3 spooled fewer than 2 events within 30s ({url})\n{}",
                pod_logs(&client, &ns.name).await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    // Every pod serves its metrics on the port its spec names.
    for c in Component::ALL {
        let url = metrics_url(c);
        let res = http.get(&url).send().await;
        assert!(
            res.as_ref().is_ok_and(|r| r.status() == 200),
            "{} does not serve {url}: {res:?}",
            c.name()
        );
    }

    // The pods go before the topics are deleted, so no client of theirs
    // re-creates one (the local broker auto-creates topics).
    controller.stop().await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns.name);
    for c in Component::ALL {
        let _ = deployments
            .delete(&component_name(&sp, c), &DeleteParams::foreground())
            .await;
    }
    let pods_api = Api::<Pod>::namespaced(client.clone(), &ns.name);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !pods_api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the platform's pods did not stop within 90s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Enforces Pod Security `restricted` on `ns`: the pods the operator writes must pass it.
async fn restrict(client: &Client, ns: &str) {
    let patch =
        json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}});
    Api::<Namespace>::all(client.clone())
        .patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// The three Deployments once each has all its replicas Ready on the node;
/// fails with the pods' states and logs.
async fn wait_available(client: &Client, ns: &str, sp: &StreamingPlatform) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut sp = sp.clone();
    sp.metadata.namespace = Some(ns.to_owned());
    loop {
        let list = api.list(&ListParams::default()).await.unwrap();
        let ready = Component::ALL
            .iter()
            .filter(|&&c| {
                let name = component_name(&sp, c);
                list.items.iter().any(|d| {
                    d.metadata.name.as_deref() == Some(name.as_str())
                        && d.status
                            .as_ref()
                            .and_then(|s| s.ready_replicas)
                            .unwrap_or(0)
                            >= 1
                })
            })
            .count();
        if ready == Component::ALL.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the operator's Deployments did not all become Ready on the real node within 180s\n{}",
            pod_logs(client, ns).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Each pod's phase, conditions and last log lines, for failure messages.
async fn pod_logs(client: &Client, ns: &str) -> String {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let mut out = String::new();
    for pod in api
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod
            .status
            .as_ref()
            .map(|s| format!("{:?} {:?}", s.phase, s.container_statuses))
            .unwrap_or_default();
        let params = LogParams {
            tail_lines: Some(40),
            ..Default::default()
        };
        let log = api
            .logs(&name, &params)
            .await
            .unwrap_or_else(|e| format!("(no log: {e})"));
        out.push_str(&format!("--- pod {name}: {status}\n{log}\n"));
    }
    out
}

fn env_var(name: &str, value: &str) -> k8s_openapi::api::core::v1::EnvVar {
    k8s_openapi::api::core::v1::EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
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

/// Long-polls a command's status until it is no longer pending.
async fn wait_outcome(http: &reqwest::Client, url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(http, &format!("{url}?wait=10")).await;
        if status == 200 && body["state"] != "pending" {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no outcome at {url} within 60s: {status} {body}"
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
