//! S2's Prometheus registry: the shared consumer, producer and store-call
//! families (recorded by the common helpers) plus S2's own dead-letter count.
//! See docs/observability.md.

use std::sync::Arc;

use polystream_common::config::Topics;
pub use polystream_common::events::bounded_event_type;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::dlq::Reason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone)]
pub struct Metrics {
    /// `polystream_dead_lettered_events_total{reason}`.
    dead_lettered: Family<ReasonLabel, Counter>,
    /// `polystream_processor_batch_events`: events per batch done together.
    batch_events: Histogram,
    /// `polystream_processor_batches_abandoned_total`.
    batches_abandoned: Counter,
}

impl Metrics {
    /// The registry `/metrics` serves, and S2's own metrics. Every series
    /// with a known label set starts at 0, so dashboards and alerts have it
    /// before the first event.
    pub fn new(topics: &Topics, group: &str) -> (Self, Arc<Registry>) {
        let mut m = polystream_common::metrics::Metrics::new()
            .with_consumer()
            .with_producer();
        polystream_common::metrics::preregister_consumer(&topics.user_events, group);
        polystream_common::metrics::preregister_producer(&topics.response_events);
        polystream_common::metrics::preregister_producer(&topics.dead_letter);
        let dead_lettered: Family<ReasonLabel, Counter> = Family::default();
        for r in Reason::ALL {
            dead_lettered.get_or_create_owned(&label(r));
        }
        m.registry_mut().register(
            "polystream_dead_lettered_events",
            "Events copied to the dead-letter topic because they can never be processed, by reason",
            dead_lettered.clone(),
        );
        let batch_events = Histogram::new([2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]);
        m.registry_mut().register(
            "polystream_processor_batch_events",
            "Events of one partition processed together (one PostgreSQL transaction, outcomes sent before any is awaited)",
            batch_events.clone(),
        );
        let batches_abandoned = Counter::default();
        m.registry_mut().register(
            "polystream_processor_batches_abandoned",
            "Batches given up (a poison event, a broken rule, a fault) whose events were then processed one by one",
            batches_abandoned.clone(),
        );
        (
            Self {
                dead_lettered,
                batch_events,
                batches_abandoned,
            },
            m.finish(),
        )
    }

    pub fn dead_lettered(&self, reason: Reason) {
        self.dead_lettered.get_or_create(&label(reason)).inc();
    }
}

impl Metrics {
    pub fn batch_done(&self, events: usize) {
        self.batch_events.observe(events as f64);
    }

    pub fn batch_abandoned(&self) {
        self.batches_abandoned.inc();
    }
}

fn label(r: Reason) -> ReasonLabel {
    ReasonLabel {
        reason: r.label().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_reason_is_preregistered() {
        let topics = Topics {
            user_events: "s2-metrics-unit-user".into(),
            response_events: "s2-metrics-unit-resp".into(),
            dead_letter: "s2-metrics-unit-dlq".into(),
        };
        let (m, registry) = Metrics::new(&topics, "s2-metrics-unit-group");
        m.dead_lettered(Reason::UnknownType);
        let text = polystream_common::metrics::encode(&registry).unwrap();
        for r in Reason::ALL {
            let want = if r == Reason::UnknownType { 1 } else { 0 };
            let line = format!(
                "polystream_dead_lettered_events_total{{reason=\"{}\"}} {want}",
                r.label()
            );
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
        assert!(text.contains(
            "messaging_client_consumed_messages_total{messaging_system=\"kafka\",messaging_destination_name=\"s2-metrics-unit-user\",messaging_consumer_group_name=\"s2-metrics-unit-group\"} 0"
        ), "{text}");
    }
}
