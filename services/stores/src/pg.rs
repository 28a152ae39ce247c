//! PostgreSQL: pool and migrations.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

/// The schema, embedded in the binary.
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// A pool that gives up on a connection after `acquire_timeout` so a request
/// fails fast when PostgreSQL is down instead of hanging.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
}

/// Applies pending migrations. sqlx holds a PostgreSQL advisory lock while it
/// migrates, so several replicas starting at once apply each migration once.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATIONS.run(pool).await
}

/// A unit enum's wire name (`credit_card`), as the tables' CHECKs expect.
pub fn wire_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use polystream_common::events::{PaymentMethod, Theme};

    #[test]
    fn enums_are_stored_by_their_wire_names() {
        assert_eq!(super::wire_name(&PaymentMethod::CreditCard), "credit_card");
        assert_eq!(super::wire_name(&Theme::Dark), "dark");
        assert_eq!(super::wire_name(&1), "");
    }
}
