//! Grafana dashboards as the chart ships them: what every file must satisfy
//! (the lint), and the queries the proof runs against Prometheus.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

// The parsing and substitution the console uses to draw the same series.
pub use polystream_console::dashboard::{
    Dashboard, Panel, Query, data_panels, substitute, variables_in,
};

/// The template variable every panel and query variable takes its Prometheus from.
pub const DATASOURCE_VAR: &str = "datasource";
/// Grafana's interval for `rate`/`increase`: at least four scrape intervals,
/// whatever the zoom, so a panel never shows gaps from a too-short window.
pub const RATE_INTERVAL: &str = "$__rate_interval";
/// The schema versions we accept (Grafana 10.x/11.x write 38–39).
pub const SCHEMA_VERSIONS: std::ops::RangeInclusive<i64> = 36..=41;

/// Everything wrong with a set of dashboard files `(file name, contents)`,
/// each problem naming its file and panel; empty when all is well.
pub fn lint_all(files: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut uids: BTreeMap<String, String> = BTreeMap::new();
    for (file, text) in files {
        match Dashboard::parse(file, text) {
            Err(e) => problems.push(e),
            Ok((d, json)) => {
                problems.extend(lint(file, &json));
                if let Some(other) = uids.insert(d.uid.clone(), file.clone())
                    && !d.uid.is_empty()
                {
                    problems.push(format!("{file}: uid {:?} is also used by {other}", d.uid));
                }
            }
        }
    }
    problems
}

fn uses_datasource_var(ds: &Value) -> bool {
    let uid = ds["uid"]
        .as_str()
        .or_else(|| ds.as_str())
        .unwrap_or_default();
    uid == format!("${DATASOURCE_VAR}") || uid == format!("${{{DATASOURCE_VAR}}}")
}

/// The problems of one dashboard.
pub fn lint(file: &str, d: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut bad = |msg: String| problems.push(format!("{file}: {msg}"));

    let uid = d["uid"].as_str().unwrap_or_default();
    if uid.is_empty() || uid.len() > 40 {
        bad(format!(
            "uid must be a stable non-empty string of at most 40 characters, got {:?}",
            d["uid"]
        ));
    }
    if d["title"].as_str().is_none_or(str::is_empty) {
        bad("no title".into());
    }
    match d["schemaVersion"].as_i64() {
        Some(v) if SCHEMA_VERSIONS.contains(&v) => {}
        other => bad(format!(
            "schemaVersion {other:?} is not in {SCHEMA_VERSIONS:?}"
        )),
    }

    // Template variables: a Prometheus datasource variable, and every query
    // variable reads through it.
    let vars = d["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut known: BTreeSet<String> = BTreeSet::new();
    let mut has_ds_var = false;
    for v in &vars {
        let name = v["name"].as_str().unwrap_or_default();
        known.insert(name.to_owned());
        if name == DATASOURCE_VAR {
            has_ds_var = v["type"] == "datasource" && v["query"] == "prometheus";
        } else if v["type"] == "query" && !uses_datasource_var(&v["datasource"]) {
            bad(format!(
                "variable {name:?} does not query through ${DATASOURCE_VAR}"
            ));
        }
    }
    if !has_ds_var {
        bad(format!(
            "no template variable {DATASOURCE_VAR:?} of type datasource for prometheus"
        ));
    }

    let mut ids = BTreeSet::new();
    let panels = data_panels(d);
    if panels.is_empty() {
        bad("no panels".into());
    }
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default();
        let at = format!("panel {title:?}");
        if title.is_empty() {
            bad(format!("a panel (id {}) has no title", p["id"]));
        }
        if let Some(id) = p["id"].as_i64()
            && !ids.insert(id)
        {
            bad(format!("{at}: id {id} is used twice"));
        }
        if p["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            bad(format!("{at}: no unit (fieldConfig.defaults.unit)"));
        }
        if !uses_datasource_var(&p["datasource"]) {
            bad(format!("{at}: datasource is not ${DATASOURCE_VAR}"));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            bad(format!("{at}: no queries"));
        }
        for t in &targets {
            let ref_id = t["refId"].as_str().unwrap_or("?");
            let at = format!("{at} query {ref_id}");
            if !uses_datasource_var(&t["datasource"]) {
                bad(format!("{at}: datasource is not ${DATASOURCE_VAR}"));
            }
            let expr = t["expr"].as_str().unwrap_or_default();
            if expr.trim().is_empty() {
                bad(format!("{at}: empty expr"));
                continue;
            }
            for problem in lint_expr(expr, &known) {
                bad(format!("{at}: {problem}: {expr}"));
            }
            if expr.contains("histogram_quantile") && t["exemplar"] != true {
                bad(format!(
                    "{at}: a latency query needs \"exemplar\": true (trace links)"
                ));
            }
        }
    }
    problems
}

/// The problems of one PromQL expression of a panel, given the dashboard's
/// variable names.
pub fn lint_expr(expr: &str, variables: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let ranges = range_selectors(expr);
    for r in &ranges {
        if r != RATE_INTERVAL {
            problems.push(format!(
                "range [{r}] instead of [{RATE_INTERVAL}] (a fixed window breaks at other zooms and scrape intervals)"
            ));
        }
    }
    for f in ["rate(", "increase("] {
        if contains_call(expr, f) && ranges.is_empty() {
            problems.push(format!("{f}..) without a [{RATE_INTERVAL}] range"));
        }
    }
    if contains_call(expr, "histogram_quantile(") {
        if !expr.contains("_bucket") {
            problems.push("histogram_quantile over something other than a _bucket series".into());
        }
        if !by_clauses(expr)
            .iter()
            .any(|b| b.contains(&"le".to_owned()))
        {
            problems.push("histogram_quantile without `le` in its aggregation".into());
        }
    }
    for v in variables_in(expr) {
        if !v.starts_with("__") && !variables.contains(&v) {
            problems.push(format!("unknown variable ${v}"));
        }
    }
    problems
}

/// True when `expr` calls `call` (e.g. `rate(`), not just a name ending in it
/// (`irate(` is not `rate(`).
fn contains_call(expr: &str, call: &str) -> bool {
    expr.match_indices(call).any(|(i, _)| {
        !expr[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// `expr` with the string literals blanked out (same length, so indices
/// still line up), for scanning syntax without tripping over label values.
fn code_only(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                    continue;
                }
                // Keep the byte length so slices of `expr` stay valid.
                out.extend(std::iter::repeat_n(' ', c.len_utf8()));
            }
            None => {
                if c == '"' || c == '\'' || c == '`' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// The contents of every range selector (`[5m]`, `[$__rate_interval]`,
/// `[10m:1m]`) in `expr`, ignoring brackets inside label values.
pub fn range_selectors(expr: &str) -> Vec<String> {
    let code = code_only(expr);
    let mut out = Vec::new();
    let mut rest = code.as_str();
    let mut offset = 0;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else {
            break;
        };
        let (a, b) = (offset + open + 1, offset + open + close);
        out.push(expr[a..b].trim().to_owned());
        offset = b + 1;
        rest = &code[offset..];
    }
    out
}

/// The label lists of every `by (...)` clause.
fn by_clauses(expr: &str) -> Vec<Vec<String>> {
    let code = code_only(expr);
    let mut out = Vec::new();
    for (i, _) in code.match_indices("by") {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let after = code[i + 2..].trim_start();
        if let Some(list) = after.strip_prefix('(')
            && let Some(end) = list.find(')')
        {
            out.push(
                list[..end]
                    .split(',')
                    .map(|l| l.trim().to_owned())
                    .filter(|l| !l.is_empty())
                    .collect(),
            );
        }
    }
    out
}

/// The histogram bucket series (`..._bucket`) an expression reads, in order,
/// without duplicates.
pub fn bucket_metrics(expr: &str) -> Vec<String> {
    let code = code_only(expr);
    let mut out: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in code.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if word.ends_with("_bucket") && !out.contains(&word) {
            out.push(word.clone());
        }
        word.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "uid": "polystream-x", "title": "X", "schemaVersion": 39,
            "templating": {"list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {"name": "namespace", "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"}}
            ]},
            "panels": [
                {"id": 1, "type": "row", "title": "Row", "panels": []},
                {"id": 2, "type": "timeseries", "title": "Latency",
                 "datasource": {"type": "prometheus", "uid": "${datasource}"},
                 "fieldConfig": {"defaults": {"unit": "s"}},
                 "targets": [{"refId": "A", "datasource": {"uid": "${datasource}"}, "exemplar": true,
                   "expr": "histogram_quantile(0.95, sum by (job, le) (rate(x_bucket{namespace=~\"$namespace\"}[$__rate_interval])))"}]},
                {"id": 3, "type": "row", "title": "Collapsed", "collapsed": true, "panels": [
                    {"id": 4, "type": "stat", "title": "Up",
                     "datasource": {"uid": "$datasource"},
                     "fieldConfig": {"defaults": {"unit": "short"}},
                     "targets": [{"refId": "A", "datasource": {"uid": "$datasource"}, "expr": "sum(up)"}]}
                ]}
            ]
        })
    }

    #[test]
    fn a_good_dashboard_has_no_problems_and_nested_panels_count() {
        assert_eq!(lint("x.json", &good()), Vec::<String>::new());
        let (d, _) = Dashboard::parse("x.json", &good().to_string()).unwrap();
        let titles: Vec<_> = d.panels.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(titles, ["Latency", "Up"]);
    }

    #[test]
    fn each_rule_is_enforced_and_named() {
        let mut d = good();
        d["panels"][1]["fieldConfig"]["defaults"]
            .as_object_mut()
            .unwrap()
            .remove("unit");
        d["panels"][2]["panels"][0]["datasource"] = json!({"uid": "prometheus"});
        d["panels"][2]["panels"][0]["targets"][0]["expr"] = json!("rate(x_total[5m])");
        d["panels"][1]["targets"][0]["exemplar"] = json!(false);
        let problems = lint("x.json", &d).join("\n");
        for expected in [
            "panel \"Latency\": no unit",
            "panel \"Up\": datasource is not $datasource",
            "panel \"Up\" query A: range [5m] instead of [$__rate_interval]",
            "panel \"Latency\" query A: a latency query needs \"exemplar\": true",
        ] {
            assert!(
                problems.contains(expected),
                "{expected} not in:\n{problems}"
            );
        }
    }

    #[test]
    fn dashboard_level_rules() {
        let mut d = good();
        d["templating"]["list"][0]["type"] = json!("query");
        d["schemaVersion"] = json!(16);
        d["templating"]["list"][1]["datasource"] = json!({"uid": "abc"});
        let problems = lint("x.json", &d).join("\n");
        assert!(
            problems.contains("no template variable \"datasource\""),
            "{problems}"
        );
        assert!(problems.contains("schemaVersion Some(16)"), "{problems}");
        assert!(
            problems.contains("variable \"namespace\" does not query"),
            "{problems}"
        );
    }

    #[test]
    fn uids_must_be_unique_across_files_and_json_valid() {
        let a = good().to_string();
        let problems = lint_all(&[
            ("a.json".into(), a.clone()),
            ("b.json".into(), a),
            ("c.json".into(), "{".into()),
        ]);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("b.json: uid \"polystream-x\" is also used by a.json")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("c.json: not valid JSON")),
            "{problems:?}"
        );
    }

    #[test]
    fn expression_checks() {
        let vars: BTreeSet<String> = ["namespace".to_owned()].into();
        assert!(lint_expr("sum(rate(x[$__rate_interval]))", &vars).is_empty());
        assert!(lint_expr("irate(x[$__rate_interval])", &vars).is_empty());
        // A bracket inside a label value is not a range.
        assert!(lint_expr("sum(x{a=~\"[0-9]+\"})", &vars).is_empty());
        assert_eq!(
            lint_expr(
                "histogram_quantile(0.9, sum by (job) (rate(x_bucket[$__rate_interval])))",
                &vars
            ),
            ["histogram_quantile without `le` in its aggregation"]
        );
        assert_eq!(
            lint_expr(
                "histogram_quantile(0.9, rate(x_sum[$__rate_interval]))",
                &vars
            )
            .len(),
            2
        );
        assert_eq!(
            lint_expr("x{job=\"$job\"}", &vars),
            ["unknown variable $job"]
        );
        assert_eq!(
            lint_expr("increase(x)", &vars),
            ["increase(..) without a [$__rate_interval] range"]
        );
        assert_eq!(
            range_selectors("deriv(x[10m:1m]) + y[ 1m ]"),
            ["10m:1m", "1m"]
        );
    }

    #[test]
    fn substitution_replaces_every_form_and_names_what_is_left() {
        let v = [("__rate_interval", "1m"), ("namespace", "ns-1")];
        assert_eq!(
            substitute(
                "rate(x{namespace=~\"$namespace\",a=\"${namespace}\"}[$__rate_interval])",
                &v
            )
            .unwrap(),
            "rate(x{namespace=~\"ns-1\",a=\"ns-1\"}[1m])"
        );
        assert_eq!(
            substitute("x{job=\"$job\"}", &v).unwrap_err(),
            "no value for variable $job in x{job=\"$job\"}"
        );
        assert_eq!(variables_in("a ${b:regex} [[c]] $d_1"), ["b", "d_1", "c"]);
    }
}
