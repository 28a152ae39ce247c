//! The Prometheus Operator ServiceMonitor (a CRD the cluster may not have,
//! hence a DynamicObject rather than a typed struct).

use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject};
use serde_json::json;

use super::{child_meta, labels, network::METRICS_COMPONENT};
use crate::crd::StreamingPlatform;

/// `monitoring.coreos.com/v1` `ServiceMonitor`.
pub fn service_monitor_api_resource() -> ApiResource {
    ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: "ServiceMonitor".into(),
        plural: "servicemonitors".into(),
    }
}

/// `<sp>`: scrapes the `metrics` port of the `<sp>-metrics` Service, i.e.
/// every pod of the instance, labelling series with the pod's component.
pub fn build_service_monitor(sp: &StreamingPlatform) -> DynamicObject {
    let ar = service_monitor_api_resource();
    let mut selector = labels(sp, Some(METRICS_COMPONENT));
    // Only the identifying labels; managed-by/part-of add nothing to a selector.
    selector.retain(|k, _| {
        matches!(
            k.as_str(),
            "app.kubernetes.io/name" | "app.kubernetes.io/instance" | "app.kubernetes.io/component"
        )
    });
    let mut object = DynamicObject::new(&sp.name_any(), &ar).data(json!({
        "spec": {
            "selector": { "matchLabels": selector },
            "namespaceSelector": { "matchNames": [sp.namespace().unwrap_or_else(|| "default".to_owned())] },
            "endpoints": [{ "port": "metrics", "path": "/metrics", "scheme": "http" }],
            "podTargetLabels": ["app.kubernetes.io/component", "app.kubernetes.io/instance"],
        }
    }));
    object.metadata = child_meta(sp, sp.name_any(), labels(sp, None));
    object
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::builders::build_metrics_service;
    use crate::builders::tests::sample;

    #[test]
    fn service_monitor_selects_the_metrics_service_port() {
        let sp = sample();
        let sm = build_service_monitor(&sp);
        let types = sm.types.as_ref().unwrap();
        assert_eq!(types.api_version, "monitoring.coreos.com/v1");
        assert_eq!(types.kind, "ServiceMonitor");
        assert_eq!(sm.metadata.namespace.as_deref(), Some("media"));
        let spec = &sm.data["spec"];
        let metrics_labels = build_metrics_service(&sp).metadata.labels.unwrap();
        for (k, v) in spec["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(
                Some(v.as_str().unwrap()),
                metrics_labels.get(k).map(String::as_str),
                "{k}"
            );
        }
        assert_eq!(spec["endpoints"][0]["port"], "metrics");
        assert_eq!(spec["namespaceSelector"]["matchNames"][0], "media");
        // Serialises as a complete object for server-side apply.
        let json = serde_json::to_value(&sm).unwrap();
        assert_eq!(json["kind"], "ServiceMonitor");
        assert_eq!(json["spec"]["endpoints"][0]["path"], "/metrics");
    }
}
