//! The built `polystream-s2-processor` answers `--version`, and its `--help` lists exactly
//! the variables of docs/configuration.md's "S2 processor" table, with the same
//! defaults: a variable added to the code without a docs row (or the
//! reverse, or a changed default) fails here, naming the variable.

use polystream_smoke_tests::cli;

const BIN: &str = env!("CARGO_BIN_EXE_polystream-s2-processor");

#[test]
fn version_names_the_binary_and_its_version() {
    cli::assert_version(BIN, "polystream-s2-processor", env!("CARGO_PKG_VERSION"));
}

#[test]
fn help_lists_every_variable_with_the_documented_default() {
    cli::assert_help_matches_docs(BIN, &["--help"], "S2 processor");
}

#[test]
fn no_password_is_printed_whether_stores_are_unreachable_or_settings_bad() {
    cli::assert_secrets_never_printed(BIN);
}
