//! Kafka from the benchmark's side: a watcher that timestamps every outcome
//! S2 publishes on `response_events`, and a producer that puts commands on
//! `user_events` directly (to load S2 without S1 in front of it), or
//! outcomes on `response_events` (to load S3 alone).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polystream_common::events::{Command, Envelope};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use uuid::Uuid;

/// When each outcome arrived, and whether it was `completed`.
#[derive(Clone, Default)]
pub struct Outcomes(Arc<Mutex<HashMap<Uuid, (Instant, bool)>>>);

impl Outcomes {
    pub fn get(&self, id: &Uuid) -> Option<(Instant, bool)> {
        self.0.lock().ok()?.get(id).copied()
    }

    /// How many of `ids` have an outcome.
    pub fn count(&self, ids: &[Uuid]) -> usize {
        self.0
            .lock()
            .map(|m| ids.iter().filter(|i| m.contains_key(i)).count())
            .unwrap_or(0)
    }

    /// Waits until every one of `ids` has an outcome or `timeout` passes;
    /// returns when the last one arrived (or `None` on timeout).
    pub async fn wait_all(&self, ids: &[Uuid], timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count(ids) == ids.len() {
                return ids.iter().filter_map(|i| self.get(i)).map(|o| o.0).max();
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Reads `topic` from its current end, for as long as the process lives.
pub async fn watch(brokers: &str, topic: &str) -> anyhow::Result<Outcomes> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "polystream-bench")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::End)?;
        }
    }
    consumer.assign(&tpl)?;
    let outcomes = Outcomes::default();
    let map = outcomes.0.clone();
    tokio::spawn(async move {
        loop {
            let Ok(m) = consumer.recv().await else {
                continue;
            };
            let now = Instant::now();
            let Some(v) = m
                .payload()
                .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
            else {
                continue;
            };
            let id = v["correlationid"].as_str().and_then(|s| s.parse().ok());
            let completed = v["type"].as_str().is_some_and(|t| t.contains("completed"));
            if let (Some(id), Ok(mut m)) = (id, map.lock()) {
                m.entry(id).or_insert((now, completed));
            }
        }
    });
    // The assignment takes effect with the first fetch: let it happen before
    // anything is sent, or early outcomes would be missed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(outcomes)
}

/// Publishes each command as S1 would (same envelope, key = subject) and
/// returns their correlation ids once all are acknowledged.
pub async fn publish_all(
    producer: &FutureProducer,
    topic: &str,
    commands: Vec<Command>,
) -> anyhow::Result<Vec<Uuid>> {
    let envelopes = commands.into_iter().map(|c| {
        (
            c.subject(),
            envelope(c.event_type(), c.subject(), c.to_data()),
        )
    });
    publish_envelopes(producer, topic, envelopes.collect()).await
}

/// An event from the benchmark under a new correlation id, keyed like the
/// platform keys it (by `subject`).
pub fn envelope(
    event_type: &str,
    subject: String,
    data: serde_json::Value,
) -> Envelope<serde_json::Value> {
    Envelope::new(
        "polystream-bench",
        event_type,
        Some(subject),
        Uuid::now_v7(),
        data,
    )
}

/// Publishes each `(key, envelope)` with the CloudEvents headers S1 and S2
/// set, all enqueued before any acknowledgement is awaited; returns their
/// correlation ids.
pub async fn publish_envelopes(
    producer: &FutureProducer,
    topic: &str,
    envelopes: Vec<(String, Envelope<serde_json::Value>)>,
) -> anyhow::Result<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(envelopes.len());
    let mut pending = Vec::with_capacity(envelopes.len());
    for (key, envelope) in envelopes {
        let id = envelope.correlationid;
        let payload = serde_json::to_vec(&envelope)?;
        let correlation = id.to_string();
        let headers = rdkafka::message::OwnedHeaders::new()
            .insert(rdkafka::message::Header {
                key: polystream_common::events::headers::CE_TYPE,
                value: Some(envelope.event_type.as_str()),
            })
            .insert(rdkafka::message::Header {
                key: polystream_common::events::headers::CE_CORRELATION_ID,
                value: Some(correlation.as_str()),
            });
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        // Enqueued at once (the payload is copied), acknowledged later.
        pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
        ids.push(id);
    }
    for r in futures::future::join_all(pending).await {
        r?.map_err(|(e, _)| e)?;
    }
    Ok(ids)
}
