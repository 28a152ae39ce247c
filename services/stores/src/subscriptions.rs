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
