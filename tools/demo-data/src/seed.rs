//! `seed`: a plausible catalog, accounts and activity, sent through S1 like
//! real traffic, each command followed to its outcome.

use crate::api::{Api, Failure, Session};
use crate::data::{self, Kind};
use crate::rng::{Rng, Skewed};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct SeedArgs {
    pub users: usize,
    pub titles: usize,
    pub views: usize,
    pub ratings: usize,
    pub seed: u64,
    /// Makes emails (and the users' RNG, hence CPFs) unique per run.
    pub run_tag: String,
    pub concurrency: usize,
}

struct Job {
    kind: &'static str,
    method: Method,
    path: String,
    token: Option<String>,
    body: Option<Value>,
}

/// Commands that completed and those that failed, by kind, with reasons.
#[derive(Default)]
pub struct Tally {
    kinds: BTreeMap<&'static str, (u64, BTreeMap<Failure, u64>)>,
    /// Where to look first (a user to log in as, a title), printed after the table.
    pub notes: Vec<String>,
}

impl Tally {
    fn record(&mut self, kind: &'static str, r: &Result<(Value, Value), Failure>) {
        let e = self.kinds.entry(kind).or_default();
        match r {
            Ok(_) => e.0 += 1,
            Err(f) => *e.1.entry(f.clone()).or_default() += 1,
        }
    }

    pub fn failed(&self) -> u64 {
        self.kinds
            .values()
            .map(|(_, f)| f.values().sum::<u64>())
            .sum()
    }

    pub fn render(&self) -> String {
        let mut out = format!("{:<18} {:>8} {:>8}\n", "kind", "created", "failed");
        for (kind, (ok, failures)) in &self.kinds {
            let failed: u64 = failures.values().sum();
            out.push_str(&format!("{kind:<18} {ok:>8} {failed:>8}\n"));
            let mut reasons: Vec<_> = failures.iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(a.1));
            for (reason, n) in reasons.into_iter().take(5) {
                out.push_str(&format!("    {n} x {reason}\n"));
            }
        }
        for n in &self.notes {
            out.push_str(&format!("{n}\n"));
        }
        out
    }
}

async fn run_jobs(
    api: &Api,
    label: &str,
    jobs: Vec<Job>,
    concurrency: usize,
    tally: &mut Tally,
) -> Vec<Result<(Value, Value), Failure>> {
    let total = jobs.len();
    if total == 0 {
        return Vec::new();
    }
    eprintln!("  {label}: {total} commands");
    let step = (total / 4).max(1);
    let mut results = Vec::with_capacity(total);
    let mut stream = futures::stream::iter(jobs.into_iter().map(|j| async move {
        let r = api
            .command(j.method, &j.path, j.token.as_deref(), j.body.as_ref())
            .await;
        (j.kind, r)
    }))
    .buffered(concurrency.max(1));
    let mut failed = 0;
    while let Some((kind, r)) = stream.next().await {
        tally.record(kind, &r);
        if let Err(f) = &r {
            failed += 1;
            if failed <= 3 {
                eprintln!("    {kind} failed: {f}");
            }
        }
        results.push(r);
        if results.len() % step == 0 || results.len() == total {
            eprintln!(
                "    {label}: {}/{total} done, {failed} failed",
                results.len()
            );
        }
    }
    results
}

fn job(
    kind: &'static str,
    method: Method,
    path: String,
    token: Option<&str>,
    body: Option<Value>,
) -> Job {
    Job {
        kind,
        method,
        path,
        token: token.map(str::to_owned),
        body,
    }
}

pub async fn run(api: &Api, admin: &Session, args: &SeedArgs) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut rng = Rng::new(args.seed);
    let c = args.concurrency;
    let admin_token = Some(admin.token.as_str());

    // Catalog.
    let catalog = data::catalog(&mut rng, args.titles);
    let jobs = catalog
        .titles
        .iter()
        .map(|t| {
            job(
                "title",
                Method::POST,
                "/v1/titles".into(),
                admin_token,
                Some(t.body()),
            )
        })
        .collect();
    let results = run_jobs(api, "titles", jobs, c, &mut tally).await;
    let title_ids: Vec<Option<i64>> = results
        .iter()
        .map(|r| r.as_ref().ok().and_then(|(a, _)| a["title_id"].as_i64()))
        .collect();
    let jobs = catalog
        .relations
        .iter()
        .filter_map(|r| {
            let (from, to) = (
                title_ids.get(r.from).copied()??,
                title_ids.get(r.to).copied()??,
            );
            Some(job(
                "relation",
                Method::POST,
                format!("/v1/titles/{from}/relations"),
                admin_token,
                Some(json!({"related_title_id": to, "relation": r.relation})),
            ))
        })
        .collect();
    run_jobs(api, "relations", jobs, c, &mut tally).await;
    // (title_id, kind, quality) of what exists, in popularity order.
    let mut titles: Vec<(i64, Kind, u8)> = catalog
        .titles
        .iter()
        .zip(&title_ids)
        .filter_map(|(t, id)| Some(((*id)?, t.kind, t.quality)))
        .collect();
    // Popularity follows neither creation order nor quality exactly.
    let order = rng.pick_distinct(&(0..titles.len()).collect::<Vec<_>>(), titles.len());
    titles = order.into_iter().map(|i| titles[i]).collect();

    // Accounts: the users' RNG mixes in the run tag so CPFs differ per run.
    let mut urng = Rng::new(args.seed ^ fnv1a(&args.run_tag));
    let specs: Vec<data::UserSpec> = (0..args.users)
        .map(|i| data::user(&mut urng, &args.run_tag, i))
        .collect();
    let jobs = specs
        .iter()
        .map(|u| {
            job(
                "user",
                Method::POST,
                "/v1/users".into(),
                None,
                Some(u.body()),
            )
        })
        .collect();
    let results = run_jobs(api, "users", jobs, c, &mut tally).await;
    // Each user logs in, as a client would (argon2 is costly: fewer at once).
    let logins = futures::stream::iter(specs.iter().zip(&results).filter(|(_, r)| r.is_ok()))
        .map(|(u, _)| async move { (u, api.login(&u.email, &u.password).await) })
        .buffered(c.clamp(1, 4))
        .collect::<Vec<_>>()
        .await;
    let mut sessions = Vec::new();
    for (u, l) in logins {
        match l {
            Ok(s) => {
                if sessions.is_empty() {
                    tally.notes.push(format!(
                        "log in as {} / {} (user {}): POST /v1/sessions",
                        u.email, u.password, s.user_id
                    ));
                }
                sessions.push(s);
            }
            Err(e) => {
                let r: Result<(Value, Value), Failure> = Err(e.to_string());
                tally.record("login", &r);
            }
        }
    }
    eprintln!("  logins: {} users logged in", sessions.len());
    if let Some((tid, _, _)) = titles.first() {
        tally
            .notes
            .push(format!("most popular title: GET /v1/titles/{tid}"));
    }

    let mut jobs = Vec::new();
    for s in &sessions {
        let (sub, plan) = data::subscription(&mut urng);
        let base = format!("/v1/users/{}", s.user_id);
        let t = Some(s.token.as_str());
        jobs.push(job(
            "subscription",
            Method::PUT,
            format!("{base}/subscription"),
            t,
            Some(sub),
        ));
        for _ in 0..urng.range(1, 3) {
            let p = data::payment(&mut urng, plan);
            jobs.push(job(
                "payment",
                Method::POST,
                format!("{base}/payments"),
                t,
                Some(p),
            ));
        }
        let p = data::preferences(&mut urng);
        jobs.push(job(
            "preferences",
            Method::PUT,
            format!("{base}/preferences"),
            t,
            Some(p),
        ));
    }
    run_jobs(
        api,
        "subscriptions, payments, preferences",
        jobs,
        c,
        &mut tally,
    )
    .await;

    if titles.is_empty() || sessions.is_empty() {
        eprintln!("  no titles or no users: skipping views, ratings and recommendations");
        return Ok(tally);
    }
    // Activity, skewed toward the popular titles.
    let popular = Skewed::zipf(titles.len(), 1.1);
    let jobs = (0..args.views)
        .map(|_| {
            let s = rng.pick(&sessions);
            let (tid, kind, _) = titles[popular.sample(&mut rng)];
            job(
                "view",
                Method::POST,
                format!("/v1/users/{}/views", s.user_id),
                Some(&s.token),
                Some(data::view(&mut rng, tid, kind)),
            )
        })
        .collect();
    run_jobs(api, "views", jobs, c, &mut tally).await;
    let jobs = (0..args.ratings)
        .map(|_| {
            let s = rng.pick(&sessions);
            let (tid, _, quality) = titles[popular.sample(&mut rng)];
            job(
                "rating",
                Method::PUT,
                format!("/v1/users/{}/ratings/{tid}", s.user_id),
                Some(&s.token),
                Some(json!({"stars": data::stars(&mut rng, quality)})),
            )
        })
        .collect();
    run_jobs(api, "ratings", jobs, c, &mut tally).await;
    let jobs = sessions
        .iter()
        .map(|s| {
            job(
                "recommendations",
                Method::POST,
                format!("/v1/users/{}/recommendations", s.user_id),
                Some(&s.token),
                None,
            )
        })
        .collect();
    run_jobs(api, "recommendations", jobs, c, &mut tally).await;
    Ok(tally)
}

/// A stable string hash (std's hasher is randomly keyed per process).
pub fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A short base-36 tag from a number (e.g. the start time in milliseconds).
pub fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_tags_are_short_and_stable() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        assert!(base36(1_800_000_000_000).len() <= 9);
        assert_eq!(fnv1a("abc"), fnv1a("abc"));
        assert_ne!(fnv1a("abc"), fnv1a("abd"));
    }

    #[test]
    fn tally_groups_failures_by_reason() {
        let mut t = Tally::default();
        t.record("view", &Ok((Value::Null, Value::Null)));
        t.record("view", &Err("failed: unknown_title: x".into()));
        t.record("view", &Err("failed: unknown_title: x".into()));
        assert_eq!(t.failed(), 2);
        let r = t.render();
        assert!(r.contains("view"), "{r}");
        assert!(r.contains("2 x failed: unknown_title: x"), "{r}");
    }
}
