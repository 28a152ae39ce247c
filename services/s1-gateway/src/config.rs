//! S1's settings, from environment variables (documented in docs/configuration.md).

use std::net::SocketAddr;
use std::time::Duration;

use polystream_common::config::{ConfigErrors, ProcessEnv, Reader, Source, StoreEndpoints, Topics};

#[derive(Debug, Clone)]
pub struct Config {
    pub stores: StoreEndpoints,
    pub topics: Topics,
    /// `HTTP_ADDR`: where to listen.
    pub http_addr: SocketAddr,
    /// `METRICS_ADDR`: where `/metrics` is served instead of `HTTP_ADDR`, when set.
    pub metrics_addr: Option<SocketAddr>,
    /// `HTTP_*` limits of the HTTP listeners.
    pub server: polystream_common::server::ServerLimits,
    /// `PUBLIC_URL`: the base of `status_url` links, as clients reach S1.
    pub public_url: String,
    /// `CONSOLE_URL`: the platform console, linked from `/` (blank: none).
    pub console_url: Option<String>,
    /// `SESSION_TTL_SECONDS`: idle lifetime of a session.
    pub session_ttl: Duration,
    /// `SESSION_MAX_LIFETIME_SECONDS`: absolute lifetime of a session, however active.
    pub session_max_lifetime: Duration,
    /// `STATUS_WAIT_MAX_SECONDS`: the longest `?wait=` a client may ask for.
    pub status_wait_max: u64,
    /// `STATUS_WAIT_MAX_CONCURRENT`: long-polls (`?wait=`) waiting at once; beyond
    /// it a long-poll answers the current state at once.
    pub status_wait_max_concurrent: usize,
    /// `KAFKA_ACK_TIMEOUT_SECONDS`: how long a write waits for Kafka before answering 503.
    pub kafka_ack_timeout: Duration,
    /// `TITLE_CACHE_TTL_SECONDS`: lifetime of a cached title.
    pub title_cache_ttl: Duration,
    /// `MAX_BODY_BYTES`: limit for JSON request bodies.
    pub max_body_bytes: usize,
    /// `MAX_ASSET_BYTES`: limit for poster/trailer uploads.
    pub max_asset_bytes: u64,
    /// `ADMIN_EMAIL` + `ADMIN_PASSWORD`: bootstrap administrator, both or neither.
    pub admin: Option<(String, String)>,
    /// `PASSWORD_HASH_CONCURRENCY`: password hashes (19 MiB each) computed at once.
    pub password_hash_concurrency: usize,
    /// `PASSWORD_HASH_QUEUE_SECONDS`: how long a registration or login waits
    /// for a hashing slot before answering 503.
    pub password_hash_queue_timeout: Duration,
    /// `LEGACY_API`: serve seed 002's endpoints too.
    pub legacy_api: bool,
    /// `LEGACY_API_ACCESS`: whether those endpoints need the account's token.
    pub legacy_access: LegacyAccess,
    /// `SOURCE`: the CloudEvents `source` of every event S1 publishes.
    pub source: String,
    /// Rate limits and login lockout (`RATE_LIMIT_*`, `LOGIN_LOCKOUT_*`, `TRUSTED_PROXIES`).
    pub limits: crate::limits::Limits,
}

impl Config {
    pub fn read<S: Source>(r: &mut Reader<S>) -> Self {
        let stores = StoreEndpoints::read(r);
        let topics = Topics::read(r);
        let http_addr = r.parse("HTTP_ADDR", SocketAddr::from(([127, 0, 0, 1], 8000)));
        let metrics_addr = polystream_common::metrics::read_addr(r);
        let server = polystream_common::server::ServerLimits::read(r);
        let public_url = r
            .url("PUBLIC_URL", "http://127.0.0.1:8000", &["http", "https"])
            .trim_end_matches('/')
            .to_owned();
        let console_url = Some(r.string("CONSOLE_URL", "")).filter(|u| !u.trim().is_empty());
        if let Some(u) = &console_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            r.invalid(
                "CONSOLE_URL",
                u,
                "expected a URL starting with http:// or https://",
            );
        }
        let session_ttl = Duration::from_secs(positive(r, "SESSION_TTL_SECONDS", 3600));
        let session_max_lifetime =
            Duration::from_secs(positive(r, "SESSION_MAX_LIFETIME_SECONDS", 7 * 24 * 3600));
        let status_wait_max = r.parse("STATUS_WAIT_MAX_SECONDS", 30u64);
        // A long-poll must be able to wait its longest and still answer.
        if status_wait_max >= server.request_timeout.as_secs() {
            r.invalid(
                "STATUS_WAIT_MAX_SECONDS",
                &status_wait_max.to_string(),
                format!(
                    "must be less than HTTP_REQUEST_TIMEOUT_SECONDS ({})",
                    server.request_timeout.as_secs()
                ),
            );
        }
        let status_wait_max_concurrent = positive(
            r,
            "STATUS_WAIT_MAX_CONCURRENT",
            polystream_common::status::DEFAULT_MAX_WAITERS as u64,
        ) as usize;
        let kafka_ack_timeout = Duration::from_secs(positive(r, "KAFKA_ACK_TIMEOUT_SECONDS", 5));
        let title_cache_ttl = Duration::from_secs(positive(
            r,
            "TITLE_CACHE_TTL_SECONDS",
            polystream_stores::cache::TITLE_TTL.as_secs(),
        ));
        let max_body_bytes = r.parse("MAX_BODY_BYTES", 64 * 1024usize);
        let max_asset_bytes = r.parse("MAX_ASSET_BYTES", 200 * 1024 * 1024u64);
        let email = r.string("ADMIN_EMAIL", "");
        let password = r.string("ADMIN_PASSWORD", "");
        let admin = match (email.is_empty(), password.is_empty()) {
            (true, true) => None,
            (false, false) => {
                if password.chars().count() < 8 {
                    r.invalid(
                        "ADMIN_PASSWORD",
                        "(hidden)",
                        "must be at least 8 characters",
                    );
                }
                Some((email, password))
            }
            (true, false) => {
                r.invalid("ADMIN_EMAIL", "", "must be set when ADMIN_PASSWORD is");
                None
            }
            (false, true) => {
                r.invalid("ADMIN_PASSWORD", "", "must be set when ADMIN_EMAIL is");
                None
            }
        };
        let password_hash_concurrency = positive(r, "PASSWORD_HASH_CONCURRENCY", 2) as usize;
        let password_hash_queue_timeout =
            Duration::from_secs(positive(r, "PASSWORD_HASH_QUEUE_SECONDS", 10));
        let legacy_api = r.parse("LEGACY_API", true);
        let legacy_access = r.parse("LEGACY_API_ACCESS", LegacyAccess::Token);
        let source = r.string("SOURCE", "/polystream/s1-gateway");
        let limits = crate::limits::Limits::read(r);
        Self {
            stores,
            topics,
            http_addr,
            metrics_addr,
            server,
            public_url,
            console_url,
            session_ttl,
            session_max_lifetime,
            status_wait_max,
            status_wait_max_concurrent,
            kafka_ack_timeout,
            title_cache_ttl,
            max_body_bytes,
            max_asset_bytes,
            admin,
            password_hash_concurrency,
            password_hash_queue_timeout,
            legacy_api,
            legacy_access,
            source,
            limits,
        }
    }

    pub fn from_env() -> Result<Self, ConfigErrors> {
        let mut r = Reader::new(ProcessEnv);
        let c = Self::read(&mut r);
        r.finish().map(|()| c)
    }
}

/// Who may use an account through seed 002's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyAccess {
    /// The account's bearer token (or an admin's), as on `/v1`.
    Token,
    /// Anyone, as in the original platform.
    Open,
}

impl std::str::FromStr for LegacyAccess {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "token" => Ok(Self::Token),
            "open" => Ok(Self::Open),
            other => Err(format!("'{other}' is neither token nor open")),
        }
    }
}

impl std::fmt::Display for LegacyAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Token => "token",
            Self::Open => "open",
        })
    }
}

fn positive<S: Source>(r: &mut Reader<S>, var: &str, default: u64) -> u64 {
    let v = r.parse(var, default);
    if v == 0 {
        r.invalid(var, "0", "must be at least 1");
        return default;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let mut r = Reader::new([("UNRELATED", "x")]);
        let c = Config::read(&mut r);
        assert!(r.finish().is_ok());
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(c.public_url, "http://127.0.0.1:8000");
        assert_eq!(c.session_ttl, Duration::from_secs(3600));
        assert_eq!(c.status_wait_max, 30);
        assert!(c.legacy_api);
        assert!(c.admin.is_none());
        assert!(c.metrics_addr.is_none());
    }

    #[test]
    fn bad_values_are_named() {
        let mut r = Reader::new([
            ("HTTP_ADDR", "nowhere"),
            ("ADMIN_EMAIL", "a@b.c"),
            ("SESSION_TTL_SECONDS", "0"),
        ]);
        Config::read(&mut r);
        let text = r.finish().unwrap_err().to_string();
        assert!(text.contains("HTTP_ADDR"), "{text}");
        assert!(text.contains("ADMIN_PASSWORD"), "{text}");
        assert!(text.contains("SESSION_TTL_SECONDS"), "{text}");
    }
}
