//! The named queries against the real local servers (`./dev up postgres
//! redis ferretdb`; `source ~/.local/state/polystream/env`). A server that is
//! down fails the test naming it. Every test works on ids of its own (and
//! far-past ranking buckets) and removes what it wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use futures::StreamExt;
use mongodb::bson::{self, Document, doc};
use polystream_common::events::{
    PaymentMethod, PaymentRecorded, PaymentStatus, Plan, PreferencesUpdated, SubscriptionChanged,
    SubscriptionStatus, Theme, UserRegistered,
};
use polystream_stores::fault::{PgClass, classify_pg};
use polystream_stores::keys::{self, Window};
use polystream_stores::rankings::Board;
use polystream_stores::{
    assets, counters, ids, ledger, mongo, payments, pg, preferences, rankings, ratings,
    recommendations, relations, sessions, subscriptions, titles, users, views,
};
use serde_json::json;
use uuid::Uuid;

fn env(name: &str, server: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start {server} with `./dev up` and `source ~/.local/state/polystream/env`")
    })
}

async fn postgres() -> sqlx::PgPool {
    let url = env("DATABASE_URL", "PostgreSQL");
    let pool = pg::connect(&url, 4)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {url}: {e}"));
    pg::migrate(&pool).await.expect("migrations apply");
    pool
}

async fn mongodb() -> mongodb::Database {
    let uri = env("MONGODB_URI", "the MongoDB-wire server (ferretdb)");
    let db = mongo::connect(&uri).await.expect("a valid MONGODB_URI");
    db.run_command(doc! {"ping": 1})
        .await
        .unwrap_or_else(|e| panic!("the MongoDB-wire server is not reachable at {uri}: {e}"));
    db
}

async fn redis() -> redis::aio::ConnectionManager {
    let url = env("REDIS_URL", "Redis");
    let client = redis::Client::open(url.as_str()).expect("a valid REDIS_URL");
    redis::aio::ConnectionManager::new(client)
        .await
        .unwrap_or_else(|e| panic!("Redis is not reachable at {url}: {e}"))
}

/// An id no other test or demo data uses: random, above anything allocated.
fn unique_id() -> i64 {
    let r = Uuid::new_v4().as_u128() as i64;
    9_000_000_000_000_000 + r.rem_euclid(100_000_000_000_000)
}

#[tokio::test]
async fn account_reads_and_writes_round_trip_in_postgresql() {
    let pool = postgres().await;
    let uid = unique_id();
    let email = format!("Mixed.{uid}@Example.com");
    let reg = UserRegistered {
        user_id: uid,
        name: "  Ana  ".into(),
        email: email.clone(),
        password_hash: Some("$argon2id$test".into()),
        cpf: None,
        admin: false,
    };
    let mut con = pool.acquire().await.unwrap();
    users::insert(&mut con, &reg).await.unwrap();
    // A second registration of the same id is a business answer, not a fault.
    let dup = users::insert(&mut con, &reg).await.unwrap_err();
    assert_eq!(
        classify_pg(&dup),
        PgClass::UniqueViolation("users_pkey".into())
    );

    assert!(users::exists(&pool, uid).await.unwrap());
    let p = users::profile(&pool, uid).await.unwrap().unwrap();
    assert_eq!((p.name.as_str(), p.email.as_str()), ("Ana", email.as_str()));
    let login = users::login_by_email(&pool, &email.to_uppercase())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((login.user_id, login.admin), (uid, false));
    assert_eq!(login.password_hash.as_deref(), Some("$argon2id$test"));
    assert_eq!(
        users::find_by_email(&pool, &email.to_lowercase())
            .await
            .unwrap(),
        Some(uid)
    );
    assert_eq!(users::profile(&pool, uid + 1).await.unwrap(), None);

    let start = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let sub = SubscriptionChanged {
        user_id: uid,
        plan: Plan::Premium,
        status: SubscriptionStatus::PastDue,
        started_on: start,
        renews_on: start + Duration::days(31),
    };
    subscriptions::upsert(&mut con, &sub).await.unwrap();
    let s = subscriptions::current(&pool, uid).await.unwrap().unwrap();
    assert_eq!(
        (s.plan.as_str(), s.status.as_str()),
        ("premium", "past_due")
    );

    let prefs = PreferencesUpdated {
        user_id: uid,
        language: "pt-BR".into(),
        notifications: true,
        theme: Theme::System,
    };
    preferences::upsert(&mut con, &prefs).await.unwrap();
    let got = preferences::of_user(&pool, uid).await.unwrap().unwrap();
    assert_eq!(
        (got.language.as_str(), got.theme.as_str()),
        ("pt-BR", "system")
    );

    // Three payments an hour apart; re-recording one changes nothing.
    let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    let mut ids_newest_first = Vec::new();
    for h in 0..3 {
        let pay = PaymentRecorded {
            payment_id: Uuid::now_v7(),
            user_id: uid,
            amount_cents: 1000 + h,
            currency: "BRL".into(),
            method: PaymentMethod::DebitCard,
            status: PaymentStatus::Approved,
            paid_at: t0 + Duration::hours(h),
        };
        payments::insert(&mut con, &pay).await.unwrap();
        payments::insert(&mut con, &pay).await.unwrap();
        ids_newest_first.insert(0, pay.payment_id);
    }
    let all = payments::for_user(&pool, uid, None, 20).await.unwrap();
    assert_eq!(
        all.iter().map(|p| p.payment_id).collect::<Vec<_>>(),
        ids_newest_first
    );
    assert_eq!(all[0].method, "debit_card");
    let page = payments::for_user(&pool, uid, Some(all[0].paid_at), 1)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].payment_id, ids_newest_first[1]);

    // The ledger keeps the first outcome of an event.
    let event = Uuid::now_v7();
    let first = json!({"n": 1});
    assert_eq!(
        ledger::insert(&mut con, event, "t", event, &first)
            .await
            .unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        ledger::insert(&mut con, event, "t", event, &json!({"n": 2}))
            .await
            .unwrap(),
        None
    );
    assert_eq!(ledger::outcome(&pool, event).await.unwrap(), Some(first));

    sqlx::query("DELETE FROM processed_events WHERE event_id = $1")
        .bind(event)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM users WHERE user_id = $1")
        .bind(uid)
        .execute(&pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn catalog_and_activity_documents_round_trip_in_mongodb() {
    let db = mongodb().await;
    let (a, b, user) = (unique_id(), unique_id(), unique_id());
    let (a, b) = (a.min(b), a.max(b));
    let genre = format!("genre-{a}");
    let at = bson::DateTime::from_millis(1_700_000_000_000);
    for (id, kind) in [(a, "movie"), (b, "series")] {
        let set = doc! {"title": format!("T{id}"), "kind": kind, "genres": [&genre],
        "year": 2001, "updated_at": at};
        titles::upsert(&db, id, set).await.unwrap();
    }
    let filter = titles::TitleFilter {
        genre: Some(genre.clone()),
        kind: None,
    };
    let listed = titles::list(&db, &filter, 10).await.unwrap();
    let listed_ids: Vec<i64> = listed
        .iter()
        .map(|t| t["title_id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed_ids, [a, b], "in id order");
    assert_eq!(listed[0]["updated_at"], "2023-11-14T22:13:20Z");
    let series = titles::TitleFilter {
        genre: Some(genre.clone()),
        kind: Some("series".into()),
    };
    assert_eq!(titles::list(&db, &series, 10).await.unwrap().len(), 1);
    assert_eq!(titles::list(&db, &filter, 1).await.unwrap().len(), 1);
    assert_eq!(titles::by_ids(&db, &[a], 10).await.unwrap().len(), 1);
    assert_eq!(
        titles::sharing_genres(&db, std::slice::from_ref(&genre), 10)
            .await
            .unwrap()
            .len(),
        2
    );

    relations::upsert(&db, a, b, "sequel", at).await.unwrap();
    relations::upsert(&db, a, b, "sequel", at).await.unwrap();
    let rels = relations::of_title(&db, a).await.unwrap();
    assert_eq!(rels.len(), 1, "relating twice is one relation");
    assert!(rels[0].get("_id").is_none());
    assert_eq!(rels[0]["related_title_id"], b);
    assert_eq!(
        relations::of_titles(&db, &[a, b], 10).await.unwrap().len(),
        1
    );

    let view = |id: &str, completed: bool, ms: i64| {
        doc! {"_id": id, "user_id": user, "title_id": a, "kind": "movie", "completed": completed,
        "watched_at": bson::DateTime::from_millis(ms)}
    };
    let (v1, v2) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    views::insert(&db, view(&v1, true, 1_000)).await.unwrap();
    views::insert(&db, view(&v1, true, 1_000)).await.unwrap();
    views::insert(&db, view(&v2, false, 2_000)).await.unwrap();
    let newest_first = views::for_user(&db, user, &views::ViewFilter::default(), 10)
        .await
        .unwrap();
    let got: Vec<&str> = newest_first
        .iter()
        .map(|v| v["view_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [v2.as_str(), v1.as_str()]);
    let completed = views::ViewFilter {
        kind: Some("movie".into()),
        completed: Some(true),
    };
    assert_eq!(
        views::for_user(&db, user, &completed, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(views::of_user(&db, user, 10).await.unwrap().len(), 2);

    ratings::upsert(&db, user, a, 4, at).await.unwrap();
    ratings::upsert(&db, user, a, 5, at).await.unwrap();
    let r = ratings::get(&db, user, a).await.unwrap().unwrap();
    assert_eq!(r.get_i32("stars").unwrap(), 5);
    let of_title = ratings::of_title(&db, a).await.unwrap();
    assert_eq!(of_title.len(), 1);
    assert!(
        of_title[0].get("user_id").is_none(),
        "only stars and rated_at"
    );
    assert_eq!(ratings::of_user(&db, user, 10).await.unwrap().len(), 1);

    let items = vec![doc! {"title_id": b, "title": "T", "score": 1.5, "reasons": ["x"]}];
    recommendations::replace(&db, user, at, items)
        .await
        .unwrap();
    let rec = recommendations::for_user(&db, user).await.unwrap().unwrap();
    assert_eq!(rec["user_id"], user);
    assert_eq!(rec["items"][0]["title_id"], b);

    relations::delete_for_title(&db, b).await.unwrap();
    assert!(relations::of_title(&db, a).await.unwrap().is_empty());
    assert!(titles::delete(&db, a).await.unwrap());
    assert!(!titles::delete(&db, a).await.unwrap());
    titles::delete(&db, b).await.unwrap();
    for (c, f) in [
        (mongo::VIEWS, doc! {"user_id": user}),
        (mongo::RATINGS, doc! {"user_id": user}),
        (mongo::RECOMMENDATIONS, doc! {"_id": user}),
    ] {
        db.collection::<Document>(c).delete_many(f).await.unwrap();
    }
}

#[tokio::test]
async fn rankings_counters_ids_and_sessions_in_redis() {
    let con = redis().await;
    let n = ids::next_title_id(&con).await.unwrap();
    assert!(ids::next_title_id(&con).await.unwrap() > n);
    let c = counters::get(&con).await.unwrap();
    assert!(c.hits >= 0 && c.misses >= 0);

    // A day long past: its buckets are this test's own (all-time is cleaned).
    let at = Utc.with_ymd_and_hms(2001, 2, 3, 4, 5, 6).unwrap();
    let (t1, t2) = (unique_id(), unique_id());
    let day = Board::TopRated.key(Window::Day, at);
    rankings::set_ratings(&con, t1, &[(day.clone(), Some(2.5))])
        .await
        .unwrap();
    rankings::set_ratings(&con, t2, &[(day.clone(), Some(4.0))])
        .await
        .unwrap();
    let top = rankings::top(&con, Board::TopRated, Window::Day, at, 10)
        .await
        .unwrap();
    assert_eq!(
        top.iter()
            .map(|r| (r.title_id, r.score))
            .collect::<Vec<_>>(),
        [(Some(t2), 4.0), (Some(t1), 2.5)]
    );
    rankings::set_ratings(&con, t2, &[(day, None)])
        .await
        .unwrap();
    assert_eq!(
        rankings::top(&con, Board::TopRated, Window::Day, at, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    let view = Uuid::now_v7();
    assert!(rankings::count_view(&con, view, t1, at).await.unwrap());
    assert!(
        !rankings::count_view(&con, view, t1, at).await.unwrap(),
        "once per view"
    );
    let watched = rankings::top(&con, Board::MostWatched, Window::Day, at, 10)
        .await
        .unwrap();
    assert_eq!(
        watched
            .iter()
            .map(|r| (r.title_id, r.score))
            .collect::<Vec<_>>(),
        [(Some(t1), 1.0)]
    );
    rankings::remove_title(&con, t1, at).await.unwrap();
    for board in [Board::MostWatched, Board::TopRated] {
        assert!(
            rankings::top(&con, board, Window::Day, at, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    // A session listed, read with its TTL, then dropped from the index.
    let user = unique_id();
    let sid = format!("{:064x}", Uuid::new_v4().as_u128());
    let mut raw = con.clone();
    let _: () = redis::pipe()
        .set_ex(
            keys::session(&sid),
            json!({"user_id": user}).to_string(),
            60,
        )
        .ignore()
        .sadd(keys::user_sessions(user), &sid)
        .ignore()
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        sessions::ids_of(&con, user).await.unwrap(),
        vec![sid.clone()]
    );
    let (doc, ttl) = sessions::get::<serde_json::Value>(&con, &sid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((doc["user_id"].as_i64(), ttl > 0), (Some(user), true));
    sessions::unindex(&con, user, &sid).await.unwrap();
    assert!(sessions::ids_of(&con, user).await.unwrap().is_empty());
    let _: () = redis::pipe()
        .del(keys::session(&sid))
        .ignore()
        .del(keys::title_views(t1))
        .ignore()
        .del(keys::applied(view))
        .ignore()
        .query_async(&mut raw)
        .await
        .unwrap();
}

#[tokio::test]
async fn assets_stream_into_gridfs_and_ranges_read_back() {
    let db = mongodb().await;
    let title = unique_id();
    // Larger than GridFS's 255 KiB chunks, so ranges span chunks.
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let parts: Vec<Result<Vec<u8>, String>> = data.chunks(70_000).map(|c| Ok(c.to_vec())).collect();
    let new = assets::NewAsset {
        title_id: title,
        kind: "trailer",
        filename: "t.mp4",
        content_type: "video/mp4",
    };
    let (oid, length) = assets::upload(&db, new, futures::stream::iter(parts), 1 << 20)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(length, 600_000);
    assert!(assets::exists(&db, oid).await.unwrap());
    assert_eq!(
        assets::find(&db, title + 1, oid).await.unwrap(),
        None,
        "another title's"
    );
    let file = assets::find(&db, title, oid).await.unwrap().unwrap();
    assert_eq!(
        (file.length, file.content_type.as_str()),
        (600_000, "video/mp4")
    );
    let (start, end) = (200_000, 300_000);
    let mut cursor = assets::chunks(&db, oid, &file, start, end).await.unwrap();
    let mut read = Vec::new();
    while let Some(d) = cursor.next().await {
        read.extend(assets::chunk_part(&d.unwrap(), file.chunk_size, start, end).unwrap());
    }
    assert_eq!(read, &data[start as usize..=end as usize]);
    assets::delete(&db, oid).await.unwrap();
    assert!(!assets::exists(&db, oid).await.unwrap());

    let refused = |parts: Vec<Result<Vec<u8>, String>>, max| {
        let db = db.clone();
        async move {
            assets::upload(&db, new, futures::stream::iter(parts), max)
                .await
                .unwrap()
                .unwrap_err()
        }
    };
    assert_eq!(refused(vec![], 10).await, assets::Refused::Empty);
    assert_eq!(
        refused(vec![Ok(vec![0; 11])], 10).await,
        assets::Refused::TooLarge { max: 10 }
    );
    assert_eq!(
        refused(vec![Ok(vec![1]), Err("reset".into())], 10).await,
        assets::Refused::Unreadable("reset".into())
    );
    let left = db
        .collection::<Document>(&format!("{}.files", mongo::ASSETS_BUCKET))
        .count_documents(doc! {"metadata.title_id": title})
        .await
        .unwrap();
    assert_eq!(left, 0, "a refused upload leaves no blob");
}
