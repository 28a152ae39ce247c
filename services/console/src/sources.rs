//! Where the console's data comes from (I/O): each call has a short timeout
//! and a failure becomes part of the answer (a component "not ready because
//! …", a count "unavailable: …"), never an error page.

use std::time::Duration;

use futures::future::join_all;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::Config;
use crate::dashboard::{Dashboard, substitute};
use crate::view::{self, Readiness, Series};

const TIMEOUT: Duration = Duration::from_secs(3);
/// The dashboard the charts come from, as the Helm chart ships it.
const OVERVIEW: &str = include_str!("../../../charts/polystream/dashboards/overview.json");
/// The overview panels the console draws (by title), with what each shows.
pub const CHARTS: [(&str, &str); 5] = [
    (
        "Throughput by service",
        "Ingest and processing rate (req/s, events/s)",
    ),
    ("Kafka consumer lag", "Kafka consumer lag (records)"),
    (
        "Request → response latency",
        "Request → response latency p50/p95/p99 (s)",
    ),
    ("Error ratio by service", "Error ratio by service"),
    ("Dead-lettered events by reason", "Dead-lettered events"),
];
/// The window the charts cover, and their resolution.
const CHART_RANGE_SECONDS: i64 = 15 * 60;
const CHART_STEP_SECONDS: i64 = 15;

pub struct Sources {
    config: Config,
    http: reqwest::Client,
    pg: OnceCell<sqlx::PgPool>,
    mongo: OnceCell<mongodb::Database>,
    redis: OnceCell<redis::aio::ConnectionManager>,
}

#[derive(Debug, Serialize)]
pub struct Count {
    pub store: &'static str,
    pub what: &'static str,
    pub count: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Chart {
    pub title: String,
    pub panel: String,
    pub series: Vec<Series>,
    pub error: Option<String>,
}

impl Sources {
    pub fn new(config: Config) -> Self {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            config,
            http,
            pg: OnceCell::new(),
            mongo: OnceCell::new(),
            redis: OnceCell::new(),
        }
    }

    async fn get(&self, url: &str) -> Result<(u16, String), String> {
        let r = self.http.get(url).send().await.map_err(|e| short(&e))?;
        let status = r.status().as_u16();
        let body = r.text().await.map_err(|e| short(&e))?;
        Ok((status, body))
    }

    async fn json(&self, url: &str) -> Result<Value, String> {
        match self.get(url).await? {
            (200..=299, body) => serde_json::from_str(&body).map_err(|e| e.to_string()),
            (status, _) => Err(format!("{url} answered HTTP {status}")),
        }
    }

    /// Every component's readiness, in a fixed order.
    pub async fn components(&self) -> Vec<Readiness> {
        let c = &self.config;
        // (name, base URL, readiness path)
        let mut probes: Vec<(&str, &str, &str)> = vec![
            ("S1 gateway", &c.s1_url, "/ready"),
            ("S2 processor", &c.s2_url, "/ready"),
            ("S3 monitor", &c.s3_url, "/ready"),
            ("Prometheus", &c.prometheus_url, "/-/ready"),
            ("Jaeger", &c.jaeger_url, "/api/services"),
        ];
        if !c.operator_url.is_empty() {
            probes.push(("Operator", &c.operator_url, "/ready"));
        }
        let mut out: Vec<Readiness> =
            join_all(probes.iter().map(|&(name, base, path)| async move {
                match self.get(&format!("{base}{path}")).await {
                    Ok((status, body)) => view::readiness(name, base, status, &body),
                    Err(e) => view::unreachable(name, base, &e),
                }
            }))
            .await;
        // The stores, as the console itself reaches them.
        let (pg, mongo, redis, kafka, opensearch) = tokio::join!(
            self.pg(),
            self.mongo(),
            self.redis(),
            kafka_listening(&c.kafka_bootstrap_servers),
            self.opensearch_health()
        );
        let store = |name: &str, addr: &str, r: Result<(), String>| match r {
            Ok(()) => view::readiness(name, addr, 200, ""),
            Err(e) => view::unreachable(name, addr, &e),
        };
        let redact = polystream_common::config::redact_url;
        out.push(store(
            "PostgreSQL",
            &redact(&c.database_url),
            pg.map(|_| ()),
        ));
        out.push(store("MongoDB", &redact(&c.mongodb_uri), mongo.map(|_| ())));
        out.push(store("Redis", &redact(&c.redis_url), redis.map(|_| ())));
        out.push(store("Kafka", &c.kafka_bootstrap_servers, kafka));
        if let Some(health) = opensearch {
            out.push(store("OpenSearch", &redact(&c.opensearch_url), health));
        }
        out
    }

    /// `None` when no OpenSearch is configured; red is not ready.
    async fn opensearch_health(&self) -> Option<Result<(), String>> {
        let base = &self.config.opensearch_url;
        if base.is_empty() {
            return None;
        }
        Some(match self.json(&format!("{base}/_cluster/health")).await {
            Ok(v) if v["status"] == "red" => Err("cluster status red".to_owned()),
            Ok(_) => Ok(()),
            Err(e) => Err(polystream_common::config::redact_url(&e)),
        })
    }

    async fn pg(&self) -> Result<&sqlx::PgPool, String> {
        self.pg
            .get_or_try_init(|| async {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(TIMEOUT)
                    .connect(&self.config.database_url)
                    .await
                    .map_err(|e| short(&e))?;
                Ok(pool)
            })
            .await
    }

    async fn mongo(&self) -> Result<&mongodb::Database, String> {
        self.mongo
            .get_or_try_init(|| async {
                let db = tokio::time::timeout(
                    TIMEOUT,
                    polystream_stores::mongo::connect(&self.config.mongodb_uri),
                )
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| short(&e))?;
                Ok(db)
            })
            .await
    }

    async fn redis(&self) -> Result<&redis::aio::ConnectionManager, String> {
        self.redis
            .get_or_try_init(|| async {
                let client =
                    redis::Client::open(self.config.redis_url.as_str()).map_err(|e| short(&e))?;
                tokio::time::timeout(TIMEOUT, polystream_stores::keys::connect(client))
                    .await
                    .map_err(|_| "timed out".to_owned())?
                    .map_err(|e| short(&e))
            })
            .await
    }

    /// Rows, documents and keys per store.
    pub async fn counts(&self) -> Vec<Count> {
        let mut out = Vec::new();
        for (what, sql) in [
            ("users", "SELECT count(*) FROM users"),
            ("subscriptions", "SELECT count(*) FROM subscriptions"),
            ("payments", "SELECT count(*) FROM payments"),
            ("preferences", "SELECT count(*) FROM preferences"),
        ] {
            let r = match self.pg().await {
                Ok(pool) => {
                    tokio::time::timeout(TIMEOUT, sqlx::query_scalar::<_, i64>(sql).fetch_one(pool))
                        .await
                        .map_err(|_| "timed out".to_owned())
                        .and_then(|r| r.map_err(|e| short(&e)))
                }
                Err(e) => Err(e),
            };
            out.push(count("PostgreSQL", what, r));
        }
        use polystream_stores::mongo as m;
        for (what, coll) in [
            ("titles", m::TITLES),
            ("title relations", m::TITLE_RELATIONS),
            ("views", m::VIEWS),
            ("ratings", m::RATINGS),
            ("recommendations", m::RECOMMENDATIONS),
        ] {
            let r = match self.mongo().await {
                Ok(db) => tokio::time::timeout(
                    TIMEOUT,
                    db.collection::<mongodb::bson::Document>(coll)
                        .estimated_document_count(),
                )
                .await
                .map_err(|_| "timed out".to_owned())
                .and_then(|r| r.map_err(|e| short(&e)))
                .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                Err(e) => Err(e),
            };
            out.push(count("MongoDB", what, r));
        }
        let r = match self.redis().await {
            Ok(conn) => {
                let mut conn = conn.clone();
                tokio::time::timeout(TIMEOUT, redis::cmd("DBSIZE").query_async::<i64>(&mut conn))
                    .await
                    .map_err(|_| "timed out".to_owned())
                    .and_then(|r| r.map_err(|e| short(&e)))
            }
            Err(e) => Err(e),
        };
        out.push(count("Redis", "keys", r));
        let base = &self.config.opensearch_url;
        if !base.is_empty() {
            let url = format!("{base}/{}-*/_count", self.config.audit_index_prefix);
            let r = self.json(&url).await.and_then(|v| {
                v["count"]
                    .as_i64()
                    .ok_or_else(|| "no count in OpenSearch's answer".to_owned())
            });
            let r = r.map_err(|e| polystream_common::config::redact_url(&e));
            out.push(count("OpenSearch", "audit documents", r));
        }
        out
    }

    /// Recent flows, unanswered commands and dead letters, from S3.
    pub async fn flows(&self) -> Value {
        let s3 = &self.config.s3_url;
        let urls = [
            format!("{s3}/v1/audit?limit=400"),
            format!("{s3}/v1/unanswered"),
            format!("{s3}/v1/audit?role=dead_letter&limit=20"),
        ];
        let (recent, unanswered, dead) = tokio::join!(
            self.json(&urls[0]),
            self.json(&urls[1]),
            self.json(&urls[2]),
        );
        let events = |v: &Value| v["events"].as_array().cloned().unwrap_or_default();
        let failed = |e: String| json!({"error": e});
        json!({
            "flows": match &recent {
                Ok(v) => json!(view::flows(&events(v), 50)),
                Err(e) => failed(e.clone()),
            },
            "unanswered": match unanswered {
                Ok(v) => v,
                Err(e) => failed(e),
            },
            "dead_letters": match dead {
                Ok(v) => json!(events(&v).iter().map(|e| json!({
                    "time": e["time"],
                    "correlation_id": e["correlation_id"],
                    "type": e["type"],
                    "reason": e["headers"]["dlq_reason"],
                    "offset": e["offset"],
                })).collect::<Vec<_>>()),
                Err(e) => failed(e),
            },
        })
    }

    /// One flow's audit trail (S3) and the spans of its traces (Jaeger).
    pub async fn trail(&self, correlation_id: &str) -> Value {
        let tags = json!({"polystream.correlation_id": correlation_id}).to_string();
        let jaeger = reqwest::Url::parse_with_params(
            &format!("{}/api/traces", self.config.jaeger_url),
            &[
                ("service", "polystream-s1-gateway"),
                ("tags", tags.as_str()),
                ("lookback", "6h"),
                ("limit", "5"),
            ],
        );
        let trail_url = format!("{}/v1/audit/{correlation_id}", self.config.s3_url);
        let (trail, traces) = tokio::join!(self.json(&trail_url), async {
            let url = jaeger.map_err(|e| short(&e))?;
            let r = self.http.get(url).send().await.map_err(|e| short(&e))?;
            r.json::<Value>().await.map_err(|e| short(&e))
        });
        json!({
            "correlation_id": correlation_id,
            "events": match trail {
                Ok(v) => v["events"].clone(),
                Err(e) => json!({"error": e}),
            },
            "spans": match traces {
                Ok(v) => json!(spans(&v)),
                Err(e) => json!({"error": e}),
            },
        })
    }

    /// The chosen overview panels over the last 15 minutes.
    pub async fn charts(&self) -> Vec<Chart> {
        let dashboard = match Dashboard::parse("overview.json", OVERVIEW) {
            Ok((d, _)) => d,
            Err(e) => {
                return vec![Chart {
                    title: "charts".into(),
                    panel: String::new(),
                    series: Vec::new(),
                    error: Some(e),
                }];
            }
        };
        let end = chrono::Utc::now().timestamp();
        let start = end - CHART_RANGE_SECONDS;
        join_all(CHARTS.iter().map(|(panel, title)| {
            let found = dashboard.panels.iter().find(|p| p.title == *panel);
            async move {
                let mut chart = Chart {
                    title: (*title).to_owned(),
                    panel: (*panel).to_owned(),
                    series: Vec::new(),
                    error: None,
                };
                let Some(p) = found else {
                    chart.error = Some(format!("no panel {panel:?} in overview.json"));
                    return chart;
                };
                for q in &p.queries {
                    match self.query_range(&q.expr, start, end).await {
                        Ok(answer) => chart.series.extend(view::series(&answer, &q.legend)),
                        Err(e) => chart.error = Some(e),
                    }
                }
                chart
            }
        }))
        .await
    }

    async fn query_range(&self, expr: &str, start: i64, end: i64) -> Result<Value, String> {
        let interval = format!("{}s", CHART_STEP_SECONDS * 4);
        let expr = substitute(
            expr,
            &[
                ("namespace", self.config.namespace.as_str()),
                ("__rate_interval", interval.as_str()),
            ],
        )?;
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query_range", self.config.prometheus_url),
            &[
                ("query", expr.as_str()),
                ("start", &start.to_string()),
                ("end", &end.to_string()),
                ("step", &CHART_STEP_SECONDS.to_string()),
            ],
        )
        .map_err(|e| short(&e))?;
        let r = self.http.get(url).send().await.map_err(|e| short(&e))?;
        let status = r.status();
        let body: Value = r.json().await.map_err(|e| short(&e))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!(
                "Prometheus: {}",
                body["error"].as_str().unwrap_or(status.as_str())
            ))
        }
    }
}

/// Whether any broker accepts a TCP connection: the console has no Kafka
/// client; S1, S2 and S3 report their own Kafka readiness above.
async fn kafka_listening(servers: &str) -> Result<(), String> {
    let mut last = "no broker listed".to_owned();
    for server in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(server)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last = format!("{server}: {e}"),
            Err(_) => last = format!("{server}: timed out"),
        }
    }
    Err(last)
}

fn count(store: &'static str, what: &'static str, r: Result<i64, String>) -> Count {
    let (count, error) = match r {
        Ok(n) => (Some(n), None),
        Err(e) => (None, Some(e)),
    };
    Count {
        store,
        what,
        count,
        error,
    }
}

/// Jaeger's traces as a flat span list, oldest first: service, operation,
/// start (µs since the epoch) and duration (µs).
fn spans(answer: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for trace in answer["data"].as_array().into_iter().flatten() {
        let processes = &trace["processes"];
        for s in trace["spans"].as_array().into_iter().flatten() {
            let service = s["processID"]
                .as_str()
                .and_then(|p| processes[p]["serviceName"].as_str())
                .unwrap_or("unknown");
            out.push(json!({
                "trace_id": s["traceID"],
                "service": service,
                "operation": s["operationName"],
                "start_us": s["startTime"],
                "duration_us": s["duration"],
            }));
        }
    }
    out.sort_by_key(|s| s["start_us"].as_i64().unwrap_or_default());
    out
}

/// An error's text, bounded so one bad answer cannot flood the page.
fn short(e: &dyn std::fmt::Display) -> String {
    let mut s = e.to_string();
    if s.len() > 300 {
        s.truncate(300);
        s.push('…');
    }
    s
}
