//! Pure status computation: what the operator observed → the
//! `StreamingPlatform` status, and which transitions deserve an Event.
//!
//! No I/O and no clock (the caller passes `now`), so every rule here is
//! unit-tested directly. Messages are deterministic on purpose: a message that
//! changed on every reconcile (a latency, a timestamp) would make the status
//! differ each time and turn a steady state into a stream of writes.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::builders::Component;
use crate::crd::{ComponentStatus, StreamingPlatformStatus};
use crate::probes::StoreCheck;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const PAUSED: &str = "Paused";

/// The conditions the operator always sets; every other type is a store's.
pub const PLATFORM_CONDITIONS: [&str; 4] = [READY, PROGRESSING, DEGRADED, PAUSED];

const TRUE: &str = "True";
const FALSE: &str = "False";

/// What one component's Deployment looks like on the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentState {
    pub component: Component,
    /// False until the Deployment exists.
    pub exists: bool,
    /// `spec.replicas` (the autoscaler's choice when it owns the count).
    pub desired: i32,
    /// Pods (old and new) the Deployment currently has.
    pub replicas: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
    /// The Deployment controller has seen the latest pod template.
    pub generation_observed: bool,
}

impl DeploymentState {
    /// Reads `deployment`. `spec_replicas` is what the platform asks for
    /// (reported while the Deployment does not exist yet); with autoscaling,
    /// `autoscaling_min` is a floor: the Deployment starts at one replica
    /// until the HPA raises it, and that is not ready yet.
    pub fn observe(
        component: Component,
        deployment: Option<&Deployment>,
        spec_replicas: i32,
        autoscaling_min: Option<i32>,
    ) -> Self {
        let floor = autoscaling_min.unwrap_or(0);
        let Some(d) = deployment else {
            return Self {
                component,
                exists: false,
                desired: autoscaling_min.unwrap_or(spec_replicas),
                replicas: 0,
                updated: 0,
                ready: 0,
                available: 0,
                generation_observed: false,
            };
        };
        let status = d.status.clone().unwrap_or_default();
        // The API server defaults spec.replicas to 1.
        let desired = d
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1)
            .max(floor);
        let generation_observed = match (d.metadata.generation, status.observed_generation) {
            (Some(generation), Some(observed)) => observed >= generation,
            _ => false,
        };
        Self {
            component,
            exists: true,
            desired,
            replicas: status.replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
            generation_observed,
        }
    }

    /// The same test as `kubectl rollout status`: the current template is
    /// observed, every pod runs it, and all of them are available.
    pub fn rolled_out(&self) -> bool {
        self.exists
            && self.generation_observed
            && self.updated >= self.desired
            && self.replicas <= self.updated
            && self.available >= self.updated
    }

    /// Rolled out and every desired pod is ready.
    pub fn ready(&self) -> bool {
        self.rolled_out() && self.ready >= self.desired
    }

    /// Why the component is not ready, for condition messages.
    fn describe(&self) -> String {
        let name = self.component.name();
        if !self.exists {
            format!("{name}: Deployment not created yet")
        } else if !self.generation_observed {
            format!("{name}: Deployment controller has not seen the new pod template yet")
        } else if self.replicas > self.updated {
            format!(
                "{name}: {} of {} pods run the current template",
                self.updated, self.desired
            )
        } else {
            format!("{name}: {} of {} pods ready", self.ready, self.desired)
        }
    }
}

/// Everything one reconcile observed.
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    /// `metadata.generation` of the platform.
    pub generation: Option<i64>,
    pub paused: bool,
    /// The store checks of this reconcile; `None` when the stores were not
    /// probed (paused), in which case the previous store conditions stand.
    pub stores: Option<&'a [StoreCheck]>,
    /// One per component, in [`Component::ALL`] order.
    pub deployments: &'a [DeploymentState],
    pub gateway_url: String,
}

/// A condition before its transition time is settled.
struct Draft {
    type_: String,
    ok: bool,
    reason: String,
    message: String,
}

/// The status for `obs`, keeping each condition's `lastTransitionTime` from
/// `previous` while its value does not change.
pub fn compute(
    previous: Option<&StreamingPlatformStatus>,
    obs: &Observation<'_>,
    now: Timestamp,
) -> StreamingPlatformStatus {
    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let stores: Vec<Draft> = match obs.stores {
        Some(checks) => checks
            .iter()
            .map(|c| Draft {
                type_: c.condition_type.to_owned(),
                ok: c.ok,
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
            .collect(),
        None => previous_conditions
            .iter()
            .filter(|c| !PLATFORM_CONDITIONS.contains(&c.type_.as_str()))
            .map(|c| Draft {
                type_: c.type_.clone(),
                ok: c.status == TRUE,
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
            .collect(),
    };

    let failed: Vec<&Draft> = stores.iter().filter(|s| !s.ok).collect();
    let degraded = if failed.is_empty() {
        Draft {
            type_: DEGRADED.into(),
            ok: false,
            reason: "StoresReachable".into(),
            message: "every store connection is healthy".into(),
        }
    } else {
        Draft {
            type_: DEGRADED.into(),
            ok: true,
            reason: "StoreUnavailable".into(),
            message: failed
                .iter()
                .map(|s| format!("{} ({}): {}", s.type_, s.reason, s.message))
                .collect::<Vec<_>>()
                .join("; "),
        }
    };

    let not_rolled_out: Vec<String> = obs
        .deployments
        .iter()
        .filter(|d| !d.rolled_out())
        .map(DeploymentState::describe)
        .collect();
    let progressing = if obs.paused {
        Draft {
            type_: PROGRESSING.into(),
            ok: false,
            reason: "Paused".into(),
            message: "spec.paused is true: no changes are rolled out".into(),
        }
    } else if not_rolled_out.is_empty() {
        Draft {
            type_: PROGRESSING.into(),
            ok: false,
            reason: "RolloutComplete".into(),
            message: "every Deployment runs its current pod template".into(),
        }
    } else {
        Draft {
            type_: PROGRESSING.into(),
            ok: true,
            reason: "RollingOut".into(),
            message: not_rolled_out.join("; "),
        }
    };

    let not_ready: Vec<String> = obs
        .deployments
        .iter()
        .filter(|d| !d.ready())
        .map(DeploymentState::describe)
        .collect();
    let ready = if !failed.is_empty() {
        Draft {
            type_: READY.into(),
            ok: false,
            reason: "StoreUnavailable".into(),
            message: format!(
                "unavailable: {}",
                failed
                    .iter()
                    .map(|s| s.type_.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    } else if !not_ready.is_empty() {
        Draft {
            type_: READY.into(),
            ok: false,
            reason: "ComponentsNotReady".into(),
            message: not_ready.join("; "),
        }
    } else {
        Draft {
            type_: READY.into(),
            ok: true,
            reason: "AllComponentsReady".into(),
            message: "every component is ready and every store reachable".into(),
        }
    };

    let paused = if obs.paused {
        Draft {
            type_: PAUSED.into(),
            ok: true,
            reason: "Paused".into(),
            message: "spec.paused is true: the operator changes none of the platform's objects"
                .into(),
        }
    } else {
        Draft {
            type_: PAUSED.into(),
            ok: false,
            reason: "Reconciling".into(),
            message: "the operator applies the spec".into(),
        }
    };

    let conditions = [ready, progressing, degraded, paused]
        .into_iter()
        .chain(stores)
        .map(|d| settle(d, previous_conditions, obs.generation, now))
        .collect();

    let component = |c: Component| {
        obs.deployments
            .iter()
            .find(|d| d.component == c)
            .map(|d| ComponentStatus {
                desired_replicas: d.desired,
                ready_replicas: d.ready,
            })
    };
    StreamingPlatformStatus {
        observed_generation: obs.generation,
        conditions,
        gateway: component(Component::Gateway),
        processor: component(Component::Processor),
        monitor: component(Component::Monitor),
        gateway_url: Some(obs.gateway_url.clone()),
    }
}

fn settle(d: Draft, previous: &[Condition], generation: Option<i64>, now: Timestamp) -> Condition {
    let status = if d.ok { TRUE } else { FALSE };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == d.type_ && c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    Condition {
        type_: d.type_,
        status: status.into(),
        reason: d.reason,
        message: d.message,
        last_transition_time,
        observed_generation: generation,
    }
}

/// Whether writing `next` would change anything; the order of conditions
/// does not count (the API server keeps a list-map in its own order).
pub fn differs(current: Option<&StreamingPlatformStatus>, next: &StreamingPlatformStatus) -> bool {
    let Some(current) = current else {
        return true;
    };
    let sorted = |s: &StreamingPlatformStatus| {
        let mut s = s.clone();
        s.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
        s
    };
    sorted(current) != sorted(next)
}

/// The status of condition `type_`, if set.
pub fn condition<'a>(
    status: Option<&'a StreamingPlatformStatus>,
    type_: &str,
) -> Option<&'a Condition> {
    status?.conditions.iter().find(|c| c.type_ == type_)
}

fn is_true(status: Option<&StreamingPlatformStatus>, type_: &str) -> bool {
    condition(status, type_).is_some_and(|c| c.status == TRUE)
}

/// A transition worth a Kubernetes Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    /// CamelCase Event reason.
    pub reason: &'static str,
    pub note: String,
}

/// The notable transitions from `previous` to `next`: became Ready, became
/// (or stays, for another reason) Degraded, recovered, paused, resumed.
/// Nothing for an unchanged status, so a reconcile loop emits no Events.
pub fn notices(
    previous: Option<&StreamingPlatformStatus>,
    next: &StreamingPlatformStatus,
) -> Vec<Notice> {
    let mut out = Vec::new();
    let now = Some(next);
    if is_true(now, PAUSED) && !is_true(previous, PAUSED) {
        out.push(Notice {
            warning: false,
            reason: "Paused",
            note: "spec.paused is true: the operator stopped changing the platform's objects"
                .into(),
        });
    }
    if !is_true(now, PAUSED) && is_true(previous, PAUSED) {
        out.push(Notice {
            warning: false,
            reason: "Resumed",
            note: "spec.paused is false again: the operator applies the spec".into(),
        });
    }
    let degraded_now = condition(now, DEGRADED).filter(|c| c.status == TRUE);
    let degraded_before = condition(previous, DEGRADED).filter(|c| c.status == TRUE);
    match (degraded_before, degraded_now) {
        (None, Some(c)) => out.push(Notice {
            warning: true,
            reason: "Degraded",
            note: c.message.clone(),
        }),
        // Still degraded, but a different store or reason: worth saying.
        (Some(before), Some(c)) if before.message != c.message => out.push(Notice {
            warning: true,
            reason: "Degraded",
            note: c.message.clone(),
        }),
        (Some(_), None) => out.push(Notice {
            warning: false,
            reason: "Recovered",
            note: "every store connection is healthy again".into(),
        }),
        _ => {}
    }
    if is_true(now, READY) && !is_true(previous, READY) {
        out.push(Notice {
            warning: false,
            reason: "Ready",
            note: "every component is ready and every store reachable".into(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn ready_state(component: Component, n: i32) -> DeploymentState {
        DeploymentState {
            component,
            exists: true,
            desired: n,
            replicas: n,
            updated: n,
            ready: n,
            available: n,
            generation_observed: true,
        }
    }

    fn all_ready() -> Vec<DeploymentState> {
        vec![
            ready_state(Component::Gateway, 2),
            ready_state(Component::Processor, 2),
            ready_state(Component::Monitor, 1),
        ]
    }

    fn check(type_: &'static str, ok: bool, message: &str) -> StoreCheck {
        StoreCheck {
            condition_type: type_,
            ok,
            reason: if ok { "Connected" } else { "Unreachable" }.into(),
            message: message.into(),
        }
    }

    fn healthy_stores() -> Vec<StoreCheck> {
        vec![
            check("SecretsReady", true, "all referenced Secret keys exist"),
            check("KafkaReady", true, "3 topics with 6 partitions"),
            check("PostgresReady", true, "connected"),
        ]
    }

    fn obs<'a>(
        stores: Option<&'a [StoreCheck]>,
        deployments: &'a [DeploymentState],
    ) -> Observation<'a> {
        Observation {
            generation: Some(3),
            paused: false,
            stores,
            deployments,
            gateway_url: "http://p-gateway.ns.svc:8080".into(),
        }
    }

    fn get<'a>(s: &'a StreamingPlatformStatus, type_: &str) -> &'a Condition {
        condition(Some(s), type_).unwrap_or_else(|| panic!("no {type_} condition in {s:?}"))
    }

    #[test]
    fn all_ready_and_reachable_is_ready() {
        let stores = healthy_stores();
        let deployments = all_ready();
        let s = compute(None, &obs(Some(&stores), &deployments), t(0));
        assert_eq!(get(&s, READY).status, "True");
        assert_eq!(get(&s, READY).reason, "AllComponentsReady");
        assert_eq!(get(&s, DEGRADED).status, "False");
        assert_eq!(get(&s, PROGRESSING).status, "False");
        assert_eq!(get(&s, PAUSED).status, "False");
        assert_eq!(get(&s, "KafkaReady").status, "True");
        assert_eq!(get(&s, "KafkaReady").reason, "Connected");
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(get(&s, READY).observed_generation, Some(3));
        assert_eq!(
            s.gateway,
            Some(ComponentStatus {
                desired_replicas: 2,
                ready_replicas: 2
            })
        );
        assert_eq!(
            s.gateway_url.as_deref(),
            Some("http://p-gateway.ns.svc:8080")
        );
        assert_eq!(
            s.conditions[0].type_, READY,
            "platform conditions come first"
        );
    }

    #[test]
    fn transition_time_is_kept_while_the_value_does_not_change() {
        let stores = healthy_stores();
        let deployments = all_ready();
        let first = compute(None, &obs(Some(&stores), &deployments), t(0));
        let second = compute(Some(&first), &obs(Some(&stores), &deployments), t(100));
        assert_eq!(get(&second, READY).last_transition_time, Time(t(0)));
        assert!(
            !differs(Some(&first), &second),
            "a steady state must not write"
        );

        let broken = vec![check("KafkaReady", false, "cannot reach 127.0.0.1:1")];
        let third = compute(Some(&second), &obs(Some(&broken), &deployments), t(200));
        assert_eq!(get(&third, READY).last_transition_time, Time(t(200)));
        assert_eq!(get(&third, DEGRADED).last_transition_time, Time(t(200)));
        // Progressing did not change value: its time stays.
        assert_eq!(get(&third, PROGRESSING).last_transition_time, Time(t(0)));
        assert!(differs(Some(&second), &third));
    }

    #[test]
    fn a_failed_store_degrades_naming_the_store_and_why() {
        let stores = vec![
            check("KafkaReady", true, "ok"),
            check("PostgresReady", false, "connection refused at 127.0.0.1:1"),
        ];
        let deployments = all_ready();
        let s = compute(None, &obs(Some(&stores), &deployments), t(0));
        let degraded = get(&s, DEGRADED);
        assert_eq!(degraded.status, "True");
        assert_eq!(degraded.reason, "StoreUnavailable");
        assert_eq!(
            degraded.message,
            "PostgresReady (Unreachable): connection refused at 127.0.0.1:1"
        );
        let ready = get(&s, READY);
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "StoreUnavailable");
        assert_eq!(ready.message, "unavailable: PostgresReady");
        assert_eq!(get(&s, "PostgresReady").status, "False");
        assert_eq!(get(&s, "PostgresReady").reason, "Unreachable");
    }

    #[test]
    fn a_rollout_in_progress_is_progressing_and_not_ready() {
        let stores = healthy_stores();
        let mut deployments = all_ready();
        deployments[1].updated = 1;
        deployments[1].ready = 1;
        deployments[2] = DeploymentState::observe(Component::Monitor, None, 1, None);
        let s = compute(None, &obs(Some(&stores), &deployments), t(0));
        let progressing = get(&s, PROGRESSING);
        assert_eq!(progressing.status, "True");
        assert_eq!(progressing.reason, "RollingOut");
        assert_eq!(
            progressing.message,
            "processor: 1 of 2 pods run the current template; monitor: Deployment not created yet"
        );
        assert_eq!(get(&s, READY).status, "False");
        assert_eq!(get(&s, READY).reason, "ComponentsNotReady");
        assert_eq!(
            s.monitor,
            Some(ComponentStatus {
                desired_replicas: 1,
                ready_replicas: 0
            })
        );
    }

    #[test]
    fn rolled_out_but_not_ready_pods_are_not_ready() {
        let mut d = ready_state(Component::Gateway, 2);
        d.ready = 1;
        assert!(d.rolled_out());
        assert!(!d.ready());
        assert_eq!(d.describe(), "gateway: 1 of 2 pods ready");
    }

    #[test]
    fn paused_keeps_the_previous_store_conditions_and_says_so() {
        let stores = vec![check("KafkaReady", false, "down")];
        let deployments = all_ready();
        let before = compute(None, &obs(Some(&stores), &deployments), t(0));
        let mut paused = obs(None, &deployments);
        paused.paused = true;
        let s = compute(Some(&before), &paused, t(50));
        let p = get(&s, PAUSED);
        assert_eq!((p.status.as_str(), p.reason.as_str()), ("True", "Paused"));
        assert!(p.message.contains("spec.paused"), "{}", p.message);
        assert_eq!(p.last_transition_time, Time(t(50)));
        let progressing = get(&s, PROGRESSING);
        assert_eq!(progressing.status, "False");
        assert_eq!(progressing.reason, "Paused");
        // The store result from before the pause stands, with its time.
        let kafka = get(&s, "KafkaReady");
        assert_eq!(kafka.status, "False");
        assert_eq!(kafka.message, "down");
        assert_eq!(kafka.last_transition_time, Time(t(0)));
        assert_eq!(get(&s, DEGRADED).status, "True");
    }

    #[test]
    fn a_store_no_longer_checked_loses_its_condition() {
        let mut stores = healthy_stores();
        stores.push(check("OpenSearchReady", true, "green"));
        let deployments = all_ready();
        let before = compute(None, &obs(Some(&stores), &deployments), t(0));
        stores.pop();
        let after = compute(Some(&before), &obs(Some(&stores), &deployments), t(1));
        assert!(condition(Some(&after), "OpenSearchReady").is_none());
    }

    #[test]
    fn condition_order_does_not_count_as_a_change() {
        let stores = healthy_stores();
        let deployments = all_ready();
        let s = compute(None, &obs(Some(&stores), &deployments), t(0));
        let mut reordered = s.clone();
        reordered.conditions.reverse();
        assert!(!differs(Some(&reordered), &s));
        assert!(differs(None, &s));
    }

    #[test]
    fn observe_reads_the_deployment() {
        let d = Deployment {
            metadata: ObjectMeta {
                generation: Some(4),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(3),
                ..DeploymentSpec::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(3),
                replicas: Some(3),
                updated_replicas: Some(3),
                ready_replicas: Some(3),
                available_replicas: Some(3),
                ..DeploymentStatus::default()
            }),
        };
        let s = DeploymentState::observe(Component::Processor, Some(&d), 1, None);
        assert_eq!(s.desired, 3);
        assert!(!s.generation_observed, "generation 4 not yet observed");
        assert!(!s.ready());
        let mut d = d;
        d.status.as_mut().unwrap().observed_generation = Some(4);
        assert!(DeploymentState::observe(Component::Processor, Some(&d), 1, None).ready());
        // Autoscaled with a floor of 5: three pods are not enough yet.
        let s = DeploymentState::observe(Component::Processor, Some(&d), 1, Some(5));
        assert_eq!(s.desired, 5);
        assert!(!s.ready());
        assert_eq!(s.describe(), "processor: 3 of 5 pods ready");
    }

    #[test]
    fn notices_on_transitions_only() {
        let healthy = healthy_stores();
        let broken = vec![check("RedisReady", false, "refused")];
        let deployments = all_ready();
        let mut rolling = all_ready();
        rolling[0].ready = 0;

        let starting = compute(None, &obs(Some(&healthy), &rolling), t(0));
        let n = notices(None, &starting);
        assert!(n.is_empty(), "{n:?}");

        let ready = compute(Some(&starting), &obs(Some(&healthy), &deployments), t(1));
        let n = notices(Some(&starting), &ready);
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!((n[0].reason, n[0].warning), ("Ready", false));

        let again = compute(Some(&ready), &obs(Some(&healthy), &deployments), t(2));
        assert!(notices(Some(&ready), &again).is_empty());

        let degraded = compute(Some(&again), &obs(Some(&broken), &deployments), t(3));
        let n = notices(Some(&again), &degraded);
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!((n[0].reason, n[0].warning), ("Degraded", true));
        assert_eq!(n[0].note, "RedisReady (Unreachable): refused");
        let still = compute(Some(&degraded), &obs(Some(&broken), &deployments), t(4));
        assert!(notices(Some(&degraded), &still).is_empty());

        let recovered = compute(Some(&still), &obs(Some(&healthy), &deployments), t(5));
        let reasons: Vec<_> = notices(Some(&still), &recovered)
            .iter()
            .map(|n| n.reason)
            .collect();
        assert_eq!(reasons, ["Recovered", "Ready"]);

        let mut paused_obs = obs(None, &deployments);
        paused_obs.paused = true;
        let paused = compute(Some(&recovered), &paused_obs, t(6));
        let reasons: Vec<_> = notices(Some(&recovered), &paused)
            .iter()
            .map(|n| n.reason)
            .collect();
        assert_eq!(reasons, ["Paused"]);
        let resumed = compute(Some(&paused), &obs(Some(&healthy), &deployments), t(7));
        let reasons: Vec<_> = notices(Some(&paused), &resumed)
            .iter()
            .map(|n| n.reason)
            .collect();
        assert_eq!(reasons, ["Resumed"]);
    }
}
