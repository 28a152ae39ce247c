//! Recommendation lists in MongoDB: one document per user (see
//! [`crate::mongo::RECOMMENDATIONS`]).

use mongodb::Database;
use mongodb::bson::{Document, doc};
use polystream_common::instrument::{Store, store_op};
use serde_json::Value;

use crate::fault::{Fault, mongo_fault};
use crate::{mongo, render};

/// A user's latest list as clients see it (`_id` becomes `user_id`).
pub async fn for_user(db: &Database, user_id: i64) -> Result<Option<Value>, Fault> {
    let d = store_op(
        Store::Mongodb,
        "find_recommendations",
        db.collection::<Document>(mongo::RECOMMENDATIONS)
            .find_one(doc! {"_id": user_id}),
    )
    .await
    .map_err(mongo_fault)?;
    Ok(d.map(|d| render::doc_json(d, "user_id")))
}

/// Replaces a user's list with `items` (`{title_id, title, score, reasons}`).
pub async fn replace(
    db: &Database,
    user_id: i64,
    generated_at: mongodb::bson::DateTime,
    items: Vec<Document>,
) -> Result<(), Fault> {
    store_op(
        Store::Mongodb,
        "replace_recommendations",
        db.collection::<Document>(mongo::RECOMMENDATIONS)
            .replace_one(
                doc! {"_id": user_id},
                doc! {"_id": user_id, "generated_at": generated_at, "items": items},
            )
            .upsert(true),
    )
    .await
    .map_err(mongo_fault)?;
    Ok(())
}
