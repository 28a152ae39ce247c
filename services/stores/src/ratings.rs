//! Ratings in MongoDB: one document per user and title (see
//! [`crate::mongo::RATINGS`]).

use mongodb::Database;
use mongodb::bson::{Document, doc};
use polystream_common::instrument::{Store, store_op};

use crate::fault::{Fault, mongo_fault};
use crate::mongo;
use crate::titles::{find_in, find_projected};

/// A rating's document id: a later rating by the same user replaces it.
pub fn rating_id(user_id: i64, title_id: i64) -> String {
    format!("{user_id}:{title_id}")
}

/// The user's current rating of a title.
pub async fn get(db: &Database, user_id: i64, title_id: i64) -> Result<Option<Document>, Fault> {
    store_op(
        Store::Mongodb,
        "find_rating",
        db.collection::<Document>(mongo::RATINGS)
            .find_one(doc! {"_id": rating_id(user_id, title_id)}),
    )
    .await
    .map_err(mongo_fault)
}

/// Sets the user's rating of a title.
pub async fn upsert(
    db: &Database,
    user_id: i64,
    title_id: i64,
    stars: u8,
    rated_at: mongodb::bson::DateTime,
) -> Result<(), Fault> {
    store_op(
        Store::Mongodb,
        "upsert_rating",
        db.collection::<Document>(mongo::RATINGS)
            .update_one(
                doc! {"_id": rating_id(user_id, title_id)},
                doc! {"$set": {
                    "user_id": user_id, "title_id": title_id,
                    "stars": i32::from(stars), "rated_at": rated_at,
                }},
            )
            .upsert(true),
    )
    .await
    .map_err(mongo_fault)?;
    Ok(())
}

/// Every rating of a title, only `stars` and `rated_at` (for the averages).
pub async fn of_title(db: &Database, title_id: i64) -> Result<Vec<Document>, Fault> {
    find_projected(
        db,
        mongo::RATINGS,
        "find_title_ratings",
        doc! {"title_id": title_id},
        Some(doc! {"stars": 1, "rated_at": 1}),
        None,
        0,
    )
    .await
}

/// A user's ratings in no order, at most `limit` (the recommender's input).
pub async fn of_user(db: &Database, user_id: i64, limit: i64) -> Result<Vec<Document>, Fault> {
    find_in(
        db,
        mongo::RATINGS,
        "find_user_ratings",
        doc! {"user_id": user_id},
        None,
        limit,
    )
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_rating_per_user_and_title() {
        assert_eq!(super::rating_id(3, 9), "3:9");
    }
}
