//! A saga's timeline, read from its history: one lane per step, one bar per attempt coloured by
//! its outcome, the backoff waits between attempts, and the compensations in lanes of their own
//! in the order they ran. `saga ui` draws it on a saga's page and `saga show ID --svg FILE`
//! writes it to a file ([`svg`]).

pub(crate) mod svg;

use saga_engine::{
    Definition, EventKind, HistoryEvent, Millis, Phase, Registry, SagaState, StepKind,
};

/// How an attempt ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The attempt succeeded.
    Succeeded,
    /// It failed and another attempt follows after a backoff.
    Retrying,
    /// It failed for good.
    Failed,
    /// It was cut off: its process stopped (the next attempt resumed it) or an operator aborted
    /// the saga while it ran.
    Interrupted,
    /// It is running now.
    Running,
    /// A participant step's command is out and its reply has not come yet, or a timer or
    /// signal step is waiting.
    Awaiting,
}

impl Outcome {
    /// The CSS class and the word shown in the bar's tooltip.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Retrying => "retrying",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
            Outcome::Running => "running",
            Outcome::Awaiting => "awaiting",
        }
    }
}

/// One attempt of a step's action or compensation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bar {
    pub attempt: u32,
    pub from: Millis,
    pub to: Millis,
    pub outcome: Outcome,
    /// The error of a failed attempt.
    pub error: Option<String>,
}

/// A backoff: from a failed attempt to the next one (or to now, while it waits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wait {
    pub from: Millis,
    pub to: Millis,
}

/// One step's action, or one step's compensation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lane {
    pub phase: Phase,
    /// The step's position in the definition, from 0.
    pub index: usize,
    pub step: String,
    /// The step's kind, when the definition is registered here.
    pub kind: Option<StepKind>,
    /// The compensation's own name, if it has one.
    pub compensation: Option<String>,
    /// Whether the phase is a participant's command answered by a reply.
    pub participant: bool,
    /// For a timer or signal step, what it waits for (`timer`, `signal paid`).
    pub waits_on: Option<String>,
    /// The parallel group the step is a branch of, if any.
    pub group: Option<String>,
    pub bars: Vec<Bar>,
    pub waits: Vec<Wait>,
}

impl Lane {
    /// `action:NAME` or `compensation:NAME`: what the page's DOM and the tests name a lane by.
    pub(crate) fn key(&self) -> String {
        let phase = match self.phase {
            Phase::Action => "action",
            Phase::Compensation => "compensation",
        };
        format!("{phase}:{}", self.step)
    }

    fn open(&mut self) -> Option<&mut Bar> {
        self.bars
            .last_mut()
            .filter(|b| matches!(b.outcome, Outcome::Running | Outcome::Awaiting))
    }
}

/// A saga-level event: started, aborted, retried, completed, compensated, failed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Marker {
    pub at: Millis,
    pub kind: EventKind,
    /// An operator's reason or the failure's message.
    pub note: Option<String>,
}

/// Everything the timeline draws.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Timeline {
    pub start: Millis,
    /// The last event, or now while the saga is unfinished.
    pub end: Millis,
    /// The action lanes in step order, then the compensation lanes in the order they ran.
    pub lanes: Vec<Lane>,
    pub markers: Vec<Marker>,
    /// When the pivot completed: the point of no return.
    pub pivot_at: Option<Millis>,
}

fn text(detail: &serde_json::Value, key: &str) -> Option<String> {
    detail.get(key).and_then(|v| v.as_str()).map(str::to_string)
}

/// The timeline of `saga` now, with its definition's step kinds when `registry` has it.
pub(crate) fn of(registry: &Registry, saga: &SagaState, history: &[HistoryEvent]) -> Timeline {
    let definition = registry.get(&saga.definition, saga.version);
    build(
        saga,
        definition.map(|d| d.as_ref()),
        history,
        crate::output::now_ms(),
    )
}

/// Reads the timeline of `saga` from its `history` (in sequence order). `definition` adds the
/// step kinds and which steps wait for a participant; without it the lanes still show.
pub(crate) fn build(
    saga: &SagaState,
    definition: Option<&Definition>,
    history: &[HistoryEvent],
    now: Millis,
) -> Timeline {
    let spec = |i: usize| definition.and_then(|d| d.steps().get(i));
    let mut lanes: Vec<Lane> = saga
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| Lane {
            phase: Phase::Action,
            index: i,
            step: s.name.clone(),
            kind: spec(i).map(|d| d.kind()),
            compensation: spec(i)
                .and_then(|d| d.compensation_name())
                .map(String::from),
            participant: spec(i).is_some_and(|d| d.command(Phase::Action).is_some()),
            waits_on: spec(i).and_then(|d| match (d.signal(), d.child_saga()) {
                (Some((name, _)), _) => Some(format!("signal {name}")),
                (_, Some(child)) => Some(format!("child saga {child}")),
                _ => d.is_timer().then(|| "timer".to_string()),
            }),
            group: spec(i).and_then(|d| d.group()).map(String::from),
            bars: Vec::new(),
            waits: Vec::new(),
        })
        .collect();
    let mut markers = Vec::new();
    let mut pivot_at = None;
    let start = history.first().map_or(saga.created_at, |e| e.at);
    for event in history {
        let at = event.at;
        let index = event
            .step
            .as_deref()
            .and_then(|name| saga.steps.iter().position(|s| s.name == name));
        let attempt = event.attempt.unwrap_or(0);
        let error = text(&event.detail, "error");
        match (event.kind, index) {
            (EventKind::StepStarted, Some(i)) => begin(&mut lanes[i], attempt, at),
            (EventKind::CompensationStarted, Some(i)) => {
                let k = match lanes
                    .iter()
                    .position(|l| l.phase == Phase::Compensation && l.index == i)
                {
                    Some(k) => k,
                    None => {
                        let mut lane = lanes[i].clone();
                        lane.phase = Phase::Compensation;
                        lane.participant =
                            spec(i).is_some_and(|d| d.command(Phase::Compensation).is_some());
                        lane.waits_on = None;
                        lane.compensation =
                            text(&event.detail, "compensation").or(lane.compensation);
                        lane.bars.clear();
                        lane.waits.clear();
                        lanes.push(lane);
                        lanes.len() - 1
                    }
                };
                begin(&mut lanes[k], attempt, at);
            }
            (EventKind::StepCompleted, Some(i)) => {
                end(&mut lanes[i], at, Outcome::Succeeded, None);
                if lanes[i].kind == Some(StepKind::Pivot) {
                    pivot_at = Some(at);
                }
            }
            (EventKind::StepFailed | EventKind::CompensationFailed, Some(i)) => {
                let phase = match event.kind {
                    EventKind::StepFailed => Phase::Action,
                    _ => Phase::Compensation,
                };
                let retry = !event.detail["retry_in_ms"].is_null();
                let outcome = if retry {
                    Outcome::Retrying
                } else {
                    Outcome::Failed
                };
                if let Some(lane) = lanes.iter_mut().find(|l| l.phase == phase && l.index == i) {
                    end(lane, at, outcome, error);
                }
            }
            (EventKind::StepCompensated, Some(i)) => {
                if let Some(lane) = lanes
                    .iter_mut()
                    .find(|l| l.phase == Phase::Compensation && l.index == i)
                {
                    end(lane, at, Outcome::Succeeded, None);
                }
            }
            (kind, _) if event.step.is_none() => {
                if kind == EventKind::SagaAborted {
                    abort(&mut lanes, at);
                }
                markers.push(Marker {
                    at,
                    kind,
                    note: text(&event.detail, "reason").or(error),
                })
            }
            _ => {}
        }
    }
    let last = history.last().map_or(start, |e| e.at);
    let end_at = if saga.status.is_final() {
        last
    } else {
        now.max(last)
    };
    // The unit the saga is at: in a backoff now if it waits for a next attempt, not a reply.
    let current_phase = match saga.status {
        saga_engine::SagaStatus::Compensating => Phase::Compensation,
        _ => Phase::Action,
    };
    let in_backoff = saga.next_attempt_at.is_some() && saga.awaiting.is_none();
    for lane in &mut lanes {
        if saga.status.is_final() {
            end(lane, end_at, Outcome::Interrupted, None);
            continue;
        }
        if let Some(bar) = lane.open() {
            bar.to = end_at;
        }
        let current = lane.phase == current_phase && lane.index == saga.current_step;
        if let Some(last) = lane.bars.last().filter(|b| b.outcome == Outcome::Retrying) {
            if current && in_backoff {
                let from = last.to;
                lane.waits.push(Wait { from, to: end_at });
            }
        }
    }
    Timeline {
        start,
        end: end_at,
        lanes,
        markers,
        pivot_at,
    }
}

/// A new attempt starts in `lane` at `at`: an attempt still open there was interrupted (its
/// process stopped and this one resumes it); after a failed one, the time between is a backoff.
fn begin(lane: &mut Lane, attempt: u32, at: Millis) {
    end(lane, at, Outcome::Interrupted, None);
    if let Some(last) = lane.bars.last() {
        if last.outcome == Outcome::Retrying {
            lane.waits.push(Wait {
                from: last.to,
                to: at,
            });
        }
    }
    let outcome = if lane.participant || lane.waits_on.is_some() {
        Outcome::Awaiting
    } else {
        Outcome::Running
    };
    lane.bars.push(Bar {
        attempt,
        from: at,
        to: at,
        outcome,
        error: None,
    });
}

/// An operator aborted the saga at `at`: the action attempt running (or waiting for a reply)
/// was cut off, and a retry still to come in a backoff will not come.
fn abort(lanes: &mut [Lane], at: Millis) {
    for lane in lanes.iter_mut().filter(|l| l.phase == Phase::Action) {
        end(lane, at, Outcome::Interrupted, None);
        if let Some(last) = lane.bars.last_mut() {
            if last.outcome == Outcome::Retrying {
                last.outcome = Outcome::Failed;
                let from = last.to;
                lane.waits.push(Wait { from, to: at });
            }
        }
    }
}

/// Ends the open attempt of `lane`, if there is one.
fn end(lane: &mut Lane, at: Millis, outcome: Outcome, error: Option<String>) {
    if let Some(bar) = lane.open() {
        bar.to = at;
        bar.outcome = outcome;
        bar.error = error;
    }
}

#[cfg(test)]
mod tests;
