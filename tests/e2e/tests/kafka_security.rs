//! S1, S2 and S3 reach Kafka over TLS with SCRAM logins, and over TLS with a
//! client certificate, against the local broker's secured listeners
//! (scripts/components/kafka.sh); wrong credentials fail start-up with a
//! reason.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::time::Duration;

use polystream_common::config::Reader;
use polystream_smoke_tests::unique;
use serde_json::json;
use support::Platform;

/// A value `./dev up kafka` writes into the environment file.
fn local(var: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{var} is not set: Apache Kafka's secured listeners are not up. Start them with \
             `./dev up kafka` and `source <(./dev env)` (or run `./dev test`, which does both)."
            )
        })
}

fn sasl_ssl(password: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "KAFKA_BOOTSTRAP_SERVERS",
            local("POLYSTREAM_KAFKA_SASL_SSL_ADDR"),
        ),
        ("KAFKA_TLS_DIR", local("POLYSTREAM_KAFKA_CA_DIR")),
        ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".into()),
        ("KAFKA_SASL_USERNAME", local("POLYSTREAM_KAFKA_SCRAM_USER")),
        ("KAFKA_SASL_PASSWORD", password.to_owned()),
    ]
}

/// One registration through S1 → Kafka → S2, and its trail in S3.
async fn command_goes_through(p: &Platform) {
    let email = format!("{}@example.com", unique("kafka-sec"));
    let sent = p
        .command(
            reqwest::Method::POST,
            "/v1/users",
            None,
            json!({"name": "Kafka Security", "email": email, "password": "Pw-kafka-security-1"}),
        )
        .await;
    p.expect_trail(&sent, "polystream.user.registered.v1", None)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_services_work_over_sasl_ssl_with_scram() {
    let settings = sasl_ssl(&local("POLYSTREAM_KAFKA_SCRAM_PASSWORD"));
    // Nothing here is plaintext: the secured listener is the only address given.
    assert!(!settings[0].1.ends_with(":9092"), "{settings:?}");
    let p = Platform::start_with(&settings).await;
    command_goes_through(&p).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_services_work_over_tls_with_a_client_certificate() {
    let settings = vec![
        (
            "KAFKA_BOOTSTRAP_SERVERS",
            local("POLYSTREAM_KAFKA_MTLS_ADDR"),
        ),
        ("KAFKA_TLS_DIR", local("POLYSTREAM_KAFKA_CLIENT_CERT_DIR")),
    ];
    let p = Platform::start_with(&settings).await;
    command_goes_through(&p).await;
    p.stop().await;
}

/// S2 creates the topics at start-up: with a wrong password that fails, and
/// the error says it is an authentication problem, without the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_a_missing_certificate_stops_start_up_with_a_reason() {
    let cases = [
        (
            "wrong SCRAM password",
            sasl_ssl("S3CRET-wrong"),
            "SASL authentication error",
        ),
        (
            "no client certificate",
            vec![
                (
                    "KAFKA_BOOTSTRAP_SERVERS",
                    local("POLYSTREAM_KAFKA_MTLS_ADDR"),
                ),
                ("KAFKA_TLS_DIR", local("POLYSTREAM_KAFKA_CA_DIR")),
            ],
            "bad certificate",
        ),
    ];
    for (case, settings, reason) in cases {
        let id = unique("kafka-sec-bad");
        let mut all = settings.clone();
        all.extend([
            ("KAFKA_TOPIC_USER_EVENTS", format!("{id}-user")),
            ("KAFKA_TOPIC_RESPONSE_EVENTS", format!("{id}-resp")),
            ("KAFKA_TOPIC_DEAD_LETTER", format!("{id}-dlq")),
            ("KAFKA_GROUP_ID", format!("{id}-s2")),
            ("HTTP_ADDR", "127.0.0.1:0".into()),
        ]);
        let mut r = Reader::new(support::settings(&all));
        let config = polystream_s2_processor::Config::read(&mut r);
        r.finish().unwrap();
        let started = tokio::time::timeout(
            Duration::from_secs(60),
            polystream_s2_processor::start(config),
        )
        .await
        .unwrap_or_else(|_| panic!("{case}: S2 neither started nor failed within 60 s"));
        let err = match started {
            Ok(running) => {
                running.stop().await.unwrap();
                panic!("{case}: S2 started against a broker that must refuse it");
            }
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.contains("Kafka") && err.contains(reason),
            "{case}: {err}"
        );
        assert!(!err.contains("S3CRET"), "{case}: the password is in {err}");
    }
}
