//! The processed-event ledger in PostgreSQL (S2): one row per event id with
//! the outcome that was published, so a redelivered event changes nothing.

use polystream_common::instrument::{Store, store_op};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::fault::{Fault, pg_fault};

/// The outcome recorded for an event, if it was processed.
pub async fn outcome(pg: &PgPool, event_id: Uuid) -> Result<Option<Value>, Fault> {
    store_op(
        Store::Postgres,
        "select_processed_event",
        sqlx::query_scalar("SELECT outcome FROM processed_events WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(pg),
    )
    .await
    .map_err(pg_fault)
}

/// The outcomes recorded for those of `event_ids` already processed.
pub async fn outcomes(
    pg: &PgPool,
    event_ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Value>, Fault> {
    let rows: Vec<(Uuid, Value)> = store_op(
        Store::Postgres,
        "select_processed_event",
        sqlx::query_as("SELECT event_id, outcome FROM processed_events WHERE event_id = ANY($1)")
            .bind(event_ids)
            .fetch_all(pg),
    )
    .await
    .map_err(pg_fault)?;
    Ok(rows.into_iter().collect())
}

/// Records `outcome` for an event unless one is recorded already; returns
/// it when this call recorded it, `None` when the event was already there.
/// Takes a connection so it commits with the effect's transaction.
pub async fn insert(
    con: &mut PgConnection,
    event_id: Uuid,
    event_type: &str,
    correlation_id: Uuid,
    outcome: &Value,
) -> Result<Option<Value>, Fault> {
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
    .map_err(pg_fault)
}

/// One row of [`insert_many`]: event id, event type, correlation id, outcome.
pub type Entry<'a> = (Uuid, &'a str, Uuid, &'a Value);

/// Records the outcomes of several events in one statement (S2's batches);
/// returns how many were recorded — fewer than given when some event was
/// already there. Takes a connection so it commits with the effects.
pub async fn insert_many(con: &mut PgConnection, rows: &[Entry<'_>]) -> Result<usize, Fault> {
    let mut ids = Vec::with_capacity(rows.len());
    let mut types = Vec::with_capacity(rows.len());
    let mut correlations = Vec::with_capacity(rows.len());
    let mut outcomes = Vec::with_capacity(rows.len());
    for (id, event_type, correlation_id, outcome) in rows {
        ids.push(*id);
        types.push(*event_type);
        correlations.push(*correlation_id);
        outcomes.push(*outcome);
    }
    let done = store_op(
        Store::Postgres,
        "insert_processed_events",
        sqlx::query(
            "INSERT INTO processed_events (event_id, event_type, correlation_id, outcome)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::jsonb[])
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&ids)
        .bind(&types)
        .bind(&correlations)
        .bind(&outcomes)
        .execute(&mut *con),
    )
    .await
    .map_err(pg_fault)?;
    Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
}
