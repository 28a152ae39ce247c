//! S1's own metrics, beside the shared HTTP, producer and store families
//! (docs/observability.md lists them all).

use std::sync::Arc;
use std::time::Duration;

use polystream_common::metrics::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redis::aio::ConnectionManager;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: &'static str,
    /// hit | miss.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// completed | failed | timeout.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    /// login | registration | write | read | status.
    pub class: &'static str,
}

/// What S1 counts itself.
#[derive(Clone, Default)]
pub struct S1Metrics {
    pub cache_requests: Family<CacheLabels, Counter>,
    pub rate_limited: Family<ClassLabels, Counter>,
    pub sessions_active: Gauge,
    pub status_wait: Family<OutcomeLabels, Counter>,
}

impl S1Metrics {
    /// The registry S1 serves: its own families plus the shared HTTP,
    /// producer and store ones, with every known series at 0.
    pub fn register(&self, user_events_topic: &str) -> Arc<Registry> {
        let mut m = Metrics::new().with_http().with_producer();
        let r = m.registry_mut();
        r.register(
            "polystream_cache_requests",
            "Cache lookups by cache and result (hit|miss)",
            self.cache_requests.clone(),
        );
        r.register(
            "polystream_sessions_active",
            "Sessions not yet expired, platform-wide (every S1 replica reports the same value: aggregate with max)",
            self.sessions_active.clone(),
        );
        r.register(
            "polystream_status_wait",
            "Status long-polls (?wait>0) by how they ended: completed, failed, or timeout (still pending)",
            self.status_wait.clone(),
        );
        r.register(
            "polystream_rate_limited",
            "Requests refused with 429 by a rate limit or a login lockout, by route class",
            self.rate_limited.clone(),
        );
        for result in ["hit", "miss"] {
            self.cache(result);
        }
        for class in crate::limits::RouteClass::ALL {
            let _ = self.rate_limited.get_or_create(&ClassLabels {
                class: class.name(),
            });
        }
        for outcome in ["completed", "failed", "timeout"] {
            let _ = self.status_wait.get_or_create(&OutcomeLabels { outcome });
        }
        polystream_common::metrics::preregister_producer(user_events_topic);
        m.finish()
    }

    fn cache(&self, result: &'static str) -> Counter {
        self.cache_requests.get_or_create_owned(&CacheLabels {
            cache: "title",
            result,
        })
    }

    pub fn rate_limited(&self, class: &'static str) {
        self.rate_limited
            .get_or_create(&ClassLabels { class })
            .inc();
    }

    pub fn title_cache(&self, hit: bool) {
        self.cache(if hit { "hit" } else { "miss" }).inc();
    }

    pub fn status_wait(&self, outcome: &'static str) {
        self.status_wait
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

/// How often the active-sessions gauge is refreshed.
pub const SESSIONS_REFRESH: Duration = Duration::from_secs(10);

/// Drops expired members and counts the rest.
pub async fn count_sessions(redis: &ConnectionManager) -> redis::RedisResult<i64> {
    polystream_stores::sessions::count_live(redis, chrono::Utc::now().timestamp()).await
}

/// Keeps `polystream_sessions_active` current until the process ends.
pub async fn track_sessions(redis: ConnectionManager, gauge: Gauge) {
    let mut tick = tokio::time::interval(SESSIONS_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match count_sessions(&redis).await {
            Ok(n) => {
                gauge.set(n);
            }
            Err(e) => tracing::debug!(error = %e, "cannot count sessions"),
        }
    }
}
