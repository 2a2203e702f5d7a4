//! The database's raw commit rate, pgbench-style: each transaction updates one row of a small
//! table and inserts one row into another, from `concurrency` clients at once. Sagas/s alone
//! depends on the disk; transitions/s over this rate says what the engine makes of that disk.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Database, Encode, Executor, IntoArguments, Pool, Type};

use crate::BoxError;

/// Rows of the updated table: enough that clients rarely update the same row.
const ACCOUNTS: i64 = 1_000;

/// Commits per second that `concurrency` clients reach on the database of `url` in `length`.
/// A SQLite store is measured on a scratch file beside it, with the same durability setting; a
/// PostgreSQL one on scratch tables in its schema, dropped afterwards.
pub async fn commits_per_second(
    url: &str,
    concurrency: usize,
    length: Duration,
) -> Result<f64, BoxError> {
    if url.starts_with("sqlite:") {
        sqlite(url, concurrency, length).await
    } else {
        postgres(url, concurrency, length).await
    }
}

async fn sqlite(url: &str, concurrency: usize, length: Duration) -> Result<f64, BoxError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let synchronous = match query.contains("synchronous=normal") {
        true => SqliteSynchronous::Normal,
        false => SqliteSynchronous::Full,
    };
    let path = format!("{}.baseline", base.trim_start_matches("sqlite://"));
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous);
    // SQLite has one writer: clients queue for the one connection, as the store's writes do.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    for sql in [
        "DROP TABLE IF EXISTS accounts",
        "DROP TABLE IF EXISTS history",
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
        "CREATE TABLE history (id INTEGER PRIMARY KEY, account INTEGER NOT NULL, \
         delta INTEGER NOT NULL, at INTEGER NOT NULL)",
    ] {
        sqlx::query(sql).execute(&pool).await?;
    }
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
         INSERT INTO accounts SELECT i, 0 FROM n",
    )
    .bind(ACCOUNTS)
    .execute(&pool)
    .await?;
    let rate = drive(concurrency, length, move |account| {
        transaction(
            pool.clone(),
            "UPDATE accounts SET balance = balance + 1 WHERE id = ?1",
            "INSERT INTO history (account, delta, at) VALUES (?1, 1, unixepoch())",
            account,
        )
    })
    .await;
    for file in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{file}"));
    }
    rate
}

async fn postgres(url: &str, concurrency: usize, length: Duration) -> Result<f64, BoxError> {
    let pool = PgPoolOptions::new()
        .max_connections(concurrency as u32)
        .connect(url)
        .await?;
    for sql in [
        "DROP TABLE IF EXISTS saga_bench_accounts, saga_bench_history",
        "CREATE TABLE saga_bench_accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)",
        "CREATE TABLE saga_bench_history (id BIGSERIAL PRIMARY KEY, account BIGINT NOT NULL, \
         delta BIGINT NOT NULL, at TIMESTAMPTZ NOT NULL)",
    ] {
        sqlx::query(sql).execute(&pool).await?;
    }
    sqlx::query("INSERT INTO saga_bench_accounts SELECT i, 0 FROM generate_series(1, $1) AS i")
        .bind(ACCOUNTS)
        .execute(&pool)
        .await?;
    let work = pool.clone();
    let rate = drive(concurrency, length, move |account| {
        transaction(
            work.clone(),
            "UPDATE saga_bench_accounts SET balance = balance + 1 WHERE id = $1",
            "INSERT INTO saga_bench_history (account, delta, at) VALUES ($1, 1, now())",
            account,
        )
    })
    .await;
    sqlx::query("DROP TABLE IF EXISTS saga_bench_accounts, saga_bench_history")
        .execute(&pool)
        .await?;
    rate
}

/// One pgbench-style transaction: `update` then `insert`, each taking the account as its one
/// parameter, committed together.
async fn transaction<DB: Database>(
    pool: Pool<DB>,
    update: &'static str,
    insert: &'static str,
    account: i64,
) -> Result<(), sqlx::Error>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
{
    let mut tx = pool.begin().await?;
    sqlx::query(update).bind(account).execute(&mut *tx).await?;
    sqlx::query(insert).bind(account).execute(&mut *tx).await?;
    tx.commit().await
}

/// Runs `transaction` from `concurrency` clients for `length`; returns commits per second.
async fn drive<F, Fut>(
    concurrency: usize,
    length: Duration,
    transaction: F,
) -> Result<f64, BoxError>
where
    F: Fn(i64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), sqlx::Error>> + Send,
{
    let commits = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + length;
    let mut clients = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (transaction, commits) = (transaction.clone(), commits.clone());
        clients.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                transaction(fastrand::i64(1..=ACCOUNTS)).await?;
                commits.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, sqlx::Error>(())
        }));
    }
    for client in clients {
        client.await??;
    }
    Ok(commits.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}
