//! A consumer group's progress per partition, as the broker sees it: the
//! group's committed offset against the partition's end. That difference is
//! the real lag (what librdkafka's statistics report is the fetch position of
//! the partitions this client fetches, which says nothing about a partition
//! that stopped fetching), and a partition with lag whose committed offset
//! has not moved for `stall_after` is *stalled*: `/ready` says which, since
//! when and how far behind, `polystream_kafka_partition_stalled` is 1 and the
//! `PolystreamPartitionStalled` alert fires.
//!
//! [`Progress::observe`] is pure bookkeeping (unit-tested with made-up
//! samples); [`poll`] is the I/O that feeds it from Kafka.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::metrics::{LagLabels, shared};

/// One partition as sampled from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (`None`: the group never committed).
    pub committed: Option<i64>,
    /// The partition's low and high watermarks.
    pub low: i64,
    pub high: i64,
}

impl Sample {
    /// Records between the group's committed offset and the partition's end;
    /// without a commit the group starts at the low watermark (it reads from
    /// the earliest offset).
    pub fn lag(&self) -> i64 {
        let from = self.committed.unwrap_or(self.low).max(self.low);
        (self.high - from).max(0)
    }
}

/// A partition with lag that has not advanced for the configured time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stall {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
    /// When its committed offset last moved (or when it was first seen behind).
    pub since: DateTime<Utc>,
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "partition {}[{}] stalled: {} records behind, no progress since {}",
            self.topic,
            self.partition,
            self.lag,
            self.since
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

#[derive(Debug, Clone)]
struct Entry {
    committed: Option<i64>,
    lag: i64,
    /// Last time the committed offset moved, or the lag was zero.
    progressed: DateTime<Utc>,
}

/// Per-partition progress of one consumer group.
#[derive(Debug)]
pub struct Progress {
    group: String,
    stall_after: Duration,
    partitions: Mutex<BTreeMap<(String, i32), Entry>>,
}

impl Progress {
    pub fn new(group: &str, stall_after: Duration) -> Arc<Self> {
        Arc::new(Self {
            group: group.to_owned(),
            stall_after,
            partitions: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Takes one round of samples at `now`: updates each partition's lag and
    /// last progress, the lag and stall gauges, and forgets partitions that
    /// are gone.
    pub fn observe(&self, now: DateTime<Utc>, samples: &[Sample]) {
        let mut parts = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = BTreeMap::new();
        for s in samples {
            let key = (s.topic.clone(), s.partition);
            let lag = s.lag();
            let entry = match parts.remove(&key) {
                Some(prev) if prev.committed == s.committed && lag > 0 => Entry { lag, ..prev },
                _ => Entry {
                    committed: s.committed,
                    lag,
                    progressed: now,
                },
            };
            seen.insert(key, entry);
        }
        let metrics = shared();
        for (topic, partition) in parts.keys() {
            let labels = self.labels(topic, *partition);
            metrics.consumer_lag.remove(&labels);
            metrics.partition_stalled.remove(&labels);
        }
        *parts = seen;
        for ((topic, partition), e) in parts.iter() {
            let labels = self.labels(topic, *partition);
            metrics.consumer_lag.get_or_create(&labels).set(e.lag);
            let stalled = self.is_stalled(e, now);
            metrics
                .partition_stalled
                .get_or_create(&labels)
                .set(i64::from(stalled));
        }
    }

    fn is_stalled(&self, e: &Entry, now: DateTime<Utc>) -> bool {
        let behind_for = (now - e.progressed).to_std().unwrap_or_default();
        e.lag > 0 && behind_for >= self.stall_after
    }

    /// The stalled partitions as of `now`.
    pub fn stalls(&self, now: DateTime<Utc>) -> Vec<Stall> {
        let parts = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        parts
            .iter()
            .filter(|(_, e)| self.is_stalled(e, now))
            .map(|((topic, partition), e)| Stall {
                topic: topic.clone(),
                partition: *partition,
                lag: e.lag,
                since: e.progressed,
            })
            .collect()
    }

    /// The readiness check `partitions`: fails naming every stalled partition.
    pub fn check(self: &Arc<Self>) -> crate::health::Check {
        let me = self.clone();
        crate::health::Check::new("partitions", move || {
            let stalls = me.stalls(Utc::now());
            async move {
                if stalls.is_empty() {
                    return Ok(());
                }
                let text: Vec<String> = stalls.iter().map(ToString::to_string).collect();
                Err(text.join("; "))
            }
        })
    }

    fn labels(&self, topic: &str, partition: i32) -> LagLabels {
        LagLabels {
            messaging_destination_name: topic.to_owned(),
            messaging_destination_partition_id: partition.to_string(),
            messaging_consumer_group_name: self.group.clone(),
        }
    }
}

/// `STALL_AFTER_SECONDS` (default 120): how long a partition with lag may go
/// without its committed offset moving before it counts as stalled.
pub fn read_stall_after<S: crate::config::Source>(r: &mut crate::config::Reader<S>) -> Duration {
    const VAR: &str = "STALL_AFTER_SECONDS";
    let secs: u64 = r.parse(VAR, 120);
    if secs == 0 {
        r.invalid(VAR, "0", "must be at least 1");
    }
    Duration::from_secs(secs.max(1))
}

/// How often [`poll`] samples the broker.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A client that only asks the broker about `group`'s offsets: it never
/// joins the group, so it cannot disturb its assignment.
pub fn observer(
    kafka: &(impl crate::kafka::Brokers + ?Sized),
    group: &str,
) -> Result<BaseConsumer, KafkaError> {
    kafka
        .connection()
        .client_config()
        .set("group.id", group)
        .set("client.id", format!("{group}-progress"))
        .set("enable.auto.commit", "false")
        .create()
}

/// One round of samples for every partition of `topics` (blocking calls).
pub fn sample(client: &BaseConsumer, topics: &[String]) -> Result<Vec<Sample>, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let md = client.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
        for t in md.topics() {
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
            }
        }
    }
    let committed = client.committed_offsets(tpl.clone(), REQUEST_TIMEOUT)?;
    let mut out = Vec::new();
    for e in tpl.elements() {
        let (low, high) = client.fetch_watermarks(e.topic(), e.partition(), REQUEST_TIMEOUT)?;
        let committed = committed
            .find_partition(e.topic(), e.partition())
            .and_then(|c| match c.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        out.push(Sample {
            topic: e.topic().to_owned(),
            partition: e.partition(),
            committed,
            low,
            high,
        });
    }
    Ok(out)
}

/// Samples the broker every [`POLL_INTERVAL`] into `progress` until
/// `shutdown` turns true. A failed round (broker down) keeps the last
/// picture: a partition cannot progress while the broker is away either.
pub async fn poll(
    progress: Arc<Progress>,
    kafka: crate::kafka::Connection,
    topics: Vec<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = match observer(&kafka, progress.group()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(error = %e, "cannot create the progress observer; no lag or stall reports");
            return;
        }
    };
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
        }
        let (c, t) = (client.clone(), topics.clone());
        match tokio::task::spawn_blocking(move || sample(&c, &t)).await {
            Ok(Ok(samples)) => {
                progress.observe(Utc::now(), &samples);
                for s in progress.stalls(Utc::now()) {
                    tracing::warn!(topic = %s.topic, partition = s.partition, lag = s.lag, since = %s.since, "partition stalled");
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot sample the group's progress"),
            Err(e) => tracing::warn!(error = %e, "progress sampler panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn s(partition: i32, committed: Option<i64>, high: i64) -> Sample {
        Sample {
            topic: "user_events".into(),
            partition,
            committed,
            low: 0,
            high,
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn the_stall_window_is_read_and_checked() {
        use crate::config::Reader;
        let read = |v: &[(&str, &str)]| {
            let map: std::collections::HashMap<String, String> = v
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let mut r = Reader::new(map);
            let d = read_stall_after(&mut r);
            (d, r.finish().map_err(|e| e.to_string()))
        };
        assert_eq!(read(&[]).0, Duration::from_secs(120));
        assert_eq!(
            read(&[("STALL_AFTER_SECONDS", "30")]).0,
            Duration::from_secs(30)
        );
        for bad in ["0", "soon"] {
            let err = read(&[("STALL_AFTER_SECONDS", bad)]).1.unwrap_err();
            assert!(err.contains("STALL_AFTER_SECONDS"), "{err}");
        }
    }

    #[test]
    fn lag_counts_from_the_committed_offset_or_the_start() {
        assert_eq!(s(0, Some(40), 100).lag(), 60);
        assert_eq!(s(0, None, 100).lag(), 100);
        let trimmed = Sample {
            low: 50,
            ..s(0, Some(10), 100)
        };
        assert_eq!(trimmed.lag(), 50);
        assert_eq!(s(0, Some(100), 100).lag(), 0);
    }

    #[test]
    fn a_partition_behind_without_progress_stalls_after_the_window() {
        let p = Progress::new("g-stall-window", Duration::from_secs(60));
        p.observe(at(0), &[s(0, Some(10), 500), s(1, Some(10), 10)]);
        p.observe(at(59), &[s(0, Some(10), 900), s(1, Some(10), 10)]);
        assert!(p.stalls(at(59)).is_empty());
        p.observe(at(61), &[s(0, Some(10), 900), s(1, Some(10), 10)]);
        let stalls = p.stalls(at(61));
        assert_eq!(
            stalls,
            [Stall {
                topic: "user_events".into(),
                partition: 0,
                lag: 890,
                since: at(0),
            }]
        );
        let text = stalls[0].to_string();
        assert!(text.contains("user_events[0]"), "{text}");
        assert!(text.contains("890 records behind"), "{text}");
        assert!(text.contains("2027-01-15T08:00:00Z"), "{text}");
    }

    #[test]
    fn progress_or_an_empty_partition_clears_a_stall() {
        let p = Progress::new("g-clear", Duration::from_secs(10));
        p.observe(at(0), &[s(0, Some(10), 500)]);
        p.observe(at(20), &[s(0, Some(10), 500)]);
        assert_eq!(p.stalls(at(20)).len(), 1);
        p.observe(at(21), &[s(0, Some(11), 500)]);
        assert!(p.stalls(at(30)).is_empty());
        assert_eq!(p.stalls(at(31)).len(), 1, "stuck again at 11");
        // An idle partition is never stalled, however long it waits.
        p.observe(at(40), &[s(0, Some(500), 500)]);
        p.observe(at(4000), &[s(0, Some(500), 500)]);
        assert!(p.stalls(at(4000)).is_empty());
        // A new record after a long idle time starts a fresh window.
        p.observe(at(4001), &[s(0, Some(500), 501)]);
        assert!(p.stalls(at(4002)).is_empty());
    }

    #[test]
    fn gauges_follow_the_samples_and_forget_vanished_partitions() {
        let p = Progress::new("g-gauges", Duration::from_secs(1));
        p.observe(at(0), &[s(0, Some(1), 5), s(1, None, 3)]);
        p.observe(at(2), &[s(0, Some(1), 5), s(1, None, 3)]);
        let lag = |part: i32| {
            shared()
                .consumer_lag
                .get_or_create(&p.labels("user_events", part))
                .get()
        };
        let stalled = |part: i32| {
            shared()
                .partition_stalled
                .get_or_create(&p.labels("user_events", part))
                .get()
        };
        assert_eq!((lag(0), lag(1)), (4, 3));
        assert_eq!((stalled(0), stalled(1)), (1, 1));
        p.observe(at(3), &[s(0, Some(5), 5)]);
        assert_eq!((lag(0), stalled(0)), (0, 0));
        // Partition 1 was removed: reading it again creates a fresh zero.
        assert_eq!(lag(1), 0);
    }
}
