//! The processed-event ledger: one row per event id with the outcome that was
//! published, so a redelivered event changes nothing and republishes it.

use polystream_common::events::Envelope;
use polystream_stores::fault::Fault;
use polystream_stores::ledger;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::pg_op;

/// The outcome envelope stored for an event already processed.
pub async fn get(pg: &PgPool, event_id: Uuid) -> Result<Option<Value>, Fault> {
    ledger::outcome(pg, event_id).await
}

/// The outcomes on record for those of `event_ids` already processed.
pub async fn outcomes(
    pg: &PgPool,
    event_ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Value>, Fault> {
    ledger::outcomes(pg, event_ids).await
}

/// Records `outcome` unless the event is already recorded; `None` when it was.
pub async fn put(
    con: &mut PgConnection,
    env: &Envelope<Value>,
    outcome: &Value,
) -> Result<Option<Value>, Fault> {
    ledger::insert(con, env.id, &env.event_type, env.correlationid, outcome).await
}

/// Records the outcome of an event whose effects (if any) are already done —
/// MongoDB/Redis commands, and commands that failed — and returns the outcome
/// now on record (an earlier one if the event was recorded first).
pub async fn record(pg: &PgPool, env: &Envelope<Value>, outcome: &Value) -> Result<Value, Fault> {
    let mut con = pg_op("acquire_connection", pg.acquire()).await?;
    match put(&mut con, env, outcome).await? {
        Some(v) => Ok(v),
        None => on_record(pg, env).await,
    }
}

/// The outcome recorded by whoever was first.
pub async fn on_record(pg: &PgPool, env: &Envelope<Value>) -> Result<Value, Fault> {
    get(pg, env.id)
        .await?
        .ok_or_else(|| Fault::transient("postgresql", "processed event vanished"))
}
