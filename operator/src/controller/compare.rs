//! "Does the live object already hold what we would apply?" — desired ⊆ live
//! on JSON, tolerant of what the API server does to an object it stores.
//!
//! The controller applies a child only when this says no, so a steady state
//! issues no write at all. The tolerances are the API server's own
//! normalisations; missing one would make every reconcile write:
//! - defaults it adds (live has more fields than desired: fine by construction);
//! - empty values it drops (`omitempty`): a desired `""`, `0`, `false`, `[]`,
//!   `{}` or `null` matches a missing field;
//! - quantities it canonicalises (`1000m` is stored as `1`), under `limits`
//!   and `requests`;
//! - list-map entries another manager added (an extra env var or container):
//!   each desired entry must be present, extra ones are not ours to judge.

use serde_json::Value;

/// True when every field of `desired` is in `live` with an equal value.
pub fn contains(desired: &Value, live: &Value) -> bool {
    contains_in(desired, Some(live), false)
}

fn contains_in(desired: &Value, live: Option<&Value>, quantities: bool) -> bool {
    let live = match live {
        None | Some(Value::Null) => return matches_missing(desired),
        Some(live) => live,
    };
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(key, dv)| {
            let quantities = quantities || matches!(key.as_str(), "limits" | "requests");
            contains_in(dv, l.get(key), quantities)
        }),
        (Value::Object(d), _) => d.is_empty(),
        (Value::Array(d), Value::Array(l)) => {
            if d.len() == l.len() {
                d.iter()
                    .zip(l)
                    .all(|(dv, lv)| contains_in(dv, Some(lv), quantities))
            } else if d.iter().all(Value::is_object) {
                // A list-map with entries from someone else: ours must all be there.
                d.iter()
                    .all(|dv| l.iter().any(|lv| contains_in(dv, Some(lv), quantities)))
            } else {
                false
            }
        }
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
        (Value::String(d), Value::String(l)) => d == l || (quantities && same_quantity(d, l)),
        // A quantity may be written as a number and stored as a string, or back.
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n))
            if quantities =>
        {
            same_quantity(&n.to_string(), s)
        }
        (d, l) => d == l,
    }
}

/// Whether a desired value is satisfied by an absent field.
fn matches_missing(desired: &Value) -> bool {
    match desired {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        // `{a: ""}` against nothing: the server dropped the empty inner value, then the object.
        Value::Object(o) => o.values().all(matches_missing),
    }
}

fn same_quantity(a: &str, b: &str) -> bool {
    match (parse_quantity(a), parse_quantity(b)) {
        (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()).max(1.0) * 4.0,
        _ => false,
    }
}

/// A Kubernetes quantity (`100m`, `1.5Gi`, `2e3`) as a number; `None` when malformed.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '+' || c == '-'))))
        .map_or(s.len(), |(i, _)| i);
    let (number, suffix) = s.split_at(end);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp => {
            let digits = exp.strip_prefix('e').or_else(|| exp.strip_prefix('E'))?;
            10f64.powi(digits.parse().ok()?)
        }
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn server_defaults_are_extra_fields() {
        let desired = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "s1"}]}}}});
        let live = json!({"spec": {"replicas": 2, "revisionHistoryLimit": 10,
            "template": {"spec": {"containers": [{"name": "s1", "terminationMessagePath": "/dev/termination-log"}],
            "dnsPolicy": "ClusterFirst"}}}, "status": {"replicas": 2}});
        assert!(contains(&desired, &live));
    }

    #[test]
    fn a_changed_or_missing_field_is_not_contained() {
        let desired = json!({"spec": {"replicas": 2, "selector": {"app": "x"}}});
        assert!(!contains(
            &desired,
            &json!({"spec": {"replicas": 3, "selector": {"app": "x"}}})
        ));
        assert!(!contains(&desired, &json!({"spec": {"replicas": 2}})));
        assert!(!contains(&desired, &json!({})));
        assert!(!contains(
            &json!({"data": {"K": "v"}}),
            &json!({"data": {"K": "w"}})
        ));
    }

    #[test]
    fn empty_values_match_what_the_server_omitted() {
        let desired = json!({"env": [{"name": "OPENSEARCH_URL", "value": ""}], "nodeSelector": {},
            "tolerations": [], "hostNetwork": false, "x": null, "securityContext": {"runAsGroup": 0}});
        let live = json!({"env": [{"name": "OPENSEARCH_URL"}]});
        assert!(contains(&desired, &live));
        assert!(!contains(&json!({"automount": true}), &json!({})));
    }

    #[test]
    fn quantities_compare_by_value_under_limits_and_requests() {
        let desired = json!({"resources": {"limits": {"cpu": "1000m", "memory": "256Mi"},
            "requests": {"cpu": "0.5", "memory": 1_073_741_824_i64}}});
        let live = json!({"resources": {"limits": {"cpu": "1", "memory": "256Mi"},
            "requests": {"cpu": "500m", "memory": "1Gi"}}});
        assert!(contains(&desired, &live));
        let bigger = json!({"resources": {"limits": {"cpu": "2", "memory": "256Mi"},
            "requests": {"cpu": "500m", "memory": "1Gi"}}});
        assert!(!contains(&desired, &bigger));
        // Elsewhere a string is a string.
        assert!(!contains(
            &json!({"value": "1000m"}),
            &json!({"value": "1"})
        ));
    }

    #[test]
    fn list_maps_tolerate_entries_added_by_others_but_not_missing_ones() {
        let desired = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]});
        let extra = json!({"env": [{"name": "A", "value": "1"}, {"name": "X", "value": "9"}, {"name": "B", "value": "2"}]});
        assert!(contains(&desired, &extra));
        let changed = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]});
        assert!(!contains(&desired, &changed));
        let missing = json!({"env": [{"name": "A", "value": "1"}]});
        assert!(!contains(&desired, &missing));
        // Atomic lists of scalars must match exactly.
        assert!(!contains(
            &json!({"command": ["s1"]}),
            &json!({"command": ["s1", "--evil"]})
        ));
        assert!(contains(
            &json!({"command": ["s1"]}),
            &json!({"command": ["s1"]})
        ));
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(contains(&json!({"ratio": 1}), &json!({"ratio": 1.0})));
        assert!(!contains(&json!({"port": 8080}), &json!({"port": "8080"})));
    }

    #[test]
    fn quantity_parsing() {
        assert_eq!(parse_quantity("100m"), Some(0.1));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(
            parse_quantity("1.5Gi"),
            Some(1.5 * 1024.0 * 1024.0 * 1024.0)
        );
        assert_eq!(parse_quantity("128Mi"), Some(128.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("1k"), Some(1000.0));
        assert_eq!(parse_quantity("2e3"), Some(2000.0));
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(parse_quantity("1Zi"), None);
    }
}
