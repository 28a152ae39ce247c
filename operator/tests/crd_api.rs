//! The committed CRD on the real API server: accepted, established, and
//! rejecting bad specs with the schema's own messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, ResourceExt};
use polystream_operator::StreamingPlatform;
use polystream_operator::crd::{
    AUTOSCALING_BOUNDS_MESSAGE, AutoscalingSpec, MAX_NAME_LENGTH, METRICS_PORT_MESSAGE,
    NAME_LENGTH_MESSAGE,
};
use support::{TestNamespace, kubectl, namespace_with_crd, sample};

pub mod support;

const SECRETS: &str = include_str!("../../k8s/samples/secrets.yaml");

/// A namespace with the CRD installed, and the platforms API in it.
async fn platforms() -> (TestNamespace, Api<StreamingPlatform>) {
    let (client, ns) = namespace_with_crd("op-crd").await;
    let api = Api::namespaced(client, &ns.name);
    (ns, api)
}

/// Creates `sp` and returns the API server's refusal, failing if it accepted it.
async fn rejection(api: &Api<StreamingPlatform>, sp: &StreamingPlatform) -> String {
    match api.create(&PostParams::default(), sp).await {
        Ok(_) => panic!("the API server accepted an invalid StreamingPlatform: {sp:?}"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "expected 422 Invalid, got {status:?}");
            status.message
        }
        Err(e) => panic!("unexpected error creating a StreamingPlatform: {e}"),
    }
}

#[tokio::test]
async fn crd_is_established_and_the_sample_is_accepted() {
    let (client, ns) = namespace_with_crd("op-crd").await;

    let secret: Secret = serde_saphyr::from_str(SECRETS).unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let api: Api<StreamingPlatform> = Api::namespaced(client, &ns.name);
    let created = api.create(&PostParams::default(), &sample()).await.unwrap();
    assert_eq!(
        created.spec,
        sample().spec,
        "the server changed the sample's spec"
    );
}

/// The server, not only the operator's serde defaults, fills in the tag: what
/// `kubectl apply` of a spec without one stores.
#[tokio::test]
async fn a_platform_without_a_tag_gets_the_operators_version() {
    let (client, ns) = namespace_with_crd("op-crd").await;
    let ar = ApiResource::erase::<StreamingPlatform>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns.name, &ar);
    let mut without_tag = serde_json::to_value(sample()).unwrap();
    without_tag["spec"]["image"]
        .as_object_mut()
        .unwrap()
        .remove("tag");
    let mut without_image = without_tag.clone();
    without_image["metadata"]["name"] = "no-image".into();
    without_image["spec"]
        .as_object_mut()
        .unwrap()
        .remove("image");
    for platform in [without_tag, without_image] {
        let object: DynamicObject = serde_json::from_value(platform).unwrap();
        let created = api.create(&PostParams::default(), &object).await.unwrap();
        assert_eq!(
            created.data["spec"]["image"]["tag"],
            env!("CARGO_PKG_VERSION"),
            "{}",
            created.name_any()
        );
    }
}

#[tokio::test]
async fn autoscaling_min_above_max_is_rejected_with_the_cel_message() {
    let (_ns, api) = platforms().await;

    let mut sp = sample();
    sp.spec.processor.autoscaling = Some(AutoscalingSpec {
        min_replicas: 5,
        max_replicas: 2,
        target_cpu_utilization_percentage: 80,
    });
    let message = rejection(&api, &sp).await;
    assert!(
        message.contains(AUTOSCALING_BOUNDS_MESSAGE),
        "the refusal does not carry the CEL message: {message}"
    );
    assert!(
        message.contains("spec.processor.autoscaling"),
        "the refusal does not name the field: {message}"
    );
}

#[tokio::test]
async fn negative_replicas_are_rejected_naming_the_field() {
    let (_ns, api) = platforms().await;

    let mut sp = sample();
    sp.spec.monitor.replicas = -1;
    let message = rejection(&api, &sp).await;
    assert!(
        message.contains("spec.monitor.replicas"),
        "the refusal does not name the field: {message}"
    );

    let mut sp = sample();
    sp.spec.stores.kafka.partitions = 0;
    let message = rejection(&api, &sp).await;
    assert!(
        message.contains("spec.stores.kafka.partitions"),
        "the refusal does not name the field: {message}"
    );

    let mut sp = sample();
    sp.spec.observability.sampling_ratio = 1.5;
    let message = rejection(&api, &sp).await;
    assert!(
        message.contains("spec.observability.samplingRatio"),
        "the refusal does not name the field: {message}"
    );
}

#[tokio::test]
async fn names_too_long_for_the_children_and_a_clashing_metrics_port_are_rejected() {
    let (_ns, api) = platforms().await;

    let mut sp = sample();
    sp.metadata.name = Some("p".repeat(MAX_NAME_LENGTH + 1));
    let message = rejection(&api, &sp).await;
    assert!(
        message.contains(NAME_LENGTH_MESSAGE),
        "the refusal does not carry the CEL message: {message}"
    );
    // The longest allowed name still gives valid child names.
    let mut sp = sample();
    sp.metadata.name = Some("p".repeat(MAX_NAME_LENGTH));
    api.create(&PostParams::default(), &sp).await.unwrap();

    let mut sp = sample();
    sp.spec.observability.metrics_port = 8080;
    let message = rejection(&api, &sp).await;
    assert!(
        message.contains(METRICS_PORT_MESSAGE),
        "the refusal does not carry the CEL message: {message}"
    );
}

#[tokio::test]
async fn kubectl_get_sp_shows_the_printer_columns() {
    let (ns, api) = platforms().await;
    api.create(&PostParams::default(), &sample()).await.unwrap();

    let stdout = kubectl(&["get", "sp", "-n", &ns.name]).await;
    let header = stdout.lines().next().unwrap_or_default();
    let columns: Vec<&str> = header
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(columns, ["NAME", "READY", "GATEWAY URL", "AGE"], "{stdout}");
    assert!(
        stdout
            .lines()
            .nth(1)
            .unwrap_or_default()
            .starts_with("polystream "),
        "{stdout}"
    );
}
