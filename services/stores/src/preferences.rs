//! Preferences in PostgreSQL: one row per user.

use chrono::{DateTime, Utc};
use polystream_common::instrument::{Store, store_op};
use sqlx::PgPool;

use crate::fault::{Fault, pg_fault};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Preferences {
    pub user_id: i64,
    /// BCP 47 tag.
    pub language: String,
    pub notifications: bool,
    /// `light`, `dark` or `system`.
    pub theme: String,
    pub updated_at: DateTime<Utc>,
}

/// The user's preferences, if they ever set any.
pub async fn of_user(pg: &PgPool, user_id: i64) -> Result<Option<Preferences>, Fault> {
    store_op(
        Store::Postgres,
        "select_preferences",
        sqlx::query_as::<_, Preferences>(
            "SELECT user_id, language, notifications, theme, updated_at \
             FROM preferences WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(pg),
    )
    .await
    .map_err(pg_fault)
}
