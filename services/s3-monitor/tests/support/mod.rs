//! What S3's integration tests share.

use polystream_common::config::Topics;
use polystream_common::kafka::ensure_topics;
use polystream_smoke_tests::unreachable;

/// Three topics no earlier run used, created with `partitions` (user events,
/// responses; the dead-letter topic gets one); fails naming Kafka when it
/// does not answer.
pub async fn unique_topics(brokers: &str, id: &str, partitions: (i32, i32)) -> Topics {
    let topics = Topics {
        user_events: format!("{id}-user"),
        response_events: format!("{id}-response"),
        dead_letter: format!("{id}-dlq"),
    };
    ensure_topics(
        brokers,
        &[
            (&topics.user_events, partitions.0),
            (&topics.response_events, partitions.1),
            (&topics.dead_letter, 1),
        ],
        1,
    )
    .await
    .unwrap_or_else(|e| unreachable("Apache Kafka", "kafka", brokers, e));
    topics
}

/// The real OpenSearch's URL (`OPENSEARCH_URL`, else the local one); fails
/// naming it when it does not answer.
pub async fn opensearch(http: &reqwest::Client) -> String {
    use polystream_common::config::StoreEndpoints;
    let url =
        polystream_smoke_tests::env_or("OPENSEARCH_URL", StoreEndpoints::LOCAL_OPENSEARCH_URL);
    if let Err(e) = http
        .get(format!("{url}/_cluster/health"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
    {
        unreachable("OpenSearch", "opensearch", &url, e);
    }
    url
}

/// S3's settings for one test run: its own topics, group, index prefix and
/// spool; the topics were created by the test (S3 must not grow them);
/// small bulks so tests see documents quickly. Tests override what they probe.
pub fn config(
    brokers: &str,
    opensearch: &str,
    topics: Topics,
    id: &str,
    partitions: i32,
) -> polystream_s3_monitor::Config {
    use std::time::Duration;
    polystream_s3_monitor::Config {
        kafka: polystream_common::kafka::Brokers::connection(brokers),
        opensearch_url: Some(opensearch.to_owned()),
        topics,
        http_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics_addr: None,
        server: polystream_common::server::ServerLimits::default(),
        group_id: format!("{id}-group"),
        layout: polystream_common::config::TopicLayout {
            partitions,
            replication: 1,
        },
        spool_dir: std::env::temp_dir().join(format!("{id}-spool")),
        spool_max_bytes: polystream_s3_monitor::config::DEFAULT_SPOOL_MAX_BYTES,
        stall_after: Duration::from_secs(120),
        index_prefix: id.to_owned(),
        flow_timeout: Duration::from_secs(30),
        bulk_max_events: 50,
        bulk_max_wait: Duration::from_millis(200),
    }
}

/// The tracing layers the binary installs, without span export, logging
/// through the test harness (shown for failed tests only), so spans continue
/// the producers' traces as in production. A second call keeps the first.
pub fn init_telemetry(service: &str) {
    let mut telemetry = polystream_common::telemetry::TelemetryConfig::local(service);
    telemetry.test_writer = true;
    if let Ok(guard) = polystream_common::telemetry::init_with(telemetry) {
        // Nothing is exported, so there is nothing to flush.
        std::mem::forget(guard);
    }
}

/// Polls `f` until it returns `Some`, failing with `what` after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    use std::time::Duration;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
