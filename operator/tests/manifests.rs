//! The operator's own manifests (k8s/operator/) on the real API server:
//! accepted as written (server-side apply), its pods admitted under the
//! `restricted` Pod Security Standard, the ServiceAccount granted exactly what
//! the operator needs — and the real operator binary, running as that
//! ServiceAccount (impersonated), brings a platform to Ready with no
//! permission error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, DynamicObject, GroupVersionKind, ObjectMeta, PostParams};
use kube::discovery::{self, Scope};
use kube::{Api, Client};
use polystream_operator::StreamingPlatform;
use polystream_smoke_tests::{kube_client, unique};
use serde_json::Value;
use support::{
    OperatorProcess, STORES_SECRET, TestNamespace, block_on_elsewhere, condition, delete_topics,
    eventually, force_apply, install_crd, live_uris, local_sample, put_secret, store_secret,
    topic_names, use_unique_topics,
};

pub mod support;

const RBAC: &str = include_str!("../../k8s/operator/rbac.yaml");
const DEPLOYMENT: &str = include_str!("../../k8s/operator/deployment.yaml");
const NAMESPACE: &str = "polystream-system";
const ACCOUNT: &str = "polystream-operator";

/// The manifests' documents, moved to `ns` and with cluster-scoped names
/// suffixed by `suffix`, so parallel and repeated runs never share objects.
fn isolated(ns: &str, suffix: &str) -> Vec<Value> {
    let mut docs: Vec<Value> = serde_saphyr::from_str_multiple(RBAC).unwrap();
    let more: Vec<Value> = serde_saphyr::from_str_multiple(DEPLOYMENT).unwrap();
    docs.extend(more);
    for doc in &mut docs {
        let kind = doc["kind"].as_str().unwrap().to_owned();
        let meta = &mut doc["metadata"];
        match kind.as_str() {
            "Namespace" => {
                assert_eq!(meta["name"], NAMESPACE);
                meta["name"] = ns.into();
            }
            "ClusterRole" | "ClusterRoleBinding" => {
                let name = format!("{}-{suffix}", meta["name"].as_str().unwrap());
                meta["name"] = name.into();
            }
            _ => {
                assert_eq!(meta["namespace"], NAMESPACE, "{kind} is not in {NAMESPACE}");
                meta["namespace"] = ns.into();
            }
        }
        if kind == "ClusterRoleBinding" {
            let name = format!("{}-{suffix}", doc["roleRef"]["name"].as_str().unwrap());
            doc["roleRef"]["name"] = name.into();
        }
        if let Some(subjects) = doc.get_mut("subjects").and_then(Value::as_array_mut) {
            for s in subjects {
                s["namespace"] = ns.into();
            }
        }
    }
    docs
}

/// Server-side applies one document of any kind.
async fn apply(client: &Client, doc: &Value) {
    let api_version = doc["apiVersion"].as_str().unwrap();
    let kind = doc["kind"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, caps) = discovery::pinned_kind(client, &gvk).await.unwrap();
    let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
    let name = obj.metadata.name.clone().unwrap();
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Cluster => Api::all_with(client.clone(), &resource),
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            obj.metadata.namespace.as_deref().unwrap(),
            &resource,
        ),
    };
    force_apply(&api, &name, &obj, &format!("{kind} {name}")).await;
}

/// Deletes what the test created (cluster-scoped objects first-class: a
/// namespace deletion does not take them).
struct Cleanup {
    namespaces: Vec<String>,
    suffix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let namespaces = self.namespaces.clone();
        let suffix = self.suffix.clone();
        block_on_elsewhere(async move {
            let Ok(client) = Client::try_default().await else {
                return;
            };
            let dp = DeleteParams::background();
            let name = format!("{ACCOUNT}-{suffix}");
            let _ = Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone())
                .delete(&name, &dp)
                .await;
            let _ = Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(client.clone())
                .delete(&name, &dp)
                .await;
            for ns in namespaces {
                let _ = Api::<Namespace>::all(client.clone()).delete(&ns, &dp).await;
            }
        });
    }
}

/// Applies the operator's manifests (all but the kinds in `skip`) into a
/// namespace of their own named after `prefix`; returns it and the guard that
/// deletes it all.
async fn install_manifests(client: &Client, prefix: &str, skip: &[&str]) -> (String, Cleanup) {
    let suffix = unique("t");
    let ns = unique(prefix);
    let cleanup = Cleanup {
        namespaces: vec![ns.clone()],
        suffix: suffix.clone(),
    };
    for doc in isolated(&ns, &suffix) {
        if !skip.iter().any(|kind| doc["kind"] == *kind) {
            apply(client, &doc).await;
        }
    }
    (ns, cleanup)
}

/// Whether the operator's ServiceAccount in `ns` may `verb` `resource`.
async fn allowed(
    client: &Client,
    ns: &str,
    verb: &str,
    group: &str,
    resource: &str,
    in_namespace: &str,
) -> bool {
    let review = SubjectAccessReview {
        metadata: ObjectMeta::default(),
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{ns}:{ACCOUNT}")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(in_namespace.to_owned()),
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.split('/').next().unwrap().to_owned()),
                subresource: resource.split_once('/').map(|(_, s)| s.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        status: None,
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    answer.status.unwrap().allowed
}

#[tokio::test]
async fn manifests_apply_admit_restricted_pods_and_grant_exactly_what_the_operator_needs() {
    let client = kube_client().await;
    let (ns, cleanup) = install_manifests(&client, "op-manifests", &[]).await;

    // The namespace enforces the restricted Pod Security Standard, so pods
    // exist (and become ready on the kwok node) only if the pod template is
    // hardened enough.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    eventually(
        "the operator Deployment to get 2 ready pods (a pod refused by Pod Security shows as \
         a ReplicaSet FailedCreate event)",
        Duration::from_secs(60),
        || async {
            let d = deployments.get(ACCOUNT).await.unwrap();
            let status = d.status.unwrap_or_default();
            if status.ready_replicas == Some(2) {
                Ok(())
            } else {
                Err(format!("{status:#?}"))
            }
        },
    )
    .await;

    let other = "some-team";
    for (verb, group, resource, namespace) in [
        ("watch", "polystream.dev", "streamingplatforms", other),
        ("list", "polystream.dev", "streamingplatforms", other),
        (
            "patch",
            "polystream.dev",
            "streamingplatforms/status",
            other,
        ),
        (
            "update",
            "polystream.dev",
            "streamingplatforms/finalizers",
            other,
        ),
        ("create", "", "configmaps", other),
        ("patch", "", "configmaps", other),
        ("delete", "", "services", other),
        ("patch", "", "serviceaccounts", other),
        ("patch", "apps", "deployments", other),
        ("watch", "apps", "deployments", other),
        ("patch", "policy", "poddisruptionbudgets", other),
        ("delete", "autoscaling", "horizontalpodautoscalers", other),
        ("patch", "networking.k8s.io", "networkpolicies", other),
        ("patch", "monitoring.coreos.com", "servicemonitors", other),
        ("get", "", "secrets", other),
        ("watch", "", "secrets", other),
        ("create", "events.k8s.io", "events", other),
        ("patch", "events.k8s.io", "events", other),
        ("get", "coordination.k8s.io", "leases", &ns),
        ("create", "coordination.k8s.io", "leases", &ns),
        ("update", "coordination.k8s.io", "leases", &ns),
    ] {
        assert!(
            allowed(&client, &ns, verb, group, resource, namespace).await,
            "the operator may not {verb} {group}/{resource} in {namespace}"
        );
    }
    for (verb, group, resource, namespace) in [
        // Credentials are read, never written.
        ("create", "", "secrets", other),
        ("patch", "", "secrets", other),
        ("delete", "", "secrets", other),
        // The user's resource is the user's.
        ("delete", "polystream.dev", "streamingplatforms", other),
        ("patch", "polystream.dev", "streamingplatforms", other),
        // Leases only in its own namespace.
        ("update", "coordination.k8s.io", "leases", other),
        ("delete", "coordination.k8s.io", "leases", &ns),
        // Nothing it does not manage.
        ("create", "", "pods", other),
        ("exec", "", "pods", other),
        ("create", "", "namespaces", ""),
        ("patch", "rbac.authorization.k8s.io", "clusterroles", ""),
        ("update", "apps", "deployments/scale", other),
    ] {
        assert!(
            !allowed(&client, &ns, verb, group, resource, namespace).await,
            "the operator may {verb} {group}/{resource} in {namespace}, which it does not need"
        );
    }
    drop(cleanup);
}

/// A kubeconfig like `KUBECONFIG`'s that acts as the operator's ServiceAccount.
fn impersonating_kubeconfig(ns: &str) -> std::path::PathBuf {
    let path = std::env::var("KUBECONFIG").expect("KUBECONFIG is not set; `./dev env` prints it");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut config: Value = serde_saphyr::from_str(&text).unwrap();
    for user in config["users"].as_array_mut().unwrap() {
        user["user"]["as"] = format!("system:serviceaccount:{ns}:{ACCOUNT}").into();
    }
    let out = std::env::temp_dir().join(format!("{}.kubeconfig", unique("op-sa")));
    std::fs::write(&out, serde_json::to_string(&config).unwrap()).unwrap();
    out
}

#[tokio::test]
async fn the_operator_running_as_its_service_account_brings_a_platform_to_ready() {
    let client = kube_client().await;
    install_crd(&client).await;
    // The operator runs here as a process, not as the Deployment's pods.
    let (ns, _cleanup) = install_manifests(&client, "op-sa", &["Deployment"]).await;
    let team_ns = TestNamespace::create(&client, "op-team").await;
    let team = team_ns.name.clone();
    let uris = live_uris();
    put_secret(&client, &team, STORES_SECRET, &uris).await;
    let mut sp = local_sample();
    use_unique_topics(&mut sp, "op-sa");
    let name = sp.metadata.name.clone().unwrap();
    let platforms: Api<StreamingPlatform> = Api::namespaced(client.clone(), &team);
    platforms.create(&PostParams::default(), &sp).await.unwrap();

    let kubeconfig = impersonating_kubeconfig(&ns);
    // Control: that kubeconfig really is the ServiceAccount (it may not write Secrets).
    let as_operator = Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    match Api::<Secret>::namespaced(as_operator, &team)
        .create(&PostParams::default(), &store_secret(STORES_SECRET, &uris))
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("the impersonating kubeconfig is not the ServiceAccount: {other:?}"),
    }
    let kubeconfig_path = kubeconfig.to_str().unwrap();
    let mut operator = OperatorProcess::start(
        "operator-sa",
        &[
            ("KUBECONFIG", kubeconfig_path),
            ("POD_NAMESPACE", &ns),
            // Another namespace than its own (the ClusterRole at work), and only
            // that one: other tests' platforms on this API server are not ours.
            ("WATCH_NAMESPACE", &team),
        ],
    );

    eventually(
        "the platform to become Ready with the operator running as its ServiceAccount",
        Duration::from_secs(90),
        || async {
            let current = platforms.get(&name).await.unwrap();
            if condition(&current, "Ready").map(|c| c.0) == Some("True") {
                Ok(())
            } else {
                Err(format!(
                    "status: {:#?}\noperator log:\n{}",
                    current.status,
                    operator.log()
                ))
            }
        },
    )
    .await;
    let lease = Api::<Lease>::namespaced(client.clone(), &ns)
        .get(polystream_operator::leader::DEFAULT_LEASE_NAME)
        .await
        .unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some("operator-sa")
    );
    // Let a few periodic reconciles and Events happen, then look for refusals.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = operator.child.start_kill();
    let _ = operator.child.wait().await;
    let text = operator.log();
    assert!(
        !text.to_lowercase().contains("forbidden"),
        "the operator was refused something:\n{text}"
    );
    let _ = std::fs::remove_file(&kubeconfig);

    delete_topics(&sp.spec.stores.kafka.bootstrap_servers, &topic_names(&sp)).await;
}
