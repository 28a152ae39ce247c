//! Integration tests: S1 runs in-process on an ephemeral port against the real
//! local servers, each test with its own Kafka topic. A missing server fails
//! the test with its name (start it with `./dev up`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod authz;
mod catalog;
mod harness;
mod idempotency;
mod input;
mod legacy;
mod limits;
mod observability;
mod platform;
mod seed_replay;
mod server_limits;
