//! The committed CRD on the real API server: accepted, established, and
//! rejecting bad specs with the schema's own messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use polystream_operator::StreamingPlatform;
use polystream_operator::crd::{
    AUTOSCALING_BOUNDS_MESSAGE, AutoscalingSpec, MAX_NAME_LENGTH, METRICS_PORT_MESSAGE,
    NAME_LENGTH_MESSAGE,
};
use polystream_smoke_tests::{kube_client, unique};

const CRD: &str = include_str!("../../crds/streamingplatform.yaml");
const SAMPLE: &str = include_str!("../../k8s/samples/streamingplatform.yaml");
const SECRETS: &str = include_str!("../../k8s/samples/secrets.yaml");

/// Server-side applies the committed CRD and waits until it is served.
async fn install_crd(client: &Client) {
    let crd: CustomResourceDefinition = serde_saphyr::from_str(CRD).unwrap();
    let name = crd.metadata.name.clone().unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        &name,
        &PatchParams::apply("polystream-operator-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap_or_else(|e| panic!("the API server refused crds/streamingplatform.yaml: {e}"));
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .expect("the CRD was not Established within 30s")
    .unwrap();
}

/// A namespace deleted when dropped, even if the test panics.
struct TestNamespace {
    name: String,
}

impl TestNamespace {
    async fn create(client: &Client) -> Self {
        let name = unique("op-crd");
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        Self { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await, and the test's current-thread runtime (which drives
        // `self.client`'s connections) is blocked here: a fresh client on its own
        // runtime in another thread does the deletion.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(client) = Client::try_default().await {
                    let _ = Api::<Namespace>::all(client)
                        .delete(&name, &DeleteParams::background())
                        .await;
                }
            });
        })
        .join();
    }
}

fn sample() -> StreamingPlatform {
    serde_saphyr::from_str(SAMPLE).unwrap()
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
    let client = kube_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client).await;

    let secret: Secret = serde_saphyr::from_str(SECRETS).unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let api: Api<StreamingPlatform> = Api::namespaced(client.clone(), &ns.name);
    let created = api.create(&PostParams::default(), &sample()).await.unwrap();
    assert_eq!(
        created.spec,
        sample().spec,
        "the server changed the sample's spec"
    );
}

#[tokio::test]
async fn autoscaling_min_above_max_is_rejected_with_the_cel_message() {
    let client = kube_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client).await;
    let api: Api<StreamingPlatform> = Api::namespaced(client.clone(), &ns.name);

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
    let client = kube_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client).await;
    let api: Api<StreamingPlatform> = Api::namespaced(client.clone(), &ns.name);

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
    let client = kube_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client).await;
    let api: Api<StreamingPlatform> = Api::namespaced(client.clone(), &ns.name);

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
    let client = kube_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client).await;
    let api: Api<StreamingPlatform> = Api::namespaced(client.clone(), &ns.name);
    api.create(&PostParams::default(), &sample()).await.unwrap();

    // `./dev env` exports KUBECTL (the version matching the API server).
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let output = tokio::process::Command::new(&kubectl)
        .args(["get", "sp", "-n", &ns.name])
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run kubectl ({kubectl}; set KUBECTL from `./dev env`): {e}")
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kubectl get sp failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
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
