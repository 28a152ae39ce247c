//! The chart on the local control plane (`./dev up etcd kube_apiserver
//! kube_controller_manager kube_scheduler kwok`): every `ci/*-values.yaml`
//! accepted by the API server (server-side dry run), and a real `helm
//! install --wait` / `helm upgrade` / `helm uninstall` in a fresh namespace,
//! kwok making the operator's pods Ready (no image is pulled).
//!
//! The ServiceMonitor and PrometheusRule are left out of the dry run: their
//! CRDs (monitoring.coreos.com) are not installed here, and installing them
//! on this shared API server would switch on the operator's ServiceMonitor
//! code path for every other test. tests/render.rs checks their shape.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use polystream_chart_tests::{
    RestrictedNamespace, chart_dir, create_restricted_namespace, describe, documents,
    dry_run_apply, ensure_crd, run, run_ok, tool,
};
use polystream_smoke_tests::{kube_client, unique};
use serde_json::Value;

const MONITORING_KINDS: [&str; 2] = ["ServiceMonitor", "PrometheusRule"];

fn helm() -> PathBuf {
    tool("helm", "HELM")
}

fn kubectl() -> PathBuf {
    tool("kubectl", "KUBECTL")
}

/// Fails naming the API server (and how to start it) unless it answers.
async fn require_api_server() {
    let _ = kube_client().await;
}

#[tokio::test]
async fn every_ci_values_file_is_accepted_by_the_api_server() {
    require_api_server().await;
    ensure_crd();
    let ns = RestrictedNamespace::create(&unique("chart-dry"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart_dir().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    for file in &files {
        let values: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        // Roles go into the watched namespaces, which must exist. They are
        // left in place (empty): deleting them would make an immediate rerun
        // meet a terminating namespace.
        for watched in values["watchNamespaces"].as_array().into_iter().flatten() {
            let name = watched.as_str().unwrap();
            let exists = run(&kubectl(), &["get", "namespace", name], None);
            if !exists.status.success() {
                create_restricted_namespace(name);
            }
        }
        let chart = chart_dir();
        let rendered = run_ok(
            &helm(),
            &[
                "template",
                "dry",
                chart.to_str().unwrap(),
                "--include-crds",
                "--namespace",
                &ns.0,
                "-f",
                file.to_str().unwrap(),
            ],
            None,
        );
        let docs = documents(&rendered);
        let (monitoring, items): (Vec<Value>, Vec<Value>) = docs
            .into_iter()
            .partition(|d| MONITORING_KINDS.iter().any(|k| d["kind"] == *k));
        if file.to_string_lossy().contains("full") {
            assert_eq!(
                monitoring.len(),
                2,
                "full-values renders both monitoring objects"
            );
        }
        let out = dry_run_apply(&items);
        assert!(
            out.status.success(),
            "the API server refused the chart rendered with {}:\n{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let applied = String::from_utf8_lossy(&out.stdout);
        for doc in &items {
            let name = doc["metadata"]["name"].as_str().unwrap();
            assert!(
                applied.contains(name),
                "{} missing from the dry run's answer:\n{applied}",
                describe(doc)
            );
        }
    }
}

/// `namespace/kind/name` → (resourceVersion, generation) of every object the
/// release made (from `helm get manifest`).
fn snapshot(release: &str, ns: &str) -> BTreeMap<String, (String, i64)> {
    let manifest = run_ok(&helm(), &["get", "manifest", release, "-n", ns], None);
    let mut out = BTreeMap::new();
    for doc in documents(&manifest) {
        let kind = doc["kind"].as_str().unwrap().to_owned();
        let name = doc["metadata"]["name"].as_str().unwrap().to_owned();
        let mut args = vec![
            "get".to_owned(),
            kind.clone(),
            name.clone(),
            "-o".into(),
            "json".into(),
        ];
        if let Some(n) = doc["metadata"]["namespace"].as_str() {
            args.extend(["-n".into(), n.to_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let live: Value = serde_json::from_str(&run_ok(&kubectl(), &args, None)).unwrap();
        out.insert(
            format!("{kind}/{name}"),
            (
                live["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                live["metadata"]["generation"].as_i64().unwrap_or(0),
            ),
        );
    }
    out
}

/// The objects whose desired state changed between two snapshots: the
/// generation where the kind has one (controllers keep writing status, which
/// moves the resourceVersion: a PDB's on every pod change), else the
/// resourceVersion.
fn changed(
    a: &BTreeMap<String, (String, i64)>,
    b: &BTreeMap<String, (String, i64)>,
) -> Vec<String> {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter()
        .filter(|(k, (version, generation))| {
            let (version2, generation2) = &b[*k];
            if *generation > 0 {
                generation2 != generation
            } else {
                version2 != version
            }
        })
        .map(|(k, _)| k.clone())
        .collect()
}

fn deployment(ns: &str, name: &str) -> Value {
    serde_json::from_str(&run_ok(
        &kubectl(),
        &["get", "deployment", name, "-n", ns, "-o", "json"],
        None,
    ))
    .unwrap()
}

/// What is left in `ns` (every namespaced kind that can be listed) and in the
/// cluster's RBAC carrying the release's instance label.
fn leftovers(release: &str, ns: &str) -> Vec<String> {
    let kinds = run_ok(
        &kubectl(),
        &[
            "api-resources",
            "--namespaced=true",
            "--verbs=list",
            "-o",
            "name",
        ],
        None,
    );
    let kinds: Vec<&str> = kinds.lines().filter(|k| !k.is_empty()).collect();
    let selector = format!("app.kubernetes.io/instance={release}");
    let mut left: Vec<String> = run_ok(
        &kubectl(),
        &[
            "get",
            &kinds.join(","),
            "-n",
            ns,
            "-l",
            &selector,
            "-o",
            "name",
            "--ignore-not-found",
        ],
        None,
    )
    .lines()
    .map(str::to_owned)
    .collect();
    left.extend(
        run_ok(
            &kubectl(),
            &[
                "get",
                "clusterroles,clusterrolebindings",
                "-l",
                &selector,
                "-o",
                "name",
            ],
            None,
        )
        .lines()
        .map(str::to_owned),
    );
    // Helm's own release records.
    left.extend(
        run_ok(
            &kubectl(),
            &[
                "get",
                "secrets",
                "-n",
                ns,
                "-l",
                &format!("owner=helm,name={release}"),
                "-o",
                "name",
            ],
            None,
        )
        .lines()
        .map(str::to_owned),
    );
    left.retain(|l| !l.is_empty());
    left
}

#[tokio::test]
async fn install_upgrade_and_uninstall_on_the_local_control_plane() {
    require_api_server().await;
    ensure_crd();
    let ns = RestrictedNamespace::create(&unique("chart-it"));
    let release = unique("ps");
    let fullname = format!("{release}-operator");
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    let helm_args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        v.extend([
            "-n".into(),
            ns.0.clone(),
            "--wait".into(),
            "--timeout".into(),
            "90s".into(),
        ]);
        v
    };
    let started = Instant::now();

    // Install: helm waits for both operator pods to be Ready (kwok), which
    // they only get if the restricted namespace admitted them.
    let args = helm_args(&["install", &release, chart]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let notes = run_ok(&helm(), &args, None);
    // The notes name the operator's endpoints and the next command.
    for expected in [
        format!("http://{fullname}-metrics.{}.svc:8080/metrics", ns.0),
        "/health".to_owned(),
        "/ready".to_owned(),
        "k8s/samples/streamingplatform.yaml".to_owned(),
        "get streamingplatforms".to_owned(),
    ] {
        assert!(
            notes.contains(&expected),
            "the notes lack {expected}:\n{notes}"
        );
    }
    let d = deployment(&ns.0, &fullname);
    assert_eq!(d["status"]["readyReplicas"], 2, "{:#}", d["status"]);
    let before = snapshot(&release, &ns.0);
    assert!(before.len() >= 10, "the release made only {before:?}");

    // A value only the operator's pods use rolls the Deployment, nothing else.
    let args = helm_args(&[
        "upgrade",
        &release,
        chart,
        "--reuse-values",
        "--set",
        "logLevel=debug",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(&helm(), &args, None);
    let after_log = snapshot(&release, &ns.0);
    let key = format!("Deployment/{fullname}");
    assert_eq!(changed(&before, &after_log), vec![key.clone()]);
    assert_eq!(
        after_log[&key].1,
        before[&key].1 + 1,
        "the Deployment's generation"
    );
    let d = deployment(&ns.0, &fullname);
    let env = &d["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "RUST_LOG" && e["value"] == "debug"),
        "{env:#}"
    );

    // A dashboard setting changes the dashboards only: the operator does not roll.
    let args = helm_args(&[
        "upgrade",
        &release,
        chart,
        "--reuse-values",
        "--set",
        "dashboards.annotations.grafana_folder=Streaming",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(&helm(), &args, None);
    let after_dash = snapshot(&release, &ns.0);
    let moved = changed(&after_log, &after_dash);
    assert!(!moved.is_empty());
    assert!(
        moved
            .iter()
            .all(|k| k.starts_with(&format!("ConfigMap/{fullname}-dashboard-"))),
        "{moved:?}"
    );
    assert_eq!(
        after_dash[&key].1, after_log[&key].1,
        "the Deployment changed"
    );

    // Uninstall: nothing of the release is left, the CRD stays.
    let args = helm_args(&["uninstall", &release]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(&helm(), &args, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = leftovers(&release, &ns.0);
        if left.is_empty() {
            break;
        }
        // Pods go after their ReplicaSet, a moment after helm returns.
        assert!(
            Instant::now() < deadline,
            "left after helm uninstall: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    run_ok(
        &kubectl(),
        &["get", "crd", "streamingplatforms.polystream.dev"],
        None,
    );
    eprintln!("install/upgrade/uninstall took {:?}", started.elapsed());
}
