//! Reading traces back from Jaeger's query API (`/api/traces`), for the
//! tests that prove what the services export: where Jaeger is (failing,
//! naming it, when it is not there), a test binary's own exporting
//! telemetry, a trace fetched by id until it is complete, and its spans with
//! their parents, links and tags.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use polystream_common::telemetry::{TelemetryConfig, TelemetryGuard, init_with};
use serde_json::Value;

use crate::{env_or, unreachable};

/// Span attributes that may carry the correlation id: our own key, and the
/// OpenTelemetry messaging convention on producer/consumer spans.
pub const CORRELATION_KEY: &str = "polystream.correlation_id";
pub const CONVERSATION_KEY: &str = "messaging.message.conversation_id";

const SERVER: &str = "the OTLP trace receiver (Jaeger)";

/// One span as Jaeger stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// 32 hex digits (Jaeger drops leading zeros; W3C ids have them all).
    pub trace_id: String,
    pub id: String,
    /// The `CHILD_OF` reference.
    pub parent: Option<String>,
    /// The `FOLLOWS_FROM` references (span links).
    pub links: Vec<String>,
    pub operation: String,
    pub service: String,
    /// `server`, `client`, `producer`, `consumer`, `internal` (Jaeger's `span.kind` tag).
    pub kind: String,
    /// Tag values as text (numbers and booleans in their JSON form).
    pub tags: BTreeMap<String, String>,
}

impl Span {
    pub fn describe(&self) -> String {
        format!(
            "{} {} span {:?} ({})",
            self.service, self.kind, self.operation, self.id
        )
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// A store call: it names its database system.
    pub fn is_store_call(&self) -> bool {
        self.tags.contains_key("db.system") || self.tags.contains_key("db.system.name")
    }
}

fn tag_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The spans of every trace in a `/api/traces` or `/api/traces/{id}` answer.
pub fn spans_of(answer: &Value) -> Vec<Span> {
    let mut out = Vec::new();
    for trace in answer["data"].as_array().into_iter().flatten() {
        let processes = &trace["processes"];
        for s in trace["spans"].as_array().into_iter().flatten() {
            let tags: BTreeMap<String, String> = s["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| Some((t["key"].as_str()?.to_owned(), tag_string(&t["value"]))))
                .collect();
            let refs = |kind: &str| -> Vec<String> {
                s["references"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| r["refType"] == kind)
                    .filter_map(|r| r["spanID"].as_str().map(str::to_owned))
                    .collect()
            };
            let pid = s["processID"].as_str().unwrap_or_default();
            out.push(Span {
                trace_id: format!("{:0>32}", s["traceID"].as_str().unwrap_or_default()),
                id: s["spanID"].as_str().unwrap_or_default().to_owned(),
                parent: refs("CHILD_OF").into_iter().next(),
                links: refs("FOLLOWS_FROM"),
                operation: s["operationName"].as_str().unwrap_or_default().to_owned(),
                service: processes[pid]["serviceName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                kind: tags
                    .get("span.kind")
                    .cloned()
                    .unwrap_or_else(|| "internal".into()),
                tags,
            });
        }
    }
    out
}

/// The spans grouped by trace, in the order the traces first appear.
pub fn traces(spans: Vec<Span>) -> Vec<Vec<Span>> {
    let mut out: Vec<Vec<Span>> = Vec::new();
    for s in spans {
        match out.iter_mut().find(|t| t[0].trace_id == s.trace_id) {
            Some(t) => t.push(s),
            None => out.push(vec![s]),
        }
    }
    out
}

/// The span named `operation`; panics listing the trace otherwise.
#[track_caller]
pub fn find<'a>(spans: &'a [Span], operation: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.operation == operation)
        .unwrap_or_else(|| panic!("no span {operation:?} in {spans:#?}"))
}

/// The CONSUMER span `process <topic>` whose parent is the PRODUCER span
/// `send <topic>` (the trace crossed Kafka in `traceparent`), carrying the
/// correlation id `corr` in both correlation attributes; fails the test
/// naming what is wrong otherwise.
#[track_caller]
pub fn consumer_of_send<'a>(spans: &'a [Span], topic: &str, corr: &str) -> &'a Span {
    let send = find(spans, &format!("send {topic}"));
    assert_eq!(send.kind, "producer", "{send:#?}");
    let process = find(spans, &format!("process {topic}"));
    assert_eq!(process.kind, "consumer", "{process:#?}");
    assert_eq!(
        process.parent.as_deref(),
        Some(send.id.as_str()),
        "the consumer span continues the send on {topic}: {spans:#?}"
    );
    for key in [CORRELATION_KEY, CONVERSATION_KEY] {
        assert_eq!(process.tag(key), Some(corr), "{key}: {process:#?}");
    }
    process
}

/// The spans whose parent is `parent`.
pub fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.parent.as_deref() == Some(parent.id.as_str()))
        .collect()
}

/// The trace as an indented tree, for failure messages.
pub fn render_tree(spans: &[Span]) -> String {
    let ids: HashSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    let mut children: HashMap<Option<&str>, Vec<&Span>> = HashMap::new();
    for s in spans {
        let parent = s.parent.as_deref().filter(|p| ids.contains(p));
        children.entry(parent).or_default().push(s);
    }
    fn walk(
        out: &mut String,
        children: &HashMap<Option<&str>, Vec<&Span>>,
        at: Option<&str>,
        depth: usize,
    ) {
        for s in children.get(&at).into_iter().flatten() {
            let corr = s.tags.get(CORRELATION_KEY).map_or("-", String::as_str);
            out.push_str(&format!(
                "{}{} [{CORRELATION_KEY}={corr}]\n",
                "  ".repeat(depth),
                s.describe()
            ));
            walk(out, children, Some(&s.id), depth + 1);
        }
    }
    let mut out = String::new();
    walk(&mut out, &children, None, 0);
    out
}

/// Shuts `telemetry` down (flushing what is queued), failing the test when
/// that takes `within` or longer: a bounded shutdown is part of the promise.
pub async fn shutdown_within(telemetry: TelemetryGuard, within: Duration) {
    let started = Instant::now();
    telemetry.shutdown().await;
    assert!(
        started.elapsed() < within,
        "the telemetry shutdown (flushing spans) took {:?}",
        started.elapsed()
    );
}

/// The local Jaeger: its query API and the OTLP endpoint it receives on
/// (`JAEGER_QUERY_URL`, `OTEL_EXPORTER_OTLP_ENDPOINT` from `./dev env`).
#[derive(Debug, Clone)]
pub struct Jaeger {
    pub query: String,
    pub otlp: String,
    pub http: reqwest::Client,
}

impl Jaeger {
    /// Jaeger once its query API answered; fails the test naming it otherwise.
    pub async fn reachable() -> Self {
        let j = Self {
            query: env_or("JAEGER_QUERY_URL", "http://127.0.0.1:16686"),
            otlp: env_or("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            http: reqwest::Client::new(),
        };
        if let Err(e) = j
            .http
            .get(format!("{}/api/services", j.query))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
        {
            unreachable(SERVER, "jaeger", &j.query, e);
        }
        j
    }

    /// This test binary's telemetry, exporting to Jaeger as `service`, logs
    /// through libtest's capture. Once per binary: the subscriber and tracer
    /// provider are process-wide.
    pub fn export(&self, service: &str) -> TelemetryGuard {
        let mut config = TelemetryConfig::local(service);
        config.endpoint = Some(self.otlp.clone());
        config.test_writer = true;
        init_with(config).unwrap_or_else(|e| panic!("telemetry exporting to {}: {e}", self.otlp))
    }

    /// One answer of `/api/traces` searched with `params` (service, tags,
    /// lookback, limit, ...); fails the test naming Jaeger when it is gone.
    pub async fn search(&self, params: &[(&str, &str)]) -> Value {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/traces", self.query), params)
            .unwrap_or_else(|e| panic!("JAEGER_QUERY_URL {}: {e}", self.query));
        match self.http.get(url).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(e) => unreachable(SERVER, "jaeger", &self.query, e),
        }
    }

    /// The spans Jaeger holds of trace `trace_id` now (none when it does not
    /// know the trace yet).
    pub async fn spans(&self, trace_id: &str) -> Result<Vec<Span>, String> {
        let res = self
            .http
            .get(format!("{}/api/traces/{trace_id}", self.query))
            .send()
            .await
            .map_err(|e| format!("{SERVER} at {}: {e}", self.query))?;
        if !res.status().is_success() {
            return Ok(Vec::new());
        }
        Ok(spans_of(&res.json().await.unwrap_or(Value::Null)))
    }

    /// Trace `trace_id` once `complete` says it is (spans arrive in batches),
    /// polling for `within`; Err names what was there last.
    pub async fn wait_trace(
        &self,
        trace_id: &str,
        complete: impl Fn(&[Span]) -> bool,
        within: Duration,
    ) -> Result<Vec<Span>, String> {
        let deadline = Instant::now() + within;
        loop {
            let last = match self.spans(trace_id).await {
                Ok(spans) if complete(&spans) => return Ok(spans),
                Ok(spans) => format!("{spans:#?}"),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "trace {trace_id} incomplete in Jaeger after {within:?} ({}/api/traces/{trace_id}): {last}",
                    self.query
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// [`Self::wait_trace`], failing the test when it does not complete.
    pub async fn trace(
        &self,
        trace_id: &str,
        complete: impl Fn(&[Span]) -> bool,
        within: Duration,
    ) -> Vec<Span> {
        self.wait_trace(trace_id, complete, within)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The first trace of a search with `params` that `wanted` accepts,
    /// polling for `within`; fails the test otherwise.
    pub async fn find_trace(
        &self,
        params: &[(&str, &str)],
        wanted: impl Fn(&[Span]) -> bool,
        within: Duration,
    ) -> Vec<Span> {
        let deadline = Instant::now() + within;
        loop {
            let answer = self.search(params).await;
            if let Some(t) = traces(spans_of(&answer)).into_iter().find(|t| wanted(t)) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "no trace searched with {params:?} satisfied the test in Jaeger within {within:?}: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn spans_are_read_with_parents_links_tags_and_services() {
        let answer = json!({"data": [
            {"traceID": "abc", "processes": {"p1": {"serviceName": "s1"}}, "spans": [
                {"traceID": "abc", "spanID": "a", "operationName": "root", "processID": "p1",
                 "references": [], "tags": [{"key": "n", "type": "int64", "value": 202}]},
                {"traceID": "abc", "spanID": "b", "operationName": "child", "processID": "p1",
                 "references": [{"refType": "CHILD_OF", "spanID": "a"}, {"refType": "FOLLOWS_FROM", "spanID": "z"}],
                 "tags": [{"key": "span.kind", "type": "string", "value": "producer"}]}
            ]},
            {"traceID": "def", "processes": {}, "spans": [
                {"traceID": "def", "spanID": "c", "operationName": "other", "processID": "p9"}
            ]}
        ]});
        let spans = spans_of(&answer);
        assert_eq!(spans.len(), 3);
        let root = find(&spans, "root");
        assert_eq!(root.trace_id, format!("{:0>32}", "abc"));
        assert_eq!(root.tag("n"), Some("202"));
        assert_eq!(
            (root.kind.as_str(), root.service.as_str()),
            ("internal", "s1")
        );
        let child = find(&spans, "child");
        assert_eq!(child.parent.as_deref(), Some("a"));
        assert_eq!(child.links, ["z"]);
        assert_eq!(child.kind, "producer");
        assert_eq!(children(&spans, root), [child]);
        let grouped = traces(spans.clone());
        assert_eq!(grouped.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
        assert!(render_tree(&spans).contains("  s1 producer span \"child\" (b)"));
    }
}
