//! Support for the smoke tests: where each server is, and a failure message
//! that names the server when it is not there. A missing server is a failed
//! test, never a skipped one.

use std::fmt::Display;

use polystream_common::config::StoreEndpoints;

/// The store endpoints from the environment (`./dev env`), defaulting to the local servers.
pub fn endpoints() -> StoreEndpoints {
    StoreEndpoints::from_env().unwrap_or_else(|e| panic!("{e}"))
}

/// An environment variable `./dev up` writes, or a local default.
pub fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Fails the calling test with a message naming the server and how to start it.
#[track_caller]
pub fn unreachable(server: &str, component: &str, addr: &str, err: impl Display) -> ! {
    panic!(
        "{server} is not reachable at {addr}: {err}\n\
         It must be running for this test; start it with `./dev up {component}` \
         (or run the whole suite with `./dev test`, which starts it)."
    )
}

/// A name no earlier run used, so reruns never see each other's data.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid_like())
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", nanos, std::process::id())
}
