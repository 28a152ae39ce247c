//! MongoDB: database, collection names and indexes.

use std::time::Duration;

use mongodb::bson::doc;
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Database, IndexModel};

/// `{_id: title_id (i64), title, description, kind, year, directors, cast,
/// genres, categories, seasons, assets: [{asset_id, kind, filename,
/// content_type, length}], updated_at}`.
pub const TITLES: &str = "titles";
/// `{_id: "{title_id}:{related_title_id}:{relation}", title_id, related_title_id, relation, created_at}`.
pub const TITLE_RELATIONS: &str = "title_relations";
/// GridFS bucket for posters and trailers (`assets.files`, `assets.chunks`).
pub const ASSETS_BUCKET: &str = "assets";
/// `{_id: view_id (uuid string), user_id, title_id, title, kind, seconds_watched,
/// position_pct, completed, watched_at}`.
pub const VIEWS: &str = "views";
/// `{_id: "user:{user_id}", user_id, total, items}`: a user's latest views
/// in one document, `items` the JSON text of the newest 20 as clients see
/// them (`views::Head`).
pub const VIEW_HISTORY: &str = "view_history";
/// `{_id: "{user_id}:{title_id}", user_id, title_id, stars, rated_at}`: one per user and title.
pub const RATINGS: &str = "ratings";
/// `{_id: user_id, generated_at, items: [{title_id, title, score, reasons}]}`.
pub const RECOMMENDATIONS: &str = "recommendations";

/// The database named in the URI's path, or `polystream`.
pub async fn connect(uri: &str) -> Result<Database, mongodb::error::Error> {
    let mut opts = ClientOptions::parse(uri).await?;
    opts.server_selection_timeout = Some(Duration::from_secs(5));
    opts.connect_timeout = Some(Duration::from_secs(5));
    let name = opts
        .default_database
        .clone()
        .unwrap_or_else(|| "polystream".into());
    Ok(Client::with_options(opts)?.database(&name))
}

/// Creates the indexes the queries rely on, and the collections without
/// one (read by `_id`, or GridFS's, indexed by the driver on first upload),
/// so that every collection exists from the start for the tools that work
/// on the server side (`./dev up`'s indexes and copy; idempotent).
pub async fn ensure_indexes(db: &Database) -> Result<(), mongodb::error::Error> {
    let existing = db.list_collection_names().await?;
    let gridfs = [
        format!("{ASSETS_BUCKET}.files"),
        format!("{ASSETS_BUCKET}.chunks"),
    ];
    let by_id = [VIEW_HISTORY, RECOMMENDATIONS, &gridfs[0], &gridfs[1]];
    for name in by_id {
        if !existing.iter().any(|c| c == name) {
            match db.create_collection(name).await {
                // Another service created it first.
                Err(e) if crate::fault::mongo_is_namespace_exists(&e) => {}
                other => other?,
            }
        }
    }
    let index = |keys, unique: bool| {
        IndexModel::builder()
            .keys(keys)
            .options(IndexOptions::builder().unique(unique).build())
            .build()
    };
    db.collection::<mongodb::bson::Document>(TITLE_RELATIONS)
        .create_index(index(doc! {"title_id": 1}, false))
        .await?;
    db.collection::<mongodb::bson::Document>(VIEWS)
        .create_index(index(doc! {"user_id": 1, "watched_at": -1}, false))
        .await?;
    db.collection::<mongodb::bson::Document>(VIEWS)
        .create_index(index(doc! {"title_id": 1}, false))
        .await?;
    db.collection::<mongodb::bson::Document>(RATINGS)
        .create_index(index(doc! {"title_id": 1}, false))
        .await?;
    db.collection::<mongodb::bson::Document>(RATINGS)
        .create_index(index(doc! {"user_id": 1}, false))
        .await?;
    db.collection::<mongodb::bson::Document>(TITLES)
        .create_index(index(doc! {"genres": 1, "year": -1}, false))
        .await?;
    Ok(())
}
