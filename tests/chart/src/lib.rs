//! Support for the chart tests (tests/chart.rs): where the chart and the
//! tools are, running `helm`/`kubectl`, and pure checks on rendered YAML and
//! on the values schema (unit-tested here, without any server).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The repository root (this crate lives in `tests/chart`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `charts/polystream`.
pub fn chart_dir() -> PathBuf {
    root().join("charts/polystream")
}

/// A file of the repository, read as text; panics naming it.
pub fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The path of a tool `./dev` installs (`helm`, `kubectl`): `$VAR` as
/// `./dev env` writes it, else what `./dev status` shows for it. Panics
/// naming the install command when it is not there.
pub fn tool(name: &str, var: &str) -> PathBuf {
    let path = match std::env::var(var).ok().filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            // The same function ./dev uses, so a version bump needs no change here.
            let script = format!(
                "source scripts/lib/common.sh && for f in scripts/components/*.sh; do source \"$f\"; done && {name}_addr"
            );
            let out = Command::new("bash")
                .arg("-c")
                .arg(script)
                .current_dir(root())
                .stderr(Stdio::inherit())
                .output()
                .unwrap_or_else(|e| panic!("cannot run bash to locate {name}: {e}"));
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    assert!(
        path.is_file(),
        "{name} is not installed at {} (${var}); install it with `./dev install {name}`",
        path.display()
    );
    path
}

/// Runs `program args...` with `stdin` fed in; returns its output.
pub fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .current_dir(root())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    if let Some(input) = stdin {
        let mut pipe = child
            .stdin
            .take()
            .unwrap_or_else(|| panic!("no stdin pipe"));
        pipe.write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write to {}: {e}", program.display()));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{} did not finish: {e}", program.display()))
}

/// Like [`run`], but panics with the command and its stderr unless it succeeded;
/// returns stdout.
pub fn run_ok(program: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(program, args, stdin);
    assert!(
        out.status.success(),
        "`{} {}` failed ({}):\n{}\n{}",
        program.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A namespace enforcing the `restricted` Pod Security level, deleted (without
/// waiting) when dropped.
pub struct RestrictedNamespace(pub String);

impl RestrictedNamespace {
    pub fn create(name: &str) -> Self {
        create_restricted_namespace(name);
        Self(name.to_owned())
    }
}

/// Creates namespace `name` enforcing the `restricted` Pod Security level.
pub fn create_restricted_namespace(name: &str) {
    let ns = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {"pod-security.kubernetes.io/enforce": "restricted"}
        }
    });
    run_ok(
        &tool("kubectl", "KUBECTL"),
        &["create", "-f", "-"],
        Some(&ns.to_string()),
    );
}

impl Drop for RestrictedNamespace {
    fn drop(&mut self) {
        let _ = run(
            &tool("kubectl", "KUBECTL"),
            &["delete", "namespace", &self.0, "--wait=false"],
            None,
        );
    }
}

/// Server-side dry run of `docs` on the API server of `$KUBECONFIG`, as
/// `kubectl apply --server-side` would send them; returns kubectl's output.
/// Sent as a YAML stream of JSON documents: kubectl's client-side decoding
/// chokes on the CRD's `enum: [..., null]` inside a v1 List.
pub fn dry_run_apply(docs: &[Value]) -> Output {
    let stream: Vec<String> = docs.iter().map(Value::to_string).collect();
    run(
        &tool("kubectl", "KUBECTL"),
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--force-conflicts",
            "--field-manager",
            "polystream-chart-tests",
            "-f",
            "-",
        ],
        Some(&stream.join("\n---\n")),
    )
}

/// The documents of a multi-document YAML stream, empty ones (a comment-only
/// header, a template that rendered nothing) left out.
pub fn documents(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_saphyr::from_str_multiple(yaml).unwrap_or_else(|e| panic!("not YAML: {e}\n{yaml}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// `kind name` of a document, for messages.
pub fn describe(doc: &Value) -> String {
    format!(
        "{} {}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The documents of one kind.
pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one document of `kind`; panics listing what there is otherwise.
pub fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(docs, kind);
    assert_eq!(
        found.len(),
        1,
        "expected one {kind}, rendered: {:?}",
        docs.iter().map(describe).collect::<Vec<_>>()
    );
    found[0]
}

/// JSON-pointer-like paths of every object schema in `schema` that accepts
/// properties it does not name: neither `additionalProperties: false` nor a
/// typed map (`additionalProperties: {schema}`). `allowed` lists the paths
/// that are free-form on purpose (e.g. a Kubernetes object passed through).
pub fn open_objects(schema: &Value, allowed: &[&str]) -> Vec<String> {
    let mut open = Vec::new();
    walk(schema, "", allowed, &mut open);
    // Sorted: serde_json's map order depends on the features the build unified.
    open.sort();
    open
}

fn walk(node: &Value, path: &str, allowed: &[&str], open: &mut Vec<String>) {
    let Some(map) = node.as_object() else { return };
    let is_object = match &map.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
        _ => map.contains_key("properties"),
    };
    if is_object && !allowed.contains(&path) {
        match map.get("additionalProperties") {
            Some(Value::Bool(false)) | Some(Value::Object(_)) => {}
            _ => open.push(if path.is_empty() {
                "/".into()
            } else {
                path.into()
            }),
        }
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        for (k, v) in props {
            walk(v, &format!("{path}/{k}"), allowed, open);
        }
    }
    if let Some(items) = map.get("items") {
        walk(items, &format!("{path}/items"), allowed, open);
    }
    if let Some(Value::Object(extra)) = map.get("additionalProperties") {
        walk(
            &Value::Object(extra.clone()),
            &format!("{path}/*"),
            allowed,
            open,
        );
    }
    for key in ["definitions", "$defs"] {
        if let Some(Value::Object(defs)) = map.get(key) {
            for (k, v) in defs {
                walk(v, &format!("#/{key}/{k}"), allowed, open);
            }
        }
    }
}

/// The keys of `values` (nested, as `/a/b` paths) that `schema` does not
/// describe: every documented value must be in the schema, or helm would
/// reject the chart's own defaults.
pub fn undescribed_keys(values: &Value, schema: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    undescribed(values, schema, "", &mut missing);
    missing
}

fn undescribed(values: &Value, schema: &Value, path: &str, missing: &mut Vec<String>) {
    let Some(map) = values.as_object() else {
        return;
    };
    for (k, v) in map {
        let here = format!("{path}/{k}");
        match schema.get("properties").and_then(|p| p.get(k)) {
            Some(sub) => undescribed(v, sub, &here, missing),
            None if schema
                .get("additionalProperties")
                .is_some_and(Value::is_object) => {}
            None if schema.get("properties").is_none() => {}
            None => missing.push(here),
        }
    }
}

/// Applies the repository's CRD for real (the operator tests do the same,
/// as the same field manager) and waits until it is Established, so a
/// StreamingPlatform in a dry run has its kind.
pub fn ensure_crd() {
    let kubectl = tool("kubectl", "KUBECTL");
    run_ok(
        &kubectl,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            "polystream-operator-tests",
            "-f",
            "crds/streamingplatform.yaml",
        ],
        None,
    );
    // A new CRD has no conditions for a moment, and then `kubectl wait` and
    // a jsonpath filter both fail (not "no match"): poll, and treat a
    // failed read as "not yet" (a first run on an empty state dir hits it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = run(
            &kubectl,
            &[
                "get",
                "crd/streamingplatforms.polystream.dev",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
            ],
            None,
        );
        if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "True" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the StreamingPlatform CRD is not Established after 60 s: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn documents_skip_empty_ones_and_keep_order() {
        let docs = documents("# header\n---\n# Source: a\nkind: A\n---\n---\nkind: B\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["kind"], "A");
        assert_eq!(docs[1]["kind"], "B");
    }

    #[test]
    fn open_objects_finds_every_level_that_accepts_unknown_keys() {
        let schema = json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "closed": {"type": "object", "additionalProperties": false,
                           "properties": {"inner": {"type": "object", "properties": {}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "spec": {"type": "object"},
                "list": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
                "n": {"type": "integer"}
            }
        });
        assert_eq!(
            open_objects(&schema, &[]),
            vec!["/closed/inner", "/list/items", "/spec"]
        );
        assert_eq!(
            open_objects(&schema, &["/closed/inner", "/list/items", "/spec"]),
            Vec::<String>::new()
        );
        assert_eq!(open_objects(&json!({"type": "object"}), &[]), vec!["/"]);
    }

    #[test]
    fn undescribed_keys_are_reported_with_their_path() {
        let schema = json!({"properties": {
            "image": {"properties": {"tag": {}}},
            "labels": {"additionalProperties": {"type": "string"}},
            "spec": {"type": "object"}
        }});
        let values = json!({
            "image": {"tag": "x", "digest": "y"},
            "labels": {"a": "b"},
            "spec": {"anything": 1},
            "replica": 2
        });
        assert_eq!(
            undescribed_keys(&values, &schema),
            vec!["/image/digest", "/replica"]
        );
    }
}
