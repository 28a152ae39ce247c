//! One handler per command, grouped by the store area it changes, behind one
//! dispatch ([`apply`]). A broken rule is a [`Decision::Failed`] (final); a
//! store that cannot answer is a [`Fault`] (the caller retries or fails it).
//!
//! - [`ledger`]: the processed-event ledger (effectively-once);
//! - [`accounts`]: users, subscriptions, payments, preferences — PostgreSQL,
//!   effects and ledger entry in one transaction;
//! - [`catalog`]: titles, relations, assets and the title cache — MongoDB
//!   and Redis;
//! - [`activity`]: views and ratings with their counters and rankings,
//!   recommendations — MongoDB and Redis;
//! - [`lookups`]: the existence checks and document readers they share.
//!
//! MongoDB and Redis commands are idempotent by construction (upserts keyed
//! by the command's ids, guarded increments), so applying one twice after a
//! crash changes nothing; their ledger entry is written after them.

pub mod accounts;
pub mod activity;
pub mod catalog;
pub mod ledger;
pub mod lookups;

use std::future::IntoFuture;

use chrono::{DateTime, Utc};
use mongodb::bson;
use polystream_common::events::{Command, Envelope, FailureCode};
use polystream_common::instrument::{Store, store_op};
use polystream_common::status::StatusStore;
use polystream_stores::fault::{Fault, pg_fault};
use redis::aio::ConnectionManager;
use serde_json::Value;
use sqlx::PgPool;

use self::accounts::Write;

/// Every store the processor writes.
#[derive(Clone)]
pub struct Stores {
    pub pg: PgPool,
    pub mongo: mongodb::Database,
    pub redis: ConnectionManager,
    pub status: StatusStore,
    /// `TITLE_CACHE_TTL_SECONDS`: lifetime of a title the processor caches.
    pub title_cache_ttl: std::time::Duration,
    /// Since when users' history heads are kept (`views::heads_since`).
    pub heads_since: DateTime<Utc>,
    /// `MONGODB_WRITERS`: the MongoDB/Redis commands that may be applied at
    /// once across partitions; `None`, no limit.
    pub mongo_writers: Option<std::sync::Arc<tokio::sync::Semaphore>>,
}

/// What a command came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Completed(Value),
    Failed { code: FailureCode, reason: String },
}

impl Decision {
    pub fn failed(code: FailureCode, reason: impl Into<String>) -> Self {
        Self::Failed {
            code,
            reason: reason.into(),
        }
    }
}

/// The attributes of the command's envelope the handlers need.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// The event's time: stored timestamps (`updated_at`, `rated_at`…) and
    /// ranking buckets come from it, not the clock, so re-applying an event
    /// writes the same values.
    pub time: DateTime<Utc>,
}

/// The PostgreSQL write a command is, if it is one: its effect and ledger
/// entry commit in one transaction.
pub fn account_write(cmd: &Command) -> Option<Write<'_>> {
    match cmd {
        Command::UserRegistered(p) => Some(Write::Register(p)),
        Command::SubscriptionChanged(p) => Some(Write::Subscribe(p)),
        Command::PaymentRecorded(p) => Some(Write::Pay(p)),
        Command::PreferencesUpdated(p) => Some(Write::Preferences(p)),
        _ => None,
    }
}

/// Applies a command not yet in the ledger and records its outcome; returns
/// the outcome on record. `outcome_of` builds the outcome envelope for a
/// decision.
pub async fn apply(
    stores: &Stores,
    env: &Envelope<Value>,
    cmd: &Command,
    outcome_of: impl Fn(&Decision) -> Value,
) -> Result<Value, Fault> {
    let pg = &stores.pg;
    // PostgreSQL: effects and ledger entry commit together.
    if let Some(w) = account_write(cmd) {
        return accounts::apply(pg, env, w, outcome_of).await;
    }
    // MongoDB and Redis: idempotent effects, then the ledger entry.
    let decision = effects(stores, env, cmd).await?;
    ledger::record(pg, env, &outcome_of(&decision)).await
}

/// The MongoDB and Redis effects of a command that is not an
/// [`account_write`] (idempotent: applying them twice changes nothing).
pub async fn effects(
    stores: &Stores,
    env: &Envelope<Value>,
    cmd: &Command,
) -> Result<Decision, Fault> {
    let meta = Meta { time: env.time };
    // A MongoDB-wire server that takes one writer at a time (FerretDB on
    // SQLite) makes the others poll for its lock: better they queue here.
    let _turn = match &stores.mongo_writers {
        Some(s) => Some(
            s.acquire()
                .await
                .map_err(|e| Fault::transient("mongodb", e.to_string()))?,
        ),
        None => None,
    };
    Ok(match cmd {
        Command::TitleUpserted(p) => catalog::upsert(stores, meta, p).await?,
        Command::TitleDeleted(p) => catalog::delete(stores, meta, p).await?,
        Command::TitlesRelated(p) => catalog::relate(stores, meta, p).await?,
        Command::AssetAttached(p) => catalog::attach_asset(stores, meta, p).await?,
        Command::TitleCacheWarmRequested(p) => catalog::warm(stores, p).await?,
        Command::ViewRecorded(p) => activity::record_view(stores, p).await?,
        Command::TitleRated(p) => activity::rate(stores, meta, p).await?,
        Command::RecommendationsRequested(p) => {
            activity::recommend_for(stores, meta, p.user_id).await?
        }
        Command::UserRegistered(_)
        | Command::SubscriptionChanged(_)
        | Command::PaymentRecorded(_)
        | Command::PreferencesUpdated(_) => {
            return Err(Fault::permanent(
                "postgresql",
                format!("{} is a PostgreSQL write, not applied here", env.event_type),
            ));
        }
    })
}

// ---------------------------------------------------------------- store calls

// Every store call is a named function in `polystream_stores` (a client span
// and `polystream_store_operation_duration_seconds{store,operation,outcome}`,
// `op` names from the fixed set in docs/observability.md); this wraps the
// transaction steps (begin, commit, rollback) the accounts handler drives.

pub(crate) async fn pg_op<T, F>(op: &'static str, call: F) -> Result<T, Fault>
where
    F: IntoFuture<Output = Result<T, sqlx::Error>>,
{
    store_op(Store::Postgres, op, call).await.map_err(pg_fault)
}

pub(crate) fn bson_time(t: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(t.timestamp_millis())
}

/// A unit enum's wire name (`credit_card`), as stored.
pub(crate) use polystream_stores::pg::wire_name as snake;
