//! The consumer group: one receive loop feeding one worker task per assigned
//! partition, so partitions progress concurrently and each strictly in order.
//!
//! A worker takes whatever its partition has waiting (up to
//! `BATCH_MAX_EVENTS`) and handles it as one batch (`crate::batch`), or
//! event by event when the batch cannot be done that way.
//!
//! Offsets are *stored* by a worker only after its events are done (effects
//! durable, outcomes published, statuses recorded); librdkafka auto-commits
//! stored offsets every second, and the processor commits them synchronously
//! on revocation and at shutdown. A redelivery after a crash in between is
//! harmless: every handler is effectively-once.
//!
//! Rebalances: when a partition is revoked its worker is told to stop, the
//! callback waits (bounded) for the event in flight to finish and commits, so
//! the next owner starts right after it instead of racing it. A partition
//! that is assigned is always resumed: librdkafka keeps an application pause
//! across a revoke and re-assign of the same partition, so one paused for
//! backlog before a broker restart would otherwise never fetch again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::pipeline::{Incoming, Pipeline};

/// Pause a partition's fetching above this backlog, resume below the low mark,
/// so a partition waiting on a store does not buffer without bound. The low
/// mark leaves a few batches waiting (`BATCH_MAX_EVENTS` is 256 by default)
/// while fetching starts again, so a busy partition is never idle.
const BACKLOG_HIGH: usize = 2000;
const BACKLOG_LOW: usize = 1000;
/// How long a revocation waits for the event in flight.
const REVOKE_WAIT: Duration = Duration::from_secs(15);

type PartitionKey = (String, i32);

/// One assigned partition's worker state, shared with the rebalance callback.
#[derive(Default)]
pub struct Lane {
    stop: AtomicBool,
    busy: AtomicBool,
    backlog: AtomicUsize,
    /// Fetching paused for backlog. Per lane, so a re-assigned partition
    /// (a new lane, resumed on assignment) never inherits a stale pause.
    /// A lock rather than a flag: the flag and librdkafka's own pause state
    /// change together, or a pause could land after the resume it raced.
    paused: Mutex<bool>,
}

impl Lane {
    /// Pauses or resumes fetching the partition if that changes anything.
    fn set_paused(&self, consumer: &ProcessorConsumer, topic: &str, partition: i32, pause: bool) {
        let mut paused = self.paused.lock().unwrap_or_else(|p| p.into_inner());
        if *paused == pause {
            return;
        }
        let tpl = one(topic, partition);
        let done = if pause {
            consumer.pause(&tpl)
        } else {
            consumer.resume(&tpl)
        };
        match done {
            Ok(()) => *paused = pause,
            Err(e) => tracing::warn!(error = %e, pause, "pausing or resuming a partition failed"),
        }
    }
}

type Lanes = Arc<Mutex<HashMap<PartitionKey, Arc<Lane>>>>;

pub struct Context {
    lanes: Lanes,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let revoked: Vec<Arc<Lane>> = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
            tpl.elements()
                .iter()
                .filter_map(|e| lanes.remove(&(e.topic().to_owned(), e.partition())))
                .collect()
        };
        for lane in &revoked {
            lane.stop.store(true, Ordering::SeqCst);
        }
        let wait = || {
            let deadline = Instant::now() + REVOKE_WAIT;
            while revoked.iter().any(|l| l.busy.load(Ordering::SeqCst)) && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        // The callback runs inside the receive loop's poll; on a multi-thread
        // runtime hand this thread's queued tasks (the workers) to another
        // thread while we wait for them.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            _ => wait(),
        }
        polystream_common::kafka::commit_stored(base, "revocation");
        tracing::info!(partitions = ?names(tpl), "partitions revoked");
    }

    fn post_rebalance(&self, base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // A pause for backlog belongs to the assignment that set it.
            if let Err(e) = base.resume(tpl) {
                tracing::warn!(error = %e, "resuming newly assigned partitions failed");
            }
            tracing::info!(partitions = ?names(tpl), "partitions assigned");
        }
    }
}

fn names(tpl: &TopicPartitionList) -> Vec<String> {
    tpl.elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect()
}

pub type ProcessorConsumer = StreamConsumer<Context>;

/// A manual-offset-store consumer in `group` (see the module docs).
pub fn create(
    kafka: &polystream_common::kafka::Connection,
    group: &str,
) -> KafkaResult<(Arc<ProcessorConsumer>, Lanes)> {
    let lanes: Lanes = Arc::default();
    let consumer: ProcessorConsumer = kafka
        .client_config()
        .set("group.id", group)
        .set("client.id", "s2-processor")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        .create_with_context(Context {
            lanes: lanes.clone(),
        })?;
    Ok((Arc::new(consumer), lanes))
}

fn one(topic: &str, partition: i32) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    tpl
}

/// Waits until the shutdown flag is set (never, if its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The receive loop; returns after a graceful shutdown.
pub async fn run(
    pipeline: Arc<Pipeline>,
    consumer: Arc<ProcessorConsumer>,
    lanes: Lanes,
    shutdown: watch::Receiver<bool>,
) {
    let mut workers: HashMap<PartitionKey, (Arc<Lane>, mpsc::UnboundedSender<Incoming>)> =
        HashMap::new();
    let mut errors = polystream_common::kafka::ConsumerErrors::default();
    let mut tasks = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let stop = stopped(shutdown);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            _ = tick.tick() => {
                workers.retain(|_, (lane, _)| !lane.stop.load(Ordering::SeqCst));
                // Workers resume their partition themselves; this catches
                // a resume that failed.
                for (k, (lane, _)) in &workers {
                    if lane.backlog.load(Ordering::SeqCst) <= BACKLOG_LOW {
                        lane.set_paused(&consumer, &k.0, k.1, false);
                    }
                }
                while tasks.try_join_next().is_some() {}
            }
            received = consumer.recv() => {
                let m = match received {
                    Ok(m) => {
                        polystream_common::metrics::record_consumed(m.topic(), &pipeline.group);
                        Incoming::from_message(&m, &pipeline.group)
                    }
                    // No pause here: see `kafka::ConsumerErrors`.
                    Err(e) => {
                        errors.record(&e);
                        continue;
                    }
                };
                let key = (m.topic.clone(), m.partition);
                let lane = {
                    let mut l = lanes.lock().unwrap_or_else(|p| p.into_inner());
                    l.entry(key.clone()).or_default().clone()
                };
                let current = workers.get(&key).filter(|(w, _)| Arc::ptr_eq(w, &lane));
                let tx = match current {
                    Some((_, tx)) => tx.clone(),
                    None => {
                        let (tx, rx) = mpsc::unbounded_channel();
                        tasks.spawn(worker(pipeline.clone(), consumer.clone(), lane.clone(), rx));
                        workers.insert(key.clone(), (lane.clone(), tx.clone()));
                        tx
                    }
                };
                let backlog = lane.backlog.fetch_add(1, Ordering::SeqCst) + 1;
                if tx.send(m).is_err() {
                    lane.backlog.fetch_sub(1, Ordering::SeqCst);
                }
                if backlog > BACKLOG_HIGH {
                    lane.set_paused(&consumer, &key.0, key.1, true);
                }
            }
        }
    }
    tracing::info!("stopping: finishing events in flight");
    for (lane, _) in workers.values() {
        lane.stop.store(true, Ordering::SeqCst);
    }
    workers.clear();
    while tasks.join_next().await.is_some() {}
    polystream_common::kafka::commit_stored(consumer.as_ref(), "shutdown");
    consumer.unsubscribe();
    tracing::info!("consumer stopped");
}

async fn worker(
    pipeline: Arc<Pipeline>,
    consumer: Arc<ProcessorConsumer>,
    lane: Arc<Lane>,
    mut rx: mpsc::UnboundedReceiver<Incoming>,
) {
    let max = pipeline.batch_max.max(1);
    while let Some(first) = rx.recv().await {
        // Whatever else already waits, up to the batch size: under load the
        // events go together, alone one is handled at once.
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let left = lane
            .backlog
            .fetch_sub(batch.len(), Ordering::SeqCst)
            .saturating_sub(batch.len());
        if left <= BACKLOG_LOW
            && let Some(m) = batch.first()
        {
            // Fetch again now, while what is left is processed.
            lane.set_paused(&consumer, &m.topic, m.partition, false);
        }
        // busy is raised before stop is re-read, so a revocation either sees
        // us busy and waits, or we see its stop and never start.
        lane.busy.store(true, Ordering::SeqCst);
        if lane.stop.load(Ordering::SeqCst) {
            lane.busy.store(false, Ordering::SeqCst);
            break;
        }
        let mut done_upto = None;
        let mut stopped = false;
        if batch.len() > 1 && pipeline.handle_batch(&batch).await {
            done_upto = batch.last().map(|m| m.offset);
        } else {
            for m in &batch {
                if !pipeline.handle(m, &lane.stop).await {
                    stopped = true;
                    break;
                }
                done_upto = Some(m.offset);
            }
        }
        if let (Some(offset), Some(m)) = (done_upto, batch.first()) {
            let mut tpl = TopicPartitionList::new();
            let stored = tpl
                .add_partition_offset(&m.topic, m.partition, Offset::Offset(offset + 1))
                .and_then(|()| consumer.store_offsets(&tpl));
            if let Err(e) = stored {
                // The partition was revoked meanwhile: its next owner sees
                // these events again and republishes the recorded outcomes.
                tracing::debug!(error = %e, "offset not stored");
            }
        }
        lane.busy.store(false, Ordering::SeqCst);
        if stopped {
            break;
        }
    }
}
