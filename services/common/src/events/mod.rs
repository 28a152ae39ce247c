//! The event contract: CloudEvents 1.0 envelopes (structured JSON mode) whose
//! `data` is one of the versioned payloads in [`payloads`].
//!
//! Commands travel on [`topics::USER_EVENTS`], keyed by the id they concern so
//! one user's (or title's) events stay in order; outcomes travel on
//! [`topics::RESPONSE_EVENTS`]; events that cannot be processed go to
//! [`topics::DEAD_LETTER`] with the reason in headers.

pub mod failure;
pub mod payloads;
pub mod text;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use failure::FailureCode;
pub use payloads::*;
pub use text::{Text, check_text, control_message, forbidden_char, is_forbidden};

/// Kafka topic names.
pub mod topics {
    pub const USER_EVENTS: &str = "user_events";
    pub const RESPONSE_EVENTS: &str = "response_events";
    pub const DEAD_LETTER: &str = "dead_letter_events";
}

/// Kafka header names.
pub mod headers {
    /// W3C trace context, so a request is one trace across Kafka hops.
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";
    /// CloudEvents binding: the type, duplicated in a header so consumers can
    /// route without parsing the body.
    pub const CE_TYPE: &str = "ce_type";
    pub const CE_CORRELATION_ID: &str = "ce_correlationid";
    /// Why an event was dead-lettered, and where it came from.
    pub const DLQ_REASON: &str = "dlq_reason";
    pub const DLQ_SOURCE_TOPIC: &str = "dlq_source_topic";
    pub const DLQ_SOURCE_PARTITION: &str = "dlq_source_partition";
    pub const DLQ_SOURCE_OFFSET: &str = "dlq_source_offset";
}

pub const SPEC_VERSION: &str = "1.0";
pub const JSON: &str = "application/json";

/// A CloudEvents 1.0 event in structured JSON mode, with the `correlationid`
/// extension attribute tying a command to its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope<D> {
    /// Always `1.0`.
    pub specversion: String,
    /// Unique per event; consumers deduplicate on it.
    pub id: Uuid,
    /// The producing service, e.g. `/polystream/s1-gateway`.
    pub source: String,
    /// Versioned event type, e.g. `polystream.user.registered.v1`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub time: DateTime<Utc>,
    /// What the event is about: `user/42` or `title/7`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// Shared by a command and every event it causes.
    pub correlationid: Uuid,
    pub data: D,
}

impl<D> Envelope<D> {
    pub fn new(
        source: &str,
        event_type: &str,
        subject: Option<String>,
        correlationid: Uuid,
        data: D,
    ) -> Self {
        Self {
            specversion: SPEC_VERSION.into(),
            id: Uuid::now_v7(),
            source: source.into(),
            event_type: event_type.into(),
            time: Utc::now(),
            subject,
            datacontenttype: JSON.into(),
            correlationid,
            data,
        }
    }
}

/// Why raw bytes are not a usable event.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("not a JSON CloudEvents envelope: {0}")]
    Envelope(String),
    #[error("unsupported specversion {0:?} (expected \"1.0\")")]
    SpecVersion(String),
    #[error("unsupported datacontenttype {0:?} (expected \"application/json\")")]
    ContentType(String),
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("invalid data for {event_type}: {reason}")]
    Data { event_type: String, reason: String },
}

/// Parses an envelope and checks the attributes every consumer relies on.
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope<serde_json::Value>, DecodeError> {
    let env: Envelope<serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Envelope(e.to_string()))?;
    if env.specversion != SPEC_VERSION {
        return Err(DecodeError::SpecVersion(env.specversion));
    }
    if env.datacontenttype != JSON {
        return Err(DecodeError::ContentType(env.datacontenttype));
    }
    Ok(env)
}

/// The JSON Schema documents under `docs/events/`, as `(file name, pretty JSON)`:
/// one per event type plus the envelope. Written by
/// `cargo run -p polystream-common --bin gen-event-schemas`; a test fails when
/// the committed files drift from the types.
pub fn schema_files() -> Vec<(String, String)> {
    let mut files = vec![(
        "envelope.schema.json".to_owned(),
        pretty(&schemars::schema_for!(Envelope<serde_json::Value>)),
    )];
    for (event_type, schema) in Command::schemas().into_iter().chain(Outcome::schemas()) {
        files.push((format!("{event_type}.schema.json"), pretty(&schema)));
    }
    files
}

/// An event type as a metric label value: one of the contract's command or
/// outcome types, else `unknown` (a broken record's type is whatever its
/// producer wrote, and label values must stay a bounded set).
pub fn bounded_event_type(t: Option<&str>) -> &'static str {
    t.and_then(|t| {
        Command::TYPES
            .iter()
            .chain(Outcome::TYPES)
            .find(|known| **known == t)
            .copied()
    })
    .unwrap_or("unknown")
}

fn pretty(schema: &schemars::Schema) -> String {
    crate::generated::canonical_json(schema.as_value().clone())
}

#[cfg(test)]
mod tests;
