//! Load-test bookkeeping: pacing, percentiles and the results table. Pure.

use std::collections::BTreeMap;
use std::time::Duration;

/// When request `i` is due, counted from the start: an open-loop schedule, so
/// a slow server does not lower the offered rate (no coordinated omission).
pub fn due_at(i: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / rate)
}

/// How many requests a run of `duration` at `rate` per second sends.
pub fn planned(rate: f64, duration: Duration) -> u64 {
    (rate * duration.as_secs_f64()).floor() as u64
}

/// Nearest-rank percentile of sorted samples; `None` when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// What one kind of request did.
#[derive(Debug, Default, Clone)]
pub struct KindStats {
    pub latencies: Vec<Duration>,
    /// HTTP status, or "error" when there was no response.
    pub statuses: BTreeMap<String, u64>,
}

impl KindStats {
    pub fn record(&mut self, status: Option<u16>, latency: Duration) {
        self.latencies.push(latency);
        let key = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        *self.statuses.entry(key).or_default() += 1;
    }
}

pub struct Report {
    pub kinds: BTreeMap<&'static str, KindStats>,
    pub elapsed: Duration,
    pub rate: f64,
    pub planned: u64,
    /// Requests not sent because too many were already in flight.
    pub skipped: u64,
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1}", d.as_secs_f64() * 1000.0),
    )
}

impl Report {
    /// The results as a Markdown table (also readable on a terminal).
    pub fn markdown(&self) -> String {
        let total: usize = self.kinds.values().map(|k| k.latencies.len()).sum();
        let secs = self.elapsed.as_secs_f64().max(f64::EPSILON);
        let mut out = format!(
            "Target {:.1} req/s, planned {}, sent {}, skipped {} (too many in flight), \
             elapsed {:.1} s, achieved {:.1} req/s\n\n",
            self.rate,
            self.planned,
            total,
            self.skipped,
            secs,
            total as f64 / secs
        );
        out.push_str("| kind | requests | req/s | status codes | p50 ms | p95 ms | p99 ms |\n");
        out.push_str("|---|---:|---:|---|---:|---:|---:|\n");
        let mut all = Vec::new();
        let mut all_statuses: BTreeMap<String, u64> = BTreeMap::new();
        for (kind, k) in &self.kinds {
            let mut l = k.latencies.clone();
            l.sort_unstable();
            all.extend_from_slice(&l);
            for (s, n) in &k.statuses {
                *all_statuses.entry(s.clone()).or_default() += n;
            }
            out.push_str(&row(kind, &l, &k.statuses, secs));
        }
        all.sort_unstable();
        out.push_str(&row("**all**", &all, &all_statuses, secs));
        out
    }
}

fn row(kind: &str, sorted: &[Duration], statuses: &BTreeMap<String, u64>, secs: f64) -> String {
    let codes = statuses
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "| {kind} | {} | {:.1} | {codes} | {} | {} | {} |\n",
        sorted.len(),
        sorted.len() as f64 / secs,
        ms(percentile(sorted, 50.0)),
        ms(percentile(sorted, 95.0)),
        ms(percentile(sorted, 99.0)),
    )
}

/// The request mix: 60% reads, 40% writes.
pub const MIX: &[(&str, u32)] = &[
    ("read_title", 30),
    ("read_ranking", 15),
    ("read_views", 15),
    ("write_view", 20),
    ("write_rating", 12),
    ("write_preferences", 8),
];

/// The kind for a uniform draw in `[0, 1)`.
pub fn kind_for(u: f64) -> &'static str {
    let total: u32 = MIX.iter().map(|(_, w)| w).sum();
    let mut x = u * f64::from(total);
    for (kind, w) in MIX {
        if x < f64::from(*w) {
            return kind;
        }
        x -= f64::from(*w);
    }
    MIX[MIX.len() - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_vec(xs: &[u64]) -> Vec<Duration> {
        xs.iter().map(|&x| Duration::from_millis(x)).collect()
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v = ms_vec(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&v, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&v, 95.0), Some(Duration::from_millis(95)));
        assert_eq!(percentile(&v, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&v, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&v, 0.0), Some(Duration::from_millis(1)));
        let one = ms_vec(&[7]);
        assert_eq!(percentile(&one, 99.0), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&[], 50.0), None);
        let small = ms_vec(&[1, 2, 3, 4]);
        assert_eq!(percentile(&small, 50.0), Some(Duration::from_millis(2)));
        assert_eq!(percentile(&small, 95.0), Some(Duration::from_millis(4)));
    }

    #[test]
    fn schedule_is_evenly_spaced_and_bounded_by_the_duration() {
        assert_eq!(due_at(0, 20.0), Duration::ZERO);
        assert_eq!(due_at(1, 20.0), Duration::from_millis(50));
        assert_eq!(due_at(40, 20.0), Duration::from_secs(2));
        assert_eq!(planned(20.0, Duration::from_secs(10)), 200);
        assert_eq!(planned(0.5, Duration::from_secs(3)), 1);
        let d = Duration::from_secs(10);
        let n = planned(33.3, d);
        assert!(
            due_at(n - 1, 33.3) < d,
            "the last request is due within the run"
        );
    }

    #[test]
    fn the_mix_is_sixty_percent_reads() {
        let n = 10_000;
        let reads = (0..n)
            .filter(|i| kind_for(*i as f64 / n as f64).starts_with("read_"))
            .count();
        assert_eq!(reads, 6_000);
        assert_eq!(kind_for(0.0), "read_title");
        assert_eq!(kind_for(0.999_999), "write_preferences");
    }

    #[test]
    fn report_counts_statuses_and_totals() {
        let mut k = KindStats::default();
        k.record(Some(200), Duration::from_millis(10));
        k.record(Some(200), Duration::from_millis(20));
        k.record(None, Duration::from_millis(30));
        let mut kinds = BTreeMap::new();
        kinds.insert("read_title", k);
        let r = Report {
            kinds,
            elapsed: Duration::from_secs(1),
            rate: 3.0,
            planned: 3,
            skipped: 0,
        };
        let md = r.markdown();
        assert!(
            md.contains("| read_title | 3 | 3.0 | 200: 2, error: 1 | 20.0 | 30.0 | 30.0 |"),
            "{md}"
        );
        assert!(md.contains("| **all** | 3 |"), "{md}");
    }
}
