//! `<sp>-config`: the non-secret settings every service reads (envFrom).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::{HTTP_PORT, child_meta, config_map_name, labels};
use crate::crd::StreamingPlatform;

/// The settings all three services read, named as in docs/configuration.md.
/// Settings only one service reads (`PUBLIC_URL`, `SPOOL_DIR`,
/// `OPENSEARCH_URL`, `KAFKA_PARTITIONS`, ...) are in that Deployment's `env`,
/// and connection URIs with credentials only ever come from Secrets.
pub fn build_configmap(sp: &StreamingPlatform) -> ConfigMap {
    let kafka = &sp.spec.stores.kafka;
    let obs = &sp.spec.observability;
    let mut data = BTreeMap::from([
        (
            "KAFKA_BOOTSTRAP_SERVERS".to_owned(),
            kafka.bootstrap_servers.clone(),
        ),
        (
            "KAFKA_TOPIC_USER_EVENTS".to_owned(),
            kafka.topics.user_events.clone(),
        ),
        (
            "KAFKA_TOPIC_RESPONSE_EVENTS".to_owned(),
            kafka.topics.response_events.clone(),
        ),
        (
            "KAFKA_TOPIC_DEAD_LETTER".to_owned(),
            kafka.topics.dead_letter.clone(),
        ),
        ("HTTP_ADDR".to_owned(), format!("0.0.0.0:{HTTP_PORT}")),
        (
            "METRICS_ADDR".to_owned(),
            format!("0.0.0.0:{}", obs.metrics_port),
        ),
        // Always a ratio sampler: the parent's decision wins, so one trace is
        // sampled in S1, S2 and S3 alike; a ratio of 1 samples everything.
        (
            "OTEL_TRACES_SAMPLER".to_owned(),
            "parentbased_traceidratio".to_owned(),
        ),
        (
            "OTEL_TRACES_SAMPLER_ARG".to_owned(),
            obs.sampling_ratio.to_string(),
        ),
    ]);
    if let Some(endpoint) = &obs.otlp_endpoint {
        data.insert("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), endpoint.clone());
    }
    ConfigMap {
        metadata: child_meta(sp, config_map_name(sp), labels(sp, None)),
        data: Some(data),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::builders::tests::sample;
    use crate::crd::OpenSearchSpec;

    #[test]
    fn configmap_carries_the_shared_variables() {
        let mut sp = sample();
        sp.spec.stores.kafka.topics.user_events = "ue".into();
        sp.spec.observability.metrics_port = 9464;
        sp.spec.observability.sampling_ratio = 0.25;
        let data = build_configmap(&sp).data.unwrap();
        let expected = BTreeMap::from([
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            ("KAFKA_TOPIC_USER_EVENTS", "ue"),
            ("KAFKA_TOPIC_RESPONSE_EVENTS", "response_events"),
            ("KAFKA_TOPIC_DEAD_LETTER", "dead_letter_events"),
            ("HTTP_ADDR", "0.0.0.0:8080"),
            ("METRICS_ADDR", "0.0.0.0:9464"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]);
        let actual: BTreeMap<&str, &str> =
            data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn otlp_endpoint_only_when_set() {
        let mut sp = sample();
        assert!(
            !build_configmap(&sp)
                .data
                .unwrap()
                .contains_key("OTEL_EXPORTER_OTLP_ENDPOINT")
        );
        sp.spec.observability.otlp_endpoint = Some("http://otel:4317".into());
        let data = build_configmap(&sp).data.unwrap();
        assert_eq!(data["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://otel:4317");
    }

    #[test]
    fn configmap_never_holds_secret_backed_or_per_service_settings() {
        let mut sp = sample();
        sp.spec.stores.opensearch = Some(OpenSearchSpec {
            url_secret_ref: None,
            url: Some("http://opensearch:9200".into()),
        });
        let data = build_configmap(&sp).data.unwrap();
        for key in [
            "DATABASE_URL",
            "MONGODB_URI",
            "REDIS_URL",
            "OPENSEARCH_URL",
            "PUBLIC_URL",
            "SPOOL_DIR",
            "KAFKA_PARTITIONS",
            "OTEL_SERVICE_NAME",
        ] {
            assert!(!data.contains_key(key), "{key} must not be shared");
        }
    }

    #[test]
    fn configmap_is_named_labelled_and_owned() {
        let cm = build_configmap(&sample());
        assert_eq!(cm.metadata.name.as_deref(), Some("polystream-config"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("media"));
        let labels = cm.metadata.labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/instance"], "polystream");
        assert_eq!(
            labels["app.kubernetes.io/managed-by"],
            "polystream-operator"
        );
        let owners = cm.metadata.owner_references.unwrap();
        assert_eq!(owners[0].kind, "StreamingPlatform");
        assert_eq!(owners[0].uid, "0a1b2c");
        assert_eq!(owners[0].controller, Some(true));
    }
}
