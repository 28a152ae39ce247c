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
