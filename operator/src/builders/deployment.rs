//! The Deployments of S1, S2 and S3.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{
    CONFIG_HASH_ANNOTATION, Component, HTTP_PORT, KAFKA_TLS_DIR, RUN_AS_USER, SPOOL_DIR,
    child_meta, component_name, config_map_name, gateway_url, labels, selector_labels,
};
use crate::crd::{PullPolicy, SecretKeyRef, StreamingPlatform};

/// Requests when the spec gives none, so the scheduler and a CPU-based HPA
/// have something to work with. No default limits: a CPU limit throttles
/// argon2 hashing in S1, and memory needs depend on the load.
const DEFAULT_CPU_REQUEST: &str = "100m";
const DEFAULT_MEMORY_REQUEST: &str = "128Mi";

/// `<sp>-<component>`. `config_hash` goes into the pod template's annotations
/// only, so nothing but a changed setting or Secret rolls the pods.
pub fn build_deployment(sp: &StreamingPlatform, c: Component, config_hash: &str) -> Deployment {
    let cs = c.spec(&sp.spec);
    let mut pod_labels = labels(sp, Some(c.name()));
    if let Some(version) = version_label(&image_tag(sp, c)) {
        pod_labels.insert("app.kubernetes.io/version".to_owned(), version);
    }
    Deployment {
        metadata: child_meta(sp, component_name(sp, c), pod_labels.clone()),
        spec: Some(DeploymentSpec {
            // With autoscaling the HPA owns the count; a value here would
            // fight it on every reconcile.
            replicas: cs.autoscaling.is_none().then_some(cs.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(sp, c)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_owned(),
                        config_hash.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(sp, c)),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn pod_spec(sp: &StreamingPlatform, c: Component) -> PodSpec {
    let scheduling = &c.spec(&sp.spec).scheduling;
    PodSpec {
        containers: vec![container(sp, c)],
        volumes: Some(volumes(sp, c)),
        service_account_name: Some(sp.name_any()),
        automount_service_account_token: Some(false),
        // Service links would add `<SVC>_PORT=tcp://...` variables for every
        // Service in the namespace: noise at best, a clash at worst.
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS_USER),
            run_as_group: Some(RUN_AS_USER),
            // Mounted Secrets and emptyDirs become group-readable/writable.
            fs_group: Some(RUN_AS_USER),
            seccomp_profile: Some(runtime_default()),
            ..PodSecurityContext::default()
        }),
        termination_grace_period_seconds: Some(termination_grace_seconds(c)),
        node_selector: (!scheduling.node_selector.is_empty())
            .then(|| scheduling.node_selector.clone()),
        tolerations: (!scheduling.tolerations.is_empty()).then(|| scheduling.tolerations.clone()),
        affinity: scheduling.affinity.clone(),
        topology_spread_constraints: (!scheduling.topology_spread_constraints.is_empty())
            .then(|| scheduling.topology_spread_constraints.clone()),
        ..PodSpec::default()
    }
}

/// Time between SIGTERM and SIGKILL. S2 stops consuming, finishes the events
/// in flight (a send may wait the 10 s delivery timeout, a store retries with
/// backoff) and commits; S3 flushes its batch to OpenSearch or the spool; S1
/// answers long-polls of up to `STATUS_WAIT_MAX_SECONDS` (30 s).
pub fn termination_grace_seconds(c: Component) -> i64 {
    match c {
        Component::Gateway => 40,
        Component::Processor | Component::Monitor => 60,
    }
}

fn container(sp: &StreamingPlatform, c: Component) -> Container {
    let cs = c.spec(&sp.spec);
    Container {
        name: c.name().to_owned(),
        image: Some(image(sp, c)),
        image_pull_policy: Some(pull_policy_name(pull_policy(sp, c)).to_owned()),
        command: Some(vec![c.binary().to_owned()]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: config_map_name(sp),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        env: Some(env(sp, c)),
        ports: Some(vec![
            ContainerPort {
                name: Some(c.http_port_name().to_owned()),
                container_port: i32::from(HTTP_PORT),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("metrics".to_owned()),
                container_port: sp.spec.observability.metrics_port,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
        ]),
        // Start-up may run migrations and wait for stores; the startup probe
        // gives it two minutes before liveness takes over.
        startup_probe: Some(http_probe(c, "/health", 2, 60)),
        liveness_probe: Some(http_probe(c, "/health", 10, 3)),
        readiness_probe: Some(http_probe(c, "/ready", 5, 3)),
        resources: Some(resources(cs.resources.as_ref())),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS_USER),
            run_as_group: Some(RUN_AS_USER),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            seccomp_profile: Some(runtime_default()),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(volume_mounts(sp, c)),
        ..Container::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        ..SeccompProfile::default()
    }
}

fn http_probe(c: Component, path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(c.http_port_name().to_owned()),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        success_threshold: Some(1),
        ..Probe::default()
    }
}

/// The variables one service reads beyond the shared ConfigMap, sorted by
/// name, then `extraEnv` (which replaces an operator variable of the same
/// name: duplicates would be rejected by server-side apply, and the user wins).
pub(crate) fn env(sp: &StreamingPlatform, c: Component) -> Vec<EnvVar> {
    let stores = &sp.spec.stores;
    let mut vars: BTreeMap<String, EnvVar> = BTreeMap::new();
    let mut put = |var: EnvVar| {
        vars.insert(var.name.clone(), var);
    };
    put(value("OTEL_SERVICE_NAME", c.binary()));
    put(value(
        "OTEL_RESOURCE_ATTRIBUTES",
        &format!(
            "k8s.namespace.name={},k8s.deployment.name={},service.namespace={}",
            sp.namespace().unwrap_or_else(|| "default".to_owned()),
            component_name(sp, c),
            sp.name_any()
        ),
    ));
    if c != Component::Monitor {
        put(secret("DATABASE_URL", &stores.postgres.uri_secret_ref));
        put(secret("MONGODB_URI", &stores.mongodb.uri_secret_ref));
        put(secret("REDIS_URL", &stores.redis.uri_secret_ref));
    }
    if c != Component::Gateway {
        // S2 and S3 create (or grow) the topics at start-up.
        put(value(
            "KAFKA_PARTITIONS",
            &stores.kafka.partitions.to_string(),
        ));
        put(value(
            "KAFKA_REPLICATION_FACTOR",
            &stores.kafka.replication_factor.to_string(),
        ));
    }
    if stores.kafka.tls.is_some() {
        put(value("KAFKA_TLS_DIR", KAFKA_TLS_DIR));
    }
    if let Some(sasl) = &stores.kafka.sasl {
        let name = &sasl.secret_ref.name;
        put(secret_key("KAFKA_SASL_MECHANISM", name, "mechanism"));
        put(secret_key("KAFKA_SASL_USERNAME", name, "username"));
        put(secret_key("KAFKA_SASL_PASSWORD", name, "password"));
    }
    match c {
        Component::Gateway => {
            put(value("PUBLIC_URL", &gateway_url(sp)));
            let legacy = &sp.spec.legacy_api;
            put(value("LEGACY_API", &legacy.enabled.to_string()));
            put(value("LEGACY_API_ACCESS", legacy.access.as_env()));
            // Platforms sharing one Redis keep separate rate-limit budgets.
            put(value(
                "RATE_LIMIT_SCOPE",
                &format!(
                    "{}/{}",
                    sp.namespace().unwrap_or_else(|| "default".to_owned()),
                    sp.name_any()
                ),
            ));
        }
        Component::Processor => {}
        Component::Monitor => {
            put(value("SPOOL_DIR", SPOOL_DIR));
            let opensearch = stores.opensearch.as_ref();
            put(
                match (
                    opensearch.and_then(|o| o.url_secret_ref.as_ref()),
                    opensearch.and_then(|o| o.url.as_deref()),
                ) {
                    (Some(secret_ref), _) => secret("OPENSEARCH_URL", secret_ref),
                    (None, Some(url)) => value("OPENSEARCH_URL", url),
                    // The contract's "no OpenSearch": S3 runs on its spool only.
                    (None, None) => value("OPENSEARCH_URL", ""),
                },
            );
        }
    }
    let extra = &c.spec(&sp.spec).extra_env;
    let mut env: Vec<EnvVar> = vars
        .into_values()
        .filter(|v| !extra.iter().any(|e| e.name == v.name))
        .collect();
    // Within extraEnv, too, the last of a name wins.
    for (i, e) in extra.iter().enumerate() {
        if !extra[i + 1..].iter().any(|later| later.name == e.name) {
            env.push(e.clone());
        }
    }
    env
}

fn value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

fn secret(name: &str, r: &SecretKeyRef) -> EnvVar {
    secret_key(name, &r.name, &r.key)
}

fn secret_key(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// An emptyDir on `/tmp` for every pod (read-only root filesystem), S3's spool,
/// and the Kafka TLS Secret (librdkafka reads certificates from files; the
/// SASL login travels as `secretKeyRef` variables instead).
fn volumes(sp: &StreamingPlatform, c: Component) -> Vec<Volume> {
    let mut volumes = vec![Volume {
        name: "tmp".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity("64Mi".to_owned())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }];
    if c == Component::Monitor {
        // No size limit: exceeding one evicts the pod and loses the spool.
        volumes.push(Volume {
            name: "spool".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
    }
    if let Some(tls) = &sp.spec.stores.kafka.tls {
        volumes.push(Volume {
            name: "kafka-tls".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls.secret_ref.name.clone()),
                // Owner and group (fsGroup) read, nobody else.
                default_mode: Some(0o440),
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    volumes
}

fn volume_mounts(sp: &StreamingPlatform, c: Component) -> Vec<VolumeMount> {
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    let mut mounts = vec![mount("tmp", "/tmp", false)];
    if c == Component::Monitor {
        mounts.push(mount("spool", SPOOL_DIR, false));
    }
    if sp.spec.stores.kafka.tls.is_some() {
        mounts.push(mount("kafka-tls", KAFKA_TLS_DIR, true));
    }
    mounts
}

/// The spec's resources, with a default request for CPU and memory when
/// neither a request nor a limit names it (with only a limit, Kubernetes
/// uses the limit as the request).
fn resources(spec: Option<&ResourceRequirements>) -> ResourceRequirements {
    let mut r = spec.cloned().unwrap_or_default();
    let limits = r.limits.clone().unwrap_or_default();
    let requests = r.requests.get_or_insert_with(BTreeMap::new);
    for (resource, default) in [
        ("cpu", DEFAULT_CPU_REQUEST),
        ("memory", DEFAULT_MEMORY_REQUEST),
    ] {
        if !requests.contains_key(resource) && !limits.contains_key(resource) {
            requests.insert(resource.to_owned(), Quantity(default.to_owned()));
        }
    }
    r
}

/// `repository:tag`, or `repository@digest` when the tag is a digest.
pub fn image(sp: &StreamingPlatform, c: Component) -> String {
    let repository = c
        .spec(&sp.spec)
        .image
        .as_ref()
        .and_then(|o| o.repository.clone())
        .unwrap_or_else(|| sp.spec.image.repository.clone());
    let tag = image_tag(sp, c);
    let separator = if tag.contains(':') { '@' } else { ':' };
    format!("{repository}{separator}{tag}")
}

fn image_tag(sp: &StreamingPlatform, c: Component) -> String {
    c.spec(&sp.spec)
        .image
        .as_ref()
        .and_then(|o| o.tag.clone())
        .unwrap_or_else(|| sp.spec.image.tag.clone())
}

fn pull_policy(sp: &StreamingPlatform, c: Component) -> PullPolicy {
    c.spec(&sp.spec)
        .image
        .as_ref()
        .and_then(|o| o.pull_policy)
        .unwrap_or(sp.spec.image.pull_policy)
}

fn pull_policy_name(p: PullPolicy) -> &'static str {
    match p {
        PullPolicy::Always => "Always",
        PullPolicy::IfNotPresent => "IfNotPresent",
        PullPolicy::Never => "Never",
    }
}

/// The tag as an `app.kubernetes.io/version` label value, when it is a valid
/// one (a digest or an over-long tag is not).
fn version_label(tag: &str) -> Option<String> {
    let valid = !tag.is_empty()
        && tag.len() <= 63
        && tag.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        && tag.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        && tag
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
    valid.then(|| tag.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use k8s_openapi::api::core::v1::{Toleration, TopologySpreadConstraint};

    use super::*;
    use crate::builders::tests::sample;
    use crate::crd::{ImageOverride, OpenSearchSpec, SecretRefHolder};

    fn pod(sp: &StreamingPlatform, c: Component) -> PodSpec {
        build_deployment(sp, c, "h")
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
    }

    fn main_container(sp: &StreamingPlatform, c: Component) -> Container {
        pod(sp, c).containers.remove(0)
    }

    /// name → literal value, or `secret:<name>/<key>`.
    fn env_map(sp: &StreamingPlatform, c: Component) -> BTreeMap<String, String> {
        main_container(sp, c)
            .env
            .unwrap()
            .into_iter()
            .map(|v| {
                let shown = match (v.value, v.value_from) {
                    (Some(value), None) => value,
                    (None, Some(from)) => {
                        let s = from.secret_key_ref.unwrap();
                        format!("secret:{}/{}", s.name, s.key)
                    }
                    other => panic!("unexpected {other:?}"),
                };
                (v.name, shown)
            })
            .collect()
    }

    #[test]
    fn each_service_gets_exactly_the_variables_it_reads() {
        let sp = sample();
        // In the container's order: the operator's sorted, then extraEnv.
        let names = |c| {
            main_container(&sp, c)
                .env
                .unwrap()
                .into_iter()
                .map(|v| v.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(Component::Gateway),
            [
                "DATABASE_URL",
                "LEGACY_API",
                "LEGACY_API_ACCESS",
                "MONGODB_URI",
                "OTEL_RESOURCE_ATTRIBUTES",
                "OTEL_SERVICE_NAME",
                "PUBLIC_URL",
                "RATE_LIMIT_SCOPE",
                "REDIS_URL"
            ]
        );
        assert_eq!(
            names(Component::Processor),
            [
                "DATABASE_URL",
                "KAFKA_PARTITIONS",
                "KAFKA_REPLICATION_FACTOR",
                "MONGODB_URI",
                "OTEL_RESOURCE_ATTRIBUTES",
                "OTEL_SERVICE_NAME",
                "REDIS_URL"
            ]
        );
        // The sample's monitor adds RUST_LOG through extraEnv.
        assert_eq!(
            names(Component::Monitor),
            [
                "KAFKA_PARTITIONS",
                "KAFKA_REPLICATION_FACTOR",
                "OPENSEARCH_URL",
                "OTEL_RESOURCE_ATTRIBUTES",
                "OTEL_SERVICE_NAME",
                "SPOOL_DIR",
                "RUST_LOG"
            ]
        );
    }

    #[test]
    fn store_uris_come_from_secret_key_refs() {
        let sp = sample();
        let gw = env_map(&sp, Component::Gateway);
        assert_eq!(gw["DATABASE_URL"], "secret:polystream-stores/postgres-uri");
        assert_eq!(gw["MONGODB_URI"], "secret:polystream-stores/mongodb-uri");
        assert_eq!(gw["REDIS_URL"], "secret:polystream-stores/redis-uri");
        assert_eq!(gw["PUBLIC_URL"], "http://polystream-gateway.media.svc:8080");
        assert_eq!(gw["RATE_LIMIT_SCOPE"], "media/polystream");
        // Seed routes only when the spec asks for them.
        assert_eq!(gw["LEGACY_API"], "false");
        assert_eq!(gw["LEGACY_API_ACCESS"], "token");
        assert_eq!(gw["OTEL_SERVICE_NAME"], "polystream-s1-gateway");
        assert_eq!(
            gw["OTEL_RESOURCE_ATTRIBUTES"],
            "k8s.namespace.name=media,k8s.deployment.name=polystream-gateway,service.namespace=polystream"
        );
        let s2 = env_map(&sp, Component::Processor);
        assert_eq!(s2["DATABASE_URL"], "secret:polystream-stores/postgres-uri");
        assert_eq!(s2["KAFKA_PARTITIONS"], "6");
        assert_eq!(s2["KAFKA_REPLICATION_FACTOR"], "1");
        assert_eq!(s2["OTEL_SERVICE_NAME"], "polystream-s2-processor");
        let s3 = env_map(&sp, Component::Monitor);
        assert_eq!(
            s3["OPENSEARCH_URL"],
            "secret:polystream-stores/opensearch-url"
        );
        assert_eq!(s3["SPOOL_DIR"], "/var/lib/polystream/spool");
        assert_eq!(s3["OTEL_SERVICE_NAME"], "polystream-s3-monitor");
        for c in Component::ALL {
            let env_from = main_container(&sp, c).env_from.unwrap();
            assert_eq!(
                env_from[0].config_map_ref.as_ref().unwrap().name,
                "polystream-config"
            );
        }
    }

    #[test]
    fn opensearch_inline_secret_or_spool_only() {
        let mut sp = sample();
        sp.spec.stores.opensearch = Some(OpenSearchSpec {
            url_secret_ref: None,
            url: Some("http://opensearch:9200".into()),
        });
        assert_eq!(
            env_map(&sp, Component::Monitor)["OPENSEARCH_URL"],
            "http://opensearch:9200"
        );
        sp.spec.stores.opensearch = None;
        assert_eq!(env_map(&sp, Component::Monitor)["OPENSEARCH_URL"], "");
        for c in [Component::Gateway, Component::Processor] {
            assert!(!env_map(&sp, c).contains_key("OPENSEARCH_URL"));
        }
    }

    #[test]
    fn extra_env_comes_last_and_wins() {
        let mut sp = sample();
        sp.spec.gateway.extra_env = vec![
            EnvVar {
                name: "PUBLIC_URL".into(),
                value: Some("https://api.example.com".into()),
                value_from: None,
            },
            EnvVar {
                name: "ADMIN_EMAIL".into(),
                value: Some("first".into()),
                value_from: None,
            },
            EnvVar {
                name: "ADMIN_EMAIL".into(),
                value: Some("admin@example.com".into()),
                value_from: None,
            },
        ];
        let env = main_container(&sp, Component::Gateway).env.unwrap();
        let names: Vec<&str> = env.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "DATABASE_URL",
                "LEGACY_API",
                "LEGACY_API_ACCESS",
                "MONGODB_URI",
                "OTEL_RESOURCE_ATTRIBUTES",
                "OTEL_SERVICE_NAME",
                "RATE_LIMIT_SCOPE",
                "REDIS_URL",
                "PUBLIC_URL",
                "ADMIN_EMAIL"
            ]
        );
        assert_eq!(env[8].value.as_deref(), Some("https://api.example.com"));
        assert_eq!(env[9].value.as_deref(), Some("admin@example.com"));
    }

    #[test]
    fn image_and_pull_policy_with_per_component_override() {
        let mut sp = sample();
        sp.spec.image.tag = "1.2.3".into();
        sp.spec.monitor.image = Some(ImageOverride {
            repository: Some("registry.example/monitor".into()),
            tag: None,
            pull_policy: Some(PullPolicy::Always),
        });
        sp.spec.processor.image = Some(ImageOverride {
            tag: Some("sha256:abcd".into()),
            ..ImageOverride::default()
        });
        let gw = main_container(&sp, Component::Gateway);
        assert_eq!(gw.image.as_deref(), Some("polystream:1.2.3"));
        assert_eq!(gw.image_pull_policy.as_deref(), Some("IfNotPresent"));
        let s3 = main_container(&sp, Component::Monitor);
        assert_eq!(s3.image.as_deref(), Some("registry.example/monitor:1.2.3"));
        assert_eq!(s3.image_pull_policy.as_deref(), Some("Always"));
        let s2 = main_container(&sp, Component::Processor);
        assert_eq!(s2.image.as_deref(), Some("polystream@sha256:abcd"));
        let labels = |c| {
            build_deployment(&sp, c, "h")
                .spec
                .unwrap()
                .template
                .metadata
                .unwrap()
                .labels
                .unwrap()
        };
        assert_eq!(
            labels(Component::Gateway)["app.kubernetes.io/version"],
            "1.2.3"
        );
        assert!(!labels(Component::Processor).contains_key("app.kubernetes.io/version"));
    }

    #[test]
    fn command_is_the_components_binary_without_args() {
        let sp = sample();
        for c in Component::ALL {
            let container = main_container(&sp, c);
            assert_eq!(container.name, c.name());
            assert_eq!(container.command.unwrap(), [c.binary()]);
            assert!(container.args.is_none());
        }
    }

    #[test]
    fn autoscaling_leaves_replicas_to_the_hpa() {
        let mut sp = sample();
        sp.spec.processor.replicas = 3;
        let replicas =
            |sp: &StreamingPlatform, c| build_deployment(sp, c, "h").spec.unwrap().replicas;
        // The sample's gateway autoscales.
        assert_eq!(replicas(&sp, Component::Gateway), None);
        assert_eq!(replicas(&sp, Component::Processor), Some(3));
        sp.spec.gateway.autoscaling = None;
        assert_eq!(replicas(&sp, Component::Gateway), Some(2));
        sp.spec.monitor.replicas = 0;
        assert_eq!(replicas(&sp, Component::Monitor), Some(0));
    }

    #[test]
    fn selector_is_instance_and_component_and_matches_the_pods() {
        let sp = sample();
        for c in Component::ALL {
            let spec = build_deployment(&sp, c, "h").spec.unwrap();
            let selector = spec.selector.match_labels.unwrap();
            assert_eq!(selector["app.kubernetes.io/instance"], "polystream");
            assert_eq!(selector["app.kubernetes.io/component"], c.name());
            let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
            for (k, v) in &selector {
                assert_eq!(pod_labels.get(k), Some(v), "{k}");
            }
        }
    }

    #[test]
    fn config_hash_is_only_on_the_pod_template() {
        let d = build_deployment(&sample(), Component::Gateway, "abc");
        assert!(d.metadata.annotations.is_none());
        let annotations = d
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap();
        assert_eq!(annotations[CONFIG_HASH_ANNOTATION], "abc");
    }

    #[test]
    fn security_context_is_hardened() {
        let sp = sample();
        for c in Component::ALL {
            let pod = pod(&sp, c);
            let psc = pod.security_context.unwrap();
            assert_eq!(psc.run_as_non_root, Some(true));
            assert_eq!(psc.run_as_user, Some(65532));
            assert_eq!(psc.fs_group, Some(65532));
            assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
            assert_eq!(pod.enable_service_links, Some(false));
            let sc = pod.containers[0].security_context.clone().unwrap();
            assert_eq!(sc.run_as_non_root, Some(true));
            assert_eq!(sc.run_as_user, Some(65532));
            assert_eq!(sc.read_only_root_filesystem, Some(true));
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(sc.privileged, Some(false));
            assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
            assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        }
    }

    #[test]
    fn writable_paths_are_empty_dirs() {
        let sp = sample();
        for c in Component::ALL {
            let pod = pod(&sp, c);
            let mounts: Vec<(String, String, bool)> = pod.containers[0]
                .volume_mounts
                .clone()
                .unwrap()
                .into_iter()
                .map(|m| (m.name, m.mount_path, m.read_only.unwrap()))
                .collect();
            let volumes = pod.volumes.unwrap();
            assert!(volumes.iter().all(|v| v.empty_dir.is_some()));
            if c == Component::Monitor {
                assert_eq!(
                    mounts,
                    [
                        ("tmp".into(), "/tmp".into(), false),
                        ("spool".into(), SPOOL_DIR.into(), false)
                    ]
                );
            } else {
                assert_eq!(mounts, [("tmp".into(), "/tmp".into(), false)]);
            }
        }
    }

    #[test]
    fn kafka_tls_is_mounted_read_only_and_sasl_comes_from_secret_keys() {
        let mut sp = sample();
        sp.spec.stores.kafka.tls = Some(SecretRefHolder {
            secret_ref: crate::crd::LocalSecretRef {
                name: "kafka-ca".into(),
            },
        });
        sp.spec.stores.kafka.sasl = Some(SecretRefHolder {
            secret_ref: crate::crd::LocalSecretRef {
                name: "kafka-user".into(),
            },
        });
        for c in Component::ALL {
            let pod = pod(&sp, c);
            let secret_volumes: Vec<(String, String, i32)> = pod
                .volumes
                .unwrap()
                .into_iter()
                .filter_map(|v| {
                    let s = v.secret?;
                    Some((v.name, s.secret_name.unwrap(), s.default_mode.unwrap()))
                })
                .collect();
            assert_eq!(
                secret_volumes,
                [("kafka-tls".into(), "kafka-ca".into(), 0o440)]
            );
            let container = &pod.containers[0];
            let mounts = container.volume_mounts.clone().unwrap();
            let tls = mounts.iter().find(|m| m.name == "kafka-tls").unwrap();
            assert_eq!(tls.mount_path, KAFKA_TLS_DIR);
            assert_eq!(tls.read_only, Some(true));
            let vars = container.env.clone().unwrap();
            let find = |name: &str| vars.iter().find(|v| v.name == name).unwrap();
            assert_eq!(find("KAFKA_TLS_DIR").value.as_deref(), Some(KAFKA_TLS_DIR));
            for (var, key) in [
                ("KAFKA_SASL_MECHANISM", "mechanism"),
                ("KAFKA_SASL_USERNAME", "username"),
                ("KAFKA_SASL_PASSWORD", "password"),
            ] {
                let r = find(var)
                    .value_from
                    .clone()
                    .unwrap()
                    .secret_key_ref
                    .unwrap();
                assert_eq!(
                    (r.name.as_str(), r.key.as_str(), r.optional),
                    ("kafka-user", key, Some(false)),
                    "{var}"
                );
            }
        }
    }

    #[test]
    fn probes_hit_health_and_ready_on_the_http_port() {
        let sp = sample();
        for c in Component::ALL {
            let container = main_container(&sp, c);
            let get = |p: Option<Probe>| {
                let h = p.unwrap().http_get.unwrap();
                (h.path.unwrap(), h.port)
            };
            let port = IntOrString::String(c.http_port_name().into());
            assert_eq!(
                get(container.liveness_probe),
                ("/health".into(), port.clone())
            );
            assert_eq!(
                get(container.readiness_probe),
                ("/ready".into(), port.clone())
            );
            assert_eq!(get(container.startup_probe), ("/health".into(), port));
            let ports: Vec<(String, i32)> = container
                .ports
                .unwrap()
                .into_iter()
                .map(|p| (p.name.unwrap(), p.container_port))
                .collect();
            assert_eq!(
                ports,
                [(c.http_port_name().into(), 8080), ("metrics".into(), 9090)]
            );
        }
    }

    #[test]
    fn resources_from_spec_with_default_requests() {
        let sp = sample();
        // The sample's gateway requests 100m/128Mi and limits memory.
        let gw = main_container(&sp, Component::Gateway).resources.unwrap();
        assert_eq!(gw.limits.unwrap()["memory"], Quantity("256Mi".into()));
        // The monitor has none: defaults, no limits.
        let s3 = main_container(&sp, Component::Monitor).resources.unwrap();
        let requests = s3.requests.unwrap();
        assert_eq!(requests["cpu"], Quantity(DEFAULT_CPU_REQUEST.into()));
        assert_eq!(requests["memory"], Quantity(DEFAULT_MEMORY_REQUEST.into()));
        assert!(s3.limits.is_none());
        // A limit alone is left alone (Kubernetes makes it the request).
        let only_limit = resources(Some(&ResourceRequirements {
            limits: Some(BTreeMap::from([("cpu".into(), Quantity("2".into()))])),
            ..ResourceRequirements::default()
        }));
        let requests = only_limit.requests.unwrap();
        assert!(!requests.contains_key("cpu"));
        assert_eq!(requests["memory"], Quantity(DEFAULT_MEMORY_REQUEST.into()));
    }

    #[test]
    fn scheduling_is_passed_through() {
        let mut sp = sample();
        sp.spec.monitor.scheduling.node_selector = BTreeMap::from([("disk".into(), "ssd".into())]);
        sp.spec.monitor.scheduling.tolerations = vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        }];
        let pod = pod(&sp, Component::Monitor);
        assert_eq!(pod.node_selector.unwrap()["disk"], "ssd");
        assert_eq!(
            pod.tolerations.unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        // The sample's processor spreads over hosts.
        let s2 = self::pod(&sp, Component::Processor);
        let spread: Vec<TopologySpreadConstraint> = s2.topology_spread_constraints.unwrap();
        assert_eq!(spread[0].topology_key, "kubernetes.io/hostname");
        assert!(s2.node_selector.is_none() && s2.tolerations.is_none() && s2.affinity.is_none());
    }

    #[test]
    fn grace_period_lets_the_processor_drain() {
        let sp = sample();
        assert_eq!(
            pod(&sp, Component::Processor).termination_grace_period_seconds,
            Some(60)
        );
        assert!(
            pod(&sp, Component::Gateway)
                .termination_grace_period_seconds
                .unwrap()
                > 30
        );
    }
}
