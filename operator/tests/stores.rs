//! Store checks on the real servers: Secrets read from the local API server,
//! probes against the local stores (`./dev up`), Kafka topics created and
//! grown for real. A store that is down on purpose is an address with nothing
//! listening (127.0.0.1:1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};
use polystream_operator::StreamingPlatform;
use polystream_operator::crd::OpenSearchSpec;
use polystream_operator::probes::{self, StoreReport, check_stores};
use polystream_smoke_tests::{endpoints, kube_client};
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use support::{
    Forwarder, InProcessController, STORES_SECRET as SECRET, TestNamespace, condition,
    delete_topics, free_port, live_uris, local_sample, namespace_with_crd, put_secret, topic_names,
    use_unique_topics, wait_platform,
};

pub mod support;

/// Nothing listens there: connections are refused at once.
const CLOSED: &str = "127.0.0.1:1";

/// The sample in `ns`, its topics unique to this test run.
fn platform(ns: &str) -> StreamingPlatform {
    let mut sp = local_sample();
    sp.metadata.namespace = Some(ns.to_owned());
    use_unique_topics(&mut sp, "op");
    sp.spec.stores.kafka.partitions = 2;
    sp
}

/// Partitions of each topic as Kafka reports them (absent: not there).
fn partitions(bootstrap: &str, topics: &[String]) -> BTreeMap<String, usize> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(5))
        .unwrap_or_else(|e| polystream_smoke_tests::unreachable("Kafka", "kafka", bootstrap, e));
    metadata
        .topics()
        .iter()
        .filter(|t| topics.iter().any(|n| n == t.name()))
        .map(|t| (t.name().to_owned(), t.partitions().len()))
        .collect()
}

/// Fails naming each store whose check failed, and how to start it.
fn assert_all_ok(report: &StoreReport) {
    let failed: Vec<String> = report
        .failures()
        .map(|c| format!("{} {}: {}", c.condition_type, c.reason, c.message))
        .collect();
    assert!(
        failed.is_empty(),
        "stores that should be up are not (start them with `./dev up`):\n  {}",
        failed.join("\n  ")
    );
}

/// check_stores, and how long it took.
async fn timed_check(client: &Client, sp: &StreamingPlatform) -> (StoreReport, Duration) {
    let started = Instant::now();
    let report = check_stores(client, sp).await;
    (report, started.elapsed())
}

#[tokio::test]
async fn live_stores_are_ready_and_topics_are_created_then_extended() {
    let client = kube_client().await;
    let ns = TestNamespace::create(&client, "op-stores").await;
    put_secret(&client, &ns.name, SECRET, &live_uris()).await;
    let mut sp = platform(&ns.name);
    let bootstrap = sp.spec.stores.kafka.bootstrap_servers.clone();
    let topics = topic_names(&sp);

    let (report, took) = timed_check(&client, &sp).await;
    assert_all_ok(&report);
    assert_eq!(
        report
            .checks
            .iter()
            .map(|c| c.condition_type)
            .collect::<Vec<_>>(),
        probes::CONDITION_TYPES
    );
    assert_eq!(report.check("KafkaReady").unwrap().reason, "TopicsReady");
    assert_eq!(report.check("PostgresReady").unwrap().reason, "Connected");
    assert_eq!(report.check("MongoDBReady").unwrap().reason, "Connected");
    assert_eq!(report.check("RedisReady").unwrap().reason, "Connected");
    assert_eq!(report.check("OpenSearchReady").unwrap().reason, "Connected");
    assert!(took < Duration::from_secs(10), "the checks took {took:?}");
    // Credentials never reach a message.
    for check in &report.checks {
        assert!(
            !check.message.contains("polystream:polystream"),
            "{check:?}"
        );
    }
    let have = partitions(&bootstrap, &topics);
    for topic in &topics {
        assert_eq!(have.get(topic), Some(&2), "topic {topic}: {have:?}");
    }
    assert_eq!(report.actions.len(), 3, "{:?}", report.actions);
    assert!(
        report.actions[0].starts_with("created Kafka topic"),
        "{:?}",
        report.actions
    );

    // The referenced Secret's version is reported for the config hash.
    let rv = Api::<Secret>::namespaced(client.clone(), &ns.name)
        .get(SECRET)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    assert_eq!(
        report.secret_versions,
        BTreeMap::from([(SECRET.to_owned(), rv)])
    );

    // Steady state: nothing to do, and the same conditions word for word.
    let again = check_stores(&client, &sp).await;
    assert_eq!(again.checks, report.checks);
    assert!(again.actions.is_empty(), "{:?}", again.actions);

    // More partitions: the topics grow.
    sp.spec.stores.kafka.partitions = 4;
    let grown = check_stores(&client, &sp).await;
    assert_all_ok(&grown);
    let have = partitions(&bootstrap, &topics);
    for topic in &topics {
        assert_eq!(have.get(topic), Some(&4), "topic {topic}: {have:?}");
    }
    assert_eq!(grown.actions.len(), 3, "{:?}", grown.actions);
    assert!(
        grown.actions[0].contains("from 2 to 4 partitions"),
        "{:?}",
        grown.actions
    );

    // Fewer: never shrunk, and still ready.
    sp.spec.stores.kafka.partitions = 1;
    let fewer = check_stores(&client, &sp).await;
    assert_all_ok(&fewer);
    assert!(fewer.actions.is_empty(), "{:?}", fewer.actions);
    let have = partitions(&bootstrap, &topics);
    assert!(have.values().all(|&p| p == 4), "{have:?}");
    assert!(
        fewer
            .check("KafkaReady")
            .unwrap()
            .message
            .contains("never removed"),
        "{:?}",
        fewer.check("KafkaReady")
    );

    delete_topics(&bootstrap, &topics).await;
}

#[tokio::test]
async fn rotating_the_secret_changes_its_reported_version() {
    let client = kube_client().await;
    let ns = TestNamespace::create(&client, "op-stores").await;
    let mut uris = live_uris();
    put_secret(&client, &ns.name, SECRET, &uris).await;
    let mut sp = platform(&ns.name);
    // Only the Secret matters here; the topics stay untouched.
    sp.spec.stores.kafka.bootstrap_servers = CLOSED.into();
    let before = check_stores(&client, &sp).await.secret_versions;
    uris.insert("redis-uri".into(), format!("{}/1", endpoints().redis_url));
    put_secret(&client, &ns.name, SECRET, &uris).await;
    let after = check_stores(&client, &sp).await.secret_versions;
    assert_eq!(before.keys().collect::<Vec<_>>(), [SECRET]);
    assert_ne!(before, after, "a rotated Secret must change the hash input");
}

#[tokio::test]
async fn a_missing_secret_or_key_is_named() {
    let client = kube_client().await;
    let ns = TestNamespace::create(&client, "op-stores").await;
    let sp = platform(&ns.name);

    // No Secret at all.
    let (report, took) = timed_check(&client, &sp).await;
    let secrets = report.check("SecretsReady").unwrap();
    assert!(!secrets.ok);
    assert_eq!(secrets.reason, "SecretMissing");
    assert!(
        secrets
            .message
            .contains("Secret polystream-stores does not exist"),
        "{secrets:?}"
    );
    for store in [
        "PostgresReady",
        "MongoDBReady",
        "RedisReady",
        "OpenSearchReady",
    ] {
        let check = report.check(store).unwrap();
        assert!(!check.ok, "{check:?}");
        assert_eq!(check.reason, "SecretMissing", "{check:?}");
    }
    assert!(report.secret_versions.is_empty());
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // The Secret without the Redis key.
    let mut uris = live_uris();
    uris.remove("redis-uri");
    put_secret(&client, &ns.name, SECRET, &uris).await;
    let report = check_stores(&client, &sp).await;
    let secrets = report.check("SecretsReady").unwrap();
    assert!(!secrets.ok);
    assert_eq!(secrets.reason, "KeyMissing");
    assert_eq!(
        secrets.message,
        "Secret polystream-stores has no key redis-uri (for Redis)"
    );
    let redis = report.check("RedisReady").unwrap();
    assert!(!redis.ok);
    assert_eq!(redis.reason, "KeyMissing");
    assert!(report.check("PostgresReady").unwrap().ok);
    assert!(report.check("KafkaReady").unwrap().ok);

    delete_topics(&sp.spec.stores.kafka.bootstrap_servers, &topic_names(&sp)).await;
}

#[tokio::test]
async fn unreachable_stores_fail_fast_naming_the_store() {
    let client = kube_client().await;
    let ns = TestNamespace::create(&client, "op-stores").await;
    let mut uris = live_uris();
    uris.insert(
        "postgres-uri".into(),
        format!("postgres://polystream:topsecret@{CLOSED}/polystream"),
    );
    uris.insert("redis-uri".into(), format!("redis://:topsecret@{CLOSED}"));
    uris.insert(
        "mongodb-uri".into(),
        format!("mongodb://{CLOSED}/polystream"),
    );
    uris.insert("opensearch-url".into(), format!("http://{CLOSED}"));
    put_secret(&client, &ns.name, SECRET, &uris).await;
    let mut sp = platform(&ns.name);
    sp.spec.stores.kafka.bootstrap_servers = CLOSED.into();

    let (report, took) = timed_check(&client, &sp).await;
    assert!(report.check("SecretsReady").unwrap().ok);
    for (condition, store) in [
        ("PostgresReady", "PostgreSQL"),
        ("RedisReady", "Redis"),
        ("MongoDBReady", "MongoDB"),
        ("OpenSearchReady", "OpenSearch"),
        ("KafkaReady", "Kafka"),
    ] {
        let check = report.check(condition).unwrap();
        assert!(!check.ok, "{check:?}");
        assert_eq!(check.reason, "Unreachable", "{check:?}");
        assert!(
            check.message.starts_with(&format!("{store} at ")),
            "{check:?}"
        );
        assert!(check.message.contains(CLOSED), "{check:?}");
        assert!(!check.message.contains("topsecret"), "{check:?}");
    }
    assert_eq!(
        report
            .check("PostgresReady")
            .unwrap()
            .message
            .split(": ")
            .next(),
        Some("PostgreSQL at postgres://***@127.0.0.1:1/polystream is unreachable")
    );
    // Every probe is bounded; they run concurrently.
    assert!(
        took < probes::KAFKA_TIMEOUT + Duration::from_secs(2),
        "the checks took {took:?}"
    );
}

#[tokio::test]
async fn without_opensearch_its_condition_says_not_configured() {
    let client = kube_client().await;
    let ns = TestNamespace::create(&client, "op-stores").await;
    let mut uris = live_uris();
    uris.remove("opensearch-url");
    put_secret(&client, &ns.name, SECRET, &uris).await;
    let mut sp = platform(&ns.name);
    sp.spec.stores.opensearch = None;
    let report = check_stores(&client, &sp).await;
    assert_all_ok(&report);
    let os = report.check("OpenSearchReady").unwrap();
    assert_eq!(os.reason, "NotConfigured");

    // An inline URL (no Secret) is probed too.
    sp.spec.stores.opensearch = Some(OpenSearchSpec {
        url: Some(endpoints().opensearch_url),
        url_secret_ref: None,
    });
    let report = check_stores(&client, &sp).await;
    assert_eq!(
        report.check("OpenSearchReady").unwrap().reason,
        "Connected",
        "{:?}",
        report.check("OpenSearchReady")
    );
    delete_topics(&sp.spec.stores.kafka.bootstrap_servers, &topic_names(&sp)).await;
}

// ---------------------------------------------------------------------------
// End to end: the controller turns an unreachable store into Degraded, and a
// store that comes back into Ready, without anyone touching the platform.

#[tokio::test]
async fn an_unreachable_store_degrades_the_platform_and_its_return_makes_it_ready() {
    let (client, ns) = namespace_with_crd("op-degraded").await;

    // Redis "is down": the Secret names a port where nothing listens yet.
    let port = free_port();
    let mut uris = live_uris();
    uris.insert("redis-uri".into(), format!("redis://127.0.0.1:{port}"));
    put_secret(&client, &ns.name, SECRET, &uris).await;
    let sp = platform(&ns.name);
    let name = sp.metadata.name.clone().unwrap();
    let api: Api<StreamingPlatform> = Api::namespaced(client.clone(), &ns.name);
    api.create(&PostParams::default(), &sp).await.unwrap();

    // A short periodic re-check: nothing about the platform changes when a
    // store comes back, so only the periodic reconcile can notice.
    let controller = InProcessController::start(&client, &ns.name, Duration::from_secs(3));

    let degraded = wait_platform(
        &api,
        &name,
        "Degraded=True with RedisReady=False",
        Duration::from_secs(60),
        |sp| {
            condition(sp, "Degraded").is_some_and(|c| c.0 == "True")
                && condition(sp, "RedisReady").is_some_and(|c| c.0 == "False")
        },
    )
    .await;
    let (_, reason, message) = condition(&degraded, "RedisReady").unwrap();
    assert_eq!(reason, "Unreachable");
    assert!(
        message.contains(&format!("Redis at redis://127.0.0.1:{port} is unreachable")),
        "{message}"
    );
    let (_, _, degraded_message) = condition(&degraded, "Degraded").unwrap();
    assert!(
        degraded_message.contains("RedisReady") && degraded_message.contains("Redis at"),
        "Degraded does not say which store and why: {degraded_message}"
    );
    assert_eq!(condition(&degraded, "Ready").unwrap().0, "False");
    for healthy in [
        "SecretsReady",
        "KafkaReady",
        "PostgresReady",
        "MongoDBReady",
    ] {
        assert_eq!(
            condition(&degraded, healthy).map(|c| c.0),
            Some("True"),
            "{healthy}: {:#?}",
            degraded.status
        );
    }

    // Redis comes back at the same address.
    let redis = endpoints().redis_url;
    let target = redis
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let _forwarder = Forwarder::start(port, target).await;
    let ready = wait_platform(
        &api,
        &name,
        "Ready=True after Redis came back",
        Duration::from_secs(60),
        |sp| condition(sp, "Ready").is_some_and(|c| c.0 == "True"),
    )
    .await;
    assert_eq!(condition(&ready, "Degraded").unwrap().0, "False");
    assert_eq!(
        condition(&ready, "RedisReady").unwrap().1,
        "Connected",
        "{:#?}",
        ready.status
    );

    // The Secret edited to a dead address → Degraded again; fixed → Ready.
    uris.insert("redis-uri".into(), format!("redis://{CLOSED}"));
    put_secret(&client, &ns.name, SECRET, &uris).await;
    wait_platform(
        &api,
        &name,
        "Degraded=True after the Secret pointed Redis at a closed port",
        Duration::from_secs(60),
        |sp| {
            condition(sp, "Degraded").is_some_and(|c| c.0 == "True")
                && condition(sp, "RedisReady")
                    .is_some_and(|c| c.0 == "False" && c.2.contains(CLOSED))
        },
    )
    .await;
    uris.insert("redis-uri".into(), redis.clone());
    put_secret(&client, &ns.name, SECRET, &uris).await;
    wait_platform(
        &api,
        &name,
        "Ready=True after the Secret was fixed",
        Duration::from_secs(60),
        |sp| {
            condition(sp, "Ready").is_some_and(|c| c.0 == "True")
                && condition(sp, "Degraded").is_some_and(|c| c.0 == "False")
        },
    )
    .await;

    controller.stop().await;
    delete_topics(&sp.spec.stores.kafka.bootstrap_servers, &topic_names(&sp)).await;
}
