//! Durability off the writer's path. The writer connection commits without waiting for the disk
//! (`synchronous=NORMAL`), and no commit is acknowledged until an `fdatasync` of the WAL that
//! began after it has finished. That is what `synchronous=FULL` promises (an acknowledged commit
//! survives a power loss), but the writer goes on with the next batch while the disk syncs, and
//! one sync covers every commit made before it began.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::StoreError;

/// Syncs one database's WAL file on behalf of its writer connection.
#[derive(Debug)]
pub(super) struct WalFlusher {
    wal: PathBuf,
    /// Commits so far: a commit takes the next number once it has been made.
    committed: AtomicU64,
    /// The highest commit number known to be on disk.
    synced: AtomicU64,
}

impl WalFlusher {
    /// A flusher for the database file at `db` (its WAL is `db` with `-wal` appended).
    pub(super) fn new(db: &std::path::Path) -> Self {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Self {
            wal: wal.into(),
            committed: AtomicU64::new(0),
            synced: AtomicU64::new(0),
        }
    }

    /// Returns once everything committed before this call is on disk.
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let ticket = self.committed.fetch_add(1, Ordering::AcqRel) + 1;
        if self.synced.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        // Every commit numbered up to here was made before this sync begins.
        let target = self.committed.load(Ordering::Acquire);
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || sync_file(&wal))
            .await
            .map_err(|e| StoreError::CommitFailed(format!("syncing the WAL: {e}")))?
            .map_err(|e| StoreError::CommitFailed(format!("syncing the WAL: {e}")))?;
        self.synced.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }
}

/// `fdatasync` of the file at `path`. A WAL that no longer exists was checkpointed into the
/// database file and removed, which SQLite syncs itself.
fn sync_file(path: &std::path::Path) -> io::Result<()> {
    match std::fs::File::open(path) {
        Ok(file) => file.sync_data(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flush_syncs_the_wal_and_covers_the_commits_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store.db");
        std::fs::write(dir.path().join("store.db-wal"), b"frames").unwrap();
        let flusher = WalFlusher::new(&db);
        flusher.flush().await.unwrap();
        flusher.flush().await.unwrap();
        assert_eq!(flusher.committed.load(Ordering::Acquire), 2);
        assert_eq!(flusher.synced.load(Ordering::Acquire), 2);
    }

    #[tokio::test]
    async fn a_wal_already_checkpointed_away_needs_no_sync() {
        let dir = tempfile::tempdir().unwrap();
        let flusher = WalFlusher::new(&dir.path().join("store.db"));
        flusher.flush().await.unwrap();
        assert_eq!(flusher.synced.load(Ordering::Acquire), 1);
    }

    #[tokio::test]
    async fn a_failed_sync_is_an_error_and_covers_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // The database's directory is a file: the WAL cannot be opened.
        let not_a_dir = dir.path().join("plain-file");
        std::fs::write(&not_a_dir, b"").unwrap();
        let flusher = WalFlusher::new(&not_a_dir.join("store.db"));
        let error = flusher.flush().await.unwrap_err();
        assert!(
            matches!(&error, StoreError::CommitFailed(m) if m.contains("syncing the WAL")),
            "{error}"
        );
        assert_eq!(flusher.synced.load(Ordering::Acquire), 0);
    }
}
