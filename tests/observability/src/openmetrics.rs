//! The services serve OpenMetrics (only it carries exemplars), while
//! `promtool check metrics` parses only the classic Prometheus text format.
//! `to_classic_text` rewrites the few OpenMetrics-only constructs so promtool
//! can lint what the services expose; everything it lints (names, help,
//! types, units in names, label names) is passed through unchanged.

use std::collections::HashMap;

/// The family of metric `name` declared by `# TYPE` lines: type by family name.
fn family_types(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let mut it = rest.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.to_owned()))
        })
        .collect()
}

/// The name a family has in the classic format: OpenMetrics names a counter
/// family without `_total` (its samples carry it) and an info family
/// without `_info`; the classic format names families by their samples.
fn classic_family_name(name: &str, kind: &str) -> String {
    match kind {
        "counter" => format!("{name}_total"),
        "info" => format!("{name}_info"),
        _ => name.to_owned(),
    }
}

fn classic_type(kind: &str) -> &str {
    match kind {
        "info" | "stateset" => "gauge",
        "gaugehistogram" => "histogram",
        "unknown" => "untyped",
        other => other,
    }
}

/// A sample line without its exemplar (` # {labels} value [timestamp]`),
/// found outside label-value quotes.
fn strip_exemplar(line: &str) -> &str {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == '#' && line[..i].ends_with(' ') {
            return line[..i].trim_end();
        }
    }
    line
}

/// The metric name of a sample line.
fn sample_name(line: &str) -> &str {
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    &line[..end]
}

/// OpenMetrics text as the classic text format promtool reads: no `# EOF`,
/// `# UNIT` or exemplars, counter/info families named like their samples,
/// OpenMetrics-only types mapped to classic ones, `_created` samples dropped.
pub fn to_classic_text(openmetrics: &str) -> String {
    let types = family_types(openmetrics);
    let created: std::collections::HashSet<String> = types
        .iter()
        .filter(|(_, k)| matches!(k.as_str(), "counter" | "histogram" | "summary"))
        .map(|(n, _)| format!("{n}_created"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (name, kind) = (it.next().unwrap_or_default(), it.next().unwrap_or_default());
            out.push_str(&format!(
                "# TYPE {} {}\n",
                classic_family_name(name, kind),
                classic_type(kind)
            ));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = types.get(name).map(String::as_str).unwrap_or_default();
            out.push_str(&format!(
                "# HELP {} {help}\n",
                classic_family_name(name, kind)
            ));
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if created.contains(sample_name(line)) {
            continue;
        }
        out.push_str(strip_exemplar(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn rewrites_openmetrics_only_constructs() {
        let om = "\
# HELP events Events seen.
# TYPE events counter
events_total{kind=\"a # b\"} 3
events_created{kind=\"a # b\"} 1700000000.0
# HELP latency_seconds Latency.
# TYPE latency_seconds histogram
# UNIT latency_seconds seconds
latency_seconds_sum 0.5
latency_seconds_count 2
latency_seconds_bucket{le=\"0.1\"} 1 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 0.05 1700000000.001
latency_seconds_bucket{le=\"+Inf\"} 2
# HELP build Build.
# TYPE build info
build_info{version=\"1\"} 1
# EOF
";
        let classic = to_classic_text(om);
        assert_eq!(
            classic,
            "\
# HELP events_total Events seen.
# TYPE events_total counter
events_total{kind=\"a # b\"} 3
# HELP latency_seconds Latency.
# TYPE latency_seconds histogram
latency_seconds_sum 0.5
latency_seconds_count 2
latency_seconds_bucket{le=\"0.1\"} 1
latency_seconds_bucket{le=\"+Inf\"} 2
# HELP build_info Build.
# TYPE build_info gauge
build_info{version=\"1\"} 1
"
        );
    }
}
