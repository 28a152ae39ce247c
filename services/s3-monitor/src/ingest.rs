//! The consuming side: batches records from the three topics, turns them into
//! audit documents, makes each batch durable (indexed, or spooled and
//! fsync'd) before committing its offsets, and replays the spool whenever
//! OpenSearch is available.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::State;
use crate::audit::{IndexedDoc, RawRecord, Role, build};
use crate::flow::PendingFlow;

fn to_raw(m: &BorrowedMessage<'_>) -> RawRecord {
    RawRecord {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        headers: m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_owned(), v.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default(),
        payload: m.payload().map(<[u8]>::to_vec),
        timestamp_ms: m.timestamp().to_millis(),
    }
}

/// Consumes until `stop` turns true, then makes the last batch durable.
pub async fn consume(
    state: Arc<State>,
    consumer: Arc<StreamConsumer>,
    mut stop: watch::Receiver<bool>,
) {
    let max = state.config.bulk_max_events;
    let wait = state.config.bulk_max_wait;
    let mut batch: Vec<RawRecord> = Vec::with_capacity(max);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let until =
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep_until(until), if deadline.is_some() => {
                flush(&state, &consumer, std::mem::take(&mut batch)).await;
                deadline = None;
            }
            r = consumer.recv() => match r {
                Ok(m) => {
                    batch.push(to_raw(&m));
                    if deadline.is_none() {
                        deadline = Some(tokio::time::Instant::now() + wait);
                    }
                    if batch.len() >= max {
                        flush(&state, &consumer, std::mem::take(&mut batch)).await;
                        deadline = None;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka consume error");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            },
        }
    }
    flush(&state, &consumer, batch).await;
}

fn role_of(state: &State, topic: &str) -> Role {
    let t = &state.config.topics;
    if topic == t.user_events {
        Role::Command
    } else if topic == t.response_events {
        Role::Outcome
    } else {
        Role::DeadLetter
    }
}

async fn flush(state: &Arc<State>, consumer: &Arc<StreamConsumer>, batch: Vec<RawRecord>) {
    if batch.is_empty() {
        return;
    }
    let now = Utc::now();
    let docs: Vec<IndexedDoc> = batch
        .iter()
        .map(|r| build(r, role_of(state, &r.topic), &state.config.index_prefix, now))
        .collect();
    track_flows(state, &docs);
    persist(state, docs).await;
    // Durable now: commit the next offset of every partition in the batch.
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    for r in &batch {
        let e = next.entry((r.topic.as_str(), r.partition)).or_insert(0);
        *e = (*e).max(r.offset + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        if let Err(e) = tpl.add_partition_offset(topic, partition, Offset::Offset(offset)) {
            tracing::warn!(error = %e, topic, partition, "cannot build offset commit");
        }
    }
    // Synchronous (off the async threads), so the last batch's commit is not
    // lost at shutdown. A failed commit only means redelivery, which the
    // document ids make harmless.
    let consumer = consumer.clone();
    let committed =
        tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await;
    match committed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "offset commit failed; the batch may be redelivered")
        }
        Err(e) => tracing::warn!(error = %e, "offset commit task failed"),
    }
}

fn track_flows(state: &State, docs: &[IndexedDoc]) {
    let Ok(mut flows) = state.flows.lock() else {
        return;
    };
    let now = Utc::now();
    for d in docs {
        let doc = &d.doc;
        let Some(corr) = doc.correlation_id.clone() else {
            continue;
        };
        let done = match doc.role {
            Role::Command if doc.kind == "event" => flows.on_command(PendingFlow {
                correlation_id: corr,
                command_id: doc.event_id.clone(),
                command_type: doc.event_type.clone(),
                command_time: doc.time,
                seen_at: now,
            }),
            Role::Command => None,
            _ => {
                let status = doc
                    .outcome
                    .as_ref()
                    .map_or("unknown", |o| o.status.as_str());
                flows.on_outcome(&corr, status, doc.time)
            }
        };
        if let Some(c) = done {
            tracing::info!(
                correlation_id = %c.correlation_id,
                status = %c.outcome_status,
                latency_ms = c.latency.num_milliseconds(),
                late = c.late,
                "flow completed"
            );
        }
    }
}

/// Returns once `docs` are durable: indexed, or written to the spool. A spool
/// write that fails (disk full) is retried, holding the batch's offsets back.
pub async fn persist(state: &Arc<State>, mut docs: Vec<IndexedDoc>) {
    if state.indexer.is_available() {
        match state.indexer.bulk(&docs).await {
            Ok(out) => {
                reject(state, out.rejected).await;
                if out.retry.is_empty() {
                    return;
                }
                docs = out.retry;
            }
            Err(e) => {
                tracing::warn!(error = %e, "OpenSearch unavailable; spooling");
                state.indexer.mark_unavailable();
            }
        }
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        let spool = state.spool.clone();
        let batch = docs.clone();
        match tokio::task::spawn_blocking(move || spool.append(&batch)).await {
            Ok(Ok(path)) => {
                tracing::info!(segment = %path.display(), docs = docs.len(), "batch spooled");
                return;
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot write the spool; retrying"),
            Err(e) => tracing::error!(error = %e, "spool writer panicked; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn reject(state: &Arc<State>, rejected: Vec<crate::spool::Rejected>) {
    if rejected.is_empty() {
        return;
    }
    for r in &rejected {
        tracing::error!(id = %r.doc.id, index = %r.doc.index, reason = %r.reason, "document refused by OpenSearch; kept in the rejected file");
    }
    let spool = state.spool.clone();
    match tokio::task::spawn_blocking(move || spool.reject(&rejected)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot write the rejected file"),
        Err(e) => tracing::error!(error = %e, "rejected-file writer panicked"),
    }
}

/// Watches OpenSearch: (re)installs the template when it is (back) up, and
/// replays spooled segments oldest first, deleting each once indexed.
pub async fn replay_loop(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let mut was_available = state.indexer.is_available();
    loop {
        let pause = if state.indexer.is_available() {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(500)
        };
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(pause) => {}
        }
        match state.indexer.ensure_ready().await {
            Ok(()) => {
                if !was_available {
                    tracing::info!(url = %state.indexer.url(), "OpenSearch is available");
                }
                was_available = true;
            }
            Err(e) => {
                if was_available {
                    tracing::warn!(error = %e, "OpenSearch is unavailable; new events go to the spool");
                }
                state.indexer.mark_unavailable();
                was_available = false;
                continue;
            }
        }
        if let Err(e) = replay_once(&state).await {
            tracing::warn!(error = %e, "spool replay interrupted");
        }
    }
}

/// Replays every segment; stops at the first availability failure.
pub async fn replay_once(state: &Arc<State>) -> Result<(), String> {
    let spool = state.spool.clone();
    let segments = tokio::task::spawn_blocking(move || spool.segments())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    for seg in segments {
        let spool = state.spool.clone();
        let path = seg.clone();
        let docs = tokio::task::spawn_blocking(move || spool.read(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot read {}: {e}", seg.display()))?;
        let out = match state.indexer.bulk(&docs).await {
            Ok(out) => out,
            Err(e) => {
                state.indexer.mark_unavailable();
                return Err(e);
            }
        };
        reject(state, out.rejected).await;
        let spool = state.spool.clone();
        let retry = out.retry;
        let n = docs.len();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            // Transiently refused documents move to a fresh segment first, so
            // deleting this one loses nothing.
            if !retry.is_empty() {
                spool.append(&retry)?;
            }
            spool.remove(&seg)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        tracing::info!(docs = n, "spool segment replayed");
    }
    Ok(())
}

/// Flags flows without an outcome, once a second.
pub async fn expire_loop(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let flagged = match state.flows.lock() {
            Ok(mut f) => f.expire(Utc::now()),
            Err(_) => return,
        };
        for u in flagged {
            tracing::warn!(
                correlation_id = %u.flow.correlation_id,
                command_type = u.flow.command_type.as_deref().unwrap_or_default(),
                "command has no outcome after the flow timeout"
            );
        }
    }
}
