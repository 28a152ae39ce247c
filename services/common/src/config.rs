//! Settings from environment variables, with errors that name the variable.
//!
//! A [`Reader`] collects every problem instead of stopping at the first, so an
//! operator fixing a Deployment sees all bad variables in one start-up log.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Where settings come from; the process environment in production, a map in tests.
pub trait Source {
    fn get(&self, var: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, var: &str) -> Option<String> {
        std::env::var(var).ok()
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, var: &str) -> Option<String> {
        HashMap::get(self, var).cloned()
    }
}

impl<const N: usize> Source for [(&str, &str); N] {
    fn get(&self, var: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| (*v).to_owned())
    }
}

/// One bad setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is required but not set")]
    Missing { var: String },
    #[error("{var}={value:?} is invalid: {problem}")]
    Invalid {
        var: String,
        value: String,
        problem: String,
    },
}

/// Every bad setting found while reading a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A variable's default as a [`Reader`] was asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultValue {
    /// This value when unset (or blank).
    Value(String),
    /// Nothing: unset means "off" or "none" (the default was the empty string).
    Unset,
    /// Must be set ([`Reader::required`]).
    Required,
}

/// One variable a [`Reader`] was asked for, with its default: what `--help`
/// lists (see `crate::cli`), so the list is the code's own reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub var: String,
    pub default: DefaultValue,
}

/// Reads typed settings and remembers what was wrong.
pub struct Reader<S> {
    source: S,
    errors: Vec<ConfigError>,
    described: Vec<Described>,
}

impl<S: Source> Reader<S> {
    pub fn new(source: S) -> Self {
        Self {
            source,
            errors: Vec::new(),
            described: Vec::new(),
        }
    }

    /// Every variable asked for so far, in first-asked order, each once.
    pub fn described(&self) -> &[Described] {
        &self.described
    }

    fn describe(&mut self, var: &str, default: DefaultValue) {
        if !self.described.iter().any(|d| d.var == var) {
            self.described.push(Described {
                var: var.to_owned(),
                default,
            });
        }
    }

    /// A non-empty value, or `default` when unset. Empty counts as unset so a
    /// blank line in a ConfigMap does not silently become "".
    pub fn string(&mut self, var: &str, default: &str) -> String {
        self.describe(
            var,
            if default.is_empty() {
                DefaultValue::Unset
            } else {
                DefaultValue::Value(default.to_owned())
            },
        );
        self.raw(var).unwrap_or_else(|| default.to_owned())
    }

    /// A value that has no sensible default.
    pub fn required(&mut self, var: &str) -> String {
        self.describe(var, DefaultValue::Required);
        self.raw(var).unwrap_or_else(|| {
            self.errors.push(ConfigError::Missing { var: var.into() });
            String::new()
        })
    }

    /// A value parsed with [`FromStr`]; a parse failure is recorded with the parser's reason.
    pub fn parse<T>(&mut self, var: &str, default: T) -> T
    where
        T: FromStr + fmt::Display,
        T::Err: fmt::Display,
    {
        self.describe(var, DefaultValue::Value(default.to_string()));
        let Some(value) = self.raw(var) else {
            return default;
        };
        match value.parse() {
            Ok(v) => v,
            Err(e) => {
                self.invalid(var, &value, e.to_string());
                default
            }
        }
    }

    /// A URL whose scheme is one of `schemes`.
    pub fn url(&mut self, var: &str, default: &str, schemes: &[&str]) -> String {
        let value = self.string(var, default);
        match value.split_once("://") {
            Some((scheme, rest)) if schemes.contains(&scheme) && !rest.is_empty() => {}
            _ => self.invalid(
                var,
                &value,
                format!("expected a URL starting with {}", schemes_list(schemes)),
            ),
        }
        value
    }

    /// A comma-separated list of `host:port` pairs.
    pub fn host_ports(&mut self, var: &str, default: &str) -> String {
        let value = self.string(var, default);
        let bad = value.split(',').map(str::trim).find(|hp| {
            !matches!(hp.rsplit_once(':'), Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok())
        });
        if let Some(bad) = bad {
            self.invalid(
                var,
                &value,
                format!("{bad:?} is not host:port (expected e.g. 127.0.0.1:9092,other:9092)"),
            );
        }
        value
    }

    /// Records a problem found by the caller's own validation.
    /// The value is shown redacted: a malformed store URL still carries its
    /// password.
    pub fn invalid(&mut self, var: &str, value: &str, problem: impl Into<String>) {
        self.errors.push(ConfigError::Invalid {
            var: var.into(),
            value: redact_url(value),
            problem: problem.into(),
        });
    }

    /// `Ok` when every read succeeded, otherwise all problems at once.
    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.errors))
        }
    }

    /// Set, but empty (or only whitespace): an explicit "none", as a
    /// ConfigMap can say it, which the other readers treat as unset.
    pub fn is_blank(&self, var: &str) -> bool {
        self.source.get(var).is_some_and(|v| v.trim().is_empty())
    }

    fn raw(&self, var: &str) -> Option<String> {
        self.source.get(var).filter(|v| !v.trim().is_empty())
    }
}

/// `url` without its password, for messages: store URLs carry credentials
/// (`postgres://user:secret@host/db` → `postgres://user:***@host/db`).
pub fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(at)) if at > scheme.len() + 3 => {
            let creds = &rest[..at - scheme.len() - 3];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{}", &url[at + 1..])
        }
        // No scheme, but credentials all the same (`user:secret@host`).
        (None, Some(at)) => format!("***@{}", &url[at + 1..]),
        _ => url.to_owned(),
    }
}

fn schemes_list(schemes: &[&str]) -> String {
    schemes
        .iter()
        .map(|s| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// How to reach each store. Defaults are the servers `./dev up` runs on
/// 127.0.0.1, so a service started locally needs no configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreEndpoints {
    /// `DATABASE_URL`: PostgreSQL.
    pub database_url: String,
    /// `REDIS_URL`.
    pub redis_url: String,
    /// `KAFKA_BOOTSTRAP_SERVERS`: comma-separated `host:port`.
    pub kafka_bootstrap_servers: String,
    /// `KAFKA_SECURITY_PROTOCOL`, `KAFKA_TLS_DIR`, `KAFKA_SASL_*`.
    pub kafka_security: crate::kafka::Security,
    /// `MONGODB_URI`: MongoDB (or a MongoDB-wire server).
    pub mongodb_uri: String,
    /// `OPENSEARCH_URL`.
    pub opensearch_url: String,
}

impl StoreEndpoints {
    pub const LOCAL_DATABASE_URL: &str =
        "postgres://polystream:polystream@127.0.0.1:5432/polystream";
    pub const LOCAL_REDIS_URL: &str = "redis://127.0.0.1:6379";
    pub const LOCAL_KAFKA: &str = "127.0.0.1:9092";
    pub const LOCAL_MONGODB_URI: &str = "mongodb://127.0.0.1:27017/";
    pub const LOCAL_OPENSEARCH_URL: &str = "http://127.0.0.1:9200";

    pub fn read<S: Source>(r: &mut Reader<S>) -> Self {
        Self {
            database_url: r.url(
                "DATABASE_URL",
                Self::LOCAL_DATABASE_URL,
                &["postgres", "postgresql"],
            ),
            redis_url: r.url("REDIS_URL", Self::LOCAL_REDIS_URL, &["redis", "rediss"]),
            kafka_bootstrap_servers: r.host_ports("KAFKA_BOOTSTRAP_SERVERS", Self::LOCAL_KAFKA),
            kafka_security: crate::kafka::Security::read(r),
            mongodb_uri: r.url(
                "MONGODB_URI",
                Self::LOCAL_MONGODB_URI,
                &["mongodb", "mongodb+srv"],
            ),
            opensearch_url: r.url(
                "OPENSEARCH_URL",
                Self::LOCAL_OPENSEARCH_URL,
                &["http", "https"],
            ),
        }
    }

    /// The brokers with their TLS and SASL settings.
    pub fn kafka(&self) -> crate::kafka::Connection {
        crate::kafka::Connection {
            bootstrap_servers: self.kafka_bootstrap_servers.clone(),
            security: self.kafka_security.clone(),
        }
    }

    /// Reads from the process environment.
    pub fn from_env() -> Result<Self, ConfigErrors> {
        let mut r = Reader::new(ProcessEnv);
        let endpoints = Self::read(&mut r);
        r.finish().map(|()| endpoints)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_malformed_store_url_is_reported_without_its_password() {
        let mut r = Reader::new([
            ("DATABASE_URL", "postgresql+x://u:S3CRET@db:5432/p"),
            ("REDIS_URL", "u:S3CRET@redis:6379"),
        ]);
        let _ = StoreEndpoints::read(&mut r);
        let err = r.finish().unwrap_err().to_string();
        assert!(
            err.contains("DATABASE_URL") && err.contains("REDIS_URL"),
            "{err}"
        );
        assert!(err.contains("u:***@db:5432/p"), "{err}");
        assert!(!err.contains("S3CRET"), "{err}");
    }

    #[test]
    fn store_passwords_are_redacted() {
        assert_eq!(
            super::redact_url("postgres://polystream:secret@127.0.0.1:5432/db"),
            "postgres://polystream:***@127.0.0.1:5432/db"
        );
        assert_eq!(
            super::redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    use super::*;

    #[test]
    fn defaults_point_at_the_local_servers() {
        let mut r = Reader::new([("UNRELATED", "x")]);
        let e = StoreEndpoints::read(&mut r);
        assert_eq!(r.finish(), Ok(()));
        assert_eq!(e.kafka_bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(e.redis_url, "redis://127.0.0.1:6379");
    }

    #[test]
    fn blank_is_told_apart_from_unset() {
        let r = Reader::new([("OPENSEARCH_URL", " "), ("OTHER", "x")]);
        assert!(r.is_blank("OPENSEARCH_URL"));
        assert!(!r.is_blank("OTHER"));
        assert!(!r.is_blank("UNSET"));
    }

    #[test]
    fn every_bad_variable_is_reported_by_name() {
        let mut r = Reader::new([
            ("DATABASE_URL", "mysql://x"),
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092,broker"),
            ("REDIS_URL", "redis://cache:6379"),
        ]);
        StoreEndpoints::read(&mut r);
        let errors = r.finish().unwrap_err();
        let text = errors.to_string();
        assert_eq!(errors.0.len(), 2, "{text}");
        assert!(text.contains("DATABASE_URL=\"mysql://x\" is invalid: expected a URL starting with postgres:// or postgresql://"), "{text}");
        assert!(text.contains("KAFKA_BOOTSTRAP_SERVERS"), "{text}");
        assert!(text.contains("\"broker\" is not host:port"), "{text}");
    }

    #[test]
    fn parse_failures_keep_the_parser_reason() {
        let mut r = Reader::new([("PORT", "eighty")]);
        let port: u16 = r.parse("PORT", 8000);
        assert_eq!(port, 8000);
        let text = r.finish().unwrap_err().to_string();
        assert!(
            text.contains("PORT=\"eighty\" is invalid: invalid digit"),
            "{text}"
        );
    }

    #[test]
    fn blank_counts_as_unset_and_required_reports_missing() {
        let mut r = Reader::new([("NAME", "  "), ("OTHER", "")]);
        assert_eq!(r.string("NAME", "dflt"), "dflt");
        r.required("OTHER");
        assert_eq!(
            r.finish().unwrap_err().0,
            vec![ConfigError::Missing {
                var: "OTHER".into()
            }]
        );
    }

    #[test]
    fn every_variable_asked_for_is_described_once_with_its_default() {
        let mut r = Reader::new([("PORT", "9000")]);
        let _: u16 = r.parse("PORT", 8000);
        r.string("NAME", "");
        r.url("URL", "http://x", &["http"]);
        r.required("TOKEN");
        r.string("NAME", "other");
        let d = |var: &str, default| Described {
            var: var.into(),
            default,
        };
        assert_eq!(
            r.described(),
            [
                d("PORT", DefaultValue::Value("8000".into())),
                d("NAME", DefaultValue::Unset),
                d("URL", DefaultValue::Value("http://x".into())),
                d("TOKEN", DefaultValue::Required),
            ]
        );
    }
}

/// How topics a service creates are laid out: `KAFKA_PARTITIONS` (default 6)
/// and `KAFKA_REPLICATION_FACTOR` (default 1, right for one local broker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLayout {
    pub partitions: i32,
    pub replication: i32,
}

impl TopicLayout {
    pub fn read<S: Source>(r: &mut Reader<S>) -> Self {
        let mut at_least_one = |var: &str, default: i32| {
            let v: i32 = r.parse(var, default);
            if v < 1 {
                r.invalid(var, &v.to_string(), "must be at least 1");
            }
            v
        };
        Self {
            partitions: at_least_one("KAFKA_PARTITIONS", 6),
            replication: at_least_one("KAFKA_REPLICATION_FACTOR", 1),
        }
    }
}

/// Kafka topic names (`KAFKA_TOPIC_*`), overridable so tests and several
/// platforms sharing one cluster stay apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub user_events: String,
    pub response_events: String,
    pub dead_letter: String,
}

impl Topics {
    pub fn read<S: Source>(r: &mut Reader<S>) -> Self {
        use crate::events::topics;
        let mut name = |var: &str, default: &str| {
            let v = r.string(var, default);
            let ok = v.len() <= 249
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !ok {
                r.invalid(
                    var,
                    &v,
                    "a Kafka topic name uses only letters, digits, '.', '_' and '-' (at most 249)",
                );
            }
            v
        };
        Self {
            user_events: name("KAFKA_TOPIC_USER_EVENTS", topics::USER_EVENTS),
            response_events: name("KAFKA_TOPIC_RESPONSE_EVENTS", topics::RESPONSE_EVENTS),
            dead_letter: name("KAFKA_TOPIC_DEAD_LETTER", topics::DEAD_LETTER),
        }
    }
}
