//! Pure logic behind the observability tests: what a well-formed Polystream
//! dashboard is, turning OpenMetrics into the text format `promtool check
//! metrics` reads, reading a Jaeger trace as a span tree, and finding a log
//! line by trace and correlation id. The tests in `tests/` do the I/O.

pub mod dashboard;
pub mod jaeger;
pub mod logs;
pub mod openmetrics;

use std::path::{Path, PathBuf};

/// The checkout this test runs from. Read at run time: checkouts share the
/// target dir, so a path baked in at compile time may name another checkout.
pub fn repo_root() -> PathBuf {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned());
    Path::new(&manifest).join("../..")
}

/// Where the chart's dashboards live (the one folder the Helm chart ships).
pub fn dashboards_dir() -> PathBuf {
    repo_root().join("charts/polystream/dashboards")
}

/// Where the chart's alert rules live.
pub fn rules_dir() -> PathBuf {
    repo_root().join("charts/polystream/rules")
}

pub use polystream_smoke_tests::metrics_text::promtool;

/// Every `*.json` file of `dir`, sorted, with its contents.
pub fn json_files(dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((name, std::fs::read_to_string(&path)?));
        }
    }
    out.sort();
    Ok(out)
}
