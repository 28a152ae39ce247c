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
