//! Every endpoint of the gateway against the real servers, the whole platform
//! in one process: each write goes S1 → Kafka → S2 and is then checked where
//! it lives — PostgreSQL, MongoDB (and its GridFS bucket) or Redis, read
//! directly — and in S3's audit trail; each read is checked against what the
//! owning store holds. Canonical `/v1` and seed-002-compatible endpoints alike.
//!
//! Few tests, each covering many endpoints: every platform start-up creates
//! topics and joins consumer groups, which is the slow part.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use chrono::{DateTime, Utc};
use mongodb::bson::{Bson, Document, doc, oid::ObjectId};
use polystream_smoke_tests::unique;
use polystream_stores::keys::{self, Window};
use polystream_stores::mongo;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Platform, Stores};

const REGISTERED: &str = "polystream.user.registered.v1";
const SUBSCRIPTION: &str = "polystream.subscription.changed.v1";
const PAYMENT: &str = "polystream.payment.recorded.v1";
const PREFERENCES: &str = "polystream.preferences.updated.v1";
const TITLE_UPSERTED: &str = "polystream.title.upserted.v1";
const TITLE_DELETED: &str = "polystream.title.deleted.v1";
const RELATED: &str = "polystream.title.related.v1";
const ASSET: &str = "polystream.title.asset_attached.v1";
const VIEW: &str = "polystream.view.recorded.v1";
const RATED: &str = "polystream.title.rated.v1";
const RECOMMENDATIONS: &str = "polystream.recommendations.requested.v1";
const CACHE_WARM: &str = "polystream.title.cache_warm_requested.v1";

fn time_of(d: &Document, field: &str) -> DateTime<Utc> {
    let t = d
        .get_datetime(field)
        .unwrap_or_else(|e| panic!("{field} in {d}: {e}"));
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap()
}

fn int_of(d: &Document, field: &str) -> i64 {
    match d.get(field) {
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Double(v)) => *v as i64,
        other => panic!("{field} in {d} is not an integer: {other:?}"),
    }
}

fn accepted_id(sent: &Value, field: &str) -> Value {
    sent["accepted"][field].clone()
}

/// A user registered through `POST /v1/users` and logged in.
/// Returns the id, a token, the registration `{accepted, outcome}` and the password.
async fn new_user(p: &Platform, name: &str) -> (i64, String, Value, String) {
    let slug = name.to_lowercase().replace(' ', ".");
    let email = format!("{}@example.com", unique(&slug));
    let password = format!("Pw-{}", uuid::Uuid::new_v4());
    let sent = p
        .command(
            Method::POST,
            "/v1/users",
            None,
            json!({"name": name, "email": email, "password": password}),
        )
        .await;
    let id = accepted_id(&sent, "user_id").as_i64().expect("user_id");
    let token = p.login(&email, &password).await;
    (id, token, sent, password)
}

/// A title added through `POST /v1/titles` by an administrator.
async fn new_title(p: &Platform, admin: &str, body: Value) -> (i64, Value) {
    let sent = p
        .command(Method::POST, "/v1/titles", Some(admin), body)
        .await;
    let id = accepted_id(&sent, "title_id").as_i64().expect("title_id");
    (id, sent)
}

async fn counter(s: &Stores, key: &str) -> i64 {
    s.redis_get(key)
        .await
        .map(|v| v.parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn canonical_endpoints_persist_in_the_owning_store_read_it_back_and_leave_a_trail() {
    let p = Platform::start().await;
    let s = p.stores.clone();
    let mut trails: Vec<(Value, &str)> = Vec::new();

    // ---- PostgreSQL: accounts ----
    let (uid, token, reg, password) = new_user(&p, "Ana Souza").await;
    let t = Some(token.as_str());
    let me = format!("/v1/users/{uid}");
    let (name, email, hash, admin): (String, String, String, bool) =
        sqlx::query_as("SELECT name, email, password_hash, admin FROM users WHERE user_id = $1")
            .bind(uid)
            .fetch_one(&s.pg)
            .await
            .unwrap();
    assert_eq!(name, "Ana Souza");
    assert!(hash.starts_with("$argon2id$") && !admin, "{hash} {admin}");
    let (st, profile) = p.get(&me, t).await;
    assert_eq!(st, 200, "{profile}");
    assert_eq!(
        (profile["user_id"].as_i64(), profile["email"].as_str()),
        (Some(uid), Some(email.as_str())),
        "{profile}"
    );
    assert!(!profile.to_string().contains("argon2"), "{profile}");
    assert_eq!(reg["outcome"]["result"]["user_id"], uid, "{reg}");
    trails.push((reg, REGISTERED));

    let sub = p
        .command(
            Method::PUT,
            &format!("{me}/subscription"),
            t,
            json!({"plan": "standard", "started_on": "2026-01-10", "renews_on": "2026-02-10"}),
        )
        .await;
    let row: (String, String, chrono::NaiveDate, chrono::NaiveDate) = sqlx::query_as(
        "SELECT plan, status, started_on, renews_on FROM subscriptions WHERE user_id = $1",
    )
    .bind(uid)
    .fetch_one(&s.pg)
    .await
    .unwrap();
    assert_eq!(
        (
            row.0.as_str(),
            row.1.as_str(),
            row.2.to_string(),
            row.3.to_string()
        ),
        (
            "standard",
            "active",
            "2026-01-10".into(),
            "2026-02-10".into()
        )
    );
    let (st, got) = p.get(&format!("{me}/subscription"), t).await;
    assert_eq!(st, 200, "{got}");
    assert_eq!(
        (&got["plan"], &got["status"], &got["renews_on"]),
        (&json!(row.0), &json!(row.1), &json!("2026-02-10")),
        "{got}"
    );
    trails.push((sub, SUBSCRIPTION));

    let mut payment_ids = Vec::new();
    for (cents, method) in [(3990, "pix"), (5590, "credit_card")] {
        let pay = p
            .command(
                Method::POST,
                &format!("{me}/payments"),
                t,
                json!({"amount_cents": cents, "method": method}),
            )
            .await;
        let pid = accepted_id(&pay, "payment_id");
        let row: (i64, i64, String, String) = sqlx::query_as(
            "SELECT user_id, amount_cents, currency, method FROM payments WHERE payment_id = $1::uuid",
        )
        .bind(pid.as_str().unwrap())
        .fetch_one(&s.pg)
        .await
        .unwrap();
        assert_eq!((row.0, row.1, row.3.as_str()), (uid, cents, method));
        payment_ids.push(pid);
        trails.push((pay, PAYMENT));
    }
    let stored: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT payment_id, amount_cents FROM payments WHERE user_id = $1 ORDER BY paid_at DESC, payment_id DESC",
    )
    .bind(uid)
    .fetch_all(&s.pg)
    .await
    .unwrap();
    let (st, pays) = p.get(&format!("{me}/payments?limit=10"), t).await;
    assert_eq!(st, 200, "{pays}");
    let listed: Vec<(String, i64)> = pays
        .as_array()
        .expect("payments array")
        .iter()
        .map(|x| {
            (
                x["payment_id"].as_str().unwrap().to_owned(),
                x["amount_cents"].as_i64().unwrap(),
            )
        })
        .collect();
    // Newest first, as PostgreSQL orders them.
    let expect: Vec<(String, i64)> = stored.iter().map(|(i, a)| (i.to_string(), *a)).collect();
    assert_eq!(listed, expect, "{pays}");
    assert_eq!(listed[0].0, payment_ids[1], "{pays}");
    let (_, one) = p.get(&format!("{me}/payments?limit=1"), t).await;
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{one}");

    let prefs = p
        .command(
            Method::PUT,
            &format!("{me}/preferences"),
            t,
            json!({"language": "pt-BR", "notifications": false, "theme": "dark"}),
        )
        .await;
    let row: (String, bool, String) =
        sqlx::query_as("SELECT language, notifications, theme FROM preferences WHERE user_id = $1")
            .bind(uid)
            .fetch_one(&s.pg)
            .await
            .unwrap();
    assert_eq!(row, ("pt-BR".into(), false, "dark".into()));
    let (st, got) = p.get(&format!("{me}/preferences"), t).await;
    assert_eq!(st, 200, "{got}");
    assert_eq!(
        (&got["language"], &got["notifications"], &got["theme"]),
        (&json!("pt-BR"), &json!(false), &json!("dark")),
        "{got}"
    );
    trails.push((prefs, PREFERENCES));

    // ---- Redis: sessions (S1 writes them directly, no command) ----
    let mut con = s.redis.clone();
    let live: i64 = redis::cmd("SCARD")
        .arg(keys::user_sessions(uid))
        .query_async(&mut con)
        .await
        .unwrap();
    let (st, sessions) = p.get(&format!("{me}/sessions"), t).await;
    assert_eq!(st, 200, "{sessions}");
    assert_eq!(
        sessions.as_array().map(Vec::len),
        Some(live as usize),
        "{sessions}"
    );

    // ---- MongoDB: catalog ----
    let admin = p.login(&p.admin.0, &p.admin.1).await;
    let a = Some(admin.as_str());
    let genre = unique("genre");
    let (tid, add) = new_title(
        &p,
        &admin,
        json!({"title": "Cidade de Deus", "description": "Rio, 1970s.", "kind": "movie", "year": 2002,
               "genres": [genre], "directors": ["Fernando Meirelles"], "cast": ["Alexandre Rodrigues"]}),
    )
    .await;
    let d = s.doc(mongo::TITLES, tid).await;
    assert_eq!(
        (d.get_str("title").unwrap(), d.get_str("kind").unwrap()),
        ("Cidade de Deus", "movie")
    );
    assert_eq!(int_of(&d, "year"), 2002);
    trails.push((add, TITLE_UPSERTED));
    let (tid2, add2) = new_title(
        &p,
        &admin,
        json!({"title": "Cidade dos Homens", "kind": "series", "year": 2007, "genres": [genre],
               "seasons": [{"number": 1, "episodes": 4}]}),
    )
    .await;
    let d2 = s.doc(mongo::TITLES, tid2).await;
    assert_eq!(d2.get_array("seasons").unwrap().len(), 1, "{d2}");
    trails.push((add2, TITLE_UPSERTED));

    // Cache-aside: a miss fills cache:title:{id}, a hit is served from it.
    let cache_key = keys::title_cache(tid);
    let get_title = || p.http.get(format!("{}/v1/titles/{tid}", p.api)).send();
    let first = get_title().await.unwrap();
    assert_eq!(first.headers()["x-cache"], "miss");
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        (&first["title_id"], &first["title"], &first["year"]),
        (&json!(tid), &json!("Cidade de Deus"), &json!(2002)),
        "{first}"
    );
    let cached: Value =
        serde_json::from_str(&s.redis_get(&cache_key).await.expect("cache filled")).unwrap();
    assert_eq!(cached["title"], first["title"], "{cached}");
    let second = get_title().await.unwrap();
    assert_eq!(second.headers()["x-cache"], "hit");
    assert_eq!(second.json::<Value>().await.unwrap(), first);
    let (st, counters) = p.get("/v1/stats/counters", a).await;
    assert_eq!(st, 200, "{counters}");
    let (hits, misses) = (
        counter(&s, keys::CACHE_HITS).await,
        counter(&s, keys::CACHE_MISSES).await,
    );
    let (api_hits, api_misses) = (
        counters["cache_hits"].as_i64().unwrap(),
        counters["cache_misses"].as_i64().unwrap(),
    );
    // Other tests share the counters: Redis, read after, holds at least as many.
    assert!(api_hits >= 1 && api_misses >= 1, "{counters}");
    assert!(
        hits >= api_hits && misses >= api_misses,
        "{counters} vs {hits}/{misses}"
    );

    // PUT replaces the document and S2 invalidates the cached copy.
    let put = p
        .command(
            Method::PUT,
            &format!("/v1/titles/{tid}"),
            a,
            json!({"title": "Cidade de Deus", "description": "Rio de Janeiro, 1960s–80s.", "kind": "movie",
                   "year": 2002, "genres": [genre], "directors": ["Fernando Meirelles", "Kátia Lund"]}),
        )
        .await;
    let d = s.doc(mongo::TITLES, tid).await;
    assert_eq!(d.get_array("directors").unwrap().len(), 2, "{d}");
    assert_eq!(s.redis_get(&cache_key).await, None, "cache not invalidated");
    let (_, fresh) = p.get(&format!("/v1/titles/{tid}"), None).await;
    assert_eq!(
        fresh["description"], "Rio de Janeiro, 1960s–80s.",
        "{fresh}"
    );
    trails.push((put, TITLE_UPSERTED));

    let (st, list) = p
        .get(&format!("/v1/titles?genre={genre}&limit=10"), None)
        .await;
    assert_eq!(st, 200, "{list}");
    let mut listed: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["title_id"].as_i64().unwrap())
        .collect();
    listed.sort_unstable();
    let in_store = s
        .coll(mongo::TITLES)
        .count_documents(doc! {"genres": &genre})
        .await
        .unwrap();
    assert_eq!((listed.clone(), in_store), (vec![tid, tid2], 2), "{list}");
    let (_, series) = p
        .get(&format!("/v1/titles?genre={genre}&kind=series"), None)
        .await;
    assert_eq!(series.as_array().map(Vec::len), Some(1), "{series}");
    assert_eq!(series[0]["title_id"], tid2, "{series}");

    // Relations.
    let rel = p
        .command(
            Method::POST,
            &format!("/v1/titles/{tid}/relations"),
            a,
            json!({"related_title_id": tid2, "relation": "same_collection"}),
        )
        .await;
    let r = s
        .doc(
            mongo::TITLE_RELATIONS,
            format!("{tid}:{tid2}:same_collection"),
        )
        .await;
    assert_eq!(
        (int_of(&r, "title_id"), int_of(&r, "related_title_id")),
        (tid, tid2)
    );
    let (st, rels) = p.get(&format!("/v1/titles/{tid}/relations"), None).await;
    assert_eq!(st, 200, "{rels}");
    let rels = rels.as_array().expect("relations array");
    assert_eq!(rels.len(), 1, "{rels:?}");
    assert_eq!(
        (
            &rels[0]["title_id"],
            &rels[0]["related_title_id"],
            &rels[0]["relation"]
        ),
        (&json!(tid), &json!(tid2), &json!("same_collection")),
        "{rels:?}"
    );
    trails.push((rel, RELATED));

    // Assets: the blob goes to GridFS, the event carries the reference.
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let res = p
        .http
        .post(format!(
            "{}/v1/titles/{tid}/assets?kind=trailer&filename=trailer.mp4",
            p.api
        ))
        .bearer_auth(&admin)
        .header("content-type", "video/mp4")
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let accepted: Value = res.json().await.unwrap();
    let outcome = p.outcome(&accepted).await;
    assert_eq!(outcome["state"], "completed", "{outcome}");
    let asset_id = accepted["asset_id"].as_str().expect("asset_id").to_owned();
    let file = s
        .doc(
            &format!("{}.files", mongo::ASSETS_BUCKET),
            ObjectId::parse_str(&asset_id).unwrap(),
        )
        .await;
    assert_eq!(int_of(&file, "length"), blob.len() as i64, "{file}");
    let chunks = s
        .coll(&format!("{}.chunks", mongo::ASSETS_BUCKET))
        .count_documents(doc! {"files_id": ObjectId::parse_str(&asset_id).unwrap()})
        .await
        .unwrap();
    assert!(chunks >= 2, "300 kB spans GridFS chunks, got {chunks}");
    let d = s.doc(mongo::TITLES, tid).await;
    let entry = d
        .get_array("assets")
        .unwrap()
        .iter()
        .filter_map(Bson::as_document)
        .find(|e| e.get_str("asset_id") == Ok(asset_id.as_str()))
        .unwrap_or_else(|| panic!("asset not on the title: {d}"))
        .clone();
    assert_eq!(
        (entry.get_str("kind").unwrap(), int_of(&entry, "length")),
        ("trailer", blob.len() as i64)
    );
    let url = format!("{}/v1/titles/{tid}/assets/{asset_id}", p.api);
    let full = p.http.get(&url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(full.bytes().await.unwrap().to_vec(), blob);
    let part = p
        .http
        .get(&url)
        .header("range", "bytes=261000-262999")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        "bytes 261000-262999/300000"
    );
    assert_eq!(part.bytes().await.unwrap().to_vec(), blob[261_000..263_000]);
    let beyond = p
        .http
        .get(&url)
        .header("range", "bytes=300000-")
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);
    trails.push((json!({"accepted": accepted, "outcome": outcome}), ASSET));

    // ---- MongoDB + Redis: activity ----
    let view = p
        .command(
            Method::POST,
            &format!("{me}/views"),
            t,
            json!({"title_id": tid, "seconds_watched": 7800, "position_pct": 100.0}),
        )
        .await;
    let view_id = accepted_id(&view, "view_id");
    let v = s.doc(mongo::VIEWS, view_id.as_str().unwrap()).await;
    assert_eq!(
        (
            int_of(&v, "user_id"),
            int_of(&v, "title_id"),
            int_of(&v, "seconds_watched")
        ),
        (uid, tid, 7800)
    );
    assert_eq!(
        (
            v.get_str("title").unwrap(),
            v.get_bool("completed").unwrap()
        ),
        ("Cidade de Deus", true)
    );
    let watched_at = time_of(&v, "watched_at");
    for w in [Window::Day, Window::Week, Window::AllTime] {
        assert_eq!(
            s.zscore(&keys::rank_views(w, watched_at), tid).await,
            Some(1.0),
            "{w:?} most-watched ranking"
        );
    }
    assert_eq!(counter(&s, &keys::title_views(tid)).await, 1);
    trails.push((view, VIEW));
    let partial = p
        .command(
            Method::POST,
            &format!("{me}/views"),
            t,
            json!({"title_id": tid2, "seconds_watched": 600, "position_pct": 20.0}),
        )
        .await;
    trails.push((partial, VIEW));
    let stored = s
        .coll(mongo::VIEWS)
        .count_documents(doc! {"user_id": uid})
        .await
        .unwrap();
    let (st, views) = p.get(&format!("{me}/views"), t).await;
    assert_eq!(st, 200, "{views}");
    assert_eq!(
        views.as_array().map(|v| v.len() as u64),
        Some(stored),
        "{views}"
    );
    assert_eq!(stored, 2);
    let (_, done) = p
        .get(&format!("{me}/views?kind=movie&completed=true&limit=5"), t)
        .await;
    assert_eq!(done.as_array().map(Vec::len), Some(1), "{done}");
    assert_eq!(done[0]["view_id"], view_id, "{done}");

    let rate = p
        .command(
            Method::PUT,
            &format!("{me}/ratings/{tid}"),
            t,
            json!({"stars": 4}),
        )
        .await;
    let r = s.doc(mongo::RATINGS, format!("{uid}:{tid}")).await;
    assert_eq!(int_of(&r, "stars"), 4);
    let rated_at = time_of(&r, "rated_at");
    for w in [Window::Day, Window::Week, Window::AllTime] {
        assert_eq!(
            s.zscore(&keys::rank_rating(w, rated_at), tid).await,
            Some(4.0),
            "{w:?} top-rated ranking"
        );
    }
    trails.push((rate, RATED));

    for (kind, window, key) in [
        (
            "most-watched",
            "all",
            keys::rank_views(Window::AllTime, watched_at),
        ),
        (
            "top-rated",
            "all",
            keys::rank_rating(Window::AllTime, rated_at),
        ),
        (
            "most-watched",
            "week",
            keys::rank_views(Window::Week, watched_at),
        ),
        ("top-rated", "day", keys::rank_rating(Window::Day, rated_at)),
    ] {
        let path = format!("/v1/rankings/{kind}?window={window}&limit=100");
        p.expect_ranking(&path, &key).await;
    }

    let recs = p
        .command(Method::POST, &format!("{me}/recommendations"), t, json!({}))
        .await;
    let stored = s.doc(mongo::RECOMMENDATIONS, uid).await;
    let stored_ids: Vec<i64> = stored
        .get_array("items")
        .unwrap()
        .iter()
        .filter_map(Bson::as_document)
        .map(|i| int_of(i, "title_id"))
        .collect();
    let (st, got) = p.get(&format!("{me}/recommendations"), t).await;
    assert_eq!(st, 200, "{got}");
    let got_ids: Vec<i64> = got["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title_id"].as_i64().unwrap())
        .collect();
    assert_eq!(got_ids, stored_ids, "{got}");
    trails.push((recs, RECOMMENDATIONS));

    // DELETE removes the title, its relations and its cached copy.
    let (tid3, add3) = new_title(
        &p,
        &admin,
        json!({"title": "Tropa de Elite", "kind": "movie", "year": 2007, "genres": [genre]}),
    )
    .await;
    trails.push((add3, TITLE_UPSERTED));
    let _ = p.get(&format!("/v1/titles/{tid3}"), None).await; // fills the cache
    let (st, accepted) = p
        .send(Method::DELETE, &format!("/v1/titles/{tid3}"), a, None)
        .await;
    assert_eq!(st, 202, "{accepted}");
    let outcome = p.outcome(&accepted).await;
    assert_eq!(outcome["state"], "completed", "{outcome}");
    let gone = s
        .coll(mongo::TITLES)
        .find_one(doc! {"_id": tid3})
        .await
        .unwrap();
    assert!(gone.is_none(), "{gone:?}");
    assert_eq!(s.redis_get(&keys::title_cache(tid3)).await, None);
    assert_eq!(p.get(&format!("/v1/titles/{tid3}"), None).await.0, 404);
    trails.push((
        json!({"accepted": accepted, "outcome": outcome}),
        TITLE_DELETED,
    ));

    // ---- Status: what Redis holds ----
    let corr = trails[0].0["accepted"]["correlation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, status) = p.get(&format!("/v1/status/{corr}?wait=1"), None).await;
    assert_eq!(st, 200, "{status}");
    let raw: Value = serde_json::from_str(
        &s.redis_get(&format!("status:{corr}"))
            .await
            .expect("status in Redis"),
    )
    .unwrap();
    assert_eq!(status, raw);
    assert_eq!(
        (status["state"].as_str(), status["command_type"].as_str()),
        (Some("completed"), Some(REGISTERED))
    );

    // ---- Sessions: a second login, then end it by id and log out ----
    let scard = || {
        let mut con = s.redis.clone();
        async move {
            redis::cmd("SCARD")
                .arg(keys::user_sessions(uid))
                .query_async::<i64>(&mut con)
                .await
                .unwrap()
        }
    };
    let (st, second) = p
        .send(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await;
    assert_eq!(st, 201, "{second}");
    let (t2, sid2) = (
        second["token"].as_str().unwrap().to_owned(),
        second["session_id"].as_str().unwrap().to_owned(),
    );
    assert_eq!(scard().await, live + 1);
    let (_, sessions) = p.get(&format!("{me}/sessions"), t).await;
    let sessions = sessions.as_array().expect("sessions array");
    assert_eq!(sessions.len() as i64, live + 1, "{sessions:?}");
    assert!(
        sessions.iter().any(|x| x["session_id"] == sid2.as_str()),
        "{sessions:?}"
    );
    assert_eq!(p.get(&me, Some(&t2)).await.0, 200);
    let (st, _) = p
        .send(Method::DELETE, &format!("{me}/sessions/{sid2}"), t, None)
        .await;
    assert_eq!(st, 204);
    assert_eq!(scard().await, live);
    assert_eq!(p.get(&me, Some(&t2)).await.0, 401);
    let (st, _) = p
        .send(Method::DELETE, "/v1/sessions/current", t, None)
        .await;
    assert_eq!(st, 204);
    assert_eq!(scard().await, live - 1);
    assert_eq!(p.get(&me, t).await.0, 401);

    // ---- Service endpoints ----
    for path in [
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/",
    ] {
        let (st, body) = p.get(path, None).await;
        assert_eq!(st, 200, "{path}: {body}");
    }

    // ---- S3: every command's trail, command then outcome ----
    for (sent, ty) in &trails {
        p.expect_trail(sent, ty, None).await;
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_002_endpoints_persist_in_the_owning_store_read_it_back_and_leave_a_trail() {
    let p = Platform::start().await;
    let s = p.stores.clone();
    let mut trails: Vec<(Value, &str)> = Vec::new();

    // POST /usuarios: query parameters, as the seed's clients send them.
    let email = format!("{}@example.com", unique("bia"));
    // A valid CPF no earlier run used (CPFs are unique).
    let mut base = [0u32; 9];
    let mut n = uuid::Uuid::new_v4().as_u128();
    for d in &mut base {
        *d = (n % 10) as u32;
        n /= 10;
    }
    base[0] = 1 + base[0] % 9;
    let cpf_in = polystream_s1_gateway::legacy::cpf_from(base);
    let reg = p
        .seed_command(
            Method::POST,
            &format!("/usuarios?nome=Beatriz%20Lima&email={email}&senha=segredo-123&cpf={cpf_in}"),
        )
        .await;
    let uid = accepted_id(&reg, "user_id").as_i64().expect("user_id");
    let (name, cpf, hash): (String, Option<String>, String) =
        sqlx::query_as("SELECT name, cpf, password_hash FROM users WHERE user_id = $1")
            .bind(uid)
            .fetch_one(&s.pg)
            .await
            .unwrap();
    assert_eq!(
        (name.as_str(), cpf.as_deref()),
        ("Beatriz Lima", Some(cpf_in.as_str()))
    );
    assert!(hash.starts_with("$argon2id$"));
    trails.push((reg, REGISTERED));
    // A seed client sends nothing at all: every field is generated.
    let generated = p.seed_command(Method::POST, "/usuarios").await;
    let gid = accepted_id(&generated, "user_id").as_i64().unwrap();
    let (gname, gemail, gcpf, ghash): (String, String, Option<String>, Option<String>) =
        sqlx::query_as("SELECT name, email, cpf, password_hash FROM users WHERE user_id = $1")
            .bind(gid)
            .fetch_one(&s.pg)
            .await
            .unwrap();
    assert!(!gname.is_empty() && gemail.contains('@') && gcpf.is_some());
    // No `senha`: the account has no password (no hash of a throwaway
    // secret), so no password logs in to it.
    assert_eq!(ghash, None);
    let (st, body) = p
        .send(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"email": gemail, "password": "any-password-at-all"})),
        )
        .await;
    assert_eq!(st, 401, "{body}");
    trails.push((generated, REGISTERED));

    let u = format!("/usuarios/{uid}");
    let sub = p
        .seed_command(Method::POST, &format!("{u}/assinatura?plano=padrao"))
        .await;
    let (plan, status): (String, String) =
        sqlx::query_as("SELECT plan, status FROM subscriptions WHERE user_id = $1")
            .bind(uid)
            .fetch_one(&s.pg)
            .await
            .unwrap();
    assert_eq!((plan.as_str(), status.as_str()), ("standard", "active"));
    trails.push((sub, SUBSCRIPTION));

    let pay = p
        .seed_command(
            Method::POST,
            &format!("{u}/pagamento?valor=39.90&forma_pagamento=pix"),
        )
        .await;
    let pid = accepted_id(&pay, "payment_id");
    let row: (i64, i64, String, String) = sqlx::query_as(
        "SELECT user_id, amount_cents, currency, method FROM payments WHERE payment_id = $1::uuid",
    )
    .bind(pid.as_str().expect("payment_id"))
    .fetch_one(&s.pg)
    .await
    .unwrap();
    assert_eq!(row, (uid, 3990, "BRL".into(), "pix".into()));
    trails.push((pay, PAYMENT));

    let cfg = p
        .seed_command(
            Method::POST,
            &format!("{u}/config?idioma=es-ES&notificacoes=true&tema=escuro"),
        )
        .await;
    let row: (String, bool, String) =
        sqlx::query_as("SELECT language, notifications, theme FROM preferences WHERE user_id = $1")
            .bind(uid)
            .fetch_one(&s.pg)
            .await
            .unwrap();
    assert_eq!(row, ("es-ES".into(), true, "dark".into()));
    trails.push((cfg, PREFERENCES));

    // A catalog to watch (catalog writes have no seed endpoint).
    let admin = p.login(&p.admin.0, &p.admin.1).await;
    let genre = unique("genre");
    let (tid, _) = new_title(
        &p,
        &admin,
        json!({"title": "O Auto da Compadecida", "kind": "movie", "year": 2000, "genres": [genre]}),
    )
    .await;
    let (tid2, _) = new_title(
        &p,
        &admin,
        json!({"title": "Lisbela e o Prisioneiro", "kind": "movie", "year": 2003, "genres": [genre]}),
    )
    .await;
    p.command(
        Method::POST,
        &format!("/v1/titles/{tid}/relations"),
        Some(&admin),
        json!({"related_title_id": tid2, "relation": "similar"}),
    )
    .await;

    let view = p
        .seed_command(
            Method::POST,
            &format!(
                "/historico-visualizacao?user_id={uid}&conteudo_id={tid}&titulo=Auto&tipo=filme&tempo_assistido=5400&posicao=100"
            ),
        )
        .await;
    let view_id = accepted_id(&view, "view_id");
    let v = s
        .doc(mongo::VIEWS, view_id.as_str().expect("view_id"))
        .await;
    assert_eq!(
        (
            int_of(&v, "user_id"),
            int_of(&v, "title_id"),
            int_of(&v, "seconds_watched")
        ),
        (uid, tid, 5400)
    );
    // The catalog, not the client, names the title.
    assert_eq!(v.get_str("title").unwrap(), "O Auto da Compadecida");
    assert!(v.get_bool("completed").unwrap());
    let at = time_of(&v, "watched_at");
    assert_eq!(
        s.zscore(&keys::rank_views(Window::AllTime, at), tid).await,
        Some(1.0)
    );
    assert_eq!(counter(&s, &keys::title_views(tid)).await, 1);
    trails.push((view, VIEW));
    let partial = p
        .seed_command(
            Method::POST,
            &format!("/historico-visualizacao?user_id={uid}&conteudo_id={tid2}&tempo_assistido=300&posicao=10"),
        )
        .await;
    trails.push((partial, VIEW));

    let (st, hist) = p.get(&format!("/historico-visualizacao/{uid}"), None).await;
    assert_eq!(st, 200, "{hist}");
    let stored = s
        .coll(mongo::VIEWS)
        .count_documents(doc! {"user_id": uid})
        .await
        .unwrap();
    assert_eq!((hist["total"].as_u64(), stored), (Some(2), 2), "{hist}");
    let (_, done) = p
        .get(
            &format!("/historico-visualizacao/{uid}?tipo=filme&concluido=true&limit=5"),
            None,
        )
        .await;
    assert_eq!(done["total"], 1, "{done}");
    let h = &done["historico"][0];
    assert_eq!(
        (
            &h["conteudo_id"],
            &h["titulo"],
            &h["tipo"],
            &h["tempo_assistido"],
            &h["concluido"]
        ),
        (
            &json!(tid),
            &json!("O Auto da Compadecida"),
            &json!("filme"),
            &json!(5400),
            &json!(true)
        ),
        "{done}"
    );

    let recs = p
        .seed_command(Method::POST, &format!("/recomendacoes/gerar?user_id={uid}"))
        .await;
    let stored = s.doc(mongo::RECOMMENDATIONS, uid).await;
    let stored_ids: Vec<i64> = stored
        .get_array("items")
        .unwrap()
        .iter()
        .filter_map(Bson::as_document)
        .map(|i| int_of(i, "title_id"))
        .collect();
    let (st, got) = p.get(&format!("/recomendacoes/{uid}"), None).await;
    assert_eq!(st, 200, "{got}");
    let got_ids: Vec<i64> = got["itens"]
        .as_array()
        .unwrap_or_else(|| panic!("itens: {got}"))
        .iter()
        .map(|i| i["title_id"].as_i64().unwrap())
        .collect();
    assert_eq!(got_ids, stored_ids, "{got}");
    assert_eq!(got["user_id"], uid, "{got}");
    assert!(got["data_geracao"].is_string(), "{got}");
    trails.push((recs, RECOMMENDATIONS));

    // POST /cache/conteudo/{id}: S2 loads the title into Redis.
    let key = keys::title_cache(tid);
    let mut con = s.redis.clone();
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    let warm = p
        .seed_command(Method::POST, &format!("/cache/conteudo/{tid}"))
        .await;
    let cached: Value =
        serde_json::from_str(&s.redis_get(&key).await.expect("title cached")).unwrap();
    assert_eq!(
        (&cached["title_id"], &cached["title"]),
        (&json!(tid), &json!("O Auto da Compadecida"))
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(ttl > 0, "cached title without TTL");
    let (st, c) = p.get(&format!("/cache/conteudo/{tid}"), None).await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(
        (&c["conteudo_id"], &c["cache"]),
        (&json!(tid), &json!("hit")),
        "{c}"
    );
    assert_eq!(c["dados"], cached, "{c}");
    trails.push((warm, CACHE_WARM));

    // GET /status/{id} is /v1/status/{id}; GET / and /health answer.
    let corr = trails[0].0["accepted"]["correlation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // It is a superset: Polystream's status plus the original's fields.
    let (st, legacy) = p.get(&format!("/status/{corr}"), None).await;
    let (_, v1) = p.get(&format!("/v1/status/{corr}"), None).await;
    assert_eq!(st, 200, "{legacy}");
    let raw: Value = serde_json::from_str(
        &s.redis_get(&format!("status:{corr}"))
            .await
            .expect("status in Redis"),
    )
    .unwrap();
    assert_eq!(v1, raw);
    for (k, v) in raw.as_object().unwrap() {
        assert_eq!(&legacy[k], v, "{k}: {legacy}");
    }
    assert_eq!(
        (&legacy["status"], &legacy["original_event_type"]),
        (&json!("success"), &raw["command_type"]),
        "{legacy}"
    );
    assert_eq!(legacy["timestamp"], raw["updated_at"], "{legacy}");
    assert_eq!(
        trails[0].0["accepted"]["usuario"]["email"],
        json!(email),
        "the seed's echoed user"
    );
    let (st, root) = p.get("/", None).await;
    assert_eq!(st, 200, "{root}");
    assert_eq!(root["legacy_api"], true, "{root}");
    assert_eq!(p.get("/health", None).await.0, 200);

    for (sent, ty) in &trails {
        p.expect_trail(sent, ty, None).await;
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_commands_end_failed_with_their_code_in_status_and_trail_and_change_nothing() {
    let p = Platform::start().await;
    let s = p.stores.clone();
    let (uid, token, _, _) = new_user(&p, "Caio Gomes").await;
    let t = Some(token.as_str());
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE user_id = $1")
        .bind(uid)
        .fetch_one(&s.pg)
        .await
        .unwrap();
    let admin = p.login(&p.admin.0, &p.admin.1).await;
    let (tid, _) = new_title(
        &p,
        &admin,
        json!({"title": "Bacurau", "kind": "movie", "year": 2019, "genres": [unique("genre")]}),
    )
    .await;
    let unknown_title = 9_000_000_000_000 + i64::from(std::process::id());
    let unknown_user = 8_000_000_000_000 + i64::from(std::process::id());
    let mut failures: Vec<(Value, &str, &str)> = Vec::new();

    // Duplicate email, canonical and seed-compatible (case-insensitive).
    let dup = p
        .command_fails(
            Method::POST,
            "/v1/users",
            None,
            Some(json!({"name": "Outro", "email": email.to_uppercase(), "password": "another-pass-1"})),
            "duplicate_account",
        )
        .await;
    let dup_id = accepted_id(&dup, "user_id").as_i64().unwrap();
    failures.push((dup, REGISTERED, "duplicate_email"));
    let seed_dup = p
        .command_fails(
            Method::POST,
            &format!("/usuarios?email={email}"),
            None,
            None,
            "duplicate_account",
        )
        .await;
    let seed_dup_id = accepted_id(&seed_dup, "user_id").as_i64().unwrap();
    failures.push((seed_dup, REGISTERED, "duplicate_email"));
    let (same_email, ghosts): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM users WHERE lower(email) = lower($1)),
                (SELECT count(*) FROM users WHERE user_id = ANY($2))",
    )
    .bind(&email)
    .bind(vec![dup_id, seed_dup_id])
    .fetch_one(&s.pg)
    .await
    .unwrap();
    assert_eq!((same_email, ghosts), (1, 0));

    // A rating for an unknown title.
    let rating = p
        .command_fails(
            Method::PUT,
            &format!("/v1/users/{uid}/ratings/{unknown_title}"),
            t,
            Some(json!({"stars": 5})),
            "unknown_title",
        )
        .await;
    failures.push((rating, RATED, "unknown_title"));
    assert!(
        s.coll(mongo::RATINGS)
            .find_one(doc! {"_id": format!("{uid}:{unknown_title}")})
            .await
            .unwrap()
            .is_none()
    );

    // A view by an unknown user (seed endpoints take no token) and of an unknown title.
    let view = p
        .command_fails(
            Method::POST,
            &format!("/historico-visualizacao?user_id={unknown_user}&conteudo_id={tid}"),
            None,
            None,
            "unknown_user",
        )
        .await;
    let vid = accepted_id(&view, "view_id");
    failures.push((view, VIEW, "unknown_user"));
    let view2 = p
        .command_fails(
            Method::POST,
            &format!("/v1/users/{uid}/views"),
            t,
            Some(json!({"title_id": unknown_title, "seconds_watched": 10, "position_pct": 5.0})),
            "unknown_title",
        )
        .await;
    let vid2 = accepted_id(&view2, "view_id");
    failures.push((view2, VIEW, "unknown_title"));
    for id in [vid, vid2] {
        let left = s
            .coll(mongo::VIEWS)
            .find_one(doc! {"_id": id.as_str().unwrap()})
            .await
            .unwrap();
        assert!(left.is_none(), "{left:?}");
    }
    assert_eq!(counter(&s, &keys::title_views(tid)).await, 0);

    // A payment for an unknown user (PostgreSQL foreign key).
    let pay = p
        .command_fails(
            Method::POST,
            &format!("/usuarios/{unknown_user}/pagamento?valor=10"),
            None,
            None,
            "unknown_user",
        )
        .await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE user_id = $1")
        .bind(unknown_user)
        .fetch_one(&s.pg)
        .await
        .unwrap();
    assert_eq!(n, 0);
    failures.push((pay, PAYMENT, "unknown_user"));

    // Relating, caching or recommending what does not exist.
    let rel = p
        .command_fails(
            Method::POST,
            &format!("/v1/titles/{tid}/relations"),
            Some(&admin),
            Some(json!({"related_title_id": unknown_title, "relation": "sequel"})),
            "unknown_title",
        )
        .await;
    failures.push((rel, RELATED, "unknown_title"));
    let warm = p
        .command_fails(
            Method::POST,
            &format!("/cache/conteudo/{unknown_title}"),
            None,
            None,
            "unknown_title",
        )
        .await;
    assert_eq!(s.redis_get(&keys::title_cache(unknown_title)).await, None);
    failures.push((warm, CACHE_WARM, "unknown_title"));
    let recs = p
        .command_fails(
            Method::POST,
            &format!("/recomendacoes/gerar?user_id={unknown_user}"),
            None,
            None,
            "unknown_user",
        )
        .await;
    failures.push((recs, RECOMMENDATIONS, "unknown_user"));

    // The seed's status endpoint shows the failure too.
    let corr = failures[0].0["accepted"]["correlation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, legacy) = p.get(&format!("/status/{corr}"), None).await;
    assert_eq!(st, 200, "{legacy}");
    assert_eq!(
        (legacy["state"].as_str(), legacy["code"].as_str()),
        (Some("failed"), Some("duplicate_account"))
    );
    assert_eq!(legacy["status"], "error", "{legacy}");

    for (sent, ty, code) in &failures {
        p.expect_trail(sent, ty, Some(code)).await;
    }
    p.stop().await;
}
