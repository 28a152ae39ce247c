use polystream_smoke_tests::{endpoints, unreachable};
use sqlx::Row;
use sqlx::postgres::PgPoolOptions;

#[tokio::test]
async fn postgres_round_trip_in_a_transaction() {
    let url = endpoints().database_url;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(&url)
        .await
        .unwrap_or_else(|e| unreachable("PostgreSQL", "postgres", &url, e));

    let mut tx = pool.begin().await.unwrap();
    // A temporary table is private to this session, so parallel runs never collide.
    sqlx::query("CREATE TEMP TABLE smoke_docs (id uuid PRIMARY KEY, doc jsonb NOT NULL)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let id = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO smoke_docs VALUES ($1, $2)")
        .bind(id)
        .bind(serde_json::json!({"plan": "premium"}))
        .execute(&mut *tx)
        .await
        .unwrap();
    let row = sqlx::query("SELECT doc->>'plan' AS plan FROM smoke_docs WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("plan"), "premium");
    tx.rollback().await.unwrap();

    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!version.is_empty());
}
