//! The chart on the real node (`./dev up node`, scripts/components/node.sh):
//! `helm install` runs the operator from the image, in pods, as its
//! ServiceAccount; it reconciles a StreamingPlatform into S1/S2/S3 pods from
//! the same image in a namespace enforcing Pod Security `restricted`; a
//! command sent to the gateway's Service completes through S2, with its audit
//! trail in S3 and one trace in Jaeger. Then pods are killed (S2, S3 and the
//! operator's leader) under load: each is replaced, no command is lost, and
//! the standby operator takes over.
//!
//! The image is the one `./dev image` built (polystream:VERSION), imported
//! into the node's containerd; pods use `imagePullPolicy: Never`. The stores
//! are the host's, behind the node's relays; the pods reach them by a Service
//! name, so cluster DNS (CoreDNS) and kube-proxy are on the path too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use polystream_chart_tests::{RestrictedNamespace, chart_dir, ensure_crd, run_ok, tool};
use polystream_smoke_tests::api::Api;
use polystream_smoke_tests::jaeger::{CORRELATION_KEY, Jaeger};
use polystream_smoke_tests::node::{RealNode, image, wait_service};
use polystream_smoke_tests::{kube_client, unique};
use reqwest::Method;
use serde_json::{Value, json};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const PLATFORM: &str = "platform";
/// The host's servers the pods use, by Service port name (see [`stores_service`]).
const STORE_PORTS: [(&str, u16); 6] = [
    ("postgres", 5432),
    ("mongodb", 27017),
    ("redis", 6379),
    ("opensearch", 9200),
    ("kafka", 19092),
    ("otlp", 4317),
];

fn kubectl() -> PathBuf {
    tool("kubectl", "KUBECTL")
}

fn helm() -> PathBuf {
    tool("helm", "HELM")
}

/// A Service `stores` in `ns` whose endpoint is the node's relay address: the
/// pods reach the host's servers by name, as they would reach in-cluster
/// stores (through cluster DNS and kube-proxy).
fn stores_service(node: &RealNode, ns: &str) {
    let ports: Vec<Value> = STORE_PORTS
        .iter()
        .map(|(name, port)| json!({"name": name, "port": port, "protocol": "TCP"}))
        .collect();
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "stores", "namespace": ns},
        "spec": {"ports": ports},
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "stores-host",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": "stores"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [node.ip], "conditions": {"ready": true}}],
        "ports": ports,
    });
    run_ok(
        &kubectl(),
        &["apply", "-f", "-"],
        Some(&format!("{service}\n---\n{slice}")),
    );
}

fn get_json(args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&run_ok(&kubectl(), &all, None)).unwrap()
}

/// Polls `check` every 500 ms for `within`; fails with what it said last.
async fn eventually<T>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; last: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn pods(ns: &str, component: &str) -> Vec<Value> {
    get_json(&[
        "pods",
        "-n",
        ns,
        "-l",
        &format!("app.kubernetes.io/component={component}"),
    ])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn pod_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn name(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().unwrap().to_owned()
}

/// `want` Ready pods of `component`, none of them named in `gone`.
async fn ready_pods(ns: &str, component: &str, want: usize, gone: &BTreeSet<String>) -> Vec<Value> {
    eventually(
        &format!("{want} Ready {component} pod(s) replacing {gone:?}"),
        Duration::from_secs(120),
        || {
            let all = pods(ns, component);
            let ready: Vec<Value> = all
                .iter()
                .filter(|p| pod_ready(p) && !gone.contains(&name(p)))
                .cloned()
                .collect();
            if ready.len() == want {
                Ok(ready)
            } else {
                Err(all
                    .iter()
                    .map(|p| format!("{} {}", name(p), p["status"]["phase"]))
                    .collect::<Vec<_>>()
                    .join(", "))
            }
        },
    )
    .await
}

fn cluster_ip(ns: &str, service: &str) -> String {
    get_json(&["service", service, "-n", ns])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn leader(ns: &str) -> Option<String> {
    get_json(&["lease", "polystream-operator", "-n", ns])["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_owned)
}

/// Registers a user through S1; the 202's correlation id.
async fn register(api: &Api, tag: &str, i: usize) -> String {
    let (status, body) = api
        .send(
            Method::POST,
            "/v1/users",
            None,
            Some(json!({
                "name": format!("Node User {i}"),
                "email": format!("{tag}-{i}@example.com"),
                "password": "correct horse battery staple",
            })),
        )
        .await;
    assert_eq!(status, 202, "registration {i}: {body}");
    body["correlation_id"].as_str().unwrap().to_owned()
}

/// The command's final state (S1 writes status URLs with the Service's DNS
/// name, which the host does not resolve: poll by path instead).
async fn outcome(api: &Api, corr: &str) -> Value {
    api.outcome(&json!({"status_url": format!("/v1/status/{corr}")}))
        .await
}

/// S3's audit trail of `corr` once it holds the command and its outcome.
async fn audit_trail(http: &reqwest::Client, audit: &str, corr: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let res = http.get(format!("{audit}/v1/audit/{corr}")).send().await;
        if let Ok(res) = res
            && res.status() == 200
        {
            let body: Value = res.json().await.unwrap_or(Value::Null);
            let types: Vec<String> = body["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["type"].as_str().map(str::to_owned))
                .collect();
            if types.len() >= 2 {
                return types;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no complete audit trail for {corr} in S3 ({audit}) within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn helm_install_on_the_real_node_runs_the_platform_from_the_image() {
    let node = RealNode::require(&kube_client().await).await;
    let jaeger = Jaeger::reachable().await;
    ensure_crd();
    let image = image();
    node.import(&image);

    let ns = RestrictedNamespace::create(&unique("node"));
    let ns_name = ns.0.clone();
    stores_service(&node, &ns_name);
    let stores = format!("stores.{ns_name}.svc.cluster.local");
    run_ok(
        &kubectl(),
        &[
            "create",
            "secret",
            "generic",
            "stores",
            "-n",
            &ns_name,
            &format!(
                "--from-literal=postgres-uri=postgres://polystream:polystream@{stores}:5432/polystream"
            ),
            &format!("--from-literal=mongodb-uri=mongodb://{stores}:27017/polystream"),
            &format!("--from-literal=redis-uri=redis://{stores}:6379"),
            &format!("--from-literal=opensearch-url=http://{stores}:9200"),
        ],
        None,
    );

    // Own topics, so no other test's consumers see these commands.
    let sched = node.scheduling();
    let values = json!({
        "image": {"repository": "polystream", "tag": VERSION, "pullPolicy": "Never"},
        "nodeSelector": sched["nodeSelector"],
        "tolerations": sched["tolerations"],
        "watchNamespaces": [ns_name],
        "platform": {
            "enabled": true,
            "name": PLATFORM,
            "spec": {
                "image": {"repository": "polystream", "tag": VERSION, "pullPolicy": "Never"},
                "gateway": {
                    "replicas": 1,
                    "scheduling": sched,
                    // The test's 40 registrations come from one address, beyond
                    // the default per-address limit (10/min).
                    "extraEnv": [{"name": "RATE_LIMIT_REGISTRATION", "value": "600/min"}],
                },
                "processor": {"replicas": 2, "scheduling": sched},
                "monitor": {"replicas": 1, "scheduling": sched},
                "stores": {
                    "kafka": {
                        // Kafka then advertises the node's address for its pod listener.
                        "bootstrapServers": format!("{stores}:19092"),
                        "topics": {
                            "userEvents": format!("{ns_name}.user_events"),
                            "responseEvents": format!("{ns_name}.response_events"),
                            "deadLetter": format!("{ns_name}.dead_letter"),
                        },
                        "partitions": 3,
                        "replicationFactor": 1,
                    },
                    "postgres": {"uriSecretRef": {"name": "stores", "key": "postgres-uri"}},
                    "mongodb": {"uriSecretRef": {"name": "stores", "key": "mongodb-uri"}},
                    "redis": {"uriSecretRef": {"name": "stores", "key": "redis-uri"}},
                    "opensearch": {"urlSecretRef": {"name": "stores", "key": "opensearch-url"}},
                },
                "observability": {
                    "otlpEndpoint": format!("http://{stores}:4317"),
                    "samplingRatio": 1.0,
                },
            },
        },
    });
    let values_file = std::env::temp_dir().join(format!("{ns_name}-values.json"));
    std::fs::write(&values_file, values.to_string()).unwrap();
    let release = "polystream";
    run_ok(
        &helm(),
        &[
            "install",
            release,
            chart_dir().to_str().unwrap(),
            "-n",
            &ns_name,
            "-f",
            values_file.to_str().unwrap(),
            "--wait",
            "--timeout",
            "4m",
        ],
        None,
    );
    let _ = std::fs::remove_file(&values_file);

    // The StreamingPlatform becomes Ready through its pods' probes.
    eventually("StreamingPlatform Ready", Duration::from_secs(180), || {
        let sp = get_json(&["streamingplatform", PLATFORM, "-n", &ns_name]);
        let ready = sp["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if ready {
            Ok(())
        } else {
            Err(sp["status"].to_string())
        }
    })
    .await;

    // Every pod: on the real node, from the image, Ready; the operator's as its
    // ServiceAccount; S1/S2/S3 as uid 65532 with a read-only root filesystem.
    let all = get_json(&["pods", "-n", &ns_name])["items"]
        .as_array()
        .cloned()
        .unwrap();
    let components: BTreeSet<&str> = all
        .iter()
        .filter_map(|p| p["metadata"]["labels"]["app.kubernetes.io/component"].as_str())
        .collect();
    assert_eq!(
        components,
        BTreeSet::from(["gateway", "monitor", "operator", "processor"]),
        "{all:#?}"
    );
    for pod in &all {
        let pod_name = name(pod);
        assert_eq!(
            pod["spec"]["nodeName"],
            node.name.as_str(),
            "{pod_name} is not on the real node"
        );
        assert!(pod_ready(pod), "{pod_name} is not Ready: {}", pod["status"]);
        let status = &pod["status"]["containerStatuses"][0];
        assert!(
            status["image"].as_str().unwrap().ends_with(&image),
            "{pod_name} runs {} (want {image})",
            status["image"]
        );
        let component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
            .as_str()
            .unwrap();
        if component == "operator" {
            assert_eq!(
                pod["spec"]["serviceAccountName"],
                format!("{release}-operator"),
                "{pod_name}"
            );
        } else {
            let sc = &pod["spec"]["containers"][0]["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{pod_name}: {sc}");
            let uid = sc["runAsUser"]
                .as_i64()
                .or(pod["spec"]["securityContext"]["runAsUser"].as_i64());
            assert_eq!(uid, Some(65532), "{pod_name}");
        }
    }
    let operators: BTreeSet<String> = pods(&ns_name, "operator").iter().map(name).collect();
    let first_leader = leader(&ns_name).expect("no operator holds the Lease");
    assert!(
        operators.contains(&first_leader),
        "Lease held by {first_leader}, not one of {operators:?}"
    );

    // One command through the gateway's Service: completed by S2, audited by
    // S3, one trace across the three in Jaeger.
    let api = Api::new(format!(
        "http://{}:8080",
        cluster_ip(&ns_name, &format!("{PLATFORM}-gateway"))
    ));
    let audit = format!(
        "http://{}:8080",
        cluster_ip(&ns_name, &format!("{PLATFORM}-monitor"))
    );
    wait_service(&api.base).await;
    wait_service(&audit).await;
    let tag = ns_name.clone();
    let corr = register(&api, &tag, 0).await;
    let done = outcome(&api, &corr).await;
    assert_eq!(done["state"], "completed", "{done}");
    let trail = audit_trail(&api.http, &audit, &corr).await;
    assert_eq!(trail[0], "polystream.user.registered.v1", "{trail:?}");
    let tags = json!({CORRELATION_KEY: corr}).to_string();
    let trace = jaeger
        .find_trace(
            &[
                ("service", "polystream-s1-gateway"),
                ("tags", &tags),
                ("limit", "5"),
            ],
            |spans| {
                let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
                [
                    "polystream-s1-gateway",
                    "polystream-s2-processor",
                    "polystream-s3-monitor",
                ]
                .iter()
                .all(|s| services.contains(s))
            },
            Duration::from_secs(60),
        )
        .await;
    assert!(!trace.is_empty());

    // Kill S2, S3 and the operator's leader while commands flow.
    let sender = {
        let api = api.clone();
        let tag = tag.clone();
        tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 1..=40 {
                sent.push(register(&api, &tag, i).await);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_s2 = name(&pods(&ns_name, "processor")[0]);
    let killed_s3 = name(&pods(&ns_name, "monitor")[0]);
    run_ok(
        &kubectl(),
        &[
            "delete",
            "pod",
            "-n",
            &ns_name,
            &killed_s2,
            &killed_s3,
            &first_leader,
            "--wait=false",
        ],
        None,
    );
    let sent = sender.await.unwrap();

    // Nothing lost: every command completes and is audited.
    for corr in &sent {
        let done = outcome(&api, corr).await;
        assert_eq!(done["state"], "completed", "{corr}: {done}");
    }
    for corr in &sent {
        audit_trail(&api.http, &audit, corr).await;
    }
    // Each killed pod is replaced.
    ready_pods(&ns_name, "processor", 2, &BTreeSet::from([killed_s2])).await;
    ready_pods(&ns_name, "monitor", 1, &BTreeSet::from([killed_s3])).await;
    ready_pods(
        &ns_name,
        "operator",
        2,
        &BTreeSet::from([first_leader.clone()]),
    )
    .await;
    // The standby took over and reconciles: a spec change reaches the Deployment.
    let new_leader = eventually(
        "a new operator leader",
        Duration::from_secs(60),
        || match leader(&ns_name) {
            Some(l) if l != first_leader => Ok(l),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    run_ok(
        &kubectl(),
        &[
            "patch",
            "streamingplatform",
            PLATFORM,
            "-n",
            &ns_name,
            "--type=merge",
            "-p",
            r#"{"spec":{"gateway":{"replicas":2}}}"#,
        ],
        None,
    );
    ready_pods(&ns_name, "gateway", 2, &BTreeSet::new()).await;
    println!("operator leadership moved from {first_leader} to {new_leader}");

    run_ok(
        &helm(),
        &[
            "uninstall",
            release,
            "-n",
            &ns_name,
            "--wait",
            "--timeout",
            "2m",
        ],
        None,
    );
    drop(ns);
}
