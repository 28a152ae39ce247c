//! A producer whose failed sends say whether the record may be stored anyway.
//!
//! A send that fails after librdkafka transmitted it (the broker went away
//! before answering, the message timed out in flight, an in-flight purge)
//! may well be in the log: a broker stopped mid-request keeps what it had
//! appended, and consumers see it once it is back. A caller that answers
//! "not stored, retry" for such a send tells its client something false, and
//! a client that retries without an idempotency key then applies the command
//! twice. librdkafka knows which case it is (`rd_kafka_message_status`), but
//! rdkafka's `FutureProducer` drops that on the way, so this producer keeps
//! it: [`PublishError::NotStored`] only when librdkafka says the record was
//! never persisted, [`PublishError::MaybeStored`] otherwise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::bindings::{rd_kafka_message_status, rd_kafka_msg_status_t};
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, PurgeConfig, ThreadedProducer,
};
use tokio::sync::oneshot;

use super::PublishError;

/// The result of one send: partition and offset once acknowledged.
pub type Sent = Result<(i32, i64), PublishError>;

/// Hands each delivery report, with librdkafka's persistence status, to the
/// task waiting for it.
pub struct StatusContext;

impl ClientContext for StatusContext {}

impl ProducerContext for StatusContext {
    type DeliveryOpaque = Box<oneshot::Sender<Sent>>;

    fn delivery(&self, result: &DeliveryResult<'_>, waiting: Self::DeliveryOpaque) {
        let sent = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, m)) if never_persisted(m) => Err(PublishError::NotStored(e.clone())),
            Err((e, _)) => Err(PublishError::MaybeStored(e.clone())),
        };
        // The waiter may have given up (its request timed out): nothing to tell.
        let _ = waiting.send(sent);
    }
}

/// Whether librdkafka is sure the broker never stored the failed message.
#[allow(unsafe_code)]
fn never_persisted(m: &BorrowedMessage<'_>) -> bool {
    // SAFETY: `m` wraps the message librdkafka passes to the delivery report
    // callback, valid for the whole callback; the call only reads its status.
    let status = unsafe { rd_kafka_message_status(m.ptr()) };
    status == rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_NOT_PERSISTED
}

/// One record to send.
pub struct Record<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub headers: OwnedHeaders,
}

/// A cheap-to-clone producer (one librdkafka client and its polling thread)
/// whose sends report [`PublishError::NotStored`] or
/// [`PublishError::MaybeStored`] precisely.
#[derive(Clone)]
pub struct AckedProducer {
    inner: Arc<ThreadedProducer<StatusContext>>,
}

/// How long a send waits for room in librdkafka's local queue.
const QUEUE_WAIT: Duration = Duration::from_secs(10);

impl AckedProducer {
    pub fn new(config: &ClientConfig) -> Result<Self, KafkaError> {
        Ok(Self {
            inner: Arc::new(ThreadedProducer::from_config_and_context(
                config,
                StatusContext,
            )?),
        })
    }

    /// Queues `record` and waits for the broker's acknowledgement.
    pub async fn send(&self, record: Record<'_>) -> Sent {
        let (tx, rx) = oneshot::channel();
        let mut base = BaseRecord::with_opaque_to(record.topic, Box::new(tx))
            .payload(record.payload)
            .headers(record.headers);
        if let Some(k) = record.key {
            base = base.key(k);
        }
        let start = Instant::now();
        loop {
            match self.inner.send(base) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if start.elapsed() < QUEUE_WAIT =>
                {
                    base = back;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                // Refused before it was queued: certainly not stored.
                Err((e, _)) => return Err(PublishError::NotStored(e)),
            }
        }
        // The sender lives in librdkafka until the report: a dropped one means
        // the client was destroyed with the record inside, outcome unknown.
        rx.await
            .unwrap_or(Err(PublishError::MaybeStored(KafkaError::Canceled)))
    }

    pub fn client(&self) -> &Client<StatusContext> {
        self.inner.client()
    }

    /// Fails every queued and in-flight send at once (an in-flight one as
    /// [`PublishError::MaybeStored`]).
    pub fn purge(&self) {
        self.inner.purge(PurgeConfig::default().queue().inflight());
    }
}
