//! The write path shared by every command endpoint: validate, publish, wait for
//! Kafka's acknowledgement, record `pending`, answer 202.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use polystream_common::events::{Command, Envelope, Violation};
use polystream_common::instrument::{Store, store_op};
use polystream_common::kafka::PublishError;
use polystream_common::problem::{InvalidParam, Problem};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::state::State;

/// A command accepted for processing: follow `status_url` for its outcome.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Accepted {
    pub correlation_id: Uuid,
    pub status_url: String,
    /// The id S1 allocated for the new resource, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset_id: Option<String>,
}

impl Accepted {
    /// The canonical answer: 202 with a `Location` header.
    pub fn into_202(self) -> Response {
        let location = HeaderValue::from_str(&self.status_url).ok();
        let mut res = (StatusCode::ACCEPTED, Json(self)).into_response();
        if let Some(l) = location {
            res.headers_mut().insert(header::LOCATION, l);
        }
        res
    }
}

/// Where a command field came from in the request, so a violation names what
/// the client sent (`path.id`, `body.password`), not the event's field.
pub type FieldMap<'a> = &'a [(&'a str, &'a str)];

pub fn violations_problem(violations: Vec<Violation>, fields: FieldMap<'_>) -> Problem {
    Problem::invalid(
        violations
            .into_iter()
            .map(|v| InvalidParam {
                name: fields
                    .iter()
                    .find(|(f, _)| *f == v.field)
                    .map(|(_, n)| (*n).to_owned())
                    .unwrap_or_else(|| format!("body.{}", v.field)),
                reason: v.message,
            })
            .collect(),
    )
}

/// Publishes `command` and records it as pending: 202 once Kafka acknowledged
/// it, 503 when Kafka certainly did not store it, 504 when it may have.
///
/// Under an `Idempotency-Key` ([`crate::idempotency`]) the event is recorded
/// before it is sent, and a retry of a request whose event may already be on
/// Kafka sends that same event again instead of `command` (S2 applies an
/// event id once). The ids in the answer are always the published event's.
pub async fn submit(
    state: &State,
    command: Command,
    fields: FieldMap<'_>,
    status_prefix: &str,
) -> ApiResult<Accepted> {
    let claim = crate::idempotency::current();
    let (command, envelope) = match claim.as_ref().and_then(|c| c.prior.clone()) {
        Some(prior) => {
            let earlier = Command::from_data(&prior.event_type, prior.data.clone()).map_err(|e| {
                tracing::error!(error = %e, "an Idempotency-Key record holds an unreadable event");
                ApiError::from(Problem::internal())
            })?;
            (earlier, prior)
        }
        None => {
            command
                .validate()
                .map_err(|v| ApiError::from(violations_problem(v, fields)))?;
            let envelope = Envelope::new(
                &state.config.source,
                command.event_type(),
                Some(command.subject()),
                Uuid::now_v7(),
                command.to_data(),
            );
            (command, envelope)
        }
    };
    let correlation_id = envelope.correlationid;
    // From here on the request's span (and every log line in it) carries the id.
    polystream_common::telemetry::set_correlation_id(&tracing::Span::current(), &correlation_id);
    let event_type = command.event_type();
    let subject = command.subject();
    if let Some(c) = &claim
        && c.prior.is_none()
        && let Err(e) = c.published(&envelope).await
    {
        // Without the record a retry could not know this event: do not send it.
        return Err(ApiError::unavailable("redis", e));
    }
    let topic = &state.config.topics.user_events;
    // The producer gives up at the same deadline, but notices it on a
    // once-a-second scan: the margin lets its own error, which knows whether
    // the record ever left (503) or not (504), arrive first.
    let sent = tokio::time::timeout(
        state.config.kafka_ack_timeout + std::time::Duration::from_secs(2),
        polystream_common::kafka::publish(&state.producer, topic, &subject, &envelope, &[]),
    )
    .await;
    let status_url = format!(
        "{}{status_prefix}/{correlation_id}",
        state.config.public_url
    );
    match sent {
        Ok(Ok((partition, offset))) => {
            tracing::info!(%correlation_id, event_type, partition, offset, "command published");
        }
        Ok(Err(PublishError::MaybeStored(e))) => {
            return Err(outcome_unknown(&correlation_id, &status_url, e));
        }
        Ok(Err(e)) => return Err(ApiError::unavailable("kafka", e)),
        // Still queued in librdkafka, which may deliver it yet.
        Err(_) => {
            return Err(outcome_unknown(
                &correlation_id,
                &status_url,
                format!(
                    "no acknowledgement within {}s",
                    state.config.kafka_ack_timeout.as_secs()
                ),
            ));
        }
    }
    // The command is durable now; a missing `pending` only delays what the
    // status endpoint shows until S2 records the outcome, so it is not a 503.
    let pending = store_op(
        Store::Redis,
        "mark_pending",
        state.status.mark_pending(correlation_id, event_type),
    )
    .await;
    if let Err(e) = pending {
        tracing::warn!(%correlation_id, error = %e, "could not record pending status");
    }
    let mut accepted = Accepted {
        correlation_id,
        status_url,
        user_id: None,
        title_id: None,
        payment_id: None,
        view_id: None,
        asset_id: None,
    };
    accepted.name_new_resource(&command);
    Ok(accepted)
}

/// 504: the event was sent but Kafka's acknowledgement never came, so it may
/// be stored and processed after all. Unlike a 503 this is not "nothing
/// happened": the problem's `instance` is the command's status URL, and a
/// retry is safe only under the same `Idempotency-Key`.
fn outcome_unknown(
    correlation_id: &Uuid,
    status_url: &str,
    err: impl std::fmt::Display,
) -> ApiError {
    tracing::warn!(%correlation_id, error = %err, "Kafka did not acknowledge a command it may have stored");
    let mut problem = Problem::new(
        StatusCode::GATEWAY_TIMEOUT,
        "outcome-unknown",
        "Outcome unknown",
    )
    .detail(format!(
        "Kafka did not acknowledge command {correlation_id} in time, but may have stored it; \
         its status URL shows the outcome once it is processed. Retry only with the same \
         Idempotency-Key: without one a retry may apply the command twice"
    ))
    .retry_after(std::time::Duration::from_secs(
        crate::error::RETRY_AFTER_SECONDS,
    ));
    problem.instance = Some(status_url.to_owned());
    ApiError::from(problem)
}

impl Accepted {
    /// The id of what `command` creates (or replaces), for the client to follow.
    pub fn name_new_resource(&mut self, command: &Command) {
        match command {
            Command::UserRegistered(c) => self.user_id = Some(c.user_id),
            Command::TitleUpserted(c) => self.title_id = Some(c.title_id),
            Command::PaymentRecorded(c) => self.payment_id = Some(c.payment_id),
            Command::ViewRecorded(c) => self.view_id = Some(c.view_id),
            Command::AssetAttached(c) => self.asset_id = Some(c.asset_id.clone()),
            _ => {}
        }
    }
}

/// Canonical status links.
pub const V1_STATUS: &str = "/v1/status";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_name_what_the_client_sent() {
        let p = violations_problem(
            vec![
                Violation {
                    field: "user_id".into(),
                    message: "bad".into(),
                },
                Violation {
                    field: "password_hash".into(),
                    message: "bad".into(),
                },
                Violation {
                    field: "email".into(),
                    message: "bad".into(),
                },
            ],
            &[("user_id", "path.id"), ("password_hash", "body.password")],
        );
        let names: Vec<_> = p.invalid_params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["path.id", "body.password", "body.email"]);
    }
}
