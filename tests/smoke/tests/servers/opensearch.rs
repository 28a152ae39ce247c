use opensearch::http::request::JsonBody;
use opensearch::http::transport::Transport;
use opensearch::indices::{IndicesCreateParts, IndicesDeleteParts};
use opensearch::{BulkParts, OpenSearch, SearchParts};
use polystream_smoke_tests::{endpoints, unique, unreachable};
use serde_json::{Value, json};

#[tokio::test]
async fn opensearch_bulk_index_and_search() {
    let url = endpoints().opensearch_url;
    let client = OpenSearch::new(Transport::single_node(&url).unwrap());
    let health = client
        .cluster()
        .health(opensearch::cluster::ClusterHealthParts::None)
        .send()
        .await
        .and_then(|r| r.error_for_status_code())
        .unwrap_or_else(|e| unreachable("OpenSearch", "opensearch", &url, e));
    let health: Value = health.json().await.unwrap();
    assert_ne!(health["status"], "red", "{health}");

    let index = unique("smoke-audit");
    client
        .indices()
        .create(IndicesCreateParts::Index(&index))
        .body(json!({
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {"properties": {
                "type": {"type": "keyword"},
                "user_id": {"type": "keyword"},
                "time": {"type": "date"},
                "summary": {"type": "text"}
            }}
        }))
        .send()
        .await
        .unwrap()
        .error_for_status_code()
        .unwrap();

    let docs = [
        (
            "e1",
            "polystream.user.registered.v1",
            "u1",
            "2026-11-22T10:00:00Z",
        ),
        (
            "e2",
            "polystream.title.rated.v1",
            "u1",
            "2026-11-22T11:00:00Z",
        ),
        (
            "e3",
            "polystream.title.rated.v1",
            "u2",
            "2026-11-22T12:00:00Z",
        ),
    ];
    let mut body: Vec<JsonBody<Value>> = Vec::new();
    for (id, ty, user, time) in docs {
        body.push(json!({"index": {"_id": id}}).into());
        body.push(
            json!({"type": ty, "user_id": user, "time": time, "summary": "smoke event"}).into(),
        );
    }
    let bulk: Value = client
        .bulk(BulkParts::Index(&index))
        .refresh(opensearch::params::Refresh::WaitFor)
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bulk["errors"], false, "{bulk}");

    let found: Value = client
        .search(SearchParts::Index(&[&index]))
        .body(json!({
            "query": {"bool": {"filter": [
                {"term": {"type": "polystream.title.rated.v1"}},
                {"range": {"time": {"gte": "2026-11-22T10:30:00Z"}}}
            ]}},
            "sort": [{"time": "asc"}]
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = found["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["_id"].as_str())
        .collect();
    assert_eq!(ids, ["e2", "e3"], "{found}");

    client
        .indices()
        .delete(IndicesDeleteParts::Index(&[&index]))
        .send()
        .await
        .unwrap();
}
