//! BSON → the JSON clients and caches see, one renderer for every service:
//! dates as RFC 3339, ObjectIds as hex, numbers as numbers, `_id` renamed to
//! what it is. A title cached by S1 (cache-aside) and by S2 (warm request)
//! is therefore byte-for-byte the same document.

use mongodb::bson::{Bson, Document};
use serde_json::Value;

pub fn to_json(b: Bson) -> Value {
    match b {
        Bson::Document(d) => Value::Object(d.into_iter().map(|(k, v)| (k, to_json(v))).collect()),
        Bson::Array(a) => Value::Array(a.into_iter().map(to_json).collect()),
        // A date outside RFC 3339's years has no faithful text: null.
        Bson::DateTime(t) => t.try_to_rfc3339_string().map_or(Value::Null, Value::String),
        Bson::ObjectId(o) => Value::String(o.to_hex()),
        Bson::Int32(i) => i.into(),
        Bson::Int64(i) => i.into(),
        other => other.into_relaxed_extjson(),
    }
}

/// A document with its `_id` renamed to `id_name` (dropped when empty).
pub fn doc_json(mut d: Document, id_name: &str) -> Value {
    if let Some(id) = d.remove("_id")
        && !id_name.is_empty()
    {
        d.insert(id_name, id);
    }
    to_json(Bson::Document(d))
}

/// A title document as clients and the title cache see it.
pub fn title_json(d: Document) -> Value {
    doc_json(d, "title_id")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use mongodb::bson::{doc, oid::ObjectId};
    use serde_json::json;

    use super::*;

    #[test]
    fn title_renames_id_and_formats_dates_ids_and_numbers() {
        let t = mongodb::bson::DateTime::from_millis(0);
        let oid = ObjectId::parse_str("65f000000000000000000001").unwrap();
        let v = title_json(doc! {
            "_id": 7_i64, "title": "X", "updated_at": t, "genres": ["a"], "year": 1999_i32,
            "score": 2.5, "asset": oid, "none": null, "ok": true,
        });
        assert_eq!(
            v,
            json!({"title_id": 7, "title": "X", "updated_at": "1970-01-01T00:00:00Z",
                   "genres": ["a"], "year": 1999, "score": 2.5,
                   "asset": "65f000000000000000000001", "none": null, "ok": true})
        );
        assert_eq!(doc_json(doc! {"_id": 1, "a": 2}, ""), json!({"a": 2}));
    }
}
