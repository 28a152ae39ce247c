//! Reads the handlers share: does the user or title exist, and typed fields
//! of stored documents.

use chrono::{DateTime, Utc};
use mongodb::Database;
use mongodb::bson::{Bson, Document};
use polystream_common::events::FailureCode;
use polystream_stores::fault::Fault;
use polystream_stores::{titles, users};
use sqlx::PgPool;

use super::Decision;

pub async fn user_exists(pg: &PgPool, user_id: i64) -> Result<bool, Fault> {
    users::exists(pg, user_id).await
}

pub async fn find_title(db: &Database, title_id: i64) -> Result<Option<Document>, Fault> {
    titles::get(db, title_id).await
}

pub fn unknown_user(id: i64) -> Decision {
    Decision::failed(
        FailureCode::UnknownUser,
        format!("user {id} does not exist"),
    )
}

pub fn unknown_title(id: i64) -> Decision {
    Decision::failed(
        FailureCode::UnknownTitle,
        format!("title {id} does not exist"),
    )
}

pub fn doc_time(d: &Document, field: &str) -> Option<DateTime<Utc>> {
    d.get_datetime(field)
        .ok()
        .and_then(|t| DateTime::from_timestamp_millis(t.timestamp_millis()))
}

pub fn doc_int(d: &Document, field: &str) -> Option<i64> {
    match d.get(field)? {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) => Some(*v as i64),
        _ => None,
    }
}
