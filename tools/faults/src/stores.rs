//! The stores, read directly: each command's effect by the key the client
//! chose, the final statuses in Redis, the Redis view counters against the
//! MongoDB views, and the audit documents in OpenSearch.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use polystream_stores::{keys, mongo as mcoll};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::platform::RunConfig;
use crate::tally::{EffectKey, Found, Seen, Sent};

pub struct Stores {
    pg_url: String,
    mongo_uri: String,
    mongo_db: String,
    redis_url: String,
    http: reqwest::Client,
    opensearch: String,
    audit_prefix: String,
}

fn bson_i64(b: Option<&Bson>) -> Option<i64> {
    match b? {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) => Some(*v as i64),
        _ => None,
    }
}

impl Stores {
    pub fn new(cfg: &RunConfig) -> Self {
        Self {
            pg_url: cfg.database_url.clone(),
            mongo_uri: cfg.mongodb_uri.clone(),
            mongo_db: cfg.mongo_db.clone(),
            redis_url: cfg.redis_url.clone(),
            http: reqwest::Client::new(),
            opensearch: cfg.opensearch_url.clone(),
            audit_prefix: cfg.audit_prefix.clone(),
        }
    }

    // Connections are made per check: the servers restart between checks.
    async fn pg(&self) -> anyhow::Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&self.pg_url)
            .await
            .with_context(|| "PostgreSQL (start it with `./dev up postgres`)")
    }

    async fn mongo(&self) -> anyhow::Result<mongodb::Database> {
        let client = mongodb::Client::with_uri_str(&self.mongo_uri)
            .await
            .context("the MongoDB-wire server (start it with `./dev up ferretdb`)")?;
        Ok(client.database(&self.mongo_db))
    }

    async fn redis(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        redis::Client::open(self.redis_url.as_str())?
            .get_multiplexed_async_connection()
            .await
            .context("Redis (start it with `./dev up redis`)")
    }

    /// Correlation ids whose status in Redis is final.
    pub async fn final_statuses(&self, ids: &[String]) -> anyhow::Result<HashSet<String>> {
        let mut con = self.redis().await?;
        let mut done = HashSet::new();
        for chunk in ids.chunks(500) {
            let status_keys: Vec<String> = chunk.iter().map(|id| format!("status:{id}")).collect();
            let values: Vec<Option<String>> = redis::cmd("MGET")
                .arg(&status_keys)
                .query_async(&mut con)
                .await
                .context("reading command statuses from Redis")?;
            for (id, v) in chunk.iter().zip(values) {
                let state = v
                    .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
                    .and_then(|v| v["state"].as_str().map(str::to_owned));
                if matches!(state.as_deref(), Some("completed" | "failed")) {
                    done.insert(id.clone());
                }
            }
        }
        Ok(done)
    }

    /// Every effect of the scenario's commands, and effects of the pool's
    /// users since `since` that none of them explains.
    pub async fn found(
        &self,
        sent: &[Sent],
        pool: &[i64],
        since: DateTime<Utc>,
    ) -> anyhow::Result<Found> {
        let keys: HashSet<&EffectKey> = sent.iter().map(|s| &s.key).collect();
        let mut effects: HashMap<EffectKey, u32> = HashMap::new();
        let mut unexplained = 0u64;
        let mut add = |k: EffectKey, n: u32| {
            if keys.contains(&k) {
                *effects.entry(k).or_default() += n;
            } else {
                unexplained += u64::from(n);
            }
        };

        let pg = self.pg().await?;
        let emails: Vec<String> = keys
            .iter()
            .filter_map(|k| match k {
                EffectKey::User { email } => Some(email.clone()),
                _ => None,
            })
            .collect();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT lower(email), count(*) FROM users WHERE lower(email) = ANY($1) GROUP BY 1",
        )
        .bind(&emails)
        .fetch_all(&pg)
        .await
        .context("reading users from PostgreSQL")?;
        for (email, n) in rows {
            add(EffectKey::User { email }, n as u32);
        }
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT user_id, amount_cents, count(*) FROM payments
             WHERE user_id = ANY($1) AND recorded_at >= $2 GROUP BY 1, 2",
        )
        .bind(pool)
        .bind(since)
        .fetch_all(&pg)
        .await
        .context("reading payments from PostgreSQL")?;
        for (user_id, amount_cents, n) in rows {
            add(
                EffectKey::Payment {
                    user_id,
                    amount_cents,
                },
                n as u32,
            );
        }
        let rows: Vec<(i64, String, bool, String)> = sqlx::query_as(
            "SELECT user_id, language, notifications, theme FROM preferences
             WHERE user_id = ANY($1) AND updated_at >= $2",
        )
        .bind(pool)
        .bind(since)
        .fetch_all(&pg)
        .await
        .context("reading preferences from PostgreSQL")?;
        for (user_id, language, notifications, theme) in rows {
            add(
                EffectKey::Preferences {
                    user_id,
                    language,
                    notifications,
                    theme,
                },
                1,
            );
        }
        pg.close().await;

        let db = self.mongo().await?;
        let since_bson = mongodb::bson::DateTime::from_millis(since.timestamp_millis());
        let views: Vec<Document> = db
            .collection::<Document>(mcoll::VIEWS)
            .find(doc! {"user_id": {"$in": pool}, "watched_at": {"$gte": since_bson}})
            .projection(doc! {"user_id": 1, "seconds_watched": 1})
            .await
            .context("reading views from MongoDB")?
            .try_collect()
            .await
            .context("reading views from MongoDB")?;
        for v in views {
            if let (Some(user_id), Some(seconds)) = (
                bson_i64(v.get("user_id")),
                bson_i64(v.get("seconds_watched")),
            ) {
                add(
                    EffectKey::View {
                        user_id,
                        seconds: u32::try_from(seconds).unwrap_or(u32::MAX),
                    },
                    1,
                );
            }
        }
        let ratings: Vec<Document> = db
            .collection::<Document>(mcoll::RATINGS)
            .find(doc! {"user_id": {"$in": pool}, "rated_at": {"$gte": since_bson}})
            .await
            .context("reading ratings from MongoDB")?
            .try_collect()
            .await
            .context("reading ratings from MongoDB")?;
        for r in ratings {
            if let (Some(user_id), Some(title_id), Some(stars)) = (
                bson_i64(r.get("user_id")),
                bson_i64(r.get("title_id")),
                bson_i64(r.get("stars")),
            ) {
                add(
                    EffectKey::Rating {
                        user_id,
                        title_id,
                        stars: u8::try_from(stars).unwrap_or(0),
                    },
                    1,
                );
            }
        }

        let accepted: Vec<String> = sent
            .iter()
            .filter_map(|s| match &s.seen {
                Seen::Accepted { correlation_id } => Some(correlation_id.clone()),
                _ => None,
            })
            .collect();
        let final_status = self.final_statuses(&accepted).await?;
        Ok(Found {
            effects,
            final_status,
            unexplained,
        })
    }

    /// For each of the run's titles: (Redis view counter, MongoDB views).
    /// Every view is counted once, so the two are equal.
    pub async fn view_counters(&self, titles: &[i64]) -> anyhow::Result<Vec<(i64, i64, i64)>> {
        let db = self.mongo().await?;
        let mut con = self.redis().await?;
        let mut out = Vec::new();
        for &t in titles {
            let counter: Option<i64> = redis::cmd("GET")
                .arg(keys::title_views(t))
                .query_async(&mut con)
                .await
                .context("reading a view counter from Redis")?;
            let docs = db
                .collection::<Document>(mcoll::VIEWS)
                .count_documents(doc! {"title_id": t})
                .await
                .context("counting views in MongoDB")?;
            out.push((t, counter.unwrap_or(0), docs as i64));
        }
        Ok(out)
    }

    /// Documents in the run's audit indices (after a refresh).
    pub async fn audit_docs(&self) -> anyhow::Result<u64> {
        let pattern = format!("{}/{}-*", self.opensearch, self.audit_prefix);
        let _ = self
            .http
            .post(format!("{pattern}/_refresh"))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let res = self
            .http
            .get(format!("{pattern}/_count"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .with_context(|| {
                format!(
                    "OpenSearch at {} (start it with `./dev up opensearch`)",
                    self.opensearch
                )
            })?;
        let body: serde_json::Value = res.json().await.context("OpenSearch's count")?;
        body["count"]
            .as_u64()
            .with_context(|| format!("OpenSearch did not count: {body}"))
    }

    /// Removes what the run left in MongoDB and OpenSearch (best effort).
    pub async fn clean_up(&self) {
        if let Ok(db) = self.mongo().await {
            let _ = db.drop().await;
        }
        let _ = self
            .http
            .delete(format!("{}/{}-*", self.opensearch, self.audit_prefix))
            .send()
            .await;
    }
}
