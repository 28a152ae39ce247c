//! Accounts in PostgreSQL: profiles and logins (S1), existence checks (S2).

use chrono::{DateTime, Utc};
use polystream_common::instrument::{Store, store_op};
use sqlx::PgPool;

use crate::fault::{Fault, pg_fault};

/// Whether the user exists.
pub async fn exists(pg: &PgPool, user_id: i64) -> Result<bool, Fault> {
    store_op(
        Store::Postgres,
        "select_user_exists",
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE user_id = $1)")
            .bind(user_id)
            .fetch_one(pg),
    )
    .await
    .map_err(pg_fault)
}

/// When the user was registered, if they exist.
pub async fn created_at(
    pg: &PgPool,
    user_id: i64,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Fault> {
    store_op(
        Store::Postgres,
        "select_user_exists",
        sqlx::query_scalar("SELECT created_at FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(pg),
    )
    .await
    .map_err(pg_fault)
}

/// A user's profile: every column but the password hash.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Profile {
    pub user_id: i64,
    pub name: String,
    pub email: String,
    pub cpf: Option<String>,
    pub admin: bool,
    pub created_at: DateTime<Utc>,
}

/// The profile of `user_id`, if the user exists.
pub async fn profile(pg: &PgPool, user_id: i64) -> Result<Option<Profile>, Fault> {
    store_op(
        Store::Postgres,
        "select_user",
        sqlx::query_as::<_, Profile>(
            "SELECT user_id, name, email, cpf, admin, created_at FROM users WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(pg),
    )
    .await
    .map_err(pg_fault)
}

/// What checking a password needs.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Login {
    pub user_id: i64,
    /// `None`: the account has no password and cannot log in.
    pub password_hash: Option<String>,
    pub admin: bool,
}

/// The login of the account with this email (case-insensitive, as stored
/// emails are unique regardless of case).
pub async fn login_by_email(pg: &PgPool, email: &str) -> Result<Option<Login>, Fault> {
    store_op(
        Store::Postgres,
        "select_login",
        sqlx::query_as::<_, Login>(
            "SELECT user_id, password_hash, admin FROM users WHERE lower(email) = lower($1)",
        )
        .bind(email)
        .fetch_optional(pg),
    )
    .await
    .map_err(pg_fault)
}

/// The id of the account with this email (case-insensitive).
pub async fn find_by_email(pg: &PgPool, email: &str) -> Result<Option<i64>, Fault> {
    store_op(
        Store::Postgres,
        "select_login",
        sqlx::query_scalar("SELECT user_id FROM users WHERE lower(email) = lower($1)")
            .bind(email)
            .fetch_optional(pg),
    )
    .await
    .map_err(pg_fault)
}

/// Inserts a registered user (S2, inside the command's transaction). The
/// error is sqlx's own: a duplicate id, email or CPF is a business answer
/// the caller classifies with [`crate::fault::classify_pg`].
pub async fn insert(
    con: &mut sqlx::PgConnection,
    p: &polystream_common::events::UserRegistered,
) -> Result<(), sqlx::Error> {
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
    Ok(())
}
