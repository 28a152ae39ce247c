//! Kafka plumbing shared by the services: client settings that make a send
//! durable, publishing an envelope with its headers, and topic creation.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;

use crate::events::{Envelope, headers};

/// A producer whose acknowledged sends are durable: every in-sync replica has
/// the record, and retries cannot duplicate or reorder it. librdkafka gives up
/// on a record after `delivery_timeout`; a caller that answers "not stored"
/// after waiting that long can then trust the record is not delivered later.
pub fn producer(
    bootstrap: &str,
    client_id: &str,
    delivery_timeout: Duration,
) -> Result<FutureProducer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", client_id)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set(
            "message.timeout.ms",
            delivery_timeout.as_millis().to_string(),
        )
        .create()
}

/// How long a processor keeps retrying a send before reporting it failed.
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A consumer in `group` that never commits on its own: offsets are committed
/// by the caller once an event's effects are durable.
pub fn consumer(
    bootstrap: &str,
    group: &str,
    client_id: &str,
) -> Result<StreamConsumer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("client.id", client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        .create()
}

/// Extra headers to send with an event (e.g. `traceparent`).
pub type ExtraHeaders<'a> = &'a [(&'a str, &'a str)];

/// Publishes `envelope` as JSON with the CloudEvents routing headers and waits
/// for the broker's acknowledgement.
pub async fn publish<D: Serialize>(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    envelope: &Envelope<D>,
    extra: ExtraHeaders<'_>,
) -> Result<(i32, i64), PublishError> {
    let payload = serde_json::to_vec(envelope)?;
    let correlation = envelope.correlationid.to_string();
    let mut hdrs = OwnedHeaders::new()
        .insert(Header {
            key: headers::CE_TYPE,
            value: Some(envelope.event_type.as_str()),
        })
        .insert(Header {
            key: headers::CE_CORRELATION_ID,
            value: Some(correlation.as_str()),
        });
    for (k, v) in extra {
        hdrs = hdrs.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    let record = FutureRecord::to(topic)
        .key(key)
        .payload(&payload)
        .headers(hdrs);
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map(|d| (d.partition, d.offset))
        .map_err(|(e, _)| PublishError::Kafka(e))
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot encode the event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("Kafka did not acknowledge the event: {0}")]
    Kafka(#[from] KafkaError),
}

/// Reads a header as text.
pub fn header<'a>(
    headers: Option<&'a rdkafka::message::BorrowedHeaders>,
    name: &str,
) -> Option<&'a str> {
    headers?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Creates (or grows) the platform's three topics with `layout`.
pub async fn ensure_platform_topics(
    bootstrap: &str,
    topics: &crate::config::Topics,
    layout: crate::config::TopicLayout,
) -> Result<(), KafkaError> {
    let names = [
        &topics.user_events,
        &topics.response_events,
        &topics.dead_letter,
    ];
    let wanted: Vec<(&str, i32)> = names
        .iter()
        .map(|n| (n.as_str(), layout.partitions))
        .collect();
    ensure_topics(bootstrap, &wanted, layout.replication).await
}

/// Creates each topic that does not exist and grows any with fewer partitions
/// than asked for. Never shrinks or deletes.
pub async fn ensure_topics(
    bootstrap: &str,
    topics: &[(&str, i32)],
    replication: i32,
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let mut create = Vec::new();
    let mut grow = Vec::new();
    for &(name, partitions) in topics {
        match metadata.topics().iter().find(|t| t.name() == name) {
            None => create.push(NewTopic::new(
                name,
                partitions,
                TopicReplication::Fixed(replication),
            )),
            Some(t) if (t.partitions().len() as i32) < partitions => {
                grow.push(NewPartitions::new(name, partitions as usize));
            }
            Some(_) => {}
        }
    }
    // librdkafka refuses an empty request (InvalidArgument), so skip it.
    let created = if create.is_empty() {
        Vec::new()
    } else {
        admin.create_topics(&create, &opts).await?
    };
    for result in created {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    let grown = if grow.is_empty() {
        Vec::new()
    } else {
        admin.create_partitions(&grow, &opts).await?
    };
    for result in grown {
        result.map_err(|(_, code)| KafkaError::AdminOp(code))?;
    }
    Ok(())
}
