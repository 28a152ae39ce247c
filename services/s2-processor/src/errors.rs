//! What went wrong while handling an event, and what the processor does.
//!
//! A business failure (duplicate email, unknown user…) is not an error here:
//! it is a final outcome, published like a success. What remains is a
//! [`Fault`], classified once for every service by `polystream_stores::fault`:
//! a transient one (a store restarting, a timeout) is retried with backoff
//! without bound while the partition waits, because skipping would lose a
//! command; a permanent one (the store rejects this command's data) is
//! retried a bounded number of times ([`PERMANENT_ATTEMPTS`] by default), then
//! the command fails with `store_rejected` and is dead-lettered.

use std::time::Duration;

pub use polystream_stores::fault::{
    Class, Fault, PgClass, classify_pg, mongo_fault, mongo_is_duplicate_key, pg_fault, redis_fault,
};

/// Attempts of a command that meets a permanent fault before it fails.
pub const PERMANENT_ATTEMPTS: u32 = 3;

/// Kafka could not acknowledge an outcome or dead letter: always worth retrying.
pub fn kafka_fault(e: impl std::fmt::Display) -> Fault {
    Fault::transient("kafka", e.to_string())
}

/// What to do after an attempt failed with a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then try again.
    RetryIn(Duration),
    /// Give up: the fault is permanent and the attempts are used up.
    GiveUp,
}

/// Retry policy of one event: transient faults forever with backoff,
/// permanent ones `max_permanent` attempts in all; pure, so it is unit tested.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    backoff: Backoff,
    permanent_seen: u32,
    max_permanent: u32,
}

impl RetryPolicy {
    pub fn new(max_permanent: u32) -> Self {
        Self {
            backoff: Backoff::default(),
            permanent_seen: 0,
            max_permanent: max_permanent.max(1),
        }
    }

    pub fn after(&mut self, fault: &Fault) -> Next {
        if !fault.is_transient() {
            self.permanent_seen += 1;
            if self.permanent_seen >= self.max_permanent {
                return Next::GiveUp;
            }
        }
        Next::RetryIn(self.backoff.next_delay())
    }
}

/// Exponential backoff, doubling from `initial` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub const INITIAL: Duration = Duration::from_millis(100);
    pub const MAX: Duration = Duration::from_secs(10);

    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { next: initial, max }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Self::INITIAL, Self::MAX)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000]);
    }

    #[test]
    fn transient_faults_retry_forever_permanent_ones_give_up_after_the_bound() {
        let mut p = RetryPolicy::new(3);
        let outage = Fault::transient("postgresql", "connection refused");
        for _ in 0..50 {
            assert!(matches!(p.after(&outage), Next::RetryIn(_)));
        }
        let bad = Fault::permanent("postgresql", "SQLSTATE 22021");
        assert!(matches!(p.after(&bad), Next::RetryIn(_)));
        // An outage in between does not reset the count of rejections.
        assert!(matches!(p.after(&outage), Next::RetryIn(_)));
        assert!(matches!(p.after(&bad), Next::RetryIn(_)));
        assert_eq!(p.after(&bad), Next::GiveUp);
        assert_eq!(RetryPolicy::new(0).after(&bad), Next::GiveUp);
        assert!(kafka_fault("timed out").is_transient());
    }
}
