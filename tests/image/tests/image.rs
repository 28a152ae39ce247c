//! The container image against a real Docker Engine: the Dockerfile passes
//! hadolint; the image is small, runs as uid 65532 with no shell; every
//! binary answers `--help` and `--version` in it under the restrictions the
//! chart and the operator apply (read-only root, no capabilities); and S1
//! started from it serves against the local servers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use polystream_image_tests::{BINARIES, docker, docker_ok, image, inspect, root, tool};

/// The restrictions of Pod Security `restricted`, as `docker run` flags.
const RESTRICTED: [&str; 6] = [
    "--read-only",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--rm",
];

#[test]
fn hadolint_accepts_the_dockerfile() {
    let hadolint = tool("hadolint", "HADOLINT");
    let out = std::process::Command::new(hadolint)
        .arg("Dockerfile")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hadolint Dockerfile:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_image_is_small_nonroot_and_labelled() {
    let info = inspect();
    let config = &info["Config"];
    assert_eq!(config["User"], "65532:65532");
    let labels = &config["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    for key in [
        "org.opencontainers.image.revision",
        "org.opencontainers.image.source",
        "org.opencontainers.image.created",
        "org.opencontainers.image.licenses",
    ] {
        let v = labels[key].as_str().unwrap_or_default();
        assert!(!v.is_empty(), "label {key} is missing: {labels}");
    }
    let size = info["Size"].as_u64().unwrap();
    println!("{} is {} MiB", image(), size / 1024 / 1024);
    // Four release binaries with glibc, libssl and CA certificates; a base
    // distribution or a debug build would be several times this.
    assert!(size < 200 * 1024 * 1024, "image is {size} bytes");
    // No shell to run: a container gets exactly the binaries.
    let shell = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        &image(),
        "-c",
        "true",
    ]);
    assert!(!shell.status.success(), "the image has a /bin/sh");
}

#[test]
fn every_binary_answers_help_and_version_under_restricted_settings() {
    let image = image();
    for bin in BINARIES {
        let mut args = vec!["run"];
        args.extend(RESTRICTED);
        args.extend(["--entrypoint", bin, image.as_str(), "--version"]);
        let version = docker_ok(&args);
        assert!(
            version.contains(env!("CARGO_PKG_VERSION")),
            "{bin} --version: {version}"
        );
        let mut args = vec!["run"];
        args.extend(RESTRICTED);
        args.extend(["--entrypoint", bin, image.as_str(), "--help"]);
        let help = docker_ok(&args);
        assert!(help.contains("Usage"), "{bin} --help: {help}");
    }
}

/// A free port on 127.0.0.1 (the container shares the host's network).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn s1_from_the_image_serves_against_the_local_servers() {
    let image = image();
    let _ = inspect();
    let port = free_port();
    let name = format!("polystream-image-test-{port}");
    let addr = format!("127.0.0.1:{port}");
    let mut env = vec![format!("HTTP_ADDR={addr}")];
    for var in [
        "DATABASE_URL",
        "REDIS_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "MONGODB_URI",
        "OPENSEARCH_URL",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        let value = std::env::var(var).unwrap_or_else(|_| {
            panic!("{var} is not set: run the local servers (`./dev up`) and `source <(./dev env)`")
        });
        env.push(format!("{var}={value}"));
    }
    // The host's network: the local servers listen on 127.0.0.1 only.
    let mut args = vec!["run", "-d", "--name", name.as_str(), "--network", "host"];
    args.extend(&RESTRICTED[..5]);
    for e in &env {
        args.extend(["-e", e.as_str()]);
    }
    args.extend(["--entrypoint", "polystream-s1-gateway", image.as_str()]);
    docker_ok(&args);
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = docker(&["rm", "-f", &self.0]);
        }
    }
    let _remove = Remove(name.clone());

    let http = reqwest::Client::new();
    let start = Instant::now();
    let ready = loop {
        match http.get(format!("http://{addr}/ready")).send().await {
            Ok(r) if r.status().is_success() => break r.text().await.unwrap(),
            last if start.elapsed() > Duration::from_secs(90) => {
                let logs = docker(&["logs", &name]);
                panic!(
                    "S1 in the container was not ready after 90 s (last: {last:?}); its log:\n{}{}",
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    assert!(ready.contains("kafka"), "/ready: {ready}");
    let docs = http
        .get(format!("http://{addr}/docs"))
        .send()
        .await
        .unwrap();
    assert!(docs.status().is_success(), "/docs: {}", docs.status());
    let user = docker_ok(&["inspect", "--format", "{{.Config.User}}", &name]);
    assert_eq!(user.trim(), "65532:65532");
}
