//! Wait transitions: a timer or signal step records its wait when it starts, and completes when
//! the timer fires or a signal is taken (a signal wait that runs out fails the step, so the saga
//! compensates). The clock is read once, when a wait is scheduled, so a restart never moves it.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use super::Refused;
use super::{failed, succeeded, Change, NewEvent};
use crate::definition::Definition;
use crate::event::EventKind;
use crate::state::{Awaiting, Millis, SagaState, SagaStatus, StepStatus, Wait};
use crate::step::{Phase, StepError, StepSpec, Work};
use crate::store::KeptSignal as Signal;

/// What a woken saga's driver found for its wait: the signal kept for it, the child it waits
/// for (`None` if there is none, or it is not a child wait).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Found<'a> {
    pub signal: Option<&'a Signal>,
    pub child: Option<&'a SagaState>,
}

fn ms(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn until(at: Millis, now: Millis) -> Duration {
    Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
}

/// If step `i` is a timer or a signal step, records the wait its attempt `attempt` starts (the
/// step's `StepStarted` is already in `change`) and returns `true`.
pub(super) fn schedule(change: &mut Change, spec: &StepSpec, i: usize, attempt: u32) -> bool {
    if !matches!(spec.action, Work::Timer(_) | Work::Signal(_)) {
        return false;
    }
    // The clock is read for waits only, not on every step's start.
    let now = crate::store::now_ms();
    let (wait, due_in) = match &spec.action {
        Work::Timer(delay) => {
            // Data that does not say when: no wait, so the attempt runs, and fails as poison.
            let Ok(fires_at) = delay.fires_at(&change.state.data, now) else {
                return false;
            };
            let detail = json!({ "fires_at": fires_at, "delay_ms": fires_at - now });
            change.event(EventKind::TimerScheduled, Some(i), Some(attempt), detail);
            (Wait::Timer { fires_at }, until(fires_at, now))
        }
        Work::Signal(signal) => {
            let key = signal.key(&change.state.data);
            let deadline = now.saturating_add(ms(spec.timeout()));
            let detail = json!({ "signal": signal.name, "key": key, "deadline": deadline });
            change.event(EventKind::SignalAwaited, Some(i), Some(attempt), detail);
            let wait = Wait::Signal {
                name: signal.name.clone(),
                key,
                deadline,
            };
            (wait, spec.timeout())
        }
        Work::Local(_) | Work::Command(_) | Work::Child(_) => return false,
    };
    change.state.awaiting = Some(Awaiting {
        step: i,
        phase: Phase::Action,
        attempt,
        wait,
    });
    change.retry_after = Some(due_in);
    true
}

/// What to record for a saga found waiting on a timer or a signal at `now` (claimed when its due
/// time came, or woken by a signal): the timer fires, the signal is taken, the signal wait times
/// out, or, woken early, it waits on (no event). `None` for a participant's reply.
pub(crate) fn wake(
    def: &Definition,
    state: &SagaState,
    now: Millis,
    found: Found<'_>,
) -> Option<Change> {
    let awaiting = state.awaiting.as_ref()?;
    let signal = found.signal;
    match &awaiting.wait {
        Wait::Reply => None,
        // Started by the driver that claimed it, which holds the lease.
        Wait::Child { started: false, .. } => None,
        Wait::Child { .. } => Some(
            super::child_ended(def, state, found.child)
                .unwrap_or_else(|| wait_on(state, super::CHILD_CHECK)),
        ),
        Wait::Timer { fires_at } if now >= *fires_at => {
            let mut change = succeeded(def, state, Phase::Action, state.data.clone());
            let detail = json!({ "fires_at": fires_at, "late_ms": now - fires_at });
            first_event(&mut change, state, EventKind::TimerFired, detail);
            Some(change)
        }
        Wait::Timer { fires_at } => Some(wait_on(state, until(*fires_at, now))),
        Wait::Signal { .. } if signal.is_some() => signal.map(|s| take(def, state, s)),
        Wait::Signal { name, deadline, .. } if now >= *deadline => {
            let timeout = def.steps()[awaiting.step].timeout();
            let error = StepError::signal_timeout(name, timeout);
            Some(failed(def, state, Phase::Action, &error))
        }
        Wait::Signal { deadline, .. } => Some(wait_on(state, until(*deadline, now))),
    }
}

/// The saga takes `signal`: the step records it (so it is never taken twice), folds its data
/// into the saga data, and completes (or fails, if the data does not fit).
pub(crate) fn take(def: &Definition, state: &SagaState, signal: &Signal) -> Change {
    let i = state.current_step;
    let mut taking = state.clone();
    taking.steps[i].signal = Some(signal.event_id);
    let applied = match &def.steps()[i].apply {
        Some(apply) => apply(state.data.clone(), signal.data.clone()),
        None => Ok(state.data.clone()),
    };
    let mut change = match applied {
        Ok(data) => succeeded(def, &taking, Phase::Action, data),
        Err(error) => failed(def, &taking, Phase::Action, &error),
    };
    let name = def.steps()[i].signal().map(|(name, _)| name).unwrap_or("");
    let detail = json!({
        "signal": name,
        "signal_id": signal.event_id,
        "received_at": signal.received_at,
    });
    first_event(&mut change, state, EventKind::SignalReceived, detail);
    change
}

/// Woken before its time: the saga waits on, due again in `remaining`.
fn wait_on(state: &SagaState, remaining: Duration) -> Change {
    let mut change = Change::from(state);
    change.retry_after = Some(remaining);
    change
}

/// Puts an event about the current step's attempt before the others of `change`.
fn first_event(change: &mut Change, state: &SagaState, kind: EventKind, detail: Value) {
    let i = state.current_step;
    let event = NewEvent {
        kind,
        step: Some(state.steps[i].name.clone()),
        attempt: Some(state.steps[i].attempts),
        detail,
    };
    change.events.insert(0, event);
}

/// The signal `kept` holds that `state`'s current step (of `def`) can take: the oldest it has
/// not taken already whose data fits the step. A signal sent to a correlation key counts only
/// from the saga's creation on (an older one was meant for an earlier saga of the same key);
/// one whose data does not fit (sent to a key, it could not be checked when sent) is passed
/// over, with a warning, rather than failing the step.
pub(crate) fn pick<'a>(
    def: &Definition,
    state: &SagaState,
    kept: &'a [Signal],
) -> Option<&'a Signal> {
    let taken: Vec<Uuid> = state.steps.iter().filter_map(|s| s.signal).collect();
    let apply = def
        .steps()
        .get(state.current_step)
        .and_then(|s| s.apply.as_ref());
    let fits = |s: &&Signal| match apply.map(|apply| apply(state.data.clone(), s.data.clone())) {
        Some(Err(error)) => {
            tracing::warn!(saga_id = %state.id, signal_id = %s.event_id, %error, "a kept signal does not fit its step; passed over");
            false
        }
        _ => true,
    };
    kept.iter()
        .filter(|s| !s.by_key || s.received_at >= state.created_at)
        .filter(|s| !taken.contains(&s.event_id))
        .find(fits)
}

/// Whether a signal named `name` carrying `data` may be sent to `state` (an instance of `def`):
/// some step waits for it and has not ended, the saga is not final, and the data fits what the
/// step folds into the saga data (tried on the data as it is now).
pub(crate) fn check_signal(
    def: &Definition,
    state: &SagaState,
    name: &str,
    data: &Value,
) -> Result<(), Refused> {
    if state.status.is_final() {
        return Err(Refused::Final(state.status));
    }
    let waiting = |spec: &StepSpec| spec.signal().is_some_and(|(signal, _)| signal == name);
    let steps: Vec<usize> = (0..def.steps().len())
        .filter(|&i| waiting(&def.steps()[i]))
        .collect();
    // The first of them that has not ended (several steps may wait for the same name).
    let open = |&&i: &&usize| {
        matches!(
            state.steps[i].status,
            StepStatus::Pending | StepStatus::Running
        )
    };
    let Some(&i) = steps.iter().find(open).or(steps.last()) else {
        let names: Vec<&str> = def
            .steps()
            .iter()
            .filter_map(|s| s.signal().map(|(n, _)| n))
            .collect();
        return Err(Refused::NoSuchSignal {
            definition: def.name().to_string(),
            signal: name.to_string(),
            waits_for: if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            },
        });
    };
    if state.status == SagaStatus::Compensating {
        return Err(Refused::AlreadyCompensating);
    }
    let step = &state.steps[i];
    if !matches!(step.status, StepStatus::Pending | StepStatus::Running) {
        return Err(Refused::SignalTooLate {
            step: step.name.clone(),
            signal: name.to_string(),
            status: step.status,
        });
    }
    if let Some(apply) = &def.steps()[i].apply {
        apply(state.data.clone(), data.clone()).map_err(|e| Refused::SignalData(e.message))?;
    }
    Ok(())
}
