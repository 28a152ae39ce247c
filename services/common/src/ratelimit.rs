//! Rate limits that hold across replicas, and lockout after failed logins.
//!
//! A limit is a GCRA bucket (the "generic cell rate algorithm": one stored
//! timestamp per key, no counters to reset) kept in Redis and updated by one
//! script, so every gateway behind a Service spends the same budget and a
//! client cannot multiply it by spreading requests over replicas. The clock
//! is Redis's own, so replicas with skewed clocks still agree.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use redis::aio::ConnectionManager;

/// `N/unit`: at most N requests per second, minute or hour, of which N may
/// arrive at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub period: Duration,
}

impl Rate {
    pub const fn per_minute(limit: u32) -> Self {
        Self {
            limit,
            period: Duration::from_secs(60),
        }
    }

    /// Milliseconds between requests at the steady rate.
    fn interval_ms(&self) -> u64 {
        (self.period.as_millis() as u64 / u64::from(self.limit.max(1))).max(1)
    }

    /// How far ahead of now the bucket may run: the burst beyond the first request.
    fn tolerance_ms(&self) -> u64 {
        self.interval_ms() * u64::from(self.limit.max(1) - 1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            _ => return write!(f, "{}/{}s", self.limit, self.period.as_secs()),
        };
        write!(f, "{}/{unit}", self.limit)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a rate like 10/min (units: s, min, h)");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let limit: u32 = n.trim().parse().map_err(|_| bad())?;
        if limit == 0 {
            return Err(format!(
                "'{s}' allows nothing; use 'off' to turn the limit off"
            ));
        }
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Self { limit, period })
    }
}

/// A limit setting: a [`Rate`], or `off` (no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<Rate>);

impl FromStr for Limit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        s.parse().map(|r| Self(Some(r)))
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(r) => r.fmt(f),
            None => f.write_str("off"),
        }
    }
}

/// What a bucket answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Limited { retry_after: Duration },
}

/// The GCRA step: `tat` is when the bucket is next empty at the steady rate
/// (absent: empty now). Returns the decision and the new `tat` to store when
/// allowed. The Redis script below does exactly this, atomically.
pub fn gcra(now_ms: u64, tat_ms: Option<u64>, rate: Rate) -> (Decision, Option<u64>) {
    let interval = rate.interval_ms();
    let tolerance = rate.tolerance_ms();
    let tat = tat_ms.unwrap_or(now_ms).max(now_ms);
    let ahead = tat - now_ms;
    if ahead > tolerance {
        let wait = Duration::from_millis(ahead - tolerance);
        return (Decision::Limited { retry_after: wait }, None);
    }
    (Decision::Allowed, Some(tat + interval))
}

// KEYS[1]: the bucket; ARGV[1]: interval ms; ARGV[2]: burst tolerance ms.
// Returns 0 when allowed, else the milliseconds to wait.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then
  return tat - now - tolerance
end
local new = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', string.format('%.0f', new - now))
return 0
";

/// Failed logins per account: from the `threshold`-th failure within
/// `window`, the account is locked for `base`, doubling with each further
/// failure up to `max`. A success clears the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub threshold: u32,
    pub window: Duration,
    pub base: Duration,
    pub max: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            threshold: 5,
            window: Duration::from_secs(15 * 60),
            base: Duration::from_secs(30),
            max: Duration::from_secs(15 * 60),
        }
    }
}

impl LockoutPolicy {
    /// How long `failures` failures in a row lock the account for.
    pub fn lock_for(&self, failures: u32) -> Option<Duration> {
        if self.threshold == 0 || failures < self.threshold {
            return None;
        }
        let doublings = (failures - self.threshold).min(20);
        Some(self.base.saturating_mul(1 << doublings).min(self.max))
    }
}

/// The Redis side of limits and lockouts. `scope` separates the budgets of
/// deployments that share one Redis (the operator uses the platform's name).
#[derive(Clone)]
pub struct Limiter {
    redis: ConnectionManager,
    scope: String,
    script: std::sync::Arc<redis::Script>,
}

impl Limiter {
    pub fn new(redis: ConnectionManager, scope: &str) -> Self {
        Self {
            redis,
            scope: scope.to_owned(),
            script: std::sync::Arc::new(redis::Script::new(GCRA_SCRIPT)),
        }
    }

    /// Spends one request from `subject`'s bucket of `class`.
    pub async fn check(
        &self,
        class: &str,
        subject: &str,
        rate: Rate,
    ) -> redis::RedisResult<Decision> {
        let interval = rate.interval_ms();
        let tolerance = rate.tolerance_ms();
        let wait: u64 = self
            .script
            .key(format!("ratelimit:{}:{class}:{subject}", self.scope))
            .arg(interval)
            .arg(tolerance)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(if wait == 0 {
            Decision::Allowed
        } else {
            Decision::Limited {
                retry_after: Duration::from_millis(wait),
            }
        })
    }

    fn lock_key(&self, account: &str) -> String {
        format!("login-lock:{}:{account}", self.scope)
    }

    fn failures_key(&self, account: &str) -> String {
        format!("login-failures:{}:{account}", self.scope)
    }

    /// How long `account` stays locked, if it is.
    pub async fn locked(&self, account: &str) -> redis::RedisResult<Option<Duration>> {
        let ms: i64 = redis::cmd("PTTL")
            .arg(self.lock_key(account))
            .query_async(&mut self.redis.clone())
            .await?;
        Ok((ms > 0).then(|| Duration::from_millis(ms as u64)))
    }

    /// Counts a failed login and locks the account when the policy says so;
    /// returns the lock's length.
    pub async fn failed_login(
        &self,
        account: &str,
        policy: &LockoutPolicy,
    ) -> redis::RedisResult<Option<Duration>> {
        let mut redis = self.redis.clone();
        let (failures,): (u32,) = redis::pipe()
            .atomic()
            .incr(self.failures_key(account), 1)
            .pexpire(self.failures_key(account), policy.window.as_millis() as i64)
            .ignore()
            .query_async(&mut redis)
            .await?;
        let lock = policy.lock_for(failures);
        if let Some(d) = lock {
            let _: () = redis::cmd("SET")
                .arg(self.lock_key(account))
                .arg(failures)
                .arg("PX")
                .arg(d.as_millis() as u64)
                .query_async(&mut redis)
                .await?;
        }
        Ok(lock)
    }

    /// A successful login forgets earlier failures.
    pub async fn succeeded_login(&self, account: &str) -> redis::RedisResult<()> {
        redis::cmd("DEL")
            .arg(self.failures_key(account))
            .query_async(&mut self.redis.clone())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        assert_eq!("10/min".parse::<Rate>().unwrap(), Rate::per_minute(10));
        assert_eq!(
            " 5 / s ".parse::<Rate>().unwrap(),
            Rate {
                limit: 5,
                period: Duration::from_secs(1)
            }
        );
        assert_eq!("100/h".parse::<Rate>().unwrap().to_string(), "100/h");
        assert_eq!("OFF".parse::<Limit>().unwrap(), Limit(None));
        assert_eq!(Limit(None).to_string(), "off");
        for bad in ["10", "ten/min", "10/day", "0/min", "-1/s", ""] {
            let err = bad.parse::<Limit>().unwrap_err();
            assert!(err.contains(bad.trim()) || bad.is_empty(), "{bad}: {err}");
        }
    }

    #[test]
    fn a_burst_of_the_limit_passes_then_the_steady_rate() {
        let rate = Rate::per_minute(3); // one per 20 s, three at once
        let mut tat = None;
        for _ in 0..3 {
            let (d, next) = gcra(1_000, tat, rate);
            assert_eq!(d, Decision::Allowed);
            tat = next;
        }
        let (d, next) = gcra(1_000, tat, rate);
        assert_eq!(
            d,
            Decision::Limited {
                retry_after: Duration::from_secs(20)
            }
        );
        assert_eq!(next, None, "a refused request spends nothing");
        // After the wait, exactly one more.
        let (d, next) = gcra(21_000, tat, rate);
        assert_eq!(d, Decision::Allowed);
        assert!(matches!(
            gcra(21_000, next, rate).0,
            Decision::Limited { .. }
        ));
        // Idle for a period: the whole burst again.
        let mut tat = next;
        for _ in 0..3 {
            let (d, n) = gcra(200_000, tat, rate);
            assert_eq!(d, Decision::Allowed);
            tat = n;
        }
    }

    #[test]
    fn lockout_starts_at_the_threshold_doubles_and_is_capped() {
        let p = LockoutPolicy::default();
        assert_eq!(p.lock_for(4), None);
        assert_eq!(p.lock_for(5), Some(Duration::from_secs(30)));
        assert_eq!(p.lock_for(6), Some(Duration::from_secs(60)));
        assert_eq!(p.lock_for(9), Some(Duration::from_secs(480)));
        assert_eq!(p.lock_for(10), Some(Duration::from_secs(900)));
        assert_eq!(p.lock_for(u32::MAX), Some(Duration::from_secs(900)));
        let off = LockoutPolicy { threshold: 0, ..p };
        assert_eq!(off.lock_for(100), None);
    }
}
