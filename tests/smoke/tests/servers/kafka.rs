use std::time::Duration;

use polystream_smoke_tests::{endpoints, unique, unreachable};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

#[tokio::test]
async fn kafka_produce_and_consume_with_headers() {
    let brokers = endpoints().kafka_bootstrap_servers;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "15000")
        .create()
        .unwrap();
    if let Err(e) = producer
        .client()
        .fetch_metadata(None, Duration::from_secs(10))
    {
        unreachable("Apache Kafka", "kafka", &brokers, e);
    }

    let topic = unique("smoke");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "correlationid",
            value: Some("corr-1"),
        })
        .insert(Header {
            key: "traceparent",
            value: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        });
    let delivery = producer
        .send(
            FutureRecord::to(&topic)
                .key("user-42")
                .payload(r#"{"type":"smoke"}"#)
                .headers(headers),
            Duration::from_secs(15),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let (partition, offset) = (delivery.partition, delivery.offset);
    assert!(offset >= 0 && (0..3).contains(&partition));

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique("smoke-group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
        .await
        .expect("no message consumed within 60s (group coordinator not working?)")
        .unwrap();
    assert_eq!(msg.key(), Some(&b"user-42"[..]));
    assert_eq!(msg.payload(), Some(&br#"{"type":"smoke"}"#[..]));
    assert_eq!((msg.partition(), msg.offset()), (partition, offset));
    let got: Vec<(String, String)> = msg
        .headers()
        .expect("headers survive the round trip")
        .iter()
        .map(|h| {
            (
                h.key.to_owned(),
                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    assert_eq!(got[0], ("correlationid".into(), "corr-1".into()));
    assert_eq!(got[1].0, "traceparent");
    consumer
        .commit_message(&msg, rdkafka::consumer::CommitMode::Sync)
        .unwrap();

    admin
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .unwrap();
}
