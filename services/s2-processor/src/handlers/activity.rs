//! Viewing history and ratings (MongoDB) with the counters and rankings
//! they feed (Redis), and recommendations computed from them.

use chrono::{DateTime, Utc};
use mongodb::bson::{Document, doc};
use polystream_common::events::{TitleRated, ViewRecorded};
use polystream_stores::fault::Fault;
use polystream_stores::keys::{self, Window};
use polystream_stores::relations as stored_relations;
use polystream_stores::titles as stored;
use polystream_stores::{cache, rankings, ratings, recommendations, render, users, views};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::lookups::{doc_int, doc_time, find_title, unknown_title, unknown_user, user_exists};
use super::{Decision, Meta, Stores, bson_time};
use crate::recommend::{self, RatingFact, RelationFact, TitleFact, ViewFact};

pub async fn record_view(stores: &Stores, p: &ViewRecorded) -> Result<Decision, Fault> {
    let Some(registered) = users::created_at(&stores.pg, p.user_id).await? else {
        return Ok(unknown_user(p.user_id));
    };
    let Some((title, kind)) = title_and_kind(stores, p.title_id).await? else {
        return Ok(unknown_title(p.title_id));
    };
    let view = doc! {
        "_id": p.view_id.to_string(), "user_id": p.user_id, "title_id": p.title_id,
        "title": title, "kind": kind,
        "seconds_watched": i64::from(p.seconds_watched), "position_pct": p.position_pct,
        "completed": p.completed, "watched_at": bson_time(p.watched_at),
    };
    // A duplicate key is an earlier attempt of this same view: not an error.
    views::insert(&stores.mongo, view.clone()).await?;
    views::remember(&stores.mongo, &view, registered > stores.heads_since).await?;
    // Guarded by the view id (not only the event id): the same view is never
    // counted twice, even if re-sent as a new event.
    rankings::count_view(&stores.redis, p.view_id, p.title_id, p.watched_at).await?;
    Ok(Decision::Completed(json!({
        "view_id": p.view_id, "user_id": p.user_id, "title_id": p.title_id,
    })))
}

/// A title's name and kind, through the title cache S1 reads (filled here
/// on a miss): a MongoDB-wire server without secondary indexes finds a
/// title by scanning the catalog, and every view needs one. The cache is
/// dropped whenever the title changes or is deleted.
async fn title_and_kind(stores: &Stores, title_id: i64) -> Result<Option<(String, String)>, Fault> {
    let field = |v: &serde_json::Value, f: &str| v[f].as_str().unwrap_or_default().to_owned();
    if let Some(v) = cache::get_title(&stores.redis, title_id).await? {
        return Ok(Some((field(&v, "title"), field(&v, "kind"))));
    }
    let Some(doc) = find_title(&stores.mongo, title_id).await? else {
        return Ok(None);
    };
    let v = render::title_json(doc);
    cache::put_title(&stores.redis, title_id, &v, stores.title_cache_ttl).await?;
    Ok(Some((field(&v, "title"), field(&v, "kind"))))
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
    let previous = ratings::get(db, p.user_id, p.title_id).await?;
    ratings::upsert(db, p.user_id, p.title_id, p.stars, bson_time(meta.time)).await?;

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

    let all = ratings::of_title(db, p.title_id).await?;
    let pairs: Vec<(i64, DateTime<Utc>)> = all
        .iter()
        .filter_map(|d| Some((doc_int(d, "stars")?, doc_time(d, "rated_at")?)))
        .collect();

    // Absolute values (ZADD/ZREM): re-running them is harmless.
    let mut all_time = None;
    let mut averages = Vec::with_capacity(rank_keys.len());
    for (key, (w, _, avg)) in rank_keys.into_iter().zip(bucket_averages(&pairs, &buckets)) {
        if w == Window::AllTime && avg.is_some() {
            all_time = avg;
        }
        averages.push((key, avg));
    }
    rankings::set_ratings(&stores.redis, p.title_id, &averages).await?;
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
    let views: Vec<ViewFact> = views::of_user(db, user_id, 2000)
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
    let ratings: Vec<RatingFact> = ratings::of_user(db, user_id, 2000)
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
        add_titles(&mut titles, stored::by_ids(db, &seed_ids, 5000).await?);
        relations = stored_relations::of_titles(db, &seed_ids, 5000)
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
            stored::sharing_genres(db, &genres, 1000).await?,
        );
        add_titles(&mut titles, stored::by_ids(db, &related, 1000).await?);
    }

    let items = recommend::recommend(&titles, &views, &ratings, &relations);
    let docs: Vec<Document> = items
        .iter()
        .map(|r| {
            doc! {"title_id": r.title_id, "title": &r.title, "score": r.score, "reasons": &r.reasons}
        })
        .collect();
    recommendations::replace(db, user_id, bson_time(meta.time), docs).await?;
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
