//! Ids the gateway allocates before it publishes a command, so the client
//! learns the id in the 202 (Redis `INCR`: unique across S1 replicas).

use polystream_common::instrument::{Store, store_op};
use redis::aio::ConnectionManager;

use crate::fault::{Fault, redis_fault};
use crate::keys;

/// The next user id.
pub async fn next_user_id(con: &ConnectionManager) -> Result<i64, Fault> {
    next(con, "next_user_id", keys::NEXT_USER_ID).await
}

/// The next title id.
pub async fn next_title_id(con: &ConnectionManager) -> Result<i64, Fault> {
    next(con, "next_title_id", keys::NEXT_TITLE_ID).await
}

async fn next(con: &ConnectionManager, op: &'static str, key: &str) -> Result<i64, Fault> {
    let mut con = con.clone();
    store_op(
        Store::Redis,
        op,
        redis::cmd("INCR").arg(key).query_async(&mut con),
    )
    .await
    .map_err(redis_fault)
}
