//! One handler per command: apply the cross-store rules, then persist to the
//! owning store. A broken rule is a [`Decision::Failed`] (final); a store that
//! cannot answer is a [`Fault`] (retried by the caller).
//!
//! PostgreSQL commands write their effects and the processed-event ledger in
//! one transaction ([`apply_pg`]). MongoDB and Redis commands are idempotent by
//! construction (upserts keyed by the command's ids, guarded increments), so
//! applying one twice after a crash changes nothing; the ledger is written
//! after them by the caller.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::IntoFuture;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc, oid::ObjectId};
use mongodb::{Collection, Database};
use polystream_common::events::*;
use polystream_common::instrument::{Store, store_op};
use polystream_common::status::StatusStore;
use polystream_stores::keys::{self, Window};
use polystream_stores::mongo;
use redis::aio::ConnectionManager;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::errors::{
    Fault, PgClass, classify_pg, mongo_fault, mongo_is_duplicate_key, pg_fault, redis_fault,
};
use crate::recommend::{self, RatingFact, RelationFact, TitleFact, ViewFact};

/// How long a warmed title stays cached.
pub const CACHE_TTL: Duration = Duration::from_secs(3600);
/// How long a view's "counted" guard is kept; longer than any redelivery.
pub const APPLIED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Every store the processor writes.
#[derive(Clone)]
pub struct Stores {
    pub pg: PgPool,
    pub mongo: Database,
    pub redis: ConnectionManager,
    pub status: StatusStore,
}

/// What a command came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Completed(Value),
    Failed { code: &'static str, reason: String },
}

impl Decision {
    fn failed(code: &'static str, reason: impl Into<String>) -> Self {
        Self::Failed {
            code,
            reason: reason.into(),
        }
    }
}

/// Codes of business failures (stable: clients match on them).
pub mod codes {
    pub const DUPLICATE_USER: &str = "duplicate_user";
    pub const DUPLICATE_EMAIL: &str = "duplicate_email";
    pub const DUPLICATE_CPF: &str = "duplicate_cpf";
    pub const UNKNOWN_USER: &str = "unknown_user";
    pub const UNKNOWN_TITLE: &str = "unknown_title";
    pub const UNKNOWN_ASSET: &str = "unknown_asset";
    pub const REJECTED: &str = "rejected";
    pub const INVALID_EVENT: &str = "invalid_event";
}

/// The attributes of the command's envelope the handlers need.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// The event's time: stored timestamps (`updated_at`, `rated_at`…) and
    /// ranking buckets come from it, not the clock, so re-applying an event
    /// writes the same values.
    pub time: DateTime<Utc>,
}

/// Commands whose owning store is PostgreSQL.
pub fn is_pg_owned(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::UserRegistered(_)
            | Command::SubscriptionChanged(_)
            | Command::PaymentRecorded(_)
            | Command::PreferencesUpdated(_)
    )
}

// ---------------------------------------------------------------- store calls

// Every store call goes through one of these: a client span and
// `polystream_store_operation_duration_seconds{store,operation,outcome}`.
// `op` names come from the fixed set listed in docs/observability.md.

async fn pg_op<T, F>(op: &'static str, call: F) -> Result<T, Fault>
where
    F: IntoFuture<Output = Result<T, sqlx::Error>>,
{
    store_op(Store::Postgres, op, call).await.map_err(pg_fault)
}

async fn mongo_op<T, F>(op: &'static str, call: F) -> Result<T, Fault>
where
    F: IntoFuture<Output = Result<T, mongodb::error::Error>>,
{
    store_op(Store::Mongodb, op, call)
        .await
        .map_err(mongo_fault)
}

async fn redis_op<T, F>(op: &'static str, call: F) -> Result<T, Fault>
where
    F: IntoFuture<Output = Result<T, redis::RedisError>>,
{
    store_op(Store::Redis, op, call).await.map_err(redis_fault)
}

/// A MongoDB query's documents (the cursor is drained inside the store call).
async fn mongo_find(
    op: &'static str,
    c: Collection<Document>,
    filter: Document,
    projection: Option<Document>,
    limit: Option<i64>,
) -> Result<Vec<Document>, Fault> {
    mongo_op(op, async move {
        let mut find = c.find(filter);
        if let Some(p) = projection {
            find = find.projection(p);
        }
        if let Some(n) = limit {
            find = find.limit(n);
        }
        find.await?.try_collect::<Vec<Document>>().await
    })
    .await
}

/// The `operation` label of a PostgreSQL command's statement.
pub fn pg_operation(cmd: &Command) -> &'static str {
    match cmd {
        Command::UserRegistered(_) => "insert_user",
        Command::SubscriptionChanged(_) => "upsert_subscription",
        Command::PaymentRecorded(_) => "insert_payment",
        Command::PreferencesUpdated(_) => "upsert_preferences",
        _ => "none",
    }
}

// ---------------------------------------------------------------- ledger

/// The outcome envelope stored for an event already processed.
pub async fn ledger_get(pg: &PgPool, event_id: Uuid) -> Result<Option<Value>, Fault> {
    pg_op(
        "select_processed_event",
        sqlx::query_scalar("SELECT outcome FROM processed_events WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(pg),
    )
    .await
}

/// Records `outcome` unless the event is already recorded; either way returns
/// the outcome that is now on record (someone else's if they were first).
async fn ledger_put(
    con: &mut PgConnection,
    event_id: Uuid,
    event_type: &str,
    correlation_id: Uuid,
    outcome: &Value,
) -> Result<Option<Value>, sqlx::Error> {
    store_op(
        Store::Postgres,
        "insert_processed_event",
        sqlx::query_scalar(
            "INSERT INTO processed_events (event_id, event_type, correlation_id, outcome)
             VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING RETURNING outcome",
        )
        .bind(event_id)
        .bind(event_type)
        .bind(correlation_id)
        .bind(outcome)
        .fetch_optional(&mut *con),
    )
    .await
}

/// For MongoDB/Redis commands: records the outcome after the effect.
pub async fn ledger_record(
    pg: &PgPool,
    env: &Envelope<Value>,
    outcome: &Value,
) -> Result<Value, Fault> {
    let mut con = pg_op("acquire_connection", pg.acquire()).await?;
    let put = ledger_put(
        &mut con,
        env.id,
        &env.event_type,
        env.correlationid,
        outcome,
    )
    .await
    .map_err(pg_fault)?;
    match put {
        Some(v) => Ok(v),
        None => ledger_get(pg, env.id)
            .await?
            .ok_or_else(|| Fault::transient("postgresql", "processed event vanished")),
    }
}

// ---------------------------------------------------------------- PostgreSQL

/// Applies a PostgreSQL command and records its outcome in the same
/// transaction; returns the outcome on record. `outcome_of` builds the
/// outcome envelope for a decision.
pub async fn apply_pg(
    pg: &PgPool,
    env: &Envelope<Value>,
    cmd: &Command,
    outcome_of: impl Fn(&Decision) -> Value,
) -> Result<Value, Fault> {
    let mut tx = pg_op("begin", pg.begin()).await?;
    // A broken rule is the store answering correctly: the call counts as
    // `ok`; only faults are store errors.
    let effect = store_op(Store::Postgres, pg_operation(cmd), async {
        match pg_effect(&mut tx, cmd).await {
            Ok(d) => Ok(Ok(d)),
            Err(e) => match classify_pg(&e) {
                PgClass::Fault(_) => Err(e),
                class => Ok(Err(class)),
            },
        }
    })
    .await
    .map_err(pg_fault)?;
    let decision = match effect {
        Ok(d) => d,
        Err(class) => {
            // The failed statement aborted the transaction: the failure is
            // recorded in a fresh one.
            pg_op("rollback", tx.rollback()).await?;
            tx = pg_op("begin", pg.begin()).await?;
            rule_failure(cmd, &class)
        }
    };
    finish_pg(pg, tx, env, &outcome_of(&decision)).await
}

async fn finish_pg(
    pg: &PgPool,
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    env: &Envelope<Value>,
    outcome: &Value,
) -> Result<Value, Fault> {
    match ledger_put(&mut tx, env.id, &env.event_type, env.correlationid, outcome).await {
        Ok(Some(v)) => {
            pg_op("commit", tx.commit()).await?;
            Ok(v)
        }
        // Processed concurrently by another consumer (a rebalance race): keep
        // its effects and outcome, drop ours.
        Ok(None) => {
            pg_op("rollback", tx.rollback()).await?;
            ledger_get(pg, env.id)
                .await?
                .ok_or_else(|| Fault::transient("postgresql", "processed event vanished"))
        }
        Err(e) => Err(pg_fault(e)),
    }
}

/// The business failure a constraint violation stands for.
fn rule_failure(cmd: &Command, class: &PgClass) -> Decision {
    match (cmd, class) {
        (Command::UserRegistered(p), PgClass::UniqueViolation(c)) if c == "users_pkey" => {
            Decision::failed(
                codes::DUPLICATE_USER,
                format!("user {} already exists", p.user_id),
            )
        }
        (Command::UserRegistered(p), PgClass::UniqueViolation(c)) if c == "users_email_key" => {
            Decision::failed(
                codes::DUPLICATE_EMAIL,
                format!("a user with email {} already exists", p.email),
            )
        }
        (Command::UserRegistered(_), PgClass::UniqueViolation(c)) if c == "users_cpf_key" => {
            // The CPF itself is personal data: not echoed into events or logs.
            Decision::failed(codes::DUPLICATE_CPF, "a user with this CPF already exists")
        }
        (_, PgClass::ForeignKeyViolation(_)) => Decision::failed(
            codes::UNKNOWN_USER,
            format!("user {} does not exist", user_of(cmd).unwrap_or_default()),
        ),
        (_, PgClass::UniqueViolation(c) | PgClass::CheckViolation(c)) => Decision::failed(
            codes::REJECTED,
            format!("rejected by the store (constraint {c})"),
        ),
        (_, PgClass::Fault(f)) => Decision::failed(codes::REJECTED, f.to_string()),
    }
}

fn user_of(cmd: &Command) -> Option<i64> {
    match cmd {
        Command::UserRegistered(p) => Some(p.user_id),
        Command::SubscriptionChanged(p) => Some(p.user_id),
        Command::PaymentRecorded(p) => Some(p.user_id),
        Command::PreferencesUpdated(p) => Some(p.user_id),
        Command::ViewRecorded(p) => Some(p.user_id),
        Command::TitleRated(p) => Some(p.user_id),
        Command::RecommendationsRequested(p) => Some(p.user_id),
        _ => None,
    }
}

/// A unit enum's wire name (`credit_card`), as the tables' CHECKs expect.
fn snake<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

async fn pg_effect(con: &mut PgConnection, cmd: &Command) -> Result<Decision, sqlx::Error> {
    match cmd {
        Command::UserRegistered(p) => {
            sqlx::query(
                "INSERT INTO users (user_id, name, email, password_hash, cpf, admin)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(p.user_id)
            .bind(p.name.trim())
            .bind(&p.email)
            .bind(&p.password_hash)
            .bind(&p.cpf)
            .bind(p.admin)
            .execute(&mut *con)
            .await?;
            Ok(Decision::Completed(json!({"user_id": p.user_id})))
        }
        Command::SubscriptionChanged(p) => {
            sqlx::query(
                "INSERT INTO subscriptions (user_id, plan, status, started_on, renews_on)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (user_id) DO UPDATE SET plan = EXCLUDED.plan,
                   status = EXCLUDED.status, started_on = EXCLUDED.started_on,
                   renews_on = EXCLUDED.renews_on, updated_at = now()",
            )
            .bind(p.user_id)
            .bind(snake(&p.plan))
            .bind(snake(&p.status))
            .bind(p.started_on)
            .bind(p.renews_on)
            .execute(&mut *con)
            .await?;
            Ok(Decision::Completed(json!({
                "user_id": p.user_id, "plan": p.plan, "status": p.status,
                "renews_on": p.renews_on,
            })))
        }
        Command::PaymentRecorded(p) => {
            // Keyed by the gateway's payment id: a retried request is a no-op.
            sqlx::query(
                "INSERT INTO payments (payment_id, user_id, amount_cents, currency, method, status, paid_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (payment_id) DO NOTHING",
            )
            .bind(p.payment_id)
            .bind(p.user_id)
            .bind(p.amount_cents)
            .bind(&p.currency)
            .bind(snake(&p.method))
            .bind(snake(&p.status))
            .bind(p.paid_at)
            .execute(&mut *con)
            .await?;
            Ok(Decision::Completed(json!({
                "payment_id": p.payment_id, "user_id": p.user_id, "status": p.status,
            })))
        }
        Command::PreferencesUpdated(p) => {
            sqlx::query(
                "INSERT INTO preferences (user_id, language, notifications, theme)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id) DO UPDATE SET language = EXCLUDED.language,
                   notifications = EXCLUDED.notifications, theme = EXCLUDED.theme,
                   updated_at = now()",
            )
            .bind(p.user_id)
            .bind(&p.language)
            .bind(p.notifications)
            .bind(snake(&p.theme))
            .execute(&mut *con)
            .await?;
            Ok(Decision::Completed(json!({"user_id": p.user_id})))
        }
        _ => Ok(Decision::failed(
            codes::REJECTED,
            "not a PostgreSQL command",
        )),
    }
}

// ---------------------------------------------------------------- MongoDB and Redis

fn bson_time(t: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(t.timestamp_millis())
}

fn coll(db: &Database, name: &str) -> Collection<Document> {
    db.collection(name)
}

async fn user_exists(pg: &PgPool, user_id: i64) -> Result<bool, Fault> {
    pg_op(
        "select_user_exists",
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE user_id = $1)")
            .bind(user_id)
            .fetch_one(pg),
    )
    .await
}

async fn find_title(db: &Database, title_id: i64) -> Result<Option<Document>, Fault> {
    mongo_op(
        "find_title",
        coll(db, mongo::TITLES).find_one(doc! {"_id": title_id}),
    )
    .await
}

fn unknown_user(id: i64) -> Decision {
    Decision::failed(codes::UNKNOWN_USER, format!("user {id} does not exist"))
}

fn unknown_title(id: i64) -> Decision {
    Decision::failed(codes::UNKNOWN_TITLE, format!("title {id} does not exist"))
}

async fn del_cache(stores: &Stores, title_id: i64) -> Result<(), Fault> {
    let mut con = stores.redis.clone();
    redis_op(
        "delete_title_cache",
        redis::cmd("DEL")
            .arg(keys::title_cache(title_id))
            .query_async::<i64>(&mut con),
    )
    .await?;
    Ok(())
}

/// Applies a MongoDB/Redis command. Idempotent: running it again after a
/// crash leaves the stores as one run would.
pub async fn apply_other(stores: &Stores, meta: Meta, cmd: &Command) -> Result<Decision, Fault> {
    let db = &stores.mongo;
    match cmd {
        Command::TitleUpserted(p) => {
            let seasons: Vec<Document> = p
                .seasons
                .iter()
                .map(|s| doc! {"number": i64::from(s.number), "episodes": i64::from(s.episodes)})
                .collect();
            let mut set = doc! {
                "title": p.title.trim(), "description": &p.description,
                "kind": snake(&p.kind), "year": p.year,
                "directors": &p.directors, "cast": &p.cast,
                "genres": &p.genres, "categories": &p.categories,
                "seasons": seasons, "updated_at": bson_time(meta.time),
            };
            // Attachments survive a catalog edit; `assets` is only initialised.
            // (Read first: FerretDB v1 silently drops an empty array given to
            // `$setOnInsert`. A title's events share a partition: no race.)
            let has_assets = find_title(db, p.title_id)
                .await?
                .is_some_and(|t| t.contains_key("assets"));
            if !has_assets {
                set.insert("assets", Bson::Array(vec![]));
            }
            mongo_op(
                "upsert_title",
                coll(db, mongo::TITLES)
                    .update_one(doc! {"_id": p.title_id}, doc! {"$set": set})
                    .upsert(true),
            )
            .await?;
            del_cache(stores, p.title_id).await?;
            Ok(Decision::Completed(json!({"title_id": p.title_id})))
        }
        Command::TitleDeleted(p) => {
            let deleted = mongo_op(
                "delete_title",
                coll(db, mongo::TITLES).delete_one(doc! {"_id": p.title_id}),
            )
            .await?
            .deleted_count;
            mongo_op(
                "delete_title_relations",
                coll(db, mongo::TITLE_RELATIONS).delete_many(
                    doc! {"$or": [{"title_id": p.title_id}, {"related_title_id": p.title_id}]},
                ),
            )
            .await?;
            del_cache(stores, p.title_id).await?;
            // Rankings must not list a title that no longer exists (past day
            // and week buckets expire or are history anyway).
            let mut pipe = redis::pipe();
            for w in [Window::Day, Window::Week, Window::AllTime] {
                pipe.zrem(keys::rank_views(w, meta.time), p.title_id)
                    .ignore();
                pipe.zrem(keys::rank_rating(w, meta.time), p.title_id)
                    .ignore();
            }
            let mut con = stores.redis.clone();
            redis_op("remove_title_rankings", pipe.query_async::<()>(&mut con)).await?;
            Ok(Decision::Completed(
                json!({"title_id": p.title_id, "deleted": deleted > 0}),
            ))
        }
        Command::TitlesRelated(p) => {
            for id in [p.title_id, p.related_title_id] {
                if find_title(db, id).await?.is_none() {
                    return Ok(unknown_title(id));
                }
            }
            let relation = snake(&p.relation);
            // Upsert by the composite id; `created_at` is the first event's time.
            mongo_op(
                "upsert_title_relation",
                coll(db, mongo::TITLE_RELATIONS)
                    .update_one(
                        doc! {"_id": format!("{}:{}:{relation}", p.title_id, p.related_title_id)},
                        doc! {
                            "$set": {
                                "title_id": p.title_id, "related_title_id": p.related_title_id,
                                "relation": &relation,
                            },
                            "$setOnInsert": {"created_at": bson_time(meta.time)},
                        },
                    )
                    .upsert(true),
            )
            .await?;
            del_cache(stores, p.title_id).await?;
            Ok(Decision::Completed(json!({
                "title_id": p.title_id, "related_title_id": p.related_title_id, "relation": relation,
            })))
        }
        Command::AssetAttached(p) => attach_asset(stores, meta, p).await,
        Command::ViewRecorded(p) => record_view(stores, p).await,
        Command::TitleRated(p) => rate(stores, meta, p).await,
        Command::RecommendationsRequested(p) => recommend_for(stores, meta, p.user_id).await,
        Command::TitleCacheWarmRequested(p) => {
            let Some(title) = find_title(db, p.title_id).await? else {
                return Ok(unknown_title(p.title_id));
            };
            let body = title_json(title).to_string();
            let mut con = stores.redis.clone();
            let key = keys::title_cache(p.title_id);
            redis_op(
                "set_title_cache",
                redis::cmd("SET")
                    .arg(&key)
                    .arg(body)
                    .arg("EX")
                    .arg(CACHE_TTL.as_secs())
                    .query_async::<()>(&mut con),
            )
            .await?;
            Ok(Decision::Completed(
                json!({"title_id": p.title_id, "cache_key": key}),
            ))
        }
        Command::UserRegistered(_)
        | Command::SubscriptionChanged(_)
        | Command::PaymentRecorded(_)
        | Command::PreferencesUpdated(_) => Ok(Decision::failed(
            codes::REJECTED,
            "not a MongoDB/Redis command",
        )),
    }
}

async fn attach_asset(stores: &Stores, meta: Meta, p: &AssetAttached) -> Result<Decision, Fault> {
    let db = &stores.mongo;
    let Some(title) = find_title(db, p.title_id).await? else {
        return Ok(unknown_title(p.title_id));
    };
    let missing = || {
        Decision::failed(
            codes::UNKNOWN_ASSET,
            format!(
                "asset {} is not in the {} bucket",
                p.asset_id,
                mongo::ASSETS_BUCKET
            ),
        )
    };
    let Ok(oid) = ObjectId::parse_str(&p.asset_id) else {
        return Ok(missing());
    };
    let file = mongo_op(
        "find_asset_file",
        coll(db, &format!("{}.files", mongo::ASSETS_BUCKET)).find_one(doc! {"_id": oid}),
    )
    .await?;
    if file.is_none() {
        return Ok(missing());
    }
    let entry = doc! {
        "asset_id": &p.asset_id, "kind": snake(&p.kind), "filename": &p.filename,
        "content_type": &p.content_type, "length": i64::try_from(p.length).unwrap_or(i64::MAX),
    };
    // No positional operators on FerretDB: rewrite the whole array. A title's
    // events share a partition, so nothing else writes it meanwhile.
    let mut assets: Vec<Bson> = title.get_array("assets").cloned().unwrap_or_default();
    let same = |b: &Bson| {
        b.as_document()
            .and_then(|d| d.get_str("asset_id").ok())
            .is_some_and(|id| id == p.asset_id)
    };
    match assets.iter().position(same) {
        Some(i) => assets[i] = Bson::Document(entry),
        None => assets.push(Bson::Document(entry)),
    }
    mongo_op(
        "update_title_assets",
        coll(db, mongo::TITLES).update_one(
            doc! {"_id": p.title_id},
            doc! {"$set": {"assets": assets, "updated_at": bson_time(meta.time)}},
        ),
    )
    .await?;
    del_cache(stores, p.title_id).await?;
    Ok(Decision::Completed(
        json!({"title_id": p.title_id, "asset_id": p.asset_id, "kind": p.kind}),
    ))
}

/// Counts a view once: the guard key and the increments change together.
const COUNT_VIEW: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('ZINCRBY', KEYS[2], 1, ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  redis.call('ZINCRBY', KEYS[3], 1, ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  redis.call('ZINCRBY', KEYS[4], 1, ARGV[2])
  redis.call('INCR', KEYS[5])
  return 1
end
return 0
";

async fn record_view(stores: &Stores, p: &ViewRecorded) -> Result<Decision, Fault> {
    if !user_exists(&stores.pg, p.user_id).await? {
        return Ok(unknown_user(p.user_id));
    }
    let Some(title) = find_title(&stores.mongo, p.title_id).await? else {
        return Ok(unknown_title(p.title_id));
    };
    let view = doc! {
        "_id": p.view_id.to_string(), "user_id": p.user_id, "title_id": p.title_id,
        "title": title.get_str("title").unwrap_or_default(),
        "kind": title.get_str("kind").unwrap_or_default(),
        "seconds_watched": i64::from(p.seconds_watched), "position_pct": p.position_pct,
        "completed": p.completed, "watched_at": bson_time(p.watched_at),
    };
    // A duplicate key is an earlier attempt of this same view: the store
    // answered as it should, so the call counts as `ok`.
    mongo_op("insert_view", async {
        match coll(&stores.mongo, mongo::VIEWS).insert_one(view).await {
            Ok(_) => Ok(()),
            Err(e) if mongo_is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e),
        }
    })
    .await?;
    // Guarded by the view id (not only the event id): the same view is never
    // counted twice, even if re-sent as a new event.
    let at = p.watched_at;
    let mut con = stores.redis.clone();
    let script = redis::Script::new(COUNT_VIEW);
    let mut invocation = script.key(keys::applied(p.view_id));
    invocation
        .key(keys::rank_views(Window::Day, at))
        .key(keys::rank_views(Window::Week, at))
        .key(keys::rank_views(Window::AllTime, at))
        .key(keys::title_views(p.title_id))
        .arg(APPLIED_TTL.as_secs())
        .arg(p.title_id)
        .arg(8 * 24 * 3600)
        .arg(5 * 7 * 24 * 3600);
    redis_op("count_view", invocation.invoke_async::<i64>(&mut con)).await?;
    Ok(Decision::Completed(json!({
        "view_id": p.view_id, "user_id": p.user_id, "title_id": p.title_id,
    })))
}

/// Average stars per ranking bucket, from `(stars, rated_at)` pairs; pure.
pub fn bucket_averages(
    ratings: &[(i64, DateTime<Utc>)],
    buckets: &[(Window, String)],
) -> Vec<(Window, String, Option<f64>)> {
    buckets
        .iter()
        .map(|(w, b)| {
            let in_bucket: Vec<i64> = ratings
                .iter()
                .filter(|(_, at)| w.bucket(*at) == *b)
                .map(|(s, _)| *s)
                .collect();
            let avg = (!in_bucket.is_empty())
                .then(|| in_bucket.iter().sum::<i64>() as f64 / in_bucket.len() as f64);
            (*w, b.clone(), avg)
        })
        .collect()
}

fn doc_time(d: &Document, field: &str) -> Option<DateTime<Utc>> {
    d.get_datetime(field)
        .ok()
        .and_then(|t| DateTime::from_timestamp_millis(t.timestamp_millis()))
}

fn doc_int(d: &Document, field: &str) -> Option<i64> {
    match d.get(field)? {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) => Some(*v as i64),
        _ => None,
    }
}

async fn rate(stores: &Stores, meta: Meta, p: &TitleRated) -> Result<Decision, Fault> {
    let db = &stores.mongo;
    if !user_exists(&stores.pg, p.user_id).await? {
        return Ok(unknown_user(p.user_id));
    }
    if find_title(db, p.title_id).await?.is_none() {
        return Ok(unknown_title(p.title_id));
    }
    let ratings = coll(db, mongo::RATINGS);
    let id = format!("{}:{}", p.user_id, p.title_id);
    let previous = mongo_op("find_rating", ratings.find_one(doc! {"_id": &id})).await?;
    mongo_op(
        "upsert_rating",
        ratings
            .update_one(
                doc! {"_id": &id},
                doc! {"$set": {
                    "user_id": p.user_id, "title_id": p.title_id,
                    "stars": i32::from(p.stars), "rated_at": bson_time(meta.time),
                }},
            )
            .upsert(true),
    )
    .await?;

    // Buckets touched: this rating's, and the one it replaced (it moved out).
    let mut touched: BTreeMap<String, (Window, String)> = BTreeMap::new();
    for at in [
        Some(meta.time),
        previous.as_ref().and_then(|d| doc_time(d, "rated_at")),
    ]
    .into_iter()
    .flatten()
    {
        for w in [Window::Day, Window::Week, Window::AllTime] {
            touched.insert(keys::rank_rating(w, at), (w, w.bucket(at)));
        }
    }
    let (rank_keys, buckets): (Vec<String>, Vec<(Window, String)>) = touched.into_iter().unzip();

    let all = mongo_find(
        "find_title_ratings",
        ratings,
        doc! {"title_id": p.title_id},
        Some(doc! {"stars": 1, "rated_at": 1}),
        None,
    )
    .await?;
    let pairs: Vec<(i64, DateTime<Utc>)> = all
        .iter()
        .filter_map(|d| Some((doc_int(d, "stars")?, doc_time(d, "rated_at")?)))
        .collect();

    // ZADD/ZREM set absolute values: re-running them is harmless.
    let mut pipe = redis::pipe();
    let mut all_time = None;
    for (key, (w, _, avg)) in rank_keys.iter().zip(bucket_averages(&pairs, &buckets)) {
        match avg {
            Some(a) => {
                pipe.zadd(key, p.title_id, a).ignore();
                if w == Window::AllTime {
                    all_time = Some(a);
                }
            }
            None => {
                pipe.zrem(key, p.title_id).ignore();
            }
        }
    }
    let mut con = stores.redis.clone();
    redis_op("update_rating_rankings", pipe.query_async::<()>(&mut con)).await?;
    Ok(Decision::Completed(json!({
        "user_id": p.user_id, "title_id": p.title_id, "stars": p.stars,
        "average": all_time,
    })))
}

async fn recommend_for(stores: &Stores, meta: Meta, user_id: i64) -> Result<Decision, Fault> {
    let db = &stores.mongo;
    if !user_exists(&stores.pg, user_id).await? {
        return Ok(unknown_user(user_id));
    }
    let collect = |op: &'static str, c: Collection<Document>, filter: Document, limit: i64| {
        mongo_find(op, c, filter, None, Some(limit))
    };
    let views: Vec<ViewFact> = collect(
        "find_user_views",
        coll(db, mongo::VIEWS),
        doc! {"user_id": user_id},
        2000,
    )
    .await?
    .iter()
    .filter_map(|d| {
        let completed = d.get_bool("completed").unwrap_or(false);
        let pct = d.get_f64("position_pct").unwrap_or(0.0);
        Some(ViewFact {
            title_id: doc_int(d, "title_id")?,
            completion: if completed { 1.0 } else { pct / 100.0 },
        })
    })
    .collect();
    let ratings: Vec<RatingFact> = collect(
        "find_user_ratings",
        coll(db, mongo::RATINGS),
        doc! {"user_id": user_id},
        2000,
    )
    .await?
    .iter()
    .filter_map(|d| {
        Some(RatingFact {
            title_id: doc_int(d, "title_id")?,
            stars: u8::try_from(doc_int(d, "stars")?).ok()?,
        })
    })
    .collect();
    let seeds: BTreeSet<i64> = views
        .iter()
        .map(|v| v.title_id)
        .chain(ratings.iter().map(|r| r.title_id))
        .collect();
    let seed_ids: Vec<i64> = seeds.iter().copied().collect();
    let mut titles: HashMap<i64, TitleFact> = HashMap::new();
    let mut relations: Vec<RelationFact> = Vec::new();
    // No history, nothing to go on: an empty list (and no `$in: []` queries).
    if !seed_ids.is_empty() {
        add_titles(
            &mut titles,
            collect(
                "find_titles",
                coll(db, mongo::TITLES),
                doc! {"_id": {"$in": &seed_ids}},
                5000,
            )
            .await?,
        );
        relations = collect(
            "find_title_relations",
            coll(db, mongo::TITLE_RELATIONS),
            doc! {"title_id": {"$in": &seed_ids}},
            5000,
        )
        .await?
        .iter()
        .filter_map(|d| {
            Some(RelationFact {
                title_id: doc_int(d, "title_id")?,
                related_title_id: doc_int(d, "related_title_id")?,
                relation: d.get_str("relation").ok()?.to_owned(),
            })
        })
        .collect();
        let genres: BTreeSet<String> = titles.values().flat_map(|t| t.genres.clone()).collect();
        let genres: Vec<String> = genres.into_iter().collect();
        let related: Vec<i64> = relations.iter().map(|r| r.related_title_id).collect();
        // Candidates: titles sharing a genre with the history, and related titles.
        add_titles(
            &mut titles,
            collect(
                "find_titles",
                coll(db, mongo::TITLES),
                doc! {"genres": {"$in": &genres}},
                1000,
            )
            .await?,
        );
        add_titles(
            &mut titles,
            collect(
                "find_titles",
                coll(db, mongo::TITLES),
                doc! {"_id": {"$in": &related}},
                1000,
            )
            .await?,
        );
    }

    let items = recommend::recommend(&titles, &views, &ratings, &relations);
    let docs: Vec<Document> = items
        .iter()
        .map(|r| {
            doc! {"title_id": r.title_id, "title": &r.title, "score": r.score, "reasons": &r.reasons}
        })
        .collect();
    mongo_op(
        "replace_recommendations",
        coll(db, mongo::RECOMMENDATIONS)
            .replace_one(
                doc! {"_id": user_id},
                doc! {"_id": user_id, "generated_at": bson_time(meta.time), "items": docs},
            )
            .upsert(true),
    )
    .await?;
    Ok(Decision::Completed(json!({
        "user_id": user_id,
        "count": items.len(),
        "title_ids": items.iter().map(|r| r.title_id).collect::<Vec<_>>(),
    })))
}

fn add_titles(titles: &mut HashMap<i64, TitleFact>, docs: Vec<Document>) {
    for d in docs {
        if let Some(id) = doc_int(&d, "_id") {
            let genres = d
                .get_array("genres")
                .map(|a| {
                    a.iter()
                        .filter_map(|g| g.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            titles.insert(
                id,
                TitleFact {
                    title_id: id,
                    title: d.get_str("title").unwrap_or_default().to_owned(),
                    genres,
                },
            );
        }
    }
}

/// A title document as cached JSON, shaped as the gateway caches it:
/// `_id` becomes `title_id`, dates RFC 3339.
pub fn title_json(mut d: Document) -> Value {
    if let Some(id) = d.remove("_id") {
        d.insert("title_id", id);
    }
    bson_to_json(Bson::Document(d))
}

fn bson_to_json(b: Bson) -> Value {
    match b {
        Bson::Document(d) => {
            Value::Object(d.into_iter().map(|(k, v)| (k, bson_to_json(v))).collect())
        }
        Bson::Array(a) => Value::Array(a.into_iter().map(bson_to_json).collect()),
        // The same rendering as the gateway's own cache fill.
        Bson::DateTime(t) => t.try_to_rfc3339_string().map_or(Value::Null, Value::String),
        Bson::Int32(v) => json!(v),
        Bson::Int64(v) => json!(v),
        Bson::Double(v) => json!(v),
        Bson::String(s) => Value::String(s),
        Bson::Boolean(v) => Value::Bool(v),
        Bson::Null => Value::Null,
        Bson::ObjectId(o) => Value::String(o.to_hex()),
        other => other.into_relaxed_extjson(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn averages_per_bucket() {
        let mon = Utc.with_ymd_and_hms(2026, 11, 16, 10, 0, 0).unwrap();
        let sun = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let ratings = [(5, mon), (2, sun), (4, sun)];
        let buckets = vec![
            (Window::Day, Window::Day.bucket(sun)),
            (Window::Week, Window::Week.bucket(sun)),
            (Window::AllTime, "all".to_owned()),
            (Window::Day, "2026-01-01".to_owned()),
        ];
        let got: Vec<Option<f64>> = bucket_averages(&ratings, &buckets)
            .into_iter()
            .map(|(_, _, a)| a)
            .collect();
        assert_eq!(got, [Some(3.0), Some(11.0 / 3.0), Some(11.0 / 3.0), None]);
    }

    #[test]
    fn title_json_renames_id_and_formats_dates() {
        let t = bson::DateTime::from_millis(0);
        let v = title_json(doc! {"_id": 7_i64, "title": "X", "updated_at": t, "genres": ["a"]});
        assert_eq!(
            v,
            json!({"title_id": 7, "title": "X", "updated_at": "1970-01-01T00:00:00Z", "genres": ["a"]})
        );
    }

    #[test]
    fn constraint_violations_map_to_stable_codes() {
        let reg = Command::UserRegistered(UserRegistered {
            user_id: 1,
            name: "a".into(),
            email: "a@b.c".into(),
            password_hash: "$argon2id$x".into(),
            cpf: Some("52998224725".into()),
            admin: false,
        });
        let code = |c: &PgClass| match rule_failure(&reg, c) {
            Decision::Failed { code, reason } => (code, reason),
            d => panic!("{d:?}"),
        };
        assert_eq!(
            code(&PgClass::UniqueViolation("users_pkey".into())).0,
            "duplicate_user"
        );
        assert_eq!(
            code(&PgClass::UniqueViolation("users_email_key".into())).0,
            "duplicate_email"
        );
        let (c, reason) = code(&PgClass::UniqueViolation("users_cpf_key".into()));
        assert_eq!(c, "duplicate_cpf");
        assert!(!reason.contains("52998224725"), "the CPF must not leak");
        assert_eq!(
            code(&PgClass::ForeignKeyViolation("x".into())),
            ("unknown_user", "user 1 does not exist".to_owned())
        );
    }
}
