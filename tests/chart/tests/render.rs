//! The chart without a cluster: `helm lint --strict`, the values schema, what
//! `helm template` renders from each `ci/*-values.yaml`, and that the
//! generated copies (chart CRD, k8s/operator/) match their sources.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use polystream_chart_tests::{
    chart_dir, documents, of_kind, one, open_objects, read, root, run, run_ok, tool,
    undescribed_keys,
};
use serde_json::Value;

fn helm() -> PathBuf {
    tool("helm", "HELM")
}

/// Every `ci/*-values.yaml`, sorted.
fn ci_values() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart_dir().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "ci/ lost values files: {files:?}");
    files
}

/// `helm template` of the chart with `args` (e.g. `-f`, `--set`).
fn template(args: &[&str]) -> Vec<Value> {
    let chart = chart_dir();
    let mut all = vec![
        "template",
        "polystream",
        chart.to_str().unwrap(),
        "--namespace",
        "ps-test",
    ];
    all.extend_from_slice(args);
    documents(&run_ok(&helm(), &all, None))
}

fn full() -> Vec<Value> {
    template(&["-f", "charts/polystream/ci/full-values.yaml"])
}

#[test]
fn lint_strict_passes_with_the_defaults_and_every_ci_values_file() {
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    run_ok(&helm(), &["lint", "--strict", chart], None);
    for file in ci_values() {
        run_ok(
            &helm(),
            &["lint", "--strict", chart, "-f", file.to_str().unwrap()],
            None,
        );
    }
}

#[test]
fn the_schema_closes_every_object_level_and_describes_every_default() {
    let schema: Value =
        serde_json::from_str(&read("charts/polystream/values.schema.json")).unwrap();
    // Free-form on purpose: Kubernetes objects passed through as they are
    // (the API server validates them), and Helm's own `global`.
    let passthrough = [
        "/global",
        "/platform/spec",
        "/tolerations/items",
        "/extraEnv/items",
    ];
    assert_eq!(open_objects(&schema, &passthrough), Vec::<String>::new());
    let values: Value = serde_saphyr::from_str(&read("charts/polystream/values.yaml")).unwrap();
    assert_eq!(undescribed_keys(&values, &schema), Vec::<String>::new());
    // Every top-level value in values.yaml is documented: a comment block
    // starting with `# -- ` right above it.
    let text = read("charts/polystream/values.yaml");
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let top_level_key = !line.starts_with([' ', '#', '-']) && line.contains(':');
        if top_level_key {
            let block_start = lines[..i]
                .iter()
                .rposition(|l| !l.starts_with('#'))
                .map_or(0, |p| p + 1);
            assert!(
                block_start < i && lines[block_start].starts_with("# -- "),
                "values.yaml: `{line}` has no `# -- ` comment above it"
            );
        }
    }
}

#[test]
fn bad_values_are_rejected_naming_the_field() {
    let chart = chart_dir();
    for (set, named) in [
        ("replicas=two", "/replicas"),
        ("replica=2", "'replica' not allowed"),
        ("image.digest=sha256:0", "/image"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("watchNamespaces={a,b}", "/watchNamespaces"),
        ("watchNamespaces={Not_A_Namespace}", "/watchNamespaces/0"),
        ("resources.limits.memory=lots", "/resources/limits/memory"),
        ("dashboards.extra=1", "'extra' not allowed"),
        (
            "leaderElection.renewDeadlineSeconds=20",
            "leaderElection.renewDeadlineSeconds",
        ),
        ("leaderElection.enabled=false", "leaderElection.enabled"),
    ] {
        let out = run(
            &helm(),
            &["template", "x", chart.to_str().unwrap(), "--set", set],
            None,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(
            stderr.contains(named),
            "--set {set}: the error does not name {named}:\n{stderr}"
        );
    }
}

#[test]
fn the_prometheus_rule_holds_the_rules_file_unchanged() {
    let docs = full();
    let rule = one(&docs, "PrometheusRule");
    let file: Value =
        serde_saphyr::from_str(&read("charts/polystream/rules/polystream.yml")).unwrap();
    assert_eq!(rule["spec"]["groups"], file["groups"]);
    // Prometheus's own templates survive (Helm did not render them).
    assert!(
        serde_json::to_string(&rule["spec"])
            .unwrap()
            .contains("{{ $labels.")
    );
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
}

#[test]
fn grafana_configmaps_hold_the_files_byte_for_byte() {
    let docs = full();
    let maps = of_kind(&docs, "ConfigMap");
    let mut dashboards: Vec<String> = std::fs::read_dir(chart_dir().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    dashboards.sort();
    assert!(dashboards.len() >= 5, "{dashboards:?}");
    for name in &dashboards {
        let file = read(&format!("charts/polystream/dashboards/{name}"));
        let cm = maps
            .iter()
            .find(|m| m["data"].get(name).is_some())
            .unwrap_or_else(|| panic!("no ConfigMap holds {name}"));
        assert_eq!(
            cm["data"][name].as_str().unwrap(),
            file,
            "{name} changed on the way"
        );
        assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1", "{name}");
        assert_eq!(
            cm["metadata"]["annotations"]["grafana_folder"],
            "Polystream"
        );
    }
    let datasources = maps
        .iter()
        .find(|m| m["metadata"]["labels"]["grafana_datasource"] == "1")
        .expect("no ConfigMap labelled grafana_datasource");
    assert_eq!(
        datasources["data"]["polystream-datasources.yaml"]
            .as_str()
            .unwrap(),
        read("charts/polystream/dashboards/grafana-datasources.yaml")
    );
    assert_eq!(maps.len(), dashboards.len() + 1, "unexpected ConfigMaps");
    // Turned off, none is rendered.
    let none = template(&[
        "--set",
        "dashboards.enabled=false",
        "--set",
        "datasources.enabled=false",
    ]);
    assert!(of_kind(&none, "ConfigMap").is_empty());
}

#[test]
fn the_chart_crd_is_the_repository_crd_kept_on_uninstall() {
    let repo = documents(&read("crds/streamingplatform.yaml"));
    let chart = documents(&read("charts/polystream/crds/streamingplatform.yaml"));
    assert_eq!(chart.len(), 1);
    let mut stripped = chart[0].clone();
    let annotations = stripped["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations")
        .expect("the chart's CRD has no annotations");
    assert_eq!(
        annotations,
        serde_json::json!({"helm.sh/resource-policy": "keep"})
    );
    assert_eq!(
        stripped, repo[0],
        "the chart's CRD differs from crds/: run scripts/gen-manifests.sh"
    );
    // Helm installs it from crds/ (before the templates), not as a template.
    let chart_path = chart_dir();
    let with_crds = documents(&run_ok(
        &helm(),
        &[
            "template",
            "x",
            chart_path.to_str().unwrap(),
            "--include-crds",
        ],
        None,
    ));
    assert_eq!(of_kind(&with_crds, "CustomResourceDefinition").len(), 1);
    assert!(of_kind(&template(&[]), "CustomResourceDefinition").is_empty());
}

#[test]
fn generated_manifests_match_the_chart() {
    let out = std::process::Command::new(root().join("scripts/gen-manifests.sh"))
        .arg("--check")
        .env("HELM", helm())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "k8s/operator/ or the chart's CRD drifted from the chart:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_rbac_rule_says_why() {
    for file in ["k8s/operator/rbac.yaml"] {
        let text = read(file);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let mut rules = 0;
        for (i, line) in lines.iter().enumerate() {
            if line.starts_with("- apiGroups:") {
                rules += 1;
                assert!(
                    lines[i - 1].starts_with('#'),
                    "{file}: the rule at line {} has no comment",
                    i + 1
                );
            }
        }
        assert!(rules >= 12, "{file}: only {rules} rules");
    }
}

fn env_of(deployment: &Value, name: &str) -> Option<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].as_str().unwrap().to_owned())
}

#[test]
fn the_operator_runs_two_hardened_replicas_with_leader_election() {
    let docs = template(&[]);
    let d = one(&docs, "Deployment");
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(env_of(d, "LEADER_ELECTION").as_deref(), Some("true"));
    assert_eq!(env_of(d, "WATCH_NAMESPACE").as_deref(), Some(""));
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["containers"][0];
    // appVersion is the workspace version: the operator's image is the one `./dev image`
    // builds, and the tag the operator gives the services by default.
    assert_eq!(
        c["image"],
        format!("polystream:{}", env!("CARGO_PKG_VERSION")),
        "default tag = appVersion = the workspace version"
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    // The pod template must not change with the chart version alone (no roll).
    let labels = serde_json::to_string(&d["spec"]["template"]["metadata"]).unwrap();
    assert!(!labels.contains("helm.sh/chart"), "{labels}");
    one(&docs, "PodDisruptionBudget");
    one(&docs, "ServiceAccount");
    one(&docs, "ClusterRole");
    assert!(of_kind(&docs, "ServiceMonitor").is_empty());
    assert!(of_kind(&docs, "PrometheusRule").is_empty());
    assert!(of_kind(&docs, "StreamingPlatform").is_empty());
}

#[test]
fn the_service_monitor_scrapes_the_metrics_service() {
    let docs = full();
    let sm = one(&docs, "ServiceMonitor");
    let svc = one(&docs, "Service");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "the Service lacks label {k}"
        );
    }
    let port = sm["spec"]["endpoints"][0]["port"].as_str().unwrap();
    assert!(
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == port)
    );
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(sm["spec"]["namespaceSelector"]["matchNames"][0], "ps-test");
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    let platform = one(&docs, "StreamingPlatform");
    assert_eq!(platform["spec"]["stores"]["kafka"]["partitions"], 6);
}

#[test]
fn watch_namespaces_confine_the_operator_to_roles_there() {
    let docs = template(&["-f", "charts/polystream/ci/watch-namespaces-values.yaml"]);
    assert!(of_kind(&docs, "ClusterRole").is_empty());
    assert!(of_kind(&docs, "ClusterRoleBinding").is_empty());
    let roles = of_kind(&docs, "Role");
    let watched = roles
        .iter()
        .find(|r| r["metadata"]["namespace"] == "polystream-ci-team")
        .expect("no Role in the watched namespace");
    let secrets = watched["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resources"] == serde_json::json!(["secrets"]))
        .unwrap();
    assert_eq!(
        secrets["verbs"],
        serde_json::json!(["get", "list", "watch"])
    );
    let lease = roles
        .iter()
        .find(|r| r["metadata"]["namespace"] == "ps-test")
        .expect("no leader-election Role in the release namespace");
    assert_eq!(
        lease["rules"][0]["resources"],
        serde_json::json!(["leases"])
    );
    let binding = of_kind(&docs, "RoleBinding")
        .into_iter()
        .find(|b| b["metadata"]["namespace"] == "polystream-ci-team")
        .unwrap();
    assert_eq!(binding["subjects"][0]["namespace"], "ps-test");
    let d = one(&docs, "Deployment");
    assert_eq!(
        env_of(d, "WATCH_NAMESPACE").as_deref(),
        Some("polystream-ci-team")
    );
}
