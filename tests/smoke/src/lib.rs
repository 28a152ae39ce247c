//! Support for the smoke tests and the workspace's integration tests: where
//! each server is, and a failure message that names the server when it is
//! not there (a missing server is a failed test, never a skipped one);
//! traces read back from Jaeger ([`jaeger`]); the real node ([`node`]); series found in `/metrics`
//! text ([`metrics_text`]); a client of S1's API ([`api`]); misbehaving HTTP
//! clients ([`slow_client`]).

pub mod api;
pub mod cli;
pub mod jaeger;
pub mod metrics_text;
pub mod node;
pub mod slow_client;

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

/// A client for the API server in `KUBECONFIG` that has answered once; fails
/// naming the server otherwise.
pub async fn kube_client() -> kube::Client {
    const SERVER: &str = "the Kubernetes API server";
    // kube uses ring; another dependency may bring a second rustls provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_else(|_| {
        unreachable(
            SERVER,
            "kube_apiserver",
            "(KUBECONFIG unset)",
            "KUBECONFIG is not set; `./dev env` prints it",
        )
    });
    let client = kube::Client::try_default()
        .await
        .unwrap_or_else(|e| unreachable(SERVER, "kube_apiserver", &kubeconfig, e));
    if let Err(e) = client.apiserver_version().await {
        unreachable(SERVER, "kube_apiserver", &kubeconfig, e);
    }
    client
}

/// The path of a workspace binary (e.g. `polystream-s1-gateway`) built into
/// the same target directory as the running test, for tests that start the
/// services as real processes. `./dev test` builds every binary first; a
/// single crate's `cargo test` does not, hence the message.
pub fn service_binary(name: &str) -> std::path::PathBuf {
    // The test executable lives in <target>/<profile>/deps/.
    let exe =
        std::env::current_exe().unwrap_or_else(|e| panic!("cannot locate the test binary: {e}"));
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()));
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} does not exist: build the services first with `cargo build --workspace --bins` \
         (`./dev test` does)",
        path.display()
    );
    path
}
