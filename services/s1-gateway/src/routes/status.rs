//! `GET /v1/status/{correlation_id}`: a command's outcome, with long-polling.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use polystream_common::instrument::{Store, store_op};
use polystream_common::status::{CommandStatus, State as StatusState};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::extract::{ValidPath, ValidQuery};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct StatusPath {
    /// The `correlation_id` a write answered with.
    pub correlation_id: Uuid,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to wait for a final outcome (at most STATUS_WAIT_MAX_SECONDS; default 0).
    #[param(maximum = 30)]
    pub wait: Option<u64>,
}

/// The status of a command: pending, completed (with result) or failed (with reason).
#[utoipa::path(get, path = "/v1/status/{correlation_id}", tag = "status",
    params(StatusPath, WaitQuery),
    responses(
        (status = 200, body = CommandStatus),
        (status = 400, description = "malformed id or wait", body = polystream_common::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such command", body = polystream_common::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_status(
    State(state): State<AppState>,
    ValidPath(p): ValidPath<StatusPath>,
    ValidQuery(q): ValidQuery<WaitQuery>,
) -> ApiResult<Json<CommandStatus>> {
    lookup(&state, p.correlation_id, q.wait.unwrap_or(0))
        .await
        .map(Json)
}

pub async fn lookup(state: &crate::state::State, id: Uuid, wait: u64) -> ApiResult<CommandStatus> {
    let max = state.config.status_wait_max;
    if wait > max {
        return Err(ApiError::field(
            "query.wait",
            format!("must be at most {max} seconds"),
        ));
    }
    // Named apart from reads: its duration is mostly the client's wait.
    let op = if wait == 0 {
        "get_status"
    } else {
        "wait_status"
    };
    let found = store_op(
        Store::Redis,
        op,
        state.status.wait(id, Duration::from_secs(wait)),
    )
    .await?;
    if wait > 0
        && let Some(s) = &found
    {
        state.metrics.status_wait(match s.state {
            StatusState::Completed => "completed",
            StatusState::Failed => "failed",
            StatusState::Pending => "timeout",
        });
    }
    found
        .map(public)
        .ok_or_else(|| ApiError::not_found(&format!("command {id}")))
}

/// The code anyone holding a correlation id sees for a registration that
/// collided with an existing account.
pub const DUPLICATE_ACCOUNT: &str = "duplicate_account";

/// What anyone holding a correlation id may see. Which unique field a
/// registration collided on would tell a stranger that this email or CPF has
/// an account, so every collision reads the same; the exact code stays in
/// S3's audit trail for operators.
pub fn public(mut s: CommandStatus) -> CommandStatus {
    use polystream_common::events::FailureCode;
    let collided = s
        .code
        .as_deref()
        .and_then(FailureCode::parse)
        .is_some_and(|c| {
            matches!(
                c,
                FailureCode::DuplicateEmail
                    | FailureCode::DuplicateCpf
                    | FailureCode::DuplicateUser
            )
        });
    if collided {
        s.code = Some(DUPLICATE_ACCOUNT.to_owned());
        s.reason = Some("an account with some of these details already exists".to_owned());
    }
    s
}

/// `GET /status/{id}` (seed 002): never a 404, as the original's client
/// cannot handle one; an unknown id is still pending.
pub async fn seed_lookup(state: &crate::state::State, id: Uuid, wait: u64) -> ApiResult<Value> {
    match lookup(state, id, wait).await {
        Ok(s) => Ok(seed_status(id, Some(&s))),
        Err(e) if e.0.status == 404 => Ok(seed_status(id, None)),
        Err(e) => Err(e),
    }
}

/// The original's status answer on top of Polystream's [`CommandStatus`].
pub fn seed_status(id: Uuid, found: Option<&CommandStatus>) -> Value {
    let mut m = match found.map(serde_json::to_value) {
        Some(Ok(Value::Object(m))) => m,
        _ => {
            let mut m = Map::new();
            m.insert("correlation_id".into(), json!(id));
            m.insert("state".into(), json!(StatusState::Pending));
            m
        }
    };
    let (status, message) = match found {
        Some(s) if s.state == StatusState::Completed => {
            ("success", "Processamento concluído com sucesso".to_owned())
        }
        Some(s) if s.state == StatusState::Failed => (
            "error",
            format!(
                "Erro no processamento: {}",
                s.reason.as_deref().unwrap_or("motivo desconhecido")
            ),
        ),
        _ => ("pendente", "Processamento em andamento".to_owned()),
    };
    m.insert("status".into(), json!(status));
    m.insert("message".into(), json!(message));
    if let Some(s) = found.filter(|s| s.is_final()) {
        m.insert("original_event_type".into(), json!(s.command_type));
        m.insert("timestamp".into(), json!(s.updated_at));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn collisions_do_not_say_which_field_or_echo_it() {
        for code in ["duplicate_email", "duplicate_cpf", "duplicate_user"] {
            let mut s = CommandStatus::pending(Uuid::now_v7(), "polystream.user.registered.v1");
            s.state = StatusState::Failed;
            s.code = Some(code.into());
            s.reason = Some("a user with email ana@example.com already exists".into());
            let p = public(s);
            assert_eq!(p.code.as_deref(), Some(DUPLICATE_ACCOUNT));
            assert!(!p.reason.unwrap().contains('@'));
        }
        let mut s = CommandStatus::pending(Uuid::now_v7(), "polystream.payment.recorded.v1");
        s.code = Some("unknown_user".into());
        s.reason = Some("user 7 does not exist".into());
        assert_eq!(public(s.clone()), s, "other failures are shown as they are");
    }

    #[test]
    fn seed_status_is_a_superset_of_polystreams() {
        let id = Uuid::now_v7();
        let unknown = seed_status(id, None);
        assert_eq!(unknown["status"], "pendente");
        assert_eq!(unknown["message"], "Processamento em andamento");
        assert_eq!(unknown["correlation_id"], id.to_string());
        assert!(unknown.get("original_event_type").is_none());

        let pending = CommandStatus::pending(id, "polystream.user.registered.v1");
        let v = seed_status(id, Some(&pending));
        assert_eq!(
            (&v["status"], &v["state"]),
            (&json!("pendente"), &json!("pending"))
        );
        assert!(v.get("timestamp").is_none());

        let mut done = pending.clone();
        done.state = StatusState::Completed;
        done.result = Some(json!({"user_id": 7}));
        let v = seed_status(id, Some(&done));
        let plain = serde_json::to_value(&done).unwrap();
        for (k, val) in plain.as_object().unwrap() {
            assert_eq!(&v[k], val, "{k}");
        }
        assert_eq!(v["status"], "success");
        assert_eq!(v["original_event_type"], "polystream.user.registered.v1");
        assert_eq!(v["timestamp"], plain["updated_at"]);

        let mut failed = pending;
        failed.state = StatusState::Failed;
        failed.code = Some("unknown_user".into());
        failed.reason = Some("user 9 does not exist".into());
        let v = seed_status(id, Some(&failed));
        assert_eq!(v["status"], "error");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("user 9 does not exist")
        );
        assert_eq!(v["code"], "unknown_user");
    }
}
