//! S3 monitor: indexes every event of the platform into OpenSearch for audit,
//! spooling to local disk while OpenSearch is away, and tracks each command's
//! flow to its outcome.
//!
//! - [`audit`]: a Kafka record → an audit document (pure);
//! - [`redact`]: sensitive fields removed before indexing (pure);
//! - [`flow`]: command/outcome pairing and timeouts (pure state machine);
//! - [`spool`]: durable JSON-lines segments;
//! - [`indexer`]: OpenSearch template, bulk, search;
//! - [`ingest`]: the consume → persist → commit loop and spool replay;
//! - [`metrics`]: S3's own Prometheus metrics;
//! - [`api`]: the HTTP API.

pub mod api;
pub mod audit;
pub mod config;
pub mod flow;
pub mod indexer;
pub mod ingest;
pub mod metrics;
pub mod redact;
pub mod spool;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use polystream_common::kafka::LagContext;
use polystream_common::progress::Progress;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::Config;
use flow::FlowTracker;
use indexer::Indexer;
use metrics::Metrics;
use spool::Spool;

/// Most flows tracked at once (pending, flagged, or early outcomes, each).
const FLOW_CAP: usize = 100_000;

/// What the tasks and handlers share.
pub struct State {
    pub config: Config,
    pub indexer: Indexer,
    pub spool: Arc<Spool>,
    pub flows: Mutex<FlowTracker>,
    pub consumer: Arc<StreamConsumer<LagContext>>,
    pub metrics: Metrics,
    /// The group's real lag and stalled partitions, from the broker.
    pub progress: Arc<Progress>,
}

/// A running monitor.
pub struct Monitor {
    /// Where the HTTP API listens (the real port when `HTTP_ADDR` asked for 0).
    pub addr: SocketAddr,
    /// Where `/metrics` answers when `METRICS_ADDR` is set (else on `addr`).
    pub metrics_addr: Option<SocketAddr>,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<std::io::Result<()>>,
    metrics_server: Option<JoinHandle<std::io::Result<()>>>,
}

impl Monitor {
    /// Opens the spool, subscribes to the three topics, installs the index
    /// template (or leaves that to the health loop when OpenSearch is down)
    /// and starts serving.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let spool = Spool::open(&config.spool_dir, config.spool_max_bytes).with_context(|| {
            format!(
                "cannot open the spool directory {}",
                config.spool_dir.display()
            )
        })?;
        let indexer = Indexer::new(config.opensearch_url.as_deref(), &config.index_prefix)?;
        let client_id = format!("s3-monitor-{}", std::process::id());
        let consumer = polystream_common::kafka::consumer_with_lag(
            &config.kafka,
            &config.group_id,
            &client_id,
        )
        .context("cannot create the Kafka consumer")?;
        let t = &config.topics;
        // Created here too (as S2 does) so S3 never subscribes to a topic that
        // does not exist yet: librdkafka would notice it only minutes later.
        polystream_common::kafka::ensure_platform_topics(
            &config.kafka,
            &config.topics,
            config.layout,
        )
        .await
        .with_context(|| {
            format!(
                "cannot create Kafka topics at {}",
                config.kafka.bootstrap_servers
            )
        })?;
        consumer
            .subscribe(&[&t.user_events, &t.response_events, &t.dead_letter])
            .context("cannot subscribe to the Kafka topics")?;
        if config.spool_only() {
            tracing::warn!(
                spool = %config.spool_dir.display(),
                "OPENSEARCH_URL is empty: no OpenSearch configured, every event is kept in the spool and the audit API answers 503"
            );
        } else if let Err(e) = indexer.ensure_ready().await {
            tracing::warn!(error = %e, url = %indexer.url(), "OpenSearch unavailable at start; spooling until it answers");
        }
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot listen on HTTP_ADDR={}", config.http_addr))?;
        let addr = listener.local_addr()?;
        let mut registry = polystream_common::metrics::Metrics::new()
            .with_consumer()
            .with_http();
        for topic in [&t.user_events, &t.response_events, &t.dead_letter] {
            polystream_common::metrics::preregister_consumer(topic, &config.group_id);
        }
        let metrics = Metrics::register(registry.registry_mut(), &config.topics, spool.gauges());
        let registry = registry.finish();
        let metrics_listener = match config.metrics_addr {
            Some(a) => Some(polystream_common::metrics::bind(a).await?),
            None => None,
        };
        let metrics_addr = match &metrics_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let progress = Progress::new(&config.group_id, config.stall_after);
        let state = Arc::new(State {
            metrics,
            progress: progress.clone(),
            flows: Mutex::new(FlowTracker::new(config.flow_timeout, FLOW_CAP)),
            config,
            indexer,
            spool: Arc::new(spool),
            consumer: Arc::new(consumer),
        });
        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(ingest::consume(
                state.clone(),
                state.consumer.clone(),
                stopped.clone(),
            )),
            tokio::spawn(ingest::replay_loop(state.clone(), stopped.clone())),
            tokio::spawn(ingest::expire_loop(state.clone(), stopped.clone())),
            tokio::spawn(polystream_common::progress::poll(
                progress,
                state.config.kafka.clone(),
                {
                    let t = &state.config.topics;
                    vec![
                        t.user_events.clone(),
                        t.response_events.clone(),
                        t.dead_letter.clone(),
                    ]
                },
                stopped.clone(),
            )),
        ];
        let mut app = api::router(state.clone());
        let metrics_server = match metrics_listener {
            // Its own listener: /metrics is then not on HTTP_ADDR.
            Some(l) => {
                let mut stop = stopped.clone();
                Some(tokio::spawn(polystream_common::metrics::serve(
                    l,
                    registry,
                    async move {
                        let _ = stop.changed().await;
                    },
                )))
            }
            None => {
                app = app.merge(polystream_common::metrics::router(registry));
                None
            }
        };
        let mut server_stop = stopped;
        let limits = state.config.server;
        let server = tokio::spawn(polystream_common::server::serve(
            listener,
            app,
            limits,
            async move {
                let _ = server_stop.changed().await;
            },
        ));
        let metrics_at = metrics_addr.map_or_else(|| addr.to_string(), |a| a.to_string());
        tracing::info!(%addr, metrics = %metrics_at, "S3 monitor listening");
        Ok(Self {
            addr,
            metrics_addr,
            state,
            stop,
            tasks,
            server,
            metrics_server,
        })
    }

    /// The OpenSearch client, e.g. to re-point it ([`Indexer::set_url`]).
    pub fn indexer(&self) -> &Indexer {
        &self.state.indexer
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Stops consuming (the last batch is made durable and committed) and serving.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.await?;
        }
        self.server.await??;
        if let Some(m) = self.metrics_server {
            m.await??;
        }
        Ok(())
    }
}

/// Runs until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let monitor = Monitor::start(config).await?;
    shutdown.await;
    tracing::info!("shutting down");
    monitor.stop().await
}
