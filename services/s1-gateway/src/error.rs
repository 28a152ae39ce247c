//! The one error type handlers return; every variant answers problem+json.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use polystream_common::problem::{InvalidParam, Problem};

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

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::unavailable("postgresql", e)
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        Self::unavailable("redis", e)
    }
}

impl From<mongodb::error::Error> for ApiError {
    fn from(e: mongodb::error::Error) -> Self {
        Self::unavailable("mongodb", e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (*self.0).into_response()
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
