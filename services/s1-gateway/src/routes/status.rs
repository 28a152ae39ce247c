//! `GET /v1/status/{correlation_id}`: a command's outcome, with long-polling.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use polystream_common::instrument::{Store, store_op};
use polystream_common::status::{CommandStatus, State as StatusState};
use serde::Deserialize;
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
    found.ok_or_else(|| ApiError::not_found(&format!("command {id}")))
}
