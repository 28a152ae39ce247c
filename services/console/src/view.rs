//! What the page shows, computed from what the sources answered (pure): flows
//! paired from audit events, readiness from `/ready` bodies, chart series
//! from Prometheus matrices, legends from Grafana's `legendFormat`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

/// One component's readiness, with the reason when it is not ready.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Readiness {
    pub name: String,
    pub address: String,
    pub ready: bool,
    pub reason: Option<String>,
}

/// A readiness from an HTTP answer: 2xx is ready; otherwise the failed checks
/// the body names (`{"checks":[{"name","ok","reason"}]}`), else the status.
pub fn readiness(name: &str, address: &str, status: u16, body: &str) -> Readiness {
    let ready = (200..300).contains(&status);
    let reason = (!ready).then(|| {
        let failed: Vec<String> = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v["checks"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|c| c["ok"] == false)
            .map(|c| {
                let name = c["name"].as_str().unwrap_or("check");
                match c["reason"].as_str().or(c["error"].as_str()) {
                    Some(r) => format!("{name}: {r}"),
                    None => format!("{name} not ready"),
                }
            })
            .collect();
        if failed.is_empty() {
            format!("answered HTTP {status}")
        } else {
            failed.join("; ")
        }
    });
    Readiness {
        name: name.to_owned(),
        address: address.to_owned(),
        ready,
        reason,
    }
}

/// A component that could not be reached at all.
pub fn unreachable(name: &str, address: &str, error: &str) -> Readiness {
    Readiness {
        name: name.to_owned(),
        address: address.to_owned(),
        ready: false,
        reason: Some(format!("unreachable: {error}")),
    }
}

/// One command and, once it arrived, its outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flow {
    pub correlation_id: String,
    pub command_type: String,
    pub sent_at: DateTime<Utc>,
    /// `pending` until an outcome arrives, then `completed`, `failed` or
    /// `dead_lettered`.
    pub status: String,
    pub latency_ms: Option<i64>,
    pub code: Option<String>,
    pub reason: Option<String>,
}

/// Pairs commands with outcomes among audit documents (S3's search answer,
/// any order), newest command first, at most `limit`.
pub fn flows(events: &[Value], limit: usize) -> Vec<Flow> {
    let mut outcomes: BTreeMap<&str, &Value> = BTreeMap::new();
    for e in events.iter().filter(|e| e["role"] == "outcome") {
        if let Some(c) = e["correlation_id"].as_str() {
            outcomes.insert(c, e);
        }
    }
    let mut out: Vec<Flow> = events
        .iter()
        .filter(|e| e["role"] == "command")
        .filter_map(|e| {
            let correlation_id = e["correlation_id"].as_str()?;
            let sent_at = time(&e["time"])?;
            let outcome = outcomes.get(correlation_id);
            let field =
                |name: &str| outcome.and_then(|o| o["outcome"][name].as_str().map(str::to_owned));
            Some(Flow {
                correlation_id: correlation_id.to_owned(),
                command_type: e["type"].as_str().unwrap_or("unknown").to_owned(),
                sent_at,
                status: field("status").unwrap_or_else(|| "pending".to_owned()),
                latency_ms: outcome
                    .and_then(|o| time(&o["time"]))
                    .map(|t| (t - sent_at).num_milliseconds().max(0)),
                code: field("code"),
                reason: field("reason"),
            })
        })
        .collect();
    out.sort_by_key(|f| std::cmp::Reverse(f.sent_at));
    out.truncate(limit);
    out
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub name: String,
    /// (unix seconds, value); NaN and infinities are left out.
    pub points: Vec<(f64, f64)>,
}

/// The series of a Prometheus `query_range` answer, named by `legend`
/// (`{{label}}` replaced by the label's value) or, without one, by the
/// labels themselves.
pub fn series(answer: &Value, legend: &str) -> Vec<Series> {
    answer["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| Series {
            name: legend_of(&r["metric"], legend),
            points: r["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let t = p[0].as_f64()?;
                    let v: f64 = p[1].as_str()?.parse().ok()?;
                    v.is_finite().then_some((t, v))
                })
                .collect(),
        })
        .collect()
}

fn legend_of(metric: &Value, legend: &str) -> String {
    let labels = metric.as_object();
    if legend.is_empty() {
        let mut parts: Vec<String> = labels
            .into_iter()
            .flatten()
            .filter(|(k, _)| !k.starts_with("__"))
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        parts.sort();
        return if parts.is_empty() {
            "value".to_owned()
        } else {
            parts.join(", ")
        };
    }
    let mut out = legend.to_owned();
    for (k, v) in labels.into_iter().flatten() {
        out = out.replace(&format!("{{{{{k}}}}}"), v.as_str().unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn a_ready_answer_is_ready_and_a_failing_one_names_its_checks() {
        let ok = readiness("s1", "http://a", 200, "{}");
        assert!(ok.ready && ok.reason.is_none());
        let body = r#"{"ready":false,"checks":[{"name":"kafka","ok":false,"reason":"no broker"},{"name":"redis","ok":true}]}"#;
        let bad = readiness("s1", "http://a", 503, body);
        assert_eq!(bad.reason.as_deref(), Some("kafka: no broker"));
        let plain = readiness("s2", "http://b", 500, "oops");
        assert_eq!(plain.reason.as_deref(), Some("answered HTTP 500"));
    }

    #[test]
    fn commands_pair_with_their_outcomes_newest_first() {
        let events = [
            json!({"role": "command", "type": "a.v1", "correlation_id": "c1", "time": "2026-12-04T10:00:00Z"}),
            json!({"role": "outcome", "correlation_id": "c1", "time": "2026-12-04T10:00:00.250Z",
                   "outcome": {"status": "failed", "code": "not_found", "reason": "user 9"}}),
            json!({"role": "command", "type": "b.v1", "correlation_id": "c2", "time": "2026-12-04T10:00:01Z"}),
            json!({"role": "dead_letter", "correlation_id": "c3", "time": "2026-12-04T10:00:02Z"}),
        ];
        let f = flows(&events, 10);
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].correlation_id.as_str(), f[0].status.as_str()),
            ("c2", "pending")
        );
        assert_eq!(f[0].latency_ms, None);
        assert_eq!(f[1].status, "failed");
        assert_eq!(f[1].latency_ms, Some(250));
        assert_eq!(f[1].code.as_deref(), Some("not_found"));
        assert_eq!(flows(&events, 1).len(), 1);
    }

    #[test]
    fn series_are_named_by_the_legend_and_skip_non_numbers() {
        let answer = json!({"data": {"result": [
            {"metric": {"job": "s1", "instance": "x"}, "values": [[1.0, "2.5"], [2.0, "NaN"], [3.0, "4"]]},
            {"metric": {}, "values": [[1.0, "1"]]}
        ]}});
        let s = series(&answer, "{{job}} rate");
        assert_eq!(s[0].name, "s1 rate");
        assert_eq!(s[0].points, [(1.0, 2.5), (3.0, 4.0)]);
        let s = series(&answer, "");
        assert_eq!(s[0].name, "instance=x, job=s1");
        assert_eq!(s[1].name, "value");
    }
}
