//! Redis key names. Every key the platform writes is built here, so the
//! layout can be read in one place.

use chrono::{DateTime, Datelike, Utc};

/// Session by token hash (the token itself is never stored): JSON
/// `{user_id, admin, created_at, last_seen}`, TTL refreshed on activity. Owner: S1.
pub fn session(token_hash: &str) -> String {
    format!("session:{token_hash}")
}

/// Set of a user's session token hashes, for listing and ending them. Owner: S1.
pub fn user_sessions(user_id: i64) -> String {
    format!("user-sessions:{user_id}")
}

/// Every live session's token hash scored by its expiry (epoch seconds): one
/// ZSET shared by every S1 replica, so counting live sessions is one `ZCARD`
/// after dropping the expired — no key scans. Owner: S1.
pub const SESSIONS_BY_EXPIRY: &str = "sessions:by-expiry";

/// Cached title JSON (cache-aside by S1, invalidated by S2 on change).
pub fn title_cache(title_id: i64) -> String {
    format!("cache:title:{title_id}")
}

/// Next id for new users / titles (`INCR`). Owner: S1.
pub const NEXT_USER_ID: &str = "ids:user";
pub const NEXT_TITLE_ID: &str = "ids:title";

/// Counters.
pub const CACHE_HITS: &str = "counter:cache_hits";
pub const CACHE_MISSES: &str = "counter:cache_misses";
pub fn title_views(title_id: i64) -> String {
    format!("counter:views:{title_id}")
}

/// Ranking windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Day,
    Week,
    AllTime,
}

impl Window {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Self::Day),
            "week" => Some(Self::Week),
            "all" | "all_time" => Some(Self::AllTime),
            _ => None,
        }
    }

    /// The bucket an instant falls in: `2026-11-22`, `2026-W47` or `all`.
    pub fn bucket(self, at: DateTime<Utc>) -> String {
        match self {
            Self::Day => at.format("%Y-%m-%d").to_string(),
            Self::Week => {
                let w = at.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            Self::AllTime => "all".into(),
        }
    }
}

/// Most watched: sorted set title_id → views.
pub fn rank_views(window: Window, at: DateTime<Utc>) -> String {
    format!("rank:views:{}", window.bucket(at))
}

/// Top rated: sorted set title_id → average stars; the sums and counts behind
/// the averages live in `rank:rating-sum:*` and `rank:rating-count:*` hashes.
pub fn rank_rating(window: Window, at: DateTime<Utc>) -> String {
    format!("rank:rating:{}", window.bucket(at))
}
pub fn rating_sum(window: Window, at: DateTime<Utc>) -> String {
    format!("rank:rating-sum:{}", window.bucket(at))
}
pub fn rating_count(window: Window, at: DateTime<Utc>) -> String {
    format!("rank:rating-count:{}", window.bucket(at))
}

/// Marks an event's Redis effects as applied, so a redelivery does not count twice.
pub fn applied(event_id: uuid::Uuid) -> String {
    format!("applied:{event_id}")
}

/// How long connecting to Redis, and each command's answer, may take: a
/// burst of thousands of commands pipelined on one connection must not time
/// out (redis-rs's own response default is far shorter), and a Redis that
/// stopped answering must still fail a request in bounded time.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The services' Redis connection: one multiplexed, self-reconnecting
/// connection with [`TIMEOUT`] on connecting and on every command.
pub async fn connect(client: redis::Client) -> redis::RedisResult<redis::aio::ConnectionManager> {
    redis::aio::ConnectionManager::new_with_config(
        client,
        redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT)),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ranking_buckets() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 23, 0, 0).unwrap();
        assert_eq!(rank_views(Window::Day, at), "rank:views:2026-11-22");
        assert_eq!(rank_views(Window::Week, at), "rank:views:2026-W47");
        assert_eq!(rank_rating(Window::AllTime, at), "rank:rating:all");
        assert_eq!(Window::parse("week"), Some(Window::Week));
        assert_eq!(Window::parse("month"), None);
    }
}
