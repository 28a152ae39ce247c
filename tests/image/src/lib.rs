//! Support for the image tests (tests/image.rs): the image `./dev image`
//! builds, and the local Docker Engine that holds it.

use std::process::{Command, Output};

use serde_json::Value;

pub use polystream_chart_tests::{root, tool};

/// The four binaries the image carries, as the operator and the chart name them.
pub const BINARIES: [&str; 4] = [
    "polystream-operator",
    "polystream-s1-gateway",
    "polystream-s2-processor",
    "polystream-s3-monitor",
];

/// `polystream:VERSION`, the tag `./dev image` builds (or `$POLYSTREAM_IMAGE`).
pub fn image() -> String {
    std::env::var("POLYSTREAM_IMAGE")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("polystream:{}", env!("CARGO_PKG_VERSION")))
}

/// Debian's Docker client against the engine `./dev` runs (`$DOCKER_HOST`).
/// Panics naming the server when it is not up.
pub fn docker(args: &[&str]) -> Output {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    assert!(
        !host.is_empty(),
        "DOCKER_HOST is not set: the Docker Engine must be running for this test; start it \
         with `./dev image` (builds the image too) or `./dev up docker`, then `source <(./dev env)`"
    );
    if let Some(socket) = host.strip_prefix("unix://") {
        assert!(
            std::path::Path::new(socket).exists(),
            "the Docker Engine is not running (no socket at {socket}); start it with \
             `./dev image` (builds the image too) or `./dev up docker`"
        );
    }
    Command::new("/usr/bin/docker")
        .args(args)
        .env("DOCKER_HOST", &host)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run /usr/bin/docker (Debian's docker.io; `./dev install docker`): {e}")
        })
}

/// `docker args...`, panicking with its output unless it succeeds.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {} failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker image inspect` of [`image`]; panics naming `./dev image` when the
/// image is missing or the engine is down.
pub fn inspect() -> Value {
    let image = image();
    let out = docker(&["image", "inspect", &image]);
    assert!(
        out.status.success(),
        "image {image} is not in the local Docker Engine ({}); build it with `./dev image`",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let all: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("docker image inspect printed no JSON: {e}"));
    all.get(0).cloned().unwrap_or(Value::Null)
}
