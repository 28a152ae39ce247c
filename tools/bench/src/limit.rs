//! The physical limit S1's ingest is measured against, built here so it runs
//! on the same machine in the same minute: a bare axum handler that produces
//! one record with S1's producer settings and awaits the broker's
//! acknowledgement, and one that does no I/O at all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Where the two handlers listen: `POST /kafka` and `POST /nothing`.
pub async fn serve(brokers: &str, topic: &str) -> anyhow::Result<SocketAddr> {
    let producer = polystream_common::kafka::producer(
        brokers,
        "polystream-bench-limit",
        Duration::from_secs(10),
    )?;
    let state = Arc::new((producer, topic.to_owned()));
    let app = Router::new()
        .route("/kafka", post(produce))
        .route("/nothing", post(|| async { StatusCode::ACCEPTED }))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

async fn produce(State(s): State<Arc<(FutureProducer, String)>>, body: String) -> StatusCode {
    let key = uuid::Uuid::now_v7().to_string();
    let record = FutureRecord::to(&s.1).key(&key).payload(&body);
    match s.0.send(record, Duration::from_secs(10)).await {
        Ok(_) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}
