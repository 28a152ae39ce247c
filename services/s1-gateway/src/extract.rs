//! Extractors that answer bad input with a 400 problem naming the field
//! (`body.stars`, `query.limit`, `path.id`) instead of axum's plain text.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use polystream_common::events::{Text, check_text};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// A JSON body. Request DTOs use `deny_unknown_fields`, so a typo is a 400 too.
pub struct ValidJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim();
                m.eq_ignore_ascii_case("application/json") || m.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&bytes).map(ValidJson)
    }
}

/// Parses a JSON body, naming the offending field on failure. No string in
/// it may hold a control character other than newline or tab (a NUL never
/// reaches a store); which fields take even those is the event contract's
/// per-field rule, checked when the body becomes a command.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::field("body", format!("not valid JSON: {inner}"));
        }
        let msg = inner.to_string();
        ApiError::field(field_name("body", &path, &msg), clean(&msg))
    })?;
    // Parsed again as a tree only to name the field; bodies here are small.
    let tree: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::field("body", format!("not valid JSON: {e}")))?;
    match control_in_json(&tree, "body") {
        Some((field, reason)) => Err(ApiError::field(field, reason)),
        None => Ok(parsed),
    }
}

/// The first string (or key) in `v` holding a character no field may take:
/// its path (`body.cast[2]`) and the reason.
pub fn control_in_json(v: &Value, path: &str) -> Option<(String, String)> {
    match v {
        Value::String(s) => check_text(s, Text::MultiLine)
            .err()
            .map(|r| (path.to_owned(), r)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| control_in_json(item, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            if let Err(r) = check_text(k, Text::SingleLine) {
                return Some((path.to_owned(), format!("a key {r}")));
            }
            control_in_json(item, &format!("{path}.{k}"))
        }),
        _ => None,
    }
}

/// The first query parameter (name or value) with a control character: query
/// values are single-line text, and some reach a store unchanged.
pub fn control_in_query(query: &str) -> Option<ApiError> {
    form_urlencoded::parse(query.as_bytes()).find_map(|(k, v)| {
        if let Err(r) = check_text(&k, Text::SingleLine) {
            return Some(ApiError::field("query", format!("a parameter name {r}")));
        }
        check_text(&v, Text::SingleLine)
            .err()
            .map(|r| ApiError::field(format!("query.{k}"), r))
    })
}

fn body_rejection(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            "the request body is larger than this endpoint accepts",
        )
    } else {
        ApiError::field("body", e.body_text())
    }
}

/// Query parameters, deserialized with the same field naming.
pub struct ValidQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ValidQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ValidQuery)
    }
}

pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    if let Some(e) = control_in_query(query) {
        return Err(e);
    }
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        ApiError::field(field_name("query", &path, &msg), clean(&msg))
    })
}

/// Path parameters; `T` is a struct so every failure names its parameter.
pub struct ValidPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ValidPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::path::ErrorKind;
        // Path segments are single-line text; some are looked up in a store.
        if let Ok(raw) = axum::extract::RawPathParams::from_request_parts(parts, state).await {
            for (k, v) in raw.iter() {
                check_text(v, Text::SingleLine)
                    .map_err(|r| ApiError::field(format!("path.{k}"), r))?;
            }
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ValidPath(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(match e.kind() {
                ErrorKind::ParseErrorAtKey {
                    key, expected_type, ..
                } => ApiError::field(format!("path.{key}"), expected(expected_type)),
                ErrorKind::DeserializeError { key, message, .. } => {
                    ApiError::field(format!("path.{key}"), message.clone())
                }
                ErrorKind::InvalidUtf8InPathParam { key } => {
                    ApiError::field(format!("path.{key}"), "not valid UTF-8")
                }
                other => {
                    // serde reports some failures (e.g. an unknown enum
                    // variant) without the key; name it when there is one.
                    let raw = axum::extract::RawPathParams::from_request_parts(parts, state).await;
                    let name = match raw {
                        Ok(p) if p.iter().count() == 1 => {
                            p.iter().next().map(|(k, _)| format!("path.{k}"))
                        }
                        _ => None,
                    };
                    ApiError::field(name.unwrap_or_else(|| "path".into()), other.to_string())
                }
            }),
            Err(e) => Err(ApiError::field("path", e.body_text())),
        }
    }
}

fn expected(ty: &str) -> String {
    match ty {
        "i64" | "i32" | "u32" | "u64" => "must be a positive integer id".into(),
        "uuid::Uuid" | "Uuid" => "must be a UUID".into(),
        other => format!("must be a {other}"),
    }
}

/// The field a serde error is about: its path, or for unknown/missing fields
/// the name quoted in the message (serde reports those at the parent).
pub fn field_name(location: &str, path: &str, msg: &str) -> String {
    let quoted = msg
        .split('`')
        .nth(1)
        .filter(|_| msg.starts_with("unknown field") || msg.starts_with("missing field"));
    let base = if path == "." || path.is_empty() {
        location.to_owned()
    } else {
        format!("{location}.{path}")
    };
    // serde_path_to_error already ends the path with an unknown field's name,
    // but stops at the parent for a missing one.
    match quoted {
        Some(name) if !base.ends_with(&format!(".{name}")) => format!("{base}.{name}"),
        _ => base,
    }
}

/// serde's message without its position suffix.
fn clean(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// A positive id, or 400 naming it.
pub fn positive(name: &str, id: i64) -> Result<i64, ApiError> {
    if id > 0 {
        Ok(id)
    } else {
        Err(ApiError::field(name, "must be a positive integer id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fields_from_paths_and_messages() {
        assert_eq!(
            field_name("body", ".", "unknown field `nmae`, expected one of `name`"),
            "body.nmae"
        );
        assert_eq!(
            field_name(
                "body",
                "nmae",
                "unknown field `nmae`, expected one of `name`"
            ),
            "body.nmae"
        );
        assert_eq!(
            field_name("body", ".", "missing field `email`"),
            "body.email"
        );
        assert_eq!(
            field_name("body", "stars", "invalid value: integer `300`, expected u8"),
            "body.stars"
        );
        assert_eq!(
            field_name(
                "body",
                "seasons[0].x",
                "unknown field `x`, expected `number`"
            ),
            "body.seasons[0].x"
        );
        assert_eq!(field_name("query", "limit", "invalid digit"), "query.limit");
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Dto {
        name: String,
        stars: u8,
    }

    fn invalid_name(r: Result<Dto, ApiError>) -> String {
        r.unwrap_err().0.invalid_params[0].name.clone()
    }

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(
            invalid_name(parse_json(br#"{"name":"a","stars":1,"x":2}"#)),
            "body.x"
        );
        assert_eq!(
            invalid_name(parse_json(br#"{"name":"a","stars":"many"}"#)),
            "body.stars"
        );
        assert_eq!(invalid_name(parse_json(br#"{"name":"a"}"#)), "body.stars");
        assert_eq!(invalid_name(parse_json(br#"{"name":"#)), "body");
        assert_eq!(invalid_name(parse_query("name=a&stars=900")), "query.stars");
        assert_eq!(invalid_name(parse_query("name=a&stars=1&zz=1")), "query.zz");
    }

    #[test]
    fn control_characters_are_refused_naming_the_field() {
        let r = parse_json::<Dto>(br#"{"name":"Bad\u0000Name","stars":1}"#);
        let p = &r.unwrap_err().0.invalid_params[0];
        assert_eq!(p.name, "body.name");
        assert_eq!(
            p.reason,
            "must not contain control characters (found U+0000)"
        );
        assert_eq!(
            invalid_name(parse_query("name=a%00b&stars=1")),
            "query.name"
        );
        assert_eq!(
            invalid_name(parse_query("name=a%0Ab&stars=1")),
            "query.name"
        );
        // A body string may span lines; the contract decides per field.
        assert!(parse_json::<Dto>(br#"{"name":"a\nb","stars":1}"#).is_ok());
        let tree = serde_json::json!({"a": [{"b": "ok"}, {"b": "x\u{1b}"}]});
        assert_eq!(
            control_in_json(&tree, "body").map(|(f, _)| f).as_deref(),
            Some("body.a[1].b")
        );
        // DEL and C1 controls are valid unescaped JSON, and still refused.
        assert_eq!(
            invalid_name(parse_json::<Dto>(
                "{\"name\":\"a\u{85}\",\"stars\":1}".as_bytes()
            )),
            "body.name"
        );
    }
}
