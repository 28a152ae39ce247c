//! The catalog in MongoDB: title documents (see [`crate::mongo::TITLES`]).

use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Document, doc};
use polystream_common::instrument::{Store, store_op};
use serde_json::Value;

use crate::fault::{Fault, mongo_fault};
use crate::{mongo, render};

/// One title document.
pub async fn get(db: &Database, title_id: i64) -> Result<Option<Document>, Fault> {
    store_op(
        Store::Mongodb,
        "find_title",
        db.collection::<Document>(mongo::TITLES)
            .find_one(doc! {"_id": title_id}),
    )
    .await
    .map_err(mongo_fault)
}

/// What browsing the catalog may filter on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TitleFilter {
    /// One of the title's genres.
    pub genre: Option<String>,
    /// The wire name of its kind: `movie`, `series` or `documentary`.
    pub kind: Option<String>,
}

impl TitleFilter {
    /// The MongoDB filter; pure, so it is unit tested.
    pub fn to_doc(&self) -> Document {
        let mut filter = doc! {};
        if let Some(g) = &self.genre {
            filter.insert("genres", g);
        }
        if let Some(k) = &self.kind {
            filter.insert("kind", k);
        }
        filter
    }
}

/// Titles matching `filter` in id order, at most `limit`, rendered as
/// clients see them ([`render::title_json`]).
pub async fn list(db: &Database, filter: &TitleFilter, limit: i64) -> Result<Vec<Value>, Fault> {
    let docs = find(
        db,
        "find_titles",
        filter.to_doc(),
        Some(doc! {"_id": 1}),
        limit,
    )
    .await?;
    Ok(docs.into_iter().map(render::title_json).collect())
}

/// The titles with these ids (unordered), at most `limit`.
pub async fn by_ids(db: &Database, ids: &[i64], limit: i64) -> Result<Vec<Document>, Fault> {
    find(db, "find_titles", doc! {"_id": {"$in": ids}}, None, limit).await
}

/// The titles having any of these genres (unordered), at most `limit`.
pub async fn sharing_genres(
    db: &Database,
    genres: &[String],
    limit: i64,
) -> Result<Vec<Document>, Fault> {
    find(
        db,
        "find_titles",
        doc! {"genres": {"$in": genres}},
        None,
        limit,
    )
    .await
}

/// Sets a title's fields, creating it when missing.
pub async fn upsert(db: &Database, title_id: i64, set: Document) -> Result<(), Fault> {
    store_op(
        Store::Mongodb,
        "upsert_title",
        db.collection::<Document>(mongo::TITLES)
            .update_one(doc! {"_id": title_id}, doc! {"$set": set})
            .upsert(true),
    )
    .await
    .map_err(mongo_fault)?;
    Ok(())
}

/// Deletes a title; whether it existed.
pub async fn delete(db: &Database, title_id: i64) -> Result<bool, Fault> {
    let r = store_op(
        Store::Mongodb,
        "delete_title",
        db.collection::<Document>(mongo::TITLES)
            .delete_one(doc! {"_id": title_id}),
    )
    .await
    .map_err(mongo_fault)?;
    Ok(r.deleted_count > 0)
}

/// Replaces a title's `assets` array and its `updated_at`.
pub async fn set_assets(
    db: &Database,
    title_id: i64,
    assets: Vec<mongodb::bson::Bson>,
    updated_at: mongodb::bson::DateTime,
) -> Result<(), Fault> {
    store_op(
        Store::Mongodb,
        "update_title_assets",
        db.collection::<Document>(mongo::TITLES).update_one(
            doc! {"_id": title_id},
            doc! {"$set": {"assets": assets, "updated_at": updated_at}},
        ),
    )
    .await
    .map_err(mongo_fault)?;
    Ok(())
}

/// A query's documents (`limit` 0: all); the cursor is drained inside the store call so its
/// span and duration cover the whole read.
pub(crate) async fn find_in(
    db: &Database,
    collection: &str,
    op: &'static str,
    filter: Document,
    sort: Option<Document>,
    limit: i64,
) -> Result<Vec<Document>, Fault> {
    find_projected(db, collection, op, filter, None, sort, limit).await
}

/// [`find_in`], reading only the `projection`'s fields.
pub(crate) async fn find_projected(
    db: &Database,
    collection: &str,
    op: &'static str,
    filter: Document,
    projection: Option<Document>,
    sort: Option<Document>,
    limit: i64,
) -> Result<Vec<Document>, Fault> {
    let c = db.collection::<Document>(collection);
    store_op(Store::Mongodb, op, async move {
        let mut find = c.find(filter);
        if let Some(p) = projection {
            find = find.projection(p);
        }
        if let Some(s) = sort {
            find = find.sort(s);
        }
        if limit > 0 {
            find = find.limit(limit);
        }
        find.await?.try_collect::<Vec<Document>>().await
    })
    .await
    .map_err(mongo_fault)
}

async fn find(
    db: &Database,
    op: &'static str,
    filter: Document,
    sort: Option<Document>,
    limit: i64,
) -> Result<Vec<Document>, Fault> {
    find_in(db, mongo::TITLES, op, filter, sort, limit).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_has_only_what_was_asked() {
        assert_eq!(TitleFilter::default().to_doc(), doc! {});
        let f = TitleFilter {
            genre: Some("drama".into()),
            kind: Some("series".into()),
        };
        assert_eq!(f.to_doc(), doc! {"genres": "drama", "kind": "series"});
    }
}
