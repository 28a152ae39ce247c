//! `/metrics`: the catalogue's S1 series, trace-id exemplars, and a scrape
//! `promtool check metrics` accepts.

use polystream_smoke_tests::metrics_text::promtool_check_metrics;
use reqwest::header::ACCEPT;
use serde_json::json;

use crate::harness::{start, unique};

/// The line of `body` that starts with `prefix` and contains every `parts`.
fn line<'a>(body: &'a str, prefix: &str, parts: &[&str]) -> Option<&'a str> {
    body.lines()
        .find(|l| l.starts_with(prefix) && parts.iter().all(|p| l.contains(p)))
}

fn value(line: &str) -> f64 {
    let sample = line.split(" # ").next().unwrap();
    sample.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn metrics_carry_the_catalogue_series_with_exemplars_and_pass_promtool() {
    let h = start(&[]).await;
    let (uid, token) = h.user(false).await;
    assert_eq!(
        h.get(&format!("/v1/users/{uid}"), Some(&token))
            .await
            .status(),
        200
    );
    let res = h
        .post(
            "/v1/users",
            json!({"name": "Metric User", "email": format!("{}@test.example", unique("m")), "password": "password123"}),
            None,
        )
        .await;
    let (body, _) = h.expect_command(res, "polystream.user.registered.v1").await;
    let cid = body["correlation_id"].as_str().unwrap();
    // Nobody processes this test's topic: the long poll times out.
    let waited = h.get(&format!("/v1/status/{cid}?wait=1"), None).await;
    assert_eq!(waited.status(), 200);
    assert_eq!(h.get("/v1/titles/999999999", None).await.status(), 404);
    assert_eq!(h.get("/nowhere/12345", None).await.status(), 404);

    let om = h
        .http
        .get(h.url("/metrics"))
        .header(
            ACCEPT,
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(
        om.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        om.headers()
    );
    let om = om.text().await.unwrap();
    assert!(om.ends_with("# EOF\n"), "{om}");

    // The write's server span, as an exemplar on its latency bucket.
    let exemplar = line(
        &om,
        "http_server_request_duration_seconds_bucket{",
        &[
            "http_request_method=\"POST\"",
            "http_route=\"/v1/users\"",
            "http_response_status_code=\"202\"",
            "# {trace_id=\"",
        ],
    )
    .unwrap_or_else(|| panic!("no exemplar on the POST /v1/users histogram:\n{om}"));
    let trace_id = exemplar
        .split("trace_id=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap();
    assert!(
        trace_id.len() == 32 && trace_id.chars().all(|c| c.is_ascii_hexdigit()),
        "{exemplar}"
    );
    // Route templates, never raw paths.
    assert!(
        line(
            &om,
            "http_server_request_duration_seconds_count{",
            &[
                "http_route=\"/v1/users/{id}\"",
                "http_response_status_code=\"200\""
            ]
        )
        .is_some(),
        "{om}"
    );
    assert!(
        line(
            &om,
            "http_server_request_duration_seconds_count{",
            &["http_route=\"unmatched\""]
        )
        .is_some()
    );
    assert!(
        !om.contains(&format!("/v1/users/{uid}\"")),
        "a raw path became a label"
    );
    assert!(!om.contains("/nowhere"), "a raw path became a label");

    let topic = format!(
        "messaging_destination_name=\"{}\"",
        h.config.topics.user_events
    );
    let sent = line(
        &om,
        "messaging_client_sent_messages_total{",
        &[&topic, "error_type=\"\""],
    )
    .unwrap();
    assert!(value(sent) >= 1.0, "{sent}");
    assert!(
        line(
            &om,
            "messaging_client_operation_duration_seconds_bucket{",
            &[
                &topic,
                "messaging_operation_name=\"send\"",
                "# {trace_id=\""
            ]
        )
        .is_some(),
        "{om}"
    );
    for (store, op) in [
        ("postgres", "select_login"),
        ("postgres", "select_user"),
        ("redis", "create_session"),
        ("redis", "get_session"),
        ("redis", "mark_pending"),
        ("redis", "wait_status"),
        ("mongodb", "find_title"),
    ] {
        let series = line(
            &om,
            "polystream_store_operation_duration_seconds_count{",
            &[
                &format!("store=\"{store}\""),
                &format!("operation=\"{op}\""),
                "outcome=\"ok\"",
            ],
        )
        .unwrap_or_else(|| panic!("no {store} {op} series:\n{om}"));
        assert!(value(series) >= 1.0, "{series}");
    }
    let miss = line(
        &om,
        "polystream_cache_requests_total{",
        &["cache=\"title\"", "result=\"miss\""],
    )
    .unwrap();
    assert!(value(miss) >= 1.0, "{miss}");
    assert!(
        line(&om, "polystream_cache_requests_total{", &["result=\"hit\""]).is_some(),
        "hit is pre-registered"
    );
    let timeout = line(
        &om,
        "polystream_status_wait_total{",
        &["outcome=\"timeout\""],
    )
    .unwrap();
    assert!(value(timeout) >= 1.0, "{timeout}");
    for outcome in ["completed", "failed"] {
        assert!(
            line(
                &om,
                "polystream_status_wait_total{",
                &[&format!("outcome=\"{outcome}\"")]
            )
            .is_some()
        );
    }
    assert!(
        line(&om, "polystream_sessions_active ", &[]).is_some(),
        "{om}"
    );

    // Without asking for OpenMetrics: the classic format, which promtool reads.
    let classic = h.get("/metrics", None).await;
    assert!(
        classic.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
    );
    let classic = classic.text().await.unwrap();
    assert!(
        !classic.contains("# EOF") && !classic.contains("trace_id"),
        "{classic}"
    );
    promtool_accepts(&classic);
}

fn promtool_accepts(scrape: &str) {
    if let Err(said) = promtool_check_metrics(scrape) {
        panic!("promtool check metrics rejected the scrape: {said}\n--- scrape ---\n{scrape}");
    }
}

#[tokio::test]
async fn metrics_addr_moves_metrics_to_their_own_listener() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let h = start(&[("METRICS_ADDR", &addr)]).await;
    assert_eq!(h.get("/metrics", None).await.status(), 404);
    let scrape = h
        .http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(
        scrape
            .text()
            .await
            .unwrap()
            .contains("polystream_sessions_active")
    );
}
