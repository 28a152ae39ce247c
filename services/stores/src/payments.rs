//! Payments in PostgreSQL, keyed by the gateway's payment id.

use chrono::{DateTime, Utc};
use polystream_common::instrument::{Store, store_op};
use sqlx::PgPool;
use uuid::Uuid;

use crate::fault::{Fault, pg_fault};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Payment {
    pub payment_id: Uuid,
    pub user_id: i64,
    pub amount_cents: i64,
    pub currency: String,
    /// `credit_card`, `debit_card`, `pix` or `boleto`.
    pub method: String,
    /// `approved`, `pending`, `declined` or `refunded`.
    pub status: String,
    pub paid_at: DateTime<Utc>,
}

/// A user's payments, newest first: at most `limit`, only those paid
/// before `before` when given (keyset paging by `paid_at`).
pub async fn for_user(
    pg: &PgPool,
    user_id: i64,
    before: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<Vec<Payment>, Fault> {
    store_op(
        Store::Postgres,
        "select_payments",
        sqlx::query_as::<_, Payment>(
            "SELECT payment_id, user_id, amount_cents, currency, method, status, paid_at FROM payments \
             WHERE user_id = $1 AND ($2::timestamptz IS NULL OR paid_at < $2) ORDER BY paid_at DESC LIMIT $3",
        )
        .bind(user_id)
        .bind(before)
        .bind(limit)
        .fetch_all(pg),
    )
    .await
    .map_err(pg_fault)
}

/// Records a payment (S2, inside the command's transaction); keyed by the
/// gateway's payment id, so a retried request is a no-op. The error is
/// sqlx's own: an unknown user (foreign key) is a business answer the caller
/// classifies with [`crate::fault::classify_pg`].
pub async fn insert(
    con: &mut sqlx::PgConnection,
    p: &polystream_common::events::PaymentRecorded,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payments (payment_id, user_id, amount_cents, currency, method, status, paid_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (payment_id) DO NOTHING",
    )
    .bind(p.payment_id)
    .bind(p.user_id)
    .bind(p.amount_cents)
    .bind(&p.currency)
    .bind(crate::pg::wire_name(&p.method))
    .bind(crate::pg::wire_name(&p.status))
    .bind(p.paid_at)
    .execute(&mut *con)
    .await?;
    Ok(())
}
