use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, TryStreamExt};
use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, IndexModel};
use polystream_smoke_tests::{endpoints, unique, unreachable};

async fn connect() -> Client {
    let uri = endpoints().mongodb_uri;
    let mut opts = ClientOptions::parse(&uri)
        .await
        .unwrap_or_else(|e| unreachable("MongoDB-wire server", "ferretdb", &uri, e));
    opts.server_selection_timeout = Some(Duration::from_secs(5));
    opts.app_name = Some("polystream-smoke".into());
    let client = Client::with_options(opts).unwrap();
    if let Err(e) = client.database("admin").run_command(doc! {"ping": 1}).await {
        unreachable("MongoDB-wire server", "ferretdb", &uri, e);
    }
    client
}

#[tokio::test]
async fn mongodb_insert_find_and_unique_index() {
    let client = connect().await;
    let db = client.database(&unique("smoke").replace('-', "_"));
    let titles = db.collection::<Document>("titles");

    titles
        .create_index(
            IndexModel::builder()
                .keys(doc! {"slug": 1})
                .options(IndexOptions::builder().unique(true).build())
                .build(),
        )
        .await
        .unwrap();
    titles
        .create_index(
            IndexModel::builder()
                .keys(doc! {"genres": 1, "year": -1})
                .build(),
        )
        .await
        .unwrap();

    titles
        .insert_many([
            doc! {"slug": "matrix", "title": "The Matrix", "genres": ["sci-fi"], "year": 1999},
            doc! {"slug": "dark", "title": "Dark", "genres": ["sci-fi", "drama"], "year": 2017, "seasons": [{"number": 1, "episodes": 10}]},
        ])
        .await
        .unwrap();
    let dup = titles
        .insert_one(doc! {"slug": "matrix", "title": "copy"})
        .await
        .expect_err("the unique index must reject a duplicate slug");
    assert!(dup.to_string().contains("E11000"), "{dup}");

    let found: Vec<Document> = titles
        .find(doc! {"genres": "sci-fi", "year": {"$gte": 2000}})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].get_str("slug").unwrap(), "dark");

    let updated = titles
        .update_one(
            doc! {"slug": "dark"},
            doc! {"$set": {"rating": 4.5}, "$inc": {"views": 1}},
        )
        .upsert(true)
        .await
        .unwrap();
    assert_eq!(updated.modified_count, 1);
    db.drop().await.unwrap();
}

#[tokio::test]
async fn mongodb_gridfs_chunks_round_trip() {
    let client = connect().await;
    let db = client.database(&unique("smoke").replace('-', "_"));
    let bucket = db.gridfs_bucket(
        mongodb::options::GridFsBucketOptions::builder()
            .chunk_size_bytes(64 * 1024)
            .build(),
    );

    let blob: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut upload = bucket.open_upload_stream("trailer.mp4").await.unwrap();
    upload.write_all(&blob).await.unwrap();
    upload.close().await.unwrap();
    let id = upload.id().clone();

    let chunks = db
        .collection::<Document>("fs.chunks")
        .count_documents(doc! {"files_id": &id})
        .await
        .unwrap();
    assert_eq!(chunks, 300_000u64.div_ceil(64 * 1024));

    let mut back = Vec::new();
    bucket
        .open_download_stream(id)
        .await
        .unwrap()
        .read_to_end(&mut back)
        .await
        .unwrap();
    assert_eq!(back.len(), blob.len());
    assert!(back == blob, "downloaded bytes differ from the upload");
    db.drop().await.unwrap();
}
