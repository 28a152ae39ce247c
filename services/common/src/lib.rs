//! Shared foundations of the Polystream services: one obvious home for each
//! concern they have in common.
//!
//! - [`cli`]: `--help` (every variable read, with its default) and `--version`;
//! - [`config`]: settings from the environment, errors naming the variable;
//! - [`events`]: the event contract on Kafka;
//! - [`generated`]: stable text for committed, generated artifacts;
//! - [`kafka`]: durable producing (with a producer span and trace context),
//!   manual-commit consumers, process spans, consumer lag, topic creation;
//! - [`instrument`]: the HTTP server span and metric, store-call spans and metric;
//! - [`metrics`]: the Prometheus registry and shared families, `/metrics`, `METRICS_ADDR`;
//! - [`status`]: a command's status in Redis, with waiting;
//! - [`health`]: `/health` and `/ready`;
//! - [`problem`]: RFC 9457 error responses;
//! - [`progress`]: a consumer group's real lag per partition, and stalls;
//! - [`ratelimit`]: rate limits shared by every replica (Redis), login lockout;
//! - [`server`]: the HTTP server with its limits (header, request and idle
//!   timeouts, connection cap);
//! - [`telemetry`]: start-up of JSON logs and OTLP traces (`OTEL_*`), correlation ids.

pub mod cli;
pub mod config;
pub mod events;
pub mod generated;
pub mod health;
pub mod instrument;
pub mod kafka;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod progress;
pub mod ratelimit;
pub mod server;
pub mod status;
pub mod telemetry;

/// The global allocator each service binary declares
/// (`#[global_allocator] static ALLOCATOR: Allocator = Allocator;`):
/// mimalloc. With glibc's malloc a quarter of S1's CPU under load went to
/// `malloc`/`free` (perf; docs/performance.md).
pub use mimalloc::MiMalloc as Allocator;
