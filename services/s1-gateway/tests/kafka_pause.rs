//! A command Kafka took without acknowledging it, against the real broker
//! paused (SIGSTOP) mid-send: S1 answers 504 `outcome-unknown` naming the
//! command's status URL, never 503, because the broker appends the event
//! once it runs again. Its own test binary: nothing else may run while the
//! shared broker is paused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)] // the API tests' harness, partly used here
#[path = "api/harness.rs"]
mod harness;

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

fn kafka_pid() -> String {
    let state = std::env::var("POLYSTREAM_STATE_DIR").map_or_else(
        |_| PathBuf::from(std::env::var("HOME").unwrap()).join(".local/state/polystream"),
        PathBuf::from,
    );
    let file = state.join("run/kafka.pid");
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| {
            panic!(
                "Apache Kafka is not running here ({}: {e}); start it with `./dev up kafka` \
                 (or run the whole suite with `./dev test`)",
                file.display()
            )
        })
        .trim()
        .to_owned()
}

fn signal(pid: &str, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, pid])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid} failed");
}

/// Lets the broker run again however the test ends.
struct Paused(String);

impl Drop for Paused {
    fn drop(&mut self) {
        signal(&self.0, "-CONT");
    }
}

#[tokio::test]
async fn a_command_kafka_took_without_answering_is_a_504_and_is_processed() {
    let pid = kafka_pid();
    let h = harness::start(&[("KAFKA_ACK_TIMEOUT_SECONDS", "2")]).await;
    let (uid, token) = h.user(false).await;
    // Connected, with the partition's leader known.
    h.update_preferences(uid, Some(&token)).await;

    signal(&pid, "-STOP");
    let paused = Paused(pid);
    let res = h
        .put(
            &format!("/v1/users/{uid}/preferences"),
            json!({"language": "en", "notifications": false, "theme": "light"}),
            Some(&token),
        )
        .await;
    drop(paused);
    assert!(res.headers().contains_key("retry-after"));
    let p = harness::expect_problem(res, 504, None).await;
    assert_eq!(p["type"], "https://polystream.dev/problems/outcome-unknown");
    let status_url = p["instance"].as_str().expect("instance").to_owned();
    let cid = status_url.rsplit('/').next().unwrap().to_owned();
    assert_eq!(status_url, h.url(&format!("/v1/status/{cid}")));
    assert!(
        p["detail"].as_str().unwrap().contains("Idempotency-Key"),
        "{p}"
    );

    // Nothing recorded it as pending: the status is unknown until S2 has an
    // outcome (S2 is not running here).
    assert_eq!(
        h.get(&format!("/v1/status/{cid}"), None).await.status(),
        404
    );

    // The broker kept the event: it is on the topic, as S2 would consume it.
    let (_, _, event) = h.next_event().await;
    assert_eq!(event["type"], "polystream.preferences.updated.v1");
    assert_eq!(event["correlationid"], cid.as_str());
    assert_eq!(event["data"]["theme"], "light");
}
