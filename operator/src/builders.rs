//! Pure builders: spec → Kubernetes objects, no I/O (unit-tested directly).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::crd::StreamingPlatform;

/// Every service listens on this port in its pod (pods do not share a network
/// namespace, so one port for all keeps the ConfigMap shared).
pub const HTTP_PORT: u16 = 8080;

/// `app.kubernetes.io/*` labels common to every child of `sp`.
pub fn labels(sp: &StreamingPlatform, component: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "polystream".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), sp.name_any()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "polystream-operator".to_owned(),
        ),
    ]);
    if let Some(component) = component {
        labels.insert(
            "app.kubernetes.io/component".to_owned(),
            component.to_owned(),
        );
    }
    labels
}

/// The gateway Service's in-cluster URL.
pub fn gateway_url(sp: &StreamingPlatform) -> String {
    let namespace = sp.namespace().unwrap_or_else(|| "default".to_owned());
    format!(
        "http://{}-gateway.{namespace}.svc:{HTTP_PORT}",
        sp.name_any()
    )
}

/// The services' non-secret settings, named as in docs/configuration.md.
/// Connection URIs with credentials stay in Secrets (`secretKeyRef`s in the
/// Deployments), so they are deliberately absent here.
pub fn build_configmap(sp: &StreamingPlatform) -> ConfigMap {
    let kafka = &sp.spec.stores.kafka;
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
        ("KAFKA_PARTITIONS".to_owned(), kafka.partitions.to_string()),
        (
            "KAFKA_REPLICATION_FACTOR".to_owned(),
            kafka.replication_factor.to_string(),
        ),
        ("HTTP_ADDR".to_owned(), format!("0.0.0.0:{HTTP_PORT}")),
        ("PUBLIC_URL".to_owned(), gateway_url(sp)),
    ]);
    // An inline OpenSearch URL carries no credentials; a Secret one is a secretKeyRef.
    if let Some(url) = sp
        .spec
        .stores
        .opensearch
        .as_ref()
        .and_then(|o| o.url.clone())
    {
        data.insert("OPENSEARCH_URL".to_owned(), url);
    }
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(format!("{}-config", sp.name_any())),
            namespace: sp.namespace(),
            labels: Some(labels(sp, None)),
            // Without a uid (not yet stored) there is nothing to own it by.
            owner_references: sp.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::crd::OpenSearchSpec;

    fn sample() -> StreamingPlatform {
        let mut sp: StreamingPlatform =
            serde_saphyr::from_str(include_str!("../../k8s/samples/streamingplatform.yaml"))
                .unwrap();
        sp.metadata.namespace = Some("media".into());
        sp.metadata.uid = Some("0a1b2c".into());
        sp
    }

    #[test]
    fn configmap_carries_the_documented_variables() {
        let mut sp = sample();
        sp.spec.stores.kafka.partitions = 12;
        sp.spec.stores.kafka.replication_factor = 3;
        sp.spec.stores.kafka.topics.user_events = "ue".into();
        let cm = build_configmap(&sp);
        let data = cm.data.unwrap();
        assert_eq!(data["KAFKA_BOOTSTRAP_SERVERS"], "127.0.0.1:9092");
        assert_eq!(data["KAFKA_TOPIC_USER_EVENTS"], "ue");
        assert_eq!(data["KAFKA_TOPIC_RESPONSE_EVENTS"], "response_events");
        assert_eq!(data["KAFKA_TOPIC_DEAD_LETTER"], "dead_letter_events");
        assert_eq!(data["KAFKA_PARTITIONS"], "12");
        assert_eq!(data["KAFKA_REPLICATION_FACTOR"], "3");
        assert_eq!(data["HTTP_ADDR"], "0.0.0.0:8080");
        assert_eq!(
            data["PUBLIC_URL"],
            "http://polystream-gateway.media.svc:8080"
        );
    }

    #[test]
    fn configmap_never_holds_secret_backed_settings() {
        let cm = build_configmap(&sample());
        let data = cm.data.unwrap();
        for key in ["DATABASE_URL", "MONGODB_URI", "REDIS_URL", "OPENSEARCH_URL"] {
            assert!(!data.contains_key(key), "{key} must come from a Secret");
        }
    }

    #[test]
    fn inline_opensearch_url_goes_into_the_configmap() {
        let mut sp = sample();
        sp.spec.stores.opensearch = Some(OpenSearchSpec {
            url_secret_ref: None,
            url: Some("http://opensearch:9200".into()),
        });
        let data = build_configmap(&sp).data.unwrap();
        assert_eq!(data["OPENSEARCH_URL"], "http://opensearch:9200");
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
