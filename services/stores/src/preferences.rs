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

/// Sets a user's preferences (S2, inside the command's transaction). The
/// error is sqlx's own: an unknown user (foreign key) is a business answer
/// the caller classifies with [`crate::fault::classify_pg`].
pub async fn upsert(
    con: &mut sqlx::PgConnection,
    p: &polystream_common::events::PreferencesUpdated,
) -> Result<(), sqlx::Error> {
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
    .bind(crate::pg::wire_name(&p.theme))
    .execute(&mut *con)
    .await?;
    Ok(())
}
