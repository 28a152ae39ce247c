//! Subscriptions in PostgreSQL: one row per user.

use chrono::{DateTime, NaiveDate, Utc};
use polystream_common::instrument::{Store, store_op};
use sqlx::PgPool;

use crate::fault::{Fault, pg_fault};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Subscription {
    pub user_id: i64,
    /// `basic`, `standard` or `premium` (the table's CHECK).
    pub plan: String,
    /// `active`, `past_due` or `cancelled`.
    pub status: String,
    pub started_on: NaiveDate,
    pub renews_on: NaiveDate,
    pub updated_at: DateTime<Utc>,
}

/// The user's subscription, if they ever had one.
pub async fn current(pg: &PgPool, user_id: i64) -> Result<Option<Subscription>, Fault> {
    store_op(
        Store::Postgres,
        "select_subscription",
        sqlx::query_as::<_, Subscription>(
            "SELECT user_id, plan, status, started_on, renews_on, updated_at \
             FROM subscriptions WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(pg),
    )
    .await
    .map_err(pg_fault)
}

/// Starts or replaces a user's subscription (S2, inside the command's
/// transaction). The error is sqlx's own: an unknown user (foreign key) is a
/// business answer the caller classifies with [`crate::fault::classify_pg`].
pub async fn upsert(
    con: &mut sqlx::PgConnection,
    p: &polystream_common::events::SubscriptionChanged,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO subscriptions (user_id, plan, status, started_on, renews_on)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (user_id) DO UPDATE SET plan = EXCLUDED.plan,
           status = EXCLUDED.status, started_on = EXCLUDED.started_on,
           renews_on = EXCLUDED.renews_on, updated_at = now()",
    )
    .bind(p.user_id)
    .bind(crate::pg::wire_name(&p.plan))
    .bind(crate::pg::wire_name(&p.status))
    .bind(p.started_on)
    .bind(p.renews_on)
    .execute(&mut *con)
    .await?;
    Ok(())
}
