//! Platform counters in Redis.

use polystream_common::instrument::{Store, store_op};
use redis::aio::ConnectionManager;

use crate::fault::{Fault, redis_fault};
use crate::keys;

/// Title cache hits and misses since the counters began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounters {
    pub hits: i64,
    pub misses: i64,
}

/// The cache counters; a counter never incremented is 0.
pub async fn get(con: &ConnectionManager) -> Result<CacheCounters, Fault> {
    let mut con = con.clone();
    let (hits, misses): (Option<i64>, Option<i64>) = store_op(
        Store::Redis,
        "get_counters",
        redis::pipe()
            .get(keys::CACHE_HITS)
            .get(keys::CACHE_MISSES)
            .query_async(&mut con),
    )
    .await
    .map_err(redis_fault)?;
    Ok(CacheCounters {
        hits: hits.unwrap_or(0),
        misses: misses.unwrap_or(0),
    })
}
