//! An unreachable trace collector costs requests nothing and does not hang
//! shutdown. Its own binary: the process-wide telemetry here exports to a
//! port nobody listens on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "api/harness.rs"]
mod harness;

use std::time::Duration;

use polystream_common::telemetry::{TelemetryConfig, init_with};
use polystream_smoke_tests::jaeger::shutdown_within;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_neither_fails_requests_nor_hangs_shutdown() {
    let mut config = TelemetryConfig::local("polystream-s1-gateway");
    config.endpoint = Some("http://127.0.0.1:1".into());
    config.test_writer = true;
    let telemetry = init_with(config).unwrap();

    let h = harness::start(&[]).await;
    let (uid, token) = h.user(false).await;
    for _ in 0..20 {
        let res = h.get(&format!("/v1/users/{uid}"), Some(&token)).await;
        assert_eq!(res.status(), 200);
    }
    h.update_preferences(uid, Some(&token)).await;

    // Generous: the export of what is queued may time out once (5 s).
    shutdown_within(telemetry, Duration::from_secs(30)).await;
}
