//! What a failed send reports when the record never left: `NotStored`, so
//! S1 may answer 503 ("nothing happened"). The opposite case, a record the
//! broker took without answering, needs the shared broker paused:
//! `services/s1-gateway/tests/kafka_pause.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use polystream_common::kafka::{self, PublishError};

#[tokio::test]
async fn a_record_that_never_left_is_not_stored() {
    // Nothing listens on port 1: the record waits in the queue and times out.
    let publisher = kafka::publisher(
        &"127.0.0.1:1".to_owned(),
        "kafka-ack-test",
        Duration::from_secs(1),
    )
    .unwrap();
    let headers: [(&str, &str); 0] = [];
    let sent = kafka::publish_raw(&publisher, "nowhere", None, b"x", &headers).await;
    assert!(
        matches!(sent, Err(PublishError::NotStored(_))),
        "got {sent:?}"
    );
}
