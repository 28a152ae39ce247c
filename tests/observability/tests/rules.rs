//! The chart's alert rules: promtool accepts them, their unit tests
//! (`charts/polystream/rules/tests/*.yml`) pass, and every alert says how
//! bad it is and what to do.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::process::Command;

use polystream_observability_tests::{promtool, rules_dir};
use serde_json::Value;

fn yml_in(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no rule files in {}", dir.display());
    out
}

fn promtool_ok(args: &[&str], files: &[PathBuf]) {
    let out = Command::new(promtool())
        .args(args)
        .args(files)
        .current_dir(rules_dir())
        .output()
        .expect("running promtool");
    assert!(
        out.status.success(),
        "promtool {} {files:?} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_rules() {
    promtool_ok(&["check", "rules"], &yml_in(&rules_dir()));
}

#[test]
fn the_rules_unit_tests_pass() {
    promtool_ok(&["test", "rules"], &yml_in(&rules_dir().join("tests")));
}

#[test]
fn every_alert_has_a_severity_a_summary_a_description_and_a_test() {
    let tests: String = yml_in(&rules_dir().join("tests"))
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let mut alerts = Vec::new();
    for file in yml_in(&rules_dir()) {
        let text = std::fs::read_to_string(&file).unwrap();
        let doc: Value = serde_saphyr::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
        for group in doc["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                let Some(name) = rule["alert"].as_str() else {
                    continue;
                };
                alerts.push(name.to_owned());
                let severity = rule["labels"]["severity"].as_str();
                assert!(
                    matches!(severity, Some("critical" | "warning" | "info")),
                    "{name}: severity label is {severity:?}"
                );
                for a in ["summary", "description"] {
                    assert!(
                        rule["annotations"][a]
                            .as_str()
                            .is_some_and(|s| !s.trim().is_empty()),
                        "{name}: no {a} annotation"
                    );
                }
                assert!(
                    tests.contains(&format!("alertname: {name}\n")),
                    "{name} has no promtool unit test in {}",
                    rules_dir().join("tests").display()
                );
            }
        }
    }
    for expected in [
        "PolystreamConsumerLagGrowing",
        "PolystreamDeadLetters",
        "PolystreamGatewayErrorRatioHigh",
        "PolystreamAuditSpoolNotEmpty",
        "PolystreamPlatformDegraded",
        "PolystreamCommandsUnanswered",
    ] {
        assert!(
            alerts.iter().any(|a| a == expected),
            "no alert {expected}: {alerts:?}"
        );
    }
}
