//! Rate limits per client address and per account, by route class, and
//! lockout after failed logins. The budgets live in Redis
//! ([`polystream_common::ratelimit`]), so they hold across S1 replicas.
//!
//! A request first spends from its address's bucket of its class (here, in
//! middleware); once the caller is authenticated it spends from its
//! account's bucket too (in [`crate::auth::Caller`]). Beyond either: `429`
//! with `Retry-After` and a problem body. When Redis cannot be asked the
//! request goes through: an outage of the limiter must not become an outage
//! of the API (every write needs Redis-free Kafka only).

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use polystream_common::config::{Reader, Source};
use polystream_common::problem::Problem;
use polystream_common::ratelimit::{Decision, Limit, LockoutPolicy, Rate};

use crate::state::AppState;

/// The kinds of request limited separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// `POST /v1/sessions`.
    Login,
    /// `POST /v1/users`, `POST /usuarios`.
    Registration,
    /// Every other state-changing request.
    Write,
    /// Every other read.
    Read,
    /// Status look-ups and long-polls.
    Status,
}

impl RouteClass {
    pub const ALL: [Self; 5] = [
        Self::Login,
        Self::Registration,
        Self::Write,
        Self::Read,
        Self::Status,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Registration => "registration",
            Self::Write => "write",
            Self::Read => "read",
            Self::Status => "status",
        }
    }

    /// The class of a request to the route `template` (axum's matched path).
    pub fn of(method: &Method, template: &str) -> Self {
        let read = method == Method::GET || method == Method::HEAD;
        match template {
            "/v1/sessions" if method == Method::POST => Self::Login,
            "/v1/users" | "/usuarios" if method == Method::POST => Self::Registration,
            "/v1/status/{correlation_id}" | "/status/{correlation_id}" if read => Self::Status,
            _ if read => Self::Read,
            _ => Self::Write,
        }
    }
}

/// The limits' settings (docs/configuration.md).
#[derive(Debug, Clone)]
pub struct Limits {
    /// `RATE_LIMIT_LOGIN`, `RATE_LIMIT_REGISTRATION`, `RATE_LIMIT_WRITES`,
    /// `RATE_LIMIT_READS`, `RATE_LIMIT_STATUS`: per client address and, once
    /// authenticated, per account.
    pub login: Option<Rate>,
    pub registration: Option<Rate>,
    pub writes: Option<Rate>,
    pub reads: Option<Rate>,
    pub status: Option<Rate>,
    /// `LOGIN_LOCKOUT_FAILURES`, `LOGIN_LOCKOUT_SECONDS`,
    /// `LOGIN_LOCKOUT_MAX_SECONDS`, `LOGIN_LOCKOUT_WINDOW_SECONDS`.
    pub lockout: LockoutPolicy,
    /// `RATE_LIMIT_SCOPE`: separates the budgets of platforms sharing a Redis.
    pub scope: String,
    /// `TRUSTED_PROXIES`: CIDRs whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
}

impl Limits {
    pub fn read<S: Source>(r: &mut Reader<S>) -> Self {
        let mut rate = |var: &str, default: Rate| r.parse(var, Limit(Some(default))).0;
        let login = rate("RATE_LIMIT_LOGIN", Rate::per_minute(10));
        let registration = rate("RATE_LIMIT_REGISTRATION", Rate::per_minute(10));
        let writes = rate("RATE_LIMIT_WRITES", Rate::per_minute(1200));
        let reads = rate("RATE_LIMIT_READS", Rate::per_minute(6000));
        let status = rate("RATE_LIMIT_STATUS", Rate::per_minute(6000));
        let d = LockoutPolicy::default();
        let secs = |r: &mut Reader<S>, var: &str, default: Duration| {
            Duration::from_secs(r.parse(var, default.as_secs()))
        };
        let lockout = LockoutPolicy {
            threshold: r.parse("LOGIN_LOCKOUT_FAILURES", d.threshold),
            base: secs(r, "LOGIN_LOCKOUT_SECONDS", d.base),
            max: secs(r, "LOGIN_LOCKOUT_MAX_SECONDS", d.max),
            window: secs(r, "LOGIN_LOCKOUT_WINDOW_SECONDS", d.window),
        };
        if lockout.base > lockout.max {
            r.invalid(
                "LOGIN_LOCKOUT_SECONDS",
                &lockout.base.as_secs().to_string(),
                "must not exceed LOGIN_LOCKOUT_MAX_SECONDS",
            );
        }
        let scope = r.string("RATE_LIMIT_SCOPE", "polystream");
        let proxies = r.string("TRUSTED_PROXIES", "");
        let mut trusted_proxies = Vec::new();
        for item in proxies.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match parse_net(item) {
                Some(net) => trusted_proxies.push(net),
                None => r.invalid(
                    "TRUSTED_PROXIES",
                    &proxies,
                    format!("{item:?} is not an address or CIDR (e.g. 10.0.0.0/8)"),
                ),
            }
        }
        Self {
            login,
            registration,
            writes,
            reads,
            status,
            lockout,
            scope,
            trusted_proxies,
        }
    }

    pub fn rate(&self, class: RouteClass) -> Option<Rate> {
        match class {
            RouteClass::Login => self.login,
            RouteClass::Registration => self.registration,
            RouteClass::Write => self.writes,
            RouteClass::Read => self.reads,
            RouteClass::Status => self.status,
        }
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The client's address: the peer, unless the peer is a trusted proxy; then
/// the right-most `X-Forwarded-For` entry that is not itself trusted (entries
/// left of it were written by the client and prove nothing).
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let hops: Vec<IpAddr> = forwarded_for
        .unwrap_or_default()
        .split(',')
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(hops.first())
        .copied()
        .or(Some(peer))
}

/// The client address of `req` as text (`unknown` without a peer address).
pub fn client_of(state: &AppState, req: &Request) -> String {
    let peer = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    client_ip(peer, forwarded, &state.config.limits.trusted_proxies)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// The 429 answer.
pub fn too_many(class: RouteClass, retry_after: Duration) -> Problem {
    Problem::too_many_requests(
        format!(
            "too many {} requests; retry after the time in Retry-After",
            class.name()
        ),
        retry_after,
    )
}

/// Spends one request of `subject`'s budget for `class`; `Err` is the 429.
pub async fn spend(state: &AppState, class: RouteClass, subject: &str) -> Result<(), Box<Problem>> {
    let Some(rate) = state.config.limits.rate(class) else {
        return Ok(());
    };
    match state.limiter.check(class.name(), subject, rate).await {
        Ok(Decision::Allowed) => Ok(()),
        Ok(Decision::Limited { retry_after }) => {
            state.metrics.rate_limited(class.name());
            Err(Box::new(too_many(class, retry_after)))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the rate limiter cannot reach Redis; letting the request through");
            Ok(())
        }
    }
}

/// The lockout key of the account an email names, existing or not (the
/// same answer for both: no account probing). Emails never reach Redis.
fn login_account(email: &str) -> String {
    crate::auth::token_hash(&email.trim().to_lowercase())
}

/// `Err` (429) while the account `email` names is locked out.
pub async fn login_allowed(state: &AppState, email: &str) -> Result<(), Box<Problem>> {
    match state.limiter.locked(&login_account(email)).await {
        Ok(None) => Ok(()),
        Ok(Some(wait)) => {
            state.metrics.rate_limited(RouteClass::Login.name());
            Err(Box::new(Problem::too_many_requests(
                "too many failed logins for this account; retry after the time in Retry-After",
                wait,
            )))
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the login lockout from Redis; letting the login through");
            Ok(())
        }
    }
}

/// Records a login's result for the lockout.
pub async fn login_result(state: &AppState, email: &str, succeeded: bool) {
    let account = login_account(email);
    let done = if succeeded {
        state.limiter.succeeded_login(&account).await
    } else {
        match state
            .limiter
            .failed_login(&account, &state.config.limits.lockout)
            .await
        {
            Ok(Some(lock)) => {
                tracing::info!(
                    lock_seconds = lock.as_secs(),
                    "an account is locked out after failed logins"
                );
                Ok(())
            }
            other => other.map(|_| ()),
        }
    };
    if let Err(e) = done {
        tracing::warn!(error = %e, "cannot record a login in Redis for the lockout");
    }
}

/// Middleware on the API routes: classifies the request (for the account
/// check later) and spends from the client address's budget.
pub async fn by_address(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let class = RouteClass::of(req.method(), &template);
    req.extensions_mut().insert(class);
    let subject = format!("ip:{}", client_of(&state, &req));
    if let Err(p) = spend(&state, class, &subject).await {
        return p.into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use polystream_common::config::Reader;

    #[test]
    fn routes_fall_into_their_class() {
        use RouteClass::*;
        let cases = [
            (Method::POST, "/v1/sessions", Login),
            (Method::DELETE, "/v1/sessions/current", Write),
            (Method::POST, "/v1/users", Registration),
            (Method::POST, "/usuarios", Registration),
            (Method::GET, "/v1/users/{id}", Read),
            (Method::PUT, "/v1/users/{id}/subscription", Write),
            (Method::GET, "/v1/status/{correlation_id}", Status),
            (Method::GET, "/status/{correlation_id}", Status),
            (Method::HEAD, "/v1/titles", Read),
            (Method::POST, "/v1/titles", Write),
        ];
        for (m, path, class) in cases {
            assert_eq!(RouteClass::of(&m, path), class, "{m} {path}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = vec![parse_net("10.0.0.0/8").unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Direct client: the header is the client's own claim.
        assert_eq!(
            client_ip(Some(ip("203.0.113.9")), Some("1.2.3.4"), &trusted),
            Some(ip("203.0.113.9"))
        );
        // Through our proxy: the right-most untrusted hop, not a spoofed left one.
        assert_eq!(
            client_ip(
                Some(ip("10.1.1.1")),
                Some("6.6.6.6, 198.51.100.7, 10.2.2.2"),
                &trusted
            ),
            Some(ip("198.51.100.7"))
        );
        // A proxy without the header: the proxy itself.
        assert_eq!(
            client_ip(Some(ip("10.1.1.1")), None, &trusted),
            Some(ip("10.1.1.1"))
        );
        assert_eq!(client_ip(None, Some("1.2.3.4"), &trusted), None);
    }

    #[test]
    fn settings_are_read_and_bad_ones_named() {
        let mut r = Reader::new([
            ("RATE_LIMIT_LOGIN", "3/s"),
            ("RATE_LIMIT_READS", "off"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1"),
        ]);
        let l = Limits::read(&mut r);
        assert!(r.finish().is_ok());
        assert_eq!(l.login.map(|r| r.to_string()), Some("3/s".into()));
        assert_eq!(l.reads, None);
        assert_eq!(l.registration, Some(Rate::per_minute(10)));
        assert_eq!(l.trusted_proxies.len(), 2);

        let mut r = Reader::new([
            ("RATE_LIMIT_WRITES", "lots"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("LOGIN_LOCKOUT_SECONDS", "1000"),
        ]);
        Limits::read(&mut r);
        let text = r.finish().unwrap_err().to_string();
        for var in [
            "RATE_LIMIT_WRITES",
            "TRUSTED_PROXIES",
            "LOGIN_LOCKOUT_SECONDS",
        ] {
            assert!(text.contains(var), "{var} not named in: {text}");
        }
    }
}
