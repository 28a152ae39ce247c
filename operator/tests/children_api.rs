//! Every child the pure builders render is valid for the real API server:
//! server-side applied as a dry run (validated and defaulted, nothing stored)
//! in a throwaway namespace, for a spec exercising every optional shape.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use polystream_operator::builders::{self, BuildInputs};
use polystream_operator::crd::{ImageOverride, LocalSecretRef, PullPolicy, SecretRefHolder};
use polystream_smoke_tests::kube_client;
use serde::Serialize;
use serde::de::DeserializeOwned;
use support::{TestNamespace, sample};

pub mod support;

/// Dry-run server-side apply of one object; panics with the server's refusal.
async fn dry_apply<K>(client: &Client, ns: &str, obj: &K)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    <K as Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let mut params = PatchParams::apply("polystream-builders-test").force();
    params.dry_run = true;
    let name = obj.name_any();
    if let Err(e) = api.patch(&name, &params, &Patch::Apply(obj)).await {
        panic!(
            "the API server refused {} {name}: {e}\n{}",
            K::kind(&Default::default()),
            serde_json::to_string_pretty(obj).unwrap()
        );
    }
}

#[tokio::test]
async fn every_rendered_child_is_accepted_by_the_api_server() {
    let client = kube_client().await;
    let namespace = TestNamespace::create(&client, "op-children").await;
    let ns = namespace.name.clone();
    let mut sp = sample();
    sp.metadata.namespace = Some(ns.clone());
    sp.metadata.uid = Some("5b0f6a7e-0000-4000-8000-000000000001".into());
    sp.spec.stores.opensearch = None;
    sp.spec.stores.kafka.tls = Some(SecretRefHolder {
        secret_ref: LocalSecretRef {
            name: "kafka-ca".into(),
        },
    });
    sp.spec.stores.kafka.sasl = Some(SecretRefHolder {
        secret_ref: LocalSecretRef {
            name: "kafka-user".into(),
        },
    });
    sp.spec.monitor.image = Some(ImageOverride {
        tag: Some("sha256:0000000000000000000000000000000000000000000000000000000000000000".into()),
        pull_policy: Some(PullPolicy::Always),
        ..ImageOverride::default()
    });
    sp.spec.monitor.scheduling.node_selector = BTreeMap::from([("disk".into(), "ssd".into())]);
    sp.spec.monitor.scheduling.tolerations = vec![Toleration {
        key: Some("dedicated".into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Toleration::default()
    }];
    sp.spec.observability.otlp_endpoint = Some("http://otel-collector:4317".into());
    let children = builders::build_children(
        &sp,
        &BuildInputs {
            secret_versions: BTreeMap::from([("polystream-stores".into(), "1".into())]),
            service_monitor_crd: false,
        },
    );

    dry_apply(&client, &ns, &children.config_map).await;
    dry_apply(&client, &ns, &children.service_account).await;
    dry_apply(&client, &ns, &children.network_policy).await;
    for d in &children.deployments {
        dry_apply(&client, &ns, d).await;
    }
    for s in &children.services {
        dry_apply(&client, &ns, s).await;
    }
    for p in &children.pod_disruption_budgets {
        dry_apply(&client, &ns, p).await;
    }
    assert!(!children.horizontal_pod_autoscalers.is_empty());
    for h in &children.horizontal_pod_autoscalers {
        dry_apply(&client, &ns, h).await;
    }
}
