//! A client of S1's public API for the tests that drive the platform
//! through it: requests with an optional bearer token, logging in, and
//! waiting for a command's outcome on its status URL.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long a login may keep failing (the admin is seeded at start-up) and
/// a command may stay pending.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// S1 at `base` (e.g. `http://127.0.0.1:8080`).
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            http: reqwest::Client::new(),
        }
    }

    /// `method path` with `body` as JSON: the status and the body (JSON, or
    /// the text as a JSON string when it is not JSON).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("S1 at {}: {path}: {e}", self.base));
        let status = res.status().as_u16();
        let text = res
            .text()
            .await
            .unwrap_or_else(|e| panic!("S1 at {}: {path}: reading the body: {e}", self.base));
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A session token for `email`, retrying until [`DEADLINE`] (a user
    /// registered through a command exists once S2 has processed it).
    pub async fn login(&self, email: &str, password: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (status, body) = self
                .send(
                    reqwest::Method::POST,
                    "/v1/sessions",
                    None,
                    Some(json!({"email": email, "password": password})),
                )
                .await;
            if status == 201
                && let Some(token) = body["token"].as_str()
            {
                return token.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "cannot log in as {email}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Long-polls the status URL of an accepted command (its 202 body)
    /// until it is no longer pending; fails after [`DEADLINE`].
    pub async fn outcome(&self, accepted: &Value) -> Value {
        let url = accepted["status_url"]
            .as_str()
            .unwrap_or_else(|| panic!("no status_url in the 202: {accepted}"));
        let url = if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_owned()
        };
        let deadline = Instant::now() + DEADLINE;
        loop {
            let res = self
                .http
                .get(format!("{url}?wait=10"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("S1 at {url}: {e}"));
            let body: Value = res
                .json()
                .await
                .unwrap_or_else(|e| panic!("S1 at {url}: not a status: {e}"));
            if body["state"] != "pending" {
                return body;
            }
            assert!(Instant::now() < deadline, "no outcome within 60s: {body}");
        }
    }
}
