//! The title cache in Redis: one TTL and one rendering for both writers —
//! S1 fills it on a miss (cache-aside), S2 fills it on a warm request and
//! deletes it when the title changes.

use std::time::Duration;

use polystream_common::instrument::{Store, store_op};
use redis::aio::ConnectionManager;
use serde_json::Value;

use crate::fault::{Fault, redis_fault};
use crate::keys;

/// How long a cached title lives unless `TITLE_CACHE_TTL_SECONDS` says
/// otherwise (S1 and S2 read the same setting).
pub const TITLE_TTL: Duration = Duration::from_secs(300);

/// The cached JSON of a title; an unreadable entry counts as a miss.
pub async fn get_title(con: &ConnectionManager, title_id: i64) -> Result<Option<Value>, Fault> {
    let mut con = con.clone();
    let cached: Option<String> = store_op(
        Store::Redis,
        "get_title_cache",
        redis::cmd("GET")
            .arg(keys::title_cache(title_id))
            .query_async(&mut con),
    )
    .await
    .map_err(redis_fault)?;
    Ok(cached.and_then(|c| serde_json::from_str(&c).ok()))
}

/// Caches a title's JSON (rendered by [`crate::render::title_json`]) for `ttl`.
pub async fn put_title(
    con: &ConnectionManager,
    title_id: i64,
    title: &Value,
    ttl: Duration,
) -> Result<(), Fault> {
    let mut con = con.clone();
    store_op(
        Store::Redis,
        "set_title_cache",
        redis::cmd("SET")
            .arg(keys::title_cache(title_id))
            .arg(title.to_string())
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .query_async::<()>(&mut con),
    )
    .await
    .map_err(redis_fault)
}

/// Drops a title's cache entry (the title changed).
pub async fn delete_title(con: &ConnectionManager, title_id: i64) -> Result<(), Fault> {
    let mut con = con.clone();
    store_op(
        Store::Redis,
        "delete_title_cache",
        redis::cmd("DEL")
            .arg(keys::title_cache(title_id))
            .query_async::<i64>(&mut con),
    )
    .await
    .map_err(redis_fault)?;
    Ok(())
}

/// Counts a cache hit or miss in the shared counters.
pub async fn count_result(con: &ConnectionManager, hit: bool) -> Result<(), Fault> {
    let mut con = con.clone();
    let key = if hit {
        keys::CACHE_HITS
    } else {
        keys::CACHE_MISSES
    };
    store_op(
        Store::Redis,
        "count_cache_result",
        redis::cmd("INCR").arg(key).query_async::<i64>(&mut con),
    )
    .await
    .map_err(redis_fault)?;
    Ok(())
}
