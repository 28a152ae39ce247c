//! The consuming side: batches records from the three topics, turns them into
//! audit documents, makes each batch durable (indexed, or spooled and
//! fsync'd) before committing its offsets, and replays the spool whenever
//! OpenSearch is available.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::SpanContext;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use polystream_common::events::headers;
use polystream_common::instrument::{Store, store_op};
use polystream_common::kafka::{LagContext, process_span};
use polystream_common::metrics::{record_consumed, record_process};
use polystream_common::telemetry::sampled_trace_id;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::State;
use crate::audit::{IndexedDoc, RawRecord, Role, build};
use crate::flow::{Completed, PendingFlow};
use crate::indexer::{BulkError, BulkOutcome, Isolated, bulk_isolating};
use crate::metrics::{bounded_event_type, trace_id_of};
use crate::spool::{AppendError, ReadError};

type MonitorConsumer = StreamConsumer<LagContext>;

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

/// A consumed record waiting for its batch to become durable, with the span
/// that covers it until then and when it arrived.
struct Received {
    raw: RawRecord,
    span: tracing::Span,
    at: Instant,
}

/// A record as it arrives: counted, and given its CONSUMER span, a child of
/// the producer's span (the `traceparent` header). A request's trace so gets
/// an S3 span under S1's send (the command) and one under S2's (the outcome).
fn receive(m: &BorrowedMessage<'_>, group: &str) -> Received {
    record_consumed(m.topic(), group);
    Received {
        raw: to_raw(m),
        span: process_span(m, group),
        at: Instant::now(),
    }
}

/// Consumes until `stop` turns true, then makes the last batch durable.
///
/// Up to [`MAX_IN_FLIGHT`] batches are made durable at once (one bulk
/// request alone left OpenSearch waiting on its round trips), but a batch's
/// offsets are stored only after it and every batch before it are durable:
/// a crash never skips a record.
pub async fn consume(
    state: Arc<State>,
    consumer: Arc<MonitorConsumer>,
    mut stop: watch::Receiver<bool>,
) {
    let max = state.config.bulk_max_events;
    let wait = state.config.bulk_max_wait;
    let mut batch: Vec<Received> = Vec::with_capacity(max);
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut in_flight: VecDeque<Flushing> = VecDeque::new();
    let mut errors = polystream_common::kafka::ConsumerErrors::default();
    loop {
        let until =
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = stop.changed() => break,
            Some(done) = oldest_done(&mut in_flight), if !in_flight.is_empty() => {
                in_flight.pop_front();
                finish(&consumer, done);
            }
            () = tokio::time::sleep_until(until), if deadline.is_some() => {
                submit(&state, &consumer, &mut in_flight, std::mem::take(&mut batch)).await;
                deadline = None;
            }
            r = consumer.recv() => match r {
                Ok(m) => {
                    batch.push(receive(&m, &state.config.group_id));
                    if deadline.is_none() {
                        deadline = Some(tokio::time::Instant::now() + wait);
                    }
                    if batch.len() >= max {
                        submit(&state, &consumer, &mut in_flight, std::mem::take(&mut batch)).await;
                        deadline = None;
                    }
                }
                // No pause here: see `kafka::ConsumerErrors`.
                Err(e) => {
                    errors.record(&e);
                }
            },
        }
    }
    while let Some(task) = in_flight.pop_front() {
        finish(&consumer, task.await);
    }
    if !batch.is_empty() {
        finish(&consumer, start_flush(&state, batch).await);
    }
    // The last batch's offsets reach the broker before the process exits.
    let consumer = consumer.clone();
    let committed = tokio::task::spawn_blocking(move || {
        polystream_common::kafka::commit_stored(consumer.as_ref(), "shutdown");
    })
    .await;
    if let Err(e) = committed {
        tracing::warn!(error = %e, "final offset commit task failed");
    }
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

/// How many batches may be made durable at once.
const MAX_IN_FLIGHT: usize = 2;

/// A batch being made durable; it yields the batch back when it is.
type Flushing = tokio::task::JoinHandle<Vec<Received>>;

/// The oldest batch in flight, once durable.
async fn oldest_done(
    in_flight: &mut VecDeque<Flushing>,
) -> Option<Result<Vec<Received>, tokio::task::JoinError>> {
    match in_flight.front_mut() {
        Some(task) => Some(task.await),
        None => None,
    }
}

/// Starts making `batch` durable, first waiting, oldest first, for room.
async fn submit(
    state: &Arc<State>,
    consumer: &MonitorConsumer,
    in_flight: &mut VecDeque<Flushing>,
    batch: Vec<Received>,
) {
    if batch.is_empty() {
        return;
    }
    while in_flight.len() >= MAX_IN_FLIGHT {
        if let Some(task) = in_flight.pop_front() {
            finish(consumer, task.await);
        }
    }
    in_flight.push_back(start_flush(state, batch));
}

/// Builds the batch's documents and tracks its flows here, in arrival
/// order, then indexes (or spools) them in a task of its own.
fn start_flush(state: &Arc<State>, batch: Vec<Received>) -> Flushing {
    let now = Utc::now();
    let docs: Vec<IndexedDoc> = batch
        .iter()
        .map(|r| {
            build(
                &r.raw,
                role_of(state, &r.raw.topic),
                &state.config.index_prefix,
                now,
            )
        })
        .collect();
    track_flows(state, &batch, &docs);
    let state = state.clone();
    tokio::spawn(async move {
        let spans: Vec<tracing::Span> = batch.iter().map(|r| r.span.clone()).collect();
        let fates = persist(&state, docs.clone(), &spans).await;
        for ((r, d), fate) in batch.iter().zip(&docs).zip(&fates) {
            if *fate == Fate::Rejected {
                r.span.record("otel.status_code", "ERROR");
                r.span.record("error.type", "rejected");
            }
            record_process(
                &r.raw.topic,
                bounded_event_type(d.doc.event_type.as_deref()),
                fate.outcome(),
                r.at.elapsed(),
                &r.span,
            );
        }
        batch
    })
}

/// A durable batch, every one before it durable too: stores the next offset
/// of each of its partitions.
fn finish(consumer: &MonitorConsumer, done: Result<Vec<Received>, tokio::task::JoinError>) {
    let batch = match done {
        Ok(batch) => batch,
        // As if the flush had run here: nothing later may store offsets
        // past this batch's records.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: only when the runtime shuts down.
        Err(_) => return,
    };
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    for r in &batch {
        let e = next
            .entry((r.raw.topic.as_str(), r.raw.partition))
            .or_insert(0);
        *e = (*e).max(r.raw.offset + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        if let Err(e) = tpl.add_partition_offset(topic, partition, Offset::Offset(offset)) {
            tracing::warn!(error = %e, topic, partition, "cannot build offset commit");
        }
    }
    // Stored, not committed: the client commits stored offsets in the
    // background (see `kafka::consumer_with_lag` for why never
    // synchronously here). A failed store only means redelivery, which the
    // document ids make harmless.
    if let Err(e) = consumer.store_offsets(&tpl) {
        tracing::warn!(error = %e, "cannot store offsets; the batch may be redelivered");
    }
    // The records' spans end here: processing covers the wait for durability.
    drop(batch);
}

/// The trace a record belongs to: its span's when sampled, else its
/// `traceparent`'s (the same trace; the header is there even when this
/// process exports nothing).
fn trace_id(span: &tracing::Span, raw: &RawRecord) -> Option<String> {
    sampled_trace_id(&span.context()).or_else(|| {
        raw.headers
            .iter()
            .find(|(k, _)| k == headers::TRACEPARENT)
            .and_then(|(_, v)| trace_id_of(v))
    })
}

/// A batch's store call (one bulk request for many records) is a child of
/// the first record's span and links to every other record's span: a span per
/// record would repeat one call's timing N times, while links keep each
/// request's trace one click away from the call that made its event durable.
fn batch_parent(spans: &[tracing::Span]) -> tracing::Span {
    spans.first().cloned().unwrap_or_else(tracing::Span::none)
}

fn batch_links(spans: &[tracing::Span]) -> Vec<SpanContext> {
    spans
        .iter()
        .skip(1)
        .map(|s| s.context().span().span_context().clone())
        .filter(SpanContext::is_valid)
        .collect()
}

/// The producer spans of spooled documents (their `traceparent`), to link a
/// replay to the requests it finally indexes.
fn doc_links(docs: &[IndexedDoc]) -> Vec<SpanContext> {
    let propagator = TraceContextPropagator::new();
    docs.iter()
        .filter_map(|d| d.doc.headers.traceparent.clone())
        .map(|tp| {
            let carrier = HashMap::from([(headers::TRACEPARENT.to_owned(), tp)]);
            propagator.extract(&carrier).span().span_context().clone()
        })
        .filter(SpanContext::is_valid)
        .collect()
}

/// Adds `links` to the current span (inside a store call: its span).
fn link_current(links: Vec<SpanContext>) {
    let span = tracing::Span::current();
    for l in links {
        span.add_link(l);
    }
}

/// One bulk request as an OpenSearch store call, linked to `links`.
async fn bulk(
    state: &State,
    docs: &[IndexedDoc],
    links: Vec<SpanContext>,
) -> Result<BulkOutcome, BulkError> {
    store_op(Store::Opensearch, "bulk", async {
        link_current(links);
        state.indexer.bulk(docs).await
    })
    .await
}

/// `docs` in bulk requests; a request OpenSearch refuses as a whole is
/// bisected so only the documents it refuses are rejected.
async fn bulk_all(state: &State, docs: &[IndexedDoc], links: Vec<SpanContext>) -> Isolated {
    let out = bulk_isolating(docs, |part: Vec<IndexedDoc>| {
        let links = links.clone();
        async move { bulk(state, &part, links).await }
    })
    .await;
    if out.requests > 1 {
        tracing::warn!(
            docs = docs.len(),
            requests = out.requests,
            refused = out.outcome.rejected.len(),
            "OpenSearch refused a bulk request as a whole; isolated the refused documents"
        );
    }
    out
}

fn track_flows(state: &State, batch: &[Received], docs: &[IndexedDoc]) {
    let completed: Vec<(usize, Completed)> = {
        let Ok(mut flows) = state.flows.lock() else {
            return;
        };
        let now = Utc::now();
        let mut completed = Vec::new();
        for (i, (r, d)) in batch.iter().zip(docs).enumerate() {
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
                    trace_id: trace_id(&r.span, &r.raw),
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
                completed.push((i, c));
            }
        }
        state
            .metrics
            .flows_unanswered
            .set(i64::try_from(flows.flagged_count()).unwrap_or(i64::MAX));
        completed
    };
    for (i, c) in completed {
        let latency = c.latency.num_milliseconds() as f64 / 1000.0;
        // The flow's own trace first (the command's), else this record's.
        let trace = c
            .trace_id
            .clone()
            .or_else(|| trace_id(&batch[i].span, &batch[i].raw));
        state
            .metrics
            .flow(c.command_type.as_deref(), &c.outcome_status, latency, trace);
        batch[i].span.in_scope(|| {
            tracing::info!(
                correlation_id = %c.correlation_id,
                status = %c.outcome_status,
                latency_ms = c.latency.num_milliseconds(),
                late = c.late,
                "flow completed"
            );
        });
    }
}

/// What became of one document of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Indexed,
    Spooled,
    /// Refused for good by OpenSearch; kept in `rejected.jsonl`.
    Rejected,
}

impl Fate {
    /// The `outcome` label of `messaging_process_duration_seconds`.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::Indexed => "indexed",
            Self::Spooled => "spooled",
            Self::Rejected => "failed",
        }
    }
}

/// Each document's fate after a bulk request, in order: refused ones are
/// rejected, transiently refused ones go to the spool (matched by document
/// id; a batch's documents with the same id are the same event).
pub fn fates(docs: &[IndexedDoc], out: &BulkOutcome) -> Vec<Fate> {
    let rejected: HashSet<&str> = out.rejected.iter().map(|r| r.doc.id.as_str()).collect();
    let retry: HashSet<&str> = out.retry.iter().map(|d| d.id.as_str()).collect();
    docs.iter()
        .map(|d| {
            if rejected.contains(d.id.as_str()) {
                Fate::Rejected
            } else if retry.contains(d.id.as_str()) {
                Fate::Spooled
            } else {
                Fate::Indexed
            }
        })
        .collect()
}

/// Counts the indexed documents per topic.
fn count_indexed(state: &State, docs: &[IndexedDoc], fates: &[Fate]) {
    let mut per_topic: HashMap<&str, u64> = HashMap::new();
    for (d, f) in docs.iter().zip(fates) {
        if *f == Fate::Indexed {
            *per_topic.entry(d.doc.topic.as_str()).or_default() += 1;
        }
    }
    for (topic, n) in per_topic {
        state.metrics.indexed(topic, n);
    }
}

/// Returns once `docs` are durable: indexed, or written to the spool, with
/// what became of each. While the spool is full (or cannot be written) the
/// batch is held and retried, so its offsets are not committed and the
/// consume loop, waiting here, reads nothing more. `spans` are the records' spans.
pub async fn persist(
    state: &Arc<State>,
    docs: Vec<IndexedDoc>,
    spans: &[tracing::Span],
) -> Vec<Fate> {
    let parent = batch_parent(spans);
    let mut pending = docs.clone();
    let mut rejected: HashSet<String> = HashSet::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        if state.indexer.is_available() {
            let res = bulk_all(state, &pending, batch_links(spans))
                .instrument(parent.clone())
                .await;
            count_indexed(state, &pending, &fates(&pending, &res.outcome));
            rejected.extend(res.outcome.rejected.iter().map(|r| r.doc.id.clone()));
            reject(state, res.outcome.rejected).await;
            if let Some(e) = res.unavailable {
                tracing::warn!(error = %e, "OpenSearch unavailable; spooling");
                state.indexer.mark_unavailable();
            }
            pending = res.outcome.retry;
            if pending.is_empty() {
                state.spool.set_full(false);
                return final_fates(&docs, &rejected, &[]);
            }
        }
        match spool_append(state, &pending, spans, &parent).await {
            Ok(path) => {
                state.spool.set_full(false);
                state.metrics.spooled.inc_by(pending.len() as u64);
                tracing::info!(segment = %path.display(), docs = pending.len(), "batch spooled");
                return final_fates(&docs, &rejected, &pending);
            }
            Err(AppendError::Full { used, needed, max }) => {
                if !state.spool.is_full() {
                    tracing::error!(
                        spool_bytes = used,
                        batch_bytes = needed,
                        spool_max_bytes = max,
                        "the spool is full: holding the batch, not consuming or committing until replay frees room"
                    );
                }
                state.spool.set_full(true);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(AppendError::Io(e)) => {
                tracing::error!(error = %e, "cannot write the spool; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Each document's fate once the batch is durable.
fn final_fates(
    docs: &[IndexedDoc],
    rejected: &HashSet<String>,
    spooled: &[IndexedDoc],
) -> Vec<Fate> {
    let spooled: HashSet<&str> = spooled.iter().map(|d| d.id.as_str()).collect();
    docs.iter()
        .map(|d| {
            if rejected.contains(&d.id) {
                Fate::Rejected
            } else if spooled.contains(d.id.as_str()) {
                Fate::Spooled
            } else {
                Fate::Indexed
            }
        })
        .collect()
}

/// One spool append, off the async threads, as a `spool append` span.
async fn spool_append(
    state: &Arc<State>,
    docs: &[IndexedDoc],
    spans: &[tracing::Span],
    parent: &tracing::Span,
) -> Result<std::path::PathBuf, AppendError> {
    let span = tracing::info_span!(
        parent: parent,
        "spool_append",
        otel.name = "spool append",
        otel.kind = "internal",
        polystream.spool.documents = docs.len(),
    );
    for l in batch_links(spans) {
        span.add_link(l);
    }
    let spool = state.spool.clone();
    let batch = docs.to_vec();
    tokio::task::spawn_blocking(move || spool.append(&batch))
        .instrument(span)
        .await
        .map_err(|e| AppendError::Io(std::io::Error::other(e)))?
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

/// Replays every segment; stops at the first availability failure. A
/// segment that cannot be read back is set aside, so it never blocks the rest.
pub async fn replay_once(state: &Arc<State>) -> Result<(), String> {
    let spool = state.spool.clone();
    let segments = tokio::task::spawn_blocking(move || spool.segments())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    for seg in segments {
        let spool = state.spool.clone();
        let path = seg.clone();
        let docs = match tokio::task::spawn_blocking(move || spool.read(&path))
            .await
            .map_err(|e| e.to_string())?
        {
            Ok(docs) => docs,
            Err(ReadError::Missing) => continue,
            Err(ReadError::Corrupt(reason)) => {
                set_aside(state, seg, &reason).await?;
                continue;
            }
        };
        // Replays are background work: a root span, linked to the requests
        // whose events it indexes.
        let span = tracing::info_span!(
            parent: None,
            "spool_replay",
            otel.name = "spool replay",
            otel.kind = "internal",
            polystream.spool.documents = docs.len(),
        );
        let res = bulk_all(state, &docs, doc_links(&docs))
            .instrument(span)
            .await;
        if let Some(e) = &res.unavailable {
            state.indexer.mark_unavailable();
            if res.outcome.retry.len() == docs.len() {
                // Nothing taken: the segment stays as it is.
                return Err(e.clone());
            }
        }
        count_indexed(state, &docs, &fates(&docs, &res.outcome));
        reject(state, res.outcome.rejected).await;
        let spool = state.spool.clone();
        let retry = res.outcome.retry;
        let n = docs.len();
        // Documents still to retry move to a fresh segment first, so deleting
        // this one loses nothing.
        tokio::task::spawn_blocking(move || spool.replace(&seg, &retry))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if let Some(e) = res.unavailable {
            return Err(e);
        }
        tracing::info!(docs = n, "spool segment replayed");
    }
    Ok(())
}

/// Renames a segment that cannot be replayed to `*.corrupt` (counted, kept).
async fn set_aside(
    state: &Arc<State>,
    seg: std::path::PathBuf,
    reason: &str,
) -> Result<(), String> {
    let spool = state.spool.clone();
    let from = seg.clone();
    let moved = tokio::task::spawn_blocking(move || spool.set_aside(&from))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| {
            format!(
                "cannot set aside the corrupt segment {}: {e}",
                seg.display()
            )
        })?;
    tracing::error!(
        segment = %seg.display(),
        moved_to = %moved.display(),
        reason,
        "spool segment cannot be read back; set aside and skipped (kept for inspection)"
    );
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
            Ok(mut f) => {
                let flagged = f.expire(Utc::now());
                state
                    .metrics
                    .flows_unanswered
                    .set(i64::try_from(f.flagged_count()).unwrap_or(i64::MAX));
                flagged
            }
            Err(_) => return,
        };
        for u in flagged {
            tracing::warn!(
                correlation_id = %u.flow.correlation_id,
                command_type = u.flow.command_type.as_deref().unwrap_or_default(),
                trace_id = u.flow.trace_id.as_deref().unwrap_or_default(),
                "command has no outcome after the flow timeout"
            );
        }
    }
}
