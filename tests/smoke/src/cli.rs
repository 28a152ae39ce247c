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

/// The password every store URL carries in [`assert_secrets_never_printed`].
const SECRET: &str = "S3CRET";

/// Runs `bin` with `env` until it exits or `max` has passed (then kills it);
/// whether it exited successfully, and everything it printed.
pub fn run_for(bin: &str, env: &[(&str, &str)], max: std::time::Duration) -> (bool, String) {
    let mut cmd = Command::new(bin);
    cmd.envs(env.iter().copied())
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    let deadline = std::time::Instant::now() + max;
    let success = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.success(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            _ => {
                let _ = child.kill();
                break false;
            }
        }
    };
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot read {bin}'s output: {e}"));
    (
        success,
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Starts `bin` with every store URL carrying a password, first with the
/// stores unreachable, then with malformed URLs and bad settings: it never
/// starts, and the password appears in nothing it prints.
pub fn assert_secrets_never_printed(bin: &str) {
    let unreachable = [
        (
            "DATABASE_URL",
            format!("postgres://u:{SECRET}@127.0.0.1:1/p"),
        ),
        ("REDIS_URL", format!("redis://u:{SECRET}@127.0.0.1:1")),
        ("MONGODB_URI", format!("mongodb://u:{SECRET}@127.0.0.1:1/")),
        ("OPENSEARCH_URL", format!("http://u:{SECRET}@127.0.0.1:1")),
        ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1".into()),
        ("KAFKA_SASL_USERNAME", "u".into()),
        ("KAFKA_SASL_PASSWORD", format!("{SECRET}-kafka")),
        ("HTTP_ADDR", "127.0.0.1:0".into()),
        ("ADMIN_EMAIL", "admin@example.com".into()),
        ("ADMIN_PASSWORD", format!("{SECRET}-admin")),
        ("RUST_LOG", "debug".into()),
    ];
    let bad = [
        (
            "DATABASE_URL",
            format!("postgresx://u:{SECRET}@127.0.0.1:1/p"),
        ),
        ("REDIS_URL", format!("u:{SECRET}@127.0.0.1:1")),
        ("MONGODB_URI", format!("mongo://u:{SECRET}@127.0.0.1:1/")),
        ("OPENSEARCH_URL", format!("ftp://u:{SECRET}@127.0.0.1:1")),
        ("HTTP_MAX_CONNECTIONS", "0".into()),
        ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL".into()),
        ("KAFKA_SASL_MECHANISM", "GSSAPI".into()),
        ("KAFKA_SASL_PASSWORD", SECRET.to_owned()),
        ("ADMIN_EMAIL", "admin@example.com".into()),
        ("ADMIN_PASSWORD", SECRET.to_owned()),
    ];
    for (case, env) in [
        ("stores unreachable", &unreachable[..]),
        ("bad settings", &bad[..]),
    ] {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (started, out) = run_for(bin, &env, std::time::Duration::from_secs(20));
        assert!(!started, "{bin} ({case}) exited successfully:\n{out}");
        assert!(!out.trim().is_empty(), "{bin} ({case}) printed nothing");
        assert!(
            !out.contains(SECRET),
            "{bin} ({case}) printed a password:\n{out}"
        );
    }
}
