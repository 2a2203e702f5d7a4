//! Which database a test runs on. Suites written once run on both: `on_both!(test_fn, ...)`
//! makes `test_fn::sqlite` and `test_fn::postgres`. A PostgreSQL test gets a schema of its own
//! in the database named by `SAGA_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped when it ends. When that server cannot be
//! reached the test says so loudly and passes, unless `SAGA_REQUIRE_POSTGRES=1` (CI), where it
//! fails.

use std::future::Future;
use std::sync::OnceLock;

use sqlx::{Connection, PgConnection};

/// The server PostgreSQL tests use.
pub fn postgres_base_url() -> String {
    std::env::var("SAGA_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the test's temp dir.
    Sqlite,
    /// A schema of its own on the test PostgreSQL server.
    Postgres,
}

tokio::task_local! {
    static BACKEND: Backend;
}

/// The backend of the running test (SQLite outside `on`).
pub fn current() -> Backend {
    BACKEND.try_with(|b| *b).unwrap_or(Backend::Sqlite)
}

/// Runs `test` on `backend`; on PostgreSQL only when the server is reachable (see the module).
pub async fn on(backend: Backend, test: impl Future<Output = ()>) {
    if backend == Backend::Postgres && !postgres_reachable().await {
        return;
    }
    BACKEND.scope(backend, test).await
}

/// Whether the test server answers; panics when it does not and `SAGA_REQUIRE_POSTGRES=1`.
pub async fn postgres_reachable() -> bool {
    static REPORTED: OnceLock<()> = OnceLock::new();
    let url = postgres_base_url();
    match PgConnection::connect(&url).await {
        Ok(conn) => {
            let _ = conn.close().await;
            true
        }
        Err(error) => {
            if std::env::var("SAGA_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("PostgreSQL at {url} is required (SAGA_REQUIRE_POSTGRES=1) but unreachable: {error}");
            }
            if REPORTED.set(()).is_ok() {
                eprintln!(
                    "\n!!! SKIPPING PostgreSQL tests: {url} is unreachable ({error}).\n\
                     !!! Set SAGA_TEST_POSTGRES_URL, or SAGA_REQUIRE_POSTGRES=1 to fail instead.\n"
                );
            }
            false
        }
    }
}

/// A schema of its own on the test server, dropped (with everything in it) when this is dropped.
pub struct Schema {
    name: String,
    /// The store URL: the server's, with the schema as search path.
    pub url: String,
}

impl Schema {
    pub async fn create() -> Schema {
        let base = postgres_base_url();
        let name = format!("saga_t_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::connect(&base).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options[search_path]={name}");
        Schema { name, url }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (base, name) = (postgres_base_url(), self.name.clone());
        // Dropped inside a runtime, so the cleanup gets a thread and a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&base).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .execute(&mut conn)
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Makes `NAME::sqlite` and `NAME::postgres` tests of each `async fn NAME()` given; `multi:`
/// before the list runs them on a two-thread runtime.
macro_rules! on_both {
    (multi: $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    $crate::backend::on($crate::backend::Backend::Sqlite, super::$name()).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    $crate::backend::on($crate::backend::Backend::Postgres, super::$name()).await
                }
            }
        )*
    };
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    $crate::backend::on($crate::backend::Backend::Sqlite, super::$name()).await
                }
                #[tokio::test]
                async fn postgres() {
                    $crate::backend::on($crate::backend::Backend::Postgres, super::$name()).await
                }
            }
        )*
    };
}
