//! The processor against the real local servers, started in-process, each
//! test on its own topics, consumer group, MongoDB database and ids.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use futures::{AsyncWriteExt, TryStreamExt};
use mongodb::bson::{Document, doc};
use mongodb::options::GridFsBucketOptions;
use polystream_common::events::*;
use polystream_smoke_tests::metrics_text::{exemplar_lines, sample};
use rdkafka::Message;
use serde_json::{Value, json};
use support::{Env, cpf, unique_id, unique_name};
use uuid::Uuid;

fn register(user_id: i64, email: &str, cpf: Option<String>) -> Command {
    match support::registration(user_id, &format!("User {user_id}")) {
        Command::UserRegistered(r) => Command::UserRegistered(UserRegistered {
            email: email.into(),
            cpf,
            ..r
        }),
        other => other,
    }
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn subscribe(user_id: i64, plan: Plan) -> Command {
    Command::SubscriptionChanged(SubscriptionChanged {
        user_id,
        plan,
        status: SubscriptionStatus::Active,
        started_on: date(2026, 11, 1),
        renews_on: date(2026, 12, 1),
    })
}

fn pay(user_id: i64, payment_id: Uuid) -> Command {
    Command::PaymentRecorded(PaymentRecorded {
        payment_id,
        user_id,
        amount_cents: 3990,
        currency: "BRL".into(),
        method: PaymentMethod::Pix,
        status: PaymentStatus::Approved,
        paid_at: Utc::now(),
    })
}

fn prefs(user_id: i64) -> Command {
    Command::PreferencesUpdated(PreferencesUpdated {
        user_id,
        language: "pt-BR".into(),
        notifications: true,
        theme: Theme::Dark,
    })
}

fn title(title_id: i64, name: &str, genres: &[&str]) -> Command {
    Command::TitleUpserted(TitleUpserted {
        title_id,
        title: name.into(),
        description: format!("About {name}"),
        kind: TitleKind::Movie,
        year: 1999,
        directors: vec!["Someone".into()],
        cast: vec!["Actor".into()],
        genres: genres.iter().map(|g| (*g).to_owned()).collect(),
        categories: vec![],
        seasons: vec![],
    })
}

fn relate(title_id: i64, related_title_id: i64, relation: Relation) -> Command {
    Command::TitlesRelated(TitlesRelated {
        title_id,
        related_title_id,
        relation,
    })
}

fn asset(title_id: i64, asset_id: &str) -> Command {
    Command::AssetAttached(AssetAttached {
        title_id,
        asset_id: asset_id.into(),
        kind: AssetKind::Poster,
        filename: "poster.png".into(),
        content_type: "image/png".into(),
        length: 4,
    })
}

fn view(view_id: Uuid, user_id: i64, title_id: i64) -> Command {
    Command::ViewRecorded(ViewRecorded {
        view_id,
        user_id,
        title_id,
        seconds_watched: 5400,
        position_pct: 100.0,
        completed: true,
        watched_at: Utc::now(),
    })
}

fn rate(user_id: i64, title_id: i64, stars: u8) -> Command {
    Command::TitleRated(TitleRated {
        user_id,
        title_id,
        stars,
    })
}

fn recommend(user_id: i64) -> Command {
    Command::RecommendationsRequested(RecommendationsRequested { user_id })
}

fn warm(title_id: i64) -> Command {
    Command::TitleCacheWarmRequested(TitleCacheWarmRequested { title_id })
}

fn delete(title_id: i64) -> Command {
    Command::TitleDeleted(TitleDeleted { title_id })
}

async fn upload_asset(t: &Env) -> String {
    let bucket = t.mongo.gridfs_bucket(
        GridFsBucketOptions::builder()
            .bucket_name(polystream_stores::mongo::ASSETS_BUCKET.to_owned())
            .build(),
    );
    let mut up = bucket.open_upload_stream("poster.png").await.unwrap();
    up.write_all(b"\x89PNG").await.unwrap();
    up.close().await.unwrap();
    up.id().as_object_id().unwrap().to_hex()
}

async fn find(t: &Env, coll: &str, filter: Document) -> Vec<Document> {
    t.mongo
        .collection::<Document>(coll)
        .find(filter)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_persists_to_its_store_and_completes() {
    let mut t = Env::new().await;
    let p = t.start().await;
    let uid = unique_id();

    // PostgreSQL
    let r = t
        .expect_completed(&register(
            uid,
            &format!("u{uid}@example.com"),
            Some(cpf(uid)),
        ))
        .await;
    assert_eq!(r["result"], json!({"user_id": uid}));
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE user_id = $1", uid)
            .await,
        1
    );
    t.expect_completed(&subscribe(uid, Plan::Premium)).await;
    t.expect_completed(&subscribe(uid, Plan::Basic)).await;
    let plan: String = sqlx::query_scalar("SELECT plan FROM subscriptions WHERE user_id = $1")
        .bind(uid)
        .fetch_one(&t.pg)
        .await
        .unwrap();
    assert_eq!(plan, "basic", "a subscription change replaces the plan");
    let payment = Uuid::now_v7();
    let r = t.expect_completed(&pay(uid, payment)).await;
    assert_eq!(r["result"]["payment_id"], payment.to_string());
    t.expect_completed(&pay(uid, payment)).await;
    assert_eq!(
        t.count("SELECT count(*) FROM payments WHERE user_id = $1", uid)
            .await,
        1,
        "a payment is recorded once per payment id"
    );
    t.expect_completed(&prefs(uid)).await;
    let theme: String = sqlx::query_scalar("SELECT theme FROM preferences WHERE user_id = $1")
        .bind(uid)
        .fetch_one(&t.pg)
        .await
        .unwrap();
    assert_eq!(theme, "dark");

    // MongoDB catalog
    let (t1, t2, t3, t4) = (unique_id(), unique_id(), unique_id(), unique_id());
    t.expect_completed(&title(t1, "Matrix", &["sci-fi", "action"]))
        .await;
    t.expect_completed(&title(t2, "Matrix Reloaded", &["sci-fi"]))
        .await;
    t.expect_completed(&title(t3, "Arrival", &["sci-fi", "drama"]))
        .await;
    t.expect_completed(&title(t4, "Notebook", &["romance"]))
        .await;
    let docs = find(&t, "titles", doc! {"_id": t1}).await;
    assert_eq!(docs[0].get_str("title").unwrap(), "Matrix");
    assert!(
        docs[0]
            .get_array("assets")
            .unwrap_or_else(|e| panic!("{e}: {:?}", docs[0]))
            .is_empty()
    );

    t.expect_completed(&relate(t1, t2, Relation::Sequel)).await;
    t.expect_completed(&relate(t1, t2, Relation::Sequel)).await;
    let rel = find(&t, "title_relations", doc! {"title_id": t1}).await;
    assert_eq!(rel.len(), 1, "a relation is stored once: {rel:?}");
    assert!(rel[0].get_datetime("created_at").is_ok(), "{rel:?}");
    assert_eq!(
        find(&t, "title_relations", doc! {"title_id": t1})
            .await
            .len(),
        1
    );

    let asset_id = upload_asset(&t).await;
    let r = t.expect_completed(&asset(t1, &asset_id)).await;
    assert_eq!(r["result"]["asset_id"], asset_id.as_str());
    t.expect_completed(&asset(t1, &asset_id)).await;
    // A catalog edit keeps the attachments.
    t.expect_completed(&title(t1, "The Matrix", &["sci-fi", "action"]))
        .await;
    let docs = find(&t, "titles", doc! {"_id": t1}).await;
    assert_eq!(docs[0].get_str("title").unwrap(), "The Matrix");
    let assets = docs[0].get_array("assets").unwrap();
    assert_eq!(
        assets.len(),
        1,
        "re-attaching replaces the entry: {assets:?}"
    );

    // Views: MongoDB history + Redis rankings and counters.
    let v = Uuid::now_v7();
    t.expect_completed(&view(v, uid, t1)).await;
    let views = find(&t, "views", doc! {"user_id": uid}).await;
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].get_str("title").unwrap(), "The Matrix");
    assert_eq!(views[0].get_str("kind").unwrap(), "movie");
    assert_eq!(
        t.redis_get(&format!("counter:views:{t1}")).await.as_deref(),
        Some("1")
    );
    assert_eq!(t.redis_score("rank:views:all", t1).await, Some(1.0));
    let day = polystream_stores::keys::rank_views(polystream_stores::keys::Window::Day, Utc::now());
    assert_eq!(t.redis_score(&day, t1).await, Some(1.0));

    // Ratings: MongoDB + Redis top-rated.
    let other = unique_id();
    t.expect_completed(&register(other, &format!("u{other}@example.com"), None))
        .await;
    t.expect_completed(&rate(uid, t1, 5)).await;
    t.expect_completed(&rate(other, t1, 2)).await;
    let r = t.expect_completed(&rate(other, t1, 4)).await;
    assert_eq!(
        r["result"]["average"], 4.5,
        "a re-rating replaces the earlier one"
    );
    assert_eq!(find(&t, "ratings", doc! {"title_id": t1}).await.len(), 2);
    assert_eq!(t.redis_score("rank:rating:all", t1).await, Some(4.5));
    let today =
        polystream_stores::keys::rank_rating(polystream_stores::keys::Window::Day, Utc::now());
    assert_eq!(t.redis_score(&today, t1).await, Some(4.5));

    // Recommendations: the sequel first, then same-genre titles; never the watched one.
    let r = t.expect_completed(&recommend(uid)).await;
    assert_eq!(r["result"]["title_ids"][0], t2, "{r}");
    let recs = find(&t, "recommendations", doc! {"_id": uid}).await;
    let items = recs[0].get_array("items").unwrap();
    let ids: Vec<i64> = items
        .iter()
        .map(|i| i.as_document().unwrap().get_i64("title_id").unwrap())
        .collect();
    assert_eq!(ids[..2], [t2, t3]);
    assert!(!ids.contains(&t1) && !ids.contains(&t4), "{ids:?}");
    let reasons = items[0]
        .as_document()
        .unwrap()
        .get_array("reasons")
        .unwrap();
    assert_eq!(reasons[0].as_str(), Some("sequel to The Matrix"));

    // Cache: warm, then invalidated by a change.
    t.expect_completed(&warm(t1)).await;
    let cached: Value =
        serde_json::from_str(&t.redis_get(&format!("cache:title:{t1}")).await.unwrap()).unwrap();
    assert_eq!(cached["title_id"], t1);
    assert_eq!(cached["title"], "The Matrix");
    t.expect_completed(&title(t1, "The Matrix (1999)", &["sci-fi"]))
        .await;
    assert_eq!(t.redis_get(&format!("cache:title:{t1}")).await, None);

    // Deleting a title removes its relations.
    let r = t.expect_completed(&delete(t2)).await;
    assert_eq!(r["result"]["deleted"], true);
    assert!(find(&t, "titles", doc! {"_id": t2}).await.is_empty());
    assert!(
        find(&t, "title_relations", doc! {"title_id": t1})
            .await
            .is_empty()
    );
    // ...and its ranking entries.
    t.expect_completed(&delete(t1)).await;
    assert_eq!(t.redis_score("rank:views:all", t1).await, None);
    assert_eq!(t.redis_score("rank:rating:all", t1).await, None);

    // A user with no history gets an empty list.
    let fresh = unique_id();
    t.expect_completed(&register(fresh, &format!("u{fresh}@example.com"), None))
        .await;
    let r = t.expect_completed(&recommend(fresh)).await;
    assert_eq!(r["result"]["count"], 0, "{r}");

    p.stop().await.unwrap();
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_rules_fail_with_stable_codes() {
    let mut t = Env::new().await;
    let p = t.start().await;
    let (uid, uid2, uid3) = (unique_id(), unique_id(), unique_id());
    let email = format!("Case{uid}@Example.com");
    t.expect_completed(&register(uid, &email, Some(cpf(uid))))
        .await;
    t.expect_failed(
        &register(uid, &format!("x{uid}@example.com"), None),
        "duplicate_user",
    )
    .await;
    let f = t
        .expect_failed(
            &register(uid2, &email.to_lowercase(), None),
            "duplicate_email",
        )
        .await;
    assert!(
        f["reason"].as_str().unwrap().contains("already exists"),
        "{f}"
    );
    let f = t
        .expect_failed(
            &register(uid3, &format!("y{uid3}@example.com"), Some(cpf(uid))),
            "duplicate_cpf",
        )
        .await;
    assert!(
        !f["reason"].as_str().unwrap().contains(&cpf(uid)),
        "the CPF is not echoed"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE user_id = $1", uid2)
            .await,
        0
    );

    let tid = unique_id();
    t.expect_completed(&title(tid, "Known", &["drama"])).await;
    let nobody = unique_id();
    let missing = unique_id();
    for cmd in [
        subscribe(nobody, Plan::Basic),
        pay(nobody, Uuid::now_v7()),
        prefs(nobody),
        view(Uuid::now_v7(), nobody, tid),
        rate(nobody, tid, 4),
        recommend(nobody),
    ] {
        let f = t.expect_failed(&cmd, "unknown_user").await;
        assert_eq!(f["reason"], format!("user {nobody} does not exist"));
    }
    for cmd in [
        view(Uuid::now_v7(), uid, missing),
        rate(uid, missing, 4),
        relate(tid, missing, Relation::Similar),
        asset(missing, "0123456789abcdef01234567"),
        warm(missing),
    ] {
        let f = t.expect_failed(&cmd, "unknown_title").await;
        assert_eq!(f["reason"], format!("title {missing} does not exist"));
    }
    t.expect_failed(&asset(tid, "0123456789abcdef01234567"), "unknown_asset")
        .await;
    assert!(
        find(&t, "views", doc! {"title_id": missing})
            .await
            .is_empty()
    );
    assert_eq!(t.redis_score("rank:views:all", missing).await, None);

    p.stop().await.unwrap();
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redelivered_events_change_nothing_and_repeat_the_outcome() {
    let mut t = Env::new().await;
    let p = t.start().await;
    let uid = unique_id();
    let tid = unique_id();
    t.expect_completed(&title(tid, "Twice", &["drama"])).await;

    let vid = Uuid::now_v7();
    let envs = [
        Env::envelope(&register(uid, &format!("u{uid}@example.com"), None)),
        Env::envelope(&view(vid, uid, tid)),
        Env::envelope(&rate(uid, tid, 3)),
    ];
    for env in &envs {
        // The same bytes, twice in a row: what a redelivery looks like.
        t.send_env(env).await;
        t.send_env(env).await;
    }
    for env in &envs {
        let first = t.outcome_n(env.correlationid, 1).await;
        let second = t.outcome_n(env.correlationid, 2).await;
        assert_eq!(
            first.event_type, "polystream.command.completed.v1",
            "{}",
            first.data
        );
        assert_eq!(
            first, second,
            "a redelivery republishes the recorded outcome as it was"
        );
    }
    // A new event for the same view (a client retry) is not counted again either.
    t.expect_completed(&view(vid, uid, tid)).await;

    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE user_id = $1", uid)
            .await,
        1
    );
    assert_eq!(find(&t, "views", doc! {"user_id": uid}).await.len(), 1);
    assert_eq!(
        t.redis_get(&format!("counter:views:{tid}"))
            .await
            .as_deref(),
        Some("1")
    );
    assert_eq!(t.redis_score("rank:views:all", tid).await, Some(1.0));
    assert_eq!(t.redis_score("rank:rating:all", tid).await, Some(3.0));
    let ledger: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE event_id = ANY($1)")
            .bind(envs.iter().map(|e| e.id).collect::<Vec<_>>())
            .fetch_one(&t.pg)
            .await
            .unwrap();
    assert_eq!(ledger, 3);

    p.stop().await.unwrap();
    t.cleanup().await;
}

/// Everything one user and title left in the stores, to compare before/after a replay.
async fn snapshot(t: &Env, uid: i64, tid: i64) -> Value {
    let q = |sql: &'static str| async move { t.count(sql, uid).await };
    json!({
        "users": q("SELECT count(*) FROM users WHERE user_id = $1").await,
        "subscriptions": q("SELECT count(*) FROM subscriptions WHERE user_id = $1").await,
        "payments": q("SELECT count(*) FROM payments WHERE user_id = $1").await,
        "titles": find(t, "titles", doc! {"_id": tid}).await.len(),
        "title": find(t, "titles", doc! {"_id": tid}).await[0].get_datetime("updated_at").unwrap().timestamp_millis(),
        "views": find(t, "views", doc! {"user_id": uid}).await.len(),
        "ratings": find(t, "ratings", doc! {"user_id": uid}).await.len(),
        "view_counter": t.redis_get(&format!("counter:views:{tid}")).await,
        "rank_views": t.redis_score("rank:views:all", tid).await,
        "rank_rating": t.redis_score("rank:rating:all", tid).await,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_replay_with_a_fresh_group_changes_nothing() {
    let mut t = Env::new().await;
    let first = t.start().await;
    let uid = unique_id();
    let tid = unique_id();
    let cmds = [
        register(uid, &format!("u{uid}@example.com"), None),
        subscribe(uid, Plan::Standard),
        pay(uid, Uuid::now_v7()),
        title(tid, "Replayed", &["comedy"]),
        view(Uuid::now_v7(), uid, tid),
        view(Uuid::now_v7(), uid, tid),
        rate(uid, tid, 4),
        subscribe(uid, Plan::Premium),
    ];
    // One at a time: the user's and the title's commands have different keys,
    // so different partitions, and a view must not overtake its title.
    let mut envs = Vec::new();
    for c in &cmds {
        let env = t.send(c).await;
        let o = t.outcome(&env).await;
        assert_eq!(
            o.event_type, "polystream.command.completed.v1",
            "{}",
            o.data
        );
        envs.push(env);
    }
    first.stop().await.unwrap();
    let before = snapshot(&t, uid, tid).await;
    assert_eq!(before["views"], 2);
    assert_eq!(before["rank_views"], 2.0);

    let mut replay = t.config.clone();
    replay.group_id = unique_name("s2t-replay");
    let second = t.start_with(replay).await;
    for env in &envs {
        let again = t.outcome_n(env.correlationid, 2).await;
        assert_eq!(again, t.outcome_n(env.correlationid, 1).await);
    }
    second.stop().await.unwrap();
    assert_eq!(snapshot(&t, uid, tid).await, before);
    let plan: String = sqlx::query_scalar("SELECT plan FROM subscriptions WHERE user_id = $1")
        .bind(uid)
        .fetch_one(&t.pg)
        .await
        .unwrap();
    assert_eq!(plan, "premium", "the replay did not roll the plan back");
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_events_are_dead_lettered_and_the_partition_moves_on() {
    let mut t = Env::new().await;
    let p = t.start().await;
    let uid = unique_id();
    let key = format!("user/{uid}");
    let invalid = Env::envelope(&rate(uid, unique_id(), 3));
    let mut invalid_json = serde_json::to_value(&invalid).unwrap();
    invalid_json["data"]["stars"] = json!(9);
    let mut unknown = serde_json::to_value(Env::envelope(&recommend(uid))).unwrap();
    unknown["type"] = json!("polystream.nope.v1");
    let mut old_spec = serde_json::to_value(Env::envelope(&recommend(uid))).unwrap();
    old_spec["specversion"] = json!("0.3");
    let poison: Vec<(Vec<u8>, &str)> = vec![
        (
            b"\x00not json at all".to_vec(),
            "not a JSON CloudEvents envelope",
        ),
        (
            serde_json::to_vec(&old_spec).unwrap(),
            "unsupported specversion",
        ),
        (
            serde_json::to_vec(&unknown).unwrap(),
            "unknown event type \"polystream.nope.v1\"",
        ),
        (
            serde_json::to_vec(&invalid_json).unwrap(),
            "invalid data for polystream.title.rated.v1: data.stars: must be between 1 and 5",
        ),
    ];
    for (bytes, _) in &poison {
        t.send_raw(&key, bytes, &[("traceparent", support::TRACEPARENT)])
            .await;
    }
    // The next good event on the same partition is still processed.
    t.expect_completed(&register(uid, &format!("u{uid}@example.com"), None))
        .await;

    let status = t.status_of(invalid.correlationid).await;
    assert_eq!(status.code.as_deref(), Some("invalid_event"), "{status:?}");
    assert!(status.reason.unwrap().contains("data.stars"));

    let dlq = t.dead_letters();
    let mut got = Vec::new();
    while got.len() < poison.len() {
        let m = tokio::time::timeout(Duration::from_secs(60), dlq.recv())
            .await
            .expect("dead letters within 60s")
            .unwrap();
        let h = |name: &str| support::header(&m, name);
        assert_eq!(
            h("dlq_source_topic").as_deref(),
            Some(t.config.topics.user_events.as_str())
        );
        assert!(h("dlq_source_partition").unwrap().parse::<i32>().is_ok());
        assert!(h("dlq_source_offset").unwrap().parse::<i64>().is_ok());
        // The dead letter continues the command's trace from S2's send span.
        let trace = h("traceparent").unwrap();
        assert_eq!(trace.split('-').nth(1), Some(support::TRACE_ID), "{trace}");
        assert_ne!(trace, support::TRACEPARENT);
        assert_eq!(m.key(), Some(key.as_bytes()));
        got.push((m.payload().unwrap().to_vec(), h("dlq_reason").unwrap()));
    }
    got.sort_by_key(|(_, r)| r.clone());
    for (bytes, reason) in &poison {
        let (_, r) = got
            .iter()
            .find(|(b, _)| b == bytes)
            .expect("the original bytes are dead-lettered unchanged");
        assert!(r.contains(reason), "{r:?} should contain {reason:?}");
    }
    let metrics = support::metrics_text(p.http_addr).await;
    for reason in [
        "not_an_envelope",
        "unsupported_envelope",
        "unknown_type",
        "invalid_data",
    ] {
        assert_eq!(
            sample(
                &metrics,
                "polystream_dead_lettered_events_total",
                &[("reason", reason)]
            ),
            Some(1.0),
            "{reason}: {metrics}"
        );
    }
    assert_eq!(
        sample(
            &metrics,
            "polystream_dead_lettered_events_total",
            &[("reason", "empty_payload")]
        ),
        Some(0.0),
        "{metrics}"
    );
    p.stop().await.unwrap();
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processors_start_together_and_share_the_work() {
    let mut t = Env::new().await;
    // An empty database, so both really race to apply the migrations.
    let db = unique_name("s2t").replace('-', "_");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&t.pg)
        .await
        .unwrap();
    let mut config = t.config.clone();
    let (base, _) = config.stores.database_url.rsplit_once('/').unwrap();
    config.stores.database_url = format!("{base}/{db}");
    let (a, b) = tokio::join!(t.start_with(config.clone()), t.start_with(config.clone()));
    let fresh = polystream_stores::pg::connect(&config.stores.database_url, 2)
        .await
        .unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&fresh)
        .await
        .unwrap();
    assert_eq!(
        applied as usize,
        polystream_stores::pg::MIGRATIONS.iter().count(),
        "each migration applied exactly once"
    );
    for r in [&a, &b] {
        let base = format!("http://{}", r.http_addr);
        let health = reqwest::get(format!("{base}/health")).await.unwrap();
        assert_eq!(health.status(), 200);
        let ready = reqwest::get(format!("{base}/ready")).await.unwrap();
        assert_eq!(ready.status(), 200);
        let body: Value = ready.json().await.unwrap();
        let names: Vec<&str> = body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["postgresql", "mongodb", "redis", "kafka", "partitions"]
        );
        assert_eq!(
            reqwest::get(format!("{base}/metrics"))
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // Users on different partitions, all processed exactly once between them.
    let mut envs = Vec::new();
    for _ in 0..6 {
        let uid = unique_id();
        envs.push((
            uid,
            t.send(&register(uid, &format!("u{uid}@example.com"), None))
                .await,
        ));
    }
    for (uid, env) in &envs {
        let o = t.outcome(env).await;
        assert_eq!(
            o.event_type, "polystream.command.completed.v1",
            "{}",
            o.data
        );
        let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE user_id = $1")
            .bind(*uid)
            .fetch_one(&fresh)
            .await
            .unwrap();
        assert_eq!(users, 1);
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    fresh.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {db} WITH (FORCE)"
    )))
    .execute(&t.pg)
    .await
    .unwrap();
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_outage_makes_the_partition_wait_and_nothing_is_skipped() {
    let mut t = Env::new().await;
    // PostgreSQL reached through a proxy the test can cut.
    let url = t.config.stores.database_url.clone();
    let (head, rest) = url.rsplit_once('@').expect("DATABASE_URL has user@host");
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let proxy = support::Proxy::start(hostport.to_owned()).await;
    let mut config = t.config.clone();
    config.stores.database_url = format!("{head}@{}/{path}", proxy.addr);
    let p = t.start_with(config).await;

    let uid = unique_id();
    proxy.cut();
    // Both for one user, so one partition: the subscription only succeeds if
    // it waits for the registration instead of being skipped or reordered.
    let reg = t
        .send(&register(uid, &format!("u{uid}@example.com"), None))
        .await;
    let sub = t.send(&subscribe(uid, Plan::Premium)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        t.status.get(reg.correlationid).await.unwrap().is_none(),
        "nothing is decided while PostgreSQL is unreachable"
    );
    proxy.restore();
    for env in [&reg, &sub] {
        let o = t.outcome(env).await;
        assert_eq!(
            o.event_type, "polystream.command.completed.v1",
            "{}",
            o.data
        );
    }
    assert_eq!(
        t.count("SELECT count(*) FROM subscriptions WHERE user_id = $1", uid)
            .await,
        1
    );
    p.stop().await.unwrap();
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_cover_consumption_processing_stores_sends_and_lag_on_metrics_addr() {
    let mut t = Env::new().await;
    let mut config = t.config.clone();
    config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    let p = t.start_with(config).await;
    let metrics_addr = p.metrics_addr.expect("METRICS_ADDR is served");
    let uid = unique_id();
    t.expect_completed(&register(uid, &format!("u{uid}@example.com"), None))
        .await;
    t.expect_failed(&rate(uid, unique_id(), 4), "unknown_title")
        .await;
    t.send_raw(
        &format!("user/{uid}"),
        b"not json",
        &[("traceparent", support::TRACEPARENT)],
    )
    .await;
    // The next event on the partition is done after the dead letter.
    t.expect_completed(&prefs(uid)).await;

    // /metrics moved to METRICS_ADDR: the API listener no longer has it.
    let on_api = reqwest::get(format!("http://{}/metrics", p.http_addr))
        .await
        .unwrap();
    assert_eq!(on_api.status(), 404);
    let topics = t.config.topics.clone();
    let group = t.config.group_id.clone();
    let user = topics.user_events.as_str();
    // The lag gauge appears with librdkafka's first statistics (every 5 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let r = support::get_metrics(&format!("http://{metrics_addr}/metrics")).await;
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        let text = r.text().await.unwrap();
        let lag = sample(
            &text,
            "polystream_kafka_consumer_lag",
            &[
                ("messaging_destination_name", user),
                ("messaging_consumer_group_name", group.as_str()),
            ],
        );
        if lag.is_some() {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no consumer lag for {user} within 30s: {text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Partitions that never had a record have no known lag (librdkafka
    // reports -1, which is not exported); the one the events went to has.
    let lags: Vec<f64> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("polystream_kafka_consumer_lag{")
                && l.contains(&format!("messaging_destination_name=\"{user}\""))
                && l.contains("messaging_destination_partition_id=\"")
        })
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert!(
        !lags.is_empty() && lags.len() <= 3 && lags.iter().all(|l| *l >= 0.0),
        "{lags:?}: {metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "messaging_client_consumed_messages_total",
            &[
                ("messaging_system", "kafka"),
                ("messaging_destination_name", user),
                ("messaging_consumer_group_name", group.as_str()),
            ]
        ),
        Some(4.0),
        "{metrics}"
    );
    let process = |event_type: &str, outcome: &str| {
        sample(
            &metrics,
            "messaging_process_duration_seconds_count",
            &[
                ("messaging_destination_name", user),
                ("event_type", event_type),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(
        process("polystream.user.registered.v1", "completed"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        process("polystream.title.rated.v1", "failed"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(process("unknown", "dead_lettered"), Some(1.0), "{metrics}");
    assert_eq!(
        process("polystream.preferences.updated.v1", "completed"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        exemplar_lines(&metrics, "messaging_process_duration_seconds_bucket")
            .filter(|l| l.contains(&format!("messaging_destination_name=\"{user}\"")))
            .any(|l| l.contains(&format!("trace_id=\"{}\"", support::TRACE_ID))),
        "a process-duration exemplar links to the command's trace: {metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "polystream_dead_lettered_events_total",
            &[("reason", "not_an_envelope")]
        ),
        Some(1.0),
        "{metrics}"
    );
    // Sends: three outcomes and one dead letter, all acknowledged.
    let sent = |topic: &str| {
        sample(
            &metrics,
            "messaging_client_sent_messages_total",
            &[("messaging_destination_name", topic), ("error_type", "")],
        )
    };
    assert_eq!(sent(&topics.response_events), Some(3.0), "{metrics}");
    assert_eq!(sent(&topics.dead_letter), Some(1.0), "{metrics}");
    assert!(
        sample(
            &metrics,
            "messaging_client_operation_duration_seconds_count",
            &[
                ("messaging_operation_name", "send"),
                ("messaging_destination_name", topics.dead_letter.as_str()),
            ]
        )
        .is_some(),
        "{metrics}"
    );
    // Store calls, by store and operation (process-wide: other tests add to them).
    for (store, operation) in [
        ("postgres", "select_processed_event"),
        ("postgres", "insert_user"),
        ("postgres", "insert_processed_event"),
        ("postgres", "commit"),
        ("postgres", "select_user_exists"),
        ("mongodb", "find_title"),
        ("redis", "record_status"),
    ] {
        let n = sample(
            &metrics,
            "polystream_store_operation_duration_seconds_count",
            &[
                ("store", store),
                ("operation", operation),
                ("outcome", "ok"),
            ],
        );
        assert!(n.unwrap_or(0.0) >= 1.0, "{store} {operation}: {metrics}");
    }
    p.stop().await.unwrap();
    t.cleanup().await;
}
