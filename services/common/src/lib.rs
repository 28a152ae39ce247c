//! Shared foundations of the Polystream services: one obvious home for each
//! concern they have in common.
//!
//! - [`config`]: settings from the environment, errors naming the variable;
//! - [`events`]: the event contract on Kafka;
//! - [`generated`]: stable text for committed, generated artifacts;
//! - [`kafka`]: durable producing, manual-commit consumers, topic creation;
//! - [`metrics`]: the Prometheus registry served on `/metrics`;
//! - [`status`]: a command's status in Redis, with waiting;
//! - [`health`]: `/health` and `/ready`;
//! - [`problem`]: RFC 9457 error responses;
//! - [`telemetry`]: logging start-up.

pub mod config;
pub mod events;
pub mod generated;
pub mod health;
pub mod kafka;
pub mod metrics;
pub mod problem;
pub mod status;
pub mod telemetry;
