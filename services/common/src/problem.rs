//! RFC 9457 problem details (`application/problem+json`), the one error shape
//! every Polystream HTTP API answers with.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::events::Violation;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// One invalid input, named by its location (`body.email`, `query.limit`, `path.user_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InvalidParam {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; see docs/errors.md.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Every input that was wrong, so a client can fix them all at once.
    #[serde(rename = "invalid-params", skip_serializing_if = "Vec::is_empty")]
    pub invalid_params: Vec<InvalidParam>,
    /// Seconds to send as `Retry-After` (429 and 503); a header, not a member.
    #[serde(skip)]
    #[schema(ignore)]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, title: &str) -> Self {
        Self {
            kind: format!("https://polystream.dev/problems/{kind}"),
            title: title.into(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            invalid_params: Vec::new(),
            retry_after: None,
        }
    }

    /// Sends `Retry-After` with this problem, in whole seconds (at least 1).
    pub fn retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
        self
    }

    /// 429: a rate limit or a lockout; `Retry-After` says when to come back.
    pub fn too_many_requests(detail: impl Into<String>, wait: std::time::Duration) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
        )
        .detail(detail)
        .retry_after(wait)
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// 400 naming each bad field.
    pub fn invalid(params: Vec<InvalidParam>) -> Self {
        let names: Vec<_> = params.iter().map(|p| p.name.as_str()).collect();
        let detail = format!("invalid value for {}", names.join(", "));
        Self {
            invalid_params: params,
            ..Self::new(StatusCode::BAD_REQUEST, "invalid-input", "Invalid input")
        }
        .detail(detail)
    }

    /// 400 from contract violations, prefixing each field with where it came from.
    pub fn from_violations(location: &str, violations: Vec<Violation>) -> Self {
        Self::invalid(
            violations
                .into_iter()
                .map(|v| InvalidParam {
                    name: format!("{location}.{}", v.field),
                    reason: v.message,
                })
                .collect(),
        )
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found")
            .detail(format!("{what} does not exist"))
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
        )
        .detail(detail)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        )
        .detail("the error was logged; retry later")
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.retry_after;
        let mut res = (status, Json(self)).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(secs) = retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_input_names_every_field() {
        let p = Problem::from_violations(
            "body",
            vec![
                Violation {
                    field: "email".into(),
                    message: "must be an email".into(),
                },
                Violation {
                    field: "stars".into(),
                    message: "must be between 1 and 5".into(),
                },
            ],
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["status"], 400);
        assert_eq!(json["invalid-params"][0]["name"], "body.email");
        assert_eq!(json["detail"], "invalid value for body.email, body.stars");
        let res = p.into_response();
        assert_eq!(res.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
    }

    #[test]
    fn retry_after_is_a_header_in_whole_seconds() {
        let p = Problem::too_many_requests("slow down", std::time::Duration::from_millis(1200));
        assert!(
            serde_json::to_value(&p)
                .unwrap()
                .get("retry_after")
                .is_none()
        );
        let res = p.into_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[header::RETRY_AFTER], "2");
        let res = Problem::too_many_requests("x", std::time::Duration::ZERO).into_response();
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    }
}
