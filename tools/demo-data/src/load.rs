//! `load`: open-loop traffic at a fixed rate for a bounded time, then a
//! results table. Writes are measured to S1's `202` (the gateway's latency);
//! their outcomes are not awaited, as a real client would poll later.

use crate::api::{Api, Session};
use crate::data::{self, Kind};
use crate::rng::{Rng, Skewed};
use crate::stats::{self, KindStats, Report};
use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Debug, Clone)]
pub struct LoadArgs {
    pub rate: f64,
    pub duration: Duration,
    pub users: usize,
    pub max_in_flight: usize,
    pub seed: u64,
    pub run_tag: String,
}

/// Titles on the platform (creating a few when there are almost none) and a
/// pool of fresh users logged in: passwords of existing users are unknowable.
async fn setup(
    api: &Api,
    admin: &Session,
    args: &LoadArgs,
) -> anyhow::Result<(Vec<(i64, Kind)>, Vec<Session>)> {
    let mut rng = Rng::new(args.seed);
    let mut titles = list_titles(api).await?;
    if titles.len() < 3 {
        eprintln!("  fewer than 3 titles: creating 5");
        for t in data::catalog(&mut rng, 5).titles {
            api.command(
                Method::POST,
                "/v1/titles",
                Some(&admin.token),
                Some(&t.body()),
            )
            .await
            .map_err(|f| anyhow::anyhow!("creating a title: {f}"))?;
        }
        titles = list_titles(api).await?;
    }
    let mut urng = Rng::new(args.seed ^ crate::seed::fnv1a(&args.run_tag));
    let mut sessions = Vec::new();
    for i in 0..args.users {
        let u = data::user(&mut urng, &format!("{}l", args.run_tag), i);
        api.command(Method::POST, "/v1/users", None, Some(&u.body()))
            .await
            .map_err(|f| anyhow::anyhow!("registering a load-test user: {f}"))?;
        sessions.push(api.login(&u.email, &u.password).await?);
    }
    eprintln!(
        "  using {} titles and {} users",
        titles.len(),
        sessions.len()
    );
    Ok((titles, sessions))
}

async fn list_titles(api: &Api) -> anyhow::Result<Vec<(i64, Kind)>> {
    let (status, body, _) = api
        .call(Method::GET, "/v1/titles?limit=100", None, None)
        .await;
    if status.map(|s| s.as_u16()) != Some(200) {
        bail!("listing titles: {status:?} {body}");
    }
    let list = body
        .as_array()
        .context("GET /v1/titles did not return a list")?;
    Ok(list
        .iter()
        .filter_map(|t| {
            let kind = match t["kind"].as_str()? {
                "series" => Kind::Series,
                "documentary" => Kind::Documentary,
                _ => Kind::Movie,
            };
            Some((t["title_id"].as_i64()?, kind))
        })
        .collect())
}

/// The request for one draw of the mix.
fn request(
    kind: &'static str,
    rng: &mut Rng,
    titles: &[(i64, Kind)],
    popular: &Skewed,
    sessions: &[Session],
) -> (Method, String, Option<String>, Option<Value>) {
    let (tid, tkind) = titles[popular.sample(rng)];
    let s = rng.pick(sessions);
    let user = format!("/v1/users/{}", s.user_id);
    let token = Some(s.token.clone());
    match kind {
        "read_title" => (Method::GET, format!("/v1/titles/{tid}"), None, None),
        "read_ranking" => {
            let which = rng.pick(&["most-watched", "top-rated"]);
            let window = rng.pick(&["day", "week", "all"]);
            (
                Method::GET,
                format!("/v1/rankings/{which}?window={window}&limit=10"),
                None,
                None,
            )
        }
        "read_views" => (Method::GET, format!("{user}/views?limit=20"), token, None),
        "write_view" => (
            Method::POST,
            format!("{user}/views"),
            token,
            Some(data::view(rng, tid, tkind)),
        ),
        "write_rating" => {
            let stars = rng.range(1, 5);
            (
                Method::PUT,
                format!("{user}/ratings/{tid}"),
                token,
                Some(json!({"stars": stars})),
            )
        }
        _ => (
            Method::PUT,
            format!("{user}/preferences"),
            token,
            Some(data::preferences(rng)),
        ),
    }
}

pub async fn run(api: &Api, admin: &Session, args: &LoadArgs) -> anyhow::Result<Report> {
    let (titles, sessions) = setup(api, admin, args).await?;
    if titles.is_empty() || sessions.is_empty() {
        bail!("no titles or no users to drive traffic with");
    }
    let popular = Skewed::zipf(titles.len(), 1.1);
    let mut rng = Rng::new(args.seed.wrapping_add(1));
    let planned = stats::planned(args.rate, args.duration);
    let results: Arc<Mutex<BTreeMap<&'static str, KindStats>>> = Arc::default();
    let slots = Arc::new(Semaphore::new(args.max_in_flight.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut skipped = 0;
    eprintln!(
        "  sending {planned} requests at {:.1}/s for {} s",
        args.rate,
        args.duration.as_secs()
    );
    let start = Instant::now();
    let tick = tokio::time::Instant::from_std(start);
    for i in 0..planned {
        tokio::time::sleep_until(tick + stats::due_at(i, args.rate)).await;
        let kind = stats::kind_for(rng.unit());
        if i > 0 && i % (planned / 5).max(1) == 0 {
            eprintln!("    {i}/{planned} due so far, {skipped} skipped");
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let (method, path, token, body) = request(kind, &mut rng, &titles, &popular, &sessions);
        let api = api.clone();
        let results = results.clone();
        tasks.spawn(async move {
            let (status, _, latency) = api
                .call(method, &path, token.as_deref(), body.as_ref())
                .await;
            drop(slot);
            if let Ok(mut r) = results.lock() {
                r.entry(kind)
                    .or_default()
                    .record(status.map(|s| s.as_u16()), latency);
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    let kinds = results.lock().map(|r| r.clone()).unwrap_or_default();
    Ok(Report {
        kinds,
        elapsed,
        rate: args.rate,
        planned,
        skipped,
    })
}
