//! What a store error means, decided in one place for every service: a
//! [`Class::Transient`] fault heals by itself (the store is down, restarting,
//! overloaded, failing over), so waiting and retrying is right; a
//! [`Class::Permanent`] one is the store rejecting *this* request (a data
//! exception, a constraint nobody expected, a missing table, unreadable
//! data), so retrying cannot fix it. S2 retries the first without bound and
//! fails the command after a few attempts of the second; S1 answers 503 for
//! the first and 500 for the second.
//!
//! The constraint violations a handler expects (unique, foreign key, check)
//! are classified separately by [`classify_pg`]: they are business answers,
//! not faults.

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Connection refused/reset, timeouts, pool exhausted, failover, too many
    /// connections, server starting or stepping down.
    Transient,
    /// The store rejects the request itself; the same request fails again.
    Permanent,
}

/// A store error, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{store}: {message}")]
pub struct Fault {
    /// `postgresql`, `mongodb`, `redis`, `kafka`.
    pub store: &'static str,
    pub class: Class,
    pub message: String,
}

impl Fault {
    pub fn transient(store: &'static str, message: impl Into<String>) -> Self {
        Self {
            store,
            class: Class::Transient,
            message: message.into(),
        }
    }

    pub fn permanent(store: &'static str, message: impl Into<String>) -> Self {
        Self {
            store,
            class: Class::Permanent,
            message: message.into(),
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class == Class::Transient
    }
}

// ---------------------------------------------------------------- PostgreSQL

/// A PostgreSQL error: a constraint answer the handler may expect, or a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgClass {
    /// SQLSTATE 23505 on the named constraint (a duplicate).
    UniqueViolation(String),
    /// SQLSTATE 23503 on the named constraint (a reference to a missing row).
    ForeignKeyViolation(String),
    /// SQLSTATE 23514: the table's own check rejected the values.
    CheckViolation(String),
    Fault(Fault),
}

/// The class of a SQLSTATE that is not an expected constraint answer.
/// Transient: connection exceptions (08), serialization failure and deadlock
/// (40001, 40P01), insufficient resources such as too many connections (53),
/// operator intervention — shutdown, crash, cannot connect now (57P01–57P03),
/// and a standby that cancelled the query or became read-only during
/// failover (40003 statement completion unknown, 25006 read-only
/// transaction). Everything else — data exceptions (22: NUL byte 22021,
/// out-of-range 22003/22008…), integrity violations (23), undefined objects
/// (42) — is the request itself.
pub fn pg_state_class(state: &str) -> Class {
    let transient = state.starts_with("08")
        || state.starts_with("53")
        || matches!(
            state,
            "40001" | "40P01" | "40003" | "57P01" | "57P02" | "57P03" | "25006"
        );
    if transient {
        Class::Transient
    } else {
        Class::Permanent
    }
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
            class: pg_state_class(s),
            message: format!("SQLSTATE {s}: {message}"),
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
        // The connection broke or never came: the server is away.
        E::Io(_)
        | E::Tls(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::Protocol(_) => PgClass::Fault(Fault::transient("postgresql", e.to_string())),
        // Decoding a row, a missing column, a bad type: the data or the code.
        other => PgClass::Fault(Fault::permanent("postgresql", other.to_string())),
    }
}

/// Any PostgreSQL error as a fault, for calls that expect no constraint
/// answer: an unexpected constraint violation is permanent.
pub fn pg_fault(e: sqlx::Error) -> Fault {
    match classify_pg(&e) {
        PgClass::Fault(f) => f,
        _ => Fault::permanent("postgresql", e.to_string()),
    }
}

impl From<sqlx::Error> for Fault {
    fn from(e: sqlx::Error) -> Self {
        pg_fault(e)
    }
}

// ---------------------------------------------------------------- MongoDB

/// MongoDB duplicate key (E11000).
pub fn mongo_is_duplicate_key(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

/// MongoDB `NamespaceExists` (48): a collection created meanwhile.
pub fn mongo_is_namespace_exists(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, mongodb::error::ErrorKind::Command(c) if c.code == 48)
}

/// Server error codes that mean the server is (re)starting, stepping down,
/// unreachable or slow: HostUnreachable 6, HostNotFound 7, NetworkTimeout 89,
/// ShutdownInProgress 91, PrimarySteppedDown 189, ExceededTimeLimit 262,
/// SocketException 9001, NotWritablePrimary 10107, InterruptedAtShutdown
/// 11600, InterruptedDueToReplStateChange 11602, NotPrimaryNoSecondaryOk
/// 13435, NotPrimaryOrSecondary 13436. Anything else (DocumentValidationFailure
/// 121, BadValue 2, TypeMismatch 14, a BSON error…) is the request.
pub const MONGO_TRANSIENT_CODES: &[i32] = &[
    6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];

/// The class of a MongoDB server error code; pure, so it is unit tested.
pub fn mongo_code_class(code: i32) -> Class {
    if MONGO_TRANSIENT_CODES.contains(&code) {
        Class::Transient
    } else {
        Class::Permanent
    }
}

pub fn mongo_fault(e: mongodb::error::Error) -> Fault {
    use mongodb::error::{ErrorKind, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR, WriteFailure};
    let transient = match &*e.kind {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => true,
        ErrorKind::Command(c) => mongo_code_class(c.code) == Class::Transient,
        ErrorKind::Write(WriteFailure::WriteError(w)) => {
            mongo_code_class(w.code) == Class::Transient
        }
        ErrorKind::Write(WriteFailure::WriteConcernError(_)) => true,
        _ => false,
    } || e.contains_label(RETRYABLE_WRITE_ERROR)
        || e.contains_label(RETRYABLE_ERROR);
    Fault {
        store: "mongodb",
        class: if transient {
            Class::Transient
        } else {
            Class::Permanent
        },
        message: e.to_string(),
    }
}

impl From<mongodb::error::Error> for Fault {
    fn from(e: mongodb::error::Error) -> Self {
        mongo_fault(e)
    }
}

// ---------------------------------------------------------------- Redis

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
        class: if transient {
            Class::Transient
        } else {
            Class::Permanent
        },
        message: e.to_string(),
    }
}

impl From<redis::RedisError> for Fault {
    fn from(e: redis::RedisError) -> Self {
        redis_fault(e)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn expected_constraint_violations_are_answers_not_faults() {
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
    fn sqlstate_table() {
        let table = [
            // connection exceptions
            ("08000", Class::Transient),
            ("08001", Class::Transient),
            ("08006", Class::Transient),
            // serialization failure, deadlock, completion unknown
            ("40001", Class::Transient),
            ("40P01", Class::Transient),
            ("40003", Class::Transient),
            // too many connections, out of memory, disk full
            ("53300", Class::Transient),
            ("53200", Class::Transient),
            ("53100", Class::Transient),
            // shutdown, crash, cannot connect now
            ("57P01", Class::Transient),
            ("57P02", Class::Transient),
            ("57P03", Class::Transient),
            // read-only after a failover
            ("25006", Class::Transient),
            // data exceptions: NUL byte, out of range, too long, bad encoding
            ("22021", Class::Permanent),
            ("22003", Class::Permanent),
            ("22008", Class::Permanent),
            ("22001", Class::Permanent),
            ("22P02", Class::Permanent),
            // unexpected integrity violations: not null, exclusion
            ("23502", Class::Permanent),
            ("23P01", Class::Permanent),
            // undefined table and column, syntax
            ("42P01", Class::Permanent),
            ("42703", Class::Permanent),
            ("42601", Class::Permanent),
            // query cancelled by a statement timeout is the query's own cost
            ("57014", Class::Permanent),
        ];
        for (state, class) in table {
            assert_eq!(pg_state_class(state), class, "{state}");
            match classify_pg_state(state, None, "m") {
                PgClass::Fault(f) => {
                    assert_eq!(f.class, class, "{state}");
                    assert!(f.message.contains(state));
                }
                other => panic!("{state}: {other:?}"),
            }
        }
    }

    #[test]
    fn pool_timeouts_and_io_errors_are_transient_decode_errors_permanent() {
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into()),
            sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()),
        ] {
            assert!(pg_fault(e).is_transient());
        }
        assert_eq!(pg_fault(sqlx::Error::RowNotFound).class, Class::Permanent);
        assert_eq!(
            pg_fault(sqlx::Error::ColumnNotFound("x".into())).class,
            Class::Permanent
        );
    }

    #[test]
    fn mongo_code_table() {
        for code in [
            6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
        ] {
            assert_eq!(mongo_code_class(code), Class::Transient, "{code}");
        }
        // DocumentValidationFailure, BadValue, TypeMismatch, FailedToParse,
        // duplicate key, Location (FerretDB's catch-all)
        for code in [121, 2, 14, 9, 11000, 10334] {
            assert_eq!(mongo_code_class(code), Class::Permanent, "{code}");
        }
    }

    #[test]
    fn mongo_network_errors_are_transient_others_permanent() {
        let io = mongodb::error::Error::from(mongodb::error::ErrorKind::from(
            std::io::ErrorKind::ConnectionRefused,
        ));
        assert!(!mongo_is_duplicate_key(&io));
        assert!(mongo_fault(io).is_transient());
        let custom = mongodb::error::Error::custom("boom");
        assert_eq!(mongo_fault(custom).class, Class::Permanent);
    }

    #[test]
    fn redis_kinds() {
        let io =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(redis_fault(io).is_transient());
        let reset =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(redis_fault(reset).is_transient());
        let parse = redis::RedisError::from((redis::ErrorKind::Parse, "bad reply"));
        assert_eq!(redis_fault(parse).class, Class::Permanent);
        let wrong = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ExecAbort),
            "aborted",
        ));
        assert_eq!(redis_fault(wrong).class, Class::Permanent);
    }
}
