//! Crash points (feature `fault-injection`): the process, or the task that reaches one, stops at
//! a named point of a transition, so the crash tests can prove recovery from each.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{FaultParseError, FaultPlan, CRASH_AT_ENV};

/// Names a file to which every crash point reached is appended, one per line: how a harness
/// discovers the points a run passes through.
pub const CRASH_TRACE_ENV: &str = "SAGA_CRASH_TRACE";

/// The crash points, in the order a transition meets them:
/// - `before_commit`, `after_commit`: around every transition's commit (the latter is also an
///   ambiguous commit: durable, but the process never learns it);
/// - `after_action`, `after_compensation`: the work's effect is applied, not yet recorded;
/// - `before_dispatch`: committed and in the outbox, not yet published;
/// - `after_signal_kept`: a signal is kept and its saga made due, not yet taken.
pub const CRASH_POINTS: [&str; 6] = [
    "before_commit",
    "after_commit",
    "after_action",
    "after_compensation",
    "before_dispatch",
    "after_signal_kept",
];

/// The crash-point part of a [`FaultPlan`].
#[derive(Debug, Clone, Default)]
pub(super) struct Crashes {
    armed: Option<Arc<ArmedCrash>>,
    /// Where reached crash points are recorded (discovery runs).
    trace: Option<Arc<Mutex<std::fs::File>>>,
    /// Commits (by number, from 1) that succeed but are reported as failed.
    ambiguous: Option<Arc<(u32, AtomicU32)>>,
}

/// A crash point armed to stop the process the `n`-th time it is reached.
#[derive(Debug)]
struct ArmedCrash {
    point: String,
    nth: u32,
    seen: AtomicU32,
    mode: CrashMode,
}

/// What reaching an armed crash point does.
#[derive(Debug)]
enum CrashMode {
    /// Stop the process at once, as SIGKILL would (`std::process::abort`).
    Abort,
    /// Stop the task that reached it for good (the in-process tier drops the mediator next).
    Halt(Arc<Stopped>),
    /// Stop the task until released, and stop renewing leases meanwhile: a frozen process.
    Freeze(Arc<Stopped>),
}

/// Where a halted or frozen mediator stopped, for the test that armed it.
#[derive(Debug, Default)]
pub struct Stopped {
    reached: Notify,
    stopped: AtomicBool,
    release: Notify,
}

impl Stopped {
    /// Waits until the armed point was reached.
    pub async fn reached(&self) {
        let notified = self.reached.notified();
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        notified.await;
    }

    /// Lets a frozen mediator go on (a halted one never does).
    pub fn release(&self) {
        self.stopped.store(false, Ordering::SeqCst);
        self.release.notify_waiters();
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.reached.notify_waiters();
    }
}

impl FaultPlan {
    /// Arms a crash point: the process aborts the `nth` time (from 1) it reaches `point`.
    pub fn crash_at(self, point: impl Into<String>, nth: u32) -> Self {
        self.arm(point.into(), nth, CrashMode::Abort)
    }

    /// Arms a crash point for the in-process tier: the task that reaches it stops for good
    /// (nothing after the point happens), and the returned handle says when.
    pub fn halt_at(self, point: impl Into<String>, nth: u32) -> (Self, Arc<Stopped>) {
        let stopped = Arc::new(Stopped::default());
        (
            self.arm(point.into(), nth, CrashMode::Halt(stopped.clone())),
            stopped,
        )
    }

    /// Arms a crash point that freezes the mediator there (its leases are no longer renewed)
    /// until the returned handle releases it: a zombie, once another mediator took over.
    pub fn freeze_at(self, point: impl Into<String>, nth: u32) -> (Self, Arc<Stopped>) {
        let stopped = Arc::new(Stopped::default());
        (
            self.arm(point.into(), nth, CrashMode::Freeze(stopped.clone())),
            stopped,
        )
    }

    /// Makes the `nth` commit (from 1) of this process succeed in the database but be reported
    /// as failed, as when the connection drops during COMMIT.
    pub fn ambiguous_commit(mut self, nth: u32) -> Self {
        self.crashes.ambiguous = Some(Arc::new((nth.max(1), AtomicU32::new(0))));
        self
    }

    /// # Panics
    /// On a point that is not one of [`CRASH_POINTS`]: a misspelt point would never fire.
    fn arm(mut self, point: String, nth: u32, mode: CrashMode) -> Self {
        assert!(
            CRASH_POINTS.contains(&point.as_str()),
            "unknown crash point `{point}`; use one of {CRASH_POINTS:?}"
        );
        self.crashes.armed = Some(Arc::new(ArmedCrash {
            point,
            nth: nth.max(1),
            seen: AtomicU32::new(0),
            mode,
        }));
        self
    }
}

impl Crashes {
    /// The crash point armed by `SAGA_CRASH_AT` and the trace file of `SAGA_CRASH_TRACE`.
    pub(super) fn from_env() -> Result<Self, FaultParseError> {
        let mut crashes = Self::default();
        if let Ok(spec) = std::env::var(CRASH_AT_ENV) {
            let err = |reason: &str| FaultParseError {
                spec: spec.clone(),
                reason: reason.to_string(),
            };
            let (point, nth) = match spec.split_once(':') {
                Some((point, n)) => (
                    point,
                    n.parse::<u32>().map_err(|_| err("N must be a number"))?,
                ),
                None => (spec.as_str(), 1),
            };
            if !CRASH_POINTS.contains(&point) {
                return Err(err("unknown crash point"));
            }
            crashes.armed = Some(Arc::new(ArmedCrash {
                point: point.to_string(),
                nth: nth.max(1),
                seen: AtomicU32::new(0),
                mode: CrashMode::Abort,
            }));
        }
        if let Ok(path) = std::env::var(CRASH_TRACE_ENV) {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| FaultParseError {
                    spec: path.clone(),
                    reason: format!("cannot open the crash trace: {e}"),
                })?;
            crashes.trace = Some(Arc::new(Mutex::new(file)));
        }
        Ok(crashes)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.armed.is_none() && self.trace.is_none() && self.ambiguous.is_none()
    }

    pub(super) fn watching(&self) -> bool {
        self.armed.is_some() || self.trace.is_some()
    }

    pub(super) fn frozen(&self) -> bool {
        matches!(&self.armed, Some(a) if matches!(&a.mode, CrashMode::Freeze(s) if s.stopped.load(Ordering::SeqCst)))
    }

    pub(super) fn commit_unconfirmed(&self) -> bool {
        self.ambiguous
            .as_ref()
            .is_some_and(|a| a.1.fetch_add(1, Ordering::SeqCst) + 1 == a.0)
    }

    pub(super) async fn reach(&self, point: &str) {
        if let Some(trace) = &self.trace {
            use std::io::Write;
            let mut file = trace.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(file, "{point}");
        }
        let Some(armed) = &self.armed else {
            return;
        };
        if armed.point != point || armed.seen.fetch_add(1, Ordering::SeqCst) + 1 != armed.nth {
            return;
        }
        match &armed.mode {
            CrashMode::Abort => {
                tracing::error!(point, "crash point reached: aborting the process");
                std::process::abort();
            }
            CrashMode::Halt(stopped) => {
                stopped.stop();
                std::future::pending::<()>().await;
            }
            CrashMode::Freeze(stopped) => {
                let released = stopped.release.notified();
                stopped.stop();
                released.await;
            }
        }
    }
}
