//! Kafka, read directly: each consumer group's committed offsets against
//! the end of every partition, the audit documents the topics' records call
//! for, and poison records written straight to the command topic.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use polystream_common::events::{Envelope, decode_envelope};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(5);

/// A partition that has not reached its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behind {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    pub end: i64,
}

impl std::fmt::Display for Behind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}[{}] committed {} of {}",
            self.group, self.topic, self.partition, self.committed, self.end
        )
    }
}

/// Partitions where `committed` (None: nothing committed) is short of `end`;
/// an empty partition needs no commit. Pure.
pub fn behind(group: &str, topic: &str, offsets: &[(i32, Option<i64>, i64)]) -> Vec<Behind> {
    offsets
        .iter()
        .filter(|(_, c, end)| c.unwrap_or(0) < *end)
        .map(|(p, c, end)| Behind {
            group: group.to_owned(),
            topic: topic.to_owned(),
            partition: *p,
            committed: c.unwrap_or(0),
            end: *end,
        })
        .collect()
}

fn consumer(brokers: &str, group: &str) -> anyhow::Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .with_context(|| format!("a Kafka client for {brokers} (start it with `./dev up kafka`)"))
}

/// Reads a group's committed offsets without joining it. Each look uses a
/// new client: one that lived through a broker restart kept failing its
/// metadata requests afterwards.
pub struct GroupWatch {
    brokers: String,
    group: String,
    topics: Vec<String>,
}

impl GroupWatch {
    pub fn new(brokers: &str, group: &str, topics: &[String]) -> anyhow::Result<Self> {
        Ok(Self {
            brokers: brokers.to_owned(),
            group: group.to_owned(),
            topics: topics.to_vec(),
        })
    }

    fn client(&self) -> anyhow::Result<BaseConsumer> {
        consumer(&self.brokers, &self.group)
    }

    /// The sum of `topic`'s end offsets: how many records it ever held.
    pub async fn end_total(&self, topic: &str) -> anyhow::Result<i64> {
        let c = self.client()?;
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || -> anyhow::Result<i64> {
            let meta = c
                .fetch_metadata(Some(&topic), TIMEOUT)
                .with_context(|| format!("Kafka metadata of {topic}"))?;
            let mut total = 0;
            for p in meta.topics().iter().flat_map(|t| t.partitions()) {
                total += c.fetch_watermarks(&topic, p.id(), TIMEOUT)?.1;
            }
            Ok(total)
        })
        .await?
    }

    /// Every partition of the group's topics that is behind its end.
    pub async fn behind(&self) -> anyhow::Result<Vec<Behind>> {
        let c = self.client()?;
        let group = self.group.clone();
        let topics = self.topics.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Behind>> {
            let mut out = Vec::new();
            for topic in &topics {
                let meta = c
                    .fetch_metadata(Some(topic), TIMEOUT)
                    .with_context(|| format!("Kafka metadata of {topic}"))?;
                let parts: Vec<i32> = meta
                    .topics()
                    .iter()
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect();
                let mut tpl = TopicPartitionList::new();
                for p in &parts {
                    tpl.add_partition(topic, *p);
                }
                let committed = c
                    .committed_offsets(tpl, TIMEOUT)
                    .with_context(|| format!("committed offsets of {group} on {topic}"))?;
                let mut offsets = Vec::new();
                for p in parts {
                    let (_, end) = c
                        .fetch_watermarks(topic, p, TIMEOUT)
                        .with_context(|| format!("end offset of {topic}[{p}]"))?;
                    let done = committed
                        .find_partition(topic, p)
                        .and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        });
                    offsets.push((p, done, end));
                }
                out.extend(behind(&group, topic, &offsets));
            }
            Ok(out)
        })
        .await?
    }
}

/// The audit document id S3 gives a record: the event id for commands and
/// outcomes, `topic-partition-offset` for dead letters and for records that
/// are not events (so a dead-lettered copy never overwrites its command).
pub fn audit_id(
    topic: &str,
    dead_letter: bool,
    partition: i32,
    offset: i64,
    payload: &[u8],
) -> String {
    match decode_envelope(payload) {
        Ok(env) if !dead_letter => env.id.to_string(),
        _ => format!("{topic}-{partition}-{offset}"),
    }
}

/// Where reading resumes per (topic, partition), and the audit ids seen so far.
type ReaderState = (HashMap<(String, i32), i64>, HashSet<String>);

/// Reads the run's three topics from the start, once, keeping the audit
/// document ids their records call for.
pub struct AuditExpectation {
    brokers: String,
    group: String,
    dlq: String,
    state: Arc<Mutex<ReaderState>>,
    topics: Vec<String>,
}

impl AuditExpectation {
    pub fn new(brokers: &str, id: &str, topics: &[String], dlq: &str) -> anyhow::Result<Self> {
        Ok(Self {
            brokers: brokers.to_owned(),
            group: format!("{id}-audit-reader"),
            dlq: dlq.to_owned(),
            state: Arc::default(),
            topics: topics.to_vec(),
        })
    }

    /// How many distinct audit documents the records so far call for.
    pub async fn expected(&self) -> anyhow::Result<usize> {
        // A new client each time, as for GroupWatch; reading resumes at
        // the positions kept in `state`.
        let c = consumer(&self.brokers, &self.group)?;
        let state = self.state.clone();
        let topics = self.topics.clone();
        let dlq = self.dlq.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
            let Ok(mut st) = state.lock() else {
                anyhow::bail!("audit reader state poisoned");
            };
            let (positions, ids) = &mut *st;
            // Where each partition's end is now, and where reading resumes.
            let mut tpl = TopicPartitionList::new();
            let mut ends = HashMap::new();
            for topic in &topics {
                let meta = c.fetch_metadata(Some(topic), TIMEOUT)?;
                for p in meta.topics().iter().flat_map(|t| t.partitions()) {
                    let (_, end) = c.fetch_watermarks(topic, p.id(), TIMEOUT)?;
                    let from = positions
                        .get(&(topic.clone(), p.id()))
                        .copied()
                        .unwrap_or(0);
                    if from < end {
                        tpl.add_partition_offset(topic, p.id(), Offset::Offset(from))?;
                        ends.insert((topic.clone(), p.id()), end);
                    }
                }
            }
            if ends.is_empty() {
                return Ok(ids.len());
            }
            c.assign(&tpl)?;
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while ends
                .iter()
                .any(|(k, end)| positions.get(k).copied().unwrap_or(0) < *end)
            {
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "reading the run's topics took more than 30 s"
                );
                let Some(m) = c.poll(Duration::from_millis(500)) else {
                    continue;
                };
                // Errors here are the client's reports (e.g. "all brokers
                // down" from the outage just over): it reconnects by itself.
                let Ok(m) = m else {
                    continue;
                };
                let topic = m.topic().to_owned();
                ids.insert(audit_id(
                    &topic,
                    topic == dlq,
                    m.partition(),
                    m.offset(),
                    m.payload().unwrap_or_default(),
                ));
                positions.insert((topic, m.partition()), m.offset() + 1);
            }
            Ok(ids.len())
        })
        .await?
    }
}

/// The poison records of the `poison` scenario, and the emails of the ones
/// that would register a user if they were applied.
pub fn poison_records(tag: &str, source: &str) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let email = format!("{tag}-poison@faults.polystream.local");
    let registration = |name: String, email: &str, user_id: i64| {
        let env = Envelope::new(
            source,
            "polystream.user.registered.v1",
            Some(format!("user/{user_id}")),
            uuid::Uuid::now_v7(),
            json!({"user_id": user_id, "name": name, "email": email,
                   "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                   "admin": false}),
        );
        serde_json::to_vec(&env).unwrap_or_default()
    };
    let unknown = Envelope::new(
        source,
        "polystream.nothing.happened.v1",
        Some("user/1".into()),
        uuid::Uuid::now_v7(),
        json!({"user_id": 1}),
    );
    // User ids far above any the gateway allocates.
    let base = 9_000_000_000_i64 + (chrono::Utc::now().timestamp() % 1_000_000) * 10;
    let records = vec![
        (
            "user/poison-json".to_owned(),
            b"{\"specversion\": \"1.0\", \"id\": ".to_vec(),
        ),
        (
            "user/1".to_owned(),
            serde_json::to_vec(&unknown).unwrap_or_default(),
        ),
        (
            format!("user/{base}"),
            registration("Bad\u{0}Name\u{7}".into(), &email, base),
        ),
        (
            format!("user/{}", base + 1),
            registration("x".repeat(600 * 1024), &format!("big-{email}"), base + 1),
        ),
    ];
    let big = format!("big-{email}");
    (records, vec![email, big])
}

/// Writes records straight to `topic`.
pub async fn produce(
    brokers: &str,
    topic: &str,
    records: &[(String, Vec<u8>)],
) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "15000")
        .set("message.max.bytes", "1000000")
        .create()
        .context("a Kafka producer")?;
    for (key, payload) in records {
        producer
            .send(
                FutureRecord::to(topic).key(key).payload(payload),
                Duration::from_secs(15),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("writing a poison record to {topic}: {e}"))?;
    }
    Ok(())
}

/// Deletes the run's topics (best effort).
pub async fn delete_topics(brokers: &str, topics: &[String]) {
    let Ok(admin) = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create::<rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>>()
    else {
        return;
    };
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let _ = admin
        .delete_topics(&names, &rdkafka::admin::AdminOptions::new())
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_behind_until_its_commit_reaches_the_end() {
        let b = behind(
            "g",
            "t",
            &[(0, Some(5), 5), (1, Some(3), 5), (2, None, 0), (3, None, 2)],
        );
        let parts: Vec<i32> = b.iter().map(|x| x.partition).collect();
        assert_eq!(parts, [1, 3]);
        assert_eq!(b[0].to_string(), "g t[1] committed 3 of 5");
    }

    #[test]
    fn audit_ids_follow_s3s_rule() {
        let env = Envelope::new(
            "/s",
            "polystream.user.registered.v1",
            None,
            uuid::Uuid::now_v7(),
            json!({}),
        );
        let bytes = serde_json::to_vec(&env).unwrap();
        assert_eq!(audit_id("u", false, 0, 9, &bytes), env.id.to_string());
        assert_eq!(audit_id("d", true, 1, 9, &bytes), "d-1-9");
        assert_eq!(audit_id("u", false, 2, 3, b"not json"), "u-2-3");
    }

    #[test]
    fn poison_records_are_each_a_different_kind_of_bad() {
        let (records, emails) = poison_records("faults-t", "/polystream/faults");
        let email = &emails[0];
        assert_eq!(records.len(), 4);
        assert!(decode_envelope(&records[0].1).is_err(), "malformed JSON");
        let unknown = decode_envelope(&records[1].1).unwrap();
        assert_eq!(unknown.event_type, "polystream.nothing.happened.v1");
        let control = decode_envelope(&records[2].1).unwrap();
        assert!(control.data["name"].as_str().unwrap().contains('\0'));
        assert_eq!(control.data["email"], email.as_str());
        assert!(records[3].1.len() > 512 * 1024 && records[3].1.len() < 1_000_000);
        assert_eq!(emails[1], format!("big-{email}"));
    }
}
