//! Sessions in Redis: a session document under its token's hash (expiring),
//! the user's index of session ids, and one sorted set of expiries (counted
//! by the active-sessions gauge). The document's type is the caller's (`T`);
//! the keys are [`crate::keys`]'.

use polystream_common::instrument::{Store, store_op};
use redis::aio::ConnectionManager;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::fault::{Fault, redis_fault};
use crate::keys;

/// The token hashes in a user's session index (some may have expired).
pub async fn ids_of(con: &ConnectionManager, user_id: i64) -> Result<Vec<String>, Fault> {
    let mut con = con.clone();
    store_op(
        Store::Redis,
        "list_sessions",
        redis::cmd("SMEMBERS")
            .arg(keys::user_sessions(user_id))
            .query_async(&mut con),
    )
    .await
    .map_err(redis_fault)
}

/// A session's document and its seconds to live; `None` when it expired or
/// cannot be read (an unreadable session is as good as none).
pub async fn get<T: DeserializeOwned>(
    con: &ConnectionManager,
    session_id: &str,
) -> Result<Option<(T, i64)>, Fault> {
    let mut con = con.clone();
    let key = keys::session(session_id);
    let (raw, ttl): (Option<String>, i64) = store_op(
        Store::Redis,
        "get_session",
        redis::pipe().get(&key).ttl(&key).query_async(&mut con),
    )
    .await
    .map_err(redis_fault)?;
    Ok(parse(raw.as_deref()).map(|d| (d, ttl)))
}

/// Drops a session from the user's index (it expired).
pub async fn unindex(con: &ConnectionManager, user_id: i64, session_id: &str) -> Result<(), Fault> {
    let mut con = con.clone();
    store_op(
        Store::Redis,
        "end_session",
        redis::cmd("SREM")
            .arg(keys::user_sessions(user_id))
            .arg(session_id)
            .query_async::<i64>(&mut con),
    )
    .await
    .map_err(redis_fault)?;
    Ok(())
}

/// Stores a new session for `ttl_secs`, indexed under its user and expiry.
pub async fn create<T: Serialize>(
    con: &ConnectionManager,
    session_id: &str,
    user_id: i64,
    doc: &T,
    ttl_secs: u64,
    expires_at: i64,
) -> Result<(), Fault> {
    let mut con = con.clone();
    store_op(
        Store::Redis,
        "create_session",
        redis::pipe()
            .atomic()
            .set_ex(keys::session(session_id), to_json(doc), ttl_secs)
            .sadd(keys::user_sessions(user_id), session_id)
            .expire(keys::user_sessions(user_id), ttl_secs as i64)
            .zadd(keys::SESSIONS_BY_EXPIRY, session_id, expires_at)
            .ignore()
            .query_async::<()>(&mut con),
    )
    .await
    .map_err(redis_fault)
}

/// A session's document alone; `None` when it expired or cannot be read.
pub async fn document<T: DeserializeOwned>(
    con: &ConnectionManager,
    session_id: &str,
) -> Result<Option<T>, Fault> {
    let mut con = con.clone();
    let raw: Option<String> = store_op(
        Store::Redis,
        "get_session",
        redis::cmd("GET")
            .arg(keys::session(session_id))
            .query_async(&mut con),
    )
    .await
    .map_err(redis_fault)?;
    Ok(parse(raw.as_deref()))
}

// KEYS: session, user's index, expiries; ARGV: document, ttl, expires_at, session id.
// Only a session that still exists is written back: a request that read it
// just before a logout must not bring it back.
const REFRESH_SCRIPT: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'XX') then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
  return 1
end
return 0
";

/// Writes back a used session with a fresh `ttl_secs` (sliding expiry);
/// false when the session has ended meanwhile (it stays ended).
pub async fn refresh<T: Serialize>(
    con: &ConnectionManager,
    session_id: &str,
    user_id: i64,
    doc: &T,
    ttl_secs: u64,
    expires_at: i64,
) -> Result<bool, Fault> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(REFRESH_SCRIPT));
    let mut con = con.clone();
    let kept: i64 = store_op(
        Store::Redis,
        "refresh_session",
        SCRIPT
            .key(keys::session(session_id))
            .key(keys::user_sessions(user_id))
            .key(keys::SESSIONS_BY_EXPIRY)
            .arg(to_json(doc))
            .arg(ttl_secs)
            .arg(expires_at)
            .arg(session_id)
            .invoke_async(&mut con),
    )
    .await
    .map_err(redis_fault)?;
    Ok(kept == 1)
}

/// Ends a session: always drops it from `user_id`'s index, and deletes the
/// session itself only when it is that user's (`owned`).
pub async fn end(
    con: &ConnectionManager,
    user_id: i64,
    session_id: &str,
    owned: bool,
) -> Result<(), Fault> {
    let mut con = con.clone();
    let mut end = redis::pipe();
    end.srem(keys::user_sessions(user_id), session_id).ignore();
    if owned {
        end.del(keys::session(session_id))
            .ignore()
            .zrem(keys::SESSIONS_BY_EXPIRY, session_id)
            .ignore();
    }
    store_op(Store::Redis, "end_session", end.query_async::<()>(&mut con))
        .await
        .map_err(redis_fault)
}

/// Drops expired sessions from the expiry set and counts the live ones.
/// Not a store span: a background tick would start a new trace every time.
pub async fn count_live(con: &ConnectionManager, now: i64) -> redis::RedisResult<i64> {
    let mut con = con.clone();
    let (_, live): (i64, i64) = redis::pipe()
        .cmd("ZREMRANGEBYSCORE")
        .arg(keys::SESSIONS_BY_EXPIRY)
        .arg("-inf")
        .arg(now)
        .cmd("ZCARD")
        .arg(keys::SESSIONS_BY_EXPIRY)
        .query_async(&mut con)
        .await?;
    Ok(live)
}

fn to_json<T: Serialize>(doc: &T) -> String {
    serde_json::to_string(doc).unwrap_or_default()
}

fn parse<T: DeserializeOwned>(raw: Option<&str>) -> Option<T> {
    raw.and_then(|r| serde_json::from_str(r).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_unreadable_sessions_are_none() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct S {
            user_id: i64,
        }
        assert_eq!(parse::<S>(Some(r#"{"user_id":3}"#)), Some(S { user_id: 3 }));
        assert_eq!(parse::<S>(Some("not json")), None);
        assert_eq!(parse::<S>(None), None);
    }
}
