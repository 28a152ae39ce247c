//! The operator at scale: StreamingPlatforms applied at once, the time until
//! each one's children are applied (its status observes the generation) and
//! Ready, then the operator's writes to the API server while nothing changes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use crate::Args;
use crate::load::percentile;
use crate::report::Table;

/// Platform names start with this; earlier runs' leftovers are removed.
const PREFIX: &str = "bench-";
/// How long the platforms get to be applied and Ready.
const SETTLE: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(250);

fn platforms_api(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "polystream.dev".into(),
        version: "v1alpha1".into(),
        api_version: "polystream.dev/v1alpha1".into(),
        kind: "StreamingPlatform".into(),
        plural: "streamingplatforms".into(),
    };
    Api::namespaced_with(client, namespace, &resource)
}

/// What a platform's status says: children applied for its generation, Ready.
fn progress(o: &DynamicObject) -> (bool, bool) {
    let status = o.data.get("status");
    let observed = status
        .and_then(|s| s.get("observedGeneration"))
        .and_then(Value::as_i64);
    let applied = observed.is_some() && observed == o.metadata.generation;
    let ready = status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
    (applied, ready)
}

/// Sum of the operator's counter `name` over its labels.
async fn counter(http: &reqwest::Client, url: &str, name: &str) -> anyhow::Result<f64> {
    let body = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("the benchmark's operator is not reachable at {url}"))?
        .text()
        .await?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

async fn remove_all(api: &Api<DynamicObject>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left: Vec<String> = api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .filter(|n| n.starts_with(PREFIX))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} benchmark platforms still there after 120 s",
            left.len()
        );
        for name in left {
            let _ = api.delete(&name, &DeleteParams::background()).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "–".into(), |d| format!("{:.1} s", d.as_secs_f64()))
}

pub async fn run(args: &Args, http: &reqwest::Client) -> anyhow::Result<Table> {
    let mut t = Table::new(
        "Operator",
        &[
            "platforms applied at once",
            "CR → children applied p50 / p99 / max",
            "CR → Ready p50 / p99 / max",
            "API writes/min, steady state (apply / delete / status)",
            "reconciles/min, steady state",
        ],
    );
    let client = kube::Client::try_default()
        .await
        .context("the Kubernetes API server is not reachable (KUBECONFIG)")?;
    let api = platforms_api(client, &args.kube_namespace);
    let path = &args.platform_json;
    let template: Value = serde_json::from_str(
        &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not a StreamingPlatform in JSON", path.display()))?;
    let url = args.operator_url.as_str();
    remove_all(&api).await?;

    let n = args.platforms;
    eprintln!("[bench] operator: applying {n} StreamingPlatforms");
    let mut created: HashMap<String, Instant> = HashMap::new();
    for i in 0..n {
        let name = format!("{PREFIX}{i:03}");
        let mut v = template.clone();
        v["metadata"] = json!({ "name": name });
        let obj: DynamicObject = serde_json::from_value(v)?;
        api.create(&PostParams::default(), &obj)
            .await
            .with_context(|| format!("creating StreamingPlatform {name}"))?;
        created.insert(name, Instant::now());
    }
    let mut applied: HashMap<String, Duration> = HashMap::new();
    let mut ready: HashMap<String, Duration> = HashMap::new();
    let deadline = Instant::now() + SETTLE;
    while (applied.len() < n || ready.len() < n) && Instant::now() < deadline {
        for o in api.list(&ListParams::default()).await?.items {
            let Some(at) = o.metadata.name.as_ref().and_then(|n| created.get(n)) else {
                continue;
            };
            let name = o.metadata.name.clone().unwrap_or_default();
            let (is_applied, is_ready) = progress(&o);
            if is_applied {
                applied.entry(name.clone()).or_insert_with(|| at.elapsed());
            }
            if is_ready {
                ready.entry(name).or_insert_with(|| at.elapsed());
            }
        }
        tokio::time::sleep(POLL).await;
    }
    let sorted = |m: &HashMap<String, Duration>| {
        let mut v: Vec<u64> = m.values().map(|d| d.as_millis() as u64).collect();
        v.sort_unstable();
        v
    };
    let (a, r) = (sorted(&applied), sorted(&ready));
    let p = |v: &[u64], q| percentile(v, q).map(Duration::from_millis);
    let spread = |v: &[u64], total: usize| {
        let missing = if v.len() < total {
            format!(" ({} of {total} within {} s)", v.len(), SETTLE.as_secs())
        } else {
            String::new()
        };
        format!(
            "{} / {} / {}{missing}",
            secs(p(v, 0.5)),
            secs(p(v, 0.99)),
            secs(v.last().map(|m| Duration::from_millis(*m))),
        )
    };

    eprintln!(
        "[bench] operator: counting its writes over {} s of steady state",
        args.steady_seconds
    );
    // Let the last status changes land before counting.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let verbs = ["apply", "delete", "status"];
    let series = |v: &str| format!("polystream_operator_api_writes_total{{verb=\"{v}\"}}");
    let mut before = Vec::new();
    for v in verbs {
        before.push(counter(http, url, &series(v)).await?);
    }
    let reconciles_before = counter(http, url, "polystream_operator_reconciliations_total").await?;
    let window = Duration::from_secs(args.steady_seconds);
    tokio::time::sleep(window).await;
    let per_min = |d: f64| d * 60.0 / window.as_secs_f64();
    let mut writes = Vec::new();
    for (v, b) in verbs.iter().zip(&before) {
        writes.push(format!(
            "{:.0}",
            per_min(counter(http, url, &series(v)).await? - b)
        ));
    }
    let reconciles = per_min(
        counter(http, url, "polystream_operator_reconciliations_total").await? - reconciles_before,
    );
    t.row(vec![
        n.to_string(),
        spread(&a, n),
        spread(&r, n),
        writes.join(" / "),
        format!("{reconciles:.0}"),
    ]);
    eprintln!("[bench] operator: removing the benchmark's platforms");
    remove_all(&api).await?;
    t.note(format!(
        "A second operator (the optimised build, no leader election) watches namespace `{}` on the local API server, where kube-controller-manager, the scheduler and kwok run the children's pods; its store checks go to the local servers.",
        args.kube_namespace
    ));
    t.note("Children applied: the platform's status observes its generation, which the operator writes after applying every child of one pass. Polled every 250 ms.");
    t.note(format!(
        "Steady state: the operator's own `polystream_operator_api_writes_total` and `polystream_operator_reconciliations_total` over {} s, starting 10 s after the last platform was Ready (or the {} s limit).",
        args.steady_seconds,
        SETTLE.as_secs()
    ));
    Ok(t)
}
