//! The controller on the real control plane (kube-apiserver, controller-manager,
//! scheduler, kwok): each test runs its own in-process controller scoped to a
//! unique namespace, so tests never touch each other's objects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use polystream_operator::StreamingPlatform;
use polystream_operator::builders::CONFIG_HASH_ANNOTATION;
use polystream_operator::controller::{self, FIELD_MANAGER};
use serde::de::DeserializeOwned;
use serde_json::json;
use support::{
    InProcessController, NAME, STORES_SECRET, TestNamespace, condition, eventually, kubectl,
    live_uris, local_sample as sample, metric, namespace_with_crd, put_secret, wait_platform,
};

pub mod support;

const COMPONENTS: [&str; 3] = ["gateway", "processor", "monitor"];

/// The sample's image: it names no tag, so the operator's version applies.
fn default_image() -> String {
    format!("polystream:{}", env!("CARGO_PKG_VERSION"))
}

/// A namespace with the store Secret, and a controller watching only it.
struct Running {
    controller: InProcessController,
    client: Client,
    ns: TestNamespace,
}

impl Running {
    async fn start(prefix: &str, requeue_after: Duration) -> Self {
        let (client, ns) = namespace_with_crd(prefix).await;
        put_secret(&client, &ns.name, STORES_SECRET, &live_uris()).await;
        let controller = InProcessController::start(&client, &ns.name, requeue_after);
        Self {
            controller,
            client,
            ns,
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// How many objects of kind `K` match `lp`.
    async fn count<K>(&self, lp: &ListParams) -> usize
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        self.api::<K>().list(lp).await.unwrap().items.len()
    }

    async fn create_sample(&self) -> StreamingPlatform {
        self.api::<StreamingPlatform>()
            .create(&PostParams::default(), &sample())
            .await
            .unwrap()
    }

    /// Merge-patches the platform's spec (as a user would with kubectl).
    async fn patch_spec(&self, spec: serde_json::Value) {
        self.api::<StreamingPlatform>()
            .patch(
                NAME,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .unwrap();
    }

    async fn deployment(&self, component: &str) -> Option<Deployment> {
        self.api::<Deployment>()
            .get_opt(&format!("{NAME}-{component}"))
            .await
            .unwrap()
    }

    /// The replicas a component's Deployment asks for.
    async fn replicas(&self, component: &str) -> Option<i32> {
        self.deployment(component)
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas
    }

    /// Waits until the platform's condition `type_` satisfies `accept`.
    async fn wait_condition(
        &self,
        what: &str,
        within: Duration,
        type_: &str,
        accept: impl Fn((&str, &str, &str)) -> bool,
    ) -> StreamingPlatform {
        let api = self.api::<StreamingPlatform>();
        wait_platform(&api, NAME, what, within, |sp| {
            condition(sp, type_).is_some_and(&accept)
        })
        .await
    }

    /// Waits for the Ready condition to be True.
    async fn wait_ready(&self) -> StreamingPlatform {
        self.wait_condition(
            "the platform to become Ready",
            Duration::from_secs(90),
            "Ready",
            |c| c.0 == "True",
        )
        .await
    }

    /// Waits until the namespace holds `n` Deployments.
    async fn wait_deployments(&self, what: &str, n: usize) {
        eventually(what, Duration::from_secs(30), || async {
            let have = self.count::<Deployment>(&ListParams::default()).await;
            if have == n {
                Ok(())
            } else {
                Err(format!("{have}"))
            }
        })
        .await;
    }

    /// The operator's successful reconciliations so far (its own metric).
    fn reconciliations(&self) -> u64 {
        counter(
            &self.controller.metrics.encode(),
            "polystream_operator_reconciliations_total{outcome=\"ok\"}",
        )
    }

    async fn stop(self) {
        self.controller.stop().await;
    }
}

fn counter(metrics: &str, series: &str) -> u64 {
    metric(metrics, series).map_or(0, |v| v as u64)
}

fn pod_template(d: &Deployment) -> serde_json::Value {
    serde_json::to_value(&d.spec.as_ref().unwrap().template).unwrap()
}

/// The pod templates of the three Deployments, by component.
async fn templates(run: &Running) -> Result<BTreeMap<&'static str, serde_json::Value>, String> {
    let mut out = BTreeMap::new();
    for c in COMPONENTS {
        let d = run
            .deployment(c)
            .await
            .ok_or(format!("no {c} Deployment yet"))?;
        out.insert(c, pod_template(&d));
    }
    Ok(out)
}

/// The template without its config-hash annotation.
fn without_hash(template: &serde_json::Value) -> serde_json::Value {
    let mut t = template.clone();
    if let Some(a) = t
        .pointer_mut("/metadata/annotations")
        .and_then(|a| a.as_object_mut())
    {
        a.remove(CONFIG_HASH_ANNOTATION);
    }
    t
}

/// Waits until every Deployment's pod template satisfies `accept`.
async fn wait_templates(
    run: &Running,
    what: &str,
    accept: impl Fn(&str, &serde_json::Value) -> bool,
) -> BTreeMap<&'static str, serde_json::Value> {
    eventually(what, Duration::from_secs(30), || {
        let accept = &accept;
        async move {
            let t = templates(run).await?;
            if t.iter().all(|(c, v)| accept(c, v)) {
                Ok(t)
            } else {
                Err(format!("{t:#?}"))
            }
        }
    })
    .await
}

fn hash_of(template: &serde_json::Value) -> String {
    template
        .pointer(&format!(
            "/metadata/annotations/{}",
            CONFIG_HASH_ANNOTATION.replace('/', "~1")
        ))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

async fn events_with_reason(run: &Running, reason: &str) -> Vec<Event> {
    run.api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

#[tokio::test]
async fn sample_gets_every_child_with_its_content_and_becomes_ready() {
    let mut run = Running::start("op-ctl-sample", controller::DEFAULT_REQUEUE).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        run.controller.ready.wait_for(|r| *r),
    )
    .await
    .expect("the controller did not report ready within 10s of starting")
    .unwrap();
    let sp = run.create_sample().await;
    let uid = sp.uid().unwrap();
    let started = Instant::now();

    let owned = |meta: &kube::api::ObjectMeta| {
        let owner = &meta.owner_references.as_ref().expect("no owner reference")[0];
        assert_eq!(owner.uid, uid);
        assert_eq!(owner.kind, "StreamingPlatform");
        assert_eq!(owner.controller, Some(true));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["app.kubernetes.io/instance"], NAME);
        assert_eq!(
            labels["app.kubernetes.io/managed-by"],
            "polystream-operator"
        );
    };

    let deployments = eventually("every child", Duration::from_secs(30), || async {
        let lp = ListParams::default();
        let deployments = run.api::<Deployment>().list(&lp).await.unwrap().items;
        let policies = run.api::<NetworkPolicy>().list(&lp).await.unwrap().items;
        let hpas = run
            .api::<HorizontalPodAutoscaler>()
            .list(&lp)
            .await
            .unwrap()
            .items;
        // The NetworkPolicy is applied last.
        if deployments.len() == 3 && !policies.is_empty() && !hpas.is_empty() {
            Ok(deployments)
        } else {
            Err(format!(
                "{} Deployments, {} NetworkPolicies, {} HPAs",
                deployments.len(),
                policies.len(),
                hpas.len()
            ))
        }
    })
    .await;
    for d in &deployments {
        owned(&d.metadata);
        let component = &d.labels()["app.kubernetes.io/component"];
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        let binary = match component.as_str() {
            "gateway" => "polystream-s1-gateway",
            "processor" => "polystream-s2-processor",
            "monitor" => "polystream-s3-monitor",
            other => panic!("unexpected component {other}"),
        };
        assert_eq!(container.command.as_deref(), Some(&[binary.to_owned()][..]));
        assert_eq!(container.image.as_deref(), Some(default_image().as_str()));
        let from = container.env_from.as_ref().unwrap();
        assert_eq!(
            from[0].config_map_ref.as_ref().unwrap().name,
            format!("{NAME}-config")
        );
        // Credentials come from the Secret, never inline.
        let env = container.env.as_ref().unwrap();
        let redis = env.iter().find(|e| e.name == "REDIS_URL");
        if let Some(redis) = redis {
            let r = redis
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap();
            assert_eq!(
                (r.name.as_str(), r.key.as_str()),
                ("polystream-stores", "redis-uri")
            );
            assert!(redis.value.is_none());
        }
        assert!(
            !hash_of(&pod_template(d)).is_empty(),
            "no config hash on {}",
            d.name_any()
        );
        let sc = container.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
    }
    let processor = deployments
        .iter()
        .find(|d| d.name_any() == format!("{NAME}-processor"))
        .unwrap();
    assert_eq!(processor.spec.as_ref().unwrap().replicas, Some(2));

    let cm = run
        .api::<ConfigMap>()
        .get(&format!("{NAME}-config"))
        .await
        .unwrap();
    owned(&cm.metadata);
    assert_eq!(
        cm.data.as_ref().unwrap()["KAFKA_BOOTSTRAP_SERVERS"],
        sample().spec.stores.kafka.bootstrap_servers
    );
    let sa = run.api::<ServiceAccount>().get(NAME).await.unwrap();
    owned(&sa.metadata);
    let gateway = run
        .api::<Service>()
        .get(&format!("{NAME}-gateway"))
        .await
        .unwrap();
    owned(&gateway.metadata);
    assert!(
        gateway
            .spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .any(|p| p.port == 8080),
        "{gateway:?}"
    );
    let pdbs = run
        .api::<PodDisruptionBudget>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(pdbs.items.len(), 3, "one PodDisruptionBudget per component");
    pdbs.items.iter().for_each(|p| owned(&p.metadata));
    // Only the gateway autoscales in the sample.
    let hpas = run
        .api::<HorizontalPodAutoscaler>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(hpas.items.len(), 1, "{hpas:?}");
    let hpa = hpas.items[0].spec.as_ref().unwrap();
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(2), 5));
    assert_eq!(hpa.scale_target_ref.name, format!("{NAME}-gateway"));
    let policies = run
        .api::<NetworkPolicy>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(!policies.items.is_empty(), "no NetworkPolicy");
    policies.items.iter().for_each(|p| owned(&p.metadata));
    eprintln!("every child present after {:?}", started.elapsed());

    let sp = run.wait_ready().await;
    eprintln!("Ready after {:?}", started.elapsed());
    let status = sp.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, sp.metadata.generation);
    assert_eq!(
        status.gateway_url.as_deref(),
        Some(format!("http://{NAME}-gateway.{}.svc:8080", run.ns.name).as_str())
    );
    let processor = status.processor.as_ref().unwrap();
    assert_eq!(
        (processor.desired_replicas, processor.ready_replicas),
        (2, 2)
    );
    let gateway = status.gateway.as_ref().unwrap();
    assert_eq!(gateway.ready_replicas, gateway.desired_replicas);
    for c in ["Progressing", "Degraded", "Paused"] {
        assert_eq!(
            condition(&sp, c).map(|c| c.0),
            Some("False"),
            "{c}: {status:#?}"
        );
    }
    assert!(
        !events_with_reason(&run, "Ready").await.is_empty(),
        "no Ready Event was published"
    );

    // `kubectl get sp` shows the status through the printer columns.
    let stdout = kubectl(&["get", "sp", "-n", &run.ns.name, "--no-headers"]).await;
    let columns: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(
        columns[..3],
        [NAME, "True", status.gateway_url.as_deref().unwrap()],
        "{stdout}"
    );
    run.stop().await;
}

#[tokio::test]
async fn replicas_scale_settings_and_rotated_secrets_roll_nothing_else_does() {
    let run = Running::start("op-ctl-rollout", controller::DEFAULT_REQUEUE).await;
    run.create_sample().await;
    let before = wait_templates(&run, "the three Deployments", |_, t| !hash_of(t).is_empty()).await;

    // Replicas: the count changes, the pod templates do not.
    run.patch_spec(json!({"processor": {"replicas": 3}})).await;
    eventually("processor replicas 3", Duration::from_secs(30), || async {
        match run.replicas("processor").await {
            Some(3) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(
        templates(&run).await.unwrap(),
        before,
        "a replica change altered a pod template"
    );

    // A setting: the ConfigMap and the config hash change, nothing else in the template.
    let cm_before = run
        .api::<ConfigMap>()
        .get(&format!("{NAME}-config"))
        .await
        .unwrap()
        .data;
    run.patch_spec(json!({"observability": {"samplingRatio": 0.5}}))
        .await;
    let after_setting =
        wait_templates(&run, "a new config hash after a setting changed", |c, t| {
            hash_of(t) != hash_of(&before[c])
        })
        .await;
    for c in COMPONENTS {
        assert_eq!(
            without_hash(&after_setting[c]),
            without_hash(&before[c]),
            "{c}: the template changed beyond the hash"
        );
    }
    let cm_after = run
        .api::<ConfigMap>()
        .get(&format!("{NAME}-config"))
        .await
        .unwrap()
        .data;
    assert_ne!(
        cm_before, cm_after,
        "the ConfigMap did not change with the setting"
    );

    // A rotated Secret: a new version rolls the pods through the hash only.
    let secrets = run.api::<Secret>();
    secrets
        .patch(
            "polystream-stores",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"rotated-at": "now"}})),
        )
        .await
        .unwrap();
    let after_rotation = wait_templates(
        &run,
        "a new config hash after the Secret rotated",
        |c, t| hash_of(t) != hash_of(&after_setting[c]),
    )
    .await;
    for c in COMPONENTS {
        assert_eq!(
            without_hash(&after_rotation[c]),
            without_hash(&after_setting[c]),
            "{c}: the template changed beyond the hash"
        );
    }
    // The replica count survived it all.
    let processor = run.deployment("processor").await.unwrap();
    assert_eq!(processor.spec.as_ref().unwrap().replicas, Some(3));
    run.stop().await;
}

#[tokio::test]
async fn children_deleted_or_edited_by_hand_are_restored() {
    let run = Running::start("op-ctl-restore", controller::DEFAULT_REQUEUE).await;
    run.create_sample().await;
    let services = run.api::<Service>();
    let configmaps = run.api::<ConfigMap>();
    let gateway_svc = format!("{NAME}-gateway");
    let config = format!("{NAME}-config");
    let (svc_uid, cm_uid) = eventually(
        "the gateway Service and the ConfigMap",
        Duration::from_secs(30),
        || async {
            let svc = services.get_opt(&gateway_svc).await.unwrap();
            let cm = configmaps.get_opt(&config).await.unwrap();
            match (svc, cm) {
                (Some(s), Some(c)) => Ok((s.uid().unwrap(), c.uid().unwrap())),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    // Let the first reconciles settle so the deletions are drift, not creation.
    run.wait_ready().await;

    services
        .delete(&gateway_svc, &DeleteParams::default())
        .await
        .unwrap();
    configmaps
        .delete(&config, &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the deleted Service and ConfigMap to come back",
        Duration::from_secs(30),
        || async {
            let svc = services.get_opt(&gateway_svc).await.unwrap();
            let cm = configmaps.get_opt(&config).await.unwrap();
            match (svc, cm) {
                (Some(s), Some(c)) if s.uid().unwrap() != svc_uid && c.uid().unwrap() != cm_uid => {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // A hand edit of a field the operator manages, by another field manager.
    let deployments = run.api::<Deployment>();
    let processor = format!("{NAME}-processor");
    deployments
        .patch(
            &processor,
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"replicas": 7, "template": {"spec": {"containers": [
                    {"name": "processor", "image": "evil:latest"}
                ]}}}}),
            ),
        )
        .await
        .unwrap();
    eventually(
        "the edited Deployment to be restored",
        Duration::from_secs(30),
        || async {
            let d = deployments.get(&processor).await.unwrap();
            let spec = d.spec.as_ref().unwrap();
            let image = spec.template.spec.as_ref().unwrap().containers[0]
                .image
                .clone();
            if spec.replicas == Some(2) && image.as_deref() == Some(default_image().as_str()) {
                Ok(())
            } else {
                Err(format!("replicas {:?}, image {image:?}", spec.replicas))
            }
        },
    )
    .await;
    let managers: Vec<String> = deployments
        .get(&processor)
        .await
        .unwrap()
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(managers.iter().any(|m| m == FIELD_MANAGER), "{managers:?}");
    eventually("a Restored Event", Duration::from_secs(10), || async {
        let events = events_with_reason(&run, "Restored").await;
        if events.is_empty() {
            Err("none".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
    run.stop().await;
}

/// The API server's audit log (`./dev up kube_apiserver` writes every write
/// request to it; `./dev env` exports its path as `KUBE_AUDIT_LOG`).
fn audit_log_path() -> String {
    std::env::var("KUBE_AUDIT_LOG").unwrap_or_else(|_| {
        panic!(
            "KUBE_AUDIT_LOG is not set: run the tests with the local servers' settings \
             (`source <(./dev env)`, or `./dev test`), after `./dev up kube_apiserver`"
        )
    })
}

/// The audit log's current length: where a later [`audited_writes`] starts reading.
fn audit_log_offset() -> u64 {
    let path = audit_log_path();
    std::fs::metadata(&path)
        .unwrap_or_else(|e| {
            panic!("cannot read the API server's audit log {path}: {e} (is `./dev up kube_apiserver` running?)")
        })
        .len()
}

/// Every write request the tests' user (`polystream-admin` in the local
/// kubeconfig: the in-process operators and the tests themselves) sent into
/// `namespace` since `since`, read from `offset` on.
fn audited_writes(namespace: &str, since: Timestamp, offset: u64) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let path = audit_log_path();
    let mut file = std::fs::File::open(&path).unwrap();
    // A smaller file was rotated meanwhile: read the new one whole.
    let start = if file.metadata().unwrap().len() >= offset {
        offset
    } else {
        0
    };
    file.seek(SeekFrom::Start(start)).unwrap();
    let mut log = String::new();
    file.read_to_string(&mut log).unwrap();
    let needle = format!("\"namespace\":\"{namespace}\"");
    log.lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| {
            let verb = e["verb"].as_str().unwrap_or_default();
            matches!(
                verb,
                "create" | "update" | "patch" | "delete" | "deletecollection"
            ) && e["objectRef"]["namespace"] == namespace
                && e["user"]["username"] == "polystream-admin"
                && e["requestReceivedTimestamp"]
                    .as_str()
                    .and_then(|t| t.parse::<Timestamp>().ok())
                    .is_some_and(|t| t >= since)
        })
        .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
        .collect()
}

#[tokio::test]
async fn a_steady_state_makes_no_writes_for_a_minute() {
    // A short requeue, so the minute holds a dozen reconciles, not one.
    let run = Running::start("op-ctl-steady", Duration::from_secs(5)).await;
    run.create_sample().await;
    run.wait_ready().await;
    // The last status write and the writes' echoes settle first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let offset = audit_log_offset();
    let since = Timestamp::now();
    let reconciles_before = run.reconciliations();
    // Every distinct set of conditions seen in the window, to say what moved.
    let api = run.api::<StreamingPlatform>();
    let mut seen: Vec<Vec<(String, String, String, String)>> = Vec::new();
    let window = Instant::now() + Duration::from_secs(60);
    while Instant::now() < window {
        let sp = api.get(NAME).await.unwrap();
        let mut conditions: Vec<_> = sp
            .status
            .unwrap_or_default()
            .conditions
            .into_iter()
            .map(|c| (c.type_, c.status, c.reason, c.message))
            .collect();
        conditions.sort();
        if seen.last() != Some(&conditions) {
            seen.push(conditions);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let reconciles = run.reconciliations() - reconciles_before;
    // The apiserver writes its audit log synchronously, but give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writes = audited_writes(&run.ns.name, since, offset);
    assert!(
        reconciles >= 10,
        "only {reconciles} reconciles in the minute: the test proves nothing"
    );
    assert!(
        writes.is_empty(),
        "{} write requests in a steady state over {reconciles} reconciles:\n{}\n\
         conditions seen meanwhile: {seen:#?}",
        writes.len(),
        writes.join("\n")
    );

    // The counting itself works: a deleted child is restored, and the log shows it.
    let offset = audit_log_offset();
    let since = Timestamp::now();
    run.api::<Service>()
        .delete(&format!("{NAME}-gateway"), &DeleteParams::default())
        .await
        .unwrap();
    let ns = run.ns.name.clone();
    eventually(
        "the operator's restoring apply in the audit log",
        Duration::from_secs(30),
        || {
            let ns = ns.clone();
            async move {
                let writes = audited_writes(&ns, since, offset);
                if writes.iter().any(|w| {
                    w.contains("/services/polystream-gateway?")
                        && w.contains(&format!("fieldManager={FIELD_MANAGER}"))
                }) {
                    Ok(())
                } else {
                    Err(format!("{writes:?}"))
                }
            }
        },
    )
    .await;
    run.stop().await;
}

#[tokio::test]
async fn a_paused_platform_changes_nothing_and_says_so() {
    let run = Running::start("op-ctl-paused", controller::DEFAULT_REQUEUE).await;
    run.create_sample().await;
    run.wait_ready().await;

    run.patch_spec(json!({"paused": true, "processor": {"replicas": 4}}))
        .await;
    let api = run.api::<StreamingPlatform>();
    let sp = run
        .wait_condition(
            "the Paused condition",
            Duration::from_secs(30),
            "Paused",
            |(status, reason, _)| (status, reason) == ("True", "Paused"),
        )
        .await;
    let (_, _, paused) = condition(&sp, "Paused").unwrap();
    assert!(paused.contains("paused"), "{paused}");
    assert_eq!(
        condition(&sp, "Progressing").map(|(status, reason, _)| (status, reason)),
        Some(("False", "Paused"))
    );
    // Neither the new replica count nor a deleted child is acted on.
    run.api::<Service>()
        .delete(&format!("{NAME}-gateway"), &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        run.replicas("processor").await,
        Some(2),
        "paused, yet applied"
    );
    assert!(
        run.api::<Service>()
            .get_opt(&format!("{NAME}-gateway"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !events_with_reason(&run, "Paused").await.is_empty(),
        "no Paused Event"
    );

    // Resumed: everything catches up.
    run.patch_spec(json!({"paused": false})).await;
    eventually(
        "the changes after resuming",
        Duration::from_secs(30),
        || async {
            let replicas = run.replicas("processor").await;
            let svc = run
                .api::<Service>()
                .get_opt(&format!("{NAME}-gateway"))
                .await
                .unwrap();
            let sp = api.get(NAME).await.unwrap();
            if replicas == Some(4)
                && svc.is_some()
                && condition(&sp, "Paused").map(|c| c.0) == Some("False")
            {
                Ok(())
            } else {
                Err(format!(
                    "replicas {replicas:?}, service {}, {:?}",
                    svc.is_some(),
                    condition(&sp, "Paused")
                ))
            }
        },
    )
    .await;
    run.stop().await;
}

#[tokio::test]
async fn deleting_the_platform_garbage_collects_its_children() {
    let run = Running::start("op-ctl-gc", controller::DEFAULT_REQUEUE).await;
    run.create_sample().await;
    run.wait_deployments("the Deployments", 3).await;
    run.api::<StreamingPlatform>()
        .delete(NAME, &DeleteParams::background())
        .await
        .unwrap();
    // The controller-manager's garbage collector follows the owner references.
    eventually(
        "the children to be garbage-collected",
        Duration::from_secs(60),
        || async {
            let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={NAME}"));
            let counts = (
                run.count::<Deployment>(&lp).await,
                run.count::<ConfigMap>(&lp).await,
                run.count::<Service>(&lp).await,
                run.count::<ServiceAccount>(&lp).await,
                run.count::<PodDisruptionBudget>(&lp).await,
                run.count::<HorizontalPodAutoscaler>(&lp).await,
                run.count::<NetworkPolicy>(&lp).await,
            );
            if counts == (0, 0, 0, 0, 0, 0, 0) {
                Ok(())
            } else {
                Err(format!("{counts:?} left"))
            }
        },
    )
    .await;
    run.stop().await;
}

#[tokio::test]
async fn one_malformed_platform_does_not_stop_the_others() {
    let run = Running::start("op-ctl-malformed", controller::DEFAULT_REQUEUE).await;
    // Passes the schema (an integer ≥ 0) but not the Rust types (i32).
    let mut broken = serde_json::to_value(sample()).unwrap();
    broken["metadata"]["name"] = json!("broken");
    broken["spec"]["gateway"]["replicas"] = json!(3_000_000_000_i64);
    let dynamic: kube::api::DynamicObject = serde_json::from_value(broken).unwrap();
    let ar = controller::platform_resource();
    Api::<kube::api::DynamicObject>::namespaced_with(run.client.clone(), &run.ns.name, &ar)
        .create(&PostParams::default(), &dynamic)
        .await
        .expect("the API server refused a platform that passes the schema");
    run.create_sample().await;

    run.wait_deployments("the good platform's Deployments", 3)
        .await;
    let event = eventually(
        "an InvalidSpec Event for the broken platform",
        Duration::from_secs(30),
        || async {
            events_with_reason(&run, "InvalidSpec")
                .await
                .into_iter()
                .find(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("broken"))
                .ok_or_else(|| "none".to_owned())
        },
    )
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        event.note.unwrap_or_default().contains("replicas"),
        "the Event does not say what is wrong"
    );
    assert!(
        counter(
            &run.controller.metrics.encode(),
            "polystream_operator_reconcile_errors_total{kind=\"invalid_spec\"}"
        ) >= 1,
        "{}",
        run.controller.metrics.encode()
    );
    run.stop().await;
}

#[tokio::test]
async fn removing_autoscaling_deletes_the_hpa_and_sets_replicas() {
    let run = Running::start("op-ctl-hpa", controller::DEFAULT_REQUEUE).await;
    run.create_sample().await;
    let hpas = run.api::<HorizontalPodAutoscaler>();
    let gateway = format!("{NAME}-gateway");
    eventually("the gateway HPA", Duration::from_secs(30), || async {
        match hpas.get_opt(&gateway).await.unwrap() {
            Some(_) => Ok(()),
            None => Err("none".to_owned()),
        }
    })
    .await;
    run.patch_spec(json!({"gateway": {"autoscaling": null, "replicas": 3}}))
        .await;
    eventually(
        "the HPA deleted and the gateway at 3 replicas",
        Duration::from_secs(30),
        || async {
            let hpa = hpas.get_opt(&gateway).await.unwrap();
            let replicas = run.replicas("gateway").await;
            if hpa.is_none() && replicas == Some(3) {
                Ok(())
            } else {
                Err(format!(
                    "HPA present: {}, replicas {replicas:?}",
                    hpa.is_some()
                ))
            }
        },
    )
    .await;
    run.stop().await;
}
