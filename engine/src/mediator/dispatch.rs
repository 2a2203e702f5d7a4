//! Where events leave: the dispatcher publishes committed events to the bus, in commit order,
//! then removes them from the outbox. Events a crash kept from being published (and those an
//! operator's command wrote from another process) are found in the outbox at start-up and by a
//! periodic sweep, so every event is delivered at least once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::Inner;
use crate::bus::{Envelope, EventBus, Recent};
use crate::event::EventKind;

/// Outbox events older than this are taken to be orphaned (their writer is gone or has no
/// dispatcher) and are published by whichever mediator sweeps first.
const ORPHANED_AFTER: Duration = Duration::from_secs(5);
/// Events published per outbox sweep, at most.
const SWEEP_BATCH: usize = 512;
/// Batches per sweep, at most.
const SWEEP_ROUNDS: usize = 20;
/// Outbox clean-ups committing at once, at most, before the dispatcher waits for one.
const MAX_REMOVING: usize = 64;

/// What the dispatcher is asked to do, in order.
pub(crate) enum Dispatch {
    /// Publish these committed events.
    Events(Vec<Envelope>),
    /// Publish whatever the outbox holds (before driving sagas just claimed, whose earlier
    /// events an operator or another process may have left there).
    Sweep,
    /// Answer once everything handed over before has been published.
    Flush(oneshot::Sender<()>),
}

impl Inner {
    /// Hands committed events to the dispatcher (never blocks).
    pub(crate) fn dispatch(&self, events: Vec<Envelope>) {
        if self.config.dispatch && !events.is_empty() {
            // The dispatcher only stops with the mediator; the outbox keeps the events anyway.
            let _ = self.dispatcher.send(Dispatch::Events(events));
        }
    }

    /// Asks the dispatcher to publish what the outbox holds before anything handed over later.
    pub(crate) fn sweep_outbox(&self) {
        if self.config.dispatch {
            let _ = self.dispatcher.send(Dispatch::Sweep);
        }
    }

    /// Waits until every event handed over so far is published.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.dispatcher.send(Dispatch::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// What the dispatcher keeps between jobs.
#[derive(Default)]
struct Dispatcher {
    /// The ids this dispatcher published lately. An event can reach it twice, from its own
    /// commit and from an outbox sweep that read the row before the commit's hand-over was
    /// processed; it is published once. (Across processes, consumers drop duplicates by id.)
    recent: Recent,
    /// Removals of published events from the outbox, committing while the dispatcher goes on
    /// publishing (they share commits with transitions instead of holding up the next events).
    removing: JoinSet<()>,
}

impl Dispatcher {
    /// Waits until every removal under way has committed (or failed).
    async fn removed(&mut self) {
        while self.removing.join_next().await.is_some() {}
    }
}

/// Runs the dispatcher until the mediator stops.
pub(crate) async fn run(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Dispatch>) {
    let state = &mut Dispatcher::default();
    if inner.config.dispatch {
        // Rows another sweeper holds are taken too: it may be the crashed process this one
        // replaces, and waiting out its hold would delay them for nothing.
        sweep(&inner, state, Duration::ZERO, true).await;
    }
    let mut every = tokio::time::interval(ORPHANED_AFTER);
    every.tick().await;
    loop {
        tokio::select! {
            job = rx.recv() => {
                let Some(job) = job else { return };
                // Jobs in order; consecutive event hand-overs are published as one batch.
                let mut batch = Vec::new();
                for job in std::iter::once(job).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                    match job {
                        Dispatch::Events(events) => batch.extend(events),
                        Dispatch::Sweep => {
                            publish(&inner, state, std::mem::take(&mut batch)).await;
                            sweep(&inner, state, Duration::ZERO, false).await;
                        }
                        Dispatch::Flush(done) => {
                            publish(&inner, state, std::mem::take(&mut batch)).await;
                            // Published and gone from the outbox.
                            state.removed().await;
                            let _ = done.send(());
                        }
                    }
                }
                publish(&inner, state, batch).await;
            }
            _ = every.tick(), if inner.config.dispatch => sweep(&inner, state, ORPHANED_AFTER, false).await,
        }
    }
}

/// Publishes outbox events at least `min_age` old that no other sweeper holds (unless
/// `include_claimed`).
async fn sweep(
    inner: &Arc<Inner>,
    state: &mut Dispatcher,
    min_age: Duration,
    include_claimed: bool,
) {
    // Bounded, so a backlog cannot keep the dispatcher from live events for long.
    for _ in 0..SWEEP_ROUNDS {
        // What this dispatcher published is gone from the outbox before it reads it again (it
        // would read the same rows over and over).
        state.removed().await;
        match inner
            .store
            .outbox_claim(min_age, SWEEP_BATCH, include_claimed)
            .await
        {
            Ok(events) if events.is_empty() => return,
            Ok(events) => {
                let full = events.len() == SWEEP_BATCH;
                tracing::info!(count = events.len(), "publishing events left in the outbox");
                publish(inner, state, events).await;
                if !full {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "reading the outbox failed; will try again");
                return;
            }
        }
    }
}

/// Publishes `events` in order (all sent before their confirms are awaited), then has the
/// confirmed ones removed from the outbox.
async fn publish(inner: &Arc<Inner>, state: &mut Dispatcher, events: Vec<Envelope>) {
    if events.is_empty() {
        return;
    }
    let mut published = Vec::with_capacity(events.len());
    let mut batch = Vec::with_capacity(events.len());
    let one_by_one = inner.config.faults.watches_crash_points();
    for event in events {
        if state.recent.contains(&event.event_id) {
            published.push(event.event_id);
            continue;
        }
        // Committed and in the outbox, not yet published (once per event, so a run's crash
        // points do not depend on how events happen to be batched).
        inner.config.faults.crash_point("before_dispatch").await;
        batch.push(event);
        if one_by_one {
            send(inner, state, std::mem::take(&mut batch), &mut published).await;
        }
    }
    send(inner, state, batch, &mut published).await;
    while state.removing.try_join_next().is_some() {}
    if state.removing.len() >= MAX_REMOVING {
        state.removing.join_next().await;
    }
    let store = inner.store.clone();
    state.removing.spawn(async move {
        if let Err(error) = store.outbox_remove(&published).await {
            // They will be published again by a sweep: at least once.
            tracing::warn!(%error, "clearing published events from the outbox failed");
        }
    });
}

/// Publishes `batch` and records the confirmed ids; a saga's final events are echoed to this
/// mediator's own waiters, and a child saga's tell its parent.
async fn send(
    inner: &Arc<Inner>,
    state: &mut Dispatcher,
    batch: Vec<Envelope>,
    published: &mut Vec<uuid::Uuid>,
) {
    if batch.is_empty() {
        return;
    }
    let finals: Vec<Envelope> = batch
        .iter()
        .filter(|e| e.kind.parse::<EventKind>().is_ok_and(|k| k.is_final()))
        .cloned()
        .collect();
    let ids: Vec<uuid::Uuid> = batch.iter().map(|e| e.event_id).collect();
    let results = inner.bus.publish_all(batch).await;
    for (id, result) in ids.into_iter().zip(results) {
        match result {
            Ok(()) => {
                state.recent.insert(id);
                published.push(id);
            }
            Err(error) => {
                tracing::warn!(%error, event_id = %id, "publishing failed; the outbox keeps it")
            }
        }
    }
    for event in finals {
        if state.recent.contains(&event.event_id) {
            // A child's end reaches its parent before the event leaves the outbox, so a crash
            // in between tells the parent when the outbox is swept again.
            let child = event
                .definition
                .as_ref()
                .is_some_and(|d| inner.child_sagas.contains(d));
            if let (true, Some(id)) = (child, event.saga_id) {
                inner.tell_parent(id).await;
            }
            let _ = inner.local.publish(event).await;
        }
    }
}
