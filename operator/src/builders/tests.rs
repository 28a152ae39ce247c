//! Tests spanning every child; each builder module tests its own details.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// The committed sample, as stored in namespace `media` (so it has a uid to own by).
pub(crate) fn sample() -> StreamingPlatform {
    let mut sp: StreamingPlatform =
        serde_saphyr::from_str(include_str!("../../../k8s/samples/streamingplatform.yaml"))
            .unwrap();
    sp.metadata.namespace = Some("media".into());
    sp.metadata.uid = Some("0a1b2c".into());
    sp
}

fn inputs() -> BuildInputs {
    BuildInputs {
        secret_versions: BTreeMap::from([("polystream-stores".to_owned(), "41".to_owned())]),
        service_monitor_crd: true,
    }
}

fn deployment(children: &Children, c: Component) -> &Deployment {
    let name = format!("polystream-{}", c.name());
    children
        .deployments
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some(name.as_str()))
        .unwrap()
}

fn hashes(children: &Children) -> Vec<String> {
    children
        .deployments
        .iter()
        .map(|d| {
            d.spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()[CONFIG_HASH_ANNOTATION]
                .clone()
        })
        .collect()
}

/// Every child as (kind, metadata), for the checks common to all of them.
fn metas(children: &Children) -> Vec<(&'static str, &ObjectMeta)> {
    let mut all = vec![
        ("ConfigMap", &children.config_map.metadata),
        ("ServiceAccount", &children.service_account.metadata),
        ("NetworkPolicy", &children.network_policy.metadata),
    ];
    all.extend(
        children
            .deployments
            .iter()
            .map(|d| ("Deployment", &d.metadata)),
    );
    all.extend(children.services.iter().map(|s| ("Service", &s.metadata)));
    all.extend(
        children
            .pod_disruption_budgets
            .iter()
            .map(|p| ("PodDisruptionBudget", &p.metadata)),
    );
    all.extend(
        children
            .horizontal_pod_autoscalers
            .iter()
            .map(|h| ("HorizontalPodAutoscaler", &h.metadata)),
    );
    if let Some(sm) = &children.service_monitor {
        all.push(("ServiceMonitor", &sm.metadata));
    }
    all
}

#[test]
fn every_child_is_labelled_owned_and_in_the_platforms_namespace() {
    let mut sp = sample();
    sp.spec.observability.service_monitor = true;
    let children = build_children(&sp, &inputs());
    let metas = metas(&children);
    // ConfigMap, SA, NetworkPolicy, 3 Deployments, 3 Services, 3 PDBs, 1 HPA, ServiceMonitor.
    assert_eq!(metas.len(), 14);
    for (kind, meta) in metas {
        let what = format!("{kind} {:?}", meta.name);
        assert_eq!(meta.namespace.as_deref(), Some("media"), "{what}");
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["app.kubernetes.io/name"], "polystream", "{what}");
        assert_eq!(labels["app.kubernetes.io/instance"], "polystream", "{what}");
        assert_eq!(labels["app.kubernetes.io/part-of"], "polystream", "{what}");
        assert_eq!(
            labels["app.kubernetes.io/managed-by"], "polystream-operator",
            "{what}"
        );
        let owners = meta.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1, "{what}");
        assert_eq!(owners[0].api_version, "polystream.dev/v1alpha1", "{what}");
        assert_eq!(owners[0].kind, "StreamingPlatform", "{what}");
        assert_eq!(owners[0].name, "polystream", "{what}");
        assert_eq!(owners[0].uid, "0a1b2c", "{what}");
        assert_eq!(owners[0].controller, Some(true), "{what}");
    }
}

#[test]
fn children_have_the_documented_names() {
    let mut sp = sample();
    sp.spec.observability.service_monitor = true;
    let c = build_children(&sp, &inputs());
    let names = |metas: Vec<&ObjectMeta>| -> Vec<String> {
        metas.iter().map(|m| m.name.clone().unwrap()).collect()
    };
    assert_eq!(
        c.config_map.metadata.name.as_deref(),
        Some("polystream-config")
    );
    assert_eq!(
        c.service_account.metadata.name.as_deref(),
        Some("polystream")
    );
    assert_eq!(
        c.network_policy.metadata.name.as_deref(),
        Some("polystream")
    );
    assert_eq!(
        names(c.deployments.iter().map(|d| &d.metadata).collect()),
        [
            "polystream-gateway",
            "polystream-processor",
            "polystream-monitor"
        ]
    );
    assert_eq!(
        names(c.services.iter().map(|s| &s.metadata).collect()),
        [
            "polystream-gateway",
            "polystream-monitor",
            "polystream-metrics"
        ]
    );
    assert_eq!(
        names(
            c.pod_disruption_budgets
                .iter()
                .map(|p| &p.metadata)
                .collect()
        ),
        [
            "polystream-gateway",
            "polystream-processor",
            "polystream-monitor"
        ]
    );
    // Only the sample's gateway autoscales.
    assert_eq!(
        names(
            c.horizontal_pod_autoscalers
                .iter()
                .map(|h| &h.metadata)
                .collect()
        ),
        ["polystream-gateway"]
    );
    assert_eq!(
        c.service_monitor.unwrap().metadata.name.as_deref(),
        Some("polystream")
    );
}

#[test]
fn an_unchanged_spec_renders_byte_identical_children() {
    let render = || {
        let c = build_children(&sample(), &inputs());
        serde_json::to_string(&(
            &c.config_map,
            &c.service_account,
            &c.deployments,
            &c.services,
            &c.pod_disruption_budgets,
            &c.horizontal_pod_autoscalers,
            &c.network_policy,
            &c.service_monitor,
        ))
        .unwrap()
    };
    assert_eq!(render(), render());
}

#[test]
fn without_a_uid_children_have_no_owner() {
    let mut sp = sample();
    sp.metadata.uid = None;
    let c = build_children(&sp, &inputs());
    assert!(c.config_map.metadata.owner_references.is_none());
    assert!(c.deployments[0].metadata.owner_references.is_none());
}

#[test]
fn hash_is_a_sha256_hex_and_deterministic() {
    let c = build_children(&sample(), &inputs());
    let h = config_hash(&c.config_map, &inputs().secret_versions);
    assert_eq!(h.len(), 64);
    assert!(h.chars().all(|ch| ch.is_ascii_hexdigit()));
    assert_eq!(h, config_hash(&c.config_map, &inputs().secret_versions));
}

#[test]
fn hash_changes_with_a_setting() {
    let before = hashes(&build_children(&sample(), &inputs()));
    let mut sp = sample();
    sp.spec.stores.kafka.bootstrap_servers = "kafka:9092".into();
    let after = hashes(&build_children(&sp, &inputs()));
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(b, a, "a ConfigMap change rolls every component");
    }
}

#[test]
fn hash_changes_with_a_rotated_secret_only_where_it_is_used() {
    let mut sp = sample();
    // S3 reads OpenSearch from its own Secret; the databases' Secret is S1/S2's.
    sp.spec.stores.opensearch = Some(crate::crd::OpenSearchSpec {
        url_secret_ref: Some(crate::crd::SecretKeyRef {
            name: "search".into(),
            key: "url".into(),
        }),
        url: None,
    });
    let mut inputs = inputs();
    inputs.secret_versions.insert("search".into(), "7".into());
    let before = hashes(&build_children(&sp, &inputs));
    inputs
        .secret_versions
        .insert("polystream-stores".into(), "42".into());
    let after = hashes(&build_children(&sp, &inputs));
    assert_ne!(before[0], after[0], "gateway uses the rotated Secret");
    assert_ne!(before[1], after[1], "processor uses the rotated Secret");
    assert_eq!(before[2], after[2], "monitor does not");
    inputs.secret_versions.insert("search".into(), "8".into());
    let last = hashes(&build_children(&sp, &inputs));
    assert_eq!(after[..2], last[..2]);
    assert_ne!(after[2], last[2]);
}

#[test]
fn hash_ignores_unrelated_fields() {
    let before = build_children(&sample(), &inputs());
    let mut sp = sample();
    sp.spec.processor.replicas = 7;
    sp.spec.gateway.autoscaling = None;
    sp.spec.monitor.resources = None;
    sp.spec.image.tag = "v2".into();
    sp.spec.observability.service_monitor = true;
    sp.spec.paused = true;
    sp.metadata.labels = Some(BTreeMap::from([("team".into(), "media".into())]));
    // An unrelated Secret's version does not count either.
    let mut other = inputs();
    other.secret_versions.insert("unrelated".into(), "1".into());
    let after = build_children(&sp, &other);
    assert_eq!(hashes(&before), hashes(&after));
}

#[test]
fn referenced_secrets_cover_every_store_and_kafka_secret() {
    let mut sp = sample();
    sp.spec.stores.kafka.tls = Some(crate::crd::SecretRefHolder {
        secret_ref: crate::crd::LocalSecretRef {
            name: "kafka-ca".into(),
        },
    });
    sp.spec.stores.kafka.sasl = Some(crate::crd::SecretRefHolder {
        secret_ref: crate::crd::LocalSecretRef {
            name: "kafka-user".into(),
        },
    });
    let refs = referenced_secrets(&sp);
    let got: Vec<(&str, Option<&str>, &str)> = refs
        .iter()
        .map(|r| (r.name.as_str(), r.key.as_deref(), r.purpose))
        .collect();
    assert_eq!(
        got,
        [
            ("polystream-stores", Some("postgres-uri"), "postgres"),
            ("polystream-stores", Some("mongodb-uri"), "mongodb"),
            ("polystream-stores", Some("redis-uri"), "redis"),
            ("polystream-stores", Some("opensearch-url"), "opensearch"),
            ("kafka-ca", None, "kafka-tls"),
            ("kafka-user", None, "kafka-sasl"),
        ]
    );
    assert_eq!(
        referenced_secret_names(&sp).into_iter().collect::<Vec<_>>(),
        ["kafka-ca", "kafka-user", "polystream-stores"]
    );
    sp.spec.stores.opensearch = None;
    assert!(
        referenced_secrets(&sp)
            .iter()
            .all(|r| r.purpose != "opensearch")
    );
}

#[test]
fn every_secret_key_ref_in_the_deployments_is_a_referenced_secret() {
    let sp = sample();
    let refs = referenced_secrets(&sp);
    for d in build_children(&sp, &inputs()).deployments {
        let pod = d.spec.unwrap().template.spec.unwrap();
        for var in pod.containers[0].env.clone().unwrap() {
            if let Some(s) = var.value_from.and_then(|v| v.secret_key_ref) {
                assert!(
                    refs.iter()
                        .any(|r| r.name == s.name && r.key.as_deref() == Some(s.key.as_str())),
                    "{} uses {}/{} not listed by referenced_secrets",
                    var.name,
                    s.name,
                    s.key
                );
            }
        }
    }
}

#[test]
fn service_monitor_needs_both_the_flag_and_the_crd() {
    let mut sp = sample();
    let mut inputs = inputs();
    for (flag, crd, expected) in [
        (false, false, false),
        (false, true, false),
        (true, false, false),
        (true, true, true),
    ] {
        sp.spec.observability.service_monitor = flag;
        inputs.service_monitor_crd = crd;
        assert_eq!(
            build_children(&sp, &inputs).service_monitor.is_some(),
            expected,
            "serviceMonitor={flag} crd={crd}"
        );
    }
}

#[test]
fn service_account_has_no_token() {
    let c = build_children(&sample(), &inputs());
    assert_eq!(
        c.service_account.automount_service_account_token,
        Some(false)
    );
    for d in &c.deployments {
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("polystream"));
        assert_eq!(pod.automount_service_account_token, Some(false));
    }
}

#[test]
fn components_name_their_binaries() {
    let names: Vec<_> = Component::ALL
        .iter()
        .map(|c| (c.name(), c.binary()))
        .collect();
    assert_eq!(
        names,
        [
            ("gateway", "polystream-s1-gateway"),
            ("processor", "polystream-s2-processor"),
            ("monitor", "polystream-s3-monitor"),
        ]
    );
    let sp = sample();
    assert_eq!(Component::Gateway.spec(&sp.spec).replicas, 2);
    assert_eq!(Component::Monitor.spec(&sp.spec).replicas, 1);
    let _ = deployment(&build_children(&sp, &inputs()), Component::Monitor);
}

#[test]
fn extra_env_secrets_are_referenced_and_roll_only_their_component() {
    let mut sp = sample();
    sp.spec
        .gateway
        .extra_env
        .push(k8s_openapi::api::core::v1::EnvVar {
            name: "ADMIN_PASSWORD".into(),
            value: None,
            value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
                secret_key_ref: Some(k8s_openapi::api::core::v1::SecretKeySelector {
                    name: "admin".into(),
                    key: "password".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
        });
    let refs = referenced_secrets(&sp);
    assert_eq!(
        refs.last().unwrap(),
        &SecretKeyRefLike {
            name: "admin".into(),
            key: Some("password".into()),
            purpose: "extra-env",
        }
    );
    assert!(referenced_secret_names(&sp).contains("admin"));
    let mut inputs = inputs();
    inputs.secret_versions.insert("admin".into(), "1".into());
    let before = hashes(&build_children(&sp, &inputs));
    inputs.secret_versions.insert("admin".into(), "2".into());
    let after = hashes(&build_children(&sp, &inputs));
    assert_ne!(before[0], after[0], "the gateway uses it");
    assert_eq!(before[1..], after[1..], "the others do not");
}
