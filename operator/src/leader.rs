//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator
//! replicas never reconcile at once (kube-rs has none built in).
//!
//! The protocol, as in client-go:
//! - A candidate reads the Lease every `retry_period`. It takes the Lease when
//!   nobody holds it, or when the holder's record has not changed for
//!   `lease_duration` *as measured on the candidate's own clock* since it
//!   first saw that record (so clock skew between nodes does not matter).
//! - Every write is an update carrying the `resourceVersion` it read
//!   (optimistic concurrency): of two candidates racing for one Lease, the
//!   API server accepts one write and answers 409 Conflict to the other, so
//!   two candidates never both win.
//! - The leader renews every `retry_period`. When it has not renewed for
//!   `renew_deadline` (measured from when it *sent* its last successful
//!   renewal, so it stops before anyone else can take over:
//!   `renew_deadline < lease_duration`), or sees another holder, it stops
//!   leading. The process should then exit: in-flight work of a deposed
//!   leader is not safe to continue.
//! - On graceful shutdown the leader clears `holderIdentity`, so a standby
//!   takes over at its next read instead of after the lease expires.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use polystream_common::config::{ConfigErrors, Reader, Source};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::OperatorMetrics;

/// The Lease's name unless `LEADER_ELECTION_LEASE_NAME` says otherwise.
pub const DEFAULT_LEASE_NAME: &str = "polystream-operator";

/// How long a Lease lasts and how often it is renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTimings {
    /// A standby takes over when the leader's record has not changed for this long.
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long stops leading (< `lease_duration`).
    pub renew_deadline: Duration,
    /// Time between two attempts to acquire or renew (< `renew_deadline`).
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaseTimings {
    /// `retry_period < renew_deadline < lease_duration`, and whole seconds for
    /// the lease duration (the Lease stores an integer).
    pub fn validate(&self) -> Result<(), String> {
        if self.retry_period.is_zero() {
            return Err("the retry period must be positive".into());
        }
        if self.retry_period >= self.renew_deadline {
            return Err(format!(
                "the retry period ({:?}) must be shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "the renew deadline ({:?}) must be shorter than the lease duration ({:?}), \
                 or a deposed leader could still act after a standby took over",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.lease_duration.subsec_nanos() != 0
            || self.lease_duration.as_secs() > i32::MAX as u64
        {
            return Err(format!(
                "the lease duration ({:?}) must be a whole number of seconds",
                self.lease_duration
            ));
        }
        Ok(())
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// Leader-election settings from the environment (see docs/configuration.md, "Operator").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    /// `LEADER_ELECTION` (default true). Off: this replica always leads (run one replica only).
    pub enabled: bool,
    /// `LEADER_ELECTION_NAMESPACE`, else `POD_NAMESPACE`, else the service
    /// account's namespace, else `default`.
    pub namespace: String,
    /// `LEADER_ELECTION_LEASE_NAME` (default `polystream-operator`).
    pub lease_name: String,
    /// `POD_NAME`, else `HOSTNAME`, else `polystream-operator`; the process id
    /// is appended so two local processes on one host never share an identity.
    pub identity: String,
    pub timings: LeaseTimings,
}

const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

impl LeaderConfig {
    /// Reads the `LEADER_ELECTION*`, `POD_NAME` and `POD_NAMESPACE` variables.
    pub fn read<S: Source>(r: &mut Reader<S>) -> Self {
        let enabled = r.parse("LEADER_ELECTION", true);
        let sa_namespace = std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let pod_namespace = r.string("POD_NAMESPACE", &sa_namespace);
        let namespace = r.string("LEADER_ELECTION_NAMESPACE", &pod_namespace);
        let lease_name = r.string("LEADER_ELECTION_LEASE_NAME", DEFAULT_LEASE_NAME);
        let pod_name = r.string("POD_NAME", "");
        let identity = if pod_name.is_empty() {
            let host = r.string("HOSTNAME", "polystream-operator");
            format!("{host}-{}", std::process::id())
        } else {
            // A pod name is unique in its namespace already.
            pod_name
        };
        let mut seconds = |var: &str, default: Duration| {
            let value: f64 = r.parse(var, default.as_secs_f64());
            match Duration::try_from_secs_f64(value) {
                Ok(d) => d,
                Err(e) => {
                    r.invalid(var, &value.to_string(), e.to_string());
                    default
                }
            }
        };
        let defaults = LeaseTimings::default();
        let timings = LeaseTimings {
            lease_duration: seconds(
                "LEADER_ELECTION_LEASE_DURATION_SECONDS",
                defaults.lease_duration,
            ),
            renew_deadline: seconds(
                "LEADER_ELECTION_RENEW_DEADLINE_SECONDS",
                defaults.renew_deadline,
            ),
            retry_period: seconds(
                "LEADER_ELECTION_RETRY_PERIOD_SECONDS",
                defaults.retry_period,
            ),
        };
        if enabled && let Err(problem) = timings.validate() {
            r.invalid(
                "LEADER_ELECTION_LEASE_DURATION_SECONDS",
                &format!(
                    "{}s (renew deadline {}s, retry period {}s)",
                    timings.lease_duration.as_secs_f64(),
                    timings.renew_deadline.as_secs_f64(),
                    timings.retry_period.as_secs_f64()
                ),
                problem,
            );
        }
        Self {
            enabled,
            namespace,
            lease_name,
            identity,
            timings,
        }
    }

    /// From the process environment, every bad variable named.
    pub fn from_env() -> Result<Self, ConfigErrors> {
        let mut r = Reader::new(polystream_common::config::ProcessEnv);
        let config = Self::read(&mut r);
        r.finish().map(|()| config)
    }
}

/// What a candidate does after reading the Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// No Lease yet: create it holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it.
    Acquire,
    /// Someone else holds a live Lease.
    Wait,
}

/// The decision, given the Lease read (`None`: it does not exist) and how long
/// ago (on our clock) we first saw its current record.
pub fn decide(
    identity: &str,
    lease: Option<&LeaseSpec>,
    record_unchanged_for: Duration,
    default_duration: Duration,
) -> Action {
    let Some(spec) = lease else {
        return Action::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Action::Renew,
        None | Some("") => Action::Acquire,
        Some(_) => {
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(default_duration, Duration::from_secs);
            if record_unchanged_for >= duration {
                Action::Acquire
            } else {
                Action::Wait
            }
        }
    }
}

/// The Lease spec after `identity` takes or renews `current` at `now`.
pub fn claimed(
    current: Option<&LeaseSpec>,
    identity: &str,
    timings: &LeaseTimings,
    now: Timestamp,
) -> LeaseSpec {
    let current = current.cloned().unwrap_or_default();
    let ours = current.holder_identity.as_deref() == Some(identity);
    let transitions = current.lease_transitions.unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(timings.lease_duration_seconds()),
        acquire_time: if ours {
            current.acquire_time.clone()
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if ours || current.holder_identity.is_none() {
            transitions
        } else {
            transitions.saturating_add(1)
        }),
        ..current
    }
}

/// The Lease spec after its holder gives it up at `now`: no holder, so the
/// next candidate to read it takes it at once.
pub fn released(current: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        renew_time: Some(MicroTime(now)),
        acquire_time: None,
        ..current.clone()
    }
}

/// One candidate for leadership; see the module documentation.
pub struct LeaderElector {
    api: Api<Lease>,
    lease_name: String,
    identity: String,
    timings: LeaseTimings,
    leading: watch::Sender<bool>,
    contacted: watch::Sender<bool>,
    metrics: Option<OperatorMetrics>,
}

/// What the elector remembers between attempts.
struct State {
    leading: bool,
    /// When we sent the last renewal the API server accepted.
    last_renewal_sent: Option<Instant>,
    /// The Lease record as last read and when (on our clock) it last changed.
    observed: Option<(LeaseSpec, Instant)>,
}

impl LeaderElector {
    pub fn new(
        client: Client,
        namespace: &str,
        lease_name: &str,
        identity: &str,
        timings: LeaseTimings,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            lease_name: lease_name.to_owned(),
            identity: identity.to_owned(),
            timings,
            leading: watch::channel(false).0,
            contacted: watch::channel(false).0,
            metrics: None,
        }
    }

    /// From [`LeaderConfig`].
    pub fn from_config(client: Client, config: &LeaderConfig) -> Self {
        Self::new(
            client,
            &config.namespace,
            &config.lease_name,
            &config.identity,
            config.timings,
        )
    }

    /// Keeps `polystream_operator_leader` in step with leadership.
    pub fn with_metrics(mut self, metrics: OperatorMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// `true` while this replica leads. Subscribe before [`Self::run`].
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Turns `true` once the Lease has been read or written (the API server
    /// answers): a standby is ready from then on (see [`crate::http`]).
    pub fn contacted(&self) -> watch::Receiver<bool> {
        self.contacted.subscribe()
    }

    /// Campaigns, leads and renews until `shutdown` completes, then releases
    /// the Lease if held. Never fails: API errors are logged and retried.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut state = State {
            leading: false,
            last_renewal_sent: None,
            observed: None,
        };
        let mut next_attempt = Instant::now();
        loop {
            // A leader must notice its deadline even while a call hangs or
            // between attempts, so the deadline is one of the wake-ups.
            let deadline = self.deadline(&state);
            let wake = deadline.map_or(next_attempt, |d| d.min(next_attempt));
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep_until(wake) => {}
            }
            if self.deadline_passed(&state) {
                self.lose(
                    &mut state,
                    "could not renew the Lease before the renew deadline",
                );
                continue;
            }
            if Instant::now() < next_attempt {
                continue;
            }
            next_attempt = Instant::now() + self.timings.retry_period;
            let call_timeout = self
                .deadline(&state)
                .map_or(self.timings.renew_deadline, |d| {
                    d.saturating_duration_since(Instant::now())
                });
            let attempt = tokio::time::timeout(call_timeout, self.attempt(&mut state));
            tokio::select! {
                () = &mut shutdown => break,
                result = attempt => match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(
                        lease = %self.lease_name, error = %e,
                        "leader election: cannot read or write the Lease"
                    ),
                    Err(_) => tracing::warn!(
                        lease = %self.lease_name,
                        "leader election: the API server did not answer in time"
                    ),
                },
            }
        }
        if state.leading {
            self.release().await;
            self.set_leading(&mut state, false);
        }
    }

    fn deadline(&self, state: &State) -> Option<Instant> {
        if !state.leading {
            return None;
        }
        state
            .last_renewal_sent
            .map(|sent| sent + self.timings.renew_deadline)
    }

    fn deadline_passed(&self, state: &State) -> bool {
        self.deadline(state).is_some_and(|d| Instant::now() >= d)
    }

    /// One read-decide-write round.
    async fn attempt(&self, state: &mut State) -> Result<(), kube::Error> {
        let started = Instant::now();
        let current = self.api.get_opt(&self.lease_name).await?;
        self.contacted.send_replace(true);
        let spec = current.as_ref().and_then(|l| l.spec.clone());
        let unchanged_for = match (&state.observed, &spec) {
            (Some((seen, at)), Some(spec)) if seen == spec => started.duration_since(*at),
            _ => {
                if let Some(spec) = &spec {
                    state.observed = Some((spec.clone(), started));
                }
                Duration::ZERO
            }
        };
        // A Lease without a spec is a free one.
        let empty = LeaseSpec::default();
        let read = current.as_ref().map(|_| spec.as_ref().unwrap_or(&empty));
        let action = decide(
            &self.identity,
            read,
            unchanged_for,
            self.timings.lease_duration,
        );
        if action == Action::Wait {
            if state.leading {
                let holder = spec.and_then(|s| s.holder_identity).unwrap_or_default();
                self.lose(state, &format!("the Lease is now held by {holder}"));
            }
            return Ok(());
        }
        let new_spec = claimed(
            spec.as_ref(),
            &self.identity,
            &self.timings,
            Timestamp::now(),
        );
        let written = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.lease_name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(new_spec.clone()),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                // Carries the resourceVersion we read: a concurrent writer makes this a 409.
                lease.spec = Some(new_spec.clone());
                self.api
                    .replace(&self.lease_name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => {
                state.observed = Some((new_spec, started));
                state.last_renewal_sent = Some(started);
                if !state.leading {
                    tracing::info!(
                        lease = %self.lease_name, identity = %self.identity,
                        "leader election: became the leader"
                    );
                    self.set_leading(state, true);
                }
                Ok(())
            }
            // Another candidate wrote first; the next read tells who holds it.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn lose(&self, state: &mut State, why: &str) {
        if state.leading {
            tracing::warn!(
                lease = %self.lease_name, identity = %self.identity,
                "leader election: stopped leading: {why}"
            );
            self.set_leading(state, false);
        }
    }

    fn set_leading(&self, state: &mut State, leading: bool) {
        state.leading = leading;
        if !leading {
            state.last_renewal_sent = None;
        }
        self.leading.send_replace(leading);
        if let Some(metrics) = &self.metrics {
            metrics.set_leader(leading);
        }
    }

    /// Clears `holderIdentity` if we still hold the Lease (best effort, bounded).
    async fn release(&self) {
        let release = async {
            // A renewal cancelled by the shutdown may still land after our
            // read: on a conflict, read again and retry.
            let mut attempts = 0;
            loop {
                attempts += 1;
                let Some(mut lease) = self.api.get_opt(&self.lease_name).await? else {
                    return Ok(());
                };
                let Some(spec) = lease.spec.as_ref() else {
                    return Ok(());
                };
                if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                    return Ok(());
                }
                lease.spec = Some(released(spec, Timestamp::now()));
                match self
                    .api
                    .replace(&self.lease_name, &PostParams::default(), &lease)
                    .await
                {
                    Err(kube::Error::Api(status)) if status.code == 409 && attempts < 5 => {}
                    result => return result.map(|_| ()),
                }
            }
        };
        match tokio::time::timeout(self.timings.renew_deadline, release).await {
            Ok(Ok(())) => tracing::info!(
                lease = %self.lease_name, identity = %self.identity,
                "leader election: released the Lease"
            ),
            Ok(Err(e)) => tracing::warn!(
                lease = %self.lease_name, error = %e,
                "leader election: cannot release the Lease; a standby takes over when it expires"
            ),
            Err(_) => tracing::warn!(
                lease = %self.lease_name,
                "leader election: releasing the Lease timed out; a standby takes over when it expires"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn held_by(holder: &str, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(seconds),
            renew_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let d = Duration::from_secs(15);
        assert_eq!(decide("a", None, Duration::ZERO, d), Action::Create);
        assert_eq!(
            decide("a", Some(&held_by("a", 15)), Duration::ZERO, d),
            Action::Renew
        );
        assert_eq!(
            decide("a", Some(&LeaseSpec::default()), Duration::ZERO, d),
            Action::Acquire
        );
        assert_eq!(
            decide("a", Some(&held_by("", 15)), Duration::ZERO, d),
            Action::Acquire
        );
        assert_eq!(
            decide("a", Some(&held_by("b", 15)), 14 * SECOND, d),
            Action::Wait
        );
        assert_eq!(
            decide("a", Some(&held_by("b", 15)), 15 * SECOND, d),
            Action::Acquire
        );
        // The Lease's own duration wins over ours.
        assert_eq!(
            decide("a", Some(&held_by("b", 3)), 4 * SECOND, d),
            Action::Acquire
        );
        let mut no_duration = held_by("b", 0);
        no_duration.lease_duration_seconds = None;
        assert_eq!(decide("a", Some(&no_duration), 4 * SECOND, d), Action::Wait);
    }

    #[test]
    fn claiming_counts_transitions_and_keeps_acquire_time_on_renewal() {
        let t = LeaseTimings::default();
        let t1 = Timestamp::from_second(100).unwrap();
        let t2 = Timestamp::from_second(102).unwrap();
        let created = claimed(None, "a", &t, t1);
        assert_eq!(created.holder_identity.as_deref(), Some("a"));
        assert_eq!(created.lease_duration_seconds, Some(15));
        assert_eq!(created.lease_transitions, Some(0));
        assert_eq!(created.acquire_time, Some(MicroTime(t1)));

        let renewed = claimed(Some(&created), "a", &t, t2);
        assert_eq!(renewed.acquire_time, Some(MicroTime(t1)));
        assert_eq!(renewed.renew_time, Some(MicroTime(t2)));
        assert_eq!(renewed.lease_transitions, Some(0));

        let taken = claimed(Some(&renewed), "b", &t, t2);
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.acquire_time, Some(MicroTime(t2)));
        assert_eq!(taken.lease_transitions, Some(1));

        let free = released(&taken, t2);
        assert_eq!(free.holder_identity, None);
        assert_eq!(free.lease_transitions, Some(1));
        assert_eq!(
            decide("a", Some(&free), Duration::ZERO, 15 * SECOND),
            Action::Acquire
        );
        // Taking a released Lease is a transition only once (it was counted when b took it).
        assert_eq!(claimed(Some(&free), "a", &t, t2).lease_transitions, Some(1));
    }

    #[test]
    fn timings_must_be_ordered() {
        assert!(LeaseTimings::default().validate().is_ok());
        let bad = LeaseTimings {
            lease_duration: 10 * SECOND,
            renew_deadline: 10 * SECOND,
            retry_period: 2 * SECOND,
        };
        assert!(bad.validate().unwrap_err().contains("renew deadline"));
        let bad = LeaseTimings {
            retry_period: 10 * SECOND,
            ..LeaseTimings::default()
        };
        assert!(bad.validate().unwrap_err().contains("retry period"));
        let bad = LeaseTimings {
            lease_duration: Duration::from_millis(15_500),
            ..LeaseTimings::default()
        };
        assert!(bad.validate().unwrap_err().contains("whole number"));
    }

    #[test]
    fn config_from_variables() {
        let mut r = Reader::new([
            ("POD_NAME", "operator-7f9-abc"),
            ("POD_NAMESPACE", "polystream-system"),
            ("LEADER_ELECTION_LEASE_DURATION_SECONDS", "6"),
            ("LEADER_ELECTION_RENEW_DEADLINE_SECONDS", "4"),
            ("LEADER_ELECTION_RETRY_PERIOD_SECONDS", "0.5"),
        ]);
        let c = LeaderConfig::read(&mut r);
        r.finish().unwrap();
        assert!(c.enabled);
        assert_eq!(c.identity, "operator-7f9-abc");
        assert_eq!(c.namespace, "polystream-system");
        assert_eq!(c.lease_name, DEFAULT_LEASE_NAME);
        assert_eq!(c.timings.retry_period, Duration::from_millis(500));

        let mut r = Reader::new([
            ("LEADER_ELECTION", "maybe"),
            ("LEADER_ELECTION_RETRY_PERIOD_SECONDS", "-1"),
        ]);
        let _ = LeaderConfig::read(&mut r);
        let err = r.finish().unwrap_err().to_string();
        assert!(err.contains("LEADER_ELECTION=\"maybe\""), "{err}");
        assert!(
            err.contains("LEADER_ELECTION_RETRY_PERIOD_SECONDS"),
            "{err}"
        );

        let mut r = Reader::new([
            ("LEADER_ELECTION_LEASE_DURATION_SECONDS", "5"),
            ("LEADER_ELECTION_RENEW_DEADLINE_SECONDS", "8"),
        ]);
        let _ = LeaderConfig::read(&mut r);
        let err = r.finish().unwrap_err().to_string();
        assert!(
            err.contains("LEADER_ELECTION_LEASE_DURATION_SECONDS"),
            "{err}"
        );
    }
}
