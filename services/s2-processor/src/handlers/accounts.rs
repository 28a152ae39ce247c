//! Accounts and billing in PostgreSQL: each command's effect and its ledger
//! entry commit in one transaction, so a crash leaves either both or neither.
//! The constraint violations these statements can expect are business
//! answers ([`rule_failure`]); any other store error is a [`Fault`] and the
//! transaction is rolled back (dropped), so a permanent fault leaves nothing.

use polystream_common::events::{
    Envelope, FailureCode, PaymentRecorded, PreferencesUpdated, SubscriptionChanged, UserRegistered,
};
use polystream_common::instrument::{Store, store_op};
use polystream_stores::fault::{Fault, PgClass, classify_pg, pg_fault};
use polystream_stores::{payments, preferences, subscriptions, users};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};

use super::{Decision, ledger, pg_op};

/// A command whose owning store is PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    Register(&'a UserRegistered),
    Subscribe(&'a SubscriptionChanged),
    Pay(&'a PaymentRecorded),
    Preferences(&'a PreferencesUpdated),
}

impl Write<'_> {
    /// The `operation` label of its statement.
    pub fn operation(self) -> &'static str {
        match self {
            Self::Register(_) => "insert_user",
            Self::Subscribe(_) => "upsert_subscription",
            Self::Pay(_) => "insert_payment",
            Self::Preferences(_) => "upsert_preferences",
        }
    }

    pub fn user_id(self) -> i64 {
        match self {
            Self::Register(p) => p.user_id,
            Self::Subscribe(p) => p.user_id,
            Self::Pay(p) => p.user_id,
            Self::Preferences(p) => p.user_id,
        }
    }
}

/// Applies a PostgreSQL command and records its outcome in the same
/// transaction; returns the outcome on record.
pub async fn apply(
    pg: &PgPool,
    env: &Envelope<Value>,
    w: Write<'_>,
    outcome_of: impl Fn(&Decision) -> Value,
) -> Result<Value, Fault> {
    let mut tx = pg_op("begin", pg.begin()).await?;
    let decision = match effect_in(&mut tx, w).await? {
        Ok(d) => d,
        Err(class) => {
            // The failed statement aborted the transaction: the failure is
            // recorded in a fresh one.
            pg_op("rollback", tx.rollback()).await?;
            tx = pg_op("begin", pg.begin()).await?;
            rule_failure(w, &class)
        }
    };
    match ledger::put(&mut tx, env, &outcome_of(&decision)).await? {
        Some(v) => {
            pg_op("commit", tx.commit()).await?;
            Ok(v)
        }
        // Processed concurrently by another consumer (a rebalance race): keep
        // its effects and outcome, drop ours.
        None => {
            pg_op("rollback", tx.rollback()).await?;
            ledger::on_record(pg, env).await
        }
    }
}

/// The effect alone, on `con`'s transaction: its decision, or the class of
/// the rule it broke (the failed statement aborted the transaction). A
/// broken rule is the store answering correctly: the call counts as `ok`;
/// only faults are store errors. [`apply`] records the outcome in the same
/// transaction; a batch records its entries itself before the same commit.
pub async fn effect_in(
    con: &mut PgConnection,
    w: Write<'_>,
) -> Result<Result<Decision, PgClass>, Fault> {
    store_op(Store::Postgres, w.operation(), async {
        match effect(con, w).await {
            Ok(d) => Ok(Ok(d)),
            Err(e) => match classify_pg(&e) {
                PgClass::Fault(_) => Err(e),
                class => Ok(Err(class)),
            },
        }
    })
    .await
    .map_err(pg_fault)
}

/// The business failure a constraint violation stands for.
pub fn rule_failure(w: Write<'_>, class: &PgClass) -> Decision {
    match (w, class) {
        (Write::Register(p), PgClass::UniqueViolation(c)) if c == "users_pkey" => Decision::failed(
            FailureCode::DuplicateUser,
            format!("user {} already exists", p.user_id),
        ),
        // Neither the email nor the CPF is echoed: outcomes travel to the
        // audit trail and to whoever holds the correlation id.
        (Write::Register(_), PgClass::UniqueViolation(c)) if c == "users_email_key" => {
            Decision::failed(
                FailureCode::DuplicateEmail,
                "a user with this email already exists",
            )
        }
        (Write::Register(_), PgClass::UniqueViolation(c)) if c == "users_cpf_key" => {
            Decision::failed(
                FailureCode::DuplicateCpf,
                "a user with this CPF already exists",
            )
        }
        (_, PgClass::ForeignKeyViolation(_)) => Decision::failed(
            FailureCode::UnknownUser,
            format!("user {} does not exist", w.user_id()),
        ),
        (_, PgClass::UniqueViolation(c) | PgClass::CheckViolation(c)) => Decision::failed(
            FailureCode::Rejected,
            format!("rejected by the store (constraint {c})"),
        ),
        (_, PgClass::Fault(f)) => Decision::failed(FailureCode::StoreRejected, f.to_string()),
    }
}

async fn effect(con: &mut PgConnection, w: Write<'_>) -> Result<Decision, sqlx::Error> {
    Ok(Decision::Completed(match w {
        Write::Register(p) => {
            users::insert(con, p).await?;
            json!({"user_id": p.user_id})
        }
        Write::Subscribe(p) => {
            subscriptions::upsert(con, p).await?;
            json!({
                "user_id": p.user_id, "plan": p.plan, "status": p.status,
                "renews_on": p.renews_on,
            })
        }
        Write::Pay(p) => {
            payments::insert(con, p).await?;
            json!({"payment_id": p.payment_id, "user_id": p.user_id, "status": p.status})
        }
        Write::Preferences(p) => {
            preferences::upsert(con, p).await?;
            json!({"user_id": p.user_id})
        }
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn constraint_violations_map_to_stable_codes() {
        let reg = UserRegistered {
            user_id: 1,
            name: "a".into(),
            email: "a@b.c".into(),
            password_hash: Some("$argon2id$x".into()),
            cpf: Some("52998224725".into()),
            admin: false,
        };
        let code = |c: &PgClass| match rule_failure(Write::Register(&reg), c) {
            Decision::Failed { code, reason } => (code, reason),
            d => panic!("{d:?}"),
        };
        assert_eq!(
            code(&PgClass::UniqueViolation("users_pkey".into())).0,
            FailureCode::DuplicateUser
        );
        assert_eq!(
            code(&PgClass::UniqueViolation("users_email_key".into())).0,
            FailureCode::DuplicateEmail
        );
        let (c, reason) = code(&PgClass::UniqueViolation("users_cpf_key".into()));
        assert_eq!(c, FailureCode::DuplicateCpf);
        assert!(!reason.contains("52998224725"), "the CPF must not leak");
        assert_eq!(
            code(&PgClass::ForeignKeyViolation("x".into())),
            (FailureCode::UnknownUser, "user 1 does not exist".to_owned())
        );
        assert_eq!(
            code(&PgClass::CheckViolation("users_user_id_check".into())).0,
            FailureCode::Rejected
        );
        assert_eq!(Write::Register(&reg).operation(), "insert_user");
    }
}
