//! The HTTP server's own limits, with misbehaving clients on raw TCP: a
//! head sent one line at a time is cut, an idle connection is closed, the
//! connection cap holds further clients back, and a body that never
//! finishes is answered `503` at the request timeout.

use std::net::SocketAddr;
use std::time::Duration;

use polystream_smoke_tests::slow_client;

use crate::harness::start;

fn addr(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").parse().unwrap()
}

#[tokio::test]
async fn a_slow_header_client_is_cut_off_at_the_header_timeout() {
    let h = start(&[("HTTP_HEADER_READ_TIMEOUT_SECONDS", "2")]).await;
    // One header line a second would keep going for a minute.
    let cut = slow_client::trickle_head(
        addr(&h.base),
        Duration::from_secs(1),
        Duration::from_secs(60),
    )
    .await;
    let cut = cut.expect("S1 kept a slow-header connection open for 60 s");
    assert!(cut < Duration::from_secs(15), "cut only after {cut:?}");
    let metrics = h.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("polystream_http_connections_cut_total{reason=\"header_timeout\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let h = start(&[("HTTP_IDLE_TIMEOUT_SECONDS", "2")]).await;
    let closed = slow_client::idle_close(addr(&h.base), "/health", Duration::from_secs(60)).await;
    let closed = closed.expect("S1 kept an idle connection open for 60 s");
    assert!(
        closed < Duration::from_secs(15),
        "closed only after {closed:?}"
    );
}

#[tokio::test]
async fn clients_beyond_the_connection_cap_wait_until_a_slot_frees() {
    let h = start(&[("HTTP_MAX_CONNECTIONS", "3")]).await;
    slow_client::assert_connection_cap(addr(&h.base), 3, "/health").await;
}

#[tokio::test]
async fn a_body_that_never_finishes_is_answered_503_at_the_request_timeout() {
    let h = start(&[
        ("HTTP_REQUEST_TIMEOUT_SECONDS", "2"),
        ("STATUS_WAIT_MAX_SECONDS", "1"),
    ])
    .await;
    let answer = slow_client::trickle_body(
        addr(&h.base),
        "/v1/users",
        10_000,
        Duration::from_millis(500),
        Duration::from_secs(60),
    )
    .await;
    let (status, text) = answer.expect("S1 gave no answer to a body trickling in for 60 s");
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    assert!(text.contains("/problems/timeout"), "{text}");
}
