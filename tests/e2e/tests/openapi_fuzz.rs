//! schemathesis (PyPI) against the OpenAPI documents S1 and S3 serve: every
//! operation, generated and boundary inputs and stateful sequences, anonymous
//! and as the admin. No answer may be a 5xx, and every answer must match its
//! documented status, content type, headers and schema.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::path::Path;

use polystream_chart_tests::tool;
use support::Platform;

/// The checks the issue asks for; "schema-valid input accepted" is not among
/// them: the services validate more than a JSON Schema can say (CPF check
/// digits, control characters), and such a request answers a documented 400.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_schema_conformance,response_headers_conformance";

/// Runs schemathesis against `base`'s `/openapi.json`; panics with its report
/// when it finds a failure.
async fn schemathesis(st: &Path, base: &str, extra: &[&str]) {
    let out = tokio::process::Command::new(st)
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--checks", CHECKS])
        // Fixed, so a failure here reproduces with the command it prints.
        .args([
            "--seed",
            "20261204",
            "--max-examples",
            "30",
            "--workers",
            "2",
        ])
        .args(["--request-timeout", "30", "--no-color"])
        .args(extra)
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", st.display()));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures against {base} ({extra:?}):\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("Test cases:"),
        "schemathesis printed no summary:\n{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s1_and_s3_answer_as_their_openapi_documents_say() {
    let st = tool("schemathesis", "SCHEMATHESIS");
    // Budgets large enough that schemathesis reaches the handlers; 429 itself
    // is documented and checked all the same.
    let raised = ["READS", "WRITES", "STATUS", "LOGIN", "REGISTRATION"]
        .map(|class| (format!("RATE_LIMIT_{class}"), "100000/min".to_owned()));
    let raised: Vec<(&str, String)> = raised
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let p = Platform::start_with(&raised).await;
    let admin = p.login(&p.admin.0, &p.admin.1).await;

    schemathesis(&st, &p.api, &[]).await;
    // Logging out would end the token the rest of the run uses.
    let bearer = format!("Authorization: Bearer {admin}");
    schemathesis(
        &st,
        &p.api,
        &[
            "-H",
            &bearer,
            "--exclude-name",
            "DELETE /v1/sessions/current",
        ],
    )
    .await;
    schemathesis(&st, &p.audit, &[]).await;
    p.stop().await;
}
