//! What the client saw for every request, what the stores hold for it, and
//! the verdict: one row of the results table. Pure, so every rule is
//! unit-tested.
//!
//! Every command carries a value the client chose and that is unique in the
//! run (an email, a payment amount, a view's seconds, a (user, title) rating,
//! a user's preferences once per scenario), so its effect is found in the
//! store even when the client never saw the answer.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Where a command's effect is found, by the values the client chose.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EffectKey {
    /// A registration: `users.email` (PostgreSQL).
    User { email: String },
    /// A payment: `payments (user_id, amount_cents)` (PostgreSQL).
    Payment { user_id: i64, amount_cents: i64 },
    /// A view: `views (user_id, seconds_watched)` (MongoDB).
    View { user_id: i64, seconds: u32 },
    /// A rating: `ratings` document `{user}:{title}` with these stars, rated
    /// during the scenario (MongoDB).
    Rating {
        user_id: i64,
        title_id: i64,
        stars: u8,
    },
    /// Preferences: the user's row holds these values, changed during the
    /// scenario (PostgreSQL).
    Preferences {
        user_id: i64,
        language: String,
        notifications: bool,
        theme: String,
    },
}

impl EffectKey {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::User { .. } => "register",
            Self::Payment { .. } => "payment",
            Self::View { .. } => "view",
            Self::Rating { .. } => "rating",
            Self::Preferences { .. } => "preferences",
        }
    }
}

/// What the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// `202` with this correlation id.
    Accepted { correlation_id: String },
    /// `503`: the command was refused, so it must have no effect.
    Unavailable,
    /// `504`: Kafka may have stored the command without acknowledging it, so
    /// its effect may or may not exist (but never twice).
    Unknown,
    /// The connection was refused: the request never reached S1.
    Refused,
    /// No answer (reset mid-request, timeout): the effect may or may not exist.
    NoAnswer,
    /// Any other status (a bug in this tool or in S1): must have no effect.
    Other(u16),
    /// Not sent through S1 but written straight to the topic as a poison
    /// record: S2 must dead-letter it, never apply it.
    Poison,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub key: EffectKey,
    pub seen: Seen,
}

/// What the stores hold for one scenario's commands.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// How many times each key's effect is in its store (absent: zero).
    pub effects: HashMap<EffectKey, u32>,
    /// Correlation ids whose status in Redis is final (completed or failed).
    pub final_status: HashSet<String>,
    /// Effects in the run's namespace that no request of the run explains.
    pub unexplained: u64,
}

/// One row of the results table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub scenario: String,
    pub sent: u64,
    pub accepted: u64,
    pub unavailable: u64,
    /// `504`s: sent to Kafka, never acknowledged, outcome unknown.
    pub unknown: u64,
    /// Requests without an answer (connection reset, timeout) or refused.
    pub no_answer: u64,
    pub effects: u64,
    /// Accepted commands without their effect or without a final status.
    pub lost: u64,
    /// Commands whose effect is there more than once.
    pub duplicated: u64,
    /// Effects of requests not accepted (503, refused, other status), and
    /// effects no request explains.
    pub unexpected: u64,
    /// Partitions whose consumer group did not reach the end.
    pub stalled: u64,
    pub drain_secs: Option<f64>,
    /// Audit documents minus events, counted over this scenario (0 = equal).
    pub audit_diff: i64,
    /// Problems found besides the counts, for the notes under the table.
    pub notes: Vec<String>,
}

impl Row {
    pub fn failed(&self) -> bool {
        self.lost > 0
            || self.duplicated > 0
            || self.unexpected > 0
            || self.stalled > 0
            || self.audit_diff != 0
            || self.drain_secs.is_none()
    }
}

/// The verdict on one scenario's requests.
pub fn evaluate(scenario: &str, sent: &[Sent], found: &Found) -> Row {
    let mut row = Row {
        scenario: scenario.to_owned(),
        sent: sent.len() as u64,
        unexpected: found.unexplained,
        ..Row::default()
    };
    let mut lost_by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for s in sent {
        let n = u64::from(found.effects.get(&s.key).copied().unwrap_or(0));
        match &s.seen {
            Seen::Accepted { correlation_id } => {
                row.accepted += 1;
                row.effects += n.min(1);
                if n == 0 || !found.final_status.contains(correlation_id) {
                    row.lost += 1;
                    *lost_by_kind.entry(s.key.kind()).or_default() += 1;
                }
            }
            Seen::Unknown => {
                row.unknown += 1;
                row.effects += n.min(1);
            }
            Seen::NoAnswer | Seen::Refused => {
                row.no_answer += 1;
                row.effects += n.min(1);
                // A refused connection never reached S1: not even one effect.
                if matches!(s.seen, Seen::Refused) && n > 0 {
                    row.unexpected += 1;
                }
            }
            Seen::Unavailable | Seen::Other(_) | Seen::Poison => {
                if s.seen == Seen::Unavailable {
                    row.unavailable += 1;
                }
                if n > 0 {
                    row.unexpected += 1;
                }
            }
        }
        if n > 1 {
            row.duplicated += 1;
        }
    }
    if !lost_by_kind.is_empty() {
        let parts: Vec<String> = lost_by_kind
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        row.notes
            .push(format!("lost by kind: {}", parts.join(", ")));
    }
    let other: Vec<String> = sent
        .iter()
        .filter_map(|s| match s.seen {
            Seen::Other(code) => Some(code.to_string()),
            _ => None,
        })
        .collect();
    if !other.is_empty() {
        row.notes.push(format!(
            "{} answers neither 202 nor 503: {}",
            other.len(),
            summarize(&other)
        ));
    }
    row
}

/// `["400", "400", "500"]` → `400 ×2, 500 ×1`.
fn summarize(items: &[String]) -> String {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for i in items {
        *counts.entry(i.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The results table, Markdown (readable on a terminal too), with the notes
/// of failed rows under it.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | sent | accepted | 503s | 504s | no answer | effects | lost | duplicated | \
         unexpected | stalled | audit | drain seconds | result |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        let drain = r
            .drain_secs
            .map_or_else(|| "timeout".to_owned(), |s| format!("{s:.1}"));
        let audit = if r.audit_diff == 0 {
            "equal".to_owned()
        } else {
            format!("{:+}", r.audit_diff)
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.sent,
            r.accepted,
            r.unavailable,
            r.unknown,
            r.no_answer,
            r.effects,
            r.lost,
            r.duplicated,
            r.unexpected,
            r.stalled,
            audit,
            drain,
            if r.failed() { "FAIL" } else { "ok" }
        ));
    }
    let notes: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.notes
                .iter()
                .map(move |n| format!("- {}: {n}", r.scenario))
        })
        .collect();
    if !notes.is_empty() {
        out.push_str("\nNotes:\n");
        out.push_str(&notes.join("\n"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pay(amount: i64, seen: Seen) -> Sent {
        Sent {
            key: EffectKey::Payment {
                user_id: 7,
                amount_cents: amount,
            },
            seen,
        }
    }

    fn accepted(id: &str) -> Seen {
        Seen::Accepted {
            correlation_id: id.into(),
        }
    }

    fn found(effects: &[(i64, u32)], finals: &[&str]) -> Found {
        Found {
            effects: effects
                .iter()
                .map(|(a, n)| {
                    (
                        EffectKey::Payment {
                            user_id: 7,
                            amount_cents: *a,
                        },
                        *n,
                    )
                })
                .collect(),
            final_status: finals.iter().map(|s| (*s).to_owned()).collect(),
            unexplained: 0,
        }
    }

    #[test]
    fn an_accepted_command_needs_its_effect_once_and_a_final_status() {
        let sent = [
            pay(1, accepted("a")),
            pay(2, accepted("b")),
            pay(3, accepted("c")),
            pay(4, accepted("d")),
        ];
        // 1 fine; 2 effect without final status; 3 no effect; 4 twice.
        let f = found(&[(1, 1), (2, 1), (4, 2)], &["a", "c", "d"]);
        let row = evaluate("x", &sent, &f);
        assert_eq!(
            (
                row.sent,
                row.accepted,
                row.effects,
                row.lost,
                row.duplicated
            ),
            (4, 4, 3, 2, 1)
        );
        assert!(row.failed());
        assert_eq!(row.notes, ["lost by kind: payment: 2"]);
    }

    #[test]
    fn a_lost_answer_may_have_zero_or_one_effect_never_two() {
        let sent = [
            pay(1, Seen::NoAnswer),
            pay(2, Seen::NoAnswer),
            pay(3, Seen::NoAnswer),
        ];
        let row = evaluate("kill-s1", &sent, &found(&[(2, 1), (3, 2)], &[]));
        assert_eq!(
            (row.no_answer, row.effects, row.lost, row.duplicated),
            (3, 2, 0, 1)
        );
    }

    #[test]
    fn a_504_may_have_zero_or_one_effect_never_two() {
        let sent = [
            pay(1, Seen::Unknown),
            pay(2, Seen::Unknown),
            pay(3, Seen::Unknown),
        ];
        let row = evaluate("stop-kafka", &sent, &found(&[(2, 1), (3, 2)], &[]));
        assert_eq!(
            (row.unknown, row.effects, row.unexpected, row.duplicated),
            (3, 2, 0, 1)
        );
        assert!(row.failed());
    }

    #[test]
    fn refused_requests_and_503s_must_have_no_effect() {
        let sent = [
            pay(1, Seen::Unavailable),
            pay(2, Seen::Unavailable),
            pay(3, Seen::Refused),
            pay(4, Seen::Other(500)),
        ];
        let row = evaluate("stop-kafka", &sent, &found(&[(2, 1), (3, 1)], &[]));
        assert_eq!((row.unavailable, row.no_answer, row.unexpected), (2, 1, 2));
        assert_eq!(row.notes, ["1 answers neither 202 nor 503: 500 ×1"]);
        assert!(row.failed());
    }

    #[test]
    fn a_clean_scenario_passes_and_the_table_says_so() {
        let sent = [pay(1, accepted("a")), pay(2, Seen::Unavailable)];
        let mut row = evaluate("stop-redis", &sent, &found(&[(1, 1)], &["a"]));
        assert!(row.failed(), "no drain time yet: not a pass");
        row.drain_secs = Some(3.25);
        assert!(!row.failed());
        let t = table(&[row.clone()]);
        assert!(
            t.contains("| stop-redis | 2 | 1 | 1 | 0 | 0 | 1 | 0 | 0 | 0 | 0 | equal | 3.2 | ok |"),
            "{t}"
        );
        row.stalled = 1;
        row.audit_diff = -4;
        let t = table(&[row]);
        assert!(t.contains("| 1 | -4 | 3.2 | FAIL |"), "{t}");
    }

    #[test]
    fn unexplained_effects_fail_the_row() {
        let mut f = found(&[], &[]);
        f.unexplained = 2;
        let row = evaluate("x", &[], &f);
        assert_eq!(row.unexpected, 2);
        assert!(row.failed());
    }
}
