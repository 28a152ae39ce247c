//! Sessions in Redis and the bearer-token extractor.
//!
//! A token is 32 random bytes shown to the client once; Redis keeps only its
//! SHA-256 (`keys::session`), so a leaked Redis dump cannot be replayed. The
//! hash doubles as the session id users see when listing their sessions.

use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, SaltString};
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

/// Password hashing and checking on a pool of `concurrency` dedicated
/// threads. argon2id allocates 19 MiB per hash; on tokio's blocking pool (up
/// to 512 threads) every thread's malloc arena kept one, and a burst of
/// registrations grew S1 to gigabytes. Here at most `concurrency` hashes run
/// and at most `concurrency` arenas ever hold that memory; a request that
/// cannot start within the queue timeout answers 503 with `Retry-After`
/// instead of piling up.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
    jobs: std::sync::mpsc::Sender<Job>,
    /// Checked against when the email is unknown, so that answer costs what
    /// a wrong password costs (no account probing by timing).
    dummy: Arc<str>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Hasher {
    /// Start-up only: spawns the threads and computes the dummy hash.
    pub fn new(concurrency: usize, queue_timeout: Duration) -> Self {
        let concurrency = concurrency.max(1);
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for i in 0..concurrency {
            let queue = queue.clone();
            // The pool lives as long as any Hasher: each thread ends when the
            // last sender is dropped.
            let spawned = std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    loop {
                        let job = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-hashing thread");
            }
        }
        Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            queue_timeout,
            jobs,
            dummy: hash_password_blocking(&new_token())
                .unwrap_or_default()
                .into(),
        }
    }

    /// Runs `f` on the pool once a slot is free, or 503 after the queue timeout.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
        let unavailable = || {
            ApiError::from(
                polystream_common::problem::Problem::unavailable(
                    "too many password checks at once; retry later",
                )
                .retry_after(self.queue_timeout),
            )
        };
        let permit: OwnedSemaphorePermit =
            match tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned())
                .await
            {
                Ok(Ok(permit)) => permit,
                _ => return Err(unavailable()),
            };
        let (tx, rx) = tokio::sync::oneshot::channel();
        // One permit per thread: a job sent here finds a thread free.
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
                drop(permit);
            }))
            .map_err(|_| ApiError::from(polystream_common::problem::Problem::internal()))?;
        rx.await
            .map_err(|_| ApiError::from(polystream_common::problem::Problem::internal()))
    }

    /// An argon2id PHC string for `password`.
    pub async fn hash(&self, password: String) -> ApiResult<String> {
        self.run(move || hash_password_blocking(&password))
            .await?
            .ok_or_else(|| ApiError::from(polystream_common::problem::Problem::internal()))
    }

    /// Whether `password` matches `hash`; with no hash (unknown account) it
    /// does the same work and answers false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> ApiResult<bool> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.to_string());
        let matches = self.run(move || verify_now(&password, &hash)).await?;
        Ok(matches && known)
    }
}

thread_local! {
    /// argon2's working memory (19 MiB by default), kept by each hashing
    /// thread and reused: allocated and freed per hash, glibc's malloc kept
    /// most of every copy, and S1 grew by about 19 MiB per registration.
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `argon` over `password` and `salt` into `out`, in this thread's memory.
fn argon2_into(argon: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
    BLOCKS.with(|blocks| {
        let mut blocks = blocks.borrow_mut();
        let needed = argon.params().block_count();
        if blocks.len() != needed {
            *blocks = vec![argon2::Block::default(); needed];
        }
        argon
            .hash_password_into_with_memory(password, salt, out, &mut blocks[..])
            .is_ok()
    })
}

/// argon2id PHC string for `password`. CPU-heavy and memory-hungry: the
/// service runs it on a [`Hasher`]'s threads; tests call it directly.
pub fn hash_password_blocking(password: &str) -> Option<String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf).ok()?;
    let argon = Argon2::default();
    let len = argon
        .params()
        .output_len()
        .unwrap_or(argon2::Params::DEFAULT_OUTPUT_LEN);
    let mut out = vec![0u8; len];
    if !argon2_into(&argon, password.as_bytes(), salt_bytes, &mut out) {
        return None;
    }
    let phc = PasswordHash {
        algorithm: argon2::Algorithm::Argon2id.ident(),
        version: Some(argon2::Version::V0x13.into()),
        params: argon2::password_hash::ParamsString::try_from(argon.params()).ok()?,
        salt: Some(salt.as_salt()),
        hash: Some(argon2::password_hash::Output::new(&out).ok()?),
    };
    Some(phc.to_string())
}

/// Whether `password` matches the PHC string `hash` (any argon2 variant and
/// parameters it names).
fn verify_now(password: &str, hash: &str) -> bool {
    let Ok(phc) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(phc.algorithm) else {
        return false;
    };
    let version = match phc.version.map(argon2::Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = argon2::Params::try_from(&phc) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    // Output's equality is constant-time.
    argon2_into(&argon, password.as_bytes(), salt_bytes, &mut out)
        && argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
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

    #[test]
    fn hashes_are_standard_phc_strings_the_argon2_crate_verifies_and_the_reverse() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let ours = hash_password_blocking("correct horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(verify_now("correct horse", &theirs));
        assert!(!verify_now("correct horsf", &theirs));
        // Other parameters than the defaults (an older hash) still verify.
        let small = Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(8 * 1024, 3, 1, None).unwrap(),
        )
        .hash_password(b"pw-older", &salt)
        .unwrap()
        .to_string();
        assert!(verify_now("pw-older", &small));
        assert!(!verify_now("pw-older", "not a hash"));
    }

    #[test]
    fn hashes_verify_and_never_contain_the_password() {
        let h = hash_password_blocking("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains("correct horse"));
        assert!(verify_now("correct horse", &h));
        assert!(!verify_now("wrong horse", &h));
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
        assert!(err.0.retry_after.is_some());
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
