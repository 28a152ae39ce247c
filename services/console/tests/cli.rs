//! The console binary's command line: `--version`, `--help` matching
//! docs/configuration.md, and a refused non-loopback address named.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use polystream_smoke_tests::cli;

const BIN: &str = env!("CARGO_BIN_EXE_polystream-console");

#[test]
fn version_and_help_match_the_docs() {
    cli::assert_version(BIN, "polystream-console", env!("CARGO_PKG_VERSION"));
    cli::assert_help_matches_docs(BIN, &["--help"], "Console");
}

#[test]
fn a_public_address_without_the_opt_in_stops_start_up_naming_it() {
    let (ok, out) = cli::run_for(BIN, &[("HTTP_ADDR", "0.0.0.0:0")], Duration::from_secs(20));
    assert!(!ok, "the console started on 0.0.0.0:\n{out}");
    assert!(
        out.contains("HTTP_ADDR") && out.contains("CONSOLE_ALLOW_REMOTE"),
        "{out}"
    );
}
