//! One event, start to finish: decode → (dead letter | dedup → handle →
//! record) → publish the outcome → record the status. The caller stores the
//! offset only when [`Pipeline::handle`] says the event is done.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use polystream_common::config::Topics;
use polystream_common::events::{
    Command, DecodeError, Envelope, Outcome, decode_envelope, headers as hdr,
};
use polystream_common::kafka;
use polystream_common::status::{CommandStatus, State};
use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tokio::sync::watch;
use tracing::Instrument;

use crate::dlq;
use crate::errors::{Backoff, Fault, kafka_fault, redis_fault};
use crate::handlers::{
    Decision, Meta, Stores, apply_other, apply_pg, codes, is_pg_owned, ledger_get, ledger_record,
};

/// A consumed record, owned so it can move to a partition's worker.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Incoming {
    pub fn from_message<M: Message>(m: &M) -> Self {
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
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// Why an event can never be processed, as the `dlq_reason` header says it.
pub fn parse(payload: Option<&[u8]>) -> Result<(Envelope<Value>, Command), String> {
    let bytes = payload.ok_or("empty message (no payload)")?;
    let env = decode_envelope(bytes).map_err(|e| e.to_string())?;
    let cmd = Command::from_data(&env.event_type, env.data.clone()).map_err(|e| match e {
        DecodeError::UnknownType(t) => format!("unknown event type {t:?}"),
        other => other.to_string(),
    })?;
    cmd.validate().map_err(|violations| {
        let list: Vec<String> = violations
            .iter()
            .map(|v| format!("data.{}: {}", v.field, v.message))
            .collect();
        format!("invalid data for {}: {}", env.event_type, list.join("; "))
    })?;
    Ok((env, cmd))
}

pub struct Pipeline {
    pub stores: Stores,
    pub producer: FutureProducer,
    pub topics: Topics,
    /// CloudEvents `source` of the outcomes.
    pub source: String,
    pub shutdown: watch::Receiver<bool>,
}

impl Pipeline {
    /// Handles one event until it is done (true), retrying faults forever;
    /// false when told to stop first — then its offset must not be stored.
    pub async fn handle(&self, m: &Incoming, stop: &AtomicBool) -> bool {
        match parse(m.payload.as_deref()) {
            Err(reason) => {
                tracing::warn!(topic = %m.topic, partition = m.partition, offset = m.offset, %reason, "dead-lettering an event that cannot be processed");
                self.retry(stop, || self.dead_letter(m, &reason)).await
            }
            Ok((env, cmd)) => {
                let span = tracing::info_span!("command", event_id = %env.id, event_type = %env.event_type, correlation_id = %env.correlationid);
                self.retry(stop, || self.process(m, &env, &cmd))
                    .instrument(span)
                    .await
            }
        }
    }

    async fn retry<F, Fut>(&self, stop: &AtomicBool, mut attempt: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), Fault>>,
    {
        let mut backoff = Backoff::default();
        let mut shutdown = self.shutdown.clone();
        loop {
            let fault = match attempt().await {
                Ok(()) => return true,
                Err(f) => f,
            };
            let delay = backoff.next_delay();
            if fault.transient {
                tracing::warn!(%fault, retry_in_ms = delay.as_millis() as u64, "store unavailable; the partition waits");
            } else {
                tracing::error!(%fault, retry_in_ms = delay.as_millis() as u64, "unexpected store error; retrying, an operator may need to look");
            }
            if stop.load(Ordering::SeqCst) || *shutdown.borrow() {
                return false;
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                r = shutdown.changed() => if r.is_err() {
                    tokio::time::sleep(delay).await;
                },
            }
            if stop.load(Ordering::SeqCst) || *shutdown.borrow() {
                return false;
            }
        }
    }

    fn outcome_envelope(&self, env: &Envelope<Value>, cmd: &Command, d: &Decision) -> Value {
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
                    code: (*code).to_owned(),
                    reason: reason.clone(),
                })
            }
        };
        let out = Envelope::new(
            &self.source,
            outcome.event_type(),
            Some(env.subject.clone().unwrap_or_else(|| cmd.subject())),
            env.correlationid,
            outcome.to_data(),
        );
        serde_json::to_value(out).unwrap_or_default()
    }

    async fn process(
        &self,
        m: &Incoming,
        env: &Envelope<Value>,
        cmd: &Command,
    ) -> Result<(), Fault> {
        let pg = &self.stores.pg;
        let stored = match ledger_get(pg, env.id).await? {
            // Redelivered or replayed: change nothing, repeat the outcome.
            Some(stored) => {
                tracing::info!(event_id = %env.id, "already processed; republishing its outcome");
                stored
            }
            None => {
                let outcome_of = |d: &Decision| self.outcome_envelope(env, cmd, d);
                if is_pg_owned(cmd) {
                    apply_pg(pg, env, cmd, outcome_of).await?
                } else {
                    let meta = Meta { time: env.time };
                    let d = apply_other(&self.stores, meta, cmd).await?;
                    ledger_record(pg, env, &outcome_of(&d)).await?
                }
            }
        };
        let outcome: Envelope<Value> = serde_json::from_value(stored).map_err(|e| Fault {
            store: "postgresql",
            message: format!("stored outcome of {} is unreadable: {e}", env.id),
            transient: false,
        })?;
        let key = m
            .key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
            .map_or_else(|| cmd.subject(), str::to_owned);
        let trace: Vec<(&str, &str)> = [hdr::TRACEPARENT, hdr::TRACESTATE]
            .into_iter()
            .filter_map(|h| Some((h, m.header(h)?)))
            .collect();
        // Status first: whoever sees the outcome on Kafka can read it at once.
        let status = status_of(&outcome).ok_or_else(|| Fault {
            store: "postgresql",
            message: format!("stored outcome of {} is not an outcome", env.id),
            transient: false,
        })?;
        self.stores
            .status
            .record(&status)
            .await
            .map_err(redis_fault)?;
        kafka::publish(
            &self.producer,
            &self.topics.response_events,
            &key,
            &outcome,
            &trace,
        )
        .await
        .map_err(kafka_fault)?;
        tracing::info!(event_id = %env.id, event_type = %env.event_type, outcome = %outcome.event_type, "processed");
        Ok(())
    }

    async fn dead_letter(&self, m: &Incoming, reason: &str) -> Result<(), Fault> {
        let headers = dlq::headers(reason, &m.topic, m.partition, m.offset, &m.headers);
        let mut owned = OwnedHeaders::new();
        for (k, v) in &headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            });
        }
        let payload = m.payload.clone().unwrap_or_default();
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topics.dead_letter)
            .payload(payload.as_slice())
            .headers(owned);
        if let Some(k) = &m.key {
            record = record.key(k.as_slice());
        }
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| kafka_fault(e))?;
        if let Some(id) = dlq::correlation_id(&payload, &m.headers) {
            let status = CommandStatus {
                correlation_id: id,
                state: State::Failed,
                command_type: dlq::event_type(&payload).unwrap_or_else(|| "unknown".into()),
                result: None,
                code: Some(codes::INVALID_EVENT.into()),
                reason: Some(reason.to_owned()),
                updated_at: Utc::now(),
            };
            self.stores
                .status
                .record(&status)
                .await
                .map_err(redis_fault)?;
        }
        Ok(())
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
            code: Some(f.code),
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
        assert!(parse(None).unwrap_err().contains("empty"));
        assert!(
            parse(Some(b"{nope"))
                .unwrap_err()
                .contains("not a JSON CloudEvents envelope")
        );
        let env = |ty: &str, data: &str| {
            format!(
                r#"{{"specversion":"1.0","id":"{}","source":"/t","type":"{ty}","time":"2026-11-22T10:00:00Z","datacontenttype":"application/json","correlationid":"{}","data":{data}}}"#,
                Uuid::now_v7(),
                Uuid::now_v7()
            )
        };
        let e = parse(Some(env("polystream.nope.v1", "{}").as_bytes())).unwrap_err();
        assert_eq!(e, "unknown event type \"polystream.nope.v1\"");
        let e = parse(Some(
            env(
                "polystream.title.rated.v1",
                r#"{"user_id":1,"title_id":2,"stars":9}"#,
            )
            .as_bytes(),
        ))
        .unwrap_err();
        assert_eq!(
            e,
            "invalid data for polystream.title.rated.v1: data.stars: must be between 1 and 5"
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
    fn status_from_outcomes() {
        let id = Uuid::now_v7();
        let failed = Outcome::Failed(polystream_common::events::CommandFailed {
            command_id: id,
            command_type: "polystream.user.registered.v1".into(),
            code: "duplicate_email".into(),
            reason: "taken".into(),
        });
        let env = Envelope::new("/s2", failed.event_type(), None, id, failed.to_data());
        let s = status_of(&env).unwrap();
        assert_eq!(s.state, State::Failed);
        assert_eq!(s.code.as_deref(), Some("duplicate_email"));
        assert_eq!(s.correlation_id, id);
    }
}
