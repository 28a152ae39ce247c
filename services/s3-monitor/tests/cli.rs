//! The built `polystream-s3-monitor` answers `--version`, and its `--help` lists exactly
//! the variables of docs/configuration.md's "S3 monitor" table, with the same
//! defaults: a variable added to the code without a docs row (or the
//! reverse, or a changed default) fails here, naming the variable.

use polystream_smoke_tests::cli;

const BIN: &str = env!("CARGO_BIN_EXE_polystream-s3-monitor");

#[test]
fn version_names_the_binary_and_its_version() {
    cli::assert_version(BIN, "polystream-s3-monitor", env!("CARGO_PKG_VERSION"));
}

#[test]
fn help_lists_every_variable_with_the_documented_default() {
    cli::assert_help_matches_docs(BIN, &["--help"], "S3 monitor");
}

#[test]
fn no_password_is_printed_whether_stores_are_unreachable_or_settings_bad() {
    cli::assert_secrets_never_printed(BIN);
}

#[test]
fn the_committed_openapi_document_is_current() {
    let printed = cli::output(BIN, &["--print-openapi"]);
    // Read at run time: checkouts share the target dir.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let committed = std::fs::read_to_string(
        std::path::Path::new(&manifest_dir).join("../../docs/s3-openapi.json"),
    )
    .unwrap_or_default();
    assert!(
        committed == printed,
        "docs/s3-openapi.json is stale; regenerate it with \
         `cargo run -p polystream-s3-monitor -- --print-openapi > docs/s3-openapi.json`"
    );
}
