//! Viewing history and ratings (MongoDB) with the counters and rankings
//! they feed (Redis), and recommendations computed from them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mongodb::Collection;
use mongodb::bson::{Document, doc};
use polystream_common::events::{TitleRated, ViewRecorded};
use polystream_stores::fault::{Fault, mongo_is_duplicate_key};
use polystream_stores::keys::{self, Window};
use polystream_stores::mongo;
use serde_json::json;

use super::lookups::{doc_int, doc_time, find_title, unknown_title, unknown_user, user_exists};
use super::{Decision, Meta, Stores, bson_time, coll, mongo_find, mongo_op, redis_op};
use crate::recommend::{self, RatingFact, RelationFact, TitleFact, ViewFact};

/// How long a view's "counted" guard is kept; longer than any redelivery.
pub const APPLIED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Counts a view once: the guard key and the increments change together.
const COUNT_VIEW: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('ZINCRBY', KEYS[2], 1, ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  redis.call('ZINCRBY', KEYS[3], 1, ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  redis.call('ZINCRBY', KEYS[4], 1, ARGV[2])
  redis.call('INCR', KEYS[5])
  return 1
end
return 0
";

pub async fn record_view(stores: &Stores, p: &ViewRecorded) -> Result<Decision, Fault> {
    if !user_exists(&stores.pg, p.user_id).await? {
        return Ok(unknown_user(p.user_id));
    }
    let Some(title) = find_title(&stores.mongo, p.title_id).await? else {
        return Ok(unknown_title(p.title_id));
    };
    let view = doc! {
        "_id": p.view_id.to_string(), "user_id": p.user_id, "title_id": p.title_id,
        "title": title.get_str("title").unwrap_or_default(),
        "kind": title.get_str("kind").unwrap_or_default(),
        "seconds_watched": i64::from(p.seconds_watched), "position_pct": p.position_pct,
        "completed": p.completed, "watched_at": bson_time(p.watched_at),
    };
    // A duplicate key is an earlier attempt of this same view: the store
    // answered as it should, so the call counts as `ok`.
    mongo_op("insert_view", async {
        match coll(&stores.mongo, mongo::VIEWS).insert_one(view).await {
            Ok(_) => Ok(()),
            Err(e) if mongo_is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e),
        }
    })
    .await?;
    // Guarded by the view id (not only the event id): the same view is never
    // counted twice, even if re-sent as a new event.
    let at = p.watched_at;
    let mut con = stores.redis.clone();
    let script = redis::Script::new(COUNT_VIEW);
    let mut invocation = script.key(keys::applied(p.view_id));
    invocation
        .key(keys::rank_views(Window::Day, at))
        .key(keys::rank_views(Window::Week, at))
        .key(keys::rank_views(Window::AllTime, at))
        .key(keys::title_views(p.title_id))
        .arg(APPLIED_TTL.as_secs())
        .arg(p.title_id)
        .arg(8 * 24 * 3600)
        .arg(5 * 7 * 24 * 3600);
    redis_op("count_view", invocation.invoke_async::<i64>(&mut con)).await?;
    Ok(Decision::Completed(json!({
        "view_id": p.view_id, "user_id": p.user_id, "title_id": p.title_id,
    })))
}

/// Average stars per ranking bucket, from `(stars, rated_at)` pairs; pure.
pub fn bucket_averages(
    ratings: &[(i64, DateTime<Utc>)],
    buckets: &[(Window, String)],
) -> Vec<(Window, String, Option<f64>)> {
    buckets
        .iter()
        .map(|(w, b)| {
            let in_bucket: Vec<i64> = ratings
                .iter()
                .filter(|(_, at)| w.bucket(*at) == *b)
                .map(|(s, _)| *s)
                .collect();
            let avg = (!in_bucket.is_empty())
                .then(|| in_bucket.iter().sum::<i64>() as f64 / in_bucket.len() as f64);
            (*w, b.clone(), avg)
        })
        .collect()
}

pub async fn rate(stores: &Stores, meta: Meta, p: &TitleRated) -> Result<Decision, Fault> {
    let db = &stores.mongo;
    if !user_exists(&stores.pg, p.user_id).await? {
        return Ok(unknown_user(p.user_id));
    }
    if find_title(db, p.title_id).await?.is_none() {
        return Ok(unknown_title(p.title_id));
    }
    let ratings = coll(db, mongo::RATINGS);
    let id = format!("{}:{}", p.user_id, p.title_id);
    let previous = mongo_op("find_rating", ratings.find_one(doc! {"_id": &id})).await?;
    mongo_op(
        "upsert_rating",
        ratings
            .update_one(
                doc! {"_id": &id},
                doc! {"$set": {
                    "user_id": p.user_id, "title_id": p.title_id,
                    "stars": i32::from(p.stars), "rated_at": bson_time(meta.time),
                }},
            )
            .upsert(true),
    )
    .await?;

    // Buckets touched: this rating's, and the one it replaced (it moved out).
    let mut touched: BTreeMap<String, (Window, String)> = BTreeMap::new();
    for at in [
        Some(meta.time),
        previous.as_ref().and_then(|d| doc_time(d, "rated_at")),
    ]
    .into_iter()
    .flatten()
    {
        for w in [Window::Day, Window::Week, Window::AllTime] {
            touched.insert(keys::rank_rating(w, at), (w, w.bucket(at)));
        }
    }
    let (rank_keys, buckets): (Vec<String>, Vec<(Window, String)>) = touched.into_iter().unzip();

    let all = mongo_find(
        "find_title_ratings",
        ratings,
        doc! {"title_id": p.title_id},
        Some(doc! {"stars": 1, "rated_at": 1}),
        None,
    )
    .await?;
    let pairs: Vec<(i64, DateTime<Utc>)> = all
        .iter()
        .filter_map(|d| Some((doc_int(d, "stars")?, doc_time(d, "rated_at")?)))
        .collect();

    // ZADD/ZREM set absolute values: re-running them is harmless.
    let mut pipe = redis::pipe();
    let mut all_time = None;
    for (key, (w, _, avg)) in rank_keys.iter().zip(bucket_averages(&pairs, &buckets)) {
        match avg {
            Some(a) => {
                pipe.zadd(key, p.title_id, a).ignore();
                if w == Window::AllTime {
                    all_time = Some(a);
                }
            }
            None => {
                pipe.zrem(key, p.title_id).ignore();
            }
        }
    }
    let mut con = stores.redis.clone();
    redis_op("update_rating_rankings", pipe.query_async::<()>(&mut con)).await?;
    Ok(Decision::Completed(json!({
        "user_id": p.user_id, "title_id": p.title_id, "stars": p.stars,
        "average": all_time,
    })))
}

pub async fn recommend_for(stores: &Stores, meta: Meta, user_id: i64) -> Result<Decision, Fault> {
    let db = &stores.mongo;
    if !user_exists(&stores.pg, user_id).await? {
        return Ok(unknown_user(user_id));
    }
    let collect = |op: &'static str, c: Collection<Document>, filter: Document, limit: i64| {
        mongo_find(op, c, filter, None, Some(limit))
    };
    let views: Vec<ViewFact> = collect(
        "find_user_views",
        coll(db, mongo::VIEWS),
        doc! {"user_id": user_id},
        2000,
    )
    .await?
    .iter()
    .filter_map(|d| {
        let completed = d.get_bool("completed").unwrap_or(false);
        let pct = d.get_f64("position_pct").unwrap_or(0.0);
        Some(ViewFact {
            title_id: doc_int(d, "title_id")?,
            completion: if completed { 1.0 } else { pct / 100.0 },
        })
    })
    .collect();
    let ratings: Vec<RatingFact> = collect(
        "find_user_ratings",
        coll(db, mongo::RATINGS),
        doc! {"user_id": user_id},
        2000,
    )
    .await?
    .iter()
    .filter_map(|d| {
        Some(RatingFact {
            title_id: doc_int(d, "title_id")?,
            stars: u8::try_from(doc_int(d, "stars")?).ok()?,
        })
    })
    .collect();
    let seeds: BTreeSet<i64> = views
        .iter()
        .map(|v| v.title_id)
        .chain(ratings.iter().map(|r| r.title_id))
        .collect();
    let seed_ids: Vec<i64> = seeds.iter().copied().collect();
    let mut titles: HashMap<i64, TitleFact> = HashMap::new();
    let mut relations: Vec<RelationFact> = Vec::new();
    // No history, nothing to go on: an empty list (and no `$in: []` queries).
    if !seed_ids.is_empty() {
        add_titles(
            &mut titles,
            collect(
                "find_titles",
                coll(db, mongo::TITLES),
                doc! {"_id": {"$in": &seed_ids}},
                5000,
            )
            .await?,
        );
        relations = collect(
            "find_title_relations",
            coll(db, mongo::TITLE_RELATIONS),
            doc! {"title_id": {"$in": &seed_ids}},
            5000,
        )
        .await?
        .iter()
        .filter_map(|d| {
            Some(RelationFact {
                title_id: doc_int(d, "title_id")?,
                related_title_id: doc_int(d, "related_title_id")?,
                relation: d.get_str("relation").ok()?.to_owned(),
            })
        })
        .collect();
        let genres: BTreeSet<String> = titles.values().flat_map(|t| t.genres.clone()).collect();
        let genres: Vec<String> = genres.into_iter().collect();
        let related: Vec<i64> = relations.iter().map(|r| r.related_title_id).collect();
        // Candidates: titles sharing a genre with the history, and related titles.
        add_titles(
            &mut titles,
            collect(
                "find_titles",
                coll(db, mongo::TITLES),
                doc! {"genres": {"$in": &genres}},
                1000,
            )
            .await?,
        );
        add_titles(
            &mut titles,
            collect(
                "find_titles",
                coll(db, mongo::TITLES),
                doc! {"_id": {"$in": &related}},
                1000,
            )
            .await?,
        );
    }

    let items = recommend::recommend(&titles, &views, &ratings, &relations);
    let docs: Vec<Document> = items
        .iter()
        .map(|r| {
            doc! {"title_id": r.title_id, "title": &r.title, "score": r.score, "reasons": &r.reasons}
        })
        .collect();
    mongo_op(
        "replace_recommendations",
        coll(db, mongo::RECOMMENDATIONS)
            .replace_one(
                doc! {"_id": user_id},
                doc! {"_id": user_id, "generated_at": bson_time(meta.time), "items": docs},
            )
            .upsert(true),
    )
    .await?;
    Ok(Decision::Completed(json!({
        "user_id": user_id,
        "count": items.len(),
        "title_ids": items.iter().map(|r| r.title_id).collect::<Vec<_>>(),
    })))
}

fn add_titles(titles: &mut HashMap<i64, TitleFact>, docs: Vec<Document>) {
    for d in docs {
        if let Some(id) = doc_int(&d, "_id") {
            let genres = d
                .get_array("genres")
                .map(|a| {
                    a.iter()
                        .filter_map(|g| g.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            titles.insert(
                id,
                TitleFact {
                    title_id: id,
                    title: d.get_str("title").unwrap_or_default().to_owned(),
                    genres,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn averages_per_bucket() {
        let mon = Utc.with_ymd_and_hms(2026, 11, 16, 10, 0, 0).unwrap();
        let sun = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let ratings = [(5, mon), (2, sun), (4, sun)];
        let buckets = vec![
            (Window::Day, Window::Day.bucket(sun)),
            (Window::Week, Window::Week.bucket(sun)),
            (Window::AllTime, "all".to_owned()),
            (Window::Day, "2026-01-01".to_owned()),
        ];
        let got: Vec<Option<f64>> = bucket_averages(&ratings, &buckets)
            .into_iter()
            .map(|(_, _, a)| a)
            .collect();
        assert_eq!(got, [Some(3.0), Some(11.0 / 3.0), Some(11.0 / 3.0), None]);
    }
}
