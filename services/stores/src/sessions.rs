//! Session reads for listing a user's sessions (Redis). Creating, refreshing
//! and ending sessions stays with S1's authentication; the session document's
//! type is the caller's (`T`), the keys are [`crate::keys`]'.

use polystream_common::instrument::{Store, store_op};
use redis::aio::ConnectionManager;
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
