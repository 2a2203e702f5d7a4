//! Creating a saga instance: started here (its first step's start in the same transition) or
//! queued for whichever mediator claims it.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use super::{start_attempt, Change};
use crate::definition::Definition;
use crate::event::EventKind;
use crate::state::{SagaState, SagaStatus, StepState};
use crate::step::Phase;

/// A new instance: created, leased and its first step started, in one transition.
pub(crate) fn start(def: &Definition, id: Uuid, data: Value) -> Change {
    let mut change = created(def, id, data);
    start_attempt(def, &mut change, 0, Phase::Action, json!({}));
    change
}

/// A new instance queued for whichever mediator claims it: created with its first step still
/// pending and due now. That mediator records the step's start when it runs it, so the history
/// never shows an attempt that did not run.
pub(crate) fn enqueue(def: &Definition, id: Uuid, data: Value) -> Change {
    let mut change = created(def, id, data);
    change.retry_after = Some(Duration::ZERO);
    change
}

/// A new instance, `running` at its first step, with its `SagaStarted` event.
fn created(def: &Definition, id: Uuid, data: Value) -> Change {
    let steps: Vec<StepState> = def
        .steps()
        .iter()
        .map(|s| StepState {
            group: s.group().map(String::from),
            ..StepState::pending(s.name(), s.has_compensation())
        })
        .collect();
    let state = SagaState {
        id,
        definition: def.name().to_string(),
        version: def.version(),
        status: SagaStatus::Running,
        current_step: 0,
        data,
        steps,
        last_error: None,
        next_attempt_at: None,
        awaiting: None,
        lease_owner: None,
        lease_expires_at: None,
        fencing_token: 1,
        last_seq: 0,
        created_at: 0,
        updated_at: 0,
        trace_parent: None,
    };
    let mut change = Change::from(&state);
    change.event(
        EventKind::SagaStarted,
        None,
        None,
        json!({ "version": def.version() }),
    );
    change
}
