//! Leader election on the real API server: two candidates on one Lease,
//! never two leaders; a killed leader (no release) is replaced once its Lease
//! expires; a released Lease is taken at once; a leader cut off from the API
//! server steps down before its Lease can expire; and two real operator
//! processes, one SIGKILLed, hand over leadership.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::PostParams;
use kube::{Api, Client};
use polystream_operator::leader::{LeaderElector, LeaseTimings};
use polystream_smoke_tests::{kube_client, unique};
use support::{Forwarder, OperatorProcess, TestNamespace, logs, namespace_with_crd};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub mod support;

/// Short timings so a test sees an expiry within seconds.
const FAST: LeaseTimings = LeaseTimings {
    lease_duration: Duration::from_secs(3),
    renew_deadline: Duration::from_secs(2),
    retry_period: Duration::from_millis(500),
};

/// One elector running in a task.
struct Candidate {
    identity: String,
    leading: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Candidate {
    fn start(client: Client, ns: &str, lease: &str, identity: &str, timings: LeaseTimings) -> Self {
        let elector = LeaderElector::new(client, ns, lease, identity, timings);
        let leading = elector.subscribe();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(elector.run(async {
            let _ = stopped.await;
        }));
        Self {
            identity: identity.to_owned(),
            leading,
            stop: Some(stop),
            task,
        }
    }

    fn leads(&self) -> bool {
        *self.leading.borrow()
    }

    /// Waits until this candidate's leadership is `want`, failing after `within`.
    async fn wait_leading(&mut self, want: bool, within: Duration) {
        let who = self.identity.clone();
        tokio::time::timeout(within, self.leading.wait_for(|l| *l == want))
            .await
            .unwrap_or_else(|_| panic!("{who} did not become leading={want} within {within:?}"))
            .unwrap();
    }

    /// Graceful stop: the elector releases the Lease and returns.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the elector did not stop within 10s")
            .unwrap();
    }

    /// A crash: the task vanishes without releasing the Lease.
    fn kill(self) {
        self.task.abort();
    }
}

async fn lease_spec(client: &Client, ns: &str, lease: &str) -> LeaseSpec {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get(lease)
        .await
        .unwrap()
        .spec
        .unwrap_or_default()
}

async fn holder(client: &Client, ns: &str, lease: &str) -> Option<String> {
    lease_spec(client, ns, lease).await.holder_identity
}

/// Waits until one of `candidates` leads and returns its index.
async fn first_leader(candidates: &[&Candidate], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        if let Some(i) = candidates.iter().position(|c| c.leads()) {
            return i;
        }
        assert!(Instant::now() < deadline, "nobody led within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_of_two_leads_and_a_killed_leader_is_replaced_after_expiry() {
    let client = kube_client().await;
    let ns = TestNamespace::create(&client, "op-leader").await;
    let lease = unique("lease");
    let a = Candidate::start(client.clone(), &ns.name, &lease, "candidate-a", FAST);
    let b = Candidate::start(client.clone(), &ns.name, &lease, "candidate-b", FAST);

    let first = first_leader(&[&a, &b], Duration::from_secs(10)).await;
    // Over several renewals, never both, always the same one.
    for _ in 0..100 {
        assert!(!(a.leads() && b.leads()), "two leaders at once");
        assert_eq!(
            first_leader(&[&a, &b], Duration::ZERO).await,
            first,
            "leadership moved without a failure"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let (leader, mut standby) = if first == 0 { (a, b) } else { (b, a) };
    assert_eq!(
        holder(&client, &ns.name, &lease).await.as_deref(),
        Some(leader.identity.as_str())
    );
    let transitions_before = lease_spec(&client, &ns.name, &lease)
        .await
        .lease_transitions
        .unwrap_or(0);

    // Kill the leader: no release, so the standby must wait for the expiry.
    let killed_at = Instant::now();
    leader.kill();
    standby
        .wait_leading(true, FAST.lease_duration + Duration::from_secs(5))
        .await;
    let took = killed_at.elapsed();
    assert!(
        took >= FAST.lease_duration - FAST.retry_period - Duration::from_millis(200),
        "took over after {took:?}, before the Lease ({:?}) could have expired",
        FAST.lease_duration
    );
    let lease_now = lease_spec(&client, &ns.name, &lease).await;
    assert_eq!(
        lease_now.holder_identity.as_deref(),
        Some(standby.identity.as_str())
    );
    assert_eq!(lease_now.lease_transitions, Some(transitions_before + 1));
    standby.stop().await;
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let client = kube_client().await;
    let ns = TestNamespace::create(&client, "op-leader").await;
    let lease = unique("lease");
    // A long lease: a takeover well before it expires can only come from the release.
    let slow = LeaseTimings {
        lease_duration: Duration::from_secs(30),
        renew_deadline: Duration::from_secs(20),
        retry_period: Duration::from_millis(500),
    };
    let mut a = Candidate::start(client.clone(), &ns.name, &lease, "release-a", slow);
    a.wait_leading(true, Duration::from_secs(10)).await;
    let mut b = Candidate::start(client.clone(), &ns.name, &lease, "release-b", slow);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!b.leads(), "b leads while a holds a live Lease");

    let released_at = Instant::now();
    a.stop().await;
    b.wait_leading(true, Duration::from_secs(5)).await;
    let took = released_at.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the takeover took {took:?} after a graceful release"
    );
    assert_eq!(
        holder(&client, &ns.name, &lease).await.as_deref(),
        Some("release-b")
    );

    // b's own release leaves the Lease without a holder.
    b.stop().await;
    assert_eq!(holder(&client, &ns.name, &lease).await, None);
}

#[tokio::test]
async fn a_leader_whose_lease_is_taken_steps_down() {
    let client = kube_client().await;
    let ns = TestNamespace::create(&client, "op-leader").await;
    let lease = unique("lease");
    let mut a = Candidate::start(client.clone(), &ns.name, &lease, "deposed-a", FAST);
    a.wait_leading(true, Duration::from_secs(10)).await;

    // Someone else writes the Lease (e.g. an administrator handing it over).
    let api = Api::<Lease>::namespaced(client.clone(), &ns.name);
    let mut current = api.get(&lease).await.unwrap();
    current.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    // A 409 means a renewal came in between: read again and retry.
    loop {
        match api.replace(&lease, &PostParams::default(), &current).await {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                current = api.get(&lease).await.unwrap();
                current.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
            }
            Err(e) => panic!("{e}"),
        }
    }
    a.wait_leading(false, FAST.retry_period * 4).await;
    // And it does not take a live Lease back.
    tokio::time::sleep(FAST.retry_period * 3).await;
    assert!(!a.leads());
    assert_eq!(
        holder(&client, &ns.name, &lease).await.as_deref(),
        Some("intruder")
    );
    a.stop().await;
}

/// A client for the same API server through `proxy`.
async fn client_via(proxy: &Forwarder) -> Client {
    let mut config = kube::Config::infer().await.unwrap();
    config.cluster_url = format!("https://{}", proxy.addr).parse().unwrap();
    Client::try_from(config).unwrap()
}

#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_steps_down_before_its_lease_expires() {
    let client = kube_client().await;
    let ns = TestNamespace::create(&client, "op-leader").await;
    let lease = unique("lease");
    let apiserver: SocketAddr = {
        let url = kube::Config::infer().await.unwrap().cluster_url;
        let host = url.host().unwrap();
        let port = url.port_u16().unwrap_or(443);
        tokio::net::lookup_host((host, port))
            .await
            .unwrap()
            .next()
            .unwrap()
    };
    let proxy = Forwarder::start(0, apiserver.to_string()).await;
    let mut a = Candidate::start(client_via(&proxy).await, &ns.name, &lease, "cut-a", FAST);
    a.wait_leading(true, Duration::from_secs(10)).await;
    let mut b = Candidate::start(client.clone(), &ns.name, &lease, "cut-b", FAST);

    let cut_at = Instant::now();
    proxy.cut();
    a.wait_leading(false, FAST.lease_duration).await;
    let stepped_down = cut_at.elapsed();
    // Within the renew deadline (plus scheduling slack), and in any case
    // before the Lease could expire for anyone else.
    assert!(
        stepped_down < FAST.lease_duration,
        "a stepped down {stepped_down:?} after losing the API server (renew deadline {:?}, \
         lease {:?})",
        FAST.renew_deadline,
        FAST.lease_duration
    );
    // The safety property: b can only take over after a stopped leading.
    b.wait_leading(true, FAST.lease_duration + Duration::from_secs(5))
        .await;
    assert!(
        cut_at.elapsed() > stepped_down,
        "b led before a had stepped down"
    );
    assert!(!a.leads());
    b.stop().await;
    a.kill();
}

// ---------------------------------------------------------------------------
// Two real operator processes.

/// An operator process in `ns`, electing on `lease` with the [`FAST`] timings.
fn operator(ns: &str, lease: &str, name: &str) -> OperatorProcess {
    OperatorProcess::start(
        name,
        &[
            ("WATCH_NAMESPACE", ns),
            ("LEADER_ELECTION_NAMESPACE", ns),
            ("LEADER_ELECTION_LEASE_NAME", lease),
            ("LEADER_ELECTION_LEASE_DURATION_SECONDS", "3"),
            ("LEADER_ELECTION_RENEW_DEADLINE_SECONDS", "2"),
            ("LEADER_ELECTION_RETRY_PERIOD_SECONDS", "0.5"),
        ],
    )
}

/// The leader gauge from an operator's /metrics (None: not answering).
async fn leader_gauge(op: &OperatorProcess) -> Option<i64> {
    op.metric("polystream_operator_leader")
        .await
        .map(|v| v as i64)
}

/// Waits until `check` holds, failing with `what` and the operators' logs.
async fn eventually<F, Fut>(within: Duration, what: &str, ops: &[&OperatorProcess], mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    support::eventually(what, within, || {
        let holds = check();
        async move { if holds.await { Ok(()) } else { Err(logs(ops)) } }
    })
    .await;
}

#[tokio::test]
async fn two_operator_processes_one_leader_and_a_sigkill_hands_over() {
    let (client, ns) = namespace_with_crd("op-leader").await;
    let lease = unique("operator-lease");
    let a = operator(&ns.name, &lease, "operator-a");
    let b = operator(&ns.name, &lease, "operator-b");

    let (c, l) = (client.clone(), lease.clone());
    let n = ns.name.clone();
    eventually(
        Duration::from_secs(30),
        "an operator to take the Lease",
        &[&a, &b],
        || {
            let (c, n, l) = (c.clone(), n.clone(), l.clone());
            async move {
                Api::<Lease>::namespaced(c, &n)
                    .get_opt(&l)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|l| l.spec)
                    .and_then(|s| s.holder_identity)
                    .is_some()
            }
        },
    )
    .await;
    let first = holder(&client, &ns.name, &lease).await.unwrap();
    let (mut leader, standby) = if first == a.name { (a, b) } else { (b, a) };
    assert_eq!(first, leader.name);
    eventually(
        Duration::from_secs(15),
        "the leader's gauge at 1, the standby's at 0, and both ready",
        &[&leader, &standby],
        || async {
            leader_gauge(&leader).await == Some(1)
                && leader_gauge(&standby).await == Some(0)
                && leader.ready().await
                && standby.ready().await
        },
    )
    .await;

    // SIGKILL: no release; the standby takes over once the Lease expires.
    let killed = Instant::now();
    leader.child.start_kill().unwrap();
    let _ = leader.child.wait().await;
    eventually(
        Duration::from_secs(20),
        "the standby to take over after the leader was killed",
        &[&leader, &standby],
        || async {
            holder(&client, &ns.name, &lease).await.as_deref() == Some(standby.name.as_str())
                && leader_gauge(&standby).await == Some(1)
        },
    )
    .await;
    let took = killed.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "took over {took:?} after the kill, before the 3s Lease could expire"
    );

    // SIGTERM: the survivor releases the Lease on its way out.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &standby.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut standby = standby;
    let exit = tokio::time::timeout(Duration::from_secs(15), standby.child.wait())
        .await
        .unwrap_or_else(|_| panic!("no exit after SIGTERM:\n{}", standby.log()))
        .unwrap();
    assert!(exit.success(), "{exit:?}\n{}", standby.log());
    assert_eq!(
        holder(&client, &ns.name, &lease).await,
        None,
        "the Lease was not released:\n{}",
        standby.log()
    );
}
