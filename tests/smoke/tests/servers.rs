//! One test binary for every local server: each module talks to its server
//! with the client library the services use.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod servers {
    pub mod kafka;
    pub mod kubernetes;
    pub mod mongodb;
    pub mod opensearch;
    pub mod otlp;
    pub mod postgres;
    pub mod prometheus;
    pub mod redis;
}
