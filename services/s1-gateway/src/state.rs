//! What every handler shares.

use std::sync::Arc;

use mongodb::Database;
use polystream_common::config::redact_url;
use polystream_common::kafka;
use polystream_common::status::StatusStore;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::config::Config;
use crate::metrics::S1Metrics;

pub type AppState = Arc<State>;

pub struct State {
    pub pg: PgPool,
    pub mongo: Database,
    pub redis: ConnectionManager,
    pub producer: kafka::Publisher,
    pub status: StatusStore,
    /// Password hashing, bounded (see [`crate::auth::Hasher`]).
    pub hasher: crate::auth::Hasher,
    /// Rate limits and login lockout, shared by every replica through Redis.
    pub limiter: polystream_common::ratelimit::Limiter,
    pub metrics: S1Metrics,
    /// What `/metrics` serves.
    pub registry: std::sync::Arc<prometheus_client::registry::Registry>,
    pub config: Config,
}

impl State {
    pub async fn connect(config: Config) -> anyhow::Result<Self> {
        use anyhow::Context;
        let s = &config.stores;
        let pg = polystream_stores::pg::connect(&s.database_url, 10)
            .await
            .with_context(|| {
                format!(
                    "PostgreSQL is not reachable at {}",
                    redact_url(&s.database_url)
                )
            })?;
        // Migrating is safe from several services at once (advisory lock), and
        // S1 reads these tables.
        polystream_stores::pg::migrate(&pg)
            .await
            .context("applying PostgreSQL migrations")?;
        let mongo = polystream_stores::mongo::connect(&s.mongodb_uri)
            .await
            .with_context(|| format!("MongoDB URI {} is invalid", redact_url(&s.mongodb_uri)))?;
        let client = redis::Client::open(s.redis_url.as_str())
            .with_context(|| format!("REDIS_URL {} is invalid", redact_url(&s.redis_url)))?;
        let redis = polystream_stores::keys::connect(client.clone())
            .await
            .with_context(|| format!("Redis is not reachable at {}", redact_url(&s.redis_url)))?;
        let producer = kafka::publisher(&s.kafka(), "s1-gateway", config.kafka_ack_timeout)
            .context("creating the Kafka producer")?;
        let status =
            StatusStore::with_max_waiters(client, redis.clone(), config.status_wait_max_concurrent);
        let metrics = S1Metrics::default();
        let registry = metrics.register(&config.topics.user_events);
        let hasher = crate::auth::Hasher::new(
            config.password_hash_concurrency,
            config.password_hash_queue_timeout,
        );
        let limiter =
            polystream_common::ratelimit::Limiter::new(redis.clone(), &config.limits.scope);
        Ok(Self {
            limiter,
            pg,
            mongo,
            redis,
            producer,
            status,
            hasher,
            metrics,
            registry,
            config,
        })
    }
}
