//! S3's own Prometheus metrics (see docs/observability.md): indexing and
//! spooling, and the request → response flows the tracker pairs. (The
//! consumer families — consumed, process duration, lag — are the common
//! ones.) Every label value comes from a fixed set, so cardinality stays
//! bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::{Registry, Unit};

use polystream_common::config::Topics;

use crate::spool::SpoolGauges;
pub use polystream_common::events::bounded_event_type;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub messaging_destination_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    pub event_type: String,
    pub outcome: String,
}

/// The exemplar of a latency observation: the trace it belongs to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceLabel {
    pub trace_id: String,
}

#[derive(Clone)]
pub struct Metrics {
    /// `polystream_audit_indexed_events_total{messaging_destination_name}`.
    pub indexed: Family<TopicLabels, Counter>,
    /// `polystream_audit_spooled_events_total`.
    pub spooled: Counter,
    /// `polystream_flow_duration_seconds{event_type,outcome}`.
    pub flow_duration: Family<FlowLabels, HistogramWithExemplars<TraceLabel>>,
    /// `polystream_flows_unanswered`.
    pub flows_unanswered: Gauge,
}

impl Metrics {
    /// Registers S3's metrics; the counters of every topic start at 0 so a
    /// dashboard has its series before the first event. `spool_segments` is
    /// the spool's own (see [`crate::spool::Spool::gauges`]).
    pub fn register(registry: &mut Registry, topics: &Topics, spool: SpoolGauges) -> Self {
        let m = Self {
            indexed: Family::default(),
            spooled: Counter::default(),
            flow_duration: Family::new_with_constructor(|| {
                // 5 ms … ~41 s: a flow is a Kafka hop, S2's work and another hop.
                HistogramWithExemplars::new(exponential_buckets(0.005, 2.0, 14))
            }),
            flows_unanswered: Gauge::default(),
        };
        for t in [
            &topics.user_events,
            &topics.response_events,
            &topics.dead_letter,
        ] {
            m.indexed.get_or_create_owned(&TopicLabels {
                messaging_destination_name: t.clone(),
            });
        }
        registry.register(
            "polystream_audit_indexed_events",
            "Events indexed into OpenSearch (directly or replayed from the spool), by topic",
            m.indexed.clone(),
        );
        registry.register(
            "polystream_audit_spooled_events",
            "Events written to the local spool because OpenSearch was unavailable or not configured",
            m.spooled.clone(),
        );
        registry.register(
            "polystream_audit_spool_segments",
            "Spool segments waiting to be replayed into OpenSearch",
            spool.segments,
        );
        registry.register_with_unit(
            "polystream_audit_spool",
            "Size of the spool segments waiting to be replayed",
            Unit::Bytes,
            spool.bytes,
        );
        registry.register_with_unit(
            "polystream_audit_spool_max",
            "The spool's bound (SPOOL_MAX_BYTES)",
            Unit::Bytes,
            spool.max_bytes,
        );
        registry.register(
            "polystream_audit_spool_full",
            "1 while a batch waits because the spool is full: S3 neither consumes nor commits",
            spool.full,
        );
        registry.register(
            "polystream_audit_spool_corrupt_segments",
            "Spool segments that could not be read back and were set aside as *.corrupt",
            spool.corrupt,
        );
        registry.register_with_unit(
            "polystream_flow_duration",
            "Request to response time of a command: its outcome's time minus its own (CloudEvents times)",
            Unit::Seconds,
            m.flow_duration.clone(),
        );
        registry.register(
            "polystream_flows_unanswered",
            "Commands flagged for having no outcome after FLOW_TIMEOUT_SECONDS",
            m.flows_unanswered.clone(),
        );
        m
    }

    pub fn indexed(&self, topic: &str, n: u64) {
        if n > 0 {
            self.indexed
                .get_or_create(&TopicLabels {
                    messaging_destination_name: topic.to_owned(),
                })
                .inc_by(n);
        }
    }

    /// One paired flow. `status` is the outcome's (`completed`, `failed`,
    /// `dead_lettered`…); anything but `completed` counts as `failed`.
    pub fn flow(
        &self,
        command_type: Option<&str>,
        status: &str,
        seconds: f64,
        trace_id: Option<String>,
    ) {
        let labels = FlowLabels {
            event_type: bounded_event_type(command_type).to_owned(),
            outcome: flow_outcome(status).to_owned(),
        };
        self.flow_duration.get_or_create(&labels).observe(
            seconds.max(0.0),
            trace_id.map(|trace_id| TraceLabel { trace_id }),
            None,
        );
    }
}

/// `completed` or `failed`: the catalogue's two flow outcomes.
pub fn flow_outcome(status: &str) -> &'static str {
    if status == "completed" {
        "completed"
    } else {
        "failed"
    }
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`),
/// if it is well formed and not all zeros.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (_version, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(trace, 32) && hex(span, 16) && trace.bytes().any(|b| b != b'0'))
        .then(|| trace.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn outcomes_are_bounded() {
        assert_eq!(flow_outcome("completed"), "completed");
        assert_eq!(flow_outcome("dead_lettered"), "failed");
        assert_eq!(flow_outcome("failed"), "failed");
    }

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        assert_eq!(
            trace_id_of("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01").as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(trace_id_of("00-abc-def-01"), None);
        assert_eq!(
            trace_id_of("00-00000000000000000000000000000000-b7ad6b7169203331-01"),
            None
        );
        assert_eq!(trace_id_of(""), None);
    }

    #[test]
    fn registered_series_exist_before_any_event() {
        let mut registry = Registry::default();
        let topics = Topics {
            user_events: "u".into(),
            response_events: "r".into(),
            dead_letter: "d".into(),
        };
        let m = Metrics::register(&mut registry, &topics, SpoolGauges::default());
        m.flow(
            Some("polystream.title.rated.v1"),
            "dead_lettered",
            0.25,
            Some("ab".into()),
        );
        let text = polystream_common::metrics::encode(&registry).unwrap();
        for line in [
            "polystream_audit_indexed_events_total{messaging_destination_name=\"d\"} 0",
            "polystream_audit_spooled_events_total 0",
            "polystream_audit_spool_segments 0",
            "polystream_audit_spool_bytes 0",
            "polystream_audit_spool_max_bytes 0",
            "polystream_audit_spool_full 0",
            "polystream_audit_spool_corrupt_segments_total 0",
            "polystream_flows_unanswered 0",
            "polystream_flow_duration_seconds_count{event_type=\"polystream.title.rated.v1\",outcome=\"failed\"} 1",
            "# {trace_id=\"ab\"} 0.25",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
