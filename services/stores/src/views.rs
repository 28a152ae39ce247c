//! Watch history in MongoDB: every view in [`crate::mongo::VIEWS`], and per
//! user the most recent ones in one document ([`crate::mongo::VIEW_HISTORY`]),
//! so the common read — a user's latest views — is one lookup by `_id`
//! whatever the collection holds. (On real MongoDB the `{user_id, watched_at}`
//! index serves the full query too; a MongoDB-wire server like FerretDB v1
//! answers it by scanning, and only an `_id` lookup uses an index there.)

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
    /// Whether a view document passes the filter (the [`Self::to_doc`]
    /// filter applied in memory, to a history head's items); pure.
    pub fn matches(&self, view: &Document) -> bool {
        self.kind
            .as_deref()
            .is_none_or(|k| view.get_str("kind").is_ok_and(|v| v == k))
            && self
                .completed
                .is_none_or(|c| view.get_bool("completed").is_ok_and(|v| v == c))
    }

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
/// From the user's history head when it can answer (it holds the whole
/// history, or at least `limit` matching views), else from the collection.
pub async fn for_user(
    db: &Database,
    user_id: i64,
    filter: &ViewFilter,
    limit: i64,
) -> Result<Vec<Value>, Fault> {
    let want = usize::try_from(limit).unwrap_or(0);
    if let Some(head) = head(db, user_id).await? {
        let (items, total) = head_parts(&head);
        let matching: Vec<Document> = items
            .into_iter()
            .filter(|v| filter.matches(v))
            .take(want)
            .collect();
        let complete = usize::try_from(total).ok() == Some(head_len(&head));
        if matching.len() == want || complete {
            return Ok(matching
                .into_iter()
                .map(|d| render::doc_json(d, "view_id"))
                .collect());
        }
    }
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

/// Views a history head keeps: a default page. FerretDB v1 reads and
/// rewrites a document in time proportional to its size (a 100-view head
/// took 7 ms to read and 8 ms to replace, a 20-view one 2 ms and 2.5 ms), so
/// the head holds what most reads ask for; a bigger page, or a filter that
/// matches fewer of them, reads the collection.
pub const RECENT: usize = 20;

/// The `_id` of a user's history head (a string: an `_id` lookup by string
/// is what a MongoDB-wire server without real secondary indexes pushes down).
pub fn head_id(user_id: i64) -> String {
    format!("user:{user_id}")
}

async fn head(db: &Database, user_id: i64) -> Result<Option<Document>, Fault> {
    let c = db.collection::<Document>(mongo::VIEW_HISTORY);
    store_op(
        Store::Mongodb,
        "find_view_history",
        c.find_one(doc! {"_id": head_id(user_id)}),
    )
    .await
    .map_err(mongo_fault)
}

/// A head's items (newest first) and how many views the user has in all.
fn head_parts(head: &Document) -> (Vec<Document>, i64) {
    let items = head
        .get_array("items")
        .map(|a| a.iter().filter_map(|b| b.as_document().cloned()).collect())
        .unwrap_or_default();
    (items, head.get_i64("total").unwrap_or(i64::MAX))
}

fn head_len(head: &Document) -> usize {
    head.get_array("items").map_or(0, Vec::len)
}

/// `view` added to `items` (newest first, at most [`RECENT`]); false when it
/// is already there (a redelivered view). Pure.
pub fn add_recent(items: &mut Vec<Document>, view: &Document) -> bool {
    let id = view.get("_id");
    if items.iter().any(|v| v.get("_id") == id) {
        return false;
    }
    let at = view.get_datetime("watched_at").ok();
    let pos = items
        .iter()
        .position(|v| v.get_datetime("watched_at").ok() < at)
        .unwrap_or(items.len());
    items.insert(pos, view.clone());
    items.truncate(RECENT);
    true
}

/// Records a stored view in its user's history head (S2, after
/// [`insert`]); idempotent. The first time, the head is built from the
/// collection, so views stored before heads existed are not lost. One
/// writer per user is assumed: a user's views are keyed to one Kafka
/// partition, whose single consumer writes them in order.
pub async fn remember(db: &Database, view: &Document) -> Result<(), Fault> {
    let user_id = view
        .get_i64("user_id")
        .map_err(|e| Fault::permanent("mongodb", format!("view without user_id: {e}")))?;
    let (items, total) = match head(db, user_id).await? {
        Some(h) => {
            let (mut items, total) = head_parts(&h);
            if !add_recent(&mut items, view) {
                return Ok(());
            }
            (items, total.saturating_add(1))
        }
        None => {
            let recent = find_in(
                db,
                mongo::VIEWS,
                "find_views",
                doc! {"user_id": user_id},
                Some(doc! {"watched_at": -1}),
                RECENT as i64,
            )
            .await?;
            let c = db.collection::<Document>(mongo::VIEWS);
            let total = store_op(
                Store::Mongodb,
                "count_user_views",
                c.count_documents(doc! {"user_id": user_id}),
            )
            .await
            .map_err(mongo_fault)?;
            let mut items = recent;
            add_recent(&mut items, view);
            (items, i64::try_from(total).unwrap_or(i64::MAX))
        }
    };
    let c = db.collection::<Document>(mongo::VIEW_HISTORY);
    let id = head_id(user_id);
    let total = total.max(items.len() as i64);
    store_op(
        Store::Mongodb,
        "replace_view_history",
        c.replace_one(
            doc! {"_id": &id},
            doc! {"_id": &id, "user_id": user_id, "items": items, "total": total},
        )
        .upsert(true),
    )
    .await
    .map_err(mongo_fault)?;
    Ok(())
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
    use mongodb::bson::DateTime;

    fn v(id: &str, ms: i64, kind: &str, completed: bool) -> Document {
        doc! {"_id": id, "kind": kind, "completed": completed, "watched_at": DateTime::from_millis(ms)}
    }

    #[test]
    fn recent_views_stay_newest_first_bounded_and_unique() {
        let mut items = Vec::new();
        assert!(add_recent(&mut items, &v("a", 2_000, "movie", true)));
        assert!(add_recent(&mut items, &v("b", 3_000, "movie", true)));
        assert!(add_recent(&mut items, &v("c", 1_000, "movie", true)));
        assert!(!add_recent(&mut items, &v("b", 3_000, "movie", true)));
        let ids: Vec<_> = items.iter().map(|d| d.get_str("_id").unwrap()).collect();
        assert_eq!(ids, ["b", "a", "c"]);
        for i in 0..2 * RECENT as i64 {
            add_recent(&mut items, &v(&format!("x{i}"), 10_000 + i, "movie", true));
        }
        assert_eq!(items.len(), RECENT);
        assert_eq!(
            items[0].get_str("_id").unwrap(),
            format!("x{}", 2 * RECENT - 1)
        );
        // Older than everything kept: not added at the end of a full head.
        assert!(add_recent(&mut items, &v("old", 0, "movie", true)));
        assert!(items.iter().all(|d| d.get_str("_id").unwrap() != "old"));
    }

    #[test]
    fn the_filter_applies_in_memory_as_in_the_query() {
        let f = ViewFilter {
            kind: Some("movie".into()),
            completed: Some(false),
        };
        assert!(f.matches(&v("a", 0, "movie", false)));
        assert!(!f.matches(&v("a", 0, "series", false)));
        assert!(!f.matches(&v("a", 0, "movie", true)));
        assert!(ViewFilter::default().matches(&doc! {}));
    }

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
