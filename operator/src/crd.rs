//! The `StreamingPlatform` custom resource (`polystream.dev/v1alpha1`).
//!
//! Every shape here must stay a *structural* schema (the API server rejects
//! anything else): plain structs, unit-only enums, k8s-openapi types. Rules
//! spanning fields are CEL `x-kubernetes-validations`, so `kubectl apply`
//! rejects a bad spec with a clear message before the operator sees it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The message the API server returns when autoscaling's bounds are inverted.
pub const AUTOSCALING_BOUNDS_MESSAGE: &str =
    "autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas";
/// The message the API server returns when OpenSearch names both or neither source.
pub const OPENSEARCH_SOURCE_MESSAGE: &str = "opensearch: set exactly one of url or urlSecretRef";
pub const METRICS_PORT_MESSAGE: &str =
    "observability.metricsPort must differ from 8080, the port the services answer HTTP on";
/// Children are named `<name>-processor` and the like, and Service names and
/// label values stop at 63 characters.
pub const MAX_NAME_LENGTH: usize = 53;
pub const NAME_LENGTH_MESSAGE: &str = "metadata.name must be at most 53 characters, so that child names such as <name>-processor fit in 63";

/// A Polystream deployment: S1 gateway, S2 processor and S3 monitor wired to their stores.
// Two printer columns share `type_ = "string"`, which clippy mistakes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "polystream.dev",
    version = "v1alpha1",
    kind = "StreamingPlatform",
    plural = "streamingplatforms",
    shortname = "sp",
    namespaced,
    status = "StreamingPlatformStatus",
    derive = "PartialEq",
    doc = "A Polystream deployment: S1 gateway, S2 processor and S3 monitor wired to their stores.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "status of the Ready condition"
    ),
    printcolumn(
        name = "Gateway URL",
        type_ = "string",
        json_path = ".status.gatewayUrl",
        description = "the gateway's in-cluster URL"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
/// Desired state of the platform.
pub struct StreamingPlatformSpec {
    /// The container image holding the three service binaries.
    #[serde(default)]
    pub image: ImageSpec,
    /// S1: the HTTP API turning writes into events.
    #[serde(default)]
    pub gateway: ComponentSpec,
    /// S2: consumes commands, enforces the rules, persists.
    #[serde(default)]
    pub processor: ComponentSpec,
    /// S3: indexes every event for audit.
    #[serde(default)]
    pub monitor: ComponentSpec,
    /// Connections to Kafka and the databases.
    pub stores: StoresSpec,
    /// Traces and metrics.
    #[serde(default)]
    pub observability: ObservabilitySpec,
    /// Seed 002's endpoints (`/usuarios`, ...) on the gateway, for the
    /// original platform's clients. Off unless asked for.
    #[serde(default)]
    pub legacy_api: LegacyApiSpec,
    /// When true the operator changes nothing and says so in a condition.
    #[serde(default)]
    pub paused: bool,
}

/// One image for all components; each runs its own binary from it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Image repository, e.g. `ghcr.io/example/polystream`.
    #[serde(default = "default_repository")]
    #[schemars(length(min = 1))]
    pub repository: String,
    /// Image tag; defaults to the operator's own version.
    #[serde(default = "default_tag")]
    #[schemars(length(min = 1))]
    pub tag: String,
    /// Kubernetes image pull policy.
    #[serde(default)]
    pub pull_policy: PullPolicy,
}

impl Default for ImageSpec {
    fn default() -> Self {
        Self {
            repository: default_repository(),
            tag: default_tag(),
            pull_policy: PullPolicy::default(),
        }
    }
}

fn default_repository() -> String {
    "polystream".into()
}

/// The operator's version: `./dev image` and a release build every binary
/// into one `polystream:<workspace version>` image.
fn default_tag() -> String {
    env!("CARGO_PKG_VERSION").into()
}

/// Whether the gateway serves seed 002's endpoints, and to whom.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegacyApiSpec {
    /// Serve them.
    #[serde(default)]
    pub enabled: bool,
    /// `Token`: an endpoint that touches one account needs that account's
    /// bearer token; `Open`: anyone, as in the original platform.
    #[serde(default)]
    pub access: LegacyAccess,
}

/// Unit-only, so the schema is a plain string enum (structural).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum LegacyAccess {
    #[default]
    Token,
    Open,
}

impl LegacyAccess {
    /// The gateway's `LEGACY_API_ACCESS` value.
    pub fn as_env(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Open => "open",
        }
    }
}

/// Unit-only, so the schema is a plain string enum (structural).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

/// Per-component override of the platform's image; unset fields inherit.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
}

/// How one of S1/S2/S3 runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// Pod count when autoscaling is unset.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Overrides the platform's image for this component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageOverride>,
    /// Container CPU/memory requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// A HorizontalPodAutoscaler replaces `replicas` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Where the pods may run.
    #[serde(default)]
    pub scheduling: SchedulingSpec,
    /// Added to the container's environment after the operator's own variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_env: Vec<EnvVar>,
}

impl Default for ComponentSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            image: None,
            resources: None,
            autoscaling: None,
            scheduling: SchedulingSpec::default(),
            extra_env: Vec::new(),
        }
    }
}

fn default_replicas() -> i32 {
    1
}

/// Bounds of a CPU-based HorizontalPodAutoscaler.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.minReplicas <= self.maxReplicas",
    "message": AUTOSCALING_BOUNDS_MESSAGE,
}]))]
pub struct AutoscalingSpec {
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Average CPU utilisation (percent of requests) the autoscaler aims for.
    #[serde(
        rename = "targetCPUUtilizationPercentage",
        default = "default_cpu_target"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

fn default_cpu_target() -> i32 {
    80
}

/// Pod placement, passed through to the pod spec.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingSpec {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
}

/// Store connections. Credentials live only in Secrets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoresSpec {
    pub kafka: KafkaSpec,
    pub postgres: UriSecretRef,
    pub mongodb: UriSecretRef,
    pub redis: UriSecretRef,
    /// Without it S3 keeps every event in its local spool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opensearch: Option<OpenSearchSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Comma-separated `host:port` list (`KAFKA_BOOTSTRAP_SERVERS`).
    #[schemars(length(min = 1))]
    pub bootstrap_servers: String,
    #[serde(default)]
    pub topics: KafkaTopics,
    /// Partitions of the topics when created; existing topics are only grown.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1))]
    pub partitions: i32,
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1))]
    pub replication_factor: i32,
    /// A Secret with the brokers' CA (`ca.crt`) and optionally a client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SecretRefHolder>,
    /// A Secret with `mechanism`, `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SecretRefHolder>,
}

fn default_partitions() -> i32 {
    6
}

fn default_replication_factor() -> i32 {
    1
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopics {
    #[serde(default = "default_user_events")]
    #[schemars(length(min = 1, max = 249))]
    pub user_events: String,
    #[serde(default = "default_response_events")]
    #[schemars(length(min = 1, max = 249))]
    pub response_events: String,
    #[serde(default = "default_dead_letter")]
    #[schemars(length(min = 1, max = 249))]
    pub dead_letter: String,
}

impl Default for KafkaTopics {
    fn default() -> Self {
        Self {
            user_events: default_user_events(),
            response_events: default_response_events(),
            dead_letter: default_dead_letter(),
        }
    }
}

fn default_user_events() -> String {
    "user_events".into()
}

fn default_response_events() -> String {
    "response_events".into()
}

fn default_dead_letter() -> String {
    "dead_letter_events".into()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRefHolder {
    pub secret_ref: LocalSecretRef,
}

/// A Secret in the platform's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct LocalSecretRef {
    #[schemars(length(min = 1))]
    pub name: String,
}

/// One key of a Secret in the platform's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SecretKeyRef {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub key: String,
}

/// A store whose connection URI (with its credentials) is a Secret key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UriSecretRef {
    pub uri_secret_ref: SecretKeyRef,
}

/// OpenSearch's URL, inline (no credentials) or from a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.url) != has(self.urlSecretRef)",
    "message": OPENSEARCH_SOURCE_MESSAGE,
}]))]
pub struct OpenSearchSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub url: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.metricsPort) || self.metricsPort != 8080",
    "message": METRICS_PORT_MESSAGE,
}]))]
pub struct ObservabilitySpec {
    /// OTLP collector endpoint; traces are off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// Fraction of traces sampled.
    #[serde(default = "default_sampling_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sampling_ratio: f64,
    /// Create a Prometheus ServiceMonitor (only if that CRD exists in the cluster).
    #[serde(default)]
    pub service_monitor: bool,
    /// Port of the metrics Service.
    #[serde(default = "default_metrics_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub metrics_port: i32,
}

impl Default for ObservabilitySpec {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sampling_ratio: default_sampling_ratio(),
            service_monitor: false,
            metrics_port: default_metrics_port(),
        }
    }
}

fn default_sampling_ratio() -> f64 {
    1.0
}

fn default_metrics_port() -> i32 {
    9090
}

/// What the operator last observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamingPlatformStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded`, `Paused` and one per store (`KafkaReady`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<ComponentStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor: Option<ComponentStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<ComponentStatus>,
    /// The gateway's in-cluster URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_url: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    pub desired_replicas: i32,
    pub ready_replicas: i32,
}
