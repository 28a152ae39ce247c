use polystream_smoke_tests::{endpoints, unique, unreachable};
use redis::AsyncCommands;

#[tokio::test]
async fn redis_set_get_ttl_and_counters() {
    let url = endpoints().redis_url;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| "timed out after 5s".to_string())
    .and_then(|r| r.map_err(|e| e.to_string()))
    .unwrap_or_else(|e| unreachable("Redis", "redis", &url, e));

    let key = unique("smoke:session");
    let _: () = con.set_ex(&key, "user-1", 60).await.unwrap();
    let got: String = con.get(&key).await.unwrap();
    assert_eq!(got, "user-1");
    let ttl: i64 = con.ttl(&key).await.unwrap();
    assert!((1..=60).contains(&ttl), "ttl {ttl}");

    let counter = unique("smoke:views");
    let _: i64 = con.incr(&counter, 1).await.unwrap();
    let n: i64 = con.incr(&counter, 2).await.unwrap();
    assert_eq!(n, 3);

    let ranking = unique("smoke:ranking");
    let _: () = con.zincr(&ranking, "title-a", 5).await.unwrap();
    let _: () = con.zincr(&ranking, "title-b", 9).await.unwrap();
    let top: Vec<String> = con.zrevrange(&ranking, 0, 0).await.unwrap();
    assert_eq!(top, vec!["title-b".to_string()]);
    let _: () = con.del(&[key, counter, ranking]).await.unwrap();
}
