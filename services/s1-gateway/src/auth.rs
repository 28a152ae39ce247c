//! Sessions in Redis and the bearer-token extractor.
//!
//! A token is 32 random bytes shown to the client once; Redis keeps only its
//! SHA-256 (`keys::session`), so a leaked Redis dump cannot be replayed. The
//! hash doubles as the session id users see when listing their sessions.

use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use polystream_stores::sessions;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, State};

/// What Redis holds per session (the token is never stored).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionData {
    pub user_id: i64,
    pub admin: bool,
    pub created_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// The caller, authenticated by `Authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub session_id: String,
    pub user_id: i64,
    pub admin: bool,
}

impl Caller {
    /// A user may touch only their own resources; admins anything.
    pub fn may_access(&self, user_id: i64) -> ApiResult<()> {
        if self.admin || self.user_id == user_id {
            Ok(())
        } else {
            Err(ApiError::forbidden("you may only access your own account"))
        }
    }

    pub fn require_admin(&self) -> ApiResult<()> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::forbidden("this operation needs an administrator"))
        }
    }
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Password hashing and checking with bounded concurrency. argon2id holds
/// 19 MiB of memory per hash, and each runs on a blocking thread (up to 512),
/// so unbounded, a burst of registrations grew S1 to gigabytes. At most
/// `concurrency` hashes run at once; a request that cannot start within the
/// queue timeout answers 503 with `Retry-After` instead of piling up.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
    /// Checked against when the email is unknown, so that answer costs what
    /// a wrong password costs (no account probing by timing).
    dummy: Arc<str>,
}

impl Hasher {
    /// Start-up only: computes the dummy hash.
    pub fn new(concurrency: usize, queue_timeout: Duration) -> Self {
        let salt = SaltString::generate(&mut OsRng);
        let dummy = Argon2::default()
            .hash_password(new_token().as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default();
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            queue_timeout,
            dummy: dummy.into(),
        }
    }

    async fn permit(&self) -> ApiResult<OwnedSemaphorePermit> {
        match tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::from(
                polystream_common::problem::Problem::unavailable(
                    "too many password checks at once; retry later",
                ),
            )),
        }
    }

    /// An argon2id PHC string for `password`.
    pub async fn hash(&self, password: String) -> ApiResult<String> {
        let _permit = self.permit().await?;
        hash_password(password).await
    }

    /// Whether `password` matches `hash`; with no hash (unknown account) it
    /// does the same work and answers false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> ApiResult<bool> {
        let _permit = self.permit().await?;
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.to_string());
        Ok(verify_password(password, hash).await && known)
    }
}

/// argon2id PHC string; CPU-heavy, so off the async threads. Unbounded: the
/// service goes through [`Hasher`].
pub async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .ok()
    .and_then(Result::ok)
    .ok_or_else(|| ApiError::from(polystream_common::problem::Problem::internal()))
}

pub async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Creates a session and returns its token (shown once) and expiry.
pub async fn create_session(
    state: &State,
    user_id: i64,
    admin: bool,
) -> ApiResult<(String, DateTime<Utc>)> {
    let token = new_token();
    let hash = token_hash(&token);
    let now = Utc::now();
    let data = SessionData {
        user_id,
        admin,
        created_at: now,
        last_seen: now,
    };
    let ttl = session_ttl(&state.config, now, now).unwrap_or(1);
    let expires = now + chrono::Duration::seconds(ttl as i64);
    sessions::create(
        &state.redis,
        &hash,
        user_id,
        &data,
        ttl,
        expires.timestamp(),
    )
    .await?;
    Ok((token, expires))
}

/// Seconds a session used `now` may live on: the idle lifetime, cut short by
/// the absolute one; `None` once the absolute lifetime has passed.
pub fn session_ttl(
    config: &crate::Config,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<u64> {
    let max = chrono::Duration::from_std(config.session_max_lifetime).ok()?;
    let left = (created_at + max - now).num_seconds();
    (left > 0).then(|| config.session_ttl.as_secs().min(left as u64))
}

/// Ends one session of `user_id`; false when there was no such session.
pub async fn end_session(state: &State, user_id: i64, session_id: &str) -> ApiResult<bool> {
    let owned = sessions::document::<SessionData>(&state.redis, session_id)
        .await?
        .is_some_and(|s| s.user_id == user_id);
    sessions::end(&state.redis, user_id, session_id, owned).await?;
    Ok(owned)
}

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let Some(token) = bearer(parts) else {
            return Err(ApiError::unauthorized(
                "send Authorization: Bearer <token> (POST /v1/sessions to log in)",
            ));
        };
        let hash = token_hash(token);
        let Some(mut data) = sessions::document::<SessionData>(&state.redis, &hash).await? else {
            return Err(ApiError::unauthorized(
                "the token is unknown or its session expired",
            ));
        };
        // Activity keeps the session alive, up to its absolute lifetime.
        let now = Utc::now();
        let Some(ttl) = session_ttl(&state.config, data.created_at, now) else {
            sessions::end(&state.redis, data.user_id, &hash, true).await?;
            return Err(ApiError::unauthorized(
                "the session reached its maximum lifetime; log in again",
            ));
        };
        data.last_seen = now;
        let expires = now.timestamp() + ttl as i64;
        if !sessions::refresh(&state.redis, &hash, data.user_id, &data, ttl, expires).await? {
            return Err(ApiError::unauthorized("the session has ended"));
        }
        // The account's own budget, beside its address's (limits::by_address).
        if let Some(class) = parts.extensions.get::<crate::limits::RouteClass>().copied() {
            crate::limits::spend(state, class, &format!("user:{}", data.user_id))
                .await
                .map_err(ApiError)?;
        }
        Ok(Caller {
            session_id: hash,
            user_id: data.user_id,
            admin: data.admin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_slides_until_its_absolute_lifetime() {
        let mut r = polystream_common::config::Reader::new([
            ("SESSION_TTL_SECONDS", "3600"),
            ("SESSION_MAX_LIFETIME_SECONDS", "7200"),
        ]);
        let config = crate::Config::read(&mut r);
        let t0 = Utc::now();
        let at = |secs| t0 + chrono::Duration::seconds(secs);
        assert_eq!(session_ttl(&config, t0, t0), Some(3600));
        assert_eq!(session_ttl(&config, t0, at(5400)), Some(1800));
        assert_eq!(session_ttl(&config, t0, at(7200)), None);
        assert_eq!(session_ttl(&config, t0, at(9000)), None);
    }

    #[tokio::test]
    async fn hashes_verify_and_never_contain_the_password() {
        let h = hash_password("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains("correct horse"));
        assert!(verify_password("correct horse".into(), h.clone()).await);
        assert!(!verify_password("wrong horse".into(), h).await);
    }

    #[tokio::test]
    async fn an_unknown_account_costs_a_check_and_is_refused() {
        let hasher = Hasher::new(1, Duration::from_secs(5));
        let h = hasher.hash("correct horse".into()).await.unwrap();
        assert!(
            hasher
                .verify("correct horse".into(), Some(h))
                .await
                .unwrap()
        );
        assert!(!hasher.verify("correct horse".into(), None).await.unwrap());
        assert!(!hasher.verify(String::new(), None).await.unwrap());
    }

    #[tokio::test]
    async fn hashing_beyond_the_bound_waits_then_answers_503() {
        let hasher = Hasher::new(1, Duration::from_millis(50));
        let held = hasher.permits.clone().acquire_owned().await.unwrap();
        let err = hasher.hash("pw".into()).await.unwrap_err();
        assert_eq!(err.0.status, 503);
        drop(held);
        assert!(hasher.hash("pw".into()).await.is_ok());
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }
}
