//! Pure builders: spec → Kubernetes objects, no I/O (unit-tested directly).
//!
//! Everything here is deterministic (BTreeMaps, sorted env, fixed child
//! order), so an unchanged spec renders byte-identical objects and the
//! controller can compare desired with live state instead of writing.
//!
//! Layout of the children (docs/operator.md, "Children"):
//! - `<sp>-config` ConfigMap: the settings every service reads (envFrom);
//!   settings only one service reads are in that Deployment's `env`;
//! - `<sp>` ServiceAccount (no API token: the services never call the API);
//! - `<sp>-gateway`, `<sp>-processor`, `<sp>-monitor` Deployments, each with a
//!   PodDisruptionBudget of the same name and, with autoscaling, an HPA;
//! - Services `<sp>-gateway` (S1 API) and `<sp>-monitor` (S3 audit API), both
//!   ClusterIP on port 8080, and `<sp>-metrics`, headless, selecting every
//!   pod of the instance on the metrics port (one scrape target per pod);
//! - `<sp>` NetworkPolicy; `<sp>` ServiceMonitor when asked for and possible.

mod configmap;
mod deployment;
mod monitoring;
mod network;
mod scaling;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::crd::{ComponentSpec, StreamingPlatform, StreamingPlatformSpec};

pub use configmap::build_configmap;
pub use deployment::build_deployment;
pub use monitoring::{build_service_monitor, service_monitor_api_resource};
pub use network::{build_metrics_service, build_network_policy, build_service};
pub use scaling::{build_hpa, build_pdb};

/// Every service listens on this port in its pod (pods do not share a network
/// namespace, so one port for all keeps the ConfigMap shared).
pub const HTTP_PORT: u16 = 8080;
/// The pod template annotation whose change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "polystream.dev/config-hash";
/// Non-root user and group of every container (the distroless `nonroot` id).
pub const RUN_AS_USER: i64 = 65532;
/// Where S3 keeps batches while OpenSearch is unreachable (an emptyDir).
pub const SPOOL_DIR: &str = "/var/lib/polystream/spool";
/// Where the Kafka TLS Secret is mounted, read-only (the services'
/// `KAFKA_TLS_DIR`).
pub const KAFKA_TLS_DIR: &str = "/etc/polystream/kafka/tls";

/// One of the three services; each is a Deployment running its own binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Gateway,
    Processor,
    Monitor,
}

impl Component {
    pub const ALL: [Component; 3] = [Component::Gateway, Component::Processor, Component::Monitor];

    /// The `app.kubernetes.io/component` label and the children's name suffix.
    pub fn name(self) -> &'static str {
        match self {
            Component::Gateway => "gateway",
            Component::Processor => "processor",
            Component::Monitor => "monitor",
        }
    }

    /// The container command (one image holds all three binaries); also the
    /// service's default `OTEL_SERVICE_NAME`.
    pub fn binary(self) -> &'static str {
        match self {
            Component::Gateway => "polystream-s1-gateway",
            Component::Processor => "polystream-s2-processor",
            Component::Monitor => "polystream-s3-monitor",
        }
    }

    pub fn spec(self, spec: &StreamingPlatformSpec) -> &ComponentSpec {
        match self {
            Component::Gateway => &spec.gateway,
            Component::Processor => &spec.processor,
            Component::Monitor => &spec.monitor,
        }
    }

    /// Name of the container's HTTP port. Distinct per component so the one
    /// NetworkPolicy can open the gateway's API to everyone and the monitor's
    /// only to the namespace, although all of them listen on [`HTTP_PORT`].
    pub fn http_port_name(self) -> &'static str {
        match self {
            Component::Gateway => "http",
            Component::Processor => "health",
            Component::Monitor => "audit",
        }
    }

    /// Whether it has a Service of its own (an API other pods call).
    pub fn has_service(self) -> bool {
        matches!(self, Component::Gateway | Component::Monitor)
    }
}

/// What the builders need from the cluster, looked up by the controller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildInputs {
    /// Referenced Secret name → its `resourceVersion` (a rotation rolls the
    /// pods that use it). A Secret missing here is simply not hashed.
    pub secret_versions: BTreeMap<String, String>,
    /// Whether the ServiceMonitor CRD (monitoring.coreos.com) exists.
    pub service_monitor_crd: bool,
}

/// Every object the operator owns for one StreamingPlatform, in a fixed order.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub config_map: ConfigMap,
    pub service_account: ServiceAccount,
    /// Gateway, processor, monitor.
    pub deployments: Vec<Deployment>,
    /// Gateway, monitor, metrics.
    pub services: Vec<Service>,
    /// One per component.
    pub pod_disruption_budgets: Vec<PodDisruptionBudget>,
    /// One per component with `autoscaling`.
    pub horizontal_pod_autoscalers: Vec<HorizontalPodAutoscaler>,
    pub network_policy: NetworkPolicy,
    /// Only when `observability.serviceMonitor` and the CRD exists.
    pub service_monitor: Option<DynamicObject>,
}

/// A Secret the Deployments reference: one key (`secretKeyRef`) or, for Kafka
/// TLS/SASL, the whole Secret (a volume, or several keys; `key` is `None`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretKeyRefLike {
    pub name: String,
    pub key: Option<String>,
    /// Which connection uses it (`postgres`, `mongodb`, `redis`, `opensearch`,
    /// `kafka-tls`, `kafka-sasl`), or `extra-env` for a `secretKeyRef` in a
    /// component's `extraEnv`.
    pub purpose: &'static str,
}

/// Renders every child of `sp`.
pub fn build_children(sp: &StreamingPlatform, inputs: &BuildInputs) -> Children {
    let config_map = build_configmap(sp);
    let deployments = Component::ALL
        .iter()
        .map(|&c| {
            let hash = config_hash(&config_map, &component_secret_versions(sp, c, inputs));
            build_deployment(sp, c, &hash)
        })
        .collect();
    let mut services: Vec<Service> = Component::ALL
        .iter()
        .filter(|c| c.has_service())
        .map(|&c| build_service(sp, c))
        .collect();
    services.push(build_metrics_service(sp));
    Children {
        service_account: build_service_account(sp),
        deployments,
        services,
        pod_disruption_budgets: Component::ALL.iter().map(|&c| build_pdb(sp, c)).collect(),
        horizontal_pod_autoscalers: Component::ALL
            .iter()
            .filter_map(|&c| build_hpa(sp, c))
            .collect(),
        network_policy: build_network_policy(sp),
        service_monitor: (sp.spec.observability.service_monitor && inputs.service_monitor_crd)
            .then(|| build_service_monitor(sp)),
        config_map,
    }
}

/// Every Secret (and key) the Deployments reference, in a fixed order:
/// postgres, mongodb, redis, opensearch, kafka-tls, kafka-sasl, then the
/// `secretKeyRef`s of the components' `extraEnv` (gateway, processor, monitor).
pub fn referenced_secrets(sp: &StreamingPlatform) -> Vec<SecretKeyRefLike> {
    let stores = &sp.spec.stores;
    let key_ref = |r: &crate::crd::SecretKeyRef, purpose| SecretKeyRefLike {
        name: r.name.clone(),
        key: Some(r.key.clone()),
        purpose,
    };
    let whole = |name: &str, purpose| SecretKeyRefLike {
        name: name.to_owned(),
        key: None,
        purpose,
    };
    let mut refs = vec![
        key_ref(&stores.postgres.uri_secret_ref, "postgres"),
        key_ref(&stores.mongodb.uri_secret_ref, "mongodb"),
        key_ref(&stores.redis.uri_secret_ref, "redis"),
    ];
    if let Some(r) = stores
        .opensearch
        .as_ref()
        .and_then(|o| o.url_secret_ref.as_ref())
    {
        refs.push(key_ref(r, "opensearch"));
    }
    if let Some(tls) = &stores.kafka.tls {
        refs.push(whole(&tls.secret_ref.name, "kafka-tls"));
    }
    if let Some(sasl) = &stores.kafka.sasl {
        refs.push(whole(&sasl.secret_ref.name, "kafka-sasl"));
    }
    for c in Component::ALL {
        for r in extra_env_secrets(sp, c) {
            if !refs.contains(&r) {
                refs.push(r);
            }
        }
    }
    refs
}

/// `secretKeyRef`s in one component's `extraEnv` (purpose `extra-env`): the
/// Deployment references them too, so their rotation must roll its pods.
fn extra_env_secrets(sp: &StreamingPlatform, c: Component) -> Vec<SecretKeyRefLike> {
    c.spec(&sp.spec)
        .extra_env
        .iter()
        .filter_map(|v| v.value_from.as_ref()?.secret_key_ref.as_ref())
        .map(|s| SecretKeyRefLike {
            name: s.name.clone(),
            key: Some(s.key.clone()),
            purpose: "extra-env",
        })
        .collect()
}

/// The distinct Secret names of [`referenced_secrets`] (what to watch and
/// whose `resourceVersion` to look up).
pub fn referenced_secret_names(sp: &StreamingPlatform) -> BTreeSet<String> {
    referenced_secrets(sp).into_iter().map(|r| r.name).collect()
}

/// The Secrets one component's pods use: S3 never sees the database
/// credentials, S1/S2 never see OpenSearch's, so rotating one does not roll
/// pods that do not use it.
pub(crate) fn component_secrets(sp: &StreamingPlatform, c: Component) -> Vec<SecretKeyRefLike> {
    let own_extra = extra_env_secrets(sp, c);
    referenced_secrets(sp)
        .into_iter()
        .filter(|r| match r.purpose {
            "postgres" | "mongodb" | "redis" => c != Component::Monitor,
            "opensearch" => c == Component::Monitor,
            "extra-env" => own_extra.contains(r),
            _ => true, // Kafka: every service talks to it.
        })
        .collect()
}

fn component_secret_versions(
    sp: &StreamingPlatform,
    c: Component,
    inputs: &BuildInputs,
) -> BTreeMap<String, String> {
    let names: BTreeSet<String> = component_secrets(sp, c)
        .into_iter()
        .map(|r| r.name)
        .collect();
    inputs
        .secret_versions
        .iter()
        .filter(|(name, _)| names.contains(*name))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// SHA-256 (hex) of the ConfigMap's data and the Secrets' versions. Metadata
/// (labels, owners) is left out: only a changed setting or a rotated Secret
/// may roll the pods.
pub fn config_hash(config_map: &ConfigMap, secret_versions: &BTreeMap<String, String>) -> String {
    #[derive(Serialize)]
    struct Canonical<'a> {
        data: Option<&'a BTreeMap<String, String>>,
        binary_data: Option<&'a BTreeMap<String, k8s_openapi::ByteString>>,
        secret_versions: &'a BTreeMap<String, String>,
    }
    let canonical = Canonical {
        data: config_map.data.as_ref(),
        binary_data: config_map.binary_data.as_ref(),
        secret_versions,
    };
    // BTreeMaps serialise in key order, so these bytes are canonical; a
    // serialisation failure is impossible for these types, and an empty
    // digest input would still be deterministic.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    hex::encode(digest)
}

/// `<sp>-<component>`: the name of its Deployment, PDB, HPA and Service.
pub fn component_name(sp: &StreamingPlatform, c: Component) -> String {
    format!("{}-{}", sp.name_any(), c.name())
}

/// `<sp>-config`.
pub fn config_map_name(sp: &StreamingPlatform) -> String {
    format!("{}-config", sp.name_any())
}

/// `<sp>-metrics`: the headless Service every pod's metrics port is behind.
pub fn metrics_service_name(sp: &StreamingPlatform) -> String {
    format!("{}-metrics", sp.name_any())
}

/// `app.kubernetes.io/*` labels common to every child of `sp`.
pub fn labels(sp: &StreamingPlatform, component: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "polystream".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), sp.name_any()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "polystream-operator".to_owned(),
        ),
        (
            "app.kubernetes.io/part-of".to_owned(),
            "polystream".to_owned(),
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

/// The labels selecting one component's pods. Deployment selectors are
/// immutable, so this set must never change.
pub fn selector_labels(sp: &StreamingPlatform, c: Component) -> BTreeMap<String, String> {
    let mut labels = instance_selector(sp);
    labels.insert(
        "app.kubernetes.io/component".to_owned(),
        c.name().to_owned(),
    );
    labels
}

/// The labels selecting every pod of the instance.
pub fn instance_selector(sp: &StreamingPlatform) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "polystream".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), sp.name_any()),
    ])
}

/// The gateway Service's in-cluster URL.
pub fn gateway_url(sp: &StreamingPlatform) -> String {
    let namespace = sp.namespace().unwrap_or_else(|| "default".to_owned());
    format!(
        "http://{}-gateway.{namespace}.svc:{HTTP_PORT}",
        sp.name_any()
    )
}

/// Metadata of a child: name, the platform's namespace, labels and a
/// controller owner reference (absent only before the platform has a uid).
pub(crate) fn child_meta(
    sp: &StreamingPlatform,
    name: String,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: sp.namespace(),
        labels: Some(labels),
        owner_references: sp.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// `<sp>`: the pods' identity. It carries no API token (the services never
/// call the Kubernetes API), which also keeps a compromised pod from using one.
pub fn build_service_account(sp: &StreamingPlatform) -> ServiceAccount {
    ServiceAccount {
        metadata: child_meta(sp, sp.name_any(), labels(sp, None)),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}
