//! S1's public HTTP API, as a client sees it.

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub user_id: i64,
}

/// Why a command did not complete, short enough to group in a summary.
pub type Failure = String;

impl Api {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(40))
            .pool_max_idle_per_host(64)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub async fn check_reachable(&self) -> anyhow::Result<()> {
        let r = self
            .http
            .get(self.url("/health"))
            .send()
            .await
            .with_context(|| format!("S1 is not reachable at {}", self.base))?;
        if !r.status().is_success() {
            bail!("S1 at {} answered {} on /health", self.base, r.status());
        }
        Ok(())
    }

    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<Session> {
        let r = self
            .http
            .post(self.url("/v1/sessions"))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await
            .with_context(|| format!("logging in as {email} at {}", self.base))?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status != StatusCode::CREATED {
            bail!(
                "logging in as {email}: HTTP {status}: {}",
                problem_text(&body)
            );
        }
        Ok(Session {
            token: body["token"].as_str().unwrap_or_default().to_owned(),
            user_id: body["user_id"].as_i64().unwrap_or_default(),
        })
    }

    /// One request; the status (None without a response), body and latency.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (Option<StatusCode>, Value, Duration) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let start = Instant::now();
        match req.send().await {
            Ok(r) => {
                let status = r.status();
                let body = r.json().await.unwrap_or(Value::Null);
                (Some(status), body, start.elapsed())
            }
            Err(e) => (None, Value::String(e.to_string()), start.elapsed()),
        }
    }

    /// Sends a command and follows its status URL until it completes or fails:
    /// the accepted body (with the allocated ids) and the outcome's `result`.
    pub async fn command(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(Value, Value), Failure> {
        let (status, accepted, _) = self.call(method, path, token, body).await;
        match status {
            Some(StatusCode::ACCEPTED) => {}
            Some(s) => return Err(format!("HTTP {}: {}", s.as_u16(), problem_text(&accepted))),
            None => return Err(format!("no response: {}", accepted.as_str().unwrap_or("?"))),
        }
        let Some(status_url) = accepted["status_url"].as_str() else {
            return Err("202 without status_url".into());
        };
        let sep = if status_url.contains('?') { '&' } else { '?' };
        let poll = format!("{status_url}{sep}wait=10");
        // Bounded: six long polls, about a minute.
        for _ in 0..6 {
            let (s, outcome, _) = self.call(Method::GET, &poll, token, None).await;
            if s != Some(StatusCode::OK) {
                return Err(format!("status URL answered {s:?}"));
            }
            match outcome["state"].as_str() {
                Some("completed") => return Ok((accepted, outcome["result"].clone())),
                Some("failed") => {
                    return Err(format!(
                        "failed: {}: {}",
                        outcome["code"].as_str().unwrap_or("?"),
                        outcome["reason"].as_str().unwrap_or("?")
                    ));
                }
                _ => {}
            }
        }
        Err("still pending after 60 s".into())
    }
}

/// The most useful line of a problem+json body.
pub fn problem_text(body: &Value) -> String {
    let mut s = body["detail"]
        .as_str()
        .or_else(|| body["title"].as_str())
        .unwrap_or("no detail")
        .to_owned();
    if let Some(params) = body["invalid-params"].as_array() {
        let names: Vec<String> = params
            .iter()
            .map(|p| {
                format!(
                    "{} ({})",
                    p["name"].as_str().unwrap_or("?"),
                    p["reason"].as_str().unwrap_or("?")
                )
            })
            .collect();
        s = format!("{s}: {}", names.join(", "));
    }
    s
}
