//! Group commit: the commit pipeline that every transition (and every outbox clean-up) of a
//! store goes through. A caller queues its write and waits; a committer takes everything queued
//! at that moment and writes it in one database transaction, so concurrent sagas' transitions
//! share one commit. There is no waiting window: a write that finds the pipeline idle commits at
//! once, alone, so latency at low load is that of a plain commit. A caller hears back only after
//! the transaction committed; a write whose caller gave up before its batch began is dropped.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

use super::{StoreError, WriteStats};

/// Writes per transaction, at most: bounds a batch's size and how long its lock is held.
const MAX_BATCH: usize = 256;

/// How a batch failed as a whole.
pub(super) enum Failure {
    /// A statement failed and the transaction was rolled back: nothing of the batch was written.
    RolledBack(sqlx::Error),
    /// The commit itself failed: the database may or may not have committed the batch.
    Unknown(sqlx::Error),
}

/// A backend's side of the pipeline: how it writes a batch in one transaction.
#[async_trait]
pub(super) trait Batch: Send + Sync + 'static {
    /// One queued write, encoded by its caller (so encoding runs in parallel, not in the
    /// committer).
    type Write: Send + Sync + 'static;

    /// Writes `writes` in one transaction and commits it. A write the database refuses by its
    /// own checks (a stale fencing token, a taken id) gets its error in the returned list and
    /// writes nothing; the others still commit.
    async fn write(&self, writes: &[Self::Write]) -> Result<Vec<Outcome>, Failure>;

    /// The saga `write` is a transition of (`None` for other writes). A batch holds at most one
    /// write per saga, so a backend can apply a batch's transitions as one set.
    fn saga(write: &Self::Write) -> Option<Uuid>;

    /// What a write reports when its batch's commit may or may not have happened.
    fn unconfirmed(write: &Self::Write, error: &sqlx::Error) -> StoreError;
}

/// What one write reports: the commit time on the database clock, or why it was refused.
pub(super) type Outcome = Result<i64, StoreError>;

struct Job<W> {
    write: W,
    reply: oneshot::Sender<Outcome>,
}

/// Counts of the write transactions a store committed.
#[derive(Debug, Default)]
pub(super) struct Counters {
    commits: AtomicU64,
    transitions: AtomicU64,
}

impl Counters {
    /// Counts one committed transaction carrying `transitions` transitions.
    pub(super) fn commit(&self, transitions: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.transitions
            .fetch_add(transitions as u64, Ordering::Relaxed);
    }

    /// The counts so far.
    pub(super) fn stats(&self) -> WriteStats {
        WriteStats {
            commits: self.commits.load(Ordering::Relaxed),
            transitions: self.transitions.load(Ordering::Relaxed),
        }
    }
}

/// The queue in front of a backend's committers. Dropping it stops them once they have written
/// what is queued.
pub(super) struct Pipeline<W> {
    queue: mpsc::UnboundedSender<Job<W>>,
}

impl<W> std::fmt::Debug for Pipeline<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

impl<W: Send + Sync + 'static> Pipeline<W> {
    /// Starts `committers` committer tasks over `backend` (one for a single-writer database;
    /// more where the server commits several transactions at once). Must run inside tokio.
    pub(super) fn start<B>(backend: Arc<B>, committers: usize, counters: Arc<Counters>) -> Self
    where
        B: Batch<Write = W>,
    {
        let (queue, jobs) = mpsc::unbounded_channel();
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..committers.max(1) {
            tokio::spawn(commit_loop(backend.clone(), jobs.clone(), counters.clone()));
        }
        Self { queue }
    }

    /// Queues `write` and waits until its batch committed (or failed).
    pub(super) async fn submit(&self, write: W) -> Outcome {
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send(Job { write, reply })
            .map_err(|_| StoreError::Closed)?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }
}

/// One committer: takes what is queued (waiting only when nothing is), writes it, answers.
async fn commit_loop<B: Batch>(
    backend: Arc<B>,
    jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job<B::Write>>>>,
    counters: Arc<Counters>,
) {
    // A second write of a saga already in a batch waits for the next one.
    let mut held: Option<Job<B::Write>> = None;
    loop {
        let batch = {
            // While one committer writes, the next waits here for the writes that queue
            // meanwhile: they become its batch. A committer with a held write goes on without
            // waiting: if another holds the queue, that one is waiting, so nothing is queued.
            let (first, mut queue) = match held.take() {
                Some(job) => (job, jobs.try_lock().ok()),
                None => {
                    let mut queue = jobs.lock().await;
                    match queue.recv().await {
                        Some(job) => (job, Some(queue)),
                        None => return,
                    }
                }
            };
            let mut sagas: HashSet<Uuid> = B::saga(&first.write).into_iter().collect();
            let mut batch = vec![first];
            while let Some(queue) = queue.as_mut().filter(|_| batch.len() < MAX_BATCH) {
                let Ok(job) = queue.try_recv() else { break };
                if let Some(saga) = B::saga(&job.write) {
                    if !sagas.insert(saga) {
                        held = Some(job);
                        break;
                    }
                }
                batch.push(job);
            }
            batch
        };
        // A caller that stopped waiting (its saga's driver was stopped) is not written for.
        let (writes, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .filter(|job| !job.reply.is_closed())
            .map(|job| (job.write, job.reply))
            .unzip();
        if writes.is_empty() {
            continue;
        }
        let outcomes = write_all(backend.as_ref(), &writes, &counters).await;
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
    }
}

/// Writes a batch in one transaction; if one of its statements fails, writes each alone, so
/// only the write at fault gets the error.
async fn write_all<B: Batch>(
    backend: &B,
    writes: &[B::Write],
    counters: &Counters,
) -> Vec<Outcome> {
    let transitions = |w: &[B::Write]| w.iter().filter(|w| B::saga(w).is_some()).count();
    match backend.write(writes).await {
        Ok(outcomes) => {
            counters.commit(transitions(writes));
            outcomes
        }
        Err(Failure::Unknown(error)) => {
            tracing::warn!(%error, writes = writes.len(), "a group commit was not confirmed");
            writes
                .iter()
                .map(|w| Err(B::unconfirmed(w, &error)))
                .collect()
        }
        Err(Failure::RolledBack(error)) if writes.len() == 1 => vec![Err(error.into())],
        Err(Failure::RolledBack(error)) => {
            tracing::debug!(%error, "a group commit was rolled back; writing one at a time");
            let mut outcomes = Vec::with_capacity(writes.len());
            for write in writes.chunks(1) {
                outcomes.push(match backend.write(write).await {
                    Ok(mut one) => {
                        counters.commit(transitions(write));
                        one.pop().unwrap_or(Err(StoreError::Closed))
                    }
                    Err(Failure::RolledBack(error)) => Err(error.into()),
                    Err(Failure::Unknown(error)) => Err(B::unconfirmed(&write[0], &error)),
                });
            }
            outcomes
        }
    }
}
