//! One event, start to finish: decode → (dead letter | dedup → handle →
//! record) → publish the outcome → record the status. A command a store
//! rejects permanently on every attempt fails (`store_rejected`, recorded in
//! the ledger, published) and is dead-lettered. The caller stores the offset
//! only when [`Pipeline::handle`] says the event is done.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use chrono::Utc;
use opentelemetry::trace::TraceContextExt;
use polystream_common::config::Topics;
use polystream_common::events::{
    Command, DecodeError, Envelope, FailureCode, Outcome, decode_envelope, headers as hdr,
};
use polystream_common::instrument::{Store, store_op};
use polystream_common::kafka::{self, PublishError};
use polystream_common::status::{CommandStatus, State};
use polystream_common::telemetry::set_correlation_id;
use rdkafka::Message;
use rdkafka::message::Headers;
use serde_json::Value;
use tokio::sync::watch;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::dlq::{self, Poison, Reason};
use crate::errors::{Fault, Next, RetryPolicy, kafka_fault, redis_fault};
use crate::handlers::{self, Decision, Stores, ledger};
use crate::metrics::{Metrics, bounded_event_type};

/// A consumed record, owned so it can move to a partition's worker.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The consumer span, continuing the sender's trace. Created on receipt
    /// (it needs the broker's message), so it includes the wait in the
    /// partition's queue: the time the event really took.
    pub span: tracing::Span,
    pub received: Instant,
}

impl Incoming {
    pub fn from_message<M: Message>(m: &M, group: &str) -> Self {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers,
            span: kafka::process_span(m, group),
            received: Instant::now(),
        }
    }

    /// The sender's trace headers, to forward as they are when this process
    /// has no tracing pipeline to continue them (no OpenTelemetry layer, as
    /// in a host that installed its own subscriber): the trace is not cut.
    fn trace_fallback(&self) -> Vec<(String, Vec<u8>)> {
        if self.span.context().span().span_context().is_valid() {
            return Vec::new();
        }
        self.headers
            .iter()
            .filter(|(k, _)| k == hdr::TRACEPARENT || k == hdr::TRACESTATE)
            .cloned()
            .collect()
    }
}

/// An outcome is keyed like its command (so it lands in the matching
/// partition of `response_events`), by the command's subject if it had no key.
pub(crate) fn outcome_key(m: &Incoming, cmd: &Command) -> String {
    m.key
        .as_deref()
        .and_then(|k| std::str::from_utf8(k).ok())
        .map_or_else(|| cmd.subject(), str::to_owned)
}

/// Why an event can never be processed: the bounded reason, and the text
/// the `dlq_reason` header carries.
pub fn parse(payload: Option<&[u8]>) -> Result<(Envelope<Value>, Command), Poison> {
    let bytes = payload
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Poison::new(Reason::EmptyPayload, "empty message (no payload)"))?;
    let env = decode_envelope(bytes).map_err(|e| {
        let reason = match e {
            DecodeError::SpecVersion(_) | DecodeError::ContentType(_) => {
                Reason::UnsupportedEnvelope
            }
            _ => Reason::NotAnEnvelope,
        };
        Poison::new(reason, e.to_string())
    })?;
    let cmd = Command::from_data(&env.event_type, env.data.clone()).map_err(|e| match e {
        DecodeError::UnknownType(t) => {
            Poison::new(Reason::UnknownType, format!("unknown event type {t:?}"))
        }
        other => Poison::new(Reason::InvalidData, other.to_string()),
    })?;
    cmd.validate().map_err(|violations| {
        let list: Vec<String> = violations
            .iter()
            .map(|v| format!("data.{}: {}", v.field, v.message))
            .collect();
        Poison::new(
            Reason::InvalidData,
            format!("invalid data for {}: {}", env.event_type, list.join("; ")),
        )
    })?;
    Ok((env, cmd))
}

pub struct Pipeline {
    pub stores: Stores,
    pub producer: kafka::Publisher,
    pub topics: Topics,
    /// CloudEvents `source` of the outcomes.
    pub source: String,
    pub shutdown: watch::Receiver<bool>,
    pub metrics: Metrics,
    /// The consumer group, a label of the consumer metrics.
    pub group: String,
    /// `PERMANENT_FAULT_ATTEMPTS`: attempts of a command a store rejects
    /// before it fails and is dead-lettered.
    pub permanent_attempts: u32,
    /// `BATCH_MAX_EVENTS`: most events of one partition handled together
    /// ([`Pipeline::handle_batch`]).
    pub batch_max: usize,
}

/// How a retried step ended.
#[derive(Debug)]
enum Attempt<T> {
    Done(T),
    /// A permanent fault, on every allowed attempt.
    GaveUp(Fault),
    /// Told to stop first.
    Stopped,
}

impl Pipeline {
    /// Handles one event until it is done (true): transient faults are
    /// retried without bound, permanent ones fail the command after
    /// `permanent_attempts`; false when told to stop first — then its offset must not be stored.
    /// Everything runs in the record's consumer span, so store calls and
    /// sends are its children and every log line carries its trace and
    /// correlation ids; the span's duration and outcome go to
    /// `messaging_process_duration_seconds`.
    pub async fn handle(&self, m: &Incoming, stop: &AtomicBool) -> bool {
        let span = m.span.clone();
        let Some((event_type, outcome)) =
            self.handle_in_span(m, stop).instrument(span.clone()).await
        else {
            return false;
        };
        polystream_common::metrics::record_process(
            &m.topic,
            event_type,
            outcome,
            m.received.elapsed(),
            &span,
        );
        true
    }

    /// The event's type and outcome labels once it is done; `None` when told
    /// to stop first.
    async fn handle_in_span(
        &self,
        m: &Incoming,
        stop: &AtomicBool,
    ) -> Option<(&'static str, &'static str)> {
        match parse(m.payload.as_deref()) {
            Err(poison) => {
                tracing::warn!(topic = %m.topic, partition = m.partition, offset = m.offset, reason = %poison.message, "dead-lettering an event that cannot be processed");
                match self
                    .retry(stop, || self.dead_letter(m, &poison.message))
                    .await
                {
                    Attempt::Done(()) => {}
                    Attempt::Stopped => return None,
                    // Only the status write can be rejected (Kafka faults are
                    // transient): the dead letter is out, move on.
                    Attempt::GaveUp(fault) => {
                        tracing::error!(%fault, "the dead letter's status could not be recorded");
                    }
                }
                self.metrics.dead_lettered(poison.reason);
                // A dead letter is a failed processing: it stands out in the trace.
                m.span.record("otel.status_code", "ERROR");
                m.span.record("error.type", poison.reason.label());
                let payload = m.payload.as_deref().unwrap_or_default();
                let event_type = bounded_event_type(dlq::event_type(payload).as_deref());
                Some((event_type, "dead_lettered"))
            }
            Ok((env, cmd)) => {
                // The envelope's id is the authority (the header may be missing).
                set_correlation_id(&m.span, &env.correlationid);
                m.span.record(
                    "messaging.message.conversation_id",
                    env.correlationid.to_string(),
                );
                match self.retry(stop, || self.process(m, &env, &cmd)).await {
                    Attempt::Done(outcome) => Some((cmd.event_type(), outcome)),
                    Attempt::Stopped => None,
                    Attempt::GaveUp(fault) => {
                        self.fail(m, &env, &cmd, &fault, stop).await?;
                        Some((cmd.event_type(), "dead_lettered"))
                    }
                }
            }
        }
    }

    async fn retry<T, F, Fut>(&self, stop: &AtomicBool, mut attempt: F) -> Attempt<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Fault>>,
    {
        let mut policy = RetryPolicy::new(self.permanent_attempts);
        let mut shutdown = self.shutdown.clone();
        loop {
            let fault = match attempt().await {
                Ok(v) => return Attempt::Done(v),
                Err(f) => f,
            };
            let delay = match policy.after(&fault) {
                Next::RetryIn(d) => d,
                Next::GiveUp => return Attempt::GaveUp(fault),
            };
            if fault.is_transient() {
                tracing::warn!(%fault, retry_in_ms = delay.as_millis() as u64, "store unavailable; the partition waits");
            } else {
                tracing::error!(%fault, retry_in_ms = delay.as_millis() as u64, "the store rejected the command; retrying a bounded number of times");
            }
            if stop.load(Ordering::SeqCst) || *shutdown.borrow() {
                return Attempt::Stopped;
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                r = shutdown.changed() => if r.is_err() {
                    tokio::time::sleep(delay).await;
                },
            }
            if stop.load(Ordering::SeqCst) || *shutdown.borrow() {
                return Attempt::Stopped;
            }
        }
    }

    /// A command a store rejected on every attempt: nothing of it was
    /// committed (a PostgreSQL transaction rolls back; MongoDB/Redis effects
    /// are idempotent upserts a replay would redo), so it fails with
    /// `store_rejected`. The failed outcome goes into the ledger first, so a
    /// redelivery republishes it instead of trying again; then its status,
    /// its outcome on `response_events`, and the record to the dead-letter
    /// topic (`dlq_reason` says why). `None` when told to stop first.
    async fn fail(
        &self,
        m: &Incoming,
        env: &Envelope<Value>,
        cmd: &Command,
        fault: &Fault,
        stop: &AtomicBool,
    ) -> Option<()> {
        tracing::error!(%fault, event_id = %env.id, event_type = %env.event_type, "the store rejected the command on every attempt; failing it and dead-lettering the record");
        let reason = format!("rejected by the store: {fault}");
        let ours = self.outcome_envelope(
            env,
            cmd,
            &Decision::failed(FailureCode::StoreRejected, reason.clone()),
        );
        let ours_value = serde_json::to_value(&ours).unwrap_or_default();
        let recorded = match self
            .retry(stop, || ledger::record(&self.stores.pg, env, &ours_value))
            .await
        {
            Attempt::Done(v) => serde_json::from_value::<Envelope<Value>>(v)
                .ok()
                .filter(|o| status_of(o).is_some()),
            Attempt::Stopped => return None,
            Attempt::GaveUp(f) => {
                tracing::error!(fault = %f, event_id = %env.id, "the failed outcome could not be recorded in the ledger");
                None
            }
        };
        // Whatever is on record wins (a replica may have finished it first).
        let outcome = recorded.unwrap_or(ours);
        match self
            .retry(stop, || self.publish_outcome(m, cmd, &outcome))
            .await
        {
            Attempt::Done(_) => {}
            Attempt::Stopped => return None,
            Attempt::GaveUp(f) => {
                tracing::error!(fault = %f, event_id = %env.id, "the failed outcome could not be published");
            }
        }
        let payload = m.payload.clone().unwrap_or_default();
        let dlq_reason = format!("store_rejected: {fault}");
        match self
            .retry(stop, || async {
                self.send_dead_letter(m, &dlq_reason, &payload)
                    .await
                    .map_err(kafka_fault)
            })
            .await
        {
            Attempt::Done(_) | Attempt::GaveUp(_) => {}
            Attempt::Stopped => return None,
        }
        self.metrics.dead_lettered(Reason::StoreRejected);
        m.span.record("otel.status_code", "ERROR");
        m.span.record("error.type", Reason::StoreRejected.label());
        Some(())
    }

    pub(crate) fn outcome_envelope(
        &self,
        env: &Envelope<Value>,
        cmd: &Command,
        d: &Decision,
    ) -> Envelope<Value> {
        let outcome = match d {
            Decision::Completed(result) => {
                Outcome::Completed(polystream_common::events::CommandCompleted {
                    command_id: env.id,
                    command_type: env.event_type.clone(),
                    result: result.clone(),
                })
            }
            Decision::Failed { code, reason } => {
                Outcome::Failed(polystream_common::events::CommandFailed {
                    command_id: env.id,
                    command_type: env.event_type.clone(),
                    code: *code,
                    reason: reason.clone(),
                })
            }
        };
        Envelope::new(
            &self.source,
            outcome.event_type(),
            Some(env.subject.clone().unwrap_or_else(|| cmd.subject())),
            env.correlationid,
            outcome.to_data(),
        )
    }

    /// Processes one command; its outcome label (`completed` or `failed`).
    async fn process(
        &self,
        m: &Incoming,
        env: &Envelope<Value>,
        cmd: &Command,
    ) -> Result<&'static str, Fault> {
        let pg = &self.stores.pg;
        let stored = match ledger::get(pg, env.id).await? {
            // Redelivered or replayed: change nothing, repeat the outcome.
            Some(stored) => {
                tracing::info!(event_id = %env.id, "already processed; republishing its outcome");
                stored
            }
            None => {
                let outcome_of = |d: &Decision| {
                    serde_json::to_value(self.outcome_envelope(env, cmd, d)).unwrap_or_default()
                };
                handlers::apply(&self.stores, env, cmd, outcome_of).await?
            }
        };
        let outcome: Envelope<Value> = serde_json::from_value(stored).map_err(|e| {
            Fault::permanent(
                "postgresql",
                format!("stored outcome of {} is unreadable: {e}", env.id),
            )
        })?;
        let state = self.publish_outcome(m, cmd, &outcome).await?;
        tracing::info!(event_id = %env.id, event_type = %env.event_type, outcome = %outcome.event_type, "processed");
        Ok(match state {
            State::Completed => "completed",
            _ => "failed",
        })
    }

    /// Records the command's status, then publishes its outcome on
    /// `response_events` keyed like the command; the outcome's state.
    async fn publish_outcome(
        &self,
        m: &Incoming,
        cmd: &Command,
        outcome: &Envelope<Value>,
    ) -> Result<State, Fault> {
        let key = outcome_key(m, cmd);
        // Status first: whoever sees the outcome on Kafka can read it at once.
        let status = status_of(outcome).ok_or_else(|| {
            Fault::permanent(
                "postgresql",
                format!("stored outcome of {} is not an outcome", outcome.id),
            )
        })?;
        self.record_status(&status).await?;
        self.send_outcome(m, &key, outcome).await?;
        Ok(status.state)
    }

    /// Publishes an outcome on `response_events` under `key` and waits for
    /// the acknowledgement.
    pub(crate) async fn send_outcome(
        &self,
        m: &Incoming,
        key: &str,
        outcome: &Envelope<Value>,
    ) -> Result<(), Fault> {
        // The send is a producer span under this event's span: its
        // `traceparent` carries the trace on to S3.
        let fallback = m.trace_fallback();
        let forward: Vec<(&str, &str)> = fallback
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), std::str::from_utf8(v).ok()?)))
            .collect();
        kafka::publish(
            &self.producer,
            &self.topics.response_events,
            key,
            outcome,
            &forward,
        )
        .await
        .map_err(kafka_fault)?;
        Ok(())
    }

    async fn dead_letter(&self, m: &Incoming, reason: &str) -> Result<(), Fault> {
        let payload = m.payload.clone().unwrap_or_default();
        let correlation = dlq::correlation_id(&payload, &m.headers);
        if let Some(id) = correlation {
            set_correlation_id(&m.span, &id);
            m.span
                .record("messaging.message.conversation_id", id.to_string());
        }
        self.send_dead_letter(m, reason, &payload)
            .await
            .map_err(kafka_fault)?;
        if let Some(id) = correlation {
            let status = CommandStatus {
                correlation_id: id,
                state: State::Failed,
                command_type: dlq::event_type(&payload).unwrap_or_else(|| "unknown".into()),
                result: None,
                code: Some(FailureCode::InvalidEvent.as_str().to_owned()),
                reason: Some(reason.to_owned()),
                updated_at: Utc::now(),
            };
            self.record_status(&status).await?;
        }
        Ok(())
    }

    /// Records a command's status for S1's status endpoint (a store call
    /// under the event's span).
    pub(crate) async fn record_status(&self, status: &CommandStatus) -> Result<(), Fault> {
        store_op(
            Store::Redis,
            "record_status",
            self.stores.status.record(status),
        )
        .await
        .map_err(redis_fault)
    }

    /// Copies the record byte for byte to the dead-letter topic with the
    /// `dlq_*` headers, in a PRODUCER span whose trace context replaces the
    /// original one (`kafka::publish_raw`: same span and metrics as an
    /// envelope's send).
    async fn send_dead_letter(
        &self,
        m: &Incoming,
        reason: &str,
        payload: &[u8],
    ) -> Result<(i32, i64), PublishError> {
        let mut headers = dlq::headers(reason, &m.topic, m.partition, m.offset, &m.headers);
        headers.extend(m.trace_fallback());
        kafka::publish_raw(
            &self.producer,
            &self.topics.dead_letter,
            m.key.as_deref(),
            payload,
            &headers,
        )
        .await
    }
}

/// The command status an outcome stands for.
pub fn status_of(outcome: &Envelope<Value>) -> Option<CommandStatus> {
    let base = |state, command_type: String| CommandStatus {
        correlation_id: outcome.correlationid,
        state,
        command_type,
        result: None,
        code: None,
        reason: None,
        updated_at: Utc::now(),
    };
    match Outcome::from_data(&outcome.event_type, outcome.data.clone()).ok()? {
        Outcome::Completed(c) => Some(CommandStatus {
            result: Some(c.result),
            ..base(State::Completed, c.command_type)
        }),
        Outcome::Failed(f) => Some(CommandStatus {
            code: Some(f.code.as_str().to_owned()),
            reason: Some(f.reason),
            ..base(State::Failed, f.command_type)
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use uuid::Uuid;

    #[test]
    fn parse_names_what_is_wrong() {
        let e = parse(None).unwrap_err();
        assert_eq!(e.reason, Reason::EmptyPayload);
        assert!(e.message.contains("empty"));
        assert_eq!(parse(Some(b"")).unwrap_err().reason, Reason::EmptyPayload);
        let e = parse(Some(b"{nope")).unwrap_err();
        assert_eq!(e.reason, Reason::NotAnEnvelope);
        assert!(e.message.contains("not a JSON CloudEvents envelope"));
        let env = |ty: &str, data: &str| {
            format!(
                r#"{{"specversion":"1.0","id":"{}","source":"/t","type":"{ty}","time":"2026-11-22T10:00:00Z","datacontenttype":"application/json","correlationid":"{}","data":{data}}}"#,
                Uuid::now_v7(),
                Uuid::now_v7()
            )
        };
        let e = parse(Some(env("polystream.nope.v1", "{}").as_bytes())).unwrap_err();
        assert_eq!(e.reason, Reason::UnknownType);
        assert_eq!(e.message, "unknown event type \"polystream.nope.v1\"");
        let e = parse(Some(
            env(
                "polystream.title.rated.v1",
                r#"{"user_id":1,"title_id":2,"stars":9}"#,
            )
            .as_bytes(),
        ))
        .unwrap_err();
        assert_eq!(e.reason, Reason::InvalidData);
        assert_eq!(
            e.message,
            "invalid data for polystream.title.rated.v1: data.stars: must be between 1 and 5"
        );
        let old = env("polystream.title.rated.v1", "{}").replace("\"1.0\"", "\"0.3\"");
        assert_eq!(
            parse(Some(old.as_bytes())).unwrap_err().reason,
            Reason::UnsupportedEnvelope
        );
        let (env, cmd) = parse(Some(
            env(
                "polystream.title.rated.v1",
                r#"{"user_id":1,"title_id":2,"stars":4}"#,
            )
            .as_bytes(),
        ))
        .unwrap();
        assert_eq!(env.event_type, "polystream.title.rated.v1");
        assert_eq!(cmd.subject(), "user/1");
        let wrong_version = r#"{"specversion":"0.3"}"#;
        assert!(parse(Some(wrong_version.as_bytes())).is_err());
    }

    #[test]
    fn without_a_tracing_pipeline_the_senders_trace_headers_are_forwarded() {
        // No OpenTelemetry layer in unit tests: the span has no context.
        let m = Incoming {
            topic: "t".into(),
            partition: 0,
            offset: 1,
            key: None,
            payload: None,
            headers: vec![
                ("traceparent".into(), b"00-abc-def-01".to_vec()),
                ("ce_type".into(), b"x".to_vec()),
                ("tracestate".into(), b"k=v".to_vec()),
            ],
            span: tracing::Span::none(),
            received: Instant::now(),
        };
        assert_eq!(
            m.trace_fallback(),
            [
                ("traceparent".to_owned(), b"00-abc-def-01".to_vec()),
                ("tracestate".to_owned(), b"k=v".to_vec())
            ]
        );
    }

    #[test]
    fn status_from_outcomes() {
        let id = Uuid::now_v7();
        let failed = Outcome::Failed(polystream_common::events::CommandFailed {
            command_id: id,
            command_type: "polystream.user.registered.v1".into(),
            code: FailureCode::DuplicateEmail,
            reason: "taken".into(),
        });
        let env = Envelope::new("/s2", failed.event_type(), None, id, failed.to_data());
        let s = status_of(&env).unwrap();
        assert_eq!(s.state, State::Failed);
        assert_eq!(s.code.as_deref(), Some("duplicate_email"));
        assert_eq!(s.correlation_id, id);
    }
}
