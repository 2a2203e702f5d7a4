//! Finding work: the scheduler claims sagas whose lease is free or expired and whose next
//! attempt is due (at start-up, after other mediators crash, after an operator acts), and the
//! heartbeat keeps the leases of the sagas this mediator drives from expiring.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Inner;
use crate::state::Millis;

/// How many sagas one claim takes at most.
const CLAIM_BATCH: usize = 256;

/// Claims runnable sagas until shutdown: at once when started, again whenever a claim came back
/// full or the store announces a runnable saga, and otherwise every poll interval (the slow
/// fallback for expired leases and due retries; new sagas of this process are driven directly
/// and never wait for it).
pub(crate) async fn run(inner: Arc<Inner>) {
    warn_about_unknown_versions(&inner).await;
    let keys = inner.registry.keys();
    let mut shutdown = inner.shutdown.subscribe();
    // Another process left a saga runnable (PostgreSQL's NOTIFY); without it, the poll finds it.
    let signal = inner.store.runnable_signal();
    let announced = || async {
        match &signal {
            Some(signal) => signal.notified().await,
            None => std::future::pending().await,
        }
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        // A frozen mediator (a test's zombie) stands still, as a frozen process would.
        let room = match inner.config.faults.frozen() {
            true => 0,
            false => inner.config.max_in_flight.saturating_sub(inner.in_flight()),
        };
        let mut full = false;
        if room > 0 {
            let limit = room.min(CLAIM_BATCH);
            match inner
                .store
                .claim(
                    &inner.config.owner,
                    inner.config.lease,
                    &keys,
                    limit,
                    &inner.in_flight_ids(),
                )
                .await
            {
                Ok(claimed) => {
                    full = claimed.len() == limit;
                    if !claimed.is_empty() {
                        // Their earlier events (an operator's, a crashed owner's) go out first.
                        inner.sweep_outbox();
                    }
                    for saga in claimed {
                        tracing::info!(saga_id = %saga.id, status = %saga.status, "resuming saga");
                        inner.spawn_driver(saga, true);
                    }
                }
                Err(error) => tracing::warn!(%error, "claiming sagas failed; will try again"),
            }
        }
        if full {
            continue;
        }
        // A driver ending frees room; that only matters when there was none.
        let at_capacity = room == 0;
        // The next poll, or sooner the earliest wait due (stored, or left by a driver since).
        let poll = Instant::now() + inner.config.poll_interval;
        inner.waits.clear();
        // Measured by the database's clock, so clocks apart cannot make it spin.
        let stored = match inner.store.next_due().await {
            Ok(due) => due.map(|d| Instant::now() + d + Duration::from_millis(1)),
            Err(error) => {
                tracing::warn!(%error, "reading the next due time failed");
                None
            }
        };
        loop {
            let at = [stored, inner.waits.earliest().map(instant_of)]
                .into_iter()
                .flatten()
                .fold(poll, Instant::min);
            tokio::select! {
                _ = tokio::time::sleep_until(at) => break,
                _ = inner.waits.changed.notified() => continue,
                _ = inner.wake.notified(), if at_capacity => break,
                _ = announced(), if !at_capacity => break,
                _ = shutdown.changed() => break,
            }
        }
    }
}

/// The earliest due time of the waits (timers, signal deadlines, reply deadlines) that this
/// mediator's drivers committed since the scheduler last read the store's.
#[derive(Debug)]
pub(crate) struct Waits {
    earliest: AtomicI64,
    changed: Notify,
}

impl Default for Waits {
    fn default() -> Self {
        Self {
            earliest: AtomicI64::new(i64::MAX),
            changed: Notify::new(),
        }
    }
}

impl Waits {
    /// A driver left a saga due at `at` (database time).
    pub(crate) fn due_at(&self, at: Option<Millis>) {
        if let Some(at) = at {
            if self.earliest.fetch_min(at, Ordering::AcqRel) > at {
                self.changed.notify_one();
            }
        }
    }

    fn earliest(&self) -> Option<Millis> {
        Some(self.earliest.load(Ordering::Acquire)).filter(|&at| at != i64::MAX)
    }

    fn clear(&self) {
        self.earliest.store(i64::MAX, Ordering::Release);
    }
}

/// The instant of a time on the database clock (taken to be this machine's), a millisecond
/// late rather than early.
fn instant_of(at: Millis) -> Instant {
    let ahead = at.saturating_sub(crate::store::now_ms()).saturating_add(1);
    Instant::now() + Duration::from_millis(u64::try_from(ahead).unwrap_or(0))
}

/// Renews the leases of the sagas in flight here, a third of a lease apart.
pub(crate) async fn heartbeat(inner: Arc<Inner>) {
    let every = inner.config.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let ids = inner.in_flight_ids();
        if ids.is_empty() || inner.config.faults.frozen() {
            continue;
        }
        if let Err(error) = inner
            .store
            .renew(&inner.config.owner, inner.config.lease, &ids)
            .await
        {
            crate::figures::lease_renewal_failed();
            tracing::warn!(%error, "renewing leases failed; will try again");
        }
    }
}

async fn warn_about_unknown_versions(inner: &Inner) {
    match inner.store.unfinished_definitions().await {
        Ok(found) => {
            for (definition, version, count) in found {
                if inner.registry.get(&definition, version).is_none() {
                    tracing::warn!(
                        definition,
                        version,
                        count,
                        "unfinished sagas use a definition version not registered here; leaving them untouched"
                    );
                }
            }
        }
        Err(error) => tracing::warn!(%error, "could not list unfinished sagas"),
    }
}
