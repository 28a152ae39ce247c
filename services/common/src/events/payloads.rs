//! Versioned payloads. A payload's shape never changes under the same type
//! name: a breaking change is a new `.vN` type that consumers learn first.

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::DecodeError;
use super::text::{Text, control_message, forbidden_char};

/// A field that breaks a rule, named by its JSON path (`data.stars`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

fn check(out: &mut Vec<Violation>, ok: bool, field: &str, message: impl Into<String>) {
    if !ok {
        out.push(Violation {
            field: field.into(),
            message: message.into(),
        });
    }
}

fn positive_id(out: &mut Vec<Violation>, field: &str, id: i64) {
    check(out, id > 0, field, "must be a positive integer id");
}

/// At most `max` characters (a bound keeps every value within what the
/// stores index and Kafka carries).
fn at_most(out: &mut Vec<Violation>, field: &str, value: &str, max: usize) {
    check(
        out,
        value.chars().count() <= max,
        field,
        format!("must be at most {max} characters"),
    );
}

/// A list of short names (`genres`, `cast`): bounded count, each bounded.
fn names(out: &mut Vec<Violation>, field: &str, values: &[String]) {
    check(
        out,
        values.len() <= MAX_LIST,
        field,
        format!("must have at most {MAX_LIST} entries"),
    );
    for (i, v) in values.iter().enumerate() {
        text(out, &format!("{field}[{i}]"), v, MAX_NAME);
    }
}

const MAX_LIST: usize = 100;
const MAX_NAME: usize = 200;

fn text(out: &mut Vec<Violation>, field: &str, value: &str, max: usize) {
    let len = value.trim().chars().count();
    check(out, len > 0, field, "must not be empty");
    check(
        out,
        len <= max,
        field,
        format!("must be at most {max} characters"),
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    Basic,
    Standard,
    Premium,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    PastDue,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    CreditCard,
    DebitCard,
    Pix,
    Boleto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Approved,
    Pending,
    Declined,
    Refunded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Theme {
    Light,
    Dark,
    System,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TitleKind {
    Movie,
    Series,
    Documentary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    Similar,
    Sequel,
    Prequel,
    SameCollection,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    Poster,
    Trailer,
}

/// `polystream.user.registered.v1`: a new account. The password arrives
/// already hashed (argon2id, PHC string): clear text never leaves S1.
/// Without `password_hash` the account has no password and cannot log in
/// (the seed's `POST /usuarios` without `senha`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRegistered {
    pub user_id: i64,
    pub name: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Brazilian taxpayer id, 11 digits, optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpf: Option<String>,
    #[serde(default)]
    pub admin: bool,
}

/// `polystream.subscription.changed.v1`: start or change a user's plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionChanged {
    pub user_id: i64,
    pub plan: Plan,
    pub status: SubscriptionStatus,
    pub started_on: NaiveDate,
    pub renews_on: NaiveDate,
}

/// `polystream.payment.recorded.v1`. The id is chosen by the gateway, so a
/// retried request cannot record the payment twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRecorded {
    pub payment_id: Uuid,
    pub user_id: i64,
    /// Smallest currency unit (cents), never a float.
    #[schemars(range(min = 1))]
    pub amount_cents: i64,
    /// ISO 4217, e.g. `BRL`.
    pub currency: String,
    pub method: PaymentMethod,
    pub status: PaymentStatus,
    pub paid_at: DateTime<Utc>,
}

/// `polystream.preferences.updated.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesUpdated {
    pub user_id: i64,
    /// BCP 47 tag, e.g. `pt-BR`.
    pub language: String,
    pub notifications: bool,
    pub theme: Theme,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Season {
    pub number: u32,
    pub episodes: u32,
}

/// `polystream.title.upserted.v1`: create or replace a catalog title.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TitleUpserted {
    pub title_id: i64,
    pub title: String,
    pub description: String,
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
    /// Only for series.
    #[serde(default)]
    pub seasons: Vec<Season>,
}

/// `polystream.title.deleted.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TitleDeleted {
    pub title_id: i64,
}

/// `polystream.title.related.v1`: a directed relation between two titles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TitlesRelated {
    pub title_id: i64,
    pub related_title_id: i64,
    pub relation: Relation,
}

/// `polystream.title.asset_attached.v1`. Claim check: the bytes were stored
/// in GridFS by the gateway; the event carries only the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetAttached {
    pub title_id: i64,
    /// GridFS file id (24 hex digits).
    pub asset_id: String,
    pub kind: AssetKind,
    pub filename: String,
    pub content_type: String,
    pub length: u64,
}

/// `polystream.view.recorded.v1`: one viewing session of a title.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewRecorded {
    pub view_id: Uuid,
    pub user_id: i64,
    pub title_id: i64,
    pub seconds_watched: u32,
    /// Position reached, percent of the title's length (0–100).
    #[schemars(range(min = 0, max = 100))]
    pub position_pct: f64,
    pub completed: bool,
    pub watched_at: DateTime<Utc>,
}

/// `polystream.title.rated.v1`: a user's 1–5 star rating; a later rating
/// replaces the earlier one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TitleRated {
    pub user_id: i64,
    pub title_id: i64,
    #[schemars(range(min = 1, max = 5))]
    pub stars: u8,
}

/// `polystream.recommendations.requested.v1`: regenerate a user's list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecommendationsRequested {
    pub user_id: i64,
}

/// `polystream.title.cache_warm_requested.v1`: load a title into the cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TitleCacheWarmRequested {
    pub title_id: i64,
}

/// `polystream.command.completed.v1` on `response_events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandCompleted {
    /// The `id` of the command event.
    pub command_id: Uuid,
    pub command_type: String,
    /// What the command produced (e.g. the new resource's id), if anything.
    #[serde(default)]
    pub result: serde_json::Value,
}

/// `polystream.command.failed.v1` on `response_events`: a command that broke
/// a business or integrity rule. It is final; retrying it will fail again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandFailed {
    pub command_id: Uuid,
    pub command_type: String,
    /// Stable machine-readable code, e.g. `unknown_user`, `duplicate_email`.
    pub code: super::FailureCode,
    /// Human-readable reason.
    pub reason: String,
}

/// Every command S2 accepts on `user_events`.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    UserRegistered(UserRegistered),
    SubscriptionChanged(SubscriptionChanged),
    PaymentRecorded(PaymentRecorded),
    PreferencesUpdated(PreferencesUpdated),
    TitleUpserted(TitleUpserted),
    TitleDeleted(TitleDeleted),
    TitlesRelated(TitlesRelated),
    AssetAttached(AssetAttached),
    ViewRecorded(ViewRecorded),
    TitleRated(TitleRated),
    RecommendationsRequested(RecommendationsRequested),
    TitleCacheWarmRequested(TitleCacheWarmRequested),
}

/// Every outcome on `response_events`.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Completed(CommandCompleted),
    Failed(CommandFailed),
}

/// Ties each type name to its payload, in one place, for encoding, decoding
/// and schema generation alike.
macro_rules! event_types {
    ($enum:ident { $($variant:ident($payload:ty) = $name:literal,)* }) => {
        impl $enum {
            /// Every `(type, JSON Schema)` of this family, for `docs/events/`.
            pub fn schemas() -> Vec<(&'static str, schemars::Schema)> {
                vec![$(($name, schemars::schema_for!($payload)),)*]
            }

            pub const TYPES: &'static [&'static str] = &[$($name,)*];

            pub fn event_type(&self) -> &'static str {
                match self { $(Self::$variant(_) => $name,)* }
            }

            /// The envelope's `data`.
            pub fn to_data(&self) -> serde_json::Value {
                // Serializing plain structs of strings and numbers cannot fail.
                match self { $(Self::$variant(p) => serde_json::to_value(p).unwrap_or_default(),)* }
            }

            /// The payload for `event_type`, rejecting unknown fields and wrong types.
            pub fn from_data(event_type: &str, data: serde_json::Value) -> Result<Self, DecodeError> {
                match event_type {
                    $($name => serde_json::from_value::<$payload>(data)
                        .map(Self::$variant)
                        .map_err(|e| DecodeError::Data { event_type: event_type.into(), reason: e.to_string() }),)*
                    other => Err(DecodeError::UnknownType(other.into())),
                }
            }
        }
    };
}

event_types!(Command {
    UserRegistered(UserRegistered) = "polystream.user.registered.v1",
    SubscriptionChanged(SubscriptionChanged) = "polystream.subscription.changed.v1",
    PaymentRecorded(PaymentRecorded) = "polystream.payment.recorded.v1",
    PreferencesUpdated(PreferencesUpdated) = "polystream.preferences.updated.v1",
    TitleUpserted(TitleUpserted) = "polystream.title.upserted.v1",
    TitleDeleted(TitleDeleted) = "polystream.title.deleted.v1",
    TitlesRelated(TitlesRelated) = "polystream.title.related.v1",
    AssetAttached(AssetAttached) = "polystream.title.asset_attached.v1",
    ViewRecorded(ViewRecorded) = "polystream.view.recorded.v1",
    TitleRated(TitleRated) = "polystream.title.rated.v1",
    RecommendationsRequested(RecommendationsRequested) = "polystream.recommendations.requested.v1",
    TitleCacheWarmRequested(TitleCacheWarmRequested) = "polystream.title.cache_warm_requested.v1",
});

event_types!(Outcome {
    Completed(CommandCompleted) = "polystream.command.completed.v1",
    Failed(CommandFailed) = "polystream.command.failed.v1",
});

impl Command {
    /// The envelope subject, which is also the Kafka key: everything about one
    /// user (or one title) lands on one partition, in order.
    pub fn subject(&self) -> String {
        match self {
            Self::UserRegistered(p) => user(p.user_id),
            Self::SubscriptionChanged(p) => user(p.user_id),
            Self::PaymentRecorded(p) => user(p.user_id),
            Self::PreferencesUpdated(p) => user(p.user_id),
            Self::ViewRecorded(p) => user(p.user_id),
            Self::TitleRated(p) => user(p.user_id),
            Self::RecommendationsRequested(p) => user(p.user_id),
            Self::TitleUpserted(p) => title(p.title_id),
            Self::TitleDeleted(p) => title(p.title_id),
            Self::TitlesRelated(p) => title(p.title_id),
            Self::AssetAttached(p) => title(p.title_id),
            Self::TitleCacheWarmRequested(p) => title(p.title_id),
        }
    }

    /// Business rules that need no store. The gateway checks them before
    /// publishing; the processor checks them again, since anything can write
    /// to a topic.
    pub fn validate(&self) -> Result<(), Vec<Violation>> {
        let mut v = Vec::new();
        let out = &mut v;
        for (field, value, rule) in self.text_fields() {
            if let Some(c) = forbidden_char(value, rule) {
                out.push(Violation {
                    field,
                    message: control_message(c),
                });
            }
        }
        match self {
            Self::UserRegistered(p) => {
                positive_id(out, "user_id", p.user_id);
                text(out, "name", &p.name, 200);
                check(
                    out,
                    is_email(&p.email),
                    "email",
                    "must be an email address like name@example.com",
                );
                if let Some(hash) = &p.password_hash {
                    check(
                        out,
                        hash.starts_with("$argon2id$"),
                        "password_hash",
                        "must be an argon2id PHC string",
                    );
                    at_most(out, "password_hash", hash, 512);
                }
                if let Some(cpf) = &p.cpf {
                    check(
                        out,
                        is_cpf(cpf),
                        "cpf",
                        "must be 11 digits with valid check digits",
                    );
                }
            }
            Self::SubscriptionChanged(p) => {
                positive_id(out, "user_id", p.user_id);
                check(
                    out,
                    p.renews_on > p.started_on,
                    "renews_on",
                    "must be after started_on",
                );
            }
            Self::PaymentRecorded(p) => {
                positive_id(out, "user_id", p.user_id);
                check(
                    out,
                    p.amount_cents > 0,
                    "amount_cents",
                    "must be greater than zero",
                );
                check(
                    out,
                    p.currency.len() == 3 && p.currency.chars().all(|c| c.is_ascii_uppercase()),
                    "currency",
                    "must be a 3-letter ISO 4217 code such as BRL",
                );
            }
            Self::PreferencesUpdated(p) => {
                positive_id(out, "user_id", p.user_id);
                check(
                    out,
                    is_language_tag(&p.language),
                    "language",
                    "must be a language tag such as pt-BR",
                );
            }
            Self::TitleUpserted(p) => {
                positive_id(out, "title_id", p.title_id);
                text(out, "title", &p.title, 300);
                at_most(out, "description", &p.description, 5000);
                check(
                    out,
                    (1888..=2100).contains(&p.year),
                    "year",
                    "must be between 1888 and 2100",
                );
                check(
                    out,
                    p.kind == TitleKind::Series || p.seasons.is_empty(),
                    "seasons",
                    "only series have seasons",
                );
                names(out, "directors", &p.directors);
                names(out, "cast", &p.cast);
                names(out, "genres", &p.genres);
                names(out, "categories", &p.categories);
                for (i, s) in p.seasons.iter().enumerate() {
                    check(
                        out,
                        s.number > 0,
                        &format!("seasons[{i}].number"),
                        "must be at least 1",
                    );
                }
            }
            Self::TitleDeleted(p) => positive_id(out, "title_id", p.title_id),
            Self::TitleCacheWarmRequested(p) => positive_id(out, "title_id", p.title_id),
            Self::TitlesRelated(p) => {
                positive_id(out, "title_id", p.title_id);
                positive_id(out, "related_title_id", p.related_title_id);
                check(
                    out,
                    p.title_id != p.related_title_id,
                    "related_title_id",
                    "a title cannot relate to itself",
                );
            }
            Self::AssetAttached(p) => {
                positive_id(out, "title_id", p.title_id);
                check(
                    out,
                    p.asset_id.len() == 24 && p.asset_id.chars().all(|c| c.is_ascii_hexdigit()),
                    "asset_id",
                    "must be 24 hex digits",
                );
                text(out, "filename", &p.filename, 255);
                text(out, "content_type", &p.content_type, 255);
            }
            Self::ViewRecorded(p) => {
                positive_id(out, "user_id", p.user_id);
                positive_id(out, "title_id", p.title_id);
                check(
                    out,
                    p.position_pct.is_finite() && (0.0..=100.0).contains(&p.position_pct),
                    "position_pct",
                    "must be between 0 and 100",
                );
            }
            Self::TitleRated(p) => {
                positive_id(out, "user_id", p.user_id);
                positive_id(out, "title_id", p.title_id);
                check(
                    out,
                    (1..=5).contains(&p.stars),
                    "stars",
                    "must be between 1 and 5",
                );
            }
            Self::RecommendationsRequested(p) => positive_id(out, "user_id", p.user_id),
        }
        if v.is_empty() { Ok(()) } else { Err(v) }
    }

    /// Every free-text field of the payload, by JSON path, with the rule its
    /// characters follow. `validate` applies it; a test fails when a string
    /// field exists that this list leaves out. Each arm names every field, so
    /// a new variant cannot be added without deciding.
    pub fn text_fields(&self) -> Vec<(String, &str, Text)> {
        use Text::{MultiLine, SingleLine};
        fn one<'a>(field: &str, value: &'a str, rule: Text) -> (String, &'a str, Text) {
            (field.to_owned(), value, rule)
        }
        fn each<'a>(field: &str, values: &'a [String]) -> Vec<(String, &'a str, Text)> {
            values
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{field}[{i}]"), v.as_str(), SingleLine))
                .collect()
        }
        match self {
            Self::UserRegistered(p) => {
                let mut f = vec![
                    one("name", &p.name, SingleLine),
                    one("email", &p.email, SingleLine),
                ];
                f.extend(
                    p.password_hash
                        .as_deref()
                        .map(|h| one("password_hash", h, SingleLine)),
                );
                f.extend(p.cpf.as_deref().map(|c| one("cpf", c, SingleLine)));
                f
            }
            Self::PaymentRecorded(p) => vec![one("currency", &p.currency, SingleLine)],
            Self::PreferencesUpdated(p) => vec![one("language", &p.language, SingleLine)],
            Self::TitleUpserted(p) => {
                let mut f = vec![
                    one("title", &p.title, SingleLine),
                    one("description", &p.description, MultiLine),
                ];
                f.extend(each("directors", &p.directors));
                f.extend(each("cast", &p.cast));
                f.extend(each("genres", &p.genres));
                f.extend(each("categories", &p.categories));
                f
            }
            Self::AssetAttached(p) => vec![
                one("asset_id", &p.asset_id, SingleLine),
                one("filename", &p.filename, SingleLine),
                one("content_type", &p.content_type, SingleLine),
            ],
            // Ids, numbers, dates and enums only.
            Self::SubscriptionChanged(_)
            | Self::TitleDeleted(_)
            | Self::TitlesRelated(_)
            | Self::ViewRecorded(_)
            | Self::TitleRated(_)
            | Self::RecommendationsRequested(_)
            | Self::TitleCacheWarmRequested(_) => Vec::new(),
        }
    }

    /// A valid command of every type with every field present (optional ones
    /// set, lists non-empty): the fixtures of the contract's tests and the
    /// seeds of its fuzz target.
    pub fn examples() -> Vec<Command> {
        let day = |d| NaiveDate::from_ymd_opt(2025, 1, d).unwrap_or_default();
        let at = DateTime::<Utc>::from_timestamp(1_735_689_600, 0).unwrap_or_default();
        let list = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        vec![
            Self::UserRegistered(UserRegistered {
                user_id: 42,
                name: "Ana Souza".into(),
                email: "ana@example.com".into(),
                password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
                cpf: Some("52998224725".into()),
                admin: false,
            }),
            Self::SubscriptionChanged(SubscriptionChanged {
                user_id: 42,
                plan: Plan::Premium,
                status: SubscriptionStatus::Active,
                started_on: day(1),
                renews_on: day(31),
            }),
            Self::PaymentRecorded(PaymentRecorded {
                payment_id: Uuid::from_u128(1),
                user_id: 42,
                amount_cents: 3990,
                currency: "BRL".into(),
                method: PaymentMethod::Pix,
                status: PaymentStatus::Approved,
                paid_at: at,
            }),
            Self::PreferencesUpdated(PreferencesUpdated {
                user_id: 42,
                language: "pt-BR".into(),
                notifications: true,
                theme: Theme::Dark,
            }),
            Self::TitleUpserted(TitleUpserted {
                title_id: 7,
                title: "Cidade de Deus".into(),
                description: "Two boys grow up in a Rio favela.\nOne becomes a photographer."
                    .into(),
                kind: TitleKind::Series,
                year: 2002,
                directors: list(&["Fernando Meirelles", "Kátia Lund"]),
                cast: list(&["Alexandre Rodrigues", "Leandro Firmino"]),
                genres: list(&["crime", "drama"]),
                categories: list(&["brasileiros", "aclamados"]),
                seasons: vec![Season {
                    number: 1,
                    episodes: 8,
                }],
            }),
            Self::TitleDeleted(TitleDeleted { title_id: 7 }),
            Self::TitlesRelated(TitlesRelated {
                title_id: 7,
                related_title_id: 8,
                relation: Relation::Sequel,
            }),
            Self::AssetAttached(AssetAttached {
                title_id: 7,
                asset_id: "65a1b2c3d4e5f60718293a4b".into(),
                kind: AssetKind::Poster,
                filename: "poster-7.jpg".into(),
                content_type: "image/jpeg".into(),
                length: 1024,
            }),
            Self::ViewRecorded(ViewRecorded {
                view_id: Uuid::from_u128(2),
                user_id: 42,
                title_id: 7,
                seconds_watched: 3600,
                position_pct: 87.5,
                completed: false,
                watched_at: at,
            }),
            Self::TitleRated(TitleRated {
                user_id: 42,
                title_id: 7,
                stars: 5,
            }),
            Self::RecommendationsRequested(RecommendationsRequested { user_id: 42 }),
            Self::TitleCacheWarmRequested(TitleCacheWarmRequested { title_id: 7 }),
        ]
    }
}

fn user(id: i64) -> String {
    format!("user/{id}")
}

fn title(id: i64) -> String {
    format!("title/{id}")
}

/// Deliberately simple: one `@`, a dot in the domain, no spaces.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= 254
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}

/// 11 digits whose two check digits match (mod 11); all-equal digits are invalid.
pub fn is_cpf(s: &str) -> bool {
    let d: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if d.len() != 11 || s.chars().count() != 11 || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let digit = |n: usize| {
        let sum: u32 = (0..n).map(|i| d[i] * (n as u32 + 1 - i as u32)).sum();
        let r = (sum * 10) % 11;
        if r == 10 { 0 } else { r }
    };
    digit(9) == d[9] && digit(10) == d[10]
}

fn is_language_tag(s: &str) -> bool {
    let mut parts = s.split('-');
    let primary = parts.next().unwrap_or_default();
    (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}
