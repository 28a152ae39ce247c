//! The Tiltfile and the kind dev stack (k8s/dev), as far as they can be
//! proven without Tilt or kind: the Tiltfile evaluated by `tilt-check`
//! (scripts/go/tilt-check: Tilt's Starlark interpreter with recording stubs,
//! `./dev install tilt_check`), then every path it names exists, its build
//! command succeeds when run directly, every image the rendered YAML uses is
//! built by it or an upstream image pinned by tag, every resource it refers
//! to exists; and everything it would apply is accepted by the local API
//! server (server-side dry run). What only a user's kind proves:
//! docs/kubernetes.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use polystream_chart_tests::{
    describe, documents, dry_run_apply, ensure_crd, read, root, run, run_ok, tool,
};
use polystream_smoke_tests::kube_client;
use serde_json::Value;

const NAMESPACE: &str = "polystream-dev";
/// Kinds whose pods Tilt follows, each object one resource named after it.
const WORKLOAD_KINDS: [&str; 7] = [
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "Pod",
];

fn helm() -> PathBuf {
    tool("helm", "HELM")
}

fn kubectl() -> PathBuf {
    tool("kubectl", "KUBECTL")
}

/// What the Tiltfile asked Tilt to do (tilt-check's JSON record).
fn evaluate() -> Value {
    let out = run_ok(
        &tool("tilt_check", "TILT_CHECK"),
        &[root().join("Tiltfile").to_str().unwrap()],
        None,
    );
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("tilt-check printed no JSON ({e}):\n{out}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Each `k8s_yaml()` input rendered as Tilt renders it: files read, `helm()`
/// as `helm template`, `kustomize()` as `kubectl kustomize`. Keyed by source.
fn render(tilt: &Value) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for source in tilt["k8s_yaml"].as_array().unwrap() {
        if let Some(file) = source["file"].as_str() {
            let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
            out.push((file.to_owned(), documents(&text)));
        } else if let Some(h) = source.get("helm").filter(|h| !h.is_null()) {
            let mut args = vec![
                "template".to_owned(),
                h["name"].as_str().unwrap().to_owned(),
                h["chart"].as_str().unwrap().to_owned(),
                "--namespace".to_owned(),
                h["namespace"].as_str().unwrap().to_owned(),
            ];
            if !h["skip_crds"].as_bool().unwrap() {
                args.push("--include-crds".into());
            }
            for v in strings(&h["values"]) {
                args.extend(["--values".into(), v]);
            }
            for s in strings(&h["set"]) {
                args.extend(["--set".into(), s]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            out.push((
                format!("helm {}", h["chart"]),
                documents(&run_ok(&helm(), &args, None)),
            ));
        } else {
            let k = &source["kustomize"];
            let mut args = vec![
                "kustomize".to_owned(),
                k["dir"].as_str().unwrap().to_owned(),
            ];
            args.extend(strings(&k["flags"]));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            out.push((
                format!("kustomize {}", k["dir"]),
                documents(&run_ok(&kubectl(), &args, None)),
            ));
        }
    }
    out
}

/// The containers (init containers included) of a workload's pod template.
fn containers(doc: &Value) -> Vec<&Value> {
    let pod = match doc["kind"].as_str().unwrap() {
        "Pod" => &doc["spec"],
        "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &doc["spec"]["template"]["spec"],
    };
    ["initContainers", "containers"]
        .iter()
        .flat_map(|k| pod[*k].as_array().into_iter().flatten())
        .collect()
}

/// `repository` and `tag` of an image reference (no digest support needed here).
fn split_image(image: &str) -> (&str, Option<&str>) {
    let last = image.rsplit('/').next().unwrap();
    match last.rfind(':') {
        Some(i) => {
            let cut = image.len() - last.len() + i;
            (&image[..cut], Some(&image[cut + 1..]))
        }
        None => (image, None),
    }
}

#[test]
fn image_references_split_into_repository_and_tag() {
    assert_eq!(
        split_image("apache/kafka:4.3.1"),
        ("apache/kafka", Some("4.3.1"))
    );
    assert_eq!(
        split_image("localhost:5000/polystream"),
        ("localhost:5000/polystream", None)
    );
    assert_eq!(split_image("polystream"), ("polystream", None));
}

#[test]
fn tiltfile_paths_build_images_and_resources_are_consistent() {
    let tilt = evaluate();

    // Only the kind cluster of k8s/dev/kind.yaml is allowed.
    let kind: Value = serde_saphyr::from_str(&read("k8s/dev/kind.yaml")).unwrap();
    let context = format!("kind-{}", kind["name"].as_str().unwrap());
    assert_eq!(strings(&tilt["allow_k8s_contexts"]), vec![context]);

    // The build commands, run as Tilt runs them (sh -c in the resource's dir).
    let local_resources = tilt["local_resources"].as_array().unwrap();
    assert!(!local_resources.is_empty(), "the Tiltfile builds nothing");
    for r in local_resources {
        let (name, cmd) = (r["name"].as_str().unwrap(), r["cmd"].as_str().unwrap());
        let started = Instant::now();
        let status = Command::new("sh")
            .args(["-c", cmd])
            .current_dir(r["dir"].as_str().unwrap())
            .status()
            .unwrap_or_else(|e| panic!("cannot run sh: {e}"));
        assert!(
            status.success(),
            "local_resource {name}: `{cmd}` failed ({status})"
        );
        eprintln!("local_resource {name} built in {:?}", started.elapsed());
    }

    // After the build, every path the Tiltfile names exists (the image context and the
    // files synced by live update are the build's output).
    let missing: Vec<String> = tilt["paths"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !Path::new(p["path"].as_str().unwrap()).exists())
        .map(|p| format!("{} ({})", p["path"], p["builtin"]))
        .collect();
    assert!(
        missing.is_empty(),
        "the Tiltfile names missing paths: {missing:#?}"
    );

    // Every COPY source of each Dockerfile is in its build context and passes `only`.
    let builds = tilt["docker_builds"].as_array().unwrap();
    for b in builds {
        let context = Path::new(b["context"].as_str().unwrap());
        let only = strings(&b["only"]);
        let dockerfile = std::fs::read_to_string(b["dockerfile"].as_str().unwrap()).unwrap();
        for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
            let words: Vec<&str> = line
                .split_whitespace()
                .skip(1)
                .filter(|w| !w.starts_with("--"))
                .collect();
            for src in &words[..words.len() - 1] {
                assert!(
                    context.join(src).is_file(),
                    "{line}: {src} is not in {}",
                    context.display()
                );
                assert!(
                    only.iter().any(|o| o == src),
                    "{line}: {src} is not in docker_build's only"
                );
            }
        }
        // Live update writes into the image's volume (k8s/dev/Dockerfile.tilt).
        for step in b["live_update"].as_array().unwrap() {
            if step["kind"] == "sync" {
                let dest = step["dest"].as_str().unwrap();
                assert!(
                    dockerfile.contains(&format!(
                        "VOLUME {}",
                        Path::new(dest).parent().unwrap().display()
                    )),
                    "live update syncs to {dest}, which is not the image's VOLUME"
                );
            }
        }
    }
    let built: BTreeSet<&str> = builds.iter().map(|b| b["ref"].as_str().unwrap()).collect();

    // Every image is built here, or an upstream image of the dev stack pinned by tag.
    let rendered = render(&tilt);
    let kinds = tilt["k8s_kinds"].as_array().unwrap();
    let mut workloads: BTreeMap<String, &Value> = BTreeMap::new();
    let mut objects: BTreeSet<String> = BTreeSet::new();
    for (source, docs) in &rendered {
        let is_dev_stack = source.starts_with("kustomize");
        for doc in docs {
            let kind = doc["kind"].as_str().unwrap();
            let name = doc["metadata"]["name"].as_str().unwrap();
            objects.insert(format!("{name}:{kind}").to_lowercase());
            let custom = kinds.iter().find(|k| k["kind"] == kind);
            if !WORKLOAD_KINDS.contains(&kind) && custom.is_none() {
                continue;
            }
            let previous = workloads.insert(name.to_lowercase(), doc);
            assert!(
                previous.is_none(),
                "two workloads named {name}: Tilt would rename them"
            );
            let mut images: Vec<String> = containers(doc)
                .iter()
                .map(|c| c["image"].as_str().unwrap().to_owned())
                .collect();
            if let Some(object) = custom.and_then(|k| k["image_object"].as_object()) {
                let path = object["json_path"].as_str().unwrap();
                assert_eq!(path, "{.spec.image}", "only spec.image is checked here");
                images.push(
                    doc["spec"]["image"][object["repo_field"].as_str().unwrap()]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            for image in images {
                let (repo, tag) = split_image(&image);
                let pinned = tag.is_some_and(|t| t != "latest");
                assert!(
                    built.contains(repo) || (is_dev_stack && pinned),
                    "{} ({source}) uses {image}: neither built by the Tiltfile nor an upstream image pinned by tag",
                    describe(doc)
                );
            }
        }
    }

    // Resources: the local ones, one per workload, renamed or made by k8s_resource.
    let mut resources: BTreeSet<String> = local_resources
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    resources.extend(workloads.keys().cloned());
    for r in tilt["k8s_resources"].as_array().unwrap() {
        let (workload, new_name) = (
            r["workload"].as_str().unwrap(),
            r["new_name"].as_str().unwrap(),
        );
        if !workload.is_empty() {
            assert!(
                workloads.contains_key(workload),
                "k8s_resource('{workload}'): no such workload in {:?}",
                workloads.keys()
            );
            if !new_name.is_empty() {
                resources.remove(workload);
            }
        }
        if !new_name.is_empty() {
            resources.insert(new_name.to_owned());
        }
        for o in strings(&r["objects"]) {
            assert!(
                objects.contains(&o.to_lowercase()),
                "k8s_resource objects: {o} is not rendered"
            );
        }
        // A port-forward reaches a port the workload's containers declare.
        for pf in r["port_forwards"].as_array().into_iter().flatten() {
            let doc = workloads[workload];
            let port = pf["container"].as_i64().unwrap();
            assert!(
                containers(doc)
                    .iter()
                    .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                    .any(|p| p["containerPort"] == port),
                "{workload}: port_forward to {port}, which no container declares"
            );
        }
    }
    for (who, deps) in local_resources
        .iter()
        .map(|r| (&r["name"], &r["resource_deps"]))
        .chain(
            tilt["k8s_resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (&r["workload"], &r["resource_deps"])),
        )
    {
        for dep in strings(deps) {
            assert!(
                resources.contains(&dep),
                "{who} depends on '{dep}', which is no resource: {resources:?}"
            );
        }
    }

    // The S1 link goes through kind's port mapping to the gateway's node port.
    let mappings = kind["nodes"][0]["extraPortMappings"].as_array().unwrap();
    let node_ports: BTreeSet<i64> = rendered
        .iter()
        .flat_map(|(_, docs)| docs.iter())
        .filter(|d| d["kind"] == "Service" && d["spec"]["type"] == "NodePort")
        .flat_map(|d| {
            d["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["nodePort"].as_i64().unwrap())
        })
        .collect();
    let links: Vec<String> = tilt["k8s_resources"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["links"].as_array().into_iter().flatten())
        .map(|l| l["url"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        links.iter().any(|l| l.ends_with("/docs")),
        "no link to the S1 API docs: {links:?}"
    );
    for url in &links {
        let port: i64 = url
            .split(':')
            .nth(2)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let mapping = mappings
            .iter()
            .find(|m| m["hostPort"] == port)
            .unwrap_or_else(|| panic!("{url}: kind.yaml maps no host port {port}"));
        assert!(
            node_ports.contains(&mapping["containerPort"].as_i64().unwrap()),
            "{url}: kind maps {port} to node port {}, which no Service has",
            mapping["containerPort"]
        );
    }

    // Grafana gets every dashboard of the chart, byte for byte (one copy of each file).
    let dashboards = rendered
        .iter()
        .flat_map(|(_, docs)| docs.iter())
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("grafana-dashboards-")
        })
        .expect("no grafana-dashboards ConfigMap in the dev stack");
    let mut files: Vec<String> = std::fs::read_dir(root().join("charts/polystream/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    let keys: Vec<String> = dashboards["data"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        keys, files,
        "charts/polystream/kustomization.yaml must list every dashboard"
    );
    for f in &files {
        assert_eq!(
            dashboards["data"][f].as_str().unwrap(),
            read(&format!("charts/polystream/dashboards/{f}"))
        );
    }
}

/// The dev namespace, created for the dry run (namespaced objects need it) and
/// deleted afterwards, unless it was there before.
struct DevNamespace {
    created: bool,
}

impl DevNamespace {
    fn ensure() -> Self {
        let exists = run(&kubectl(), &["get", "namespace", NAMESPACE], None)
            .status
            .success();
        if !exists {
            run_ok(&kubectl(), &["apply", "-f", "k8s/dev/namespace.yaml"], None);
        }
        Self { created: !exists }
    }
}

impl Drop for DevNamespace {
    fn drop(&mut self) {
        if self.created {
            let _ = run(
                &kubectl(),
                &["delete", "namespace", NAMESPACE, "--wait=false"],
                None,
            );
        }
    }
}

#[tokio::test]
async fn everything_the_tiltfile_applies_is_accepted_by_the_api_server() {
    // Fails naming the API server (and how to start it) unless it answers.
    let _ = kube_client().await;
    let tilt = evaluate();
    let rendered = render(&tilt);
    ensure_crd();
    let _ns = DevNamespace::ensure();
    for (source, docs) in &rendered {
        let out = dry_run_apply(docs);
        assert!(
            out.status.success(),
            "the API server refused {source}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let applied = String::from_utf8_lossy(&out.stdout);
        for doc in docs {
            let name = doc["metadata"]["name"].as_str().unwrap();
            assert!(
                applied.contains(name),
                "{} missing from the dry run's answer:\n{applied}",
                describe(doc)
            );
        }
        eprintln!(
            "{source}: {} objects accepted (server-side dry run)",
            docs.len()
        );
    }
}
