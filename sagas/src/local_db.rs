//! A service's own SQLite database, opened lazily: connected, and its tables created, on first
//! use, so a program can register sagas before any database is reachable.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::SqlitePool;
use tokio::sync::OnceCell;

/// A lazily opened SQLite database with its schema.
#[derive(Debug, Clone)]
pub struct LocalDb {
    pool: SqlitePool,
    schema: &'static str,
    ready: Arc<OnceCell<()>>,
}

impl LocalDb {
    /// The database at `url`, whose tables `schema` creates (idempotent statements).
    pub fn lazy(url: &str, schema: &'static str) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(30));
        Ok(Self {
            pool: SqlitePoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(options),
            schema,
            ready: Arc::new(OnceCell::new()),
        })
    }

    /// The pool, once the tables exist.
    pub async fn pool(&self) -> Result<&SqlitePool, sqlx::Error> {
        self.ready
            .get_or_try_init(|| async {
                sqlx::raw_sql(self.schema)
                    .execute(&self.pool)
                    .await
                    .map(|_| ())
            })
            .await?;
        Ok(&self.pool)
    }
}
