//! Catalog and activity: titles, relations and assets (MongoDB, GridFS),
//! views, ratings, recommendations (MongoDB), rankings and counters (Redis).
//! Catalog reads are public; catalog writes need an administrator.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use mongodb::bson::oid::ObjectId;
use polystream_common::events::{
    AssetAttached, AssetKind, Command, RecommendationsRequested, Relation, Season, TitleDeleted,
    TitleKind, TitleRated, TitleUpserted, TitlesRelated, ViewRecorded,
};
use polystream_common::problem::Problem;
use polystream_stores::{
    assets, cache, counters, ids, keys, rankings, recommendations, relations, render, titles, views,
};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{TitlePath, UserPath};
use crate::auth::Caller;
use crate::command::{Accepted, V1_STATUS, submit};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ValidJson, ValidPath, ValidQuery, positive};
use crate::routes::accounts::limit;
use crate::state::{AppState, State as S};

/// The catalog and activity routes; each handler's `#[utoipa::path]` gives
/// its method and path, so the router and the OpenAPI document are one list.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_title, list_titles))
        .routes(routes!(get_title, put_title, delete_title))
        .routes(routes!(post_relation, list_relations))
        .routes(routes!(post_asset))
        .routes(routes!(get_asset))
        .routes(routes!(post_view, list_views))
        .routes(routes!(put_rating))
        .routes(routes!(post_recommendations, get_recommendations))
        .routes(routes!(get_ranking))
        .routes(routes!(get_counters))
}

/// BSON to the JSON clients see (one renderer for S1 and S2's cache).
pub use polystream_stores::render::{doc_json, to_json};

const TITLE_FIELDS: &[(&str, &str)] = &[("title_id", "path.id")];

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TitleBody {
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// movie, series or documentary.
    #[schema(value_type = String, example = "movie")]
    pub kind: TitleKind,
    pub year: i32,
    #[serde(default)]
    pub directors: Vec<String>,
    #[serde(default)]
    pub cast: Vec<String>,
    #[serde(default)]
    pub genres: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    /// Series only: `[{number, episodes}]`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub seasons: Vec<Season>,
}

fn title_command(title_id: i64, b: TitleBody) -> Command {
    Command::TitleUpserted(TitleUpserted {
        title_id,
        title: b.title,
        description: b.description,
        kind: b.kind,
        year: b.year,
        directors: b.directors,
        cast: b.cast,
        genres: b.genres,
        categories: b.categories,
        seasons: b.seasons,
    })
}

/// Add a title (admin); S1 allocates its id.
#[utoipa::path(post, path = "/v1/titles", tag = "catalog", request_body = TitleBody, security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn post_title(
    State(state): State<AppState>,
    caller: Caller,
    ValidJson(b): ValidJson<TitleBody>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let id = ids::next_title_id(&state.redis).await?;
    let a = submit(&state, title_command(id, b), TITLE_FIELDS, V1_STATUS).await?;
    Ok(a.into_202())
}

/// Replace a title (admin).
#[utoipa::path(put, path = "/v1/titles/{id}", tag = "catalog", params(TitlePath), request_body = TitleBody, security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn put_title(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<TitlePath>,
    ValidJson(b): ValidJson<TitleBody>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let id = positive("path.id", p.id)?;
    let a = submit(&state, title_command(id, b), TITLE_FIELDS, V1_STATUS).await?;
    Ok(a.into_202())
}

/// Delete a title (admin).
#[utoipa::path(delete, path = "/v1/titles/{id}", tag = "catalog", params(TitlePath), security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn delete_title(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<TitlePath>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let id = positive("path.id", p.id)?;
    let c = Command::TitleDeleted(TitleDeleted { title_id: id });
    Ok(submit(&state, c, TITLE_FIELDS, V1_STATUS).await?.into_202())
}

/// Cache-aside read of one title; `(json, hit)`. The title is rendered and
/// cached by the same functions S2 uses to warm the cache.
pub async fn cached_title(state: &S, id: i64) -> ApiResult<Option<(Value, bool)>> {
    if let Some(v) = cache::get_title(&state.redis, id).await? {
        state.metrics.title_cache(true);
        cache::count_result(&state.redis, true).await?;
        return Ok(Some((v, true)));
    }
    state.metrics.title_cache(false);
    cache::count_result(&state.redis, false).await?;
    let Some(d) = titles::get(&state.mongo, id).await? else {
        return Ok(None);
    };
    let v = render::title_json(d);
    cache::put_title(&state.redis, id, &v, state.config.title_cache_ttl).await?;
    Ok(Some((v, false)))
}

/// One title (public; served from the Redis cache when warm, `X-Cache: hit|miss`).
#[utoipa::path(get, path = "/v1/titles/{id}", tag = "catalog", params(TitlePath),
    responses((status = 200, body = Object), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn get_title(
    State(state): State<AppState>,
    ValidPath(p): ValidPath<TitlePath>,
) -> ApiResult<Response> {
    let id = positive("path.id", p.id)?;
    let (v, hit) = cached_title(&state, id)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("title {id}")))?;
    let mut res = Json(v).into_response();
    res.headers_mut().insert(
        "x-cache",
        HeaderValue::from_static(if hit { "hit" } else { "miss" }),
    );
    Ok(res)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TitlesQuery {
    pub genre: Option<String>,
    /// movie, series or documentary.
    #[param(inline)]
    pub kind: Option<TitleKind>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// Browse the catalog (public).
#[utoipa::path(get, path = "/v1/titles", tag = "catalog", params(TitlesQuery),
    responses((status = 200, body = Vec<Object>), (status = 400, body = Problem)))]
pub async fn list_titles(
    State(state): State<AppState>,
    ValidQuery(q): ValidQuery<TitlesQuery>,
) -> ApiResult<Json<Vec<Value>>> {
    let limit = limit("query.limit", q.limit)?;
    let filter = titles::TitleFilter {
        genre: q.genre,
        kind: q.kind.map(|k| json_str(&k)),
    };
    Ok(Json(titles::list(&state.mongo, &filter, limit).await?))
}

/// A serde enum's wire name.
fn json_str<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelationBody {
    pub related_title_id: i64,
    /// similar, sequel, prequel or same_collection.
    #[schema(value_type = String, example = "similar")]
    pub relation: Relation,
}

/// Relate two titles (admin).
#[utoipa::path(post, path = "/v1/titles/{id}/relations", tag = "catalog", params(TitlePath), request_body = RelationBody, security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn post_relation(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<TitlePath>,
    ValidJson(b): ValidJson<RelationBody>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let id = positive("path.id", p.id)?;
    let c = Command::TitlesRelated(TitlesRelated {
        title_id: id,
        related_title_id: b.related_title_id,
        relation: b.relation,
    });
    Ok(submit(&state, c, TITLE_FIELDS, V1_STATUS).await?.into_202())
}

/// A title's relations (public).
#[utoipa::path(get, path = "/v1/titles/{id}/relations", tag = "catalog", params(TitlePath),
    responses((status = 200, body = Vec<Object>), (status = 400, body = Problem)))]
pub async fn list_relations(
    State(state): State<AppState>,
    ValidPath(p): ValidPath<TitlePath>,
) -> ApiResult<Json<Vec<Value>>> {
    let id = positive("path.id", p.id)?;
    Ok(Json(relations::of_title(&state.mongo, id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AssetQuery {
    /// poster or trailer.
    #[param(inline)]
    pub kind: AssetKind,
    /// Default `{kind}-{title_id}`.
    pub filename: Option<String>,
}

/// Upload a poster or trailer (admin): the raw body, with its Content-Type, is
/// streamed into GridFS; the event carries only the reference (claim check).
#[utoipa::path(post, path = "/v1/titles/{id}/assets", tag = "catalog", params(TitlePath, AssetQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file's bytes; send its real Content-Type"),
    security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 413, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn post_asset(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<TitlePath>,
    ValidQuery(q): ValidQuery<AssetQuery>,
    req: Request,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let id = positive("path.id", p.id)?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| ApiError::field("header.content-type", "send the file's media type"))?;
    // Stored with the blob before the command is validated, so checked here.
    polystream_common::events::check_text(
        &content_type,
        polystream_common::events::Text::SingleLine,
    )
    .map_err(|r| ApiError::field("header.content-type", r))?;
    if titles::get(&state.mongo, id).await?.is_none() {
        return Err(ApiError::not_found(&format!("title {id}")));
    }
    let kind = json_str(&q.kind);
    let filename = q.filename.unwrap_or_else(|| format!("{kind}-{id}"));
    let new = assets::NewAsset {
        title_id: id,
        kind: &kind,
        filename: &filename,
        content_type: &content_type,
    };
    let body = req.into_body().into_data_stream();
    let max = state.config.max_asset_bytes;
    let (oid, length) = match assets::upload(&state.mongo, new, body, max).await? {
        Ok(stored) => stored,
        Err(assets::Refused::Unreadable(e)) => {
            return Err(ApiError::field(
                "body",
                format!("could not read the upload: {e}"),
            ));
        }
        Err(assets::Refused::TooLarge { max }) => {
            return Err(ApiError::status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
                format!("assets are limited to {max} bytes"),
            ));
        }
        Err(assets::Refused::Empty) => return Err(ApiError::field("body", "the file is empty")),
    };
    let c = Command::AssetAttached(AssetAttached {
        title_id: id,
        asset_id: oid.to_hex(),
        kind: q.kind,
        filename,
        content_type,
        length,
    });
    let fields = [
        ("title_id", "path.id"),
        ("filename", "query.filename"),
        ("content_type", "header.content-type"),
    ];
    match submit(&state, c, &fields, V1_STATUS).await {
        Ok(a) => Ok(a.into_202()),
        Err(e) => {
            // Nothing refers to the blob: do not leave it behind.
            let _ = assets::delete(&state.mongo, oid).await;
            Err(e)
        }
    }
}

/// What a `Range` header asks of a `len`-byte file.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    Full,
    /// Inclusive byte offsets.
    Partial(u64, u64),
    Unsatisfiable,
}

/// RFC 9110 §14: a single `bytes=` range; anything we do not understand
/// (other units, several ranges, bad syntax) is ignored and the whole file sent.
pub fn parse_range(value: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (None, Some(n)) if a.is_empty() => {
            if n == 0 || len == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial(len.saturating_sub(n), len - 1)
            }
        }
        (Some(start), None) if b.is_empty() => {
            if start >= len {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial(start, len - 1)
            }
        }
        (Some(start), Some(end)) if start <= end => {
            if start >= len {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial(start, end.min(len - 1))
            }
        }
        _ => RangeRequest::Full,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AssetPath {
    /// Title id.
    #[param(minimum = 1)]
    pub id: i64,
    /// 24 hex digits.
    #[param(pattern = "^[0-9a-fA-F]{24}$")]
    pub asset_id: String,
}

/// Download an asset, with `Range` support (206/416) so trailers can be seeked.
#[utoipa::path(get, path = "/v1/titles/{id}/assets/{asset_id}", tag = "catalog", params(AssetPath,
        ("Range" = Option<String>, Header, description = "e.g. bytes=0-1023")),
    responses((status = 200, description = "the whole file"), (status = 206, description = "the requested range"),
              (status = 400, body = Problem), (status = 404, body = Problem), (status = 416, body = Problem)))]
pub async fn get_asset(
    State(state): State<AppState>,
    ValidPath(p): ValidPath<AssetPath>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = positive("path.id", p.id)?;
    let oid = ObjectId::parse_str(&p.asset_id)
        .map_err(|_| ApiError::field("path.asset_id", "must be 24 hex digits"))?;
    let file = assets::find(&state.mongo, id, oid)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("asset {} of title {id}", p.asset_id)))?;
    let len = file.length;
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    );
    let (status, start, end) = match range {
        RangeRequest::Unsatisfiable => {
            let mut res = ApiError::status(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range-not-satisfiable",
                "Range not satisfiable",
                format!("the file has {len} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                res.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(res);
        }
        RangeRequest::Full => (StatusCode::OK, 0, len.saturating_sub(1)),
        RangeRequest::Partial(s, e) => (StatusCode::PARTIAL_CONTENT, s, e),
    };
    let body_len = if len == 0 { 0 } else { end - start + 1 };
    // The span covers opening the cursor; the chunks stream with the body.
    let cursor = assets::chunks(&state.mongo, oid, &file, start, end).await?;
    // Only the chunks that overlap the range are read, each trimmed to it.
    let chunk_size = file.chunk_size;
    let stream = cursor.map(move |d| {
        let d = d.map_err(std::io::Error::other)?;
        assets::chunk_part(&d, chunk_size, start, end)
            .map(Bytes::from)
            .ok_or_else(|| std::io::Error::other("chunk without data"))
    });
    let disposition = asset_disposition(&file.content_type, &file.filename);
    let content_type = file.content_type;
    let mut res = Response::new(Body::from_stream(stream));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Uploads are served from the API's origin: never let a browser sniff
    // or run one (an SVG or HTML poster would otherwise script this origin).
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(res)
}

/// `Content-Disposition` for a stored asset: `inline` only for media a
/// browser merely displays (raster images, audio, video); everything else —
/// HTML, SVG, XML, scripts, PDFs, unknown types — downloads as an attachment.
/// The file name is reduced to safe ASCII.
pub fn asset_disposition(content_type: &str, filename: &str) -> String {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let passive = matches!(
        essence.as_str(),
        "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/avif"
    ) || essence.starts_with("video/")
        || essence.starts_with("audio/");
    let name: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let name = if name.trim_matches(['.', '_']).is_empty() {
        "asset".to_owned()
    } else {
        name
    };
    let kind = if passive { "inline" } else { "attachment" };
    format!("{kind}; filename=\"{name}\"")
}

fn own(caller: &Caller, id: i64) -> ApiResult<i64> {
    let id = positive("path.id", id)?;
    caller.may_access(id)?;
    Ok(id)
}

const USER_FIELDS: &[(&str, &str)] = &[("user_id", "path.id")];

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewBody {
    pub title_id: i64,
    pub seconds_watched: u32,
    /// 0–100.
    pub position_pct: f64,
    /// Default: position_pct ≥ 90.
    pub completed: Option<bool>,
    /// Default now.
    pub watched_at: Option<DateTime<Utc>>,
}

pub fn view_command(user_id: i64, view_id: Uuid, b: ViewBody) -> Command {
    Command::ViewRecorded(ViewRecorded {
        view_id,
        user_id,
        title_id: b.title_id,
        seconds_watched: b.seconds_watched,
        position_pct: b.position_pct,
        completed: b.completed.unwrap_or(b.position_pct >= 90.0),
        watched_at: b.watched_at.unwrap_or_else(Utc::now),
    })
}

/// Record a viewing session.
#[utoipa::path(post, path = "/v1/users/{id}/views", tag = "activity", params(UserPath), request_body = ViewBody, security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn post_view(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<UserPath>,
    ValidJson(b): ValidJson<ViewBody>,
) -> ApiResult<Response> {
    let id = own(&caller, p.id)?;
    let view_id = Uuid::now_v7();
    let a = submit(&state, view_command(id, view_id, b), USER_FIELDS, V1_STATUS).await?;
    Ok(a.into_202())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ViewsQuery {
    /// movie, series or documentary.
    #[param(inline)]
    pub kind: Option<TitleKind>,
    pub completed: Option<bool>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

pub async fn views(state: &S, user_id: i64, q: ViewsQuery) -> ApiResult<Vec<Value>> {
    let limit = limit("query.limit", q.limit)?;
    let filter = views::ViewFilter {
        kind: q.kind.map(|k| json_str(&k)),
        completed: q.completed,
    };
    Ok(views::for_user(&state.mongo, user_id, &filter, limit).await?)
}

/// A user's watch history, newest first.
#[utoipa::path(get, path = "/v1/users/{id}/views", tag = "activity", params(UserPath, ViewsQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<Object>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_views(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<UserPath>,
    ValidQuery(q): ValidQuery<ViewsQuery>,
) -> ApiResult<Json<Vec<Value>>> {
    let id = own(&caller, p.id)?;
    views(&state, id, q).await.map(Json)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RatingPath {
    /// User id.
    #[param(minimum = 1)]
    pub id: i64,
    /// Title id.
    #[param(minimum = 1)]
    pub title_id: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RatingBody {
    /// 1–5.
    pub stars: u8,
}

/// Rate a title 1–5 (a later rating replaces the earlier).
#[utoipa::path(put, path = "/v1/users/{id}/ratings/{title_id}", tag = "activity", params(RatingPath), request_body = RatingBody, security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn put_rating(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<RatingPath>,
    ValidJson(b): ValidJson<RatingBody>,
) -> ApiResult<Response> {
    let id = own(&caller, p.id)?;
    let title_id = positive("path.title_id", p.title_id)?;
    let c = Command::TitleRated(TitleRated {
        user_id: id,
        title_id,
        stars: b.stars,
    });
    let fields = [("user_id", "path.id"), ("title_id", "path.title_id")];
    Ok(submit(&state, c, &fields, V1_STATUS).await?.into_202())
}

/// Regenerate a user's recommendations.
#[utoipa::path(post, path = "/v1/users/{id}/recommendations", tag = "activity", params(UserPath), security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn post_recommendations(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<UserPath>,
) -> ApiResult<Response> {
    let id = own(&caller, p.id)?;
    let c = Command::RecommendationsRequested(RecommendationsRequested { user_id: id });
    Ok(submit(&state, c, USER_FIELDS, V1_STATUS).await?.into_202())
}

pub async fn recommendations(state: &S, user_id: i64) -> ApiResult<Value> {
    recommendations::for_user(&state.mongo, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("recommendations for user {user_id}")))
}

/// A user's latest recommendations.
#[utoipa::path(get, path = "/v1/users/{id}/recommendations", tag = "activity", params(UserPath), security(("bearer" = [])),
    responses((status = 200, body = Object), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_recommendations(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<UserPath>,
) -> ApiResult<Json<Value>> {
    let id = own(&caller, p.id)?;
    recommendations(&state, id).await.map(Json)
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RankingKind {
    MostWatched,
    TopRated,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RankingPath {
    /// most-watched or top-rated.
    #[param(inline)]
    pub kind: RankingKind,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RankingQuery {
    /// day, week or all (default).
    #[param(pattern = "^(day|week|all)$")]
    pub window: Option<String>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// Most watched or top rated titles for the current day, week, or all time (public).
#[utoipa::path(get, path = "/v1/rankings/{kind}", tag = "activity", params(RankingPath, RankingQuery),
    responses((status = 200, body = Object), (status = 400, body = Problem)))]
pub async fn get_ranking(
    State(state): State<AppState>,
    ValidPath(p): ValidPath<RankingPath>,
    ValidQuery(q): ValidQuery<RankingQuery>,
) -> ApiResult<Json<Value>> {
    let limit = limit("query.limit", q.limit)?;
    let window_name = q.window.unwrap_or_else(|| "all".into());
    let window = keys::Window::parse(&window_name)
        .ok_or_else(|| ApiError::field("query.window", "must be day, week or all"))?;
    let now = Utc::now();
    let board = match p.kind {
        RankingKind::MostWatched => rankings::Board::MostWatched,
        RankingKind::TopRated => rankings::Board::TopRated,
    };
    let items: Vec<Value> = rankings::top(&state.redis, board, window, now, limit)
        .await?
        .into_iter()
        .map(|r| json!({"title_id": r.title_id, "score": r.score}))
        .collect();
    Ok(Json(
        json!({"window": window_name, "bucket": window.bucket(now), "items": items}),
    ))
}

/// Platform counters (admin).
#[utoipa::path(get, path = "/v1/stats/counters", tag = "activity", security(("bearer" = [])),
    responses((status = 200, body = Object), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn get_counters(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let c = counters::get(&state.redis).await?;
    Ok(Json(
        json!({"cache_hits": c.hits, "cache_misses": c.misses}),
    ))
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    #[test]
    fn only_passive_media_are_shown_inline_and_names_are_safe() {
        assert_eq!(
            asset_disposition("image/png", "poster.png"),
            "inline; filename=\"poster.png\""
        );
        assert_eq!(
            asset_disposition("video/mp4; codecs=avc1", "trailer.mp4"),
            "inline; filename=\"trailer.mp4\""
        );
        for active in [
            "text/html",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/javascript",
            "application/pdf",
            "application/octet-stream",
            "IMAGE/SVG+XML; charset=utf-8",
        ] {
            assert!(
                asset_disposition(active, "x").starts_with("attachment;"),
                "{active}"
            );
        }
        assert_eq!(
            asset_disposition("image/png", "a\"b\r\nSet-Cookie: x.png"),
            "inline; filename=\"a_b__Set-Cookie__x.png\""
        );
        assert_eq!(
            asset_disposition("image/png", ".."),
            "inline; filename=\"asset\""
        );
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Partial(0, 9));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Partial(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Partial(90, 99));
        assert_eq!(parse_range(Some("bytes=-500"), 100), Partial(0, 99));
        assert_eq!(parse_range(Some("bytes=50-500"), 100), Partial(50, 99));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=9-1"), 100), Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), Full);
        assert_eq!(parse_range(Some("bytes=x-1"), 100), Full);
    }

    #[test]
    fn bson_becomes_plain_json() {
        let d =
            doc! {"_id": 7_i64, "year": 1999_i32, "at": mongodb::bson::DateTime::from_millis(0)};
        let v = doc_json(d, "title_id");
        assert_eq!(v["title_id"], 7);
        assert_eq!(v["year"], 1999);
        assert_eq!(v["at"], "1970-01-01T00:00:00Z");
    }
}
