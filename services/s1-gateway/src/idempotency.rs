//! `Idempotency-Key` on commands: a retry with the same key (from the same
//! caller, within 24 h) gets the first answer and never a second effect.
//!
//! The record in Redis moves through three states:
//! - `started`: the first request is running; a concurrent retry gets `409`.
//! - `published`: [`crate::command::submit`] stored the exact event it is about
//!   to publish. If that request then failed (a `504` after Kafka did not
//!   acknowledge in time — the event may still have been written — or a
//!   `503`), a retry publishes *that same event* again: same event id, so S2
//!   applies it once.
//! - `done`: the first success's answer, replayed as it was.
//!
//! A request that failed before publishing anything (bad input, no token)
//! leaves no record, so the client may fix it and retry with the same key.
//! The same key with a different request is refused (`422`).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use polystream_common::events::Envelope;
use polystream_common::problem::{InvalidParam, Problem};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::AppState;

pub const HEADER: &str = "idempotency-key";
/// How long a key is remembered.
pub const TTL: Duration = Duration::from_secs(24 * 3600);
/// Set on an answer that was replayed from an earlier request.
pub const REPLAYED: &str = "idempotent-replayed";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Record {
    Started {
        fingerprint: String,
    },
    Published {
        fingerprint: String,
        envelope: Envelope<serde_json::Value>,
    },
    Done {
        fingerprint: String,
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
}

impl Record {
    fn fingerprint(&self) -> &str {
        match self {
            Self::Started { fingerprint }
            | Self::Published { fingerprint, .. }
            | Self::Done { fingerprint, .. } => fingerprint,
        }
    }
}

/// What a request with a key carries down to [`crate::command::submit`].
#[derive(Clone)]
pub struct Claim {
    redis: ConnectionManager,
    key: String,
    fingerprint: String,
    /// The event an earlier attempt published (or may have).
    pub prior: Option<Envelope<serde_json::Value>>,
}

tokio::task_local! {
    static CLAIM: Claim;
}

/// The claim of the request being handled, if it sent a key.
pub fn current() -> Option<Claim> {
    CLAIM.try_with(Clone::clone).ok()
}

impl Claim {
    /// Records the event about to be published, before publishing it.
    pub async fn published(
        &self,
        envelope: &Envelope<serde_json::Value>,
    ) -> redis::RedisResult<()> {
        let record = Record::Published {
            fingerprint: self.fingerprint.clone(),
            envelope: envelope.clone(),
        };
        put(&self.redis, &self.key, &record).await
    }
}

/// A key: 1 to 255 visible ASCII characters (the IETF draft's advice).
pub fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// What makes two requests "the same request".
pub fn fingerprint(method: &Method, uri: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_str());
    h.update(b"\n");
    h.update(uri);
    h.update(b"\n");
    h.update(body);
    hex::encode(h.finalize())
}

fn record_key(scope: &str, caller: &str, key: &str) -> String {
    let who = hex::encode(Sha256::digest(caller.as_bytes()));
    let key = hex::encode(Sha256::digest(key.as_bytes()));
    format!("idempotency:{scope}:{who}:{key}")
}

async fn put(redis: &ConnectionManager, key: &str, record: &Record) -> redis::RedisResult<()> {
    let json = serde_json::to_string(record).unwrap_or_default();
    redis::cmd("SET")
        .arg(key)
        .arg(json)
        .arg("EX")
        .arg(TTL.as_secs())
        .query_async(&mut redis.clone())
        .await
}

/// Claims `key` for a first request; otherwise returns what is stored.
async fn claim(
    redis: &ConnectionManager,
    key: &str,
    fingerprint: &str,
) -> redis::RedisResult<Option<Record>> {
    let started = serde_json::to_string(&Record::Started {
        fingerprint: fingerprint.to_owned(),
    })
    .unwrap_or_default();
    let set: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(started)
        .arg("NX")
        .arg("EX")
        .arg(TTL.as_secs())
        .query_async(&mut redis.clone())
        .await?;
    if set.is_some() {
        return Ok(None);
    }
    // Expired in between, or unreadable: treat it as started elsewhere.
    Ok(Some(get(redis, key).await?.unwrap_or(Record::Started {
        fingerprint: fingerprint.to_owned(),
    })))
}

fn key_problem(status: StatusCode, kind: &str, title: &str, reason: &str) -> Response {
    let mut p = Problem::new(status, kind, title).detail(reason);
    p.invalid_params.push(InvalidParam {
        name: "header.idempotency-key".into(),
        reason: reason.into(),
    });
    if status == StatusCode::CONFLICT {
        p = p.retry_after(Duration::from_secs(1));
    }
    p.into_response()
}

/// The headers worth replaying.
const KEPT: [HeaderName; 2] = [header::CONTENT_TYPE, header::LOCATION];

fn replay(status: u16, headers: &[(String, String)], body: String) -> Response {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let h = res.headers_mut();
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            h.insert(n, v);
        }
    }
    h.insert(REPLAYED, HeaderValue::from_static("true"));
    res
}

fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    KEPT.iter()
        .filter_map(|n| {
            let v = headers.get(n)?.to_str().ok()?;
            Some((n.as_str().to_owned(), v.to_owned()))
        })
        .collect()
}

/// Whether a request to the route `template` honours the header: not reads,
/// and not uploads (their bodies are streamed, not buffered). The OpenAPI
/// document declares the header by the same rule.
pub fn applies(method: &Method, template: &str) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        && !template.ends_with("/assets")
}

/// Middleware on the API routes: does nothing for requests without the
/// header and those it does not [apply](applies) to.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(raw_key) = req.headers().get(HEADER).cloned() else {
        return next.run(req).await;
    };
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    if !applies(req.method(), &template) {
        return next.run(req).await;
    }
    let Some(key) = raw_key.to_str().ok().filter(|k| valid_key(k)) else {
        return key_problem(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            "Invalid input",
            "must be 1 to 255 visible ASCII characters",
        );
    };
    let caller = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|a| format!("auth:{a}"))
        .unwrap_or_else(|| format!("addr:{}", crate::limits::client_of(&state, &req)));
    let record_key = record_key(&state.config.limits.scope, &caller, key);
    let (parts, body) = req.into_parts();
    let max = state.config.max_body_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, max).await else {
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
        )
        .detail(format!("the body is limited to {max} bytes"))
        .into_response();
    };
    let uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let fingerprint = fingerprint(&parts.method, &uri, &bytes);
    let redis = state.redis.clone();
    let prior = match claim(&redis, &record_key, &fingerprint).await {
        Ok(None) => None,
        Ok(Some(r)) if r.fingerprint() != fingerprint => {
            return key_problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
                "this key was used for a different request; use a new key for a new request",
            );
        }
        Ok(Some(Record::Done {
            status,
            headers,
            body,
            ..
        })) => return replay(status, &headers, body),
        Ok(Some(Record::Started { .. })) => {
            return key_problem(
                StatusCode::CONFLICT,
                "idempotency-key-in-use",
                "Request in progress",
                "a request with this key is still being processed; retry shortly",
            );
        }
        Ok(Some(Record::Published { envelope, .. })) => Some(envelope),
        Err(e) => {
            // Without Redis there is no status to report either; say so.
            tracing::warn!(error = %e, "cannot reach Redis for an Idempotency-Key");
            return Problem::unavailable("Redis is unavailable; retry later")
                .retry_after(Duration::from_secs(crate::error::RETRY_AFTER_SECONDS))
                .into_response();
        }
    };
    let claim = Claim {
        redis: redis.clone(),
        key: record_key.clone(),
        fingerprint: fingerprint.clone(),
        prior,
    };
    let req = Request::from_parts(parts, Body::from(bytes));
    let res = CLAIM.scope(claim, next.run(req)).await;
    settle(&redis, &record_key, &fingerprint, res).await
}

/// After the handler: remember a success; keep a published event for a
/// retry; forget a request that changed nothing.
async fn settle(
    redis: &ConnectionManager,
    key: &str,
    fingerprint: &str,
    res: Response,
) -> Response {
    let status = res.status();
    if status.is_success() {
        let (parts, body) = res.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
            return Problem::internal().into_response();
        };
        let record = Record::Done {
            fingerprint: fingerprint.to_owned(),
            status: status.as_u16(),
            headers: kept_headers(&parts.headers),
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        if let Err(e) = put(redis, key, &record).await {
            tracing::warn!(error = %e, "cannot store the answer of an Idempotency-Key");
        }
        return Response::from_parts(parts, Body::from(bytes));
    }
    // Refused before anything was published (bad input, no token, an
    // outage before the send): the key is free again. A record that reached
    // `published` stays, so a retry repeats that event and no other.
    if let Ok(Some(Record::Started { .. })) = get(redis, key).await {
        let _ = redis::cmd("DEL")
            .arg(key)
            .query_async::<i64>(&mut redis.clone())
            .await;
    }
    res
}

async fn get(redis: &ConnectionManager, key: &str) -> redis::RedisResult<Option<Record>> {
    let raw: Option<String> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut redis.clone())
        .await?;
    Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_up_to_255() {
        assert!(valid_key("8e03978e-40d5-43e8-bc93-6894a57f9324"));
        assert!(!valid_key(""));
        assert!(!valid_key("has space"));
        assert!(!valid_key(&"k".repeat(256)));
        assert!(!valid_key("ação"));
    }

    #[test]
    fn the_same_request_has_the_same_fingerprint() {
        let a = fingerprint(
            &Method::POST,
            "/v1/users/1/payments",
            br#"{"amount_cents":1}"#,
        );
        assert_eq!(
            a,
            fingerprint(
                &Method::POST,
                "/v1/users/1/payments",
                br#"{"amount_cents":1}"#
            )
        );
        assert_ne!(
            a,
            fingerprint(
                &Method::POST,
                "/v1/users/1/payments",
                br#"{"amount_cents":2}"#
            )
        );
        assert_ne!(
            a,
            fingerprint(
                &Method::POST,
                "/v1/users/2/payments",
                br#"{"amount_cents":1}"#
            )
        );
    }

    #[test]
    fn records_round_trip_and_keys_hide_the_caller() {
        let r = Record::Done {
            fingerprint: "f".into(),
            status: 202,
            headers: vec![("location".into(), "/v1/status/x".into())],
            body: "{}".into(),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""state":"done""#), "{json}");
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r);
        let k = record_key("polystream", "auth:Bearer secret-token", "k1");
        assert!(!k.contains("secret-token") && !k.contains("k1"), "{k}");
    }
}
