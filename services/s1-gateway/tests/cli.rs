//! The built `polystream-s1-gateway` answers `--version`, and its `--help` lists exactly
//! the variables of docs/configuration.md's "S1 gateway" table, with the same
//! defaults: a variable added to the code without a docs row (or the
//! reverse, or a changed default) fails here, naming the variable.

use polystream_smoke_tests::cli;

const BIN: &str = env!("CARGO_BIN_EXE_polystream-s1-gateway");

#[test]
fn version_names_the_binary_and_its_version() {
    cli::assert_version(BIN, "polystream-s1-gateway", env!("CARGO_PKG_VERSION"));
}

#[test]
fn help_lists_every_variable_with_the_documented_default() {
    cli::assert_help_matches_docs(BIN, &["--help"], "S1 gateway");
}

#[test]
fn print_openapi_still_prints_the_document() {
    let out = cli::output(BIN, &["--print-openapi"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    assert!(doc["openapi"].is_string(), "{out:.200}");
}

#[test]
fn a_start_up_error_never_prints_a_store_password() {
    // Nothing listens on port 1: start-up fails at once, naming the store.
    let out = std::process::Command::new(BIN)
        .env(
            "DATABASE_URL",
            "postgres://polystream:topsecret@127.0.0.1:1/polystream",
        )
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("PostgreSQL is not reachable"), "{text}");
    assert!(text.contains("polystream:***@127.0.0.1:1"), "{text}");
    assert!(!text.contains("topsecret"), "{text}");
}

#[test]
fn no_password_is_printed_whether_stores_are_unreachable_or_settings_bad() {
    cli::assert_secrets_never_printed(BIN);
}
