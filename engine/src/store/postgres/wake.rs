//! Wake-ups across processes: a task per store that `LISTEN`s on the schema's channel and
//! notifies idle mediators of this process when another one leaves a saga runnable. After a lost
//! connection it reconnects with backoff and wakes them once, since notifications sent while it
//! was away are lost (the claim that follows finds that work anyway).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{Notify, OnceCell};
use tokio::task::AbortHandle;

/// The listening task, started on first use and stopped with the store.
#[derive(Debug)]
pub(super) struct Listener {
    pool: PgPool,
    channel: String,
    signal: Arc<Notify>,
    task: OnceCell<AbortHandle>,
}

impl Listener {
    pub(super) fn new(pool: PgPool, channel: String) -> Self {
        Self {
            pool,
            channel,
            signal: Arc::new(Notify::new()),
            task: OnceCell::new(),
        }
    }

    /// The signal, listening from now on (a read-only CLI never starts the task).
    pub(super) fn signal(&self) -> Arc<Notify> {
        if self.task.get().is_none() {
            let task = tokio::spawn(listen(
                self.pool.clone(),
                self.channel.clone(),
                self.signal.clone(),
            ));
            if let Err(tokio::sync::SetError::AlreadyInitializedError(_)) =
                self.task.set(task.abort_handle())
            {
                task.abort();
            }
        }
        self.signal.clone()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }
}

async fn listen(pool: PgPool, channel: String, signal: Arc<Notify>) {
    let mut delay = Duration::from_millis(100);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for runnable sagas; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(error) = listener.listen(&channel).await {
            tracing::warn!(%error, "cannot listen for runnable sagas; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            continue;
        }
        // Whatever was announced while not listening is found by the claim this wakes.
        signal.notify_one();
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => {
                    delay = Duration::from_millis(100);
                    signal.notify_one();
                }
                Ok(None) => {
                    tracing::warn!(
                        "lost the connection listening for runnable sagas; reconnecting"
                    );
                    signal.notify_one();
                }
                Err(error) => {
                    tracing::warn!(%error, "listening for runnable sagas failed; reconnecting");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    break;
                }
            }
        }
    }
}
