//! PodDisruptionBudgets and HorizontalPodAutoscalers.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Component, child_meta, component_name, labels, selector_labels};
use crate::crd::StreamingPlatform;

/// `<sp>-<component>`: at most one pod down at a time through evictions.
/// `maxUnavailable: 1` (not `minAvailable`) never blocks a node drain, even
/// with a single replica, while still serialising a drain across replicas.
pub fn build_pdb(sp: &StreamingPlatform, c: Component) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: child_meta(sp, component_name(sp, c), labels(sp, Some(c.name()))),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(sp, c)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// `<sp>-<component>` (autoscaling/v2, average CPU utilisation of the
/// requests), only when the component has `autoscaling`.
pub fn build_hpa(sp: &StreamingPlatform, c: Component) -> Option<HorizontalPodAutoscaler> {
    let autoscaling = c.spec(&sp.spec).autoscaling.as_ref()?;
    Some(HorizontalPodAutoscaler {
        metadata: child_meta(sp, component_name(sp, c), labels(sp, Some(c.name()))),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: component_name(sp, c),
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_owned(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_owned(),
                    target: MetricTarget {
                        type_: "Utilization".to_owned(),
                        average_utilization: Some(autoscaling.target_cpu_utilization_percentage),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        ..HorizontalPodAutoscaler::default()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::builders::tests::sample;

    #[test]
    fn pdb_allows_one_pod_down_and_never_blocks_a_drain() {
        let sp = sample();
        for c in Component::ALL {
            let spec = build_pdb(&sp, c).spec.unwrap();
            assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
            assert!(spec.min_available.is_none());
            assert_eq!(
                spec.selector.unwrap().match_labels.unwrap(),
                selector_labels(&sp, c)
            );
        }
    }

    #[test]
    fn hpa_only_with_autoscaling_targeting_cpu() {
        let sp = sample();
        assert!(build_hpa(&sp, Component::Processor).is_none());
        let spec = build_hpa(&sp, Component::Gateway).unwrap().spec.unwrap();
        assert_eq!(spec.scale_target_ref.kind, "Deployment");
        assert_eq!(spec.scale_target_ref.name, "polystream-gateway");
        assert_eq!(spec.min_replicas, Some(2));
        assert_eq!(spec.max_replicas, 5);
        let metric = &spec.metrics.unwrap()[0];
        let resource = metric.resource.as_ref().unwrap();
        assert_eq!(resource.name, "cpu");
        assert_eq!(resource.target.type_, "Utilization");
        assert_eq!(resource.target.average_utilization, Some(75));
    }
}
