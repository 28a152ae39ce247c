//! The catalog in MongoDB — titles, relations, asset attachments — and the
//! title cache in Redis, which every catalog change invalidates.

use mongodb::bson::{Bson, Document, doc, oid::ObjectId};
use polystream_common::events::{
    AssetAttached, FailureCode, TitleCacheWarmRequested, TitleDeleted, TitleUpserted, TitlesRelated,
};
use polystream_stores::fault::Fault;
use polystream_stores::keys;
use polystream_stores::{assets, cache, mongo, rankings, relations, render, titles};
use serde_json::json;

use super::lookups::{find_title, unknown_title};
use super::{Decision, Meta, Stores, bson_time, snake};

pub async fn upsert(stores: &Stores, meta: Meta, p: &TitleUpserted) -> Result<Decision, Fault> {
    let db = &stores.mongo;
    let seasons: Vec<Document> = p
        .seasons
        .iter()
        .map(|s| doc! {"number": i64::from(s.number), "episodes": i64::from(s.episodes)})
        .collect();
    let mut set = doc! {
        "title": p.title.trim(), "description": &p.description,
        "kind": snake(&p.kind), "year": p.year,
        "directors": &p.directors, "cast": &p.cast,
        "genres": &p.genres, "categories": &p.categories,
        "seasons": seasons, "updated_at": bson_time(meta.time),
    };
    // Attachments survive a catalog edit; `assets` is only initialised.
    // (Read first: FerretDB v1 silently drops an empty array given to
    // `$setOnInsert`. A title's events share a partition: no race.)
    let has_assets = find_title(db, p.title_id)
        .await?
        .is_some_and(|t| t.contains_key("assets"));
    if !has_assets {
        set.insert("assets", Bson::Array(vec![]));
    }
    titles::upsert(db, p.title_id, set).await?;
    cache::delete_title(&stores.redis, p.title_id).await?;
    Ok(Decision::Completed(json!({"title_id": p.title_id})))
}

pub async fn delete(stores: &Stores, meta: Meta, p: &TitleDeleted) -> Result<Decision, Fault> {
    let db = &stores.mongo;
    let deleted = titles::delete(db, p.title_id).await?;
    relations::delete_for_title(db, p.title_id).await?;
    cache::delete_title(&stores.redis, p.title_id).await?;
    // Rankings must not list a title that no longer exists.
    rankings::remove_title(&stores.redis, p.title_id, meta.time).await?;
    Ok(Decision::Completed(
        json!({"title_id": p.title_id, "deleted": deleted}),
    ))
}

pub async fn relate(stores: &Stores, meta: Meta, p: &TitlesRelated) -> Result<Decision, Fault> {
    let db = &stores.mongo;
    for id in [p.title_id, p.related_title_id] {
        if find_title(db, id).await?.is_none() {
            return Ok(unknown_title(id));
        }
    }
    let relation = snake(&p.relation);
    // Upsert by the composite id; `created_at` is the first event's time.
    relations::upsert(
        db,
        p.title_id,
        p.related_title_id,
        &relation,
        bson_time(meta.time),
    )
    .await?;
    cache::delete_title(&stores.redis, p.title_id).await?;
    Ok(Decision::Completed(json!({
        "title_id": p.title_id, "related_title_id": p.related_title_id, "relation": relation,
    })))
}

/// Loads a title into the cache, rendered and timed exactly as S1's own
/// cache fill (one renderer, one TTL setting).
pub async fn warm(stores: &Stores, p: &TitleCacheWarmRequested) -> Result<Decision, Fault> {
    let Some(title) = find_title(&stores.mongo, p.title_id).await? else {
        return Ok(unknown_title(p.title_id));
    };
    cache::put_title(
        &stores.redis,
        p.title_id,
        &render::title_json(title),
        stores.title_cache_ttl,
    )
    .await?;
    Ok(Decision::Completed(
        json!({"title_id": p.title_id, "cache_key": keys::title_cache(p.title_id)}),
    ))
}

pub async fn attach_asset(
    stores: &Stores,
    meta: Meta,
    p: &AssetAttached,
) -> Result<Decision, Fault> {
    let db = &stores.mongo;
    let Some(title) = find_title(db, p.title_id).await? else {
        return Ok(unknown_title(p.title_id));
    };
    let missing = || {
        Decision::failed(
            FailureCode::UnknownAsset,
            format!(
                "asset {} is not in the {} bucket",
                p.asset_id,
                mongo::ASSETS_BUCKET
            ),
        )
    };
    let Ok(oid) = ObjectId::parse_str(&p.asset_id) else {
        return Ok(missing());
    };
    if !assets::exists(db, oid).await? {
        return Ok(missing());
    }
    let entry = doc! {
        "asset_id": &p.asset_id, "kind": snake(&p.kind), "filename": &p.filename,
        "content_type": &p.content_type, "length": i64::try_from(p.length).unwrap_or(i64::MAX),
    };
    // No positional operators on FerretDB: rewrite the whole array. A title's
    // events share a partition, so nothing else writes it meanwhile.
    let mut assets: Vec<Bson> = title.get_array("assets").cloned().unwrap_or_default();
    let same = |b: &Bson| {
        b.as_document()
            .and_then(|d| d.get_str("asset_id").ok())
            .is_some_and(|id| id == p.asset_id)
    };
    match assets.iter().position(same) {
        Some(i) => assets[i] = Bson::Document(entry),
        None => assets.push(Bson::Document(entry)),
    }
    titles::set_assets(db, p.title_id, assets, bson_time(meta.time)).await?;
    cache::delete_title(&stores.redis, p.title_id).await?;
    Ok(Decision::Completed(
        json!({"title_id": p.title_id, "asset_id": p.asset_id, "kind": p.kind}),
    ))
}
