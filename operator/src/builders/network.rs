//! Services and the NetworkPolicy.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{
    Component, HTTP_PORT, child_meta, component_name, instance_selector, labels,
    metrics_service_name, selector_labels,
};
use crate::crd::StreamingPlatform;

/// The label value marking the metrics Service (what the ServiceMonitor selects).
pub const METRICS_COMPONENT: &str = "metrics";

/// `<sp>-gateway` (S1's API) or `<sp>-monitor` (S3's audit API): ClusterIP,
/// port `http` 8080 to the container's HTTP port.
pub fn build_service(sp: &StreamingPlatform, c: Component) -> Service {
    Service {
        metadata: child_meta(sp, component_name(sp, c), labels(sp, Some(c.name()))),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(sp, c)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: i32::from(HTTP_PORT),
                target_port: Some(IntOrString::String(c.http_port_name().to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// `<sp>-metrics`: headless, every pod of the instance on the `metrics` port.
/// One Service for all three components keeps the ServiceMonitor to one
/// endpoint; Prometheus scrapes each pod (headless: no load balancing), and
/// the pods' `app.kubernetes.io/component` label tells the series apart.
pub fn build_metrics_service(sp: &StreamingPlatform) -> Service {
    Service {
        metadata: child_meta(
            sp,
            metrics_service_name(sp),
            labels(sp, Some(METRICS_COMPONENT)),
        ),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            cluster_ip: Some("None".to_owned()),
            selector: Some(instance_selector(sp)),
            ports: Some(vec![ServicePort {
                name: Some("metrics".to_owned()),
                port: sp.spec.observability.metrics_port,
                target_port: Some(IntOrString::String("metrics".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// `<sp>`: ingress to every pod of the instance.
///
/// - the gateway's `http` port: from anywhere (it is the public API);
/// - the monitor's `audit` port: from pods in the platform's namespace;
/// - `metrics`: from anywhere (Prometheus usually runs in its own namespace);
/// - everything else (the processor's `health` port) is denied; the kubelet's
///   probes come from the node, which the usual implementations always allow.
///
/// Named ports make one policy enough although all pods listen on 8080: a
/// rule's named port only matches containers whose port has that name.
/// Egress is not restricted (no `Egress` policy type): the stores are outside
/// the cluster or in namespaces the operator cannot know.
pub fn build_network_policy(sp: &StreamingPlatform) -> NetworkPolicy {
    let port = |name: &str| NetworkPolicyPort {
        port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..NetworkPolicyPort::default()
    };
    NetworkPolicy {
        metadata: child_meta(sp, sp.name_any(), labels(sp, None)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(instance_selector(sp)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: None,
                    ports: Some(vec![port(Component::Gateway.http_port_name())]),
                },
                NetworkPolicyIngressRule {
                    // An empty pod selector: every pod of this namespace.
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(LabelSelector::default()),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: Some(vec![port(Component::Monitor.http_port_name())]),
                },
                NetworkPolicyIngressRule {
                    from: None,
                    ports: Some(vec![port("metrics")]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::builders::tests::sample;

    #[test]
    fn api_services_target_the_components_http_port() {
        let sp = sample();
        for c in [Component::Gateway, Component::Monitor] {
            let spec = build_service(&sp, c).spec.unwrap();
            assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
            assert_eq!(spec.selector.unwrap(), selector_labels(&sp, c));
            let port = &spec.ports.unwrap()[0];
            assert_eq!(port.name.as_deref(), Some("http"));
            assert_eq!(port.port, 8080);
            assert_eq!(
                port.target_port,
                Some(IntOrString::String(c.http_port_name().into()))
            );
        }
    }

    #[test]
    fn metrics_service_is_headless_over_every_pod() {
        let mut sp = sample();
        sp.spec.observability.metrics_port = 9464;
        let svc = build_metrics_service(&sp);
        assert_eq!(
            svc.metadata.labels.unwrap()["app.kubernetes.io/component"],
            "metrics"
        );
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        let selector = spec.selector.unwrap();
        assert!(!selector.contains_key("app.kubernetes.io/component"));
        assert_eq!(selector["app.kubernetes.io/instance"], "polystream");
        let port = &spec.ports.unwrap()[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("metrics"), 9464));
    }

    #[test]
    fn network_policy_opens_only_the_intended_ports() {
        let np = build_network_policy(&sample()).spec.unwrap();
        assert_eq!(
            np.pod_selector.unwrap().match_labels.unwrap(),
            instance_selector(&sample())
        );
        assert_eq!(np.policy_types.unwrap(), ["Ingress"]);
        let rules: Vec<(Option<usize>, Vec<String>)> = np
            .ingress
            .unwrap()
            .into_iter()
            .map(|r| {
                let ports = r
                    .ports
                    .unwrap()
                    .into_iter()
                    .map(|p| match p.port.unwrap() {
                        IntOrString::String(s) => s,
                        IntOrString::Int(i) => i.to_string(),
                    })
                    .collect();
                (r.from.map(|f| f.len()), ports)
            })
            .collect();
        assert_eq!(
            rules,
            [
                (None, vec!["http".to_owned()]),
                (Some(1), vec!["audit".to_owned()]),
                (None, vec!["metrics".to_owned()]),
            ]
        );
        // The processor's port has its own name, so no rule opens it.
        assert_eq!(Component::Processor.http_port_name(), "health");
    }
}
