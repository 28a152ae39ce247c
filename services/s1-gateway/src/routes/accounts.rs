//! Accounts (PostgreSQL): users, sessions, subscriptions, payments, preferences.
//! Reads query PostgreSQL directly; writes are commands on Kafka.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Months, NaiveDate, Utc};
use polystream_common::events::{
    Command, PaymentMethod, PaymentRecorded, PaymentStatus, Plan, PreferencesUpdated,
    SubscriptionChanged, SubscriptionStatus, Theme, UserRegistered,
};
use polystream_common::problem::Problem;
use polystream_stores::{ids, payments, preferences, sessions, subscriptions, users};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::UserPath;
use crate::auth::{self, Caller};
use crate::command::{Accepted, V1_STATUS, submit};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ValidJson, ValidPath, ValidQuery, positive};
use crate::state::{AppState, State as S};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterUser {
    pub name: String,
    pub email: String,
    /// At least 8 characters; hashed with argon2id by the gateway, never stored or sent in clear.
    pub password: String,
    /// Brazilian CPF, 11 digits.
    pub cpf: Option<String>,
}

/// Where `/v1/users` takes each registration field (the legacy route maps its
/// query parameters instead).
pub const REGISTER_FIELDS: &[(&str, &str)] = &[("password_hash", "body.password")];

/// The account and session routes (see [`super::catalog::routes`]).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_user))
        .routes(routes!(get_user))
        .routes(routes!(post_session))
        .routes(routes!(delete_current_session))
        .routes(routes!(list_sessions))
        .routes(routes!(delete_session))
        .routes(routes!(put_subscription, get_subscription))
        .routes(routes!(post_payment, list_payments))
        .routes(routes!(put_preferences, get_preferences))
}

/// An account to register: [`RegisterUser`], or the seed's registration,
/// where the password is optional.
#[derive(Debug)]
pub struct NewAccount {
    pub name: String,
    pub email: String,
    /// `None`: the account has no password, so it cannot log in.
    pub password: Option<String>,
    pub cpf: Option<String>,
}

impl From<RegisterUser> for NewAccount {
    fn from(u: RegisterUser) -> Self {
        Self {
            name: u.name,
            email: u.email,
            password: Some(u.password),
            cpf: u.cpf,
        }
    }
}

/// Allocates a user id, hashes the password (if any) and publishes
/// `user.registered`. `fields` names where the request carried each command
/// field.
pub async fn register(
    state: &S,
    u: NewAccount,
    admin: bool,
    status_prefix: &str,
    fields: crate::command::FieldMap<'_>,
) -> ApiResult<Accepted> {
    let password_field = fields
        .iter()
        .find(|(f, _)| *f == "password_hash")
        .map_or("body.password", |(_, n)| *n);
    if let Some(password) = &u.password {
        let len = password.chars().count();
        if !(8..=256).contains(&len) {
            return Err(ApiError::field(
                password_field,
                "must be 8 to 256 characters",
            ));
        }
        // Hashed, so it never reaches a store, but a NUL in a password is a client bug.
        if let Err(r) = polystream_common::events::check_text(
            password,
            polystream_common::events::Text::SingleLine,
        ) {
            return Err(ApiError::field(password_field, r));
        }
    }
    let user_id = ids::next_user_id(&state.redis).await?;
    let password_hash = match u.password {
        Some(p) => Some(state.hasher.hash(p).await?),
        None => None,
    };
    let command = Command::UserRegistered(UserRegistered {
        user_id,
        name: u.name,
        email: u.email.trim().to_owned(),
        password_hash,
        cpf: u.cpf,
        admin,
    });
    submit(state, command, fields, status_prefix).await
}

/// Register an account. Anyone may; the id is in the answer.
#[utoipa::path(post, path = "/v1/users", tag = "accounts", request_body = RegisterUser,
    responses((status = 202, body = Accepted), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "Kafka did not store the command", body = Problem, content_type = "application/problem+json"),
              (status = 504, description = "Kafka may have stored the command without acknowledging it", body = Problem, content_type = "application/problem+json")))]
pub async fn post_user(
    State(state): State<AppState>,
    ValidJson(u): ValidJson<RegisterUser>,
) -> ApiResult<Response> {
    Ok(
        register(&state, u.into(), false, V1_STATUS, REGISTER_FIELDS)
            .await?
            .into_202(),
    )
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserProfile {
    pub user_id: i64,
    pub name: String,
    pub email: String,
    pub cpf: Option<String>,
    pub admin: bool,
    pub created_at: DateTime<Utc>,
}

/// A user's profile (never the password hash).
#[utoipa::path(get, path = "/v1/users/{id}", tag = "accounts", params(UserPath), security(("bearer" = [])),
    responses((status = 200, body = UserProfile), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<UserPath>,
) -> ApiResult<Json<UserProfile>> {
    let id = own(&caller, p.id)?;
    users::profile(&state.pg, id)
        .await?
        .map(|u| Json(u.into()))
        .ok_or_else(|| ApiError::not_found(&format!("user {id}")))
}

impl From<users::Profile> for UserProfile {
    fn from(u: users::Profile) -> Self {
        Self {
            user_id: u.user_id,
            name: u.name,
            email: u.email,
            cpf: u.cpf,
            admin: u.admin,
            created_at: u.created_at,
        }
    }
}

fn own(caller: &Caller, id: i64) -> ApiResult<i64> {
    let id = positive("path.id", id)?;
    caller.may_access(id)?;
    Ok(id)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionCreated {
    /// Shown once; send it as `Authorization: Bearer <token>`.
    pub token: String,
    pub user_id: i64,
    pub session_id: String,
    pub expires_at: DateTime<Utc>,
}

/// Log in with email and password.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = Login,
    responses((status = 201, body = SessionCreated), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn post_session(
    State(state): State<AppState>,
    ValidJson(l): ValidJson<Login>,
) -> ApiResult<Response> {
    crate::limits::login_allowed(&state, &l.email)
        .await
        .map_err(ApiError)?;
    let login = users::login_by_email(&state.pg, l.email.trim()).await?;
    // The same answer, after the same work, for an unknown email and a wrong
    // password: no account probing. Both count towards the lockout.
    let hash = login.as_ref().and_then(|l| l.password_hash.clone());
    let matches = state.hasher.verify(l.password, hash).await?;
    crate::limits::login_result(&state, &l.email, matches).await;
    let Some(users::Login { user_id, admin, .. }) = login.filter(|_| matches) else {
        return Err(ApiError::unauthorized("wrong email or password"));
    };
    let (token, expires_at) = auth::create_session(&state, user_id, admin).await?;
    let session_id = auth::token_hash(&token);
    Ok((
        StatusCode::CREATED,
        Json(SessionCreated {
            token,
            user_id,
            session_id,
            expires_at,
        }),
    )
        .into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    pub session_id: String,
    pub current: bool,
    pub created_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Seconds left before the session expires without activity.
    pub expires_in: i64,
}

/// A user's live sessions.
#[utoipa::path(get, path = "/v1/users/{id}/sessions", tag = "sessions", params(UserPath), security(("bearer" = [])),
    responses((status = 200, body = Vec<SessionInfo>), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_sessions(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<UserPath>,
) -> ApiResult<Json<Vec<SessionInfo>>> {
    let id = own(&caller, p.id)?;
    let mut out = Vec::new();
    for sid in sessions::ids_of(&state.redis, id).await? {
        match sessions::get::<auth::SessionData>(&state.redis, &sid).await? {
            Some((d, ttl)) if d.user_id == id => out.push(SessionInfo {
                current: sid == caller.session_id,
                session_id: sid,
                created_at: d.created_at,
                last_seen: d.last_seen,
                expires_in: ttl,
            }),
            // Expired: tidy the index.
            _ => sessions::unindex(&state.redis, id, &sid).await?,
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.last_seen));
    Ok(Json(out))
}

/// Log out: end the session whose token made this request.
#[utoipa::path(delete, path = "/v1/sessions/current", tag = "sessions", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
pub async fn delete_current_session(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<StatusCode> {
    auth::end_session(&state, caller.user_id, &caller.session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SessionPath {
    /// User id.
    #[param(minimum = 1)]
    pub id: i64,
    /// From `GET /v1/users/{id}/sessions`.
    #[param(pattern = "^[0-9a-fA-F]{64}$")]
    pub session_id: String,
}

/// End one of a user's sessions.
#[utoipa::path(delete, path = "/v1/users/{id}/sessions/{session_id}", tag = "sessions", params(SessionPath), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_session(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<SessionPath>,
) -> ApiResult<StatusCode> {
    let id = own(&caller, p.id)?;
    if p.session_id.len() != 64 || !p.session_id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::field("path.session_id", "must be 64 hex digits"));
    }
    if auth::end_session(&state, id, &p.session_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(&format!("session {}", p.session_id)))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionBody {
    /// basic, standard or premium.
    #[schema(value_type = String, example = "premium")]
    pub plan: Plan,
    /// active (default), past_due or cancelled.
    #[schema(value_type = Option<String>, example = "active")]
    pub status: Option<SubscriptionStatus>,
    /// Default today.
    pub started_on: Option<NaiveDate>,
    /// Default one month after started_on.
    pub renews_on: Option<NaiveDate>,
}

pub fn subscription_command(user_id: i64, b: SubscriptionBody) -> Command {
    let started_on = b.started_on.unwrap_or_else(|| Utc::now().date_naive());
    let renews_on = b.renews_on.unwrap_or_else(|| {
        started_on
            .checked_add_months(Months::new(1))
            .unwrap_or(started_on)
    });
    Command::SubscriptionChanged(SubscriptionChanged {
        user_id,
        plan: b.plan,
        status: b.status.unwrap_or(SubscriptionStatus::Active),
        started_on,
        renews_on,
    })
}

const USER_FIELDS: &[(&str, &str)] = &[("user_id", "path.id")];

/// Start or change a user's subscription.
#[utoipa::path(put, path = "/v1/users/{id}/subscription", tag = "accounts", params(UserPath), request_body = SubscriptionBody, security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn put_subscription(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<UserPath>,
    ValidJson(b): ValidJson<SubscriptionBody>,
) -> ApiResult<Response> {
    let id = own(&caller, p.id)?;
    Ok(
        submit(&state, subscription_command(id, b), USER_FIELDS, V1_STATUS)
            .await?
            .into_202(),
    )
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Subscription {
    pub user_id: i64,
    pub plan: String,
    pub status: String,
    pub started_on: NaiveDate,
    pub renews_on: NaiveDate,
    pub updated_at: DateTime<Utc>,
}

/// A user's subscription.
#[utoipa::path(get, path = "/v1/users/{id}/subscription", tag = "accounts", params(UserPath), security(("bearer" = [])),
    responses((status = 200, body = Subscription), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_subscription(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<UserPath>,
) -> ApiResult<Json<Subscription>> {
    let id = own(&caller, p.id)?;
    subscriptions::current(&state.pg, id)
        .await?
        .map(|s| Json(s.into()))
        .ok_or_else(|| ApiError::not_found(&format!("a subscription for user {id}")))
}

impl From<subscriptions::Subscription> for Subscription {
    fn from(s: subscriptions::Subscription) -> Self {
        Self {
            user_id: s.user_id,
            plan: s.plan,
            status: s.status,
            started_on: s.started_on,
            renews_on: s.renews_on,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentBody {
    /// Smallest currency unit, > 0.
    pub amount_cents: i64,
    /// ISO 4217; default BRL.
    pub currency: Option<String>,
    /// credit_card, debit_card, pix or boleto.
    #[schema(value_type = String, example = "pix")]
    pub method: PaymentMethod,
    /// approved (default), pending, declined or refunded.
    #[schema(value_type = Option<String>, example = "approved")]
    pub status: Option<PaymentStatus>,
    /// Default now.
    pub paid_at: Option<DateTime<Utc>>,
}

pub fn payment_command(user_id: i64, payment_id: Uuid, b: PaymentBody) -> Command {
    Command::PaymentRecorded(PaymentRecorded {
        payment_id,
        user_id,
        amount_cents: b.amount_cents,
        currency: b.currency.unwrap_or_else(|| "BRL".into()),
        method: b.method,
        status: b.status.unwrap_or(PaymentStatus::Approved),
        paid_at: b.paid_at.unwrap_or_else(Utc::now),
    })
}

/// Record a payment; S1 chooses its id.
#[utoipa::path(post, path = "/v1/users/{id}/payments", tag = "accounts", params(UserPath), request_body = PaymentBody, security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn post_payment(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<UserPath>,
    ValidJson(b): ValidJson<PaymentBody>,
) -> ApiResult<Response> {
    let id = own(&caller, p.id)?;
    let payment_id = Uuid::now_v7();
    let a = submit(
        &state,
        payment_command(id, payment_id, b),
        USER_FIELDS,
        V1_STATUS,
    )
    .await?;
    Ok(a.into_202())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PaymentsQuery {
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Only payments before this instant (for paging).
    pub before: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Payment {
    pub payment_id: Uuid,
    pub user_id: i64,
    pub amount_cents: i64,
    pub currency: String,
    pub method: String,
    pub status: String,
    pub paid_at: DateTime<Utc>,
}

pub fn limit(name: &str, v: Option<u32>) -> ApiResult<i64> {
    match v.unwrap_or(20) {
        n @ 1..=100 => Ok(i64::from(n)),
        _ => Err(ApiError::field(name, "must be between 1 and 100")),
    }
}

/// A user's payments, newest first.
#[utoipa::path(get, path = "/v1/users/{id}/payments", tag = "accounts", params(UserPath, PaymentsQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<Payment>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_payments(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<UserPath>,
    ValidQuery(q): ValidQuery<PaymentsQuery>,
) -> ApiResult<Json<Vec<Payment>>> {
    let id = own(&caller, p.id)?;
    let limit = limit("query.limit", q.limit)?;
    let rows = payments::for_user(&state.pg, id, q.before, limit).await?;
    Ok(Json(rows.into_iter().map(Payment::from).collect()))
}

impl From<payments::Payment> for Payment {
    fn from(p: payments::Payment) -> Self {
        Self {
            payment_id: p.payment_id,
            user_id: p.user_id,
            amount_cents: p.amount_cents,
            currency: p.currency,
            method: p.method,
            status: p.status,
            paid_at: p.paid_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesBody {
    /// BCP 47 tag, e.g. pt-BR.
    pub language: String,
    pub notifications: bool,
    /// light, dark or system.
    #[schema(value_type = String, example = "dark")]
    pub theme: Theme,
}

/// Set a user's preferences.
#[utoipa::path(put, path = "/v1/users/{id}/preferences", tag = "accounts", params(UserPath), request_body = PreferencesBody, security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn put_preferences(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<UserPath>,
    ValidJson(b): ValidJson<PreferencesBody>,
) -> ApiResult<Response> {
    let id = own(&caller, p.id)?;
    let c = Command::PreferencesUpdated(PreferencesUpdated {
        user_id: id,
        language: b.language,
        notifications: b.notifications,
        theme: b.theme,
    });
    Ok(submit(&state, c, USER_FIELDS, V1_STATUS).await?.into_202())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Preferences {
    pub user_id: i64,
    pub language: String,
    pub notifications: bool,
    pub theme: String,
    pub updated_at: DateTime<Utc>,
}

/// A user's preferences.
#[utoipa::path(get, path = "/v1/users/{id}/preferences", tag = "accounts", params(UserPath), security(("bearer" = [])),
    responses((status = 200, body = Preferences), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_preferences(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(p): ValidPath<UserPath>,
) -> ApiResult<Json<Preferences>> {
    let id = own(&caller, p.id)?;
    preferences::of_user(&state.pg, id)
        .await?
        .map(|p| Json(p.into()))
        .ok_or_else(|| ApiError::not_found(&format!("preferences for user {id}")))
}

impl From<preferences::Preferences> for Preferences {
    fn from(p: preferences::Preferences) -> Self {
        Self {
            user_id: p.user_id,
            language: p.language,
            notifications: p.notifications,
            theme: p.theme,
            updated_at: p.updated_at,
        }
    }
}

/// Publishes `user.registered` with admin=true for ADMIN_EMAIL unless that
/// account exists. Start-up only; failures are logged, not fatal.
pub async fn bootstrap_admin(state: &S) {
    let Some((email, password)) = state.config.admin.clone() else {
        return;
    };
    match users::find_by_email(&state.pg, &email).await {
        Ok(Some(_)) => tracing::info!("bootstrap admin already exists"),
        Ok(None) => {
            let u = RegisterUser {
                name: "Administrator".into(),
                email,
                password,
                cpf: None,
            };
            match register(state, u.into(), true, V1_STATUS, REGISTER_FIELDS).await {
                Ok(a) => {
                    tracing::info!(user_id = a.user_id, correlation_id = %a.correlation_id, "bootstrap admin registered")
                }
                Err(e) => {
                    tracing::warn!(problem = ?e.0.detail, "could not register the bootstrap admin")
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not check for the bootstrap admin"),
    }
}
