//! The runs, in an order that keeps them from disturbing each other: the
//! ones that leave S2 a backlog (S1's closed-loop ingest, the registration
//! burst) come last.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::FutureExt;
use mongodb::bson::{Document, doc};
use polystream_common::events::{
    Command, CommandCompleted, Envelope, Outcome, PaymentMethod, PaymentRecorded, PaymentStatus,
    TitleKind, TitleUpserted, UserRegistered, ViewRecorded,
};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::Args;
use crate::load::{self, Request, Stats};
use crate::outcomes::{self, Outcomes};
use crate::report::{Report, Table, ms, rate, verdict};

const USERS: i64 = 64;
const USER_EVENTS: &str = "user_events";
const RESPONSE_EVENTS: &str = "response_events";
const MEMORY_TARGET_MIB: f64 = 150.0;

struct Ctx<'a> {
    args: &'a Args,
    http: reqwest::Client,
    outcomes: Outcomes,
    producer: rdkafka::producer::FutureProducer,
    /// First of the run's `USERS` users; ids far above what S1 allocates.
    user0: i64,
    title: i64,
    pids: Vec<(String, u32)>,
    /// Peak RSS (MiB) seen per service, by phase.
    memory: Table,
}

pub async fn run(args: &Args) -> anyhow::Result<Report> {
    let mut report = Report::default();
    header(args, &mut report);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()?;
    let outcomes = outcomes::watch(&args.kafka, RESPONSE_EVENTS)
        .await
        .context("Kafka (response_events) is not reachable")?;
    let producer = polystream_common::kafka::producer(
        args.kafka.as_str(),
        "polystream-bench",
        Duration::from_secs(30),
    )?;
    let stamp = chrono::Utc::now().timestamp() % 1_000_000;
    let mut ctx = Ctx {
        args,
        http,
        outcomes,
        producer,
        user0: 8_000_000_000_000 + stamp * 1_000,
        title: 8_000_000_000_000 + stamp,
        pids: parse_pids(&args.pids),
        memory: Table::new(
            "Resident memory (MiB: now / peak so far)",
            &[
                "after",
                "s1_gateway",
                "s2_processor",
                "s3_monitor",
                "S1 for ingest",
                "target",
            ],
        ),
    };
    eprintln!("[bench] setting up {USERS} users and a title (through Kafka and S2)");
    setup(&ctx).await?;
    ctx.sample_memory("idle, after set-up");

    let on = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    if on("s2") {
        report.tables.push(s2_throughput(&mut ctx).await?);
    }
    if on("e2e") {
        report.tables.push(end_to_end(&mut ctx).await?);
    }
    if on("reads") {
        report.tables.push(reads(&mut ctx).await?);
    }
    if on("ingest") {
        report.tables.push(ingest(&mut ctx).await?);
    }
    if on("registrations") {
        report.tables.push(registrations(&mut ctx).await?);
    }
    if on("operator") {
        report
            .tables
            .push(crate::operator::run(args, &ctx.http).await?);
    }
    let mut memory = std::mem::replace(&mut ctx.memory, Table::new("", &[]));
    memory.note("Peak is the process's VmHWM: the most it ever held since it started.");
    report.tables.push(memory);
    Ok(report)
}

fn header(args: &Args, r: &mut Report) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or("unknown".into(), |kb| {
            format!("{:.1} GiB", kb as f64 / 1048576.0)
        });
    r.header.push((
        "date".into(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
    ));
    r.header.push((
        "machine".into(),
        format!("{cores} cores ({cpu}), {mem} RAM, Linux {}", kernel.trim()),
    ));
    for kv in args.info.split(';').filter(|s| !s.is_empty()) {
        if let Some((k, v)) = kv.split_once('=') {
            r.header.push((k.trim().into(), v.trim().into()));
        }
    }
    r.header.push((
        "load".into(),
        format!(
            "generated on the same machine by tools/bench (tokio + reqwest), {} s per run",
            args.seconds
        ),
    ));
}

fn parse_pids(s: &str) -> Vec<(String, u32)> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.trim().to_owned(), v.trim().parse().ok()?)))
        .collect()
}

impl Ctx<'_> {
    /// `VmRSS` and `VmHWM` (MiB) of the named service.
    fn rss(&self, name: &str) -> Option<(f64, f64)> {
        self.pids
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, pid)| crate::procs::rss_mib(*pid))
    }

    fn sample_memory(&mut self, phase: &str) {
        let mut row = vec![phase.to_owned()];
        let mut all_ok = true;
        for name in ["s1_gateway", "s2_processor", "s3_monitor", "s1_ingest"] {
            match self.rss(name) {
                Some((now, peak)) => {
                    all_ok &= now < MEMORY_TARGET_MIB;
                    row.push(format!("{now:.0} / {peak:.0}"));
                }
                None => row.push("–".into()),
            }
        }
        row.push(format!("< {MEMORY_TARGET_MIB:.0} now: {}", verdict(all_ok)));
        self.memory.row(row);
    }

    fn user(&self, i: i64) -> i64 {
        self.user0 + i.rem_euclid(USERS)
    }

    async fn publish(&self, commands: Vec<Command>) -> anyhow::Result<Vec<Uuid>> {
        outcomes::publish_all(&self.producer, USER_EVENTS, commands).await
    }

    /// Waits for the outcomes of `ids`; fails naming how many are missing.
    async fn settle(&self, ids: &[Uuid], what: &str, timeout: Duration) -> anyhow::Result<Instant> {
        match self.outcomes.wait_all(ids, timeout).await {
            Some(t) => Ok(t),
            None => bail!(
                "{what}: {} of {} commands had no outcome after {timeout:?} (is S2 running?)",
                ids.len() - self.outcomes.count(ids),
                ids.len()
            ),
        }
    }

    /// Waits until S2 has answered everything it was sent before, so a run
    /// does not pay for the previous one's backlog.
    async fn drain(&self, ids: &[Uuid], what: &str) {
        if self
            .outcomes
            .wait_all(ids, Duration::from_secs(600))
            .await
            .is_none()
        {
            eprintln!("[bench] warning: {what}: S2 still has a backlog after 600 s");
        }
    }

    fn request(
        &self,
        method: Method,
        url: Arc<dyn Fn(u64) -> String + Send + Sync>,
        token: Option<String>,
        body: Option<Value>,
        keep: bool,
    ) -> Request {
        let http = self.http.clone();
        Arc::new(move |i| {
            let mut rb = http.request(method.clone(), url(i));
            if let Some(t) = &token {
                rb = rb.bearer_auth(t);
            }
            if let Some(b) = &body {
                rb = rb.json(b);
            }
            async move {
                match rb.send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body = if keep {
                            r.json::<Value>().await.ok()
                        } else {
                            let _ = r.bytes().await;
                            None
                        };
                        (Some(status), body)
                    }
                    Err(_) => (None, None),
                }
            }
            .boxed()
        })
    }

    fn payment_url(&self, api: &str) -> Arc<dyn Fn(u64) -> String + Send + Sync> {
        let (api, user0) = (api.to_owned(), self.user0);
        Arc::new(move |i| {
            format!(
                "{api}/usuarios/{}/pagamento?valor=10.50&forma_pagamento=pix",
                user0 + (i as i64).rem_euclid(USERS)
            )
        })
    }
}

fn payment(user_id: i64) -> Command {
    Command::PaymentRecorded(PaymentRecorded {
        payment_id: Uuid::now_v7(),
        user_id,
        amount_cents: 1050,
        currency: "BRL".into(),
        method: PaymentMethod::Pix,
        status: PaymentStatus::Approved,
        paid_at: chrono::Utc::now(),
    })
}

fn view(user_id: i64, title_id: i64) -> Command {
    Command::ViewRecorded(ViewRecorded {
        view_id: Uuid::now_v7(),
        user_id,
        title_id,
        seconds_watched: 600,
        position_pct: 40.0,
        completed: false,
        watched_at: chrono::Utc::now(),
    })
}

/// A payment's outcome as S2 publishes it, for a command no one sent.
fn completed(user_id: i64) -> (String, Envelope<Value>) {
    let command = payment(user_id);
    let outcome = Outcome::Completed(CommandCompleted {
        command_id: Uuid::now_v7(),
        command_type: command.event_type().into(),
        result: json!({"user_id": user_id}),
    });
    let subject = command.subject();
    (
        subject.clone(),
        outcomes::envelope(outcome.event_type(), subject, outcome.to_data()),
    )
}

async fn setup(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let mut commands: Vec<Command> = (0..USERS)
        .map(|i| {
            let id = ctx.user0 + i;
            Command::UserRegistered(UserRegistered {
                user_id: id,
                name: format!("Bench {i}"),
                email: format!("bench-{id}@example.com"),
                password_hash: None,
                cpf: None,
                admin: false,
            })
        })
        .collect();
    commands.push(Command::TitleUpserted(TitleUpserted {
        title_id: ctx.title,
        title: "Benchmark".into(),
        description: "A title the benchmark reads and watches".into(),
        kind: TitleKind::Movie,
        year: 2026,
        directors: vec![],
        cast: vec![],
        genres: vec!["drama".into()],
        categories: vec![],
        seasons: vec![],
    }));
    let ids = ctx.publish(commands).await?;
    ctx.settle(&ids, "set-up", Duration::from_secs(180)).await?;
    Ok(())
}

/// S2 alone: commands put on `user_events` directly, timed until the last
/// outcome; S3's indexing of the same events alongside.
async fn s2_throughput(ctx: &mut Ctx<'_>) -> anyhow::Result<Table> {
    let mut t = Table::new(
        "S2 processing (commands put on Kafka directly) and S3 indexing",
        &[
            "run",
            "commands",
            "events/s",
            "target",
            "S3 indexed docs/s over the same run",
        ],
    );
    let n = ctx.args.events;
    let title = ctx.title;
    let runs: Vec<(&str, Vec<Command>, Option<f64>)> = vec![
        (
            "payments, 64 users (all partitions)",
            (0..n as i64).map(|i| payment(ctx.user(i))).collect(),
            Some(5000.0),
        ),
        (
            "views, 64 users (all partitions)",
            (0..n as i64).map(|i| view(ctx.user(i), title)).collect(),
            Some(5000.0),
        ),
        (
            "payments, one user (one hot partition)",
            (0..n as i64 / 2).map(|_| payment(ctx.user0)).collect(),
            Some(2000.0),
        ),
    ];
    for (name, commands, target) in runs {
        eprintln!("[bench] S2: {name}");
        let count = commands.len();
        let indexed0 = indexed_total(ctx).await;
        let start = Instant::now();
        let ids = ctx.publish(commands).await?;
        let last = ctx.settle(&ids, name, Duration::from_secs(900)).await?;
        let secs = last.duration_since(start).as_secs_f64();
        let eps = count as f64 / secs;
        // S3 indexes the command and its outcome: 2 documents per command.
        let s3 = indexed_rate(ctx, indexed0, 2 * count, start)
            .await
            .map_or_else(|e| e.into(), rate);
        t.row(vec![
            name.into(),
            count.to_string(),
            rate(eps),
            target.map_or("–".into(), |g| {
                format!("≥ {}: {}", rate(g), verdict(eps >= g))
            }),
            s3,
        ]);
        ctx.sample_memory(&format!("S2 run: {name}"));
    }
    // S3 alone: outcomes S2 never sees, put on response_events directly.
    let docs = 2 * n;
    eprintln!("[bench] S3 alone: {docs} outcomes on {RESPONSE_EVENTS}");
    let outcomes: Vec<_> = (0..docs as i64).map(|i| completed(ctx.user(i))).collect();
    let indexed0 = indexed_total(ctx).await;
    let start = Instant::now();
    outcomes::publish_envelopes(&ctx.producer, RESPONSE_EVENTS, outcomes).await?;
    let s3 = indexed_rate(ctx, indexed0, docs, start).await;
    t.row(vec![
        "S3 alone: outcomes put on response_events directly".into(),
        docs.to_string(),
        "–".into(),
        match s3 {
            Ok(r) => format!("≥ {}: {}", rate(10_000.0), verdict(r >= 10_000.0)),
            Err(_) => "≥ 10\u{202f}000/s".into(),
        },
        s3.map_or_else(|e| e.into(), rate),
    ]);
    ctx.sample_memory("S3 alone");
    t.note("events/s: commands ÷ time from the first send to the last outcome on response_events.");
    t.note("S3's rate is bounded by S2's: it indexes each command and its outcome (2 documents) as they appear; a figure equal to twice S2's means S3 kept up. Target ≥ 10\u{202f}000 docs/s, measured by the last run: S3 alone, from the first send until its counter has grown by every document.");
    Ok(t)
}

/// Documents/s S3 indexed from `start` until its counter, `before` then,
/// grew by `docs`; what went wrong otherwise.
async fn indexed_rate(
    ctx: &Ctx<'_>,
    before: Option<f64>,
    docs: usize,
    start: Instant,
) -> Result<f64, &'static str> {
    let want = before.ok_or("S3 metrics unreadable")? + docs as f64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        if indexed_total(ctx).await.is_some_and(|v| v >= want) {
            return Ok(docs as f64 / start.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("not caught up within 300 s")
}

/// `polystream_audit_indexed_events_total` summed over topics.
async fn indexed_total(ctx: &Ctx<'_>) -> Option<f64> {
    let text = ctx
        .http
        .get(format!("{}/metrics", ctx.args.monitor))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(
        text.lines()
            .filter(|l| l.starts_with("polystream_audit_indexed_events_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// Open loop through S1: command sent on schedule → `completed` seen on
/// response_events.
async fn end_to_end(ctx: &mut Ctx<'_>) -> anyhow::Result<Table> {
    let mut t = Table::new(
        "End to end: S1 command (open loop) → outcome on response_events",
        &[
            "offered",
            "sent",
            "answered 2xx",
            "skipped (256 in flight)",
            "S1 answer p50 / p99",
            "→ completed p50",
            "→ completed p99",
            "target p99 < 100 ms",
        ],
    );
    for &r in &ctx.args.rates {
        eprintln!("[bench] end to end at {r} commands/s");
        let req = ctx.request(
            Method::POST,
            ctx.payment_url(&ctx.args.api),
            None,
            None,
            true,
        );
        let (results, skipped) = load::open(req, r, ctx.args.duration(), 256).await;
        let stats = load::open_stats(&results, skipped, ctx.args.duration());
        let ids: Vec<(Uuid, Instant)> = results
            .iter()
            .filter_map(|s| {
                let id = s.body.as_ref()?["correlation_id"].as_str()?.parse().ok()?;
                Some((id, s.due))
            })
            .collect();
        let just: Vec<Uuid> = ids.iter().map(|(i, _)| *i).collect();
        ctx.drain(&just, "end to end").await;
        let mut e2e: Vec<u64> = ids
            .iter()
            .filter_map(|(id, due)| {
                let (at, completed) = ctx.outcomes.get(id)?;
                completed.then(|| at.saturating_duration_since(*due).as_micros() as u64)
            })
            .collect();
        e2e.sort_unstable();
        let p = |q| load::percentile(&e2e, q).map(Duration::from_micros);
        let p99 = p(0.99);
        t.row(vec![
            rate(r as f64),
            stats.sent.to_string(),
            stats.ok.to_string(),
            stats.skipped.to_string(),
            format!("{} / {}", ms(stats.p(0.5)), ms(stats.p(0.99))),
            ms(p(0.5)),
            ms(p99),
            if r == 1000 {
                verdict(p99.is_some_and(|d| d < Duration::from_millis(100)) && stats.skipped == 0)
                    .into()
            } else {
                "–".into()
            },
        ]);
        ctx.sample_memory(&format!("end to end at {r}/s"));
    }
    t.note("The generator sends each request when it is due whatever the others are doing, and measures from that moment (no coordinated omission); a request due while 256 are pending is skipped and counted.");
    t.note("Commands are the seed's `POST /usuarios/{id}/pagamento` over 64 users; outcomes are timed when the benchmark's consumer sees them.");
    Ok(t)
}

/// Where the user ids of the views written straight into MongoDB start: far
/// above any registered user's.
const OTHERS: i64 = 7_000_000_000_000;

/// Removes the views of the benchmark's other users, one user at a time:
/// FerretDB on PostgreSQL cannot delete more than 65 535 documents in one
/// command, and a user id is a filter it hands to PostgreSQL's index.
async fn remove_others(views: &mongodb::Collection<Document>) -> anyhow::Result<()> {
    let users = views
        .distinct(
            "user_id",
            doc! {"user_id": {"$gte": OTHERS, "$lt": OTHERS + 2_000_000_000}},
        )
        .await?;
    for user in users {
        views.delete_many(doc! {"user_id": user}).await?;
    }
    Ok(())
}

/// Cached title reads and a user's history at growing collection sizes.
async fn reads(ctx: &mut Ctx<'_>) -> anyhow::Result<Table> {
    let mut t = Table::new(
        "Reads through S1",
        &[
            "read",
            "data",
            "load",
            "answered 2xx",
            "req/s",
            "p50",
            "p99",
            "target",
        ],
    );
    eprintln!("[bench] cached title reads");
    let (api, title) = (ctx.args.api.clone(), ctx.title);
    let url: Arc<dyn Fn(u64) -> String + Send + Sync> =
        Arc::new(move |_| format!("{api}/v1/titles/{title}"));
    let s = load::closed(
        ctx.request(Method::GET, url, None, None, false),
        50,
        ctx.args.duration(),
    )
    .await;
    t.row(read_row(
        "`GET /v1/titles/{id}` (Redis cache)",
        "one title",
        "50 clients, closed loop",
        &s,
        None,
    ));

    let token = admin_token(ctx).await?;
    let db = polystream_stores::mongo::connect(&ctx.args.mongodb)
        .await
        .context("MongoDB-wire server is not reachable")?;
    let views = db.collection::<Document>("views");
    let reader = ctx.user0 + USERS - 1;
    let others = OTHERS + (ctx.user0 % 1_000_000_000);
    // A run stopped half-way leaves its views behind, and every scan of the
    // collection (recommendations on FerretDB) pays for them: clear them.
    remove_others(&views)
        .await
        .context("removing views an earlier benchmark left")?;
    // The reader's own views go through S2 like any (so its history head is
    // what S2 keeps); the rest of the collection is other users' views,
    // written directly.
    // Through S2 they are slow to record on FerretDB (see docs/performance.md).
    let own = ctx.args.views.first().copied().unwrap_or(0).min(1_000);
    eprintln!("[bench] recording {own} views of one user through S2");
    let ids = ctx
        .publish((0..own).map(|_| view(reader, ctx.title)).collect())
        .await?;
    ctx.settle(&ids, "the reader's views", Duration::from_secs(900))
        .await?;
    let mut stored = own;
    let result = async {
        for &target in &ctx.args.views {
            eprintln!("[bench] storing views up to {target}");
            stored = fill_views(&views, others, ctx.title, stored, target).await?;
            let (api, uid) = (ctx.args.api.clone(), reader);
            let url: Arc<dyn Fn(u64) -> String + Send + Sync> =
                Arc::new(move |_| format!("{api}/v1/users/{uid}/views?limit=20"));
            let req = ctx.request(Method::GET, url, Some(token.clone()), None, false);
            eprintln!("[bench] history reads with {stored} views stored");
            let (res, skipped) = load::open(req, 100, ctx.args.duration(), 256).await;
            let s = load::open_stats(&res, skipped, ctx.args.duration());
            t.row(read_row(
                "`GET /v1/users/{id}/views?limit=20` (MongoDB wire)",
                &format!("{stored} views stored, {own} of them the reader's"),
                "100 req/s, open loop",
                &s,
                Some(Duration::from_millis(20)),
            ));
            ctx.sample_memory(&format!("history reads, {stored} views"));
        }
        anyhow::Ok(())
    }
    .await;
    eprintln!("[bench] removing the benchmark's views");
    if let Err(e) = remove_others(&views).await {
        eprintln!("[bench] could not remove the benchmark's views: {e:#}");
    }
    let _ = views.delete_many(doc! {"user_id": reader}).await;
    let _ = db
        .collection::<Document>("view_history")
        .delete_many(doc! {"user_id": reader})
        .await;
    result?;
    t.note("The reader's views are recorded through Kafka and S2; the other views (1 000 other users) are written straight into the `views` collection, so only the read is timed. Then all are removed.");
    Ok(t)
}

fn read_row(
    what: &str,
    data: &str,
    load: &str,
    s: &Stats,
    target: Option<Duration>,
) -> Vec<String> {
    let p99 = s.p(0.99);
    vec![
        what.into(),
        data.into(),
        load.into(),
        format!("{} of {}{}", s.ok, s.sent + s.skipped, skipped_note(s)),
        rate(s.rps()),
        ms(s.p(0.5)),
        ms(p99),
        target.map_or("–".into(), |g| {
            format!(
                "p99 < {}: {}",
                ms(Some(g)),
                verdict(p99.is_some_and(|d| d < g) && s.skipped == 0 && s.errors == 0)
            )
        }),
    ]
}

fn skipped_note(s: &Stats) -> String {
    let mut parts = Vec::new();
    if s.skipped > 0 {
        parts.push(format!("{} skipped", s.skipped));
    }
    for (status, n) in &s.error_statuses {
        parts.push(format!("{n}× {status}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// Inserts views of users `users..users + 1000` until `have` reaches
/// `target`; returns the new count.
async fn fill_views(
    views: &mongodb::Collection<Document>,
    users: i64,
    title: i64,
    mut have: u64,
    target: u64,
) -> anyhow::Result<u64> {
    let start = Instant::now();
    let base = chrono::Utc::now().timestamp_millis() - 86_400_000 * 365;
    while have < target {
        let batch: Vec<Document> = (have..target.min(have + 5000))
            .map(|i| {
                doc! {
                    "_id": Uuid::now_v7().to_string(), "user_id": users + (i % 1000) as i64, "title_id": title,
                    "title": "Benchmark", "kind": "movie", "seconds_watched": 600_i64,
                    "position_pct": 40.0, "completed": i % 3 == 0,
                    "watched_at": mongodb::bson::DateTime::from_millis(base + i as i64 * 1000),
                }
            })
            .collect();
        let n = batch.len() as u64;
        views
            .insert_many(batch)
            .ordered(false)
            .await
            .context("MongoDB-wire server: inserting views")?;
        have += n;
        if have.is_multiple_of(50_000) {
            eprintln!(
                "[bench]   {have}/{target} views stored ({:.0}/s)",
                have as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(have)
}

async fn admin_token(ctx: &Ctx<'_>) -> anyhow::Result<String> {
    let r = ctx
        .http
        .post(format!("{}/v1/sessions", ctx.args.api))
        .json(&json!({"email": ctx.args.admin_email, "password": ctx.args.admin_password}))
        .send()
        .await
        .context("S1 is not reachable")?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or_default();
    match body["token"].as_str() {
        Some(t) if status.is_success() => Ok(t.to_owned()),
        _ => bail!("admin login failed ({status}): {body}"),
    }
}

/// S1's command ingest in closed loop next to the limit built here.
async fn ingest(ctx: &mut Ctx<'_>) -> anyhow::Result<Table> {
    let mut t = Table::new(
        "S1 command ingest (answer after Kafka's acknowledgement), closed loop",
        &[
            "clients",
            "handler",
            "req/s",
            "p50",
            "p99",
            "errors",
            "of the limit",
        ],
    );
    let limit_addr = crate::limit::serve(&ctx.args.kafka, "polystream-bench-limit").await?;
    let ingest_api = ctx.args.ingest_api.as_deref().unwrap_or(&ctx.args.api);
    let d = ctx.args.duration();
    for clients in [50usize, 256] {
        eprintln!("[bench] bare axum, no I/O, {clients} clients");
        let url: Arc<dyn Fn(u64) -> String + Send + Sync> =
            Arc::new(move |_| format!("http://{limit_addr}/nothing"));
        let bare = load::closed(
            ctx.request(Method::POST, url, None, None, false),
            clients,
            d,
        )
        .await;
        eprintln!("[bench] bare axum + Kafka acks=all, {clients} clients");
        let url: Arc<dyn Fn(u64) -> String + Send + Sync> =
            Arc::new(move |_| format!("http://{limit_addr}/kafka"));
        let body = json!({"bench": "a record about as large as a payment command's envelope", "pad": "x".repeat(400)});
        let limit = load::closed(
            ctx.request(Method::POST, url, None, Some(body), false),
            clients,
            d,
        )
        .await;
        eprintln!("[bench] S1 POST /usuarios/{{id}}/pagamento, {clients} clients");
        let s1 = load::closed(
            ctx.request(Method::POST, ctx.payment_url(ingest_api), None, None, false),
            clients,
            d,
        )
        .await;
        let ratio = s1.rps() / limit.rps().max(1.0);
        for (name, s, of) in [
            ("bare axum, no I/O", &bare, String::new()),
            (
                "bare axum + one Kafka record, acks=all, idempotent (the limit)",
                &limit,
                "100 %".into(),
            ),
            (
                "S1 `POST /usuarios/{id}/pagamento`",
                &s1,
                if clients == 256 {
                    format!(
                        "{:.0} % (target ≥ 50 %: {})",
                        ratio * 100.0,
                        verdict(ratio >= 0.5)
                    )
                } else {
                    format!("{:.0} %", ratio * 100.0)
                },
            ),
        ] {
            t.row(vec![
                clients.to_string(),
                name.into(),
                rate(s.rps()),
                ms(s.p(0.5)),
                ms(s.p(0.99)),
                s.errors.to_string(),
                of,
            ]);
        }
        ctx.sample_memory(&format!("S1 ingest, {clients} clients"));
    }
    t.note("The limit is built by the benchmark itself with S1's producer settings (`polystream_common::kafka::producer`: acks=all, idempotent, lz4, linger 5 ms) on a topic of its own.");
    t.note("`./dev bench` runs these against a second S1 whose topic nothing consumes, so S2 and S3 do not share the two cores with it; the limit produces to a topic of its own the same way.");
    Ok(t)
}

/// A burst of seed registrations without a password (no hash is
/// computed), then paid commands, and S1's memory after them.
async fn registrations(ctx: &mut Ctx<'_>) -> anyhow::Result<Table> {
    let mut t = Table::new(
        "Seed registrations (`POST /usuarios`, no password) and payments, 50 / 256 clients, closed loop",
        &[
            "S1",
            "registrations/s",
            "p99",
            "payments/s (256 clients)",
            "p99",
            "errors",
            "RSS after / peak (MiB)",
        ],
    );
    let api = ctx
        .args
        .ingest_api
        .clone()
        .unwrap_or_else(|| ctx.args.api.clone());
    eprintln!("[bench] seed registrations, 50 clients");
    let base = api.clone();
    let url: Arc<dyn Fn(u64) -> String + Send + Sync> =
        Arc::new(move |_| format!("{base}/usuarios"));
    let regs = load::closed(
        ctx.request(Method::POST, url, None, None, false),
        50,
        ctx.args.duration(),
    )
    .await;
    eprintln!("[bench] payments, 256 clients");
    let pays = load::closed(
        ctx.request(Method::POST, ctx.payment_url(&api), None, None, false),
        256,
        ctx.args.duration(),
    )
    .await;
    let memory = ctx
        .rss("s1_ingest")
        .map_or("–".into(), |(now, peak)| format!("{now:.0} / {peak:.0}"));
    t.row(vec![
        "the ingest S1 (allocator: mimalloc)".into(),
        rate(regs.rps()),
        ms(regs.p(0.99)),
        rate(pays.rps()),
        ms(pays.p(0.99)),
        format!("{}{}", regs.errors + pays.errors, skipped_note(&regs)),
        memory,
    ]);
    ctx.sample_memory("registration and payment bursts");
    t.note("It publishes to the benchmark's ingest topic (nothing consumes it). Memory is the process's own after both bursts; peak is its VmHWM.");
    Ok(t)
}
