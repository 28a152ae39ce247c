//! Request → response flow tracking, as a pure state machine: the consumer
//! feeds it commands and outcomes, and a timer calls [`FlowTracker::expire`].
//!
//! Memory is bounded: a flow is forgotten once answered, and at most `cap`
//! flows are pending (the oldest is dropped, with a warning, beyond that).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A command still waiting for its outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingFlow {
    pub correlation_id: String,
    pub command_id: Option<String>,
    pub command_type: Option<String>,
    /// The command's own time.
    pub command_time: DateTime<Utc>,
    /// When S3 saw the command; the timeout runs from here, so a backlog
    /// replayed after a restart is not flagged before its outcomes are read.
    pub seen_at: DateTime<Utc>,
    /// The request's trace (from the command's `traceparent`), to jump from a
    /// flagged flow or a latency exemplar to the trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// A command flagged for having no outcome after the timeout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unanswered {
    #[serde(flatten)]
    pub flow: PendingFlow,
    pub flagged_at: DateTime<Utc>,
}

/// A command paired with its outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Completed {
    pub correlation_id: String,
    pub command_type: Option<String>,
    pub trace_id: Option<String>,
    pub outcome_status: String,
    /// Outcome time − command time.
    pub latency: chrono::Duration,
    /// The outcome came after the flow had been flagged.
    pub late: bool,
}

/// Aggregate latency of paired flows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct FlowStats {
    pub completed: u64,
    pub latency_ms_sum: i64,
    pub latency_ms_max: i64,
    pub flagged: u64,
    pub evicted: u64,
}

#[derive(Debug)]
pub struct FlowTracker {
    timeout: chrono::Duration,
    cap: usize,
    pending: HashMap<String, PendingFlow>,
    /// Arrival order of `pending` keys (may hold keys already answered; skipped lazily).
    order: VecDeque<String>,
    /// Outcomes that arrived before their command (different topics are read
    /// independently), with their status and time.
    early: HashMap<String, (String, DateTime<Utc>)>,
    early_order: VecDeque<String>,
    flagged: HashMap<String, Unanswered>,
    flagged_order: VecDeque<String>,
    /// Recently answered flows, so a redelivered command is not tracked again
    /// (and later flagged) after its outcome was seen.
    done: HashMap<String, ()>,
    done_order: VecDeque<String>,
    stats: FlowStats,
}

impl FlowTracker {
    pub fn new(timeout: Duration, cap: usize) -> Self {
        Self {
            timeout: chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX),
            cap: cap.max(1),
            pending: HashMap::new(),
            order: VecDeque::new(),
            early: HashMap::new(),
            early_order: VecDeque::new(),
            flagged: HashMap::new(),
            flagged_order: VecDeque::new(),
            done: HashMap::new(),
            done_order: VecDeque::new(),
            stats: FlowStats::default(),
        }
    }

    /// A command was seen. A redelivered command that is already pending,
    /// flagged or (with an early outcome) answered is not tracked twice.
    pub fn on_command(&mut self, flow: PendingFlow) -> Option<Completed> {
        let id = flow.correlation_id.clone();
        if self.pending.contains_key(&id)
            || self.flagged.contains_key(&id)
            || self.done.contains_key(&id)
        {
            return None;
        }
        if let Some((status, time)) = self.early.remove(&id) {
            return Some(self.complete(&flow, status, time, false));
        }
        self.pending.insert(id.clone(), flow);
        self.order.push_back(id);
        while self.pending.len() > self.cap {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if self.pending.remove(&oldest).is_some() {
                self.stats.evicted += 1;
                tracing::warn!(correlation_id = %oldest, "flow tracker full: forgetting the oldest pending flow");
            }
        }
        self.compact();
        None
    }

    /// An outcome (or a dead-lettering) for `correlation_id` was seen.
    pub fn on_outcome(
        &mut self,
        correlation_id: &str,
        status: &str,
        time: DateTime<Utc>,
    ) -> Option<Completed> {
        if let Some(flow) = self.pending.remove(correlation_id) {
            return Some(self.complete(&flow, status.into(), time, false));
        }
        if let Some(u) = self.flagged.remove(correlation_id) {
            return Some(self.complete(&u.flow, status.into(), time, true));
        }
        if self
            .early
            .insert(correlation_id.into(), (status.into(), time))
            .is_none()
        {
            self.early_order.push_back(correlation_id.into());
        }
        while self.early.len() > self.cap {
            let Some(oldest) = self.early_order.pop_front() else {
                break;
            };
            self.early.remove(&oldest);
        }
        None
    }

    /// Flags every pending flow seen more than the timeout before `now`, and
    /// returns the newly flagged ones.
    pub fn expire(&mut self, now: DateTime<Utc>) -> Vec<Unanswered> {
        let mut newly = Vec::new();
        while let Some(id) = self.order.front() {
            let Some(flow) = self.pending.get(id) else {
                self.order.pop_front();
                continue;
            };
            if now - flow.seen_at < self.timeout {
                break;
            }
            let id = id.clone();
            self.order.pop_front();
            if let Some(flow) = self.pending.remove(&id) {
                let u = Unanswered {
                    flow,
                    flagged_at: now,
                };
                self.flagged.insert(id.clone(), u.clone());
                self.flagged_order.push_back(id);
                self.stats.flagged += 1;
                newly.push(u);
            }
        }
        while self.flagged.len() > self.cap {
            let Some(oldest) = self.flagged_order.pop_front() else {
                break;
            };
            self.flagged.remove(&oldest);
        }
        newly
    }

    /// Currently flagged flows, oldest first.
    pub fn unanswered(&self) -> Vec<Unanswered> {
        self.flagged_order
            .iter()
            .filter_map(|id| self.flagged.get(id).cloned())
            .collect()
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Flows flagged and still without an outcome.
    pub fn flagged_count(&self) -> usize {
        self.flagged.len()
    }

    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    fn complete(
        &mut self,
        flow: &PendingFlow,
        status: String,
        time: DateTime<Utc>,
        late: bool,
    ) -> Completed {
        let latency = time - flow.command_time;
        let ms = latency.num_milliseconds();
        if self.done.insert(flow.correlation_id.clone(), ()).is_none() {
            self.done_order.push_back(flow.correlation_id.clone());
        }
        while self.done.len() > self.cap {
            let Some(oldest) = self.done_order.pop_front() else {
                break;
            };
            self.done.remove(&oldest);
        }
        self.stats.completed += 1;
        self.stats.latency_ms_sum = self.stats.latency_ms_sum.saturating_add(ms);
        self.stats.latency_ms_max = self.stats.latency_ms_max.max(ms);
        self.compact();
        Completed {
            correlation_id: flow.correlation_id.clone(),
            command_type: flow.command_type.clone(),
            trace_id: flow.trace_id.clone(),
            outcome_status: status,
            latency,
            late,
        }
    }

    /// Drops stale keys from the order queues so they stay proportional to the maps.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.pending.len() + 64 {
            let pending = &self.pending;
            self.order.retain(|id| pending.contains_key(id));
        }
        if self.flagged_order.len() > 2 * self.flagged.len() + 64 {
            let flagged = &self.flagged;
            self.flagged_order.retain(|id| flagged.contains_key(id));
        }
        if self.early_order.len() > 2 * self.early.len() + 64 {
            let early = &self.early;
            self.early_order.retain(|id| early.contains_key(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn cmd(id: &str, at: i64) -> PendingFlow {
        PendingFlow {
            correlation_id: id.into(),
            command_id: Some(format!("cmd-{id}")),
            command_type: Some("polystream.title.rated.v1".into()),
            command_time: t(at),
            seen_at: t(at),
            trace_id: None,
        }
    }

    #[test]
    fn pairs_a_command_with_its_outcome_and_measures_latency() {
        let mut f = FlowTracker::new(Duration::from_secs(30), 100);
        assert_eq!(f.on_command(cmd("a", 0)), None);
        let done = f.on_outcome("a", "completed", t(2)).unwrap();
        assert_eq!(done.latency, chrono::Duration::seconds(2));
        assert!(!done.late);
        assert_eq!(f.pending_count(), 0);
        assert!(f.expire(t(100)).is_empty());
        assert_eq!(f.stats().completed, 1);
        assert_eq!(f.stats().latency_ms_max, 2000);
    }

    #[test]
    fn flags_commands_without_outcome_after_the_timeout() {
        let mut f = FlowTracker::new(Duration::from_secs(30), 100);
        f.on_command(cmd("a", 0));
        f.on_command(cmd("b", 20));
        assert!(f.expire(t(29)).is_empty());
        let flagged = f.expire(t(30));
        assert_eq!(flagged.len(), 1);
        assert_eq!(flagged[0].flow.correlation_id, "a");
        assert_eq!(f.unanswered().len(), 1);
        assert_eq!(f.flagged_count(), 1);
        // A late outcome clears the flag and still records the latency.
        let late = f.on_outcome("a", "failed", t(45)).unwrap();
        assert!(late.late);
        assert_eq!(late.latency, chrono::Duration::seconds(45));
        assert_eq!(
            late.command_type.as_deref(),
            Some("polystream.title.rated.v1")
        );
        assert!(f.unanswered().is_empty());
        assert_eq!(f.flagged_count(), 0);
        assert_eq!(f.expire(t(60)).len(), 1);
        assert_eq!(f.unanswered()[0].flow.correlation_id, "b");
    }

    #[test]
    fn an_outcome_before_its_command_still_pairs() {
        let mut f = FlowTracker::new(Duration::from_secs(30), 100);
        assert_eq!(f.on_outcome("a", "completed", t(3)), None);
        let done = f.on_command(cmd("a", 1)).unwrap();
        assert_eq!(done.latency, chrono::Duration::seconds(2));
        assert_eq!(f.pending_count(), 0);
    }

    #[test]
    fn a_command_redelivered_after_its_outcome_is_not_flagged() {
        let mut f = FlowTracker::new(Duration::from_secs(30), 100);
        f.on_command(cmd("a", 0));
        f.on_outcome("a", "completed", t(1)).unwrap();
        assert_eq!(f.on_command(cmd("a", 0)), None);
        assert_eq!(f.pending_count(), 0);
        assert!(f.expire(t(100)).is_empty());
    }

    #[test]
    fn redelivered_commands_are_tracked_once() {
        let mut f = FlowTracker::new(Duration::from_secs(30), 100);
        f.on_command(cmd("a", 0));
        f.on_command(cmd("a", 0));
        assert_eq!(f.pending_count(), 1);
        assert_eq!(f.expire(t(31)).len(), 1);
        f.on_command(cmd("a", 0));
        assert_eq!(f.pending_count(), 0);
    }

    #[test]
    fn memory_is_bounded() {
        let mut f = FlowTracker::new(Duration::from_secs(30), 3);
        for i in 0..10 {
            f.on_command(cmd(&i.to_string(), i));
            f.on_outcome(&format!("orphan-{i}"), "completed", t(i));
        }
        assert_eq!(f.pending_count(), 3);
        assert_eq!(f.stats().evicted, 7);
        assert!(f.early.len() <= 3);
        assert!(f.order.len() <= 2 * 3 + 64);
        let flagged = f.expire(t(1000));
        let ids: Vec<_> = flagged
            .iter()
            .map(|u| u.flow.correlation_id.as_str())
            .collect();
        assert_eq!(ids, ["7", "8", "9"]);
    }
}
