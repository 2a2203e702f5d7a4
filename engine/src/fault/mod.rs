//! Failure injection: make any step or compensation fail, panic or hang on chosen attempts, so
//! that anyone can watch compensation and recovery happen. Set from code in tests, from
//! `--fail-at` in the CLI, or from `SAGA_FAULTS` in any program that asks for it with
//! [`FaultPlan::from_env`] and hands the plan to [`crate::MediatorBuilder::faults`] (the
//! participant services of such a program read it from the same plan).
//!
//! With the `fault-injection` feature, a plan can also stop the process at a named crash point
//! (`SAGA_CRASH_AT`, `FaultPlan::crash_at`); without it there are no crash points, and
//! [`FaultPlan::from_env`] refuses a `SAGA_CRASH_AT` it cannot honour.

use std::collections::HashMap;

use crate::step::{Phase, StepError};

#[cfg(feature = "fault-injection")]
mod crash;

#[cfg(feature = "fault-injection")]
pub use crash::{Stopped, CRASH_POINTS, CRASH_TRACE_ENV};

/// The environment variable read by [`FaultPlan::from_env`].
pub const FAULTS_ENV: &str = "SAGA_FAULTS";
/// Arms a crash point (builds with the `fault-injection` feature): `POINT` or `POINT:N` (the
/// N-th time it is reached, from 1).
pub const CRASH_AT_ENV: &str = "SAGA_CRASH_AT";

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

/// Which faults to inject where. Cheap to clone; empty by default.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    rules: HashMap<(String, Phase), Fault>,
    /// Whether the plan came from [`FaultPlan::from_env`] (else the mediator warns about fault
    /// variables it was not asked to read).
    read_env: bool,
    #[cfg(feature = "fault-injection")]
    crashes: crash::Crashes,
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

    /// Whether no fault is planned.
    pub fn is_empty(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        if !self.crashes.is_empty() {
            return false;
        }
        self.rules.is_empty()
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

    /// The plan in `SAGA_FAULTS` (`STEP[/compensate]=FAULT,...`); an empty plan when it is not
    /// set. With the `fault-injection` feature, also the crash point armed by `SAGA_CRASH_AT`
    /// and the trace file of `SAGA_CRASH_TRACE`; without it, a set `SAGA_CRASH_AT` is an error
    /// rather than a crash that silently never comes.
    pub fn from_env() -> Result<Self, FaultParseError> {
        let mut plan = match std::env::var(FAULTS_ENV) {
            Ok(spec) => Self::parse(&spec)?,
            Err(_) => Self::new(),
        };
        plan.read_env = true;
        #[cfg(feature = "fault-injection")]
        {
            plan.crashes = crash::Crashes::from_env()?;
        }
        #[cfg(not(feature = "fault-injection"))]
        if let Ok(spec) = std::env::var(CRASH_AT_ENV) {
            return Err(FaultParseError {
                spec,
                reason: format!(
                    "{CRASH_AT_ENV} is set, but this build has no crash points (they come with the engine's `fault-injection` feature)"
                ),
            });
        }
        Ok(plan)
    }

    /// The fault variables set in the environment that this plan did not come from: a program
    /// that never called [`FaultPlan::from_env`] would ignore them, so the mediator warns.
    pub(crate) fn unread_env(&self) -> Vec<&'static str> {
        if self.read_env {
            return Vec::new();
        }
        [FAULTS_ENV, CRASH_AT_ENV]
            .into_iter()
            .filter(|name| std::env::var_os(name).is_some())
            .collect()
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
        #[cfg(feature = "fault-injection")]
        return self.crashes.watching();
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    /// Marks a named crash point. Without the `fault-injection` feature this is nothing at all;
    /// with it, unarmed, one branch on an `Option` (and one more for the trace).
    #[inline]
    pub(crate) async fn crash_point(&self, point: &str) {
        #[cfg(feature = "fault-injection")]
        self.crashes.reach(point).await;
        #[cfg(not(feature = "fault-injection"))]
        let _ = point;
    }

    /// Whether a frozen mediator's tasks should stand still (no lease renewals).
    pub(crate) fn frozen(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.crashes.frozen();
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    /// Whether this commit, just made, is to be reported as failed.
    pub(crate) fn commit_unconfirmed(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.crashes.commit_unconfirmed();
        #[cfg(not(feature = "fault-injection"))]
        false
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

    /// Without the `fault-injection` feature (`cargo test -p saga-engine`, as CI runs it), a
    /// crash point asked for in the environment is refused, never silently ignored.
    #[cfg(not(feature = "fault-injection"))]
    #[test]
    fn without_crash_points_a_crash_variable_is_refused() {
        std::env::set_var(CRASH_AT_ENV, "after_commit");
        let refused = FaultPlan::from_env();
        std::env::remove_var(CRASH_AT_ENV);
        let err = refused.unwrap_err();
        assert_eq!(err.spec, "after_commit");
        assert!(err.reason.contains("`fault-injection` feature"), "{err}");
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
