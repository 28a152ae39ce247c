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
    /// Whether a view, as clients see it, passes the filter (the
    /// [`Self::to_doc`] filter applied in memory to a history head); pure.
    pub fn matches(&self, view: &Value) -> bool {
        self.kind
            .as_deref()
            .is_none_or(|k| view["kind"].as_str() == Some(k))
            && self
                .completed
                .is_none_or(|c| view["completed"].as_bool() == Some(c))
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
        let matching: Vec<Value> = head
            .items
            .iter()
            .filter(|v| filter.matches(v))
            .take(want)
            .cloned()
            .collect();
        if matching.len() == want || head.is_complete() {
            return Ok(matching);
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

/// Views a history head keeps: a default page, so most reads are answered
/// by it; a bigger page, or a filter that matches fewer of them, reads the
/// collection.
pub const RECENT: usize = 20;

/// The `_id` of a user's history head (a string: an `_id` lookup by string
/// is what a MongoDB-wire server without real secondary indexes pushes down).
pub fn head_id(user_id: i64) -> String {
    format!("user:{user_id}")
}

/// A user's history head: `{_id: "user:{id}", user_id, total, items}` where
/// `items` is the JSON text of the newest views as clients see them. Text,
/// not an array of sub-documents: FerretDB v1 spends most of a read or a
/// rewrite taking nested documents apart (a head with 20 sub-documents cut
/// S2 from ~2 900 to ~220 views/s in a probe with six writers, as text ~590).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Head {
    /// Newest first, at most [`RECENT`].
    pub items: Vec<Value>,
    /// Views the user has in all.
    pub total: i64,
}

impl Head {
    /// Whether it holds the user's whole history.
    pub fn is_complete(&self) -> bool {
        usize::try_from(self.total).is_ok_and(|t| t <= self.items.len())
    }

    fn from_doc(d: &Document) -> Self {
        Self {
            items: d
                .get_str("items")
                .ok()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default(),
            total: d.get_i64("total").unwrap_or(i64::MAX),
        }
    }

    /// `view` (as clients see it) added, newest first, at most [`RECENT`]
    /// kept; false when it is already there (a redelivered view). Pure.
    pub fn add(&mut self, view: Value) -> bool {
        if self.items.iter().any(|v| v["view_id"] == view["view_id"]) {
            return false;
        }
        let at = watched_at(&view);
        let pos = self
            .items
            .iter()
            .position(|v| watched_at(v) < at)
            .unwrap_or(self.items.len());
        self.items.insert(pos, view);
        self.items.truncate(RECENT);
        self.total = self.total.saturating_add(1);
        true
    }
}

fn watched_at(v: &Value) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    v["watched_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
}

async fn head(db: &Database, user_id: i64) -> Result<Option<Head>, Fault> {
    let c = db.collection::<Document>(mongo::VIEW_HISTORY);
    let d = store_op(
        Store::Mongodb,
        "find_view_history",
        c.find_one(doc! {"_id": head_id(user_id)}),
    )
    .await
    .map_err(mongo_fault)?;
    Ok(d.as_ref().map(Head::from_doc))
}

/// `_id` of the marker recording when heads began to be kept.
const HEADS_SINCE: &str = "heads:since";

/// Since when history heads are kept (recorded by the first processor that
/// keeps them): a user registered later has every view in their head, so
/// their first view starts it without reading the collection.
pub async fn heads_since(db: &Database) -> Result<chrono::DateTime<chrono::Utc>, Fault> {
    let c = db.collection::<Document>(mongo::VIEW_HISTORY);
    let now = mongodb::bson::DateTime::now();
    let found = store_op(Store::Mongodb, "find_view_history", async {
        // An upsert that sets nothing on an existing marker: the first wins.
        // Processors starting together race to insert it; the loser's
        // duplicate key means the marker is there.
        let upsert = c
            .update_one(
                doc! {"_id": HEADS_SINCE},
                doc! {"$setOnInsert": {"at": now}},
            )
            .upsert(true)
            .await;
        if let Err(e) = upsert
            && !mongo_is_duplicate_key(&e)
        {
            return Err(e);
        }
        c.find_one(doc! {"_id": HEADS_SINCE}).await
    })
    .await
    .map_err(mongo_fault)?;
    let at = found
        .and_then(|d| d.get_datetime("at").ok().copied())
        .unwrap_or(now);
    Ok(chrono::DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or_default())
}

/// Records a stored view in its user's history head (S2, after
/// [`insert`]); idempotent. A head is started from this view alone when
/// `fresh` (the user was registered after [`heads_since`]), else from the
/// collection, once, so views stored before heads existed are not lost.
/// One writer per user is assumed: a user's views are keyed to one Kafka
/// partition, whose single consumer writes them in order.
pub async fn remember(db: &Database, view: &Document, fresh: bool) -> Result<(), Fault> {
    let user_id = view
        .get_i64("user_id")
        .map_err(|e| Fault::permanent("mongodb", format!("view without user_id: {e}")))?;
    let head = match head(db, user_id).await? {
        Some(mut h) => {
            if !h.add(render::doc_json(view.clone(), "view_id")) {
                return Ok(());
            }
            h
        }
        None if fresh => {
            let mut h = Head::default();
            h.add(render::doc_json(view.clone(), "view_id"));
            h
        }
        None => {
            // Includes `view` itself, stored just before.
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
            Head {
                items: recent
                    .into_iter()
                    .map(|d| render::doc_json(d, "view_id"))
                    .collect(),
                total: i64::try_from(total).unwrap_or(i64::MAX),
            }
        }
    };
    let items = serde_json::to_string(&head.items)
        .map_err(|e| Fault::permanent("mongodb", format!("history head: {e}")))?;
    let c = db.collection::<Document>(mongo::VIEW_HISTORY);
    let id = head_id(user_id);
    store_op(
        Store::Mongodb,
        "replace_view_history",
        c.replace_one(
            doc! {"_id": &id},
            doc! {"_id": &id, "user_id": user_id, "total": head.total, "items": items},
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

    fn v(id: &str, ms: i64, kind: &str, completed: bool) -> Value {
        render::doc_json(
            doc! {"_id": id, "kind": kind, "completed": completed, "watched_at": DateTime::from_millis(ms)},
            "view_id",
        )
    }

    #[test]
    fn a_head_keeps_the_newest_views_first_bounded_and_unique() {
        let mut h = Head::default();
        assert!(h.add(v("a", 2_000, "movie", true)));
        assert!(h.add(v("b", 3_000, "movie", true)));
        assert!(h.add(v("c", 1_000, "movie", true)));
        assert!(!h.add(v("b", 3_000, "movie", true)));
        let ids: Vec<_> = h
            .items
            .iter()
            .map(|d| d["view_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["b", "a", "c"]);
        assert!(h.is_complete());
        for i in 0..2 * RECENT as i64 {
            h.add(v(&format!("x{i}"), 10_000 + i * 1_500, "movie", true));
        }
        assert_eq!(h.items.len(), RECENT);
        assert_eq!(h.total, 3 + 2 * RECENT as i64);
        assert!(!h.is_complete());
        assert_eq!(h.items[0]["view_id"], format!("x{}", 2 * RECENT - 1));
        // Older than everything kept: counted, not kept.
        assert!(h.add(v("old", 0, "movie", true)));
        assert!(h.items.iter().all(|d| d["view_id"] != "old"));
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
        assert!(ViewFilter::default().matches(&serde_json::json!({})));
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
