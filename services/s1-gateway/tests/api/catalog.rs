//! Titles, relations, assets, views, ratings, recommendations, rankings, counters.

use mongodb::bson::{Document, doc};
use serde_json::{Value, json};

use crate::harness::{Harness, expect_problem, start};

async fn seed_title(h: &Harness, genre: &str) -> i64 {
    let mut con = h.redis.clone();
    let id: i64 = redis::cmd("INCR")
        .arg(polystream_stores::keys::NEXT_TITLE_ID)
        .query_async(&mut con)
        .await
        .unwrap();
    h.mongo
        .collection::<Document>(polystream_stores::mongo::TITLES)
        .insert_one(doc! {"_id": id, "title": "Seeded", "description": "d", "kind": "movie", "year": 2001_i32,
            "directors": ["X"], "cast": [], "genres": [genre], "categories": [], "seasons": [], "assets": [],
            "updated_at": mongodb::bson::DateTime::now()})
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn titles_need_an_admin_to_change_and_reads_are_cached() {
    let h = start(&[]).await;
    let (_, user) = h.user(false).await;
    let (_, admin) = h.user(true).await;
    let body = json!({"title": "Cidade de Deus", "kind": "movie", "year": 2002, "genres": ["drama"], "directors": ["Fernando Meirelles"]});
    expect_problem(h.post("/v1/titles", body.clone(), None).await, 401, None).await;
    expect_problem(
        h.post("/v1/titles", body.clone(), Some(&user)).await,
        403,
        None,
    )
    .await;
    let res = h.post("/v1/titles", body.clone(), Some(&admin)).await;
    let (a, ev) = h.expect_command(res, "polystream.title.upserted.v1").await;
    let tid = a["title_id"].as_i64().unwrap();
    assert_eq!(ev["data"]["title_id"], tid);
    assert_eq!(ev["subject"], format!("title/{tid}"));
    assert_eq!(ev["data"]["directors"], json!(["Fernando Meirelles"]));
    let mut bad = body.clone();
    bad["year"] = json!(1500);
    expect_problem(
        h.post("/v1/titles", bad, Some(&admin)).await,
        400,
        Some("body.year"),
    )
    .await;
    let mut bad = body.clone();
    bad["seasons"] = json!([{"number": 1, "episodes": 8}]);
    expect_problem(
        h.post("/v1/titles", bad, Some(&admin)).await,
        400,
        Some("body.seasons"),
    )
    .await;
    let mut bad = body.clone();
    bad["rating"] = json!(5);
    expect_problem(
        h.post("/v1/titles", bad, Some(&admin)).await,
        400,
        Some("body.rating"),
    )
    .await;
    let res = h
        .put(&format!("/v1/titles/{tid}"), body.clone(), Some(&admin))
        .await;
    h.expect_command(res, "polystream.title.upserted.v1").await;
    let res = h
        .http
        .delete(h.url(&format!("/v1/titles/{tid}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    h.expect_command(res, "polystream.title.deleted.v1").await;

    // Reads: cache-aside over MongoDB, counted.
    let genre = crate::harness::unique("genre");
    let id = seed_title(&h, &genre).await;
    let counters = |v: Value| {
        (
            v["cache_hits"].as_i64().unwrap(),
            v["cache_misses"].as_i64().unwrap(),
        )
    };
    let before = counters(
        h.get("/v1/stats/counters", Some(&admin))
            .await
            .json()
            .await
            .unwrap(),
    );
    expect_problem(h.get("/v1/stats/counters", Some(&user)).await, 403, None).await;
    let first = h.get(&format!("/v1/titles/{id}"), None).await;
    assert_eq!(first.headers()["x-cache"], "miss");
    let t: Value = first.json().await.unwrap();
    assert_eq!(t["title_id"], id);
    assert_eq!(t["year"], 2001);
    let second = h.get(&format!("/v1/titles/{id}"), None).await;
    assert_eq!(second.headers()["x-cache"], "hit");
    assert_eq!(second.json::<Value>().await.unwrap(), t);
    let after = counters(
        h.get("/v1/stats/counters", Some(&admin))
            .await
            .json()
            .await
            .unwrap(),
    );
    assert!(after.0 > before.0 && after.1 > before.1);
    let mut con = h.redis.clone();
    let ttl: i64 = redis::cmd("TTL")
        .arg(polystream_stores::keys::title_cache(id))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(ttl > 0);
    expect_problem(h.get("/v1/titles/999999999999", None).await, 404, None).await;
    expect_problem(h.get("/v1/titles/x1", None).await, 400, Some("path.id")).await;

    let list: Vec<Value> = h
        .get(&format!("/v1/titles?genre={genre}&kind=movie"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["title_id"], id);
    expect_problem(
        h.get("/v1/titles?kind=cartoon", None).await,
        400,
        Some("query.kind"),
    )
    .await;

    // Relations.
    let other = seed_title(&h, &genre).await;
    let res = h
        .post(
            &format!("/v1/titles/{id}/relations"),
            json!({"related_title_id": other, "relation": "sequel"}),
            Some(&admin),
        )
        .await;
    let (_, ev) = h.expect_command(res, "polystream.title.related.v1").await;
    assert_eq!(
        ev["data"],
        json!({"title_id": id, "related_title_id": other, "relation": "sequel"})
    );
    let res = h
        .post(
            &format!("/v1/titles/{id}/relations"),
            json!({"related_title_id": id, "relation": "sequel"}),
            Some(&admin),
        )
        .await;
    expect_problem(res, 400, Some("body.related_title_id")).await;
    h.mongo
        .collection::<Document>(polystream_stores::mongo::TITLE_RELATIONS)
        .insert_one(doc! {"_id": format!("{id}:{other}:sequel"), "title_id": id, "related_title_id": other, "relation": "sequel"})
        .await
        .unwrap();
    let rels: Vec<Value> = h
        .get(&format!("/v1/titles/{id}/relations"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        rels,
        vec![json!({"title_id": id, "related_title_id": other, "relation": "sequel"})]
    );
}

#[tokio::test]
async fn assets_go_to_gridfs_the_event_carries_the_reference_and_ranges_work() {
    let h = start(&[]).await;
    let (_, admin) = h.user(true).await;
    let id = seed_title(&h, "action").await;
    // Three GridFS chunks (255 KiB each), so ranges cross chunk boundaries.
    let blob: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let res = h
        .http
        .post(h.url(&format!(
            "/v1/titles/{id}/assets?kind=trailer&filename=t.mp4"
        )))
        .bearer_auth(&admin)
        .header("content-type", "video/mp4")
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let a: Value = res.json().await.unwrap();
    let asset = a["asset_id"].as_str().unwrap().to_owned();
    let (_, bytes, ev) = h.next_event().await;
    assert_eq!(ev["type"], "polystream.title.asset_attached.v1");
    assert_eq!(
        ev["data"],
        json!({"title_id": id, "asset_id": asset, "kind": "trailer", "filename": "t.mp4", "content_type": "video/mp4", "length": 700_000})
    );
    assert!(
        bytes.len() < 2000,
        "claim check: the blob must not travel through Kafka"
    );

    let path = format!("/v1/titles/{id}/assets/{asset}");
    let full = h.get(&path, None).await;
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(full.headers()["content-type"], "video/mp4");
    assert_eq!(full.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        full.headers()["content-disposition"],
        "inline; filename=\"t.mp4\""
    );
    assert_eq!(full.bytes().await.unwrap().to_vec(), blob);

    // An active type (an SVG can script the API's origin) only downloads.
    let res = h
        .http
        .post(h.url(&format!(
            "/v1/titles/{id}/assets?kind=poster&filename=evil.svg"
        )))
        .bearer_auth(&admin)
        .header("content-type", "image/svg+xml")
        .body("<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let svg: Value = res.json().await.unwrap();
    let _ = h.next_event().await;
    let res = h
        .get(
            &format!(
                "/v1/titles/{id}/assets/{}",
                svg["asset_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        res.headers()["content-disposition"],
        "attachment; filename=\"evil.svg\""
    );
    assert!(
        res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    let range = |r: &'static str| {
        let h = &h;
        let path = path.clone();
        async move {
            h.http
                .get(h.url(&path))
                .header("range", r)
                .send()
                .await
                .unwrap()
        }
    };
    let part = range("bytes=261100-522300").await;
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        "bytes 261100-522300/700000"
    );
    assert_eq!(
        part.bytes().await.unwrap().to_vec(),
        blob[261100..=522300].to_vec()
    );
    let tail = range("bytes=-10").await;
    assert_eq!(tail.status(), 206);
    assert_eq!(
        tail.bytes().await.unwrap().to_vec(),
        blob[699_990..].to_vec()
    );
    let open = range("bytes=699999-").await;
    assert_eq!(open.bytes().await.unwrap().to_vec(), vec![blob[699_999]]);
    let beyond = range("bytes=700000-").await;
    assert_eq!(beyond.status(), 416);
    assert_eq!(beyond.headers()["content-range"], "bytes */700000");

    expect_problem(
        h.get(&format!("/v1/titles/{id}/assets/nothex"), None).await,
        400,
        Some("path.asset_id"),
    )
    .await;
    expect_problem(
        h.get(
            &format!(
                "/v1/titles/{id}/assets/{}",
                mongodb::bson::oid::ObjectId::new().to_hex()
            ),
            None,
        )
        .await,
        404,
        None,
    )
    .await;
    let res = h
        .http
        .post(h.url(&format!("/v1/titles/{id}/assets?kind=song")))
        .bearer_auth(&admin)
        .header("content-type", "audio/mpeg")
        .body(vec![1u8, 2])
        .send()
        .await
        .unwrap();
    expect_problem(res, 400, Some("query.kind")).await;
    let res = h
        .http
        .post(h.url("/v1/titles/999999999999/assets?kind=poster"))
        .bearer_auth(&admin)
        .header("content-type", "image/png")
        .body(vec![1u8, 2])
        .send()
        .await
        .unwrap();
    expect_problem(res, 404, None).await;
}

#[tokio::test]
async fn views_ratings_recommendations_and_rankings() {
    let h = start(&[]).await;
    let (uid, token) = h.user(false).await;
    let (other, _) = h.user(false).await;
    let t = Some(token.as_str());
    let title = seed_title(&h, "drama").await;

    let res = h
        .post(
            &format!("/v1/users/{uid}/views"),
            json!({"title_id": title, "seconds_watched": 3600, "position_pct": 95.0}),
            t,
        )
        .await;
    let (a, ev) = h.expect_command(res, "polystream.view.recorded.v1").await;
    assert_eq!(ev["data"]["view_id"], a["view_id"]);
    assert_eq!(ev["data"]["completed"], true);
    assert_eq!(ev["data"]["user_id"], uid);
    expect_problem(
        h.post(
            &format!("/v1/users/{uid}/views"),
            json!({"title_id": title, "seconds_watched": 1, "position_pct": 150.0}),
            t,
        )
        .await,
        400,
        Some("body.position_pct"),
    )
    .await;
    expect_problem(
        h.post(
            &format!("/v1/users/{uid}/views"),
            json!({"title_id": title, "seconds_watched": -1, "position_pct": 1.0}),
            t,
        )
        .await,
        400,
        Some("body.seconds_watched"),
    )
    .await;
    expect_problem(
        h.post(
            &format!("/v1/users/{other}/views"),
            json!({"title_id": title, "seconds_watched": 1, "position_pct": 1.0}),
            t,
        )
        .await,
        403,
        None,
    )
    .await;

    let views = h
        .mongo
        .collection::<Document>(polystream_stores::mongo::VIEWS);
    for (i, (kind, completed)) in [("movie", true), ("series", false), ("movie", false)]
        .iter()
        .enumerate()
    {
        views.insert_one(doc! {"_id": uuid::Uuid::new_v4().to_string(), "user_id": uid, "title_id": title, "title": "T", "kind": *kind,
            "seconds_watched": 10_i64, "position_pct": 50.0, "completed": *completed,
            "watched_at": mongodb::bson::DateTime::from_millis(1_700_000_000_000 + i as i64 * 1000)}).await.unwrap();
    }
    let all: Vec<Value> = h
        .get(&format!("/v1/users/{uid}/views"), t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["kind"], "movie");
    assert_eq!(all[0]["completed"], false);
    let movies_done: Vec<Value> = h
        .get(
            &format!("/v1/users/{uid}/views?kind=movie&completed=true&limit=5"),
            t,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(movies_done.len(), 1);
    expect_problem(
        h.get(&format!("/v1/users/{uid}/views?completed=maybe"), t)
            .await,
        400,
        Some("query.completed"),
    )
    .await;

    let res = h
        .put(
            &format!("/v1/users/{uid}/ratings/{title}"),
            json!({"stars": 4}),
            t,
        )
        .await;
    let (_, ev) = h.expect_command(res, "polystream.title.rated.v1").await;
    assert_eq!(
        ev["data"],
        json!({"user_id": uid, "title_id": title, "stars": 4})
    );
    expect_problem(
        h.put(
            &format!("/v1/users/{uid}/ratings/{title}"),
            json!({"stars": 7}),
            t,
        )
        .await,
        400,
        Some("body.stars"),
    )
    .await;
    expect_problem(
        h.put(
            &format!("/v1/users/{uid}/ratings/{title}"),
            json!({"stars": 300}),
            t,
        )
        .await,
        400,
        Some("body.stars"),
    )
    .await;
    expect_problem(
        h.put(
            &format!("/v1/users/{uid}/ratings/0"),
            json!({"stars": 3}),
            t,
        )
        .await,
        400,
        Some("path.title_id"),
    )
    .await;

    let res = h
        .post(&format!("/v1/users/{uid}/recommendations"), json!({}), t)
        .await;
    h.expect_command(res, "polystream.recommendations.requested.v1")
        .await;
    expect_problem(
        h.get(&format!("/v1/users/{uid}/recommendations"), t).await,
        404,
        None,
    )
    .await;
    h.mongo.collection::<Document>(polystream_stores::mongo::RECOMMENDATIONS)
        .insert_one(doc! {"_id": uid, "generated_at": mongodb::bson::DateTime::now(), "items": [{"title_id": title, "title": "T", "score": 0.9, "reasons": ["similar"]}]})
        .await.unwrap();
    let recs: Value = h
        .get(&format!("/v1/users/{uid}/recommendations"), t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(recs["user_id"], uid);
    assert_eq!(recs["items"][0]["title_id"], title);

    // Rankings read the Redis sorted sets S2 maintains.
    let key = polystream_stores::keys::rank_views(
        polystream_stores::keys::Window::Day,
        chrono::Utc::now(),
    );
    let mut con = h.redis.clone();
    let _: () = redis::cmd("ZADD")
        .arg(&key)
        .arg(1e15)
        .arg(title)
        .query_async(&mut con)
        .await
        .unwrap();
    let r: Value = h
        .get("/v1/rankings/most-watched?window=day&limit=3", None)
        .await
        .json()
        .await
        .unwrap();
    let _: () = redis::cmd("ZREM")
        .arg(&key)
        .arg(title)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(r["items"][0]["title_id"], title, "{r}");
    assert_eq!(r["items"][0]["score"], 1e15);
    assert_eq!(h.get("/v1/rankings/top-rated", None).await.status(), 200);
    expect_problem(
        h.get("/v1/rankings/loudest", None).await,
        400,
        Some("path.kind"),
    )
    .await;
    expect_problem(
        h.get("/v1/rankings/top-rated?window=month", None).await,
        400,
        Some("query.window"),
    )
    .await;
}

#[tokio::test]
async fn oversized_or_empty_uploads_are_refused_and_leave_no_blob() {
    let h = start(&[("MAX_ASSET_BYTES", "1000")]).await;
    let (_, admin) = h.user(true).await;
    let id = seed_title(&h, "short").await;
    let upload = |body: Vec<u8>| {
        h.http
            .post(h.url(&format!("/v1/titles/{id}/assets?kind=poster")))
            .bearer_auth(&admin)
            .header("content-type", "image/png")
            .body(body)
            .send()
    };
    expect_problem(upload(vec![7u8; 5000]).await.unwrap(), 413, None).await;
    expect_problem(upload(Vec::new()).await.unwrap(), 400, Some("body")).await;
    let files = h
        .mongo
        .collection::<Document>("assets.files")
        .count_documents(doc! {"metadata.title_id": id})
        .await
        .unwrap();
    assert_eq!(files, 0);
    let res = h
        .http
        .post(h.url(&format!("/v1/titles/{id}/assets?kind=poster")))
        .bearer_auth(&admin)
        .body(vec![1u8])
        .send()
        .await
        .unwrap();
    expect_problem(res, 400, Some("header.content-type")).await;
}
