//! Group commit: the commit pipeline that every transition (and every outbox clean-up) of a
//! store goes through. A caller queues its write and waits; a committer takes everything queued
//! at that moment and writes it in one database transaction, so concurrent sagas' transitions
//! share one commit. There is no waiting window: a write that finds the pipeline idle commits at
//! once, alone, so latency at low load is that of a plain commit. A caller hears back only after
//! the transaction committed; a write whose caller gave up before its batch began is dropped.
//! Outbox clean-ups are in no hurry: they wait to ride in the next batch of transitions, and
//! commit on their own only if none comes for a moment.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

use super::{StoreError, WriteStats};

/// Queued writes per transaction, at most: bounds a batch's size and how long its lock is held.
/// (The outbox clean-ups lingering at that moment join it too.)
const MAX_BATCH: usize = 256;
/// How long a lingering write waits for a batch to ride in before it commits on its own.
const LINGER: Duration = Duration::from_millis(20);

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
    /// A transition as this backend binds it, encoded by its caller (so encoding runs in
    /// parallel, not in the committer).
    type Transition: Encoded;
    /// The outbox ids to forget, as this backend binds them.
    type Removal: Send + Sync + 'static;

    /// Writes `writes` in one transaction and commits it. A write the database refuses by its
    /// own checks (a stale fencing token, a taken id) gets its error in the returned list and
    /// writes nothing; the others still commit.
    async fn write(&self, writes: &[WriteOf<Self>]) -> Result<Vec<Outcome>, Failure>;

    /// Whether a committed batch must also be flushed (see [`Batch::flush`]) before its writes
    /// are acknowledged.
    fn flushes(&self) -> bool {
        false
    }

    /// Makes everything committed so far durable. The committer does not wait for it: it writes
    /// the next batch meanwhile, and this batch's callers hear back once it returns.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A backend's encoded transition.
pub(super) trait Encoded: Send + Sync + 'static {
    /// The saga it is a transition of.
    fn saga(&self) -> Uuid;
    /// Whether it creates the saga (or updates it).
    fn creates(&self) -> bool;
}

/// The outcomes of a committed batch's `writes`, in order: a transition `applied` says went in
/// committed at `at`; any other was refused, a new saga because its id was taken, an update
/// because its writer no longer held the saga.
pub(super) fn outcomes<T: Encoded, R>(
    writes: &[Write<T, R>],
    at: i64,
    applied: impl Fn(&T) -> bool,
) -> Vec<Outcome> {
    writes
        .iter()
        .map(|w| match w {
            Write::Transition(t) if applied(t) => Ok(at),
            Write::Transition(t) if t.creates() => Err(StoreError::Duplicate(t.saga())),
            Write::Transition(t) => Err(StoreError::LeaseLost(t.saga())),
            Write::RemoveOutbox(_) => Ok(0),
        })
        .collect()
}

/// One queued write.
pub(super) enum Write<T, R> {
    /// A saga transition.
    Transition(Box<T>),
    /// Forget dispatched outbox events.
    RemoveOutbox(R),
}

/// The writes a backend `B` takes.
pub(super) type WriteOf<B> = Write<<B as Batch>::Transition, <B as Batch>::Removal>;

impl<T, R> Write<T, R> {
    /// The transition this write is, if it is one.
    pub(super) fn transition(&self) -> Option<&T> {
        match self {
            Write::Transition(t) => Some(t),
            Write::RemoveOutbox(_) => None,
        }
    }

    /// The outbox ids this write forgets, if it is a clean-up.
    pub(super) fn removal(&self) -> Option<&R> {
        match self {
            Write::RemoveOutbox(ids) => Some(ids),
            Write::Transition(_) => None,
        }
    }
}

impl<T: Encoded, R> Write<T, R> {
    /// The saga this is a transition of (`None` for other writes). A batch holds at most one
    /// write per saga, so a backend can apply a batch's transitions as one set.
    fn saga(&self) -> Option<Uuid> {
        self.transition().map(Encoded::saga)
    }

    /// What this write reports when its batch's commit may or may not have happened.
    fn unconfirmed(&self, error: &dyn std::fmt::Display) -> StoreError {
        match self {
            Write::Transition(t) => StoreError::Unconfirmed(t.saga()),
            Write::RemoveOutbox(_) => StoreError::CommitFailed(error.to_string()),
        }
    }
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

    /// Counts a committed batch of transitions, which took `took`; also reported as figures.
    fn batch(&self, transitions: usize, took: Duration) {
        crate::figures::commit(transitions, took);
        self.commit(transitions);
    }

    /// The counts so far.
    pub(super) fn stats(&self) -> WriteStats {
        WriteStats {
            commits: self.commits.load(Ordering::Relaxed),
            transitions: self.transitions.load(Ordering::Relaxed),
        }
    }
}

/// Writes waiting to ride in the next batch.
type Lingering<W> = Arc<std::sync::Mutex<Vec<Job<W>>>>;

/// Takes the lingering writes (a poisoned list is still a valid list).
fn take<W>(lingering: &Lingering<W>) -> Vec<Job<W>> {
    std::mem::take(&mut *lingering.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The queue in front of a backend's committers. Dropping it stops them once they have written
/// what is queued.
pub(super) struct Pipeline<T, R> {
    queue: mpsc::UnboundedSender<Job<Write<T, R>>>,
    lingering: Lingering<Write<T, R>>,
    /// Starts the linger timer of a write that found none lingering.
    linger: mpsc::Sender<()>,
}

impl<T, R> std::fmt::Debug for Pipeline<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

impl<T: Encoded, R: Send + Sync + 'static> Pipeline<T, R> {
    /// Starts `committers` committer tasks over `backend` (one for a single-writer database;
    /// more where the server commits several transactions at once). Must run inside tokio.
    pub(super) fn start<B>(backend: Arc<B>, committers: usize, counters: Arc<Counters>) -> Self
    where
        B: Batch<Transition = T, Removal = R>,
    {
        let (queue, jobs) = mpsc::unbounded_channel();
        let jobs = Arc::new(Mutex::new(jobs));
        let lingering: Lingering<Write<T, R>> = Arc::default();
        for _ in 0..committers.max(1) {
            tokio::spawn(commit_loop(
                backend.clone(),
                jobs.clone(),
                lingering.clone(),
                counters.clone(),
            ));
        }
        let (linger, timer) = mpsc::channel(1);
        tokio::spawn(linger_timer(timer, lingering.clone(), queue.downgrade()));
        Self {
            queue,
            lingering,
            linger,
        }
    }

    /// Like [`Pipeline::submit`], for a write in no hurry: it rides in the next batch, or commits
    /// on its own once it has waited [`LINGER`] for one.
    pub(super) async fn submit_lingering(&self, write: Write<T, R>) -> Outcome {
        let (reply, outcome) = oneshot::channel();
        let first = {
            let mut lingering = self.lingering.lock().unwrap_or_else(|e| e.into_inner());
            lingering.push(Job { write, reply });
            lingering.len() == 1
        };
        if first {
            // Full means a timer is already starting.
            let _ = self.linger.try_send(());
        }
        outcome.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues `write` and waits until its batch committed (or failed).
    pub(super) async fn submit(&self, write: Write<T, R>) -> Outcome {
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send(Job { write, reply })
            .map_err(|_| StoreError::Closed)?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }
}

/// Sends the writes still lingering [`LINGER`] after the first of them came to the committers,
/// until the pipeline is dropped.
async fn linger_timer<W>(
    mut started: mpsc::Receiver<()>,
    lingering: Lingering<W>,
    queue: mpsc::WeakUnboundedSender<Job<W>>,
) {
    while started.recv().await.is_some() {
        tokio::time::sleep(LINGER).await;
        let Some(queue) = queue.upgrade() else { return };
        for job in take(&lingering) {
            let _ = queue.send(job);
        }
    }
}

/// One committer: takes what is queued (waiting only when nothing is) and what lingers, writes
/// it, answers.
async fn commit_loop<B: Batch>(
    backend: Arc<B>,
    jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job<WriteOf<B>>>>>,
    lingering: Lingering<WriteOf<B>>,
    counters: Arc<Counters>,
) {
    // A second write of a saga already in a batch waits for the next one.
    let mut held: Option<Job<WriteOf<B>>> = None;
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
            let mut sagas: HashSet<Uuid> = first.write.saga().into_iter().collect();
            let mut batch = vec![first];
            while let Some(queue) = queue.as_mut().filter(|_| batch.len() < MAX_BATCH) {
                let Ok(job) = queue.try_recv() else { break };
                if let Some(saga) = job.write.saga() {
                    if !sagas.insert(saga) {
                        held = Some(job);
                        break;
                    }
                }
                batch.push(job);
            }
            // Lingering writes are outbox clean-ups: no saga, nothing to keep apart.
            batch.extend(take(&lingering));
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
        if backend.flushes() && outcomes.iter().any(Result::is_ok) {
            let backend = backend.clone();
            tokio::spawn(async move {
                let flushed = backend.flush().await;
                if let Err(error) = &flushed {
                    tracing::error!(%error, writes = writes.len(), "a group commit was not made durable");
                }
                answer(replies, outcomes, &writes, flushed);
            });
        } else {
            answer(replies, outcomes, &writes, Ok(()));
        }
    }
}

/// Tells each caller its write's outcome; if the batch could not be made durable, a write that
/// committed may or may not survive, and says so.
fn answer<T: Encoded, R>(
    replies: Vec<oneshot::Sender<Outcome>>,
    outcomes: Vec<Outcome>,
    writes: &[Write<T, R>],
    flushed: Result<(), StoreError>,
) {
    for ((reply, outcome), write) in replies.into_iter().zip(outcomes).zip(writes) {
        let outcome = match (&flushed, outcome) {
            (Err(error), Ok(_)) => Err(write.unconfirmed(error)),
            (_, outcome) => outcome,
        };
        let _ = reply.send(outcome);
    }
}

/// Writes a batch in one transaction; if one of its statements fails, writes each alone, so
/// only the write at fault gets the error.
async fn write_all<B: Batch>(
    backend: &B,
    writes: &[WriteOf<B>],
    counters: &Counters,
) -> Vec<Outcome> {
    let transitions = |w: &[WriteOf<B>]| w.iter().filter(|w| w.saga().is_some()).count();
    let started = std::time::Instant::now();
    match backend.write(writes).await {
        Ok(outcomes) => {
            counters.batch(transitions(writes), started.elapsed());
            outcomes
        }
        Err(Failure::Unknown(error)) => {
            tracing::warn!(%error, writes = writes.len(), "a group commit was not confirmed");
            writes.iter().map(|w| Err(w.unconfirmed(&error))).collect()
        }
        Err(Failure::RolledBack(error)) if writes.len() == 1 => vec![Err(error.into())],
        Err(Failure::RolledBack(error)) => {
            tracing::debug!(%error, "a group commit was rolled back; writing one at a time");
            let mut outcomes = Vec::with_capacity(writes.len());
            for write in writes.chunks(1) {
                let started = std::time::Instant::now();
                outcomes.push(match backend.write(write).await {
                    Ok(mut one) => {
                        counters.batch(transitions(write), started.elapsed());
                        one.pop().unwrap_or(Err(StoreError::Closed))
                    }
                    Err(Failure::RolledBack(error)) => Err(error.into()),
                    Err(Failure::Unknown(error)) => Err(write[0].unconfirmed(&error)),
                });
            }
            outcomes
        }
    }
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
