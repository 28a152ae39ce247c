//! A producer that replaces itself when it stops being acknowledged.
//!
//! librdkafka's idempotent producer can wedge after a broker restart: the
//! broker is back, consumers fetch again, yet every send of this client
//! ends in `MessageTimedOut` for good (seen here about one broker restart
//! in three; see docs/faults.md). Nothing in the client heals that, and a
//! processor that treats a timed-out send as transient then retries the
//! same event forever. A [`Publisher`] watches its sends: after
//! `stuck_after` without a single acknowledgement (or at once on a fatal
//! client error) it builds a new producer from the same settings, purges
//! the old one so its waiting sends fail fast and are retried on the new
//! one, and counts the replacement in
//! `polystream_kafka_producer_replaced_total`. During a real outage this
//! costs a new client every `stuck_after`, which is harmless.

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use super::PublishError;
use super::acked::{AckedProducer, Record, Sent};

/// Builds the producer a [`Publisher`] starts with and each replacement.
type Build = dyn Fn() -> Result<AckedProducer, KafkaError> + Send + Sync;

/// Something [`super::publish`] can send through: an [`AckedProducer`], a
/// [`Publisher`] that also learns from each send's result, or a plain
/// `FutureProducer` (tests and tools).
pub trait Deliver {
    /// Sends one record and waits for the broker's acknowledgement.
    fn send(&self, record: Record<'_>) -> impl Future<Output = Sent> + Send;
    /// Called with the result of every send.
    fn delivered(&self, _result: &Sent) {}
    /// Fetches the cluster's metadata, blocking: a health probe.
    fn probe(&self, timeout: Duration) -> Result<(), KafkaError>;
}

impl Deliver for AckedProducer {
    fn send(&self, record: Record<'_>) -> impl Future<Output = Sent> + Send {
        AckedProducer::send(self, record)
    }

    fn probe(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.client().fetch_metadata(None, timeout).map(|_| ())
    }
}

impl Deliver for FutureProducer {
    async fn send(&self, record: Record<'_>) -> Sent {
        let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(record.topic)
            .payload(record.payload)
            .headers(record.headers);
        if let Some(k) = record.key {
            r = r.key(k);
        }
        FutureProducer::send(self, r, Duration::from_secs(10))
            .await
            .map(|d| (d.partition, d.offset))
            // A `FutureProducer` does not say whether a failed record left:
            // assume it may have.
            .map_err(|(e, _)| PublishError::MaybeStored(e))
    }

    fn probe(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.client().fetch_metadata(None, timeout).map(|_| ())
    }
}

/// A shared, self-replacing producer (cheap to clone).
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    current: RwLock<AckedProducer>,
    build: Box<Build>,
    watch: Mutex<Watch>,
}

impl Publisher {
    /// A publisher named `name` (in logs) whose producers come from `build`;
    /// it replaces the producer after `stuck_after` without an
    /// acknowledgement.
    pub fn new(
        name: impl Into<String>,
        stuck_after: Duration,
        build: impl Fn() -> Result<AckedProducer, KafkaError> + Send + Sync + 'static,
    ) -> Result<Self, KafkaError> {
        let first = build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.into(),
                current: RwLock::new(first),
                build: Box::new(build),
                watch: Mutex::new(Watch::new(stuck_after)),
            }),
        })
    }

    /// How many times this publisher replaced its producer.
    pub fn replacements(&self) -> u64 {
        self.lock_watch().replacements
    }

    fn lock_watch(&self) -> std::sync::MutexGuard<'_, Watch> {
        // A panic while holding the lock leaves plain counters behind.
        self.inner
            .watch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn replace(&self, why: &str) {
        let fresh = match (self.inner.build)() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(publisher = %self.inner.name, error = %e,
                    "cannot build a replacement Kafka producer; keeping the old one");
                return;
            }
        };
        let old = {
            let mut current = self
                .inner
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            std::mem::replace(&mut *current, fresh)
        };
        tracing::warn!(publisher = %self.inner.name, reason = why,
            "replaced the Kafka producer; sends still waiting on the old one fail and are retried");
        crate::metrics::shared()
            .producer_replaced
            .get_or_create(&crate::metrics::ReplacedLabels {
                messaging_system: "kafka".into(),
            })
            .inc();
        // Purging and destroying a client can block briefly: not on an async
        // worker thread.
        let retire = move || {
            old.purge();
            drop(old);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(retire);
            }
            Err(_) => retire(),
        }
    }
}

impl Publisher {
    /// The producer sends go to now.
    fn current(&self) -> AckedProducer {
        self.inner
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Deliver for Publisher {
    fn send(&self, record: Record<'_>) -> impl Future<Output = Sent> + Send {
        let producer = self.current();
        async move { producer.send(record).await }
    }

    fn probe(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.current().probe(timeout)
    }

    fn delivered(&self, result: &Sent) {
        let failure = match result {
            Ok(_) => None,
            // A record that cannot be encoded says nothing about the client.
            Err(PublishError::Encode(_)) => return,
            Err(PublishError::NotStored(_) | PublishError::MaybeStored(_)) => Some(
                self.current()
                    .client()
                    .fatal_error()
                    .map(|(code, reason)| format!("fatal client error {code:?}: {reason}")),
            ),
        };
        let verdict = {
            let mut watch = self.lock_watch();
            match failure {
                None => watch.acknowledged(),
                Some(fatal) => watch.failed(Instant::now(), fatal),
            }
        };
        if let Verdict::Replace(why) = verdict {
            self.replace(&why);
        }
    }
}

/// What to do after a send's result (pure, so it is unit-tested).
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    Replace(String),
}

/// Tracks how long a producer has gone without an acknowledgement.
#[derive(Debug)]
struct Watch {
    stuck_after: Duration,
    failing_since: Option<Instant>,
    replacements: u64,
}

impl Watch {
    fn new(stuck_after: Duration) -> Self {
        Self {
            stuck_after,
            failing_since: None,
            replacements: 0,
        }
    }

    fn acknowledged(&mut self) -> Verdict {
        self.failing_since = None;
        Verdict::Keep
    }

    /// A send failed at `now`; `fatal` is the client's fatal error, if any.
    fn failed(&mut self, now: Instant, fatal: Option<String>) -> Verdict {
        let since = *self.failing_since.get_or_insert(now);
        let why = match fatal {
            Some(f) => f,
            None if now.duration_since(since) >= self.stuck_after => format!(
                "no send acknowledged for {} s",
                now.duration_since(since).as_secs()
            ),
            None => return Verdict::Keep,
        };
        // The new producer gets a full window of its own.
        self.failing_since = Some(now);
        self.replacements += 1;
        Verdict::Replace(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(30);

    #[test]
    fn failures_shorter_than_the_window_keep_the_producer() {
        let t0 = Instant::now();
        let mut w = Watch::new(WINDOW);
        assert_eq!(w.failed(t0, None), Verdict::Keep);
        assert_eq!(w.failed(t0 + Duration::from_secs(29), None), Verdict::Keep);
        assert_eq!(w.replacements, 0);
    }

    #[test]
    fn an_acknowledgement_restarts_the_window() {
        let t0 = Instant::now();
        let mut w = Watch::new(WINDOW);
        w.failed(t0, None);
        assert_eq!(w.acknowledged(), Verdict::Keep);
        assert_eq!(w.failed(t0 + Duration::from_secs(31), None), Verdict::Keep);
        assert_eq!(w.failed(t0 + Duration::from_secs(60), None), Verdict::Keep);
    }

    #[test]
    fn a_full_window_without_acknowledgement_replaces_once_per_window() {
        let t0 = Instant::now();
        let mut w = Watch::new(WINDOW);
        w.failed(t0, None);
        assert_eq!(
            w.failed(t0 + Duration::from_secs(30), None),
            Verdict::Replace("no send acknowledged for 30 s".into())
        );
        // Sends still failing on the old producer do not replace it again.
        assert_eq!(w.failed(t0 + Duration::from_secs(31), None), Verdict::Keep);
        assert!(matches!(
            w.failed(t0 + Duration::from_secs(61), None),
            Verdict::Replace(_)
        ));
        assert_eq!(w.replacements, 2);
    }

    #[test]
    fn a_fatal_client_error_replaces_at_once() {
        let t0 = Instant::now();
        let mut w = Watch::new(WINDOW);
        assert_eq!(
            w.failed(t0, Some("fatal client error".into())),
            Verdict::Replace("fatal client error".into())
        );
    }
}
