//! S3's settings, from environment variables (see docs/configuration.md, "S3 monitor").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use polystream_common::config::{
    ConfigErrors, ProcessEnv, Reader, Source, StoreEndpoints, TopicLayout, Topics,
};

#[derive(Debug, Clone)]
pub struct Config {
    /// `KAFKA_BOOTSTRAP_SERVERS` with its TLS and SASL settings.
    pub kafka: polystream_common::kafka::Connection,
    /// `OPENSEARCH_URL`; `None` when it is set to the empty string: no
    /// OpenSearch is configured and S3 runs spool-only.
    pub opensearch_url: Option<String>,
    pub topics: Topics,
    pub http_addr: SocketAddr,
    /// `METRICS_ADDR`: when set, `/metrics` is served there, not on `http_addr`.
    pub metrics_addr: Option<SocketAddr>,
    /// `HTTP_*` limits of the HTTP listeners.
    pub server: polystream_common::server::ServerLimits,
    pub group_id: String,
    /// `KAFKA_PARTITIONS` and `KAFKA_REPLICATION_FACTOR` of the topics it creates.
    pub layout: TopicLayout,
    pub spool_dir: PathBuf,
    /// `SPOOL_MAX_BYTES`: most bytes of spool segments; when the next batch
    /// does not fit, S3 holds it (no commit, no consuming) until replay frees room.
    pub spool_max_bytes: u64,
    /// Daily indices are `{prefix}-YYYY.MM.DD`.
    pub index_prefix: String,
    pub flow_timeout: Duration,
    /// `STALL_AFTER_SECONDS`: when a partition with lag and no progress counts as stalled.
    pub stall_after: Duration,
    pub bulk_max_events: usize,
    pub bulk_max_wait: Duration,
}

impl Config {
    pub fn read<S: Source>(r: &mut Reader<S>) -> Self {
        // Set but empty: the operator's explicit "no OpenSearch" (unset keeps
        // the local default, like every other variable).
        let spool_only = r.is_blank("OPENSEARCH_URL");
        let stores = StoreEndpoints::read(r);
        let topics = Topics::read(r);
        let http_addr = r.parse("HTTP_ADDR", SocketAddr::from(([127, 0, 0, 1], 8002)));
        let metrics_addr = polystream_common::metrics::read_addr(r);
        let server = polystream_common::server::ServerLimits::read(r);
        let group_id = r.string("KAFKA_GROUP_ID", "polystream-monitor");
        let layout = TopicLayout::read(r);
        let default_spool = default_spool_dir(r);
        let spool_dir = PathBuf::from(r.string("SPOOL_DIR", &default_spool));
        let spool_max_bytes: u64 = r.parse("SPOOL_MAX_BYTES", DEFAULT_SPOOL_MAX_BYTES);
        if spool_max_bytes == 0 {
            r.invalid("SPOOL_MAX_BYTES", "0", "must be at least 1 (bytes)");
        }
        let index_prefix = r.string("AUDIT_INDEX_PREFIX", "polystream-audit");
        if !valid_prefix(&index_prefix) {
            r.invalid(
                "AUDIT_INDEX_PREFIX",
                &index_prefix,
                "an index prefix uses only lowercase letters, digits, '-' and '_', and starts with a letter or digit",
            );
        }
        let flow_timeout: u64 = r.parse("FLOW_TIMEOUT_SECONDS", 30);
        if flow_timeout == 0 {
            r.invalid("FLOW_TIMEOUT_SECONDS", "0", "must be at least 1");
        }
        let stall_after = polystream_common::progress::read_stall_after(r);
        let bulk_max_events: usize = r.parse("BULK_MAX_EVENTS", 500);
        if !(1..=10_000).contains(&bulk_max_events) {
            r.invalid(
                "BULK_MAX_EVENTS",
                &bulk_max_events.to_string(),
                "must be between 1 and 10000",
            );
        }
        let bulk_max_wait: u64 = r.parse("BULK_MAX_WAIT_MS", 1000);
        if bulk_max_wait == 0 {
            r.invalid("BULK_MAX_WAIT_MS", "0", "must be at least 1");
        }
        Self {
            kafka: stores.kafka(),
            opensearch_url: (!spool_only).then_some(stores.opensearch_url),
            topics,
            http_addr,
            metrics_addr,
            server,
            group_id,
            layout,
            spool_dir,
            spool_max_bytes: spool_max_bytes.max(1),
            index_prefix,
            flow_timeout: Duration::from_secs(flow_timeout.max(1)),
            stall_after,
            bulk_max_events: bulk_max_events.clamp(1, 10_000),
            bulk_max_wait: Duration::from_millis(bulk_max_wait.max(1)),
        }
    }

    pub fn from_env() -> Result<Self, ConfigErrors> {
        let mut r = Reader::new(ProcessEnv);
        let c = Self::read(&mut r);
        r.finish().map(|()| c)
    }

    /// Whether an OpenSearch is configured (see [`Config::opensearch_url`]).
    pub fn spool_only(&self) -> bool {
        self.opensearch_url.is_none()
    }
}

/// 1 GiB: hours of a busy platform's events while OpenSearch is away.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1 << 30;

/// `$XDG_STATE_HOME/polystream/spool` (the same state root `./dev` uses), else
/// `./spool`. In Kubernetes SPOOL_DIR is set to a mounted volume.
fn default_spool_dir<S: Source>(r: &mut Reader<S>) -> String {
    match r.string("XDG_STATE_HOME", "") {
        s if s.is_empty() => "spool".to_owned(),
        s => format!("{s}/polystream/spool"),
    }
}

/// OpenSearch index names are lowercase and cannot start with `-`, `_` or `+`.
fn valid_prefix(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 200
        && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let mut r = Reader::new([("XDG_STATE_HOME", "/var/state")]);
        let c = Config::read(&mut r);
        assert!(r.finish().is_ok());
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8002");
        assert_eq!(c.group_id, "polystream-monitor");
        assert_eq!(c.spool_dir, PathBuf::from("/var/state/polystream/spool"));
        assert_eq!(c.index_prefix, "polystream-audit");
        assert_eq!(c.spool_max_bytes, 1_073_741_824);
        assert_eq!(c.flow_timeout, Duration::from_secs(30));
        assert_eq!(c.bulk_max_events, 500);
        assert_eq!(c.bulk_max_wait, Duration::from_millis(1000));
        assert_eq!(c.metrics_addr, None);
        let mut r = Reader::new([("UNRELATED", "x")]);
        assert_eq!(Config::read(&mut r).spool_dir, PathBuf::from("spool"));
        assert_eq!(
            c.opensearch_url.as_deref(),
            Some(StoreEndpoints::LOCAL_OPENSEARCH_URL)
        );
        assert!(!c.spool_only());
    }

    #[test]
    fn an_empty_opensearch_url_means_spool_only() {
        for blank in ["", "  "] {
            let mut r = Reader::new([("OPENSEARCH_URL", blank)]);
            let c = Config::read(&mut r);
            assert!(r.finish().is_ok(), "an empty OPENSEARCH_URL is valid");
            assert_eq!(c.opensearch_url, None);
            assert!(c.spool_only());
        }
        let mut r = Reader::new([("OPENSEARCH_URL", "http://opensearch:9200")]);
        let c = Config::read(&mut r);
        assert_eq!(c.opensearch_url.as_deref(), Some("http://opensearch:9200"));
        let mut r = Reader::new([("OPENSEARCH_URL", "opensearch:9200")]);
        Config::read(&mut r);
        assert!(
            r.finish()
                .unwrap_err()
                .to_string()
                .contains("OPENSEARCH_URL")
        );
    }

    #[test]
    fn bad_values_are_named() {
        let mut r = Reader::new([
            ("AUDIT_INDEX_PREFIX", "Audit"),
            ("BULK_MAX_EVENTS", "0"),
            ("FLOW_TIMEOUT_SECONDS", "soon"),
            ("HTTP_ADDR", "localhost"),
            ("METRICS_ADDR", "9090"),
            ("SPOOL_MAX_BYTES", "0"),
        ]);
        Config::read(&mut r);
        let text = r.finish().unwrap_err().to_string();
        for var in [
            "AUDIT_INDEX_PREFIX",
            "BULK_MAX_EVENTS",
            "FLOW_TIMEOUT_SECONDS",
            "HTTP_ADDR",
            "METRICS_ADDR",
            "SPOOL_MAX_BYTES",
        ] {
            assert!(text.contains(var), "{var} missing from {text}");
        }
        let mut r = Reader::new([("SPOOL_MAX_BYTES", "1GB")]);
        Config::read(&mut r);
        let text = r.finish().unwrap_err().to_string();
        assert!(text.contains("SPOOL_MAX_BYTES"), "{text}");
    }
}
