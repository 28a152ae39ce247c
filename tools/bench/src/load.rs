//! HTTP load: closed loop (N clients, each sending its next request when the
//! last one answered) and open loop (requests sent on a fixed schedule, each
//! latency measured from when it was due, so a slow server cannot hide its
//! queueing: no coordinated omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

/// One request's result: the status, or `None` when it failed to complete.
pub type Sent = Option<u16>;
/// A response body, kept only when the request asked for it.
pub type Body = Option<serde_json::Value>;
/// Sends request number `i`; returns the status and the body.
pub type Request = Arc<dyn Fn(u64) -> BoxFuture<'static, (Sent, Body)> + Send + Sync>;

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub sent: u64,
    /// 2xx answers.
    pub ok: u64,
    /// Answers other than 2xx, and requests that failed.
    pub errors: u64,
    /// Due (open loop) but not sent because `max_in_flight` were pending.
    pub skipped: u64,
    pub seconds: f64,
    /// Latencies of the 2xx answers, microseconds, sorted.
    pub latencies: Vec<u64>,
    /// Status → count, for the errors.
    pub error_statuses: Vec<(String, u64)>,
}

impl Stats {
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ok as f64 / self.seconds
        } else {
            0.0
        }
    }
    pub fn p(&self, q: f64) -> Option<Duration> {
        percentile(&self.latencies, q).map(Duration::from_micros)
    }
}

/// The `q` quantile (0..=1) of sorted samples, nearest rank.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn tally(results: Vec<(Sent, u64)>, seconds: f64, skipped: u64) -> Stats {
    let mut s = Stats {
        seconds,
        skipped,
        ..Stats::default()
    };
    let mut statuses = std::collections::BTreeMap::<String, u64>::new();
    for (status, micros) in results {
        s.sent += 1;
        match status {
            Some(c) if (200..300).contains(&c) => {
                s.ok += 1;
                s.latencies.push(micros);
            }
            other => {
                s.errors += 1;
                let key = other.map_or("no answer".to_owned(), |c| c.to_string());
                *statuses.entry(key).or_default() += 1;
            }
        }
    }
    s.latencies.sort_unstable();
    s.error_statuses = statuses.into_iter().collect();
    s
}

/// `clients` loops, each sending back to back for `duration`.
pub async fn closed(request: Request, clients: usize, duration: Duration) -> Stats {
    let start = Instant::now();
    let deadline = start + duration;
    let counter = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (request, counter) = (request.clone(), counter.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                while Instant::now() < deadline {
                    let i = counter.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    let (status, _) = request(i).await;
                    out.push((status, t.elapsed().as_micros() as u64));
                }
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(mut v) = t.await {
            all.append(&mut v);
        }
    }
    tally(all, start.elapsed().as_secs_f64(), 0)
}

/// What an open-loop request produced, with when it was due.
pub struct Scheduled {
    pub due: Instant,
    pub status: Sent,
    pub answered: Instant,
    pub body: Body,
}

/// Sends `rate` requests per second for `duration`, each on its schedule
/// whatever the others are doing, at most `max_in_flight` pending (the rest
/// are counted as skipped). Returns every request's result.
pub async fn open(
    request: Request,
    rate: u64,
    duration: Duration,
    max_in_flight: usize,
) -> (Vec<Scheduled>, u64) {
    let start = Instant::now();
    let total = rate * duration.as_secs();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let permits = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let mut tasks = Vec::with_capacity(total as usize);
    let mut skipped = 0;
    for i in 0..total {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let (status, body) = request(i).await;
            drop(permit);
            Scheduled {
                due,
                status,
                answered: Instant::now(),
                body,
            }
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(s) = t.await {
            out.push(s);
        }
    }
    (out, skipped)
}

/// Open-loop results as [`Stats`]: latency from when each request was due.
pub fn open_stats(results: &[Scheduled], skipped: u64, duration: Duration) -> Stats {
    let v = results
        .iter()
        .map(|s| {
            (
                s.status,
                s.answered.saturating_duration_since(s.due).as_micros() as u64,
            )
        })
        .collect();
    tally(v, duration.as_secs_f64(), skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn errors_are_counted_by_status_and_kept_out_of_latency() {
        let s = tally(
            vec![(Some(200), 5), (Some(503), 1), (None, 9), (Some(202), 3)],
            2.0,
            4,
        );
        assert_eq!((s.sent, s.ok, s.errors, s.skipped), (4, 2, 2, 4));
        assert_eq!(s.latencies, [3, 5]);
        assert_eq!(s.rps(), 1.0);
        assert_eq!(
            s.error_statuses,
            [("503".to_owned(), 1), ("no answer".to_owned(), 1)]
        );
    }
}
