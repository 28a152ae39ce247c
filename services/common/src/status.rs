//! The status of a command, as `GET /v1/status/{correlation_id}` reports it.
//!
//! The gateway records `pending` once Kafka has acknowledged the command; the
//! processor records the outcome. The two race (the processor can finish
//! first), so `pending` is only ever written when no status exists yet.
//! Every change is also published on a Redis channel so a waiting client is
//! woken at once instead of polling. Waiting clients share one pattern
//! subscription per process (one Redis connection, not one each) and are
//! bounded in number.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, oneshot};
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
    format!("{CHANNEL_PREFIX}{id}")
}

const CHANNEL_PREFIX: &str = "status-changed:";

/// Long-polls waiting at once per process, unless configured otherwise.
pub const DEFAULT_MAX_WAITERS: usize = 1024;

/// A waiter re-reads the status this often, in case an outcome was published
/// while the shared subscription was reconnecting.
const RECHECK: Duration = Duration::from_secs(2);

/// Each waiter's registration token and where to send the outcome.
type Waiting = Vec<(u64, oneshot::Sender<CommandStatus>)>;

/// Who waits for which command, fed by one pattern subscription.
struct Hub {
    waiters: Mutex<HashMap<Uuid, Waiting>>,
    next: AtomicU64,
    slots: Semaphore,
    listener: Once,
}

impl Hub {
    fn new(max_waiters: usize) -> Self {
        Self {
            waiters: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            slots: Semaphore::new(max_waiters),
            listener: Once::new(),
        }
    }

    fn deliver(&self, status: CommandStatus) {
        if !status.is_final() {
            return;
        }
        let waiting = match self.waiters.lock() {
            Ok(mut w) => w.remove(&status.correlation_id),
            Err(poisoned) => poisoned.into_inner().remove(&status.correlation_id),
        };
        for (_, tx) in waiting.into_iter().flatten() {
            let _ = tx.send(status.clone());
        }
    }

    fn register(self: &Arc<Self>, id: Uuid, tx: oneshot::Sender<CommandStatus>) -> Registration {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        w.entry(id).or_default().push((token, tx));
        Registration {
            hub: self.clone(),
            id,
            token,
        }
    }
}

/// Removes its waiter when the long-poll ends, however it ends.
struct Registration {
    hub: Arc<Hub>,
    id: Uuid,
    token: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut w = self.hub.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = w.get_mut(&self.id) {
            list.retain(|(t, _)| *t != self.token);
            if list.is_empty() {
                w.remove(&self.id);
            }
        }
    }
}

/// The shared subscription: every published outcome goes to whoever waits
/// for it. Reconnects with backoff; stops once its store is gone.
async fn listen(client: redis::Client, hub: Weak<Hub>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if let Ok(mut pubsub) = client.get_async_pubsub().await
            && pubsub
                .psubscribe(format!("{CHANNEL_PREFIX}*"))
                .await
                .is_ok()
        {
            backoff = Duration::from_millis(100);
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let Some(hub) = hub.upgrade() else { return };
                let Ok(body) = msg.get_payload::<String>() else {
                    continue;
                };
                if let Ok(status) = serde_json::from_str::<CommandStatus>(&body) {
                    hub.deliver(status);
                }
            }
            tracing::warn!("status subscription lost; reconnecting");
        }
        if hub.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Command statuses in Redis.
#[derive(Clone)]
pub struct StatusStore {
    client: redis::Client,
    con: ConnectionManager,
    hub: Arc<Hub>,
}

impl StatusStore {
    pub fn new(client: redis::Client, con: ConnectionManager) -> Self {
        Self::with_max_waiters(client, con, DEFAULT_MAX_WAITERS)
    }

    /// At most `max_waiters` long-polls wait at once; beyond that a
    /// long-poll answers the current state at once (the client polls again).
    pub fn with_max_waiters(
        client: redis::Client,
        con: ConnectionManager,
        max_waiters: usize,
    ) -> Self {
        Self {
            client,
            con,
            hub: Arc::new(Hub::new(max_waiters)),
        }
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
        // One exchange: stored first, then announced to the long-polls.
        redis::pipe()
            .set_ex(key(status.correlation_id), &body, RETENTION.as_secs())
            .ignore()
            .publish(channel(status.correlation_id), &body)
            .ignore()
            .query_async::<()>(&mut con)
            .await
    }

    pub async fn get(&self, id: Uuid) -> redis::RedisResult<Option<CommandStatus>> {
        let mut con = self.con.clone();
        let raw: Option<String> = con.get(key(id)).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// The status once it is final, or whatever it is after `timeout`. An
    /// unknown id answers at once (S1 records `pending` before it answers
    /// 202, so a real command is never unknown), and so does every long-poll
    /// beyond the bound.
    pub async fn wait(
        &self,
        id: Uuid,
        timeout: Duration,
    ) -> redis::RedisResult<Option<CommandStatus>> {
        let current = self.get(id).await?;
        if timeout.is_zero() || current.as_ref().is_none_or(CommandStatus::is_final) {
            return Ok(current);
        }
        let Ok(_slot) = self.hub.slots.try_acquire() else {
            return Ok(current);
        };
        self.hub.listener.call_once(|| {
            tokio::spawn(listen(self.client.clone(), Arc::downgrade(&self.hub)));
        });
        let (tx, mut rx) = oneshot::channel();
        let _registration = self.hub.register(id, tx);
        // Read again after registering: an outcome recorded in between was
        // published before anyone listened for it.
        let mut current = self.get(id).await?.or(current);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut recheck = tokio::time::interval(RECHECK);
        loop {
            if current.as_ref().is_some_and(CommandStatus::is_final) {
                return Ok(current);
            }
            tokio::select! {
                outcome = &mut rx => return Ok(outcome.ok().or(current)),
                () = tokio::time::sleep_until(deadline) => return Ok(current),
                _ = recheck.tick() => current = self.get(id).await?.or(current),
            }
        }
    }

    /// Long-polls waiting now (for tests and metrics).
    pub fn waiting(&self) -> usize {
        self.hub
            .waiters
            .lock()
            .map(|w| w.values().map(Vec::len).sum())
            .unwrap_or(0)
    }
}

fn to_json(status: &CommandStatus) -> String {
    // Plain data with string keys: serialization cannot fail.
    serde_json::to_string(status).unwrap_or_default()
}
