//! Every dashboard the chart ships is valid and follows the house rules
//! (units, the datasource variable, `$__rate_interval`, stable unique uids,
//! exemplars on latency), and every query parses as PromQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use polystream_observability_tests::dashboard::{Dashboard, lint_all, substitute};
use polystream_observability_tests::{dashboards_dir, json_files, promtool};
use serde_json::json;

fn files() -> Vec<(String, String)> {
    let dir = dashboards_dir();
    let files = json_files(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    files
}

#[test]
fn every_dashboard_follows_the_rules() {
    let problems = lint_all(&files());
    assert!(
        problems.is_empty(),
        "dashboard problems:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_five_dashboards_are_there() {
    let uids: Vec<String> = files()
        .iter()
        .map(|(f, t)| Dashboard::parse(f, t).unwrap().0.uid)
        .collect();
    for uid in [
        "polystream-overview",
        "polystream-kafka",
        "polystream-stores",
        "polystream-audit",
        "polystream-operator",
    ] {
        assert!(
            uids.iter().any(|u| u == uid),
            "no dashboard {uid}: {uids:?}"
        );
    }
}

/// promtool has no "parse this query" command, but it parses every
/// recording rule's expression: each query becomes one.
#[test]
fn every_query_parses_as_promql() {
    let mut rules = Vec::new();
    let mut names = Vec::new();
    for (file, text) in files() {
        let (d, _) = Dashboard::parse(&file, &text).unwrap();
        for p in &d.panels {
            for q in &p.queries {
                let expr = substitute(&q.expr, &[("__rate_interval", "1m"), ("namespace", ".*")])
                    .unwrap_or_else(|e| panic!("{file} panel {:?}: {e}", p.title));
                rules.push(
                    json!({"record": format!("dashboard:query_{}", rules.len()), "expr": expr}),
                );
                names.push(format!("{file} panel {:?} query {}", p.title, q.ref_id));
            }
        }
    }
    let dir = std::env::temp_dir().join(polystream_smoke_tests::unique("dashboard-queries"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("queries.yml");
    // JSON is YAML: promtool reads it as a rules file.
    std::fs::write(
        &path,
        json!({"groups": [{"name": "dashboards", "rules": rules}]}).to_string(),
    )
    .unwrap();
    let out = std::process::Command::new(promtool())
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .expect("running promtool");
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool rejects dashboard queries (rule N is query N of: {names:#?}):\n{text}"
    );
}

/// Exemplar links are a datasource setting in Grafana: the shipped
/// provisioning must send the `trace_id` exemplar label to a Jaeger
/// datasource it also defines.
#[test]
fn exemplars_link_to_a_jaeger_datasource() {
    let path = dashboards_dir().join("grafana-datasources.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: serde_json::Value =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let sources = doc["datasources"].as_array().expect("datasources list");
    let prometheus = sources
        .iter()
        .find(|d| d["type"] == "prometheus")
        .expect("a prometheus datasource");
    let links = prometheus["jsonData"]["exemplarTraceIdDestinations"]
        .as_array()
        .expect("exemplarTraceIdDestinations on the prometheus datasource");
    let link = links
        .iter()
        .find(|l| l["name"] == "trace_id")
        .expect("an exemplar destination for the trace_id label");
    let target = link["datasourceUid"].as_str().expect("datasourceUid");
    assert!(
        sources
            .iter()
            .any(|d| d["uid"] == target && d["type"] == "jaeger"),
        "exemplar destination {target} is not a jaeger datasource in {}",
        path.display()
    );
}
