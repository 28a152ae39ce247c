//! S2, the processor: consumes commands from `user_events`, applies the
//! cross-store integrity rules, persists each command to the store that owns
//! it — effectively once — and publishes its outcome on `response_events` and
//! in the command's Redis status.
//!
//! - [`consumer`]: the consumer group, one ordered worker per partition;
//! - [`pipeline`]: one event from decoding to outcome, retrying store faults
//!   (transient ones without bound, permanent ones a bounded number of times);
//! - [`handlers`]: one dispatch over the commands, handlers grouped by store
//!   area, and the processed-event ledger;
//! - [`recommend`]: recommendation scoring (pure);
//! - [`dlq`]: dead-letter headers and reasons (pure);
//! - [`metrics`]: the Prometheus registry and S2's own metrics;
//! - [`errors`]: the retry policy over faults classified by `polystream_stores::fault`.

pub mod batch;
pub mod consumer;
pub mod dlq;
pub mod errors;
pub mod handlers;
pub mod metrics;
pub mod pipeline;
pub mod recommend;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use mongodb::bson::doc;
use polystream_common::config::{
    ConfigErrors, ProcessEnv, Reader, Source, StoreEndpoints, TopicLayout, Topics, redact_url,
};
use polystream_common::health::{self, Check};
use polystream_common::progress::Progress;
use polystream_common::server::ServerLimits;
use polystream_common::status::StatusStore;
use polystream_stores::{mongo, pg};
use rdkafka::consumer::Consumer;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::handlers::Stores;
use crate::pipeline::Pipeline;

/// The processor's settings (see docs/configuration.md, "S2 processor").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub stores: StoreEndpoints,
    pub topics: Topics,
    /// `HTTP_ADDR`: health, readiness and (without `METRICS_ADDR`) metrics.
    pub http_addr: SocketAddr,
    /// `METRICS_ADDR`: when set, `/metrics` is served there instead.
    pub metrics_addr: Option<SocketAddr>,
    /// `HTTP_*` limits of the HTTP listeners.
    pub server: ServerLimits,
    /// `KAFKA_GROUP_ID`.
    pub group_id: String,
    /// `KAFKA_PARTITIONS` and `KAFKA_REPLICATION_FACTOR` of the topics it creates.
    pub layout: TopicLayout,
    /// `SOURCE`: CloudEvents `source` of the outcomes.
    pub source: String,
    /// `PERMANENT_FAULT_ATTEMPTS`: attempts of a command a store rejects
    /// permanently before it fails (`store_rejected`) and is dead-lettered.
    pub permanent_attempts: u32,
    /// `TITLE_CACHE_TTL_SECONDS`: lifetime of a title cached on a warm
    /// request — the same setting and default as S1's cache fill.
    pub title_cache_ttl: Duration,
    /// `STALL_AFTER_SECONDS`: when a partition with lag and no progress counts as stalled.
    pub stall_after: Duration,
    /// `BATCH_MAX_EVENTS`: most events of one partition processed together
    /// (1: one at a time).
    pub batch_max: usize,
    /// `MONGODB_WRITERS`: most MongoDB/Redis commands applied at once across
    /// partitions (0: no limit).
    pub mongodb_writers: u32,
}

impl Config {
    pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8001";

    pub fn read<S: Source>(r: &mut Reader<S>) -> Self {
        let stores = StoreEndpoints::read(r);
        let topics = Topics::read(r);
        let http_addr = r.parse("HTTP_ADDR", SocketAddr::from(([127, 0, 0, 1], 8001)));
        let metrics_addr = polystream_common::metrics::read_addr(r);
        let server = ServerLimits::read(r);
        let group_id = r.string("KAFKA_GROUP_ID", "polystream-processor");
        let layout = TopicLayout::read(r);
        let source = r.string("SOURCE", "/polystream/s2-processor");
        let permanent_attempts =
            at_least_one(r, "PERMANENT_FAULT_ATTEMPTS", errors::PERMANENT_ATTEMPTS);
        let title_cache_ttl = Duration::from_secs(u64::from(at_least_one(
            r,
            "TITLE_CACHE_TTL_SECONDS",
            u32::try_from(polystream_stores::cache::TITLE_TTL.as_secs()).unwrap_or(300),
        )));
        let stall_after = polystream_common::progress::read_stall_after(r);
        let batch_max = at_least_one(r, "BATCH_MAX_EVENTS", 256) as usize;
        let mongodb_writers = r.parse("MONGODB_WRITERS", 0);
        Self {
            mongodb_writers,
            batch_max,
            stores,
            topics,
            http_addr,
            metrics_addr,
            server,
            group_id,
            layout,
            source,
            stall_after,
            permanent_attempts,
            title_cache_ttl,
        }
    }

    pub fn from_env() -> Result<Self, ConfigErrors> {
        let mut r = Reader::new(ProcessEnv);
        let c = Self::read(&mut r);
        r.finish().map(|()| c)
    }
}

fn at_least_one<S: Source>(r: &mut Reader<S>, var: &str, default: u32) -> u32 {
    let v = r.parse(var, default);
    if v == 0 {
        r.invalid(var, "0", "must be at least 1");
        return default;
    }
    v
}

/// A started processor.
pub struct Running {
    /// Where `/health`, `/ready` and `/metrics` answer (useful with port 0).
    pub http_addr: SocketAddr,
    /// Where `/metrics` answers when `METRICS_ADDR` is set.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    consumer: JoinHandle<()>,
    http: JoinHandle<()>,
    metrics: Option<JoinHandle<()>>,
}

impl Running {
    /// Stops consuming, finishes the events in flight, commits, and returns.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.consumer.await.context("consumer task panicked")?;
        self.http.await.context("HTTP task panicked")?;
        if let Some(m) = self.metrics {
            m.await.context("metrics task panicked")?;
        }
        Ok(())
    }
}

/// Connects the stores, migrates, creates topics, and starts consuming.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let ep = &config.stores;
    let pg_pool = pg::connect(&ep.database_url, 10).await.with_context(|| {
        format!(
            "cannot connect to PostgreSQL at {}",
            redact_url(&ep.database_url)
        )
    })?;
    pg::migrate(&pg_pool)
        .await
        .context("PostgreSQL migrations failed")?;
    let mongo_db = mongo::connect(&ep.mongodb_uri).await.with_context(|| {
        format!(
            "cannot connect to MongoDB at {}",
            redact_url(&ep.mongodb_uri)
        )
    })?;
    mongo::ensure_indexes(&mongo_db).await.with_context(|| {
        format!(
            "cannot create MongoDB indexes at {}",
            redact_url(&ep.mongodb_uri)
        )
    })?;
    let redis_client = redis::Client::open(ep.redis_url.as_str())
        .with_context(|| format!("invalid REDIS_URL {}", redact_url(&ep.redis_url)))?;
    let redis_con = polystream_stores::keys::connect(redis_client.clone())
        .await
        .with_context(|| format!("cannot connect to Redis at {}", redact_url(&ep.redis_url)))?;
    let t = &config.topics;
    let kafka = ep.kafka();
    polystream_common::kafka::ensure_platform_topics(&kafka, &config.topics, config.layout)
        .await
        .with_context(|| {
            format!(
                "cannot create Kafka topics at {}",
                ep.kafka_bootstrap_servers
            )
        })?;
    let producer = polystream_common::kafka::publisher(
        &kafka,
        "s2-processor",
        polystream_common::kafka::DEFAULT_DELIVERY_TIMEOUT,
    )?;
    let (consumer, lanes) = consumer::create(&kafka, &config.group_id)?;
    consumer.subscribe(&[&t.user_events])?;

    let heads_since = polystream_stores::views::heads_since(&mongo_db)
        .await
        .with_context(|| format!("cannot read MongoDB at {}", redact_url(&ep.mongodb_uri)))?;
    let stores = Stores {
        heads_since,
        mongo_writers: (config.mongodb_writers > 0)
            .then(|| Arc::new(tokio::sync::Semaphore::new(config.mongodb_writers as usize))),
        pg: pg_pool,
        mongo: mongo_db,
        redis: redis_con.clone(),
        status: StatusStore::new(redis_client, redis_con),
        title_cache_ttl: config.title_cache_ttl,
    };
    let (metrics, registry) = metrics::Metrics::new(&config.topics, &config.group_id);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let pipeline = Arc::new(Pipeline {
        stores: stores.clone(),
        producer: producer.clone(),
        topics: config.topics.clone(),
        source: config.source.clone(),
        shutdown: shutdown_rx.clone(),
        metrics,
        group: config.group_id.clone(),
        permanent_attempts: config.permanent_attempts,
        batch_max: config.batch_max,
    });

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on HTTP_ADDR {}", config.http_addr))?;
    let http_addr = listener.local_addr()?;
    let progress = Progress::new(&config.group_id, config.stall_after);
    let mut app = router(stores, producer, &progress);
    let (metrics_addr, metrics_task) = match config.metrics_addr {
        // Its own listener: /metrics is then not on HTTP_ADDR.
        Some(addr) => {
            let listener = polystream_common::metrics::bind(addr).await?;
            let addr = listener.local_addr()?;
            let stop = stopped(shutdown_rx.clone());
            let task = tokio::spawn(async move {
                if let Err(e) = polystream_common::metrics::serve(listener, registry, stop).await {
                    tracing::error!(error = %e, "metrics server failed");
                }
            });
            (Some(addr), Some(task))
        }
        None => {
            app = app.merge(polystream_common::metrics::router(registry));
            (None, None)
        }
    };
    let graceful = stopped(shutdown_rx.clone());
    let server_limits = config.server;
    let http = tokio::spawn(async move {
        if let Err(e) =
            polystream_common::server::serve(listener, app, server_limits, graceful).await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    tokio::spawn(polystream_common::progress::poll(
        progress,
        kafka.clone(),
        vec![t.user_events.clone()],
        shutdown_rx.clone(),
    ));
    let consumer = tokio::spawn(consumer::run(pipeline, consumer, lanes, shutdown_rx));
    tracing::info!(%http_addr, topic = %t.user_events, group = %config.group_id, "processor started");
    Ok(Running {
        http_addr,
        metrics_addr,
        shutdown: shutdown_tx,
        consumer,
        http,
        metrics: metrics_task,
    })
}

/// Resolves once the shutdown flag is set (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            break;
        }
    }
}

/// Runs until `shutdown` resolves, then stops gracefully.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mut running = start(config).await?;
    tokio::select! {
        () = shutdown => {
            tracing::info!("shutdown requested");
            running.stop().await
        }
        // The receive loop only returns when told to stop, so this is a panic:
        // exit so the orchestrator restarts the process.
        r = &mut running.consumer => {
            r.context("consumer task panicked")?;
            anyhow::bail!("the consumer stopped unexpectedly")
        }
    }
}

fn router(
    stores: Stores,
    producer: polystream_common::kafka::Publisher,
    progress: &Arc<Progress>,
) -> Router {
    let s = stores.clone();
    let pg_check = Check::new("postgresql", move || {
        let pool = s.pg.clone();
        async move {
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    });
    let s = stores.clone();
    let mongo_check = Check::new("mongodb", move || {
        let db = s.mongo.clone();
        async move {
            db.run_command(doc! {"ping": 1})
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    });
    let redis_check = Check::redis(stores.redis.clone());
    let kafka_check = Check::kafka(producer);
    health::router(vec![
        pg_check,
        mongo_check,
        redis_check,
        kafka_check,
        progress.check(),
    ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let mut r = Reader::new([("KAFKA_PARTITIONS", "3"), ("HTTP_ADDR", "0.0.0.0:9001")]);
        let c = Config::read(&mut r);
        r.finish().unwrap();
        assert_eq!(c.layout.partitions, 3);
        assert_eq!(c.http_addr.to_string(), "0.0.0.0:9001");
        assert_eq!(c.group_id, "polystream-processor");
        assert_eq!(c.layout.replication, 1);
        assert_eq!(c.source, "/polystream/s2-processor");
        assert_eq!(c.topics.user_events, "user_events");
        assert_eq!(c.metrics_addr, None);
        assert_eq!(c.permanent_attempts, 3);
        assert_eq!(c.batch_max, 256);
        assert_eq!(c.mongodb_writers, 0);
        assert_eq!(c.title_cache_ttl, Duration::from_secs(300));
        let mut r = Reader::new([("METRICS_ADDR", "0.0.0.0:9090")]);
        let c = Config::read(&mut r);
        r.finish().unwrap();
        assert_eq!(c.metrics_addr, Some("0.0.0.0:9090".parse().unwrap()));
    }

    #[test]
    fn bad_values_are_named() {
        let mut r = Reader::new([
            ("KAFKA_PARTITIONS", "0"),
            ("HTTP_ADDR", "nowhere"),
            ("METRICS_ADDR", "9090"),
            ("PERMANENT_FAULT_ATTEMPTS", "0"),
            ("BATCH_MAX_EVENTS", "0"),
        ]);
        Config::read(&mut r);
        let text = r.finish().unwrap_err().to_string();
        assert!(text.contains("METRICS_ADDR=\"9090\" is invalid"), "{text}");
        assert!(text.contains("KAFKA_PARTITIONS=\"0\" is invalid"), "{text}");
        assert!(text.contains("HTTP_ADDR=\"nowhere\" is invalid"), "{text}");
        assert!(
            text.contains("PERMANENT_FAULT_ATTEMPTS=\"0\" is invalid"),
            "{text}"
        );
        assert!(text.contains("BATCH_MAX_EVENTS=\"0\" is invalid"), "{text}");
    }
}
