//! Watch history in MongoDB (see [`crate::mongo::VIEWS`]).

use mongodb::Database;
use mongodb::bson::{Document, doc};
use polystream_common::instrument::{Store, store_op};
use serde_json::Value;

use crate::fault::{Fault, mongo_fault, mongo_is_duplicate_key};
use crate::titles::find_in;
use crate::{mongo, render};

/// What a user's history may be filtered on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewFilter {
    /// The wire name of the title's kind.
    pub kind: Option<String>,
    pub completed: Option<bool>,
}

impl ViewFilter {
    /// The MongoDB filter for `user_id`'s views; pure, so it is unit tested.
    pub fn to_doc(&self, user_id: i64) -> Document {
        let mut filter = doc! {"user_id": user_id};
        if let Some(k) = &self.kind {
            filter.insert("kind", k);
        }
        if let Some(c) = self.completed {
            filter.insert("completed", c);
        }
        filter
    }
}

/// A user's views, newest first, at most `limit`, as clients see them.
pub async fn for_user(
    db: &Database,
    user_id: i64,
    filter: &ViewFilter,
    limit: i64,
) -> Result<Vec<Value>, Fault> {
    let docs = find_in(
        db,
        mongo::VIEWS,
        "find_views",
        filter.to_doc(user_id),
        Some(doc! {"watched_at": -1}),
        limit,
    )
    .await?;
    Ok(docs
        .into_iter()
        .map(|d| render::doc_json(d, "view_id"))
        .collect())
}

/// A user's views in no order, at most `limit` (the recommender's input).
pub async fn of_user(db: &Database, user_id: i64, limit: i64) -> Result<Vec<Document>, Fault> {
    find_in(
        db,
        mongo::VIEWS,
        "find_user_views",
        doc! {"user_id": user_id},
        None,
        limit,
    )
    .await
}

/// Stores a view document keyed by its `_id`. A duplicate key is an earlier
/// attempt of this same view: the store answered as it should, so it is not
/// an error (and the call counts as `ok`).
pub async fn insert(db: &Database, view: Document) -> Result<(), Fault> {
    let c = db.collection::<Document>(mongo::VIEWS);
    store_op(Store::Mongodb, "insert_view", async {
        match c.insert_one(view).await {
            Ok(_) => Ok(()),
            Err(e) if mongo_is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e),
        }
    })
    .await
    .map_err(mongo_fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_is_the_user_plus_what_was_asked() {
        assert_eq!(ViewFilter::default().to_doc(4), doc! {"user_id": 4_i64});
        let f = ViewFilter {
            kind: Some("movie".into()),
            completed: Some(false),
        };
        assert_eq!(
            f.to_doc(4),
            doc! {"user_id": 4_i64, "kind": "movie", "completed": false}
        );
    }
}
