//! Finding a series in `/metrics` text (OpenMetrics or the classic format),
//! and `promtool check metrics` on it, for the tests that check what a
//! service exposes.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// What Prometheus sends: OpenMetrics (with exemplars) preferred, the
/// classic text format otherwise.
pub const OPENMETRICS_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

/// The value of the first sample of `name` whose labels include `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let line = line.split(" # ").next()?;
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        if metric != name {
            return None;
        }
        let all = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        all.then(|| value.parse().ok()).flatten()
    })
}

/// The sample lines of `name` that carry an exemplar.
pub fn exemplar_lines<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> {
    text.lines()
        .filter(move |l| l.starts_with(&format!("{name}{{")) && l.contains(" # {"))
}

/// `promtool` from the `PROMTOOL` variable `./dev env` prints, else from
/// `PATH`. A missing promtool is a failure naming it, never a skip.
pub fn promtool() -> PathBuf {
    if let Some(p) = std::env::var_os("PROMTOOL").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "promtool not found at PROMTOOL={}: it comes with Prometheus; \
             install it with `./dev install prometheus` (`./dev env` prints PROMTOOL)",
            p.display()
        );
        return p;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "promtool not found: PROMTOOL is unset and no promtool is on PATH. It comes with \
             Prometheus: `./dev install prometheus`, then `source <(./dev env)` sets PROMTOOL"
        )
    })
}

/// `promtool check metrics` on classic-format text (the only format it
/// parses): Ok with what it said (lint remarks, usually nothing) when it
/// accepted the text, Err with its exit status and output otherwise.
pub fn promtool_check_metrics(text: &str) -> Result<String, String> {
    let promtool = promtool();
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("writing to promtool: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for promtool: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(said.trim().to_owned())
    } else {
        Err(format!("({}) {}", out.status, said.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE x counter\n\
        x_total{a=\"1\",b=\"2\"} 3\n\
        x_total{a=\"9\"} 4\n\
        h_bucket{le=\"0.1\",a=\"1\"} 2 # {trace_id=\"abc\"} 0.05 1.0\n\
        h_bucket{le=\"+Inf\",a=\"1\"} 2\n\
        g 7\n";

    #[test]
    fn a_sample_is_found_by_name_and_labels() {
        assert_eq!(sample(TEXT, "x_total", &[("b", "2")]), Some(3.0));
        assert_eq!(sample(TEXT, "x_total", &[("a", "9")]), Some(4.0));
        assert_eq!(sample(TEXT, "x_total", &[("a", "5")]), None);
        assert_eq!(sample(TEXT, "h_bucket", &[("le", "0.1")]), Some(2.0));
        assert_eq!(sample(TEXT, "g", &[]), Some(7.0));
        assert_eq!(sample(TEXT, "x", &[]), None);
    }

    #[test]
    fn exemplar_lines_are_the_ones_with_an_exemplar() {
        let lines: Vec<&str> = exemplar_lines(TEXT, "h_bucket").collect();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("trace_id=\"abc\""));
    }
}
