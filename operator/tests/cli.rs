//! The built `polystream-operator` answers `--version`, and its `run --help` lists exactly
//! the variables of docs/configuration.md's "Operator" table, with the same
//! defaults: a variable added to the code without a docs row (or the
//! reverse, or a changed default) fails here, naming the variable.

use polystream_smoke_tests::cli;

const BIN: &str = env!("CARGO_BIN_EXE_polystream-operator");

#[test]
fn version_names_the_binary_and_its_version() {
    cli::assert_version(BIN, "polystream-operator", env!("CARGO_PKG_VERSION"));
}

#[test]
fn help_lists_every_variable_with_the_documented_default() {
    cli::assert_help_matches_docs(BIN, &["run", "--help"], "Operator");
}
