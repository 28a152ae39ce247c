//! A wedged producer is replaced, against the real broker: the publisher's
//! first producer never gets an acknowledgement (it talks to a port nobody
//! listens on, as a wedged client talks to nobody useful), and once the
//! window without acknowledgements has passed the publisher builds a new
//! producer from the same recipe, which reaches Kafka, so a caller that
//! retries its send gets it acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[allow(dead_code)] // the shared support, partly used here
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use polystream_common::kafka::{self, Publisher};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_gets_no_acknowledgement_is_replaced() {
    let env = support::Env::new().await;
    let bootstrap = env.config.stores.kafka_bootstrap_servers.clone();
    let topic = env.config.topics.dead_letter.clone();
    let builds = Arc::new(AtomicU32::new(0));
    let counted = builds.clone();
    let delivery = Duration::from_secs(1);
    let publisher = Publisher::new("test", Duration::from_secs(3), move || {
        let target = if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            "127.0.0.1:1"
        } else {
            bootstrap.as_str()
        };
        kafka::acked_producer(target, "replacement-test", delivery)
    })
    .unwrap();

    let start = Instant::now();
    let mut failures = 0;
    let acked = loop {
        match kafka::publish_raw(&publisher, &topic, Some(b"k"), b"payload", &[("h", "v")]).await {
            Ok(at) => break at,
            Err(e) => {
                failures += 1;
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "no send acknowledged after {failures} attempts in 60 s: {e}"
                );
            }
        }
    };
    assert!(failures >= 2, "the first producer cannot have delivered");
    assert_eq!(publisher.replacements(), 1, "replaced exactly once");
    assert_eq!(builds.load(Ordering::SeqCst), 2);
    assert!(acked.1 >= 0);

    // A healthy publisher is left alone.
    for _ in 0..5 {
        kafka::publish_raw(&publisher, &topic, Some(b"k"), b"again", &[("h", "v")])
            .await
            .unwrap();
    }
    assert_eq!(publisher.replacements(), 1);
}
