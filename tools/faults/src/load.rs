//! Open-loop load through S1: commands at a fixed rate whatever S1 answers
//! (the demo tool's schedule), each recorded with what the client saw and
//! the key its effect is found by.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use polystream_demo_data::rng::Rng;
use polystream_demo_data::stats::{due_at, planned};
use reqwest::Method;
use serde_json::{Value, json};

use crate::tally::{EffectKey, Seen, Sent};

/// A user of the pool: logged in, sends the per-user commands.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub token: String,
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub token: Option<String>,
    pub body: Value,
    pub key: EffectKey,
}

/// The command mix, in percent.
const MIX: [(&str, u32); 5] = [
    ("register", 10),
    ("payment", 25),
    ("view", 30),
    ("rating", 20),
    ("preferences", 15),
];
const LANGUAGES: [&str; 4] = ["pt-BR", "en-US", "es-AR", "fr-FR"];
const THEMES: [&str; 3] = ["light", "dark", "system"];

/// Chooses each next command so its effect is countable: unique emails,
/// amounts and view seconds across the run; within a scenario at most one
/// preferences change per user and one rating per (user, title). Pure.
pub struct Planner {
    rng: Rng,
    tag: String,
    users: Vec<User>,
    titles: Vec<i64>,
    /// Unique across the run.
    seq: u64,
    prefs_used: HashSet<i64>,
    rated: HashSet<(i64, i64)>,
}

impl Planner {
    pub fn new(seed: u64, tag: &str, users: Vec<User>, titles: Vec<i64>) -> Self {
        Self {
            rng: Rng::new(seed),
            tag: tag.to_owned(),
            users,
            titles,
            seq: 0,
            prefs_used: HashSet::new(),
            rated: HashSet::new(),
        }
    }

    /// A new scenario: preferences and ratings may be sent again.
    pub fn new_scenario(&mut self) {
        self.prefs_used.clear();
        self.rated.clear();
    }

    fn kind(&mut self) -> &'static str {
        let total: u32 = MIX.iter().map(|(_, w)| w).sum();
        let mut x = self.rng.below(total as usize) as u32;
        for (k, w) in MIX {
            if x < w {
                return k;
            }
            x -= w;
        }
        "payment"
    }

    pub fn next_request(&mut self) -> Request {
        self.seq += 1;
        let seq = self.seq;
        let user = self.rng.pick(&self.users).clone();
        let base = format!("/v1/users/{}", user.id);
        let token = Some(user.token.clone());
        let mut kind = self.kind();
        if kind == "preferences" && self.prefs_used.contains(&user.id) {
            kind = "payment";
        }
        let title = *self.rng.pick(&self.titles);
        if kind == "rating" && self.rated.contains(&(user.id, title)) {
            kind = "view";
        }
        match kind {
            "register" => {
                let email = format!("{}-{seq}@faults.polystream.local", self.tag);
                Request {
                    method: Method::POST,
                    path: "/v1/users".into(),
                    token: None,
                    body: json!({"name": format!("Fault User {seq}"), "email": email,
                                 "password": format!("faults-pw-{seq}")}),
                    key: EffectKey::User { email },
                }
            }
            "view" => {
                let seconds = u32::try_from(seq).unwrap_or(u32::MAX);
                Request {
                    method: Method::POST,
                    path: format!("{base}/views"),
                    token,
                    body: json!({"title_id": title, "seconds_watched": seconds,
                                 "position_pct": 50.0}),
                    key: EffectKey::View {
                        user_id: user.id,
                        seconds,
                    },
                }
            }
            "rating" => {
                self.rated.insert((user.id, title));
                let stars = self.rng.range(1, 5) as u8;
                Request {
                    method: Method::PUT,
                    path: format!("{base}/ratings/{title}"),
                    token,
                    body: json!({"stars": stars}),
                    key: EffectKey::Rating {
                        user_id: user.id,
                        title_id: title,
                        stars,
                    },
                }
            }
            "preferences" => {
                self.prefs_used.insert(user.id);
                let language = (*self.rng.pick(&LANGUAGES)).to_owned();
                let theme = (*self.rng.pick(&THEMES)).to_owned();
                let notifications = self.rng.chance(0.5);
                Request {
                    method: Method::PUT,
                    path: format!("{base}/preferences"),
                    token,
                    body: json!({"language": language, "notifications": notifications,
                                 "theme": theme}),
                    key: EffectKey::Preferences {
                        user_id: user.id,
                        language,
                        notifications,
                        theme,
                    },
                }
            }
            _ => {
                // Unique per run: the payment is found by (user, amount).
                let amount_cents = 100_000 + seq as i64;
                Request {
                    method: Method::POST,
                    path: format!("{base}/payments"),
                    token,
                    body: json!({"amount_cents": amount_cents, "currency": "BRL",
                                 "method": "pix", "status": "approved"}),
                    key: EffectKey::Payment {
                        user_id: user.id,
                        amount_cents,
                    },
                }
            }
        }
    }
}

/// What the client saw, from the status code and body of an answer.
pub fn classify(status: u16, body: &Value) -> Seen {
    match status {
        202 => match body["correlation_id"].as_str() {
            Some(id) => Seen::Accepted {
                correlation_id: id.to_owned(),
            },
            // A 202 without its body: the answer was cut short.
            None => Seen::NoAnswer,
        },
        503 => Seen::Unavailable,
        504 => Seen::Unknown,
        other => Seen::Other(other),
    }
}

/// Sends requests to S1.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// Requests sent and not yet answered (S1 is killed while this is > 0).
    pub in_flight: Arc<AtomicUsize>,
}

impl Client {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            // Longer than S1's Kafka acknowledgement timeout (5 s).
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()?,
            base: base.to_owned(),
            in_flight: Arc::default(),
        })
    }

    pub async fn send(&self, r: &Request) -> Seen {
        let mut req = self
            .http
            .request(r.method.clone(), format!("{}{}", self.base, r.path))
            .json(&r.body);
        if let Some(t) = &r.token {
            req = req.bearer_auth(t);
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let seen = match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                match res.text().await {
                    Ok(text) => {
                        classify(status, &serde_json::from_str(&text).unwrap_or(Value::Null))
                    }
                    Err(_) if status == 202 => Seen::NoAnswer,
                    Err(_) => classify(status, &Value::Null),
                }
            }
            Err(e) if e.is_connect() => Seen::Refused,
            Err(_) => Seen::NoAnswer,
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        seen
    }
}

/// Sends `rate` commands per second for `duration` (open loop: a slow answer
/// never delays the next request), then waits for every answer.
pub async fn run(
    client: &Client,
    planner: Arc<Mutex<Planner>>,
    rate: f64,
    duration: Duration,
) -> Vec<Sent> {
    let n = planned(rate, duration);
    let results: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    let start = tokio::time::Instant::now();
    for i in 0..n {
        tokio::time::sleep_until(start + due_at(i, rate)).await;
        let Ok(req) = planner.lock().map(|mut p| p.next_request()) else {
            break;
        };
        let client = client.clone();
        let results = results.clone();
        tasks.spawn(async move {
            let seen = client.send(&req).await;
            if let Ok(mut r) = results.lock() {
                r.push(Sent { key: req.key, seen });
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    results.lock().map(|r| r.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planner() -> Planner {
        let users = (1..=3)
            .map(|id| User {
                id,
                token: format!("t{id}"),
            })
            .collect();
        Planner::new(42, "faults-t", users, vec![10, 11])
    }

    #[test]
    fn every_effect_key_is_unique_within_a_scenario() {
        let mut p = planner();
        let keys: Vec<EffectKey> = (0..500).map(|_| p.next_request().key).collect();
        let distinct: HashSet<&EffectKey> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
        let prefs = keys.iter().filter(|k| k.kind() == "preferences").count();
        assert!(prefs <= 3, "one preferences change per user: {prefs}");
        let ratings = keys.iter().filter(|k| k.kind() == "rating").count();
        assert!(ratings <= 6, "one rating per (user, title): {ratings}");
        for kind in ["register", "payment", "view"] {
            assert!(keys.iter().any(|k| k.kind() == kind), "{kind} in the mix");
        }
        p.new_scenario();
        assert!(
            (0..200).any(|_| p.next_request().key.kind() == "preferences"),
            "a new scenario may change preferences again"
        );
    }

    #[test]
    fn requests_carry_the_values_their_effect_is_found_by() {
        let mut p = planner();
        for _ in 0..100 {
            let r = p.next_request();
            match &r.key {
                EffectKey::User { email } => {
                    assert_eq!(r.body["email"], email.as_str());
                    assert!(r.token.is_none());
                }
                EffectKey::Payment {
                    user_id,
                    amount_cents,
                } => {
                    assert_eq!(r.path, format!("/v1/users/{user_id}/payments"));
                    assert_eq!(r.body["amount_cents"], *amount_cents);
                }
                EffectKey::View { seconds, .. } => {
                    assert_eq!(r.body["seconds_watched"], *seconds);
                }
                EffectKey::Rating {
                    user_id,
                    title_id,
                    stars,
                } => {
                    assert_eq!(r.path, format!("/v1/users/{user_id}/ratings/{title_id}"));
                    assert_eq!(r.body["stars"], *stars);
                }
                EffectKey::Preferences { theme, .. } => {
                    assert_eq!(r.body["theme"], theme.as_str());
                }
            }
        }
    }

    #[test]
    fn answers_are_classified_by_what_the_client_can_know() {
        let ok = classify(202, &json!({"correlation_id": "c1"}));
        assert_eq!(
            ok,
            Seen::Accepted {
                correlation_id: "c1".into()
            }
        );
        assert_eq!(classify(202, &Value::Null), Seen::NoAnswer);
        assert_eq!(classify(503, &Value::Null), Seen::Unavailable);
        assert_eq!(classify(504, &Value::Null), Seen::Unknown);
        assert_eq!(classify(500, &Value::Null), Seen::Other(500));
    }
}
