//! Finding a structured (JSON) log line by the ids it carries, wherever the
//! logger nests them (top level, `fields`, `span`, `spans[]`).

use serde_json::Value;

/// True when `v` holds `key` with string value `want` at any depth.
fn holds(v: &Value, key: &str, want: &str) -> bool {
    match v {
        Value::Object(map) => map
            .iter()
            .any(|(k, val)| (k == key && val.as_str() == Some(want)) || holds(val, key, want)),
        Value::Array(items) => items.iter().any(|i| holds(i, key, want)),
        _ => false,
    }
}

/// The first JSON log line of `log` carrying both `trace_id` and
/// `correlation_id` with the given values.
pub fn line_with<'a>(log: &'a str, trace_id: &str, correlation_id: &str) -> Option<&'a str> {
    log.lines().find(|line| {
        line.contains(trace_id)
            && line.contains(correlation_id)
            && serde_json::from_str::<Value>(line).is_ok_and(|v| {
                holds(&v, "trace_id", trace_id) && holds(&v, "correlation_id", correlation_id)
            })
    })
}

/// The `trace_id` of the first JSON log line carrying `correlation_id`.
pub fn trace_id_of(log: &str, correlation_id: &str) -> Option<String> {
    log.lines()
        .filter(|l| l.contains(correlation_id))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| holds(v, "correlation_id", correlation_id) && v["trace_id"].is_string())
        .and_then(|v| v["trace_id"].as_str().map(str::to_owned))
}

/// How many lines of `log` are JSON objects (for a failure message that
/// tells "no such line" from "not JSON logs at all").
pub fn json_lines(log: &str) -> usize {
    log.lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object()))
        .count()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn finds_ids_at_any_depth_and_only_together() {
        let log = "\
not json at all 4bf9 c-1
{\"fields\":{\"message\":\"accepted\",\"correlation_id\":\"c-1\"},\"span\":{\"trace_id\":\"other\"}}
{\"fields\":{\"message\":\"processed\"},\"spans\":[{\"correlation_id\":\"c-1\"}],\"trace_id\":\"4bf9\"}
";
        assert_eq!(line_with(log, "4bf9", "c-1"), log.lines().nth(2));
        assert_eq!(line_with(log, "4bf9", "c-2"), None);
        assert_eq!(json_lines(log), 2);
        assert_eq!(trace_id_of(log, "c-1").as_deref(), Some("4bf9"));
        assert_eq!(trace_id_of(log, "c-2"), None);
    }
}
