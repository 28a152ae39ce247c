//! Title relations in MongoDB (see [`crate::mongo::TITLE_RELATIONS`]).

use mongodb::Database;
use mongodb::bson::{Document, doc};
use polystream_common::instrument::{Store, store_op};
use serde_json::Value;

use crate::fault::{Fault, mongo_fault};
use crate::titles::find_in;
use crate::{mongo, render};

/// A relation's document id: one per (title, related title, relation), so
/// relating twice changes nothing.
pub fn relation_id(title_id: i64, related_title_id: i64, relation: &str) -> String {
    format!("{title_id}:{related_title_id}:{relation}")
}

/// The relations from a title, as clients see them (no `_id`).
pub async fn of_title(db: &Database, title_id: i64) -> Result<Vec<Value>, Fault> {
    let docs = find_in(
        db,
        mongo::TITLE_RELATIONS,
        "find_relations",
        doc! {"title_id": title_id},
        None,
        0,
    )
    .await?;
    Ok(docs.into_iter().map(|d| render::doc_json(d, "")).collect())
}

/// The relations from any of these titles, at most `limit`.
pub async fn of_titles(db: &Database, ids: &[i64], limit: i64) -> Result<Vec<Document>, Fault> {
    find_in(
        db,
        mongo::TITLE_RELATIONS,
        "find_title_relations",
        doc! {"title_id": {"$in": ids}},
        None,
        limit,
    )
    .await
}

/// Relates two titles; `created_at` is set by the first write only.
pub async fn upsert(
    db: &Database,
    title_id: i64,
    related_title_id: i64,
    relation: &str,
    created_at: mongodb::bson::DateTime,
) -> Result<(), Fault> {
    store_op(
        Store::Mongodb,
        "upsert_title_relation",
        db.collection::<Document>(mongo::TITLE_RELATIONS)
            .update_one(
                doc! {"_id": relation_id(title_id, related_title_id, relation)},
                doc! {
                    "$set": {
                        "title_id": title_id, "related_title_id": related_title_id,
                        "relation": relation,
                    },
                    "$setOnInsert": {"created_at": created_at},
                },
            )
            .upsert(true),
    )
    .await
    .map_err(mongo_fault)?;
    Ok(())
}

/// Removes every relation from or to a title (it was deleted).
pub async fn delete_for_title(db: &Database, title_id: i64) -> Result<(), Fault> {
    store_op(
        Store::Mongodb,
        "delete_title_relations",
        db.collection::<Document>(mongo::TITLE_RELATIONS)
            .delete_many(doc! {"$or": [{"title_id": title_id}, {"related_title_id": title_id}]}),
    )
    .await
    .map_err(mongo_fault)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn relation_ids_are_composite() {
        assert_eq!(super::relation_id(1, 2, "sequel"), "1:2:sequel");
    }
}
