//! Opening the SQLite store: the file (created or required), WAL mode, its durability setting,
//! the writer connection and the readers, and the migrations.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::*;

/// Takes this store's own `synchronous=full|normal` parameter out of `url` (the driver does not
/// know it), returning the rest of the URL and the setting (full when absent).
fn synchronous_option(url: &str) -> Result<(String, SqliteSynchronous), sqlx::Error> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), SqliteSynchronous::Full));
    };
    let mut synchronous = SqliteSynchronous::Full;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("synchronous", value)) => {
                synchronous = match value.to_ascii_lowercase().as_str() {
                    "full" => SqliteSynchronous::Full,
                    "normal" => SqliteSynchronous::Normal,
                    other => {
                        return Err(sqlx::Error::Configuration(
                            format!(
                                "unknown value `{other}` for `synchronous`: use full or normal"
                            )
                            .into(),
                        ))
                    }
                }
            }
            _ => rest.push(pair),
        }
    }
    let url = match rest.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", rest.join("&")),
    };
    Ok((url, synchronous))
}

impl SqliteStore {
    /// Opens (or, with [`OpenMode::CreateIfMissing`], creates) the database at `url`
    /// (`sqlite://PATH`), in WAL mode, durable as with `synchronous=FULL`, and runs the
    /// migrations. The writer connection commits without waiting for the disk, and this store
    /// acknowledges no write until a sync of the WAL made after it has finished (see
    /// `flush.rs`), so the writer need not sit idle while the disk syncs.
    ///
    /// `?synchronous=normal` in the URL relaxes durability for speed: a commit is then
    /// acknowledged before it reaches the disk, so a power loss (not a process crash) may lose
    /// the last transitions. Full is the default and what the engine's guarantees assume.
    pub async fn open(url: &str, mode: OpenMode) -> Result<Self, StoreError> {
        let open_err = |source: sqlx::Error| StoreError::Open {
            url: url.to_string(),
            source: Box::new(source),
        };
        let (sqlx_url, synchronous) = synchronous_option(url).map_err(open_err)?;
        let options = SqliteConnectOptions::from_str(&sqlx_url)
            .map_err(open_err)?
            .create_if_missing(mode == OpenMode::CreateIfMissing)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let filename = options.get_filename().to_string_lossy().to_string();
        let in_memory =
            filename.is_empty() || filename == ":memory:" || url.contains("mode=memory");
        if mode == OpenMode::MustExist && !in_memory && !options.get_filename().exists() {
            return Err(StoreError::Missing(filename));
        }
        let flush_wal = synchronous == SqliteSynchronous::Full && !in_memory;
        let writer_options = match flush_wal {
            true => options.clone().synchronous(SqliteSynchronous::Normal),
            false => options.clone(),
        };
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // One connection that nothing else closes: no round trip to test it on each use.
            .test_before_acquire(false)
            // Batches work in scratch tables of their connection's own.
            .after_connect(|db, _| {
                Box::pin(async move {
                    sqlx::query(CREATE_BATCH_TABLES).execute(db).await?;
                    Ok(())
                })
            })
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(writer_options)
            .await
            .map_err(open_err)?;
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options.clone())
                .await
                .map_err(open_err)?
        };
        let mut migrator = sqlx::migrate!("./migrations/sqlite");
        // The host application may keep its own migrations in the same file.
        migrator.set_ignore_missing(true);
        migrator.run(&writer).await?;
        // The file exists now; its absolute path stays right if the working directory changes.
        let path = options.get_filename();
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let flusher = flush_wal.then(|| Arc::new(WalFlusher::new(&path)));
        let counters = Arc::new(Counters::default());
        let pipeline = Pipeline::start(
            Arc::new(batch::Writer {
                pool: writer.clone(),
                flusher: flusher.clone(),
            }),
            1,
            counters.clone(),
        );
        let store = Self {
            writer,
            reader,
            pipeline: Arc::new(pipeline),
            counters,
            flusher,
        };
        store.durable().await?;
        Ok(store)
    }
}
