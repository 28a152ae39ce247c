//! The status of a command, as `GET /v1/status/{correlation_id}` reports it.
//!
//! The gateway records `pending` once Kafka has acknowledged the command; the
//! processor records the outcome. The two race (the processor can finish
//! first), so `pending` is only ever written when no status exists yet.
//! Every change is also published on a Redis channel so a waiting client is
//! woken at once instead of polling.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long a status is kept after its last change.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Completed,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandStatus {
    pub correlation_id: Uuid,
    pub state: State,
    pub command_type: String,
    /// What the command produced, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Machine-readable failure code, once failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Why it failed, once failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl CommandStatus {
    pub fn pending(correlation_id: Uuid, command_type: &str) -> Self {
        Self {
            correlation_id,
            state: State::Pending,
            command_type: command_type.into(),
            result: None,
            code: None,
            reason: None,
            updated_at: Utc::now(),
        }
    }

    pub fn is_final(&self) -> bool {
        self.state != State::Pending
    }
}

fn key(id: Uuid) -> String {
    format!("status:{id}")
}

fn channel(id: Uuid) -> String {
    format!("status-changed:{id}")
}

/// Command statuses in Redis.
#[derive(Clone)]
pub struct StatusStore {
    client: redis::Client,
    con: ConnectionManager,
}

impl StatusStore {
    pub fn new(client: redis::Client, con: ConnectionManager) -> Self {
        Self { client, con }
    }

    /// Records `pending` unless an outcome is already there.
    pub async fn mark_pending(&self, id: Uuid, command_type: &str) -> redis::RedisResult<()> {
        let body = to_json(&CommandStatus::pending(id, command_type));
        let mut con = self.con.clone();
        let _: Option<String> = redis::cmd("SET")
            .arg(key(id))
            .arg(body)
            .arg("NX")
            .arg("EX")
            .arg(RETENTION.as_secs())
            .query_async(&mut con)
            .await?;
        Ok(())
    }

    /// Records a final outcome and wakes whoever waits for it.
    pub async fn record(&self, status: &CommandStatus) -> redis::RedisResult<()> {
        let body = to_json(status);
        let mut con = self.con.clone();
        let _: () = con
            .set_ex(key(status.correlation_id), &body, RETENTION.as_secs())
            .await?;
        let _: i64 = con.publish(channel(status.correlation_id), &body).await?;
        Ok(())
    }

    pub async fn get(&self, id: Uuid) -> redis::RedisResult<Option<CommandStatus>> {
        let mut con = self.con.clone();
        let raw: Option<String> = con.get(key(id)).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// The status once it is final, or whatever it is after `timeout`.
    pub async fn wait(
        &self,
        id: Uuid,
        timeout: Duration,
    ) -> redis::RedisResult<Option<CommandStatus>> {
        let current = self.get(id).await?;
        if timeout.is_zero() || current.as_ref().is_some_and(CommandStatus::is_final) {
            return Ok(current);
        }
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(channel(id)).await?;
        // Read again after subscribing: an outcome recorded in between would
        // otherwise be missed until the timeout.
        let current = self.get(id).await?;
        if current.as_ref().is_some_and(CommandStatus::is_final) {
            return Ok(current);
        }
        let mut messages = pubsub.on_message();
        match tokio::time::timeout(timeout, messages.next()).await {
            Ok(Some(msg)) => {
                let body: String = msg.get_payload()?;
                Ok(serde_json::from_str(&body).ok().or(current))
            }
            _ => Ok(current),
        }
    }
}

fn to_json(status: &CommandStatus) -> String {
    // Plain data with string keys: serialization cannot fail.
    serde_json::to_string(status).unwrap_or_default()
}
