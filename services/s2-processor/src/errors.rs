//! What went wrong while handling an event, and whether waiting helps.
//!
//! A business failure (duplicate email, unknown user…) is not an error here:
//! it is a final outcome, published like a success. What remains is a
//! [`Fault`]: the event could not be handled *now*. Every fault is retried
//! with backoff while the partition waits, because skipping would lose a
//! command. `transient` only says whether that is expected (a store is
//! restarting) or needs an operator (a fault we do not recognise).

use std::time::Duration;

/// The event must be retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{store}: {message}")]
pub struct Fault {
    pub store: &'static str,
    pub message: String,
    /// Expected to heal by itself (connection refused, timeout, pool exhausted).
    pub transient: bool,
}

impl Fault {
    pub fn transient(store: &'static str, message: impl Into<String>) -> Self {
        Self {
            store,
            message: message.into(),
            transient: true,
        }
    }
}

/// A PostgreSQL error, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgClass {
    /// SQLSTATE 23505 on the named constraint: a business rule (duplicate).
    UniqueViolation(String),
    /// SQLSTATE 23503 on the named constraint: a reference to a missing row.
    ForeignKeyViolation(String),
    /// SQLSTATE 23514: the store's own check rejected the values.
    CheckViolation(String),
    Fault(Fault),
}

/// SQLSTATE classes/codes that mean "try again later": connection exceptions
/// (08), serialization failure and deadlock (40001, 40P01), insufficient
/// resources (53), operator intervention such as a restart (57P01–57P03).
pub fn pg_state_is_transient(state: &str) -> bool {
    state.starts_with("08")
        || state.starts_with("53")
        || matches!(state, "40001" | "40P01" | "57P01" | "57P02" | "57P03")
}

/// Maps a SQLSTATE and constraint name to a class; pure, so it is unit tested.
pub fn classify_pg_state(state: &str, constraint: Option<&str>, message: &str) -> PgClass {
    let constraint = constraint.unwrap_or_default().to_owned();
    match state {
        "23505" => PgClass::UniqueViolation(constraint),
        "23503" => PgClass::ForeignKeyViolation(constraint),
        "23514" => PgClass::CheckViolation(constraint),
        s => PgClass::Fault(Fault {
            store: "postgresql",
            message: format!("SQLSTATE {s}: {message}"),
            transient: pg_state_is_transient(s),
        }),
    }
}

pub fn classify_pg(e: &sqlx::Error) -> PgClass {
    use sqlx::Error as E;
    match e {
        E::Database(db) => classify_pg_state(
            db.code().as_deref().unwrap_or_default(),
            db.constraint(),
            db.message(),
        ),
        E::Io(_)
        | E::Tls(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::Protocol(_) => PgClass::Fault(Fault::transient("postgresql", e.to_string())),
        other => PgClass::Fault(Fault {
            store: "postgresql",
            message: other.to_string(),
            transient: false,
        }),
    }
}

/// Any PostgreSQL error as a fault, for reads and writes that break no rule.
pub fn pg_fault(e: sqlx::Error) -> Fault {
    match classify_pg(&e) {
        PgClass::Fault(f) => f,
        _ => Fault {
            store: "postgresql",
            message: e.to_string(),
            transient: false,
        },
    }
}

/// MongoDB duplicate key (E11000).
pub fn mongo_is_duplicate_key(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

/// Server error codes that mean the server is (re)starting, stepping down or slow.
const MONGO_TRANSIENT_CODES: &[i32] = &[
    6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];

pub fn mongo_fault(e: mongodb::error::Error) -> Fault {
    use mongodb::error::{ErrorKind, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR, WriteFailure};
    let transient = match &*e.kind {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => true,
        ErrorKind::Command(c) => MONGO_TRANSIENT_CODES.contains(&c.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(_)) => true,
        _ => false,
    } || e.contains_label(RETRYABLE_WRITE_ERROR)
        || e.contains_label(RETRYABLE_ERROR);
    Fault {
        store: "mongodb",
        message: e.to_string(),
        transient,
    }
}

pub fn redis_fault(e: redis::RedisError) -> Fault {
    use redis::{ErrorKind, ServerErrorKind};
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        );
    Fault {
        store: "redis",
        message: e.to_string(),
        transient,
    }
}

/// Kafka could not acknowledge an outcome or dead letter: always worth retrying.
pub fn kafka_fault(e: impl std::fmt::Display) -> Fault {
    Fault::transient("kafka", e.to_string())
}

/// Exponential backoff, doubling from `initial` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub const INITIAL: Duration = Duration::from_millis(100);
    pub const MAX: Duration = Duration::from_secs(10);

    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { next: initial, max }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Self::INITIAL, Self::MAX)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn unique_and_foreign_key_violations_are_business_rules_not_faults() {
        assert_eq!(
            classify_pg_state("23505", Some("users_email_key"), "dup"),
            PgClass::UniqueViolation("users_email_key".into())
        );
        assert_eq!(
            classify_pg_state("23503", Some("payments_user_id_fkey"), "fk"),
            PgClass::ForeignKeyViolation("payments_user_id_fkey".into())
        );
        assert!(matches!(
            classify_pg_state("23514", None, "check"),
            PgClass::CheckViolation(_)
        ));
    }

    #[test]
    fn connection_and_restart_states_are_transient() {
        for s in [
            "08006", "08001", "40001", "40P01", "53300", "57P01", "57P03",
        ] {
            match classify_pg_state(s, None, "x") {
                PgClass::Fault(f) => assert!(f.transient, "{s}"),
                other => panic!("{s}: {other:?}"),
            }
        }
        match classify_pg_state("42P01", None, "relation does not exist") {
            PgClass::Fault(f) => {
                assert!(!f.transient);
                assert!(f.message.contains("42P01"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pool_timeouts_and_io_errors_are_transient() {
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into()),
        ] {
            assert!(matches!(
                classify_pg(&e),
                PgClass::Fault(Fault {
                    transient: true,
                    ..
                })
            ));
        }
        assert!(!pg_fault(sqlx::Error::RowNotFound).transient);
    }

    #[test]
    fn mongo_network_errors_are_transient_and_duplicate_keys_are_recognised() {
        let io = mongodb::error::Error::from(mongodb::error::ErrorKind::from(
            std::io::ErrorKind::ConnectionRefused,
        ));
        assert!(!mongo_is_duplicate_key(&io));
        assert!(mongo_fault(io).transient);
        let custom = mongodb::error::Error::custom("boom");
        assert!(!mongo_fault(custom).transient);
    }

    #[test]
    fn redis_io_errors_are_transient() {
        let io =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(redis_fault(io).transient);
        let parse = redis::RedisError::from((redis::ErrorKind::Parse, "bad reply"));
        assert!(!redis_fault(parse).transient);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000]);
    }
}
