//! Posters and trailers in GridFS (bucket [`crate::mongo::ASSETS_BUCKET`]):
//! S1 streams uploads into it and serves byte ranges out of it; S2 checks a
//! blob exists before attaching it to a title.

use mongodb::bson::{Bson, Document, doc, oid::ObjectId};
use mongodb::gridfs::GridFsBucket;
use mongodb::options::GridFsBucketOptions;
use mongodb::{Cursor, Database};
use polystream_common::instrument::{Store, store_op};

use crate::fault::{Fault, mongo_fault};
use crate::mongo;

/// The assets bucket (uploads go through its streams).
pub fn bucket(db: &Database) -> GridFsBucket {
    db.gridfs_bucket(
        GridFsBucketOptions::builder()
            .bucket_name(mongo::ASSETS_BUCKET.to_owned())
            .build(),
    )
}

fn files(db: &Database) -> mongodb::Collection<Document> {
    db.collection(&format!("{}.files", mongo::ASSETS_BUCKET))
}

/// What serving a stored file needs from its `files` document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetFile {
    pub length: u64,
    /// Bytes per chunk (at least 1).
    pub chunk_size: u64,
    /// Recorded at upload; `application/octet-stream` when missing.
    pub content_type: String,
    /// The name given at upload (GridFS `filename`); empty when missing.
    pub filename: String,
}

impl AssetFile {
    /// From a GridFS `files` document; pure, so it is unit tested.
    pub fn from_doc(d: &Document) -> Self {
        Self {
            length: number(d, "length"),
            chunk_size: number(d, "chunkSize").max(1),
            content_type: d
                .get_document("metadata")
                .ok()
                .and_then(|m| m.get_str("content_type").ok())
                .unwrap_or("application/octet-stream")
                .to_owned(),
            filename: d.get_str("filename").unwrap_or_default().to_owned(),
        }
    }
}

fn number(d: &Document, key: &str) -> u64 {
    match d.get(key) {
        Some(Bson::Int32(i)) => *i as u64,
        Some(Bson::Int64(i)) => *i as u64,
        Some(Bson::Double(f)) => *f as u64,
        _ => 0,
    }
}

/// Why an upload was refused: the client's doing, not the store's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The request body broke off or could not be read.
    Unreadable(String),
    /// More than the allowed bytes.
    TooLarge {
        max: u64,
    },
    Empty,
}

/// What an upload describes its blob with (GridFS `metadata`).
#[derive(Debug, Clone, Copy)]
pub struct NewAsset<'a> {
    pub title_id: i64,
    /// The wire name of its kind: `poster` or `trailer`.
    pub kind: &'a str,
    pub filename: &'a str,
    pub content_type: &'a str,
}

/// Streams `body` into a new GridFS file of at most `max` bytes; its id and
/// length. A refused upload (inner `Err`) or a failed one leaves no blob
/// behind. One span for the whole upload (a span per chunk would swamp the
/// trace); its duration includes the client's sending. Writing that fails
/// midway is an outage (transient): the bytes were fine.
pub async fn upload<S, B, E>(
    db: &Database,
    asset: NewAsset<'_>,
    body: S,
    max: u64,
) -> Result<Result<(ObjectId, u64), Refused>, Fault>
where
    S: futures::Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    use futures::{AsyncWriteExt, StreamExt};
    let mut up = store_op(
        Store::Mongodb,
        "gridfs_open_upload",
        bucket(db)
            .open_upload_stream(asset.filename)
            .metadata(doc! {
                "title_id": asset.title_id, "kind": asset.kind, "content_type": asset.content_type,
            }),
    )
    .await
    .map_err(mongo_fault)?;
    let mut body = std::pin::pin!(body);
    let uploaded = store_op(Store::Mongodb, "gridfs_upload", async {
        let mut length: u64 = 0;
        while let Some(chunk) = body.next().await {
            let c = match chunk {
                Ok(c) => c,
                Err(e) => return Ok(Err(Refused::Unreadable(e.to_string()))),
            };
            length += c.as_ref().len() as u64;
            if length > max {
                return Ok(Err(Refused::TooLarge { max }));
            }
            up.write_all(c.as_ref()).await?;
        }
        if length == 0 {
            return Ok(Err(Refused::Empty));
        }
        up.close().await?;
        Ok::<_, std::io::Error>(Ok(length))
    })
    .await;
    let length = match uploaded {
        Ok(Ok(length)) => length,
        Ok(Err(refused)) => {
            let _ = store_op(Store::Mongodb, "gridfs_abort", up.abort()).await;
            return Ok(Err(refused));
        }
        Err(e) => {
            let _ = store_op(Store::Mongodb, "gridfs_abort", up.abort()).await;
            return Err(Fault::transient("mongodb", e.to_string()));
        }
    };
    let oid = up
        .id()
        .as_object_id()
        .ok_or_else(|| Fault::permanent("mongodb", "GridFS gave the upload a non-ObjectId id"))?;
    Ok(Ok((oid, length)))
}

/// Deletes a stored file and its chunks (nothing refers to it).
pub async fn delete(db: &Database, asset_id: ObjectId) -> Result<(), Fault> {
    store_op(
        Store::Mongodb,
        "gridfs_delete",
        bucket(db).delete(Bson::ObjectId(asset_id)),
    )
    .await
    .map_err(mongo_fault)
}

/// The file `asset_id` if it belongs to `title_id`.
pub async fn find(
    db: &Database,
    title_id: i64,
    asset_id: ObjectId,
) -> Result<Option<AssetFile>, Fault> {
    let d = store_op(
        Store::Mongodb,
        "find_asset",
        files(db).find_one(doc! {"_id": asset_id, "metadata.title_id": title_id}),
    )
    .await
    .map_err(mongo_fault)?;
    Ok(d.as_ref().map(AssetFile::from_doc))
}

/// Whether the blob exists at all (whichever title it was uploaded for).
pub async fn exists(db: &Database, asset_id: ObjectId) -> Result<bool, Fault> {
    let d = store_op(
        Store::Mongodb,
        "find_asset_file",
        files(db).find_one(doc! {"_id": asset_id}),
    )
    .await
    .map_err(mongo_fault)?;
    Ok(d.is_some())
}

/// The chunks holding bytes `start..=end` of a file in order; the span covers
/// opening the cursor, the chunks stream with the response.
pub async fn chunks(
    db: &Database,
    asset_id: ObjectId,
    file: &AssetFile,
    start: u64,
    end: u64,
) -> Result<Cursor<Document>, Fault> {
    let (first, last) = (start / file.chunk_size, end / file.chunk_size);
    store_op(
        Store::Mongodb,
        "find_asset_chunks",
        db.collection::<Document>(&format!("{}.chunks", mongo::ASSETS_BUCKET))
            .find(doc! {"files_id": asset_id, "n": {"$gte": first as i64, "$lte": last as i64}})
            .sort(doc! {"n": 1}),
    )
    .await
    .map_err(mongo_fault)
}

/// The part of chunk document `d` inside bytes `start..=end` of the file;
/// pure, so it is unit tested. `None` for a chunk without data.
pub fn chunk_part(d: &Document, chunk_size: u64, start: u64, end: u64) -> Option<Vec<u8>> {
    let n = number(d, "n");
    let Some(Bson::Binary(b)) = d.get("data") else {
        return None;
    };
    let first = n * chunk_size;
    let to = ((end + 1).saturating_sub(first) as usize).min(b.bytes.len());
    let from = (start.saturating_sub(first) as usize).min(to);
    Some(b.bytes[from..to].to_vec())
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{Binary, spec::BinarySubtype};

    use super::*;

    fn chunk(n: i32, bytes: &[u8]) -> Document {
        let data = Binary {
            subtype: BinarySubtype::Generic,
            bytes: bytes.to_vec(),
        };
        doc! {"n": n, "data": data}
    }

    #[test]
    fn file_documents_map_with_defaults() {
        let f = AssetFile::from_doc(&doc! {
            "length": 10_i64, "chunkSize": 4_i32, "filename": "poster.png",
            "metadata": {"content_type": "image/png"},
        });
        assert_eq!(
            f,
            AssetFile {
                length: 10,
                chunk_size: 4,
                content_type: "image/png".into(),
                filename: "poster.png".into(),
            }
        );
        let bare = AssetFile::from_doc(&doc! {});
        assert_eq!(
            (bare.length, bare.chunk_size, bare.content_type.as_str()),
            (0, 1, "application/octet-stream")
        );
    }

    #[test]
    fn chunks_are_trimmed_to_the_range() {
        // File "abcdefghij" in chunks of 4: "abcd", "efgh", "ij".
        assert_eq!(
            chunk_part(&chunk(0, b"abcd"), 4, 2, 5),
            Some(b"cd".to_vec())
        );
        assert_eq!(
            chunk_part(&chunk(1, b"efgh"), 4, 2, 5),
            Some(b"ef".to_vec())
        );
        assert_eq!(chunk_part(&chunk(2, b"ij"), 4, 0, 9), Some(b"ij".to_vec()));
        assert_eq!(chunk_part(&chunk(1, b"efgh"), 4, 5, 5), Some(b"f".to_vec()));
        assert_eq!(chunk_part(&doc! {"n": 0}, 4, 0, 3), None);
    }
}
