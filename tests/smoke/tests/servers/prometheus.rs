use polystream_smoke_tests::{env_or, unreachable};
use serde_json::Value;

#[tokio::test]
async fn prometheus_scrapes_and_answers_queries() {
    let url = env_or("PROMETHEUS_URL", "http://127.0.0.1:9090");
    let http = reqwest::Client::new();
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .unwrap_or_else(|e| unreachable("Prometheus", "prometheus", &url, e))
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("prometheus_build_info"));

    // Prometheus scrapes itself; wait for the first sample to land.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let answer: Value = http
            .get(format!("{url}/api/v1/query"))
            .query(&[("query", "up{job=\"prometheus\"}")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["status"], "success", "{answer}");
        if let Some(first) = answer["data"]["result"].as_array().and_then(|r| r.first()) {
            assert_eq!(first["value"][1], "1", "{answer}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus has no sample of its own scrape after 30s: {answer}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
