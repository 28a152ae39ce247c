//! Turning a Kafka record into an audit document: pure functions, no I/O.

use chrono::{DateTime, TimeZone, Utc};
use polystream_common::events::{Outcome, decode_envelope, headers};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::redact::{redact, redact_text};

/// What S3 needs from a consumed record, detached from rdkafka so the
/// document building can be tested without a broker.
#[derive(Debug, Clone, Default)]
pub struct RawRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub payload: Option<Vec<u8>>,
    /// Kafka's record timestamp (ms since the epoch), the time of a raw record.
    pub timestamp_ms: Option<i64>,
}

impl RawRecord {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// Which of S3's topics a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Command,
    Outcome,
    DeadLetter,
}

/// The headers worth keeping; anything else is dropped so arbitrary header
/// names never reach the mapping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditHeaders {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_correlationid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlq_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlq_source_topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlq_source_partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlq_source_offset: Option<String>,
}

/// How a command ended, on outcome and dead-letter records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeFields {
    /// `completed`, `failed` or `dead_lettered`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One document of the audit index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditDoc {
    /// The envelope's `id`; absent for a record that is not an envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// `event` (a valid envelope) or `raw`.
    pub kind: String,
    pub role: Role,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    pub time: DateTime<Utc>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub headers: AuditHeaders,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OutcomeFields>,
    /// The event's data (or a raw record's JSON body), sensitive fields removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// A body that is not JSON, as (lossy, truncated) text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// Why the body is not a usable envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_error: Option<String>,
    /// Paths of the fields removed by redaction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
}

/// A document with where it goes: what the indexer sends and the spool stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexedDoc {
    pub index: String,
    pub id: String,
    pub doc: AuditDoc,
}

/// Longest non-JSON body kept, in bytes.
const RAW_MAX: usize = 16 * 1024;

/// Builds the audit document for `rec`, and its index and id.
///
/// The id is the event id for commands and outcomes, so a redelivered or
/// re-published event overwrites itself. Dead-letter records and records
/// that are not envelopes use `topic-partition-offset`: a dead-lettered copy
/// of a command carries the command's own id and must not overwrite it.
pub fn build(rec: &RawRecord, role: Role, prefix: &str, now: DateTime<Utc>) -> IndexedDoc {
    let hdrs = AuditHeaders {
        traceparent: rec.header(headers::TRACEPARENT),
        tracestate: rec.header(headers::TRACESTATE),
        ce_type: rec.header(headers::CE_TYPE),
        ce_correlationid: rec.header(headers::CE_CORRELATION_ID),
        dlq_reason: rec.header(headers::DLQ_REASON),
        dlq_source_topic: rec.header(headers::DLQ_SOURCE_TOPIC),
        dlq_source_partition: rec.header(headers::DLQ_SOURCE_PARTITION),
        dlq_source_offset: rec.header(headers::DLQ_SOURCE_OFFSET),
    };
    let coords = format!("{}-{}-{}", rec.topic, rec.partition, rec.offset);
    let record_time = rec
        .timestamp_ms
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .unwrap_or(now);
    let body = rec.payload.as_deref().unwrap_or_default();
    let mut doc = AuditDoc {
        event_id: None,
        kind: "raw".into(),
        role,
        event_type: hdrs.ce_type.clone(),
        source: None,
        subject: None,
        correlation_id: hdrs.ce_correlationid.clone(),
        time: record_time,
        topic: rec.topic.clone(),
        partition: rec.partition,
        offset: rec.offset,
        key: rec.key.clone(),
        headers: hdrs,
        user_id: None,
        title_id: None,
        outcome: None,
        payload: None,
        raw: None,
        decode_error: None,
        redacted: Vec::new(),
    };
    let mut id = coords.clone();
    match decode_envelope(body) {
        Ok(env) => {
            doc.kind = "event".into();
            doc.event_id = Some(env.id.to_string());
            doc.event_type = Some(env.event_type.clone());
            doc.source = Some(env.source);
            doc.subject = env.subject;
            doc.correlation_id = Some(env.correlationid.to_string());
            doc.time = env.time;
            if role != Role::DeadLetter {
                id = env.id.to_string();
            }
            if role == Role::Outcome {
                doc.outcome = outcome_fields(&env.event_type, &env.data);
            }
            let (payload, removed) = clean_payload(env.data, "data");
            doc.payload = Some(payload);
            doc.redacted = removed;
        }
        Err(e) => {
            doc.decode_error = Some(e.to_string());
            match serde_json::from_slice::<Value>(body) {
                Ok(v) => {
                    let (payload, removed) = clean_payload(v, "body");
                    doc.payload = Some(payload);
                    doc.redacted = removed;
                }
                Err(_) if body.is_empty() => {}
                Err(_) => {
                    let (text, found) = redact_text(&truncated_text(body));
                    doc.raw = Some(text);
                    doc.redacted = found.into_iter().map(|n| format!("raw.{n}")).collect();
                }
            }
        }
    }
    if role == Role::DeadLetter {
        doc.outcome = Some(OutcomeFields {
            status: "dead_lettered".into(),
            command_id: doc.event_id.clone(),
            command_type: doc.event_type.clone(),
            code: None,
            reason: doc.headers.dlq_reason.clone(),
        });
    }
    let about = doc.subject.clone().or_else(|| doc.key.clone());
    if let Some((kind, value)) = about.as_deref().and_then(|s| s.split_once('/')) {
        match kind {
            "user" => doc.user_id = Some(value.to_owned()),
            "title" => doc.title_id = Some(value.to_owned()),
            _ => {}
        }
    }
    IndexedDoc {
        index: index_name(prefix, doc.time),
        id,
        doc,
    }
}

/// Redacts, and wraps a non-object so `payload` is always an object in the mapping.
fn clean_payload(mut v: Value, root: &str) -> (Value, Vec<String>) {
    let removed = redact(&mut v, root);
    let v = if v.is_object() {
        v
    } else {
        json!({ "value": v })
    };
    (v, removed)
}

/// An outcome's fields, read through the contract's typed outcomes (the
/// failure code is a [`polystream_common::events::FailureCode`]). An outcome
/// that does not decode is still audited, its fields taken as text.
fn outcome_fields(event_type: &str, data: &Value) -> Option<OutcomeFields> {
    if !Outcome::TYPES.contains(&event_type) {
        return None;
    }
    let fields = match Outcome::from_data(event_type, data.clone()) {
        Ok(Outcome::Completed(c)) => OutcomeFields {
            status: "completed".into(),
            command_id: Some(c.command_id.to_string()),
            command_type: Some(c.command_type),
            code: None,
            reason: None,
        },
        Ok(Outcome::Failed(f)) => OutcomeFields {
            status: "failed".into(),
            command_id: Some(f.command_id.to_string()),
            command_type: Some(f.command_type),
            code: Some(f.code.as_str().to_owned()),
            reason: Some(f.reason),
        },
        Err(_) => {
            let text = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_owned);
            OutcomeFields {
                status: if event_type == Outcome::TYPES[0] {
                    "completed"
                } else {
                    "failed"
                }
                .into(),
                command_id: text("command_id"),
                command_type: text("command_type"),
                code: text("code"),
                reason: text("reason"),
            }
        }
    };
    Some(fields)
}

fn truncated_text(body: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(&body[..body.len().min(RAW_MAX)]).into_owned();
    if body.len() > RAW_MAX {
        s.push_str("…[truncated]");
    }
    s
}

/// The daily index an event goes to: `{prefix}-YYYY.MM.DD` of its time (UTC).
pub fn index_name(prefix: &str, time: DateTime<Utc>) -> String {
    format!("{prefix}-{}", time.format("%Y.%m.%d"))
}

/// Every daily index of `prefix`, for searches.
pub fn index_pattern(prefix: &str) -> String {
    format!("{prefix}-*")
}

/// The composable index template for `prefix`'s daily indices. `payload` is
/// kept in `_source` but not indexed (`dynamic: false`), so arbitrary event
/// data can never grow the mapping. The priority grows with the prefix length
/// so a longer prefix (say `polystream-audit-test`) can coexist with a shorter
/// one whose pattern also matches it (templates of equal priority with
/// overlapping patterns are refused).
pub fn index_template(prefix: &str) -> Value {
    let kw = || json!({"type": "keyword"});
    json!({
        "index_patterns": [index_pattern(prefix)],
        "priority": 100 + prefix.len(),
        "template": {
            "settings": {"number_of_shards": 1, "refresh_interval": "1s"},
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "event_id": kw(),
                    "kind": kw(),
                    "role": kw(),
                    "type": kw(),
                    "source": kw(),
                    "subject": kw(),
                    "correlation_id": kw(),
                    "time": {"type": "date"},
                    "topic": kw(),
                    "partition": {"type": "integer"},
                    "offset": {"type": "long"},
                    "key": kw(),
                    "headers": {"type": "object", "dynamic": false, "properties": {
                        "traceparent": kw(),
                        "tracestate": kw(),
                        "ce_type": kw(),
                        "ce_correlationid": kw(),
                        "dlq_reason": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}},
                        "dlq_source_topic": kw(),
                        "dlq_source_partition": kw(),
                        "dlq_source_offset": kw(),
                    }},
                    "user_id": kw(),
                    "title_id": kw(),
                    "outcome": {"type": "object", "properties": {
                        "status": kw(),
                        "command_id": kw(),
                        "command_type": kw(),
                        "code": kw(),
                        "reason": {"type": "text"},
                    }},
                    "payload": {"type": "object", "dynamic": false},
                    "raw": {"type": "text", "index": false},
                    "decode_error": {"type": "text"},
                    "redacted": kw(),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use polystream_common::events::Envelope;
    use uuid::Uuid;

    fn record(topic: &str, body: &[u8], headers: &[(&str, &str)]) -> RawRecord {
        RawRecord {
            topic: topic.into(),
            partition: 2,
            offset: 41,
            key: Some("user/7".into()),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            payload: Some(body.to_vec()),
            timestamp_ms: Some(1_795_000_000_000),
        }
    }

    #[test]
    fn index_names_are_daily_by_event_time() {
        let t = Utc.with_ymd_and_hms(2026, 1, 5, 23, 59, 59).unwrap();
        assert_eq!(
            index_name("polystream-audit", t),
            "polystream-audit-2026.01.05"
        );
        assert_eq!(index_pattern("a"), "a-*");
    }

    #[test]
    fn a_command_is_indexed_by_event_id_without_secrets() {
        let env = Envelope::new(
            "/polystream/s1-gateway",
            "polystream.user.registered.v1",
            Some("user/7".into()),
            Uuid::now_v7(),
            json!({"user_id": 7, "name": "Ana", "email": "a@b.co",
                   "password_hash": "$argon2id$x", "cpf": "52998224725"}),
        );
        let body = serde_json::to_vec(&env).unwrap();
        let rec = record(
            "user_events",
            &body,
            &[("traceparent", "00-abc-def-01"), ("x-other", "y")],
        );
        let d = build(&rec, Role::Command, "audit", Utc::now());
        assert_eq!(d.id, env.id.to_string());
        assert_eq!(d.index, index_name("audit", env.time));
        assert_eq!(d.doc.kind, "event");
        assert_eq!(d.doc.user_id.as_deref(), Some("7"));
        assert_eq!(d.doc.correlation_id, Some(env.correlationid.to_string()));
        assert_eq!(d.doc.headers.traceparent.as_deref(), Some("00-abc-def-01"));
        assert_eq!(d.doc.redacted, ["data.cpf", "data.password_hash"]);
        let text = serde_json::to_string(&d.doc).unwrap();
        assert!(
            !text.contains("argon2id")
                && !text.contains("52998224725")
                && !text.contains("x-other"),
            "{text}"
        );
    }

    #[test]
    fn outcomes_carry_code_and_reason() {
        let env = Envelope::new(
            "/polystream/s2-processor",
            "polystream.command.failed.v1",
            Some("title/9".into()),
            Uuid::now_v7(),
            json!({"command_id": Uuid::nil(), "command_type": "polystream.title.rated.v1",
                   "code": "unknown_title", "reason": "title 9 does not exist"}),
        );
        let rec = record("response_events", &serde_json::to_vec(&env).unwrap(), &[]);
        let d = build(&rec, Role::Outcome, "audit", Utc::now());
        let o = d.doc.outcome.unwrap();
        assert_eq!(o.status, "failed");
        assert_eq!(o.code.as_deref(), Some("unknown_title"));
        assert_eq!(o.reason.as_deref(), Some("title 9 does not exist"));
        assert_eq!(d.doc.title_id.as_deref(), Some("9"));
    }

    #[test]
    fn a_dead_letter_that_is_not_an_envelope_is_kept_raw() {
        let rec = record(
            "dead_letter_events",
            br#"{"password": "p", "oops": true}"#,
            &[
                ("dlq_reason", "not a JSON CloudEvents envelope"),
                ("ce_correlationid", "c-1"),
            ],
        );
        let d = build(&rec, Role::DeadLetter, "audit", Utc::now());
        assert_eq!(d.id, "dead_letter_events-2-41");
        assert_eq!(d.doc.kind, "raw");
        assert_eq!(d.doc.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(d.doc.payload, Some(json!({"oops": true})));
        assert_eq!(d.doc.redacted, ["body.password"]);
        assert!(d.doc.decode_error.is_some());
        let o = d.doc.outcome.unwrap();
        assert_eq!(o.status, "dead_lettered");
        assert_eq!(o.reason.as_deref(), Some("not a JSON CloudEvents envelope"));
        assert_eq!(d.index, "audit-2026.11.18");

        let torn = record(
            "dead_letter_events",
            br#"{"type": "x", "cpf": "52998224725", "na"#,
            &[],
        );
        let d = build(&torn, Role::DeadLetter, "audit", Utc::now());
        assert_eq!(
            d.doc.raw.as_deref(),
            Some(r#"{"type": "x", "cpf": [redacted], "na"#)
        );
        assert_eq!(d.doc.redacted, ["raw.cpf"]);

        let bin = record("dead_letter_events", b"\xff\x00garbage", &[]);
        let d = build(&bin, Role::DeadLetter, "audit", Utc::now());
        assert!(d.doc.payload.is_none());
        assert!(d.doc.raw.unwrap().contains("garbage"));
    }

    #[test]
    fn a_dead_lettered_envelope_does_not_reuse_the_command_id() {
        let env = Envelope::new(
            "/x",
            "polystream.title.rated.v1",
            None,
            Uuid::now_v7(),
            json!([1, 2]),
        );
        let rec = record("dlq", &serde_json::to_vec(&env).unwrap(), &[]);
        let d = build(&rec, Role::DeadLetter, "audit", Utc::now());
        assert_eq!(d.id, "dlq-2-41");
        assert_eq!(d.doc.event_id, Some(env.id.to_string()));
        assert_eq!(d.doc.payload, Some(json!({"value": [1, 2]})));
    }

    #[test]
    fn documents_survive_the_spool_round_trip() {
        let rec = record("t", br#"{"a": 1}"#, &[]);
        let d = build(&rec, Role::Command, "audit", Utc::now());
        let back: IndexedDoc = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }
}
