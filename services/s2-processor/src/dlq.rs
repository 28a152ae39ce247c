//! Dead letters: events that can never be processed (undecodable, unknown
//! type, invalid payload, or data a store rejected every time) are copied byte for byte to the dead-letter topic
//! with why and where from in headers, so they can be inspected and replayed.

use polystream_common::events::headers;
use uuid::Uuid;

/// Why an event is dead-lettered, as a bounded metric label; the
/// `dlq_reason` header carries the full text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No payload at all.
    EmptyPayload,
    /// Not JSON, or JSON that is not a CloudEvents envelope.
    NotAnEnvelope,
    /// An envelope with an unsupported `specversion` or `datacontenttype`.
    UnsupportedEnvelope,
    /// A `type` that is not in the contract.
    UnknownType,
    /// A known type whose `data` does not decode or breaks the contract's rules.
    InvalidData,
    /// A valid command a store rejected permanently (a data exception, an
    /// unexpected constraint) on every attempt; it failed with `store_rejected`.
    StoreRejected,
}

impl Reason {
    pub const ALL: [Self; 6] = [
        Self::EmptyPayload,
        Self::NotAnEnvelope,
        Self::UnsupportedEnvelope,
        Self::UnknownType,
        Self::InvalidData,
        Self::StoreRejected,
    ];

    /// The `reason` label of `polystream_dead_lettered_events_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::EmptyPayload => "empty_payload",
            Self::NotAnEnvelope => "not_an_envelope",
            Self::UnsupportedEnvelope => "unsupported_envelope",
            Self::UnknownType => "unknown_type",
            Self::InvalidData => "invalid_data",
            Self::StoreRejected => "store_rejected",
        }
    }
}

/// An event that can never be processed: why (bounded) and the full text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    pub reason: Reason,
    pub message: String,
}

impl Poison {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// The headers of a dead letter: the reason and source first, then every
/// original header (a duplicate `dlq_*` from an earlier hop is dropped so the
/// newest reason wins). The trace context is not copied: the dead letter's
/// own send span sets it, continuing the same trace.
pub fn headers(
    reason: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    original: &[(String, Vec<u8>)],
) -> Vec<(String, Vec<u8>)> {
    let ours = [
        (headers::DLQ_REASON, reason.to_owned()),
        (headers::DLQ_SOURCE_TOPIC, topic.to_owned()),
        (headers::DLQ_SOURCE_PARTITION, partition.to_string()),
        (headers::DLQ_SOURCE_OFFSET, offset.to_string()),
    ];
    let mut out: Vec<(String, Vec<u8>)> = ours
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
        .collect();
    out.extend(
        original
            .iter()
            .filter(|(k, _)| {
                !ours.iter().any(|(o, _)| o == k)
                    && k != headers::TRACEPARENT
                    && k != headers::TRACESTATE
            })
            .cloned(),
    );
    out
}

/// The correlation id of a broken event, if it can be read at all: from the
/// body's `correlationid`, else from the `ce_correlationid` header. Lets the
/// client waiting on that command see `failed` instead of `pending` forever.
pub fn correlation_id(payload: &[u8], original: &[(String, Vec<u8>)]) -> Option<Uuid> {
    let from_body = serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get("correlationid")?.as_str()?.parse().ok());
    from_body.or_else(|| {
        original
            .iter()
            .find(|(k, _)| k == headers::CE_CORRELATION_ID)
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
    })
}

/// The command type of a broken event, if readable, for its status.
pub fn event_type(payload: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| Some(v.get("type")?.as_str()?.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn text(h: &[(String, Vec<u8>)], k: &str) -> Vec<String> {
        h.iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
            .collect()
    }

    #[test]
    fn reason_and_source_come_first_and_original_headers_are_kept() {
        let original = vec![
            ("traceparent".to_owned(), b"00-abc-def-01".to_vec()),
            ("dlq_reason".to_owned(), b"older reason".to_vec()),
        ];
        let h = headers("unknown event type \"x\"", "user_events", 3, 42, &original);
        assert_eq!(h[0].0, "dlq_reason");
        assert_eq!(text(&h, "dlq_reason"), ["unknown event type \"x\""]);
        assert_eq!(text(&h, "dlq_source_topic"), ["user_events"]);
        assert_eq!(text(&h, "dlq_source_partition"), ["3"]);
        assert_eq!(text(&h, "dlq_source_offset"), ["42"]);
        assert!(text(&h, "traceparent").is_empty(), "set by the send span");
        assert_eq!(h.len(), 4);
        let labels: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Reason::ALL.len());
    }

    #[test]
    fn correlation_id_from_body_or_header() {
        let id = Uuid::now_v7();
        let body = format!(r#"{{"correlationid":"{id}","specversion":"0.3"}}"#);
        assert_eq!(correlation_id(body.as_bytes(), &[]), Some(id));
        let h = vec![("ce_correlationid".to_owned(), id.to_string().into_bytes())];
        assert_eq!(correlation_id(b"not json", &h), Some(id));
        assert_eq!(correlation_id(b"not json", &[]), None);
        assert_eq!(event_type(br#"{"type":"t.v1"}"#).as_deref(), Some("t.v1"));
    }
}
