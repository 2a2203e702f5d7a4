//! Counts by definition and status for the list's tiles and the definitions page. Counting is
//! a scan of every saga (about a second over a million on SQLite), so a count that took long is
//! kept and served while a fresh one is taken in the background: a store that counts in under
//! 20 ms is counted on every request; a slower one at most once per twenty times its counting
//! time (capped at a minute), and the page says how old its counts are.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Shared, UiError};
use saga_engine::SagaStatus;

/// Counts per (definition, status).
pub(super) type Rows = Arc<Vec<(String, SagaStatus, u64)>>;

const CHEAP: Duration = Duration::from_millis(20);
const MAX_AGE: Duration = Duration::from_secs(60);

struct Taken {
    rows: Rows,
    at: Instant,
    took: Duration,
}

/// The kept counts and whether a fresh count is under way.
#[derive(Default)]
pub(crate) struct Counts {
    taken: Mutex<Option<Taken>>,
    refreshing: AtomicBool,
}

impl Counts {
    /// The counts and how old they are.
    pub(super) async fn get(ui: &Shared) -> Result<(Rows, Duration), UiError> {
        let kept = {
            let taken = ui.counts.taken.lock().unwrap_or_else(|e| e.into_inner());
            taken.as_ref().map(|t| {
                let fresh_for = if t.took < CHEAP {
                    Duration::ZERO
                } else {
                    (t.took * 20).min(MAX_AGE)
                };
                (t.rows.clone(), t.at.elapsed(), fresh_for)
            })
        };
        match kept {
            Some((rows, age, fresh_for)) if age < fresh_for => Ok((rows, age)),
            Some((rows, age, fresh_for)) if fresh_for > Duration::ZERO => {
                if !ui.counts.refreshing.swap(true, Ordering::AcqRel) {
                    let ui = ui.clone();
                    tokio::spawn(async move {
                        let _ = count(&ui).await;
                        ui.counts.refreshing.store(false, Ordering::Release);
                    });
                }
                Ok((rows, age))
            }
            _ => Ok((count(ui).await?, Duration::ZERO)),
        }
    }
}

async fn count(ui: &Shared) -> Result<Rows, UiError> {
    let begun = Instant::now();
    let rows: Rows = Arc::new(ui.store.counts().await?);
    let taken = Taken {
        rows: rows.clone(),
        at: Instant::now(),
        took: begun.elapsed(),
    };
    *ui.counts.taken.lock().unwrap_or_else(|e| e.into_inner()) = Some(taken);
    Ok(rows)
}
