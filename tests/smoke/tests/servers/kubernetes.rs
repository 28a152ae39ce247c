use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use polystream_smoke_tests::{kube_client, unique};

#[tokio::test]
async fn kubernetes_configmap_and_ready_deployment() {
    let client = kube_client().await;
    let ns = unique("smoke");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(ns.clone()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    cms.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: ObjectMeta {
                name: Some("settings".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "KAFKA_TOPIC".into(),
                "user_events".into(),
            )])),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let cm = cms.get("settings").await.unwrap();
    assert_eq!(cm.data.unwrap()["KAFKA_TOPIC"], "user_events");

    let labels = BTreeMap::from([("app".to_string(), "smoke".to_string())]);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments
        .create(
            &PostParams::default(),
            &Deployment {
                metadata: ObjectMeta {
                    name: Some("smoke".into()),
                    ..Default::default()
                },
                spec: Some(DeploymentSpec {
                    replicas: Some(2),
                    selector: LabelSelector {
                        match_labels: Some(labels.clone()),
                        ..Default::default()
                    },
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(labels),
                            ..Default::default()
                        }),
                        spec: Some(PodSpec {
                            containers: vec![Container {
                                name: "app".into(),
                                image: Some("polystream/smoke:1".into()),
                                ..Default::default()
                            }],
                            ..Default::default()
                        }),
                    },
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // kwok plays the kubelet: the controller-manager makes the pods, the
    // scheduler binds them to the simulated node, kwok marks them Ready.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let d = deployments.get("smoke").await.unwrap();
        let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
        if ready == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Deployment has {ready}/2 ready replicas after 90s: are kube-controller-manager, kube-scheduler and kwok running? (./dev status)"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    namespaces
        .delete(&ns, &DeleteParams::background())
        .await
        .unwrap();
}
