//! The built `polystream-s2-processor` answers `--version`, and its `--help` lists
//! exactly the variables of docs/configuration.md's "S2 processor" table, with
//! the same defaults: a variable added to the code without a docs row (or
//! the reverse, or a changed default) fails here, naming the variable.

#![allow(clippy::expect_used)] // test helpers: a failure is the test's message

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_polystream-s2-processor");
const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");

fn stdout_of(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run the binary");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn version_names_the_binary_and_its_version() {
    let out = stdout_of(&["--version"]);
    assert!(
        out.starts_with(concat!(
            "polystream-s2-processor ",
            env!("CARGO_PKG_VERSION")
        )),
        "{out}"
    );
}

#[test]
fn help_lists_every_variable_with_the_documented_default() {
    let help = stdout_of(&["--help"]);
    let docs = std::fs::read_to_string(DOCS).expect("read docs/configuration.md");
    let problems = polystream_common::cli::help_vs_docs(&help, &docs, "S2 processor");
    assert!(
        problems.is_empty(),
        "--help and docs/configuration.md (\"S2 processor\") disagree:\n  {}\n\n{help}",
        problems.join("\n  ")
    );
}
