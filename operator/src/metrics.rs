//! The operator's Prometheus metrics (the catalogue in docs: reconcile count,
//! errors by kind, duration, platforms by condition, leadership).
//!
//! Every label value comes from a fixed set ([`Outcome`], [`ErrorKind`],
//! [`PLATFORM_CONDITIONS`]) and every series is registered at 0 up front, so
//! cardinality is bounded and dashboards have series before the first event.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::crd::StreamingPlatform;

/// Why a reconciliation failed: the `kind` label of
/// `polystream_operator_reconcile_errors_total`. Fixed, so the label stays bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A request to the Kubernetes API server failed (apply, get, status patch...).
    KubeApi,
    /// A store (Secret, Kafka, PostgreSQL, MongoDB, Redis, OpenSearch) check failed.
    StoreProbe,
    /// Creating or growing the Kafka topics failed.
    KafkaTopics,
    /// The spec cannot be turned into objects (something the schema cannot reject).
    InvalidSpec,
    /// Rendering or hashing an object failed.
    Serialization,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::KubeApi,
        ErrorKind::StoreProbe,
        ErrorKind::KafkaTopics,
        ErrorKind::InvalidSpec,
        ErrorKind::Serialization,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::KubeApi => "kube_api",
            ErrorKind::StoreProbe => "store_probe",
            ErrorKind::KafkaTopics => "kafka_topics",
            ErrorKind::InvalidSpec => "invalid_spec",
            ErrorKind::Serialization => "serialization",
        }
    }
}

/// The `outcome` label of `polystream_operator_reconciliations_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        }
    }
}

/// The `verb` label of `polystream_operator_api_writes_total`: what the
/// reconciler asked of the API server (server-side apply of a child, delete
/// of a child no longer desired, apply of a platform's status).
pub const API_WRITE_VERBS: [&str; 3] = ["apply", "delete", "status"];

/// The `condition` label values of `polystream_operator_platforms`.
pub const PLATFORM_CONDITIONS: [&str; 4] = ["Ready", "Degraded", "Progressing", "Paused"];

type Labels = [(&'static str, &'static str); 1];

/// How many platforms have each of [`PLATFORM_CONDITIONS`] `True`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlatformCounts {
    pub ready: i64,
    pub degraded: i64,
    pub progressing: i64,
    pub paused: i64,
}

impl PlatformCounts {
    /// Counts the conditions in the platforms' current status.
    pub fn of<'a>(platforms: impl IntoIterator<Item = &'a StreamingPlatform>) -> Self {
        let mut counts = Self::default();
        for sp in platforms {
            let conditions = sp.status.as_ref().map(|s| s.conditions.as_slice());
            for c in conditions.unwrap_or_default() {
                if c.status != "True" {
                    continue;
                }
                match c.type_.as_str() {
                    "Ready" => counts.ready += 1,
                    "Degraded" => counts.degraded += 1,
                    "Progressing" => counts.progressing += 1,
                    "Paused" => counts.paused += 1,
                    _ => {}
                }
            }
        }
        counts
    }

    fn get(&self, condition: &str) -> i64 {
        match condition {
            "Ready" => self.ready,
            "Degraded" => self.degraded,
            "Progressing" => self.progressing,
            "Paused" => self.paused,
            _ => 0,
        }
    }
}

/// The operator's metrics; cheap to clone (every handle shares the same series).
#[derive(Clone)]
pub struct OperatorMetrics {
    registry: Arc<Registry>,
    reconciliations: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    duration: Histogram,
    platforms: Family<Labels, Gauge>,
    leader: Gauge,
    api_writes: Family<Labels, Counter>,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl OperatorMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconciliations = Family::<Labels, Counter>::default();
        registry.register(
            "polystream_operator_reconciliations",
            "Reconciliations of StreamingPlatforms, by outcome",
            reconciliations.clone(),
        );
        let errors = Family::<Labels, Counter>::default();
        registry.register(
            "polystream_operator_reconcile_errors",
            "Failed reconciliations, by kind of error",
            errors.clone(),
        );
        // 5 ms .. ~41 s: a reconcile is a few API calls plus store probes bounded by seconds.
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "polystream_operator_reconcile_duration_seconds",
            "Time spent reconciling one StreamingPlatform",
            duration.clone(),
        );
        let platforms = Family::<Labels, Gauge>::default();
        registry.register(
            "polystream_operator_platforms",
            "StreamingPlatforms with the condition True",
            platforms.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "polystream_operator_leader",
            "1 while this replica holds the leader Lease, else 0",
            leader.clone(),
        );
        let api_writes = Family::<Labels, Counter>::default();
        registry.register(
            "polystream_operator_api_writes",
            "Writes the reconciler sent to the Kubernetes API server, by verb",
            api_writes.clone(),
        );

        // Pre-register every known series at 0.
        for outcome in [Outcome::Ok, Outcome::Error] {
            let _ = reconciliations.get_or_create(&[("outcome", outcome.as_str())]);
        }
        for kind in ErrorKind::ALL {
            let _ = errors.get_or_create(&[("kind", kind.as_str())]);
        }
        for condition in PLATFORM_CONDITIONS {
            let _ = platforms.get_or_create(&[("condition", condition)]);
        }
        for verb in API_WRITE_VERBS {
            let _ = api_writes.get_or_create(&[("verb", verb)]);
        }

        Self {
            registry: Arc::new(registry),
            reconciliations,
            errors,
            duration,
            platforms,
            leader,
            api_writes,
        }
    }

    /// The registry to serve (see [`crate::http::serve`]).
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// Records one reconciliation: its duration and outcome, and the error's kind if any.
    pub fn observe_reconcile(&self, duration: Duration, result: Result<(), ErrorKind>) {
        self.duration.observe(duration.as_secs_f64());
        let outcome = match result {
            Ok(()) => Outcome::Ok,
            Err(kind) => {
                self.error(kind);
                Outcome::Error
            }
        };
        self.reconciliations
            .get_or_create(&[("outcome", outcome.as_str())])
            .inc();
    }

    /// Counts one error of `kind` (without counting a reconciliation).
    pub fn error(&self, kind: ErrorKind) {
        self.errors.get_or_create(&[("kind", kind.as_str())]).inc();
    }

    /// Sets the platforms-by-condition gauge (recompute from the whole cache each time).
    pub fn set_platforms(&self, counts: PlatformCounts) {
        for condition in PLATFORM_CONDITIONS {
            self.platforms
                .get_or_create(&[("condition", condition)])
                .set(counts.get(condition));
        }
    }

    /// Counts one write to the API server; `verb` is one of [`API_WRITE_VERBS`].
    pub fn api_write(&self, verb: &'static str) {
        self.api_writes.get_or_create(&[("verb", verb)]).inc();
    }

    /// Sets the leader gauge.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The registry as OpenMetrics text (for tests and debugging).
    pub fn encode(&self) -> String {
        polystream_common::metrics::encode(&self.registry).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    #[test]
    fn every_known_series_exists_at_zero() {
        let body = OperatorMetrics::new().encode();
        for line in [
            "polystream_operator_reconciliations_total{outcome=\"ok\"} 0",
            "polystream_operator_reconciliations_total{outcome=\"error\"} 0",
            "polystream_operator_reconcile_errors_total{kind=\"kube_api\"} 0",
            "polystream_operator_reconcile_errors_total{kind=\"store_probe\"} 0",
            "polystream_operator_reconcile_errors_total{kind=\"kafka_topics\"} 0",
            "polystream_operator_reconcile_errors_total{kind=\"invalid_spec\"} 0",
            "polystream_operator_reconcile_errors_total{kind=\"serialization\"} 0",
            "polystream_operator_platforms{condition=\"Ready\"} 0",
            "polystream_operator_platforms{condition=\"Paused\"} 0",
            "polystream_operator_reconcile_duration_seconds_count 0",
            "polystream_operator_leader 0",
            "polystream_operator_api_writes_total{verb=\"apply\"} 0",
            "polystream_operator_api_writes_total{verb=\"delete\"} 0",
            "polystream_operator_api_writes_total{verb=\"status\"} 0",
        ] {
            assert!(body.contains(line), "missing {line:?} in\n{body}");
        }
    }

    #[test]
    fn observe_counts_outcome_kind_and_duration() {
        let m = OperatorMetrics::new();
        m.observe_reconcile(Duration::from_millis(20), Ok(()));
        m.observe_reconcile(Duration::from_millis(30), Err(ErrorKind::KubeApi));
        m.set_leader(true);
        let body = m.encode();
        assert!(
            body.contains("reconciliations_total{outcome=\"ok\"} 1"),
            "{body}"
        );
        assert!(
            body.contains("reconciliations_total{outcome=\"error\"} 1"),
            "{body}"
        );
        assert!(body.contains("errors_total{kind=\"kube_api\"} 1"), "{body}");
        assert!(body.contains("duration_seconds_count 2"), "{body}");
        assert!(body.contains("polystream_operator_leader 1"), "{body}");
    }

    fn platform(conditions: &[(&str, &str)]) -> StreamingPlatform {
        let mut sp: StreamingPlatform = serde_json::from_value(serde_json::json!({
            "apiVersion": "polystream.dev/v1alpha1",
            "kind": "StreamingPlatform",
            "metadata": {"name": "p"},
            "spec": {"stores": {
                "kafka": {"bootstrapServers": "k:9092"},
                "postgres": {"uriSecretRef": {"name": "s", "key": "pg"}},
                "mongodb": {"uriSecretRef": {"name": "s", "key": "mongo"}},
                "redis": {"uriSecretRef": {"name": "s", "key": "redis"}}
            }}
        }))
        .unwrap();
        let status = sp.status.get_or_insert_default();
        for (t, s) in conditions {
            status.conditions.push(Condition {
                type_: (*t).into(),
                status: (*s).into(),
                reason: "R".into(),
                message: String::new(),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            });
        }
        sp
    }

    #[test]
    fn platform_counts_only_true_conditions() {
        let a = platform(&[("Ready", "True"), ("Degraded", "False")]);
        let b = platform(&[
            ("Ready", "False"),
            ("Degraded", "True"),
            ("KafkaReady", "True"),
        ]);
        let c = platform(&[("Paused", "True"), ("Ready", "True")]);
        let counts = PlatformCounts::of([&a, &b, &c]);
        assert_eq!(
            counts,
            PlatformCounts {
                ready: 2,
                degraded: 1,
                progressing: 0,
                paused: 1
            }
        );
        let m = OperatorMetrics::new();
        m.set_platforms(counts);
        let body = m.encode();
        assert!(body.contains("platforms{condition=\"Ready\"} 2"), "{body}");
        assert!(
            body.contains("platforms{condition=\"Degraded\"} 1"),
            "{body}"
        );
    }
}
