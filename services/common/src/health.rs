//! `/health` (the process is alive) and `/ready` (its dependencies answer), as
//! every service serves them and the Kubernetes probes call them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One named dependency check, e.g. `kafka` or `redis`.
pub struct Check {
    pub name: &'static str,
    run: Box<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl Check {
    pub fn new<F, Fut>(name: &'static str, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name,
            run: Box::new(move || Box::pin(f())),
        }
    }
}

impl Check {
    /// Kafka answers a metadata request (run off the async threads: the
    /// client call blocks).
    pub fn kafka(publisher: impl crate::kafka::Deliver + Clone + Send + Sync + 'static) -> Self {
        Self::new("kafka", move || {
            let publisher = publisher.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    publisher
                        .probe(Duration::from_secs(2))
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())?
            }
        })
    }

    /// Redis answers PING.
    pub fn redis(con: redis::aio::ConnectionManager) -> Self {
        Self::new("redis", move || {
            let mut con = con.clone();
            async move {
                redis::cmd("PING")
                    .query_async::<String>(&mut con)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct CheckResult {
    pub name: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<CheckResult>,
}

/// Runs every check concurrently, each bounded by `timeout`.
pub async fn evaluate(checks: &[Check], timeout: Duration) -> Readiness {
    let results = futures::future::join_all(checks.iter().map(|c| async move {
        let outcome = match tokio::time::timeout(timeout, (c.run)()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {}ms", timeout.as_millis())),
        };
        CheckResult {
            name: c.name,
            ok: outcome.is_ok(),
            error: outcome.err(),
        }
    }))
    .await;
    Readiness {
        ready: results.iter().all(|r| r.ok),
        checks: results,
    }
}

/// Routes for `/health` and `/ready`.
pub fn router(checks: Vec<Check>) -> Router {
    Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/ready", get(ready))
        .with_state(Arc::new(checks))
}

async fn ready(State(checks): State<Arc<Vec<Check>>>) -> (StatusCode, Json<Readiness>) {
    let r = evaluate(&checks, Duration::from_secs(2)).await;
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn not_ready_names_the_failing_dependency() {
        let checks = vec![
            Check::new("redis", || async { Ok(()) }),
            Check::new("kafka", || async { Err("broker down".to_string()) }),
            Check::new("slow", || async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            }),
        ];
        let r = evaluate(&checks, Duration::from_millis(50)).await;
        assert!(!r.ready);
        assert!(r.checks[0].ok);
        assert_eq!(r.checks[1].error.as_deref(), Some("broker down"));
        assert_eq!(r.checks[2].error.as_deref(), Some("no answer within 50ms"));
    }
}
