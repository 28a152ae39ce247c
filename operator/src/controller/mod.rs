//! The controller: watches StreamingPlatforms, their children and the Secrets
//! they reference, and reconciles each platform into its children and status.
//!
//! Design points (issue 5):
//! - One field manager, [`FIELD_MANAGER`], for every server-side apply (children
//!   and status), always forced: the operator owns what it renders.
//! - A child is applied only when the live object does not already hold the
//!   desired content ([`compare::contains`]), and the status is patched only
//!   when it changed ([`status::differs`]): a steady state writes nothing.
//! - Platforms are watched as `DynamicObject`s and deserialised per reconcile,
//!   so one object that passes the schema but not the Rust types fails alone
//!   (a typed watcher would fail the whole list and stop every platform).
//!   Children and Secrets are watched metadata-only: only owner references
//!   and names matter for triggering, and Secret data never enters memory.
//! - Store problems are conditions, never errors: the operator keeps going.

pub mod compare;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, PartialObjectMeta, Patch, PatchParams,
};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::builders::{self, BuildInputs, Component};
use crate::crd::StreamingPlatform;
use crate::metrics::{ErrorKind, OperatorMetrics, PlatformCounts};
use crate::probes;
use crate::status::{self, DeploymentState, Notice, Observation};

/// The one field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "polystream-operator";
/// The Event reporter (`reportingController`).
pub const REPORTER: &str = "polystream-operator";
/// Every child carries this label (builders' `app.kubernetes.io/*` set).
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=polystream-operator";
/// Periodic re-reconcile: re-probes the stores even when nothing changes.
pub const DEFAULT_REQUEUE: Duration = Duration::from_secs(60);
/// A spec the Rust types refuse waits for an edit (which triggers anyway).
const INVALID_SPEC_RETRY: Duration = Duration::from_secs(300);
/// Re-probe interval while a store is unreachable, so recovery shows soon.
pub const DEGRADED_REQUEUE: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// How the controller runs; see `polystream-operator run` for the environment
/// variables that fill it.
pub struct ControllerConfig {
    /// Watch only this namespace; `None` watches all.
    pub namespace: Option<String>,
    /// Periodic re-reconcile of each platform.
    pub requeue_after: Duration,
    /// This replica's name in Events (`reportingInstance`), e.g. the pod name.
    pub instance: Option<String>,
    pub metrics: OperatorMetrics,
    /// Set to true once the platform cache is synced (the `/ready` endpoint).
    pub readiness: Option<watch::Sender<bool>>,
}

impl ControllerConfig {
    /// Defaults, watching only `namespace` (what the tests use).
    pub fn namespaced(namespace: &str) -> Self {
        Self {
            namespace: Some(namespace.to_owned()),
            ..Self::default()
        }
    }
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            requeue_after: DEFAULT_REQUEUE,
            instance: None,
            metrics: OperatorMetrics::new(),
            readiness: None,
        }
    }
}

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {verb} {what}: {source}")]
    Kube {
        verb: &'static str,
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("StreamingPlatform {name} does not match the operator's types: {problem}")]
    InvalidSpec { name: String, problem: String },
    #[error("cannot serialize {what}: {source}")]
    Serialization {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// The metric label of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Kube { .. } => ErrorKind::KubeApi,
            Error::InvalidSpec { .. } => ErrorKind::InvalidSpec,
            Error::Serialization { .. } => ErrorKind::Serialization,
        }
    }
}

fn kube_error(verb: &'static str, what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { verb, what, source }
}

struct Context {
    client: Client,
    recorder: Recorder,
    metrics: OperatorMetrics,
    requeue_after: Duration,
    platforms: Store<DynamicObject>,
    platform_resource: ApiResource,
    /// Child key → hash of the desired object the live one last matched. A
    /// later mismatch with the *same* desired object is a hand edit or a
    /// deletion (→ a "Restored" Event); a different hash is a spec change.
    in_sync: Mutex<HashMap<String, u64>>,
    /// Consecutive failures per platform, for the retry backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// uid → resourceVersion of a platform already reported as invalid.
    reported_invalid: Mutex<HashMap<String, String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data behind: keep going.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The StreamingPlatform API resource (the controller's dynamic type).
pub fn platform_resource() -> ApiResource {
    ApiResource::erase::<StreamingPlatform>(&())
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn scoped_dynamic(
    client: &Client,
    namespace: Option<&str>,
    ar: &ApiResource,
) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

/// Runs the controller until `shutdown` completes (then finishes the
/// reconciliations in flight and returns).
pub async fn run(
    client: Client,
    config: ControllerConfig,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = config.namespace.as_deref();
    let ar = platform_resource();
    let children = watcher::Config::default().labels(MANAGED_BY_SELECTOR);
    let mut controller = Controller::new_with(
        scoped_dynamic(&client, ns, &ar),
        watcher::Config::default(),
        ar.clone(),
    )
    .owns(scoped::<ConfigMap>(&client, ns), children.clone())
    .owns(scoped::<ServiceAccount>(&client, ns), children.clone())
    .owns(scoped::<Deployment>(&client, ns), children.clone())
    .owns(scoped::<Service>(&client, ns), children.clone())
    .owns(scoped::<PodDisruptionBudget>(&client, ns), children.clone())
    .owns(
        scoped::<HorizontalPodAutoscaler>(&client, ns),
        children.clone(),
    )
    .owns(scoped::<NetworkPolicy>(&client, ns), children.clone());
    // Watching a kind the cluster does not serve would only fail and retry.
    match service_monitor_crd_exists(&client).await {
        Ok(true) => {
            let sm = builders::service_monitor_api_resource();
            controller = controller.owns_with(scoped_dynamic(&client, ns, &sm), sm, children);
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell whether ServiceMonitors exist; not watching them")
        }
    }
    let store = controller.store();
    let mapper_store = store.clone();
    let mapper_ar = ar.clone();
    controller = controller.watches(
        scoped::<PartialObjectMeta<Secret>>(&client, ns),
        watcher::Config::default(),
        move |secret| platforms_referencing(&mapper_store, &mapper_ar, &secret),
    );

    if let Some(readiness) = config.readiness {
        let store = store.clone();
        tokio::spawn(async move {
            // The store's readiness is a oneshot that wakes only its latest
            // poller, and the controller's own runner polls it after us: poll
            // again on a timer instead of waiting for a wake-up that never comes.
            loop {
                match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready())
                    .await
                {
                    Ok(Ok(())) => {
                        readiness.send_replace(true);
                        break;
                    }
                    Ok(Err(_)) => break,
                    Err(_) => {}
                }
            }
        });
    }

    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: REPORTER.into(),
                instance: config.instance,
            },
        ),
        client,
        metrics: config.metrics,
        requeue_after: config.requeue_after,
        platforms: store,
        platform_resource: ar,
        in_sync: Mutex::default(),
        failures: Mutex::default(),
        reported_invalid: Mutex::default(),
    });
    tracing::info!(namespace = ns.unwrap_or("(all)"), "controller starting");
    controller
        // Coalesces the burst of events a rollout produces into one reconcile.
        .with_config(controller::Config::default().debounce(Duration::from_millis(300)))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                // Logged with its context by error_policy.
                Err(controller::Error::ReconcilerFailed(..)) => {}
                // A trigger for an object deleted meanwhile: nothing to do.
                Err(controller::Error::ObjectNotFound(object)) => {
                    tracing::debug!(%object, "reconcile skipped: object gone");
                }
                Err(e) => tracing::warn!(error = %e, "watch error; retrying with backoff"),
            }
        })
        .await;
    tracing::info!("controller stopped");
}

/// The platforms in the Secret's namespace that reference it.
fn platforms_referencing(
    store: &Store<DynamicObject>,
    ar: &ApiResource,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<DynamicObject>> {
    let name = secret.name_any();
    let namespace = secret.namespace();
    store
        .state()
        .into_iter()
        .filter(|obj| obj.namespace() == namespace)
        .filter(|obj| {
            parse(obj).is_ok_and(|sp| {
                builders::referenced_secrets(&sp)
                    .iter()
                    .any(|r| r.name == name)
            })
        })
        .map(|obj| ObjectRef::from_obj_with(obj.as_ref(), ar.clone()))
        .collect()
}

/// The typed platform; the error names the offending field
/// (`spec.gateway.replicas: invalid value ...`).
fn parse(obj: &DynamicObject) -> Result<StreamingPlatform, String> {
    let value = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(value).map_err(|e| e.to_string())
}

fn platform_key(obj: &DynamicObject) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_platform(&obj, &ctx).await;
    ctx.metrics.observe_reconcile(
        started.elapsed(),
        result.as_ref().map(|_| ()).map_err(Error::kind),
    );
    refresh_gauges(&ctx);
    if result.is_ok() {
        lock(&ctx.failures).remove(&platform_key(&obj));
    }
    result
}

/// Platforms-by-condition from the cache, and forgetting children of
/// platforms that are gone.
fn refresh_gauges(ctx: &Context) {
    let cached = ctx.platforms.state();
    let platforms: Vec<StreamingPlatform> = cached.iter().filter_map(|o| parse(o).ok()).collect();
    ctx.metrics.set_platforms(PlatformCounts::of(&platforms));
    // Bookkeeping of platforms that are gone is dropped, so it stays bounded.
    let uids: HashSet<String> = cached.iter().filter_map(|o| o.uid()).collect();
    let keys: HashSet<String> = cached.iter().map(|o| platform_key(o)).collect();
    lock(&ctx.in_sync).retain(|key, _| key.split('/').next().is_some_and(|uid| uids.contains(uid)));
    lock(&ctx.reported_invalid).retain(|uid, _| uids.contains(uid));
    lock(&ctx.failures).retain(|key, _| keys.contains(key));
}

fn error_policy(obj: Arc<DynamicObject>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = platform_key(&obj);
    let attempts = {
        let mut failures = lock(&ctx.failures);
        let n = failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    tracing::warn!(platform = %key, kind = error.kind().as_str(), attempts, error = %error, "reconcile failed");
    if matches!(error, Error::InvalidSpec { .. }) {
        return Action::requeue(INVALID_SPEC_RETRY);
    }
    Action::requeue(backoff(attempts))
}

/// 1 s, 2 s, 4 s ... capped at five minutes.
fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exp).min(MAX_BACKOFF)
}

async fn reconcile_platform(cached: &DynamicObject, ctx: &Context) -> Result<Action, Error> {
    // The cache may trail the API server by a moment; acting on a stale spec
    // (still unpaused, old replicas) or a stale status (a duplicate write) is
    // worse than one GET per reconcile.
    let namespace = cached.namespace().unwrap_or_default();
    let api = Api::<DynamicObject>::namespaced_with(
        ctx.client.clone(),
        &namespace,
        &ctx.platform_resource,
    );
    let Some(fresh) = api
        .get_opt(&cached.name_any())
        .await
        .map_err(kube_error("read", platform_key(cached)))?
    else {
        return Ok(Action::await_change());
    };
    let obj = &fresh;
    if obj.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the children.
        return Ok(Action::await_change());
    }
    let reference = obj.object_ref(&ctx.platform_resource);
    let sp = match parse(obj) {
        Ok(sp) => sp,
        Err(problem) => {
            report_invalid(obj, &reference, &problem, ctx).await;
            return Err(Error::InvalidSpec {
                name: platform_key(obj),
                problem,
            });
        }
    };
    let name = sp.name_any();
    let namespace = sp.namespace().unwrap_or_default();
    let uid = sp.uid().unwrap_or_default();
    let mut sync = ChildSync {
        ctx,
        namespace: &namespace,
        selector: format!("app.kubernetes.io/instance={name},{MANAGED_BY_SELECTOR}"),
        uid: &uid,
        restored: Vec::new(),
    };

    let (stores, deployments) = if sp.spec.paused {
        // Read-only: the status still reports the pods.
        let live: Vec<Deployment> = sync.list(&sync.api()).await?.into_values().collect();
        (None, live)
    } else {
        let report = probes::check_stores(&ctx.client, &sp).await;
        let service_monitor_crd = service_monitor_crd_exists(&ctx.client)
            .await
            .map_err(kube_error("discover", "the monitoring.coreos.com/v1 API"))?;
        let children = builders::build_children(
            &sp,
            &BuildInputs {
                secret_versions: report.secret_versions.clone(),
                service_monitor_crd,
            },
        );
        sync.kind(sync.api(), vec![children.config_map]).await?;
        sync.kind(sync.api(), vec![children.service_account])
            .await?;
        sync.kind(sync.api(), children.services).await?;
        let deployments = sync.kind(sync.api(), children.deployments).await?;
        sync.kind(sync.api(), children.pod_disruption_budgets)
            .await?;
        sync.kind(sync.api(), children.horizontal_pod_autoscalers)
            .await?;
        sync.kind(sync.api(), vec![children.network_policy]).await?;
        if service_monitor_crd {
            let sm = builders::service_monitor_api_resource();
            let api = Api::namespaced_with(ctx.client.clone(), &namespace, &sm);
            sync.kind(api, children.service_monitor.into_iter().collect())
                .await?;
        }
        (Some(report.checks), deployments)
    };

    let states: Vec<DeploymentState> = Component::ALL
        .iter()
        .map(|&c| {
            let live = deployments.iter().find(|d| {
                d.labels()
                    .get("app.kubernetes.io/component")
                    .map(String::as_str)
                    == Some(c.name())
            });
            let spec = c.spec(&sp.spec);
            let autoscaling_min = spec.autoscaling.as_ref().map(|a| a.min_replicas);
            DeploymentState::observe(c, live, spec.replicas, autoscaling_min)
        })
        .collect();
    let next = status::compute(
        sp.status.as_ref(),
        &Observation {
            generation: sp.metadata.generation,
            paused: sp.spec.paused,
            stores: stores.as_deref(),
            deployments: &states,
            gateway_url: builders::gateway_url(&sp),
        },
        k8s_openapi::jiff::Timestamp::now(),
    );
    if status::differs(sp.status.as_ref(), &next) {
        let patch = serde_json::json!({
            "apiVersion": ctx.platform_resource.api_version,
            "kind": ctx.platform_resource.kind,
            "metadata": {"name": name},
            "status": next,
        });
        Api::<StreamingPlatform>::namespaced(ctx.client.clone(), &namespace)
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(kube_error(
                "update the status of",
                format!("StreamingPlatform {namespace}/{name}"),
            ))?;
        ctx.metrics.api_write("status");
    }

    let mut notices = status::notices(sp.status.as_ref(), &next);
    notices.extend(sync.restored.iter().map(|what| Notice {
        warning: false,
        reason: "Restored",
        note: format!("{what} was changed or deleted outside the operator; restored"),
    }));
    for notice in notices {
        publish(ctx, &reference, &notice).await;
    }
    // A store coming back changes nothing the watches see: look again soon.
    let store_down = stores
        .as_deref()
        .is_some_and(|checks| checks.iter().any(|c| !c.ok));
    Ok(Action::requeue(if store_down {
        ctx.requeue_after.min(DEGRADED_REQUEUE)
    } else {
        ctx.requeue_after
    }))
}

async fn publish(ctx: &Context, reference: &ObjectReference, notice: &Notice) {
    let event = Event {
        type_: if notice.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: notice.reason.into(),
        note: Some(notice.note.clone()),
        action: "Reconcile".into(),
        secondary: None,
    };
    // An Event is information, not state: failing to write one fails nothing.
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, reason = notice.reason, "cannot publish an Event");
    }
}

/// One Warning Event per version of a platform the types refuse.
async fn report_invalid(
    obj: &DynamicObject,
    reference: &ObjectReference,
    problem: &str,
    ctx: &Context,
) {
    let uid = obj.uid().unwrap_or_default();
    let version = obj.resource_version().unwrap_or_default();
    if lock(&ctx.reported_invalid).insert(uid, version.clone()) == Some(version) {
        return;
    }
    let notice = Notice {
        warning: true,
        reason: "InvalidSpec",
        note: format!("the operator cannot read this StreamingPlatform: {problem}"),
    };
    publish(ctx, reference, &notice).await;
}

/// Whether the cluster serves `monitoring.coreos.com/v1` ServiceMonitors (a
/// single discovery GET).
pub async fn service_monitor_crd_exists(client: &Client) -> Result<bool, kube::Error> {
    let sm = builders::service_monitor_api_resource();
    match client.list_api_group_resources(&sm.api_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == sm.plural)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Brings one platform's children of each kind to the desired state.
struct ChildSync<'a> {
    ctx: &'a Context,
    namespace: &'a str,
    /// This platform's children (instance + managed-by labels).
    selector: String,
    uid: &'a str,
    /// "Kind name" of every child restored after a hand edit or deletion.
    restored: Vec<String>,
}

impl ChildSync<'_> {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.ctx.client.clone(), self.namespace)
    }

    /// This platform's live children of one kind, by name.
    async fn list<K>(&self, api: &Api<K>) -> Result<BTreeMap<String, K>, Error>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
    {
        let what = format!("{} in {}", api.resource_url(), self.namespace);
        let list = api
            .list(&ListParams::default().labels(&self.selector))
            .await
            .map_err(kube_error("list", what))?;
        Ok(list.items.into_iter().map(|o| (o.name_any(), o)).collect())
    }

    /// Applies each desired object the live one does not already match,
    /// deletes this platform's children of the kind that are no longer
    /// desired, and returns the resulting objects.
    async fn kind<K>(&mut self, api: Api<K>, desired: Vec<K>) -> Result<Vec<K>, Error>
    where
        K: Resource + Clone + Serialize + DeserializeOwned + Debug,
    {
        let mut live = self.list(&api).await?;
        let kind = plural(&api);
        let mut result = Vec::with_capacity(desired.len());
        for want in desired {
            let name = want.name_any();
            let what = format!("{kind} {}/{name}", self.namespace);
            let want_json = serde_json::to_value(&want).map_err(|source| Error::Serialization {
                what: what.clone(),
                source,
            })?;
            let fingerprint = fingerprint(&want_json);
            let key = format!("{}/{kind}/{name}", self.uid);
            let current = live.remove(&name);
            if let Some(current) = current {
                let current_json =
                    serde_json::to_value(&current).map_err(|source| Error::Serialization {
                        what: what.clone(),
                        source,
                    })?;
                if compare::contains(&want_json, &current_json) {
                    lock(&self.ctx.in_sync).insert(key, fingerprint);
                    result.push(current);
                    continue;
                }
            }
            let drifted = lock(&self.ctx.in_sync).get(&key) == Some(&fingerprint);
            tracing::info!(object = %what, drifted, "applying");
            let applied = api
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&want),
                )
                .await
                .map_err(kube_error("apply", what.clone()))?;
            self.ctx.metrics.api_write("apply");
            lock(&self.ctx.in_sync).insert(key, fingerprint);
            if drifted {
                self.restored.push(format!("{kind} {name}"));
            }
            result.push(applied);
        }
        // What is left is ours but no longer desired (an HPA after autoscaling
        // was turned off, a ServiceMonitor switched off...).
        for (name, stale) in live {
            let ours = stale
                .owner_references()
                .iter()
                .any(|o| o.uid == self.uid && o.controller == Some(true));
            if !ours {
                continue;
            }
            let what = format!("{kind} {}/{name}", self.namespace);
            tracing::info!(object = %what, "deleting a child no longer desired");
            let deleted = api.delete(&name, &DeleteParams::background()).await;
            self.ctx.metrics.api_write("delete");
            match deleted {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(kube_error("delete", what)(e)),
            }
        }
        Ok(result)
    }
}

/// The resource's plural (`deployments`), for messages and keys.
fn plural<K: Resource>(api: &Api<K>) -> String {
    api.resource_url()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn fingerprint(value: &serde_json::Value) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.to_string().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(9), Duration::from_secs(256));
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn error_kinds_are_the_metric_labels() {
        let e = Error::InvalidSpec {
            name: "ns/p".into(),
            problem: "spec.gateway.replicas: invalid value".into(),
        };
        assert_eq!(e.kind(), ErrorKind::InvalidSpec);
        assert!(e.to_string().contains("ns/p"), "{e}");
    }

    #[test]
    fn a_platform_that_fails_the_types_is_reported_not_fatal() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "polystream.dev/v1alpha1",
            "kind": "StreamingPlatform",
            "metadata": {"name": "broken", "namespace": "ns"},
            "spec": {"gateway": {"replicas": 3_000_000_000_i64}, "stores": {}}
        }))
        .unwrap();
        let err = parse(&obj).unwrap_err();
        assert!(err.starts_with("spec.gateway.replicas: "), "{err}");
    }
}
