//! Kafka plumbing shared by the services: client settings that make a send
//! durable, publishing an envelope with its headers and trace context,
//! consumer process spans that continue the sender's trace, and topic
//! creation.

use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureProducer;
use serde::Serialize;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::events::{Envelope, headers};

mod acked;
mod publisher;
mod security;
pub use acked::{AckedProducer, Record, Sent};
pub use publisher::{Deliver, Publisher};
pub use security::{Brokers, Connection, Protocol, SASL_MECHANISMS, Sasl, Security, TlsFiles};

/// A producer whose acknowledged sends are durable: every in-sync replica has
/// the record, and retries cannot duplicate or reorder it. librdkafka gives up
/// on a record after `delivery_timeout`. Only an [`AckedProducer`] then
/// tells a record that never left ([`PublishError::NotStored`]) from one
/// the broker may have kept; this plain one is for tests and tools.
pub fn producer(
    kafka: &(impl Brokers + ?Sized),
    client_id: &str,
    delivery_timeout: Duration,
) -> Result<FutureProducer, KafkaError> {
    producer_config(kafka, client_id, delivery_timeout).create()
}

/// [`producer`]'s settings in an [`AckedProducer`], whose failed sends say
/// whether the record may be stored anyway.
pub fn acked_producer(
    kafka: &(impl Brokers + ?Sized),
    client_id: &str,
    delivery_timeout: Duration,
) -> Result<AckedProducer, KafkaError> {
    AckedProducer::new(&producer_config(kafka, client_id, delivery_timeout))
}

fn producer_config(
    kafka: &(impl Brokers + ?Sized),
    client_id: &str,
    delivery_timeout: Duration,
) -> ClientConfig {
    let mut c = kafka.connection().client_config();
    c.set("client.id", client_id)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set(
            "message.timeout.ms",
            delivery_timeout.as_millis().to_string(),
        );
    c
}

/// How long a processor keeps retrying a send before reporting it failed.
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`Publisher`] of [`AckedProducer`]s with [`producer`]'s settings,
/// replaced when three delivery timeouts in a row pass without one
/// acknowledgement.
pub fn publisher(
    kafka: &(impl Brokers + ?Sized),
    client_id: &str,
    delivery_timeout: Duration,
) -> Result<Publisher, KafkaError> {
    let config = producer_config(kafka, client_id, delivery_timeout);
    Publisher::new(client_id, delivery_timeout * 3, move || {
        AckedProducer::new(&config)
    })
}

/// A consumer in `group` that never commits on its own: offsets are committed
/// by the caller once an event's effects are durable.
pub fn consumer(
    kafka: &(impl Brokers + ?Sized),
    group: &str,
    client_id: &str,
) -> Result<StreamConsumer, KafkaError> {
    consumer_config(kafka, group, client_id).create()
}

/// A reader of every partition of `topic` from its beginning, for tests and
/// tools that watch what was published. It joins no consumer group: dropping
/// a group member while a cooperative rebalance is in flight can block its
/// drop for ever inside librdkafka (seen in a test harness), and a reader
/// needs neither rebalances nor commits.
pub async fn topic_reader(
    kafka: &(impl Brokers + ?Sized),
    topic: &str,
) -> Result<StreamConsumer, KafkaError> {
    use rdkafka::consumer::Consumer as _;
    use rdkafka::{Offset, TopicPartitionList};
    // librdkafka wants a group id even for assigned partitions; nothing joins it.
    let consumer: StreamConsumer = kafka
        .connection()
        .client_config()
        .set("group.id", "polystream-topic-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let (consumer, topic) = (std::sync::Arc::new(consumer), topic.to_owned());
    // A topic created a moment ago may not be in every broker's metadata yet
    // (seen in CI right after `ensure_topics`), so give it a little while.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let partitions = loop {
        let metadata = {
            let (c, t) = (consumer.clone(), topic.clone());
            tokio::task::spawn_blocking(move || c.fetch_metadata(Some(&t), Duration::from_secs(10)))
                .await
                .map_err(|_| KafkaError::Canceled)??
        };
        let ready: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| t.partitions())
            .map(|p| if p.leader() >= 0 { p.id() } else { -1 })
            .collect();
        if !ready.is_empty() && ready.iter().all(|&id| id >= 0) {
            let mut partitions = TopicPartitionList::new();
            for id in ready {
                partitions.add_partition_offset(&topic, id, Offset::Beginning)?;
            }
            break partitions;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::UnknownTopicOrPartition,
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    consumer.assign(&partitions)?;
    std::sync::Arc::try_unwrap(consumer).map_err(|_| KafkaError::Canceled)
}

fn consumer_config(kafka: &(impl Brokers + ?Sized), group: &str, client_id: &str) -> ClientConfig {
    let mut c = kafka.connection().client_config();
    c.set("group.id", group)
        .set("client.id", client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000");
    c
}

/// Extra headers to send with an event.
pub type ExtraHeaders<'a> = &'a [(&'a str, &'a str)];

/// Publishes `envelope` as JSON with the CloudEvents routing headers and waits
/// for the broker's acknowledgement.
///
/// The send is a PRODUCER span (a child of the caller's current span) whose
/// W3C trace context travels in the `traceparent`/`tracestate` headers, so
/// the consumer's span continues the same trace; its duration and outcome are
/// recorded in `messaging_client_operation_duration_seconds` and
/// `messaging_client_sent_messages_total`. A `traceparent` in `extra` is
/// sent instead of the span's context: the caller forwards that trace on
/// purpose (S2 without a tracing pipeline, tests that fix the trace id).
pub async fn publish<D: Serialize>(
    producer: &impl Deliver,
    topic: &str,
    key: &str,
    envelope: &Envelope<D>,
    extra: ExtraHeaders<'_>,
) -> Result<(i32, i64), PublishError> {
    let correlation = envelope.correlationid.to_string();
    let span = send_span(topic);
    span.record("messaging.message.conversation_id", correlation.as_str());
    span.record(crate::telemetry::CORRELATION_FIELD, correlation.as_str());
    span.record("messaging.kafka.message.key", key);
    span.record(
        "cloudevents.event_id",
        tracing::field::display(&envelope.id),
    );
    span.record("cloudevents.event_type", envelope.event_type.as_str());
    let start = std::time::Instant::now();
    let result = match serde_json::to_vec(envelope) {
        Ok(payload) => {
            let mut hdrs: Vec<(&str, &str)> = vec![
                (headers::CE_TYPE, envelope.event_type.as_str()),
                (headers::CE_CORRELATION_ID, correlation.as_str()),
            ];
            hdrs.extend_from_slice(extra);
            let trace = if extra.iter().any(|(k, _)| *k == headers::TRACEPARENT) {
                Vec::new()
            } else {
                trace_headers(&crate::telemetry::propagated_context(&span))
            };
            send_in(
                producer,
                topic,
                Some(key.as_bytes()),
                &payload,
                &hdrs,
                &trace,
                &span,
            )
            .await
        }
        Err(e) => Err(e.into()),
    };
    finish_send(topic, &span, start.elapsed(), &result);
    producer.delivered(&result);
    result
}

/// Sends `payload` as it is (`key` and `headers` too) and waits for the
/// broker's acknowledgement, with what [`publish`] adds to an envelope's
/// send: a PRODUCER span "send <topic>" (child of the current span), its
/// trace context in `traceparent`/`tracestate` (replacing those in
/// `headers`; when there is no tracing pipeline to continue a trace, the
/// given ones stay, so a forwarded trace is not cut) and the producer
/// metrics. For records that are not envelopes, e.g. dead letters.
pub async fn publish_raw<K: AsRef<str>, V: AsRef<[u8]>>(
    producer: &impl Deliver,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    headers: &[(K, V)],
) -> Result<(i32, i64), PublishError> {
    let span = send_span(topic);
    let start = std::time::Instant::now();
    let trace = trace_headers(&crate::telemetry::propagated_context(&span));
    let result = send_in(producer, topic, key, payload, headers, &trace, &span).await;
    finish_send(topic, &span, start.elapsed(), &result);
    producer.delivered(&result);
    result
}

/// The PRODUCER span of a send to `topic`; the envelope's attributes are
/// recorded by [`publish`] (left empty, they are not exported).
fn send_span(topic: &str) -> tracing::Span {
    crate::telemetry::child_span(|| {
        tracing::info_span!(
            "kafka_send",
            otel.name = %format_args!("send {topic}"),
            otel.kind = "producer",
            otel.status_code = Empty,
            messaging.system = "kafka",
            messaging.operation.name = "send",
            messaging.operation.type = "send",
            messaging.destination.name = topic,
            messaging.message.conversation_id = Empty,
            polystream.correlation_id = Empty,
            messaging.kafka.message.key = Empty,
            cloudevents.event_id = Empty,
            cloudevents.event_type = Empty,
            messaging.destination.partition.id = Empty,
            messaging.kafka.offset = Empty,
            error.type = Empty,
        )
    })
}

/// The send itself, inside `span`, with the `trace` headers (the span's
/// context, or none when the caller's are to be sent).
async fn send_in<K: AsRef<str>, V: AsRef<[u8]>>(
    producer: &impl Deliver,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    given: &[(K, V)],
    trace: &[(String, String)],
    span: &tracing::Span,
) -> Result<(i32, i64), PublishError> {
    let mut hdrs = OwnedHeaders::new();
    for (k, v) in with_trace_context(given, trace) {
        hdrs = hdrs.insert(Header {
            key: k,
            value: Some(v),
        });
    }
    producer
        .send(Record {
            topic,
            key,
            payload,
            headers: hdrs,
        })
        .instrument(span.clone())
        .await
}

/// `given` followed by the injected trace headers, which replace the
/// given `traceparent`/`tracestate` when there are any (a consumer reads the
/// first `traceparent`, so a stale one must not stay in front).
fn with_trace_context<'a, K: AsRef<str>, V: AsRef<[u8]>>(
    given: &'a [(K, V)],
    injected: &'a [(String, String)],
) -> Vec<(&'a str, &'a [u8])> {
    let is_trace = |k: &str| k == headers::TRACEPARENT || k == headers::TRACESTATE;
    given
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, _)| injected.is_empty() || !is_trace(k))
        .chain(injected.iter().map(|(k, v)| (k.as_str(), v.as_bytes())))
        .collect()
}

/// Records a finished send on its span and in the producer metrics.
fn finish_send(
    topic: &str,
    span: &tracing::Span,
    elapsed: Duration,
    result: &Result<(i32, i64), PublishError>,
) {
    let error_type = match result {
        Ok((partition, offset)) => {
            span.record("messaging.destination.partition.id", partition.to_string());
            span.record("messaging.kafka.offset", offset);
            String::new()
        }
        Err(e) => {
            let t = e.error_type();
            span.record("otel.status_code", "ERROR");
            span.record("error.type", t.as_str());
            t
        }
    };
    record_send(topic, error_type, elapsed, span);
}

fn record_send(topic: &str, error_type: String, elapsed: Duration, span: &tracing::Span) {
    use crate::metrics::{ProducerLabels, SentLabels, observe, shared};
    observe(
        &shared().producer_duration,
        &ProducerLabels {
            messaging_system: "kafka".into(),
            messaging_operation_name: "send".into(),
            messaging_destination_name: topic.into(),
            error_type: error_type.clone(),
        },
        elapsed,
        crate::telemetry::sampled_trace_id(&span.context()),
    );
    shared()
        .sent_messages
        .get_or_create(&SentLabels {
            messaging_system: "kafka".into(),
            messaging_destination_name: topic.into(),
            error_type,
        })
        .inc();
}

/// The W3C trace context of `cx` as headers (`traceparent`, `tracestate`).
pub fn trace_headers(cx: &opentelemetry::Context) -> Vec<(String, String)> {
    struct Collect(Vec<(String, String)>);
    impl Injector for Collect {
        fn set(&mut self, key: &str, value: String) {
            self.0.push((key.to_owned(), value));
        }
    }
    let mut c = Collect(Vec::new());
    TraceContextPropagator::new().inject_context(cx, &mut c);
    c.0
}

struct KafkaHeaders<'a, H>(&'a H);

impl<H: Headers> Extractor for KafkaHeaders<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.key).collect()
    }
}

/// The trace context a received message carries (empty when it has none).
pub fn extract_context<H: Headers>(headers: Option<&H>) -> opentelemetry::Context {
    match headers {
        Some(h) => TraceContextPropagator::new().extract(&KafkaHeaders(h)),
        None => opentelemetry::Context::new(),
    }
}

/// A CONSUMER span for processing `message`, continuing the sender's trace
/// (the `traceparent` header), with the messaging attributes, the event type
/// and the correlation id (from the CloudEvents headers). Enter it (or
/// `.instrument(span)`) for the whole handling of the message: store calls
/// and outcome publishes inside become its children.
pub fn process_span<M: Message>(message: &M, consumer_group: &str) -> tracing::Span {
    let headers = message.headers();
    let event_type = header_of(headers, headers::CE_TYPE).unwrap_or("unknown");
    let correlation = header_of(headers, headers::CE_CORRELATION_ID).unwrap_or("");
    let key = message
        .key()
        .and_then(|k| std::str::from_utf8(k).ok())
        .unwrap_or("");
    let topic = message.topic();
    let span = tracing::info_span!(
        "kafka_process",
        otel.name = %format_args!("process {topic}"),
        otel.kind = "consumer",
        otel.status_code = Empty,
        messaging.system = "kafka",
        messaging.operation.name = "process",
        messaging.operation.type = "process",
        messaging.destination.name = topic,
        messaging.destination.partition.id = %message.partition(),
        messaging.kafka.offset = message.offset(),
        messaging.consumer.group.name = consumer_group,
        messaging.kafka.message.key = key,
        messaging.message.conversation_id = Empty,
        polystream.correlation_id = Empty,
        cloudevents.event_type = event_type,
        error.type = Empty,
    );
    if !correlation.is_empty() {
        span.record("messaging.message.conversation_id", correlation);
        span.record("polystream.correlation_id", correlation);
    }
    // Fails only without the OpenTelemetry layer (then there is no trace).
    let _ = span.set_parent(extract_context(headers));
    span
}

fn header_of<'a, H: Headers>(headers: Option<&'a H>, name: &str) -> Option<&'a str> {
    headers?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The consumer context of the services' group consumers. Lag and stalls are
/// sampled from the broker by [`crate::progress`], not from librdkafka's
/// statistics (those only cover partitions this client is fetching).
pub type LagContext = rdkafka::consumer::DefaultConsumerContext;

/// A group consumer that commits in the background what the caller stored
/// with `store_offsets` once the records' effects are durable (and nothing
/// else); pair it with [`crate::progress::poll`] for lag and stall reports.
///
/// The commit never blocks the receive loop: a synchronous commit issued
/// while the group is rejoining after a broker restart waits for a
/// coordinator the client only finds again once the loop serves the
/// rebalance, so the loop and the group wait on each other for good.
/// Commit synchronously (`commit_consumer_state`) only at shutdown.
pub fn consumer_with_lag(
    kafka: &(impl Brokers + ?Sized),
    group: &str,
    client_id: &str,
) -> Result<StreamConsumer<LagContext>, KafkaError> {
    consumer_config(kafka, group, client_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .create_with_context(LagContext::default())
}

/// Commits the offsets stored since the last commit and waits for the
/// broker (blocking: call it off the async threads). Nothing stored is not
/// an error; a failed commit only means redelivery, so it is logged.
pub fn commit_stored<C, X>(consumer: &C, when: &str)
where
    C: rdkafka::consumer::Consumer<X>,
    X: rdkafka::consumer::ConsumerContext,
{
    match consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
        Ok(()) => tracing::debug!(when, "offsets committed"),
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(when, error = %e, "committing offsets failed"),
    }
}

/// Logs a group consumer's errors without slowing its receive loop.
///
/// While brokers are unreachable librdkafka queues an error event for every
/// failed connection attempt, ahead of the rebalance events it needs the
/// application to serve once the brokers are back. A loop that pauses after
/// each error drains that backlog slowly, and the group waits for it in
/// `wait-assign-call`: after a long outage for minutes, the partitions
/// stalled meanwhile (found by the fault suite). So errors are only logged,
/// the first at once and then one summary per window, and the loop goes on
/// at once: the client reconnects by itself, and an empty queue makes the
/// next receive wait, so nothing spins.
#[derive(Debug)]
pub struct ConsumerErrors {
    window: Duration,
    last_logged: Option<std::time::Instant>,
    suppressed: u64,
}

impl Default for ConsumerErrors {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

impl ConsumerErrors {
    /// Logs at most one line per `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            last_logged: None,
            suppressed: 0,
        }
    }

    /// Records `error`; logs it unless a line was logged within the window.
    /// Returns whether it logged.
    pub fn record(&mut self, error: &KafkaError) -> bool {
        let now = std::time::Instant::now();
        if self
            .last_logged
            .is_some_and(|t| now.duration_since(t) < self.window)
        {
            self.suppressed += 1;
            return false;
        }
        tracing::warn!(
            %error,
            more_since_last_line = self.suppressed,
            "Kafka consumer error; the client reconnects by itself"
        );
        self.last_logged = Some(now);
        self.suppressed = 0;
        true
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot encode the event: {0}")]
    Encode(#[from] serde_json::Error),
    /// librdkafka is sure the broker never stored the record.
    #[error("Kafka did not acknowledge the event, which is not stored: {0}")]
    NotStored(KafkaError),
    /// The record was sent but not acknowledged: the broker may have stored
    /// it, and then it is consumed like any other.
    #[error("Kafka did not acknowledge the event, which may be stored anyway: {0}")]
    MaybeStored(KafkaError),
}

impl PublishError {
    /// A bounded `error.type`: `encode`, or librdkafka's error code name
    /// (e.g. `MessageTimedOut`).
    pub fn error_type(&self) -> String {
        match self {
            Self::Encode(_) => "encode".into(),
            Self::NotStored(e) | Self::MaybeStored(e) => e
                .rdkafka_error_code()
                .map_or_else(|| "kafka".into(), |c| format!("{c:?}")),
        }
    }
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
    kafka: &(impl Brokers + ?Sized),
    topics: &crate::config::Topics,
    layout: crate::config::TopicLayout,
) -> Result<(), TopicsError> {
    let names = [
        &topics.user_events,
        &topics.response_events,
        &topics.dead_letter,
    ];
    let wanted: Vec<(&str, i32)> = names
        .iter()
        .map(|n| (n.as_str(), layout.partitions))
        .collect();
    ensure_topics(kafka, &wanted, layout.replication).await
}

/// Creates each topic that does not exist and grows any with fewer partitions
/// than asked for. Never shrinks or deletes.
pub async fn ensure_topics(
    kafka: &(impl Brokers + ?Sized),
    topics: &[(&str, i32)],
    replication: i32,
) -> Result<(), TopicsError> {
    use rdkafka::producer::{BaseProducer, Producer as _};
    let config = kafka.connection().client_config();
    // A first metadata request from a client whose log and error events are
    // served (an admin client leaves them queued), so a refused login or
    // certificate is reported with librdkafka's own words.
    let probe: BaseProducer<FirstError> = config
        .clone()
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Warning)
        .create_with_context(FirstError::default())
        .map_err(TopicsError::plain)?;
    if let Err(e) = probe.client().fetch_metadata(None, Duration::from_secs(10)) {
        for _ in 0..100 {
            probe.poll(Duration::ZERO);
        }
        return Err(TopicsError {
            broker: probe.context().take(),
            source: e,
        });
    }
    drop(probe);
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(TopicsError::plain)?;
    create_or_grow(&admin, topics, replication)
        .await
        .map_err(TopicsError::plain)
}

/// A failed [`ensure_topics`], with the client's own account of why when
/// librdkafka gave one: its error codes alone ("broker transport failure")
/// hide a refused login or an untrusted certificate.
#[derive(Debug)]
pub struct TopicsError {
    pub source: KafkaError,
    /// The last error librdkafka reported for the client, e.g.
    /// "SASL authentication error: Authentication failed …".
    pub broker: Option<String>,
}

impl TopicsError {
    fn plain(source: KafkaError) -> Self {
        Self {
            source,
            broker: None,
        }
    }
}

/// The client's reason first, then librdkafka's error as its source.
impl std::fmt::Display for TopicsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.broker {
            Some(reason) => f.write_str(reason),
            None => write!(f, "{}", self.source),
        }
    }
}

impl std::error::Error for TopicsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.broker.as_ref().map(|_| &self.source as _)
    }
}

/// A client context that remembers the first error librdkafka reported: the
/// cause ("SASL authentication error …") comes before its consequences
/// ("1/1 brokers are down").
#[derive(Default)]
struct FirstError(std::sync::Mutex<Option<String>>);

impl FirstError {
    fn take(&self) -> Option<String> {
        self.0.lock().ok()?.take()
    }

    fn remember(&self, reason: &str) {
        if let Ok(mut first) = self.0.lock() {
            first.get_or_insert_with(|| reason.to_owned());
        }
    }
}

impl rdkafka::producer::ProducerContext for FirstError {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

impl rdkafka::ClientContext for FirstError {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        if matches!(level, L::Emerg | L::Alert | L::Critical | L::Error) {
            tracing::warn!(facility = fac, "Kafka client: {message}");
            self.remember(message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka client error");
        self.remember(reason);
    }
}

async fn create_or_grow<C: rdkafka::ClientContext + 'static>(
    admin: &AdminClient<C>,
    topics: &[(&str, i32)],
    replication: i32,
) -> Result<(), KafkaError> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    #[test]
    fn trace_context_round_trips_through_kafka_headers() {
        let sc = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "v1")]).unwrap(),
        );
        let cx = opentelemetry::Context::new().with_remote_span_context(sc.clone());
        let injected = trace_headers(&cx);
        let traceparent = injected.iter().find(|(k, _)| k == "traceparent").unwrap();
        assert_eq!(
            traceparent.1,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        let mut owned = OwnedHeaders::new();
        for (k, v) in &injected {
            owned = owned.insert(Header {
                key: k.as_str(),
                value: Some(v.as_str()),
            });
        }
        let back = extract_context(Some(&owned));
        let span = back.span();
        let got = span.span_context();
        assert_eq!(got.trace_id(), sc.trace_id());
        assert_eq!(got.span_id(), sc.span_id());
        assert!(got.is_sampled() && got.is_remote());
        assert_eq!(got.trace_state().get("vendor"), Some("v1"));
        assert!(
            !extract_context::<OwnedHeaders>(None)
                .span()
                .span_context()
                .is_valid()
        );
    }

    #[test]
    fn a_process_span_continues_the_senders_trace() {
        let _default = tracing::subscriber::set_default(crate::telemetry::test_subscriber());
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "traceparent",
                value: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            })
            .insert(Header {
                key: headers::CE_CORRELATION_ID,
                value: Some("corr-9"),
            });
        let message = rdkafka::message::OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(b"user/1".to_vec()),
            "user_events".into(),
            rdkafka::Timestamp::NotAvailable,
            2,
            40,
            Some(headers),
        );
        let span = process_span(&message, "s2");
        let (trace_id, correlation) = span.in_scope(|| {
            (
                crate::telemetry::current_trace_id(),
                crate::telemetry::current_correlation_id(),
            )
        });
        assert_eq!(
            trace_id.as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(correlation.as_deref(), Some("corr-9"));
        let cx = span.context();
        let own = cx.span().span_context().span_id();
        assert_ne!(own, SpanId::from_hex("b7ad6b7169203331").unwrap());
    }

    #[test]
    fn injected_trace_context_replaces_the_given_one() {
        let given: Vec<(String, Vec<u8>)> = vec![
            ("dlq_reason".into(), b"x".to_vec()),
            ("traceparent".into(), b"old".to_vec()),
            ("tracestate".into(), b"k=old".to_vec()),
            ("ce_type".into(), b"t".to_vec()),
        ];
        let injected = vec![("traceparent".to_owned(), "new".to_owned())];
        assert_eq!(
            with_trace_context(&given, &injected),
            [
                ("dlq_reason", &b"x"[..]),
                ("ce_type", b"t"),
                ("traceparent", b"new")
            ]
        );
        // Nothing to inject (no tracing pipeline): the given context stays.
        assert_eq!(with_trace_context(&given, &[]).len(), 4);
        assert_eq!(
            with_trace_context(&given, &[])[1],
            ("traceparent", &b"old"[..])
        );
    }

    #[test]
    fn consumer_errors_log_once_per_window() {
        let e = KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown);
        let mut log = ConsumerErrors::new(Duration::from_secs(3600));
        assert!(log.record(&e));
        assert!(!log.record(&e));
        assert!(!log.record(&e));
        assert_eq!(log.suppressed, 2);
        let mut every = ConsumerErrors::new(Duration::ZERO);
        assert!(every.record(&e) && every.record(&e));
    }

    #[test]
    fn publish_errors_have_bounded_types() {
        let e = PublishError::MaybeStored(KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut,
        ));
        assert_eq!(e.error_type(), "MessageTimedOut");
    }
}
