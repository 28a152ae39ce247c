//! The binaries' command line as a user meets it: `--version` names the
//! binary and its version, and `--help` lists exactly the variables of the
//! binary's table in docs/configuration.md with the same defaults.

use std::path::PathBuf;
use std::process::Command;

fn stdout_of(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    assert!(out.status.success(), "{bin} {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{bin} {args:?}: not UTF-8: {e}"))
}

/// docs/configuration.md of this checkout, found at run time (the cargo
/// target dir is shared between checkouts, so no compile-time path).
fn configuration_docs() -> String {
    let mut dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    loop {
        let candidate = dir.join("docs/configuration.md");
        if candidate.is_file() {
            return std::fs::read_to_string(&candidate)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", candidate.display()));
        }
        assert!(
            dir.pop(),
            "no docs/configuration.md above CARGO_MANIFEST_DIR"
        );
    }
}

/// `bin --version` starts with `name version`.
pub fn assert_version(bin: &str, name: &str, version: &str) {
    let out = stdout_of(bin, &["--version"]);
    assert!(out.starts_with(&format!("{name} {version}")), "{out}");
}

/// `bin help_args...` lists the variables of the `section` table, with its defaults.
pub fn assert_help_matches_docs(bin: &str, help_args: &[&str], section: &str) {
    let help = stdout_of(bin, help_args);
    let problems = polystream_common::cli::help_vs_docs(&help, &configuration_docs(), section);
    assert!(
        problems.is_empty(),
        "--help and docs/configuration.md (\"{section}\") disagree:\n  {}\n\n{help}",
        problems.join("\n  ")
    );
}

/// `bin args...`'s standard output, for binary-specific checks.
pub fn output(bin: &str, args: &[&str]) -> String {
    stdout_of(bin, args)
}
