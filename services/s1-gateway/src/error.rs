//! The one error type handlers return; every variant answers problem+json.
//!
//! A store error is classified by `polystream_stores::fault`, the same rule
//! S2 retries by: a transient fault (the store is down, restarting, out of
//! connections) is an outage — 503 with `Retry-After`; a permanent one (the
//! store rejects the request: a data exception, a missing table, unreadable
//! data) is a bug — 500, never 503.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use polystream_common::problem::{InvalidParam, Problem};
use polystream_stores::fault::{Fault, mongo_fault, pg_fault, redis_fault};

/// Seconds a client is told to wait after a 503: long enough for a store
/// restart or failover to finish, short enough not to lose the user.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// A handler failure. Client mistakes carry their own [`Problem`]; store
/// failures are logged here and answered without internals.
#[derive(Debug)]
pub struct ApiError(pub Box<Problem>);

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// 400 naming one field (`body.email`, `query.limit`, `path.id`).
    pub fn field(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self(Box::new(Problem::invalid(vec![InvalidParam {
            name: name.into(),
            reason: reason.into(),
        }])))
    }

    pub fn not_found(what: &str) -> Self {
        Self(Box::new(Problem::not_found(what)))
    }

    pub fn unauthorized(detail: &str) -> Self {
        Self(Box::new(
            Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized").detail(detail),
        ))
    }

    pub fn forbidden(detail: &str) -> Self {
        Self(Box::new(
            Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(detail),
        ))
    }

    pub fn unavailable(store: &str, err: impl std::fmt::Display) -> Self {
        tracing::warn!(store, error = %err, "store unavailable");
        Self(Box::new(Problem::unavailable(format!(
            "{store} is unavailable; retry later"
        ))))
    }

    pub fn status(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self(Box::new(Problem::new(status, kind, title).detail(detail)))
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self(Box::new(p))
    }
}

impl From<Fault> for ApiError {
    fn from(f: Fault) -> Self {
        if f.is_transient() {
            Self::unavailable(f.store, &f.message)
        } else {
            tracing::error!(store = f.store, error = %f.message, "the store rejected the request");
            Self(Box::new(Problem::internal()))
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        pg_fault(e).into()
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        redis_fault(e).into()
    }
}

impl From<mongodb::error::Error> for ApiError {
    fn from(e: mongodb::error::Error) -> Self {
        mongo_fault(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (*self.0).into_response();
        // Every 503 is an outage a client should retry: say when.
        if res.status() == StatusCode::SERVICE_UNAVAILABLE
            && !res.headers().contains_key(axum::http::header::RETRY_AFTER)
        {
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(RETRY_AFTER_SECONDS),
            );
        }
        res
    }
}

/// Fallback for unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::status(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        "no such endpoint; see /docs",
    )
}

/// Turns axum's plain-text 405 into problem+json.
pub async fn method_not_allowed(res: Response) -> Response {
    if res.status() == StatusCode::METHOD_NOT_ALLOWED {
        let allow = res.headers().get(axum::http::header::ALLOW).cloned();
        let mut out = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
        )
        .detail("this endpoint does not accept that method")
        .into_response();
        if let Some(allow) = allow {
            out.headers_mut().insert(axum::http::header::ALLOW, allow);
        }
        return out;
    }
    res
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};

    fn answer(e: ApiError) -> (StatusCode, Option<String>, String) {
        let res = e.into_response();
        let retry = res
            .headers()
            .get(RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let ct = res.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
        (res.status(), retry, ct)
    }

    #[test]
    fn an_outage_is_503_with_retry_after() {
        for e in [
            ApiError::from(sqlx::Error::PoolTimedOut),
            ApiError::from(sqlx::Error::Io(
                std::io::ErrorKind::ConnectionRefused.into(),
            )),
            ApiError::from(redis::RedisError::from(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            ))),
            ApiError::from(mongodb::error::Error::from(
                mongodb::error::ErrorKind::from(std::io::ErrorKind::ConnectionRefused),
            )),
            ApiError::from(Fault::transient("postgresql", "SQLSTATE 57P01")),
        ] {
            let (status, retry, ct) = answer(e);
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(retry.as_deref(), Some("5"));
            assert_eq!(ct, "application/problem+json");
        }
    }

    #[test]
    fn a_bug_is_500_never_503() {
        for e in [
            ApiError::from(sqlx::Error::RowNotFound),
            ApiError::from(sqlx::Error::ColumnNotFound("x".into())),
            ApiError::from(redis::RedisError::from((
                redis::ErrorKind::Parse,
                "bad reply",
            ))),
            ApiError::from(mongodb::error::Error::custom("bad document")),
            ApiError::from(Fault::permanent("postgresql", "SQLSTATE 22021")),
        ] {
            let (status, retry, ct) = answer(e);
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(retry, None);
            assert_eq!(ct, "application/problem+json");
        }
    }
}
