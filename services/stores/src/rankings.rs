//! Rankings in Redis: most watched and top rated per day, ISO week and all
//! time (sorted sets named by [`crate::keys`]), and the view counter that
//! feeds them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use polystream_common::instrument::{Store, store_op};
use redis::aio::ConnectionManager;

use crate::fault::{Fault, redis_fault};
use crate::keys::{self, Window};

/// Which ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Board {
    MostWatched,
    TopRated,
}

impl Board {
    /// The sorted set holding this ranking for the bucket `at` falls in.
    pub fn key(self, window: Window, at: DateTime<Utc>) -> String {
        match self {
            Self::MostWatched => keys::rank_views(window, at),
            Self::TopRated => keys::rank_rating(window, at),
        }
    }
}

/// One place in a ranking; `title_id` is `None` for a member that is not an
/// id (nothing writes one, but a ranking is read as it is).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    pub title_id: Option<i64>,
    pub score: f64,
}

/// The best `limit` of a ranking, best first.
pub async fn top(
    con: &ConnectionManager,
    board: Board,
    window: Window,
    at: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Ranked>, Fault> {
    let mut con = con.clone();
    let items: Vec<(String, f64)> = store_op(
        Store::Redis,
        "get_ranking",
        redis::cmd("ZRANGE")
            .arg(board.key(window, at))
            .arg(0)
            .arg(limit - 1)
            .arg("REV")
            .arg("WITHSCORES")
            .query_async(&mut con),
    )
    .await
    .map_err(redis_fault)?;
    Ok(ranked(items))
}

/// Sorted-set members and scores as places; pure, so it is unit tested.
pub fn ranked(items: Vec<(String, f64)>) -> Vec<Ranked> {
    items
        .into_iter()
        .map(|(id, score)| Ranked {
            title_id: id.parse().ok(),
            score,
        })
        .collect()
}

/// Removes a title from every current ranking (it was deleted; past day and
/// week buckets expire or are history anyway).
pub async fn remove_title(
    con: &ConnectionManager,
    title_id: i64,
    at: DateTime<Utc>,
) -> Result<(), Fault> {
    let mut pipe = redis::pipe();
    for w in [Window::Day, Window::Week, Window::AllTime] {
        for board in [Board::MostWatched, Board::TopRated] {
            pipe.zrem(board.key(w, at), title_id).ignore();
        }
    }
    let mut con = con.clone();
    store_op(
        Store::Redis,
        "remove_title_rankings",
        pipe.query_async::<()>(&mut con),
    )
    .await
    .map_err(redis_fault)
}

/// Sets a title's average stars in each `(ranking key, average)`; `None`
/// removes it (no rating left in that bucket). Absolute values: re-running
/// it is harmless.
pub async fn set_ratings(
    con: &ConnectionManager,
    title_id: i64,
    averages: &[(String, Option<f64>)],
) -> Result<(), Fault> {
    let mut pipe = redis::pipe();
    for (key, avg) in averages {
        match avg {
            Some(a) => pipe.zadd(key, title_id, *a).ignore(),
            None => pipe.zrem(key, title_id).ignore(),
        };
    }
    let mut con = con.clone();
    store_op(
        Store::Redis,
        "update_rating_rankings",
        pipe.query_async::<()>(&mut con),
    )
    .await
    .map_err(redis_fault)
}

/// How long a view's "counted" guard is kept; longer than any redelivery.
pub const APPLIED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// A day bucket outlives its day by one day, a week bucket its week by four.
const DAY_BUCKET_TTL: u64 = 8 * 24 * 3600;
const WEEK_BUCKET_TTL: u64 = 5 * 7 * 24 * 3600;

/// Counts a view once: the guard key and the increments change together.
const COUNT_VIEW: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('ZINCRBY', KEYS[2], 1, ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  redis.call('ZINCRBY', KEYS[3], 1, ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  redis.call('ZINCRBY', KEYS[4], 1, ARGV[2])
  redis.call('INCR', KEYS[5])
  return 1
end
return 0
";

/// Counts a view of `title_id` watched `at` in the view rankings and the
/// title's counter, once per `view_id` (not per event: the same view re-sent
/// as a new event is not counted again). Whether it was counted now.
pub async fn count_view(
    con: &ConnectionManager,
    view_id: uuid::Uuid,
    title_id: i64,
    at: DateTime<Utc>,
) -> Result<bool, Fault> {
    let script = redis::Script::new(COUNT_VIEW);
    let mut invocation = script.key(keys::applied(view_id));
    invocation
        .key(keys::rank_views(Window::Day, at))
        .key(keys::rank_views(Window::Week, at))
        .key(keys::rank_views(Window::AllTime, at))
        .key(keys::title_views(title_id))
        .arg(APPLIED_TTL.as_secs())
        .arg(title_id)
        .arg(DAY_BUCKET_TTL)
        .arg(WEEK_BUCKET_TTL);
    let mut con = con.clone();
    let counted = store_op(
        Store::Redis,
        "count_view",
        invocation.invoke_async::<i64>(&mut con),
    )
    .await
    .map_err(redis_fault)?;
    Ok(counted == 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn boards_name_their_sets_and_members_parse_as_ids() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 23, 0, 0).unwrap();
        assert_eq!(
            Board::MostWatched.key(Window::Day, at),
            "rank:views:2026-11-22"
        );
        assert_eq!(Board::TopRated.key(Window::AllTime, at), "rank:rating:all");
        assert_eq!(
            ranked(vec![("7".into(), 3.0), ("x".into(), 1.5)]),
            [
                Ranked {
                    title_id: Some(7),
                    score: 3.0
                },
                Ranked {
                    title_id: None,
                    score: 1.5
                }
            ]
        );
    }
}
