//! Failure injection: make any step or compensation fail, panic or hang on chosen attempts, or
//! stop the process at a named crash point, so that anyone can watch compensation and recovery
//! happen. Set from code in tests, or from `SAGA_FAULTS` / `--fail-at` in the example and CLI.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::step::{Phase, StepError};

/// The environment variable read by [`FaultPlan::from_env`].
pub const FAULTS_ENV: &str = "SAGA_FAULTS";
/// Arms a crash point: `POINT` or `POINT:N` (the N-th time it is reached, from 1).
pub const CRASH_AT_ENV: &str = "SAGA_CRASH_AT";
/// Names a file to which every crash point reached is appended, one per line: how a harness
/// discovers the points a run passes through.
pub const CRASH_TRACE_ENV: &str = "SAGA_CRASH_TRACE";

/// The crash points, in the order a transition meets them:
/// - `before_commit`, `after_commit`: around every transition's commit (the latter is also an
///   ambiguous commit: durable, but the process never learns it);
/// - `after_action`, `after_compensation`: the work's effect is applied, not yet recorded;
/// - `before_dispatch`: committed and in the outbox, not yet published.
pub const CRASH_POINTS: [&str; 5] = [
    "before_commit",
    "after_commit",
    "after_action",
    "after_compensation",
    "before_dispatch",
];

/// What to do to a step's action or compensation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail every attempt with a non-retryable error: the step fails at once (`fail`).
    Fail,
    /// Fail the first N attempts with a retryable error, then run normally (`fail:N`).
    FailTimes(u32),
    /// Fail every attempt with a retryable error, exhausting the retry policy (`fail:always`).
    FailAlways,
    /// Panic in every attempt (`panic`).
    Panic,
    /// Never return, so the attempt runs past its timeout (`hang`).
    Hang,
}

/// A malformed fault specification.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid fault `{spec}`: {reason} (expected STEP[/compensate]=fail|fail:N|fail:always|panic|hang)")]
pub struct FaultParseError {
    /// The offending part of the specification.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
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
    reached: tokio::sync::Notify,
    stopped: std::sync::atomic::AtomicBool,
    release: tokio::sync::Notify,
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

/// Which faults to inject where. Cheap to clone; empty by default.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    rules: HashMap<(String, Phase), Fault>,
    crash: Option<Arc<ArmedCrash>>,
    /// Where reached crash points are recorded (discovery runs).
    trace: Option<Arc<std::sync::Mutex<std::fs::File>>>,
    /// Commits (by number, from 1) that succeed but are reported as failed.
    ambiguous: Option<Arc<(u32, AtomicU32)>>,
}

impl FaultPlan {
    /// No faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Injects `fault` into the action (or compensation) of `step`.
    pub fn inject(mut self, step: impl Into<String>, phase: Phase, fault: Fault) -> Self {
        self.rules.insert((step.into(), phase), fault);
        self
    }

    /// Makes the action of `step` fail for good (what `--fail-at STEP` does).
    pub fn fail_at(self, step: impl Into<String>) -> Self {
        self.inject(step, Phase::Action, Fault::Fail)
    }

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

    /// # Panics
    /// On a point that is not one of [`CRASH_POINTS`]: a misspelt point would never fire.
    fn arm(mut self, point: String, nth: u32, mode: CrashMode) -> Self {
        assert!(
            CRASH_POINTS.contains(&point.as_str()),
            "unknown crash point `{point}`; use one of {CRASH_POINTS:?}"
        );
        self.crash = Some(Arc::new(ArmedCrash {
            point,
            nth: nth.max(1),
            seen: AtomicU32::new(0),
            mode,
        }));
        self
    }

    /// Whether a frozen mediator's tasks should stand still (no lease renewals).
    pub(crate) fn frozen(&self) -> bool {
        matches!(&self.crash, Some(a) if matches!(&a.mode, CrashMode::Freeze(s) if s.stopped.load(Ordering::SeqCst)))
    }

    /// Makes the `nth` commit (from 1) of this process succeed in the database but be reported
    /// as failed, as when the connection drops during COMMIT.
    pub fn ambiguous_commit(mut self, nth: u32) -> Self {
        self.ambiguous = Some(Arc::new((nth.max(1), AtomicU32::new(0))));
        self
    }

    /// Whether this commit, just made, is to be reported as failed.
    pub(crate) fn commit_unconfirmed(&self) -> bool {
        self.ambiguous
            .as_ref()
            .is_some_and(|a| a.1.fetch_add(1, Ordering::SeqCst) + 1 == a.0)
    }

    /// Whether no fault is planned.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
            && self.crash.is_none()
            && self.trace.is_none()
            && self.ambiguous.is_none()
    }

    /// Parses `STEP[/compensate]=FAULT` entries separated by commas, e.g.
    /// `charge_payment=fail:2,release_inventory/compensate=fail:always`.
    pub fn parse(spec: &str) -> Result<Self, FaultParseError> {
        let mut plan = Self::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let err = |reason: &str| FaultParseError {
                spec: part.to_string(),
                reason: reason.to_string(),
            };
            let (target, fault) = part.split_once('=').ok_or_else(|| err("missing `=`"))?;
            let (step, phase) = match target.split_once('/') {
                None => (target, Phase::Action),
                Some((step, "compensate")) => (step, Phase::Compensation),
                Some(_) => return Err(err("the only suffix is `/compensate`")),
            };
            if step.is_empty() {
                return Err(err("missing step name"));
            }
            let fault = match fault {
                "fail" => Fault::Fail,
                "fail:always" => Fault::FailAlways,
                "panic" => Fault::Panic,
                "hang" => Fault::Hang,
                other => match other.strip_prefix("fail:").map(str::parse::<u32>) {
                    Some(Ok(n)) if n > 0 => Fault::FailTimes(n),
                    _ => return Err(err("unknown fault")),
                },
            };
            plan = plan.inject(step, phase, fault);
        }
        Ok(plan)
    }

    /// Steps named by the plan that no registered definition has: almost always a typo, since
    /// such a fault would never fire.
    pub fn unknown_steps(&self, registry: &crate::Registry) -> Vec<String> {
        let known: std::collections::HashSet<&str> = registry
            .definitions()
            .into_iter()
            .flat_map(|d| d.steps().iter().map(|s| s.name()))
            .collect();
        let mut unknown: Vec<String> = self
            .rules
            .keys()
            .map(|(step, _)| step.clone())
            .filter(|step| !known.contains(step.as_str()))
            .collect();
        unknown.sort();
        unknown.dedup();
        unknown
    }

    /// The plan in `SAGA_FAULTS`, with the crash point armed by `SAGA_CRASH_AT` and the trace
    /// file of `SAGA_CRASH_TRACE`; an empty plan when none is set.
    pub fn from_env() -> Result<Self, FaultParseError> {
        let mut plan = match std::env::var(FAULTS_ENV) {
            Ok(spec) => Self::parse(&spec)?,
            Err(_) => Self::new(),
        };
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
            plan = plan.crash_at(point, nth);
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
            plan.trace = Some(Arc::new(std::sync::Mutex::new(file)));
        }
        Ok(plan)
    }

    /// The fault to inject into this attempt, if any. Participants use it to fail the commands
    /// they receive, so that `--fail-at` works for steps that run elsewhere.
    pub fn for_attempt(&self, step: &str, phase: Phase, attempt: u32) -> Option<Fault> {
        if self.rules.is_empty() {
            return None;
        }
        let fault = *self.rules.get(&(step.to_string(), phase))?;
        match fault {
            Fault::FailTimes(n) if attempt > n => None,
            other => Some(other),
        }
    }

    /// Whether a crash point is armed or traced: code that batches work around a crash point
    /// then does it one item at a time, so where the crash comes does not depend on batching.
    pub(crate) fn watches_crash_points(&self) -> bool {
        self.crash.is_some() || self.trace.is_some()
    }

    /// Marks a named crash point. Unarmed, this is one branch on an `Option` (and one more for
    /// the trace).
    pub(crate) async fn crash_point(&self, point: &str) {
        if let Some(trace) = &self.trace {
            use std::io::Write;
            let mut file = trace.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(file, "{point}");
        }
        if let Some(armed) = &self.crash {
            if armed.point == point && armed.seen.fetch_add(1, Ordering::SeqCst) + 1 == armed.nth {
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
    }
}

impl Fault {
    /// Runs the fault in place of (or before) the real work.
    pub(crate) async fn strike(self, step: &str, attempt: u32) -> Result<(), StepError> {
        match self {
            Fault::Fail => Err(StepError::terminal(format!(
                "injected failure at {step} (attempt {attempt})"
            ))),
            Fault::FailTimes(_) | Fault::FailAlways => Err(StepError::retryable(format!(
                "injected transient failure at {step} (attempt {attempt})"
            ))),
            Fault::Panic => panic!("injected panic at {step} (attempt {attempt})"),
            Fault::Hang => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let plan = FaultPlan::parse("a=fail, b=fail:2,c/compensate=fail:always,d=panic,e=hang")
            .expect("valid");
        assert_eq!(plan.for_attempt("a", Phase::Action, 1), Some(Fault::Fail));
        assert_eq!(
            plan.for_attempt("b", Phase::Action, 2),
            Some(Fault::FailTimes(2))
        );
        assert_eq!(plan.for_attempt("b", Phase::Action, 3), None);
        assert_eq!(plan.for_attempt("c", Phase::Action, 1), None);
        assert_eq!(
            plan.for_attempt("c", Phase::Compensation, 9),
            Some(Fault::FailAlways)
        );
        assert_eq!(plan.for_attempt("d", Phase::Action, 1), Some(Fault::Panic));
        assert_eq!(plan.for_attempt("e", Phase::Action, 1), Some(Fault::Hang));
    }

    #[test]
    fn rejects_nonsense_with_the_offending_part() {
        let err = FaultPlan::parse("a=fail,b=explode").unwrap_err();
        assert_eq!(err.spec, "b=explode");
        assert!(FaultPlan::parse("a").is_err());
        assert!(FaultPlan::parse("a/undo=fail").is_err());
        assert!(FaultPlan::parse("a=fail:0").is_err());
    }
}
