//! What an operator does to a saga from outside the mediator that runs it: abort a running saga
//! (it compensates), retry a failed or backing-off one, and send a signal. An abort or a retry is
//! one transition written through the same path as the mediator's, recorded in the history with
//! its reason; it moves the fencing token, so the mediator that held the saga cannot overwrite
//! it, and releases the lease, so the next mediator to look continues it. A signal is kept for
//! the saga and makes it due; the mediator that takes it up records it.

use serde_json::Value;
use uuid::Uuid;

use crate::commit::write;
use crate::definition::Definition;
use crate::fault::FaultPlan;
use crate::registry::Registry;
use crate::state::SagaState;
use crate::store::{NewSignal, SagaStore, SignalSent, SignalTarget, StoreError};
use crate::transition::{self, Change};

pub use crate::transition::Refused;

/// Why an operator action did not happen. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// No saga has this id.
    #[error("no saga with id {0}")]
    NotFound(Uuid),
    /// The saga is not in a state the action applies to.
    #[error("cannot {action} saga {id}: {reason}")]
    Refused {
        /// `abort`, `retry` or `signal`.
        action: &'static str,
        /// The saga.
        id: Uuid,
        /// Why.
        reason: Refused,
    },
    /// The saga's definition version is not registered in this program: its steps' kinds are
    /// unknown here, and no mediator of this program would ever run the saga on.
    #[error("cannot {action} saga {id}: its definition `{definition}` version {version} is not registered in this program, so none of its workers would run it")]
    UnknownVersion {
        /// `abort` or `retry`.
        action: &'static str,
        /// The saga.
        id: Uuid,
        /// Its definition.
        definition: String,
        /// Its version.
        version: u32,
    },
    /// A signal sent to a key that no registered saga's signal step takes by key.
    #[error("no saga registered here takes a signal named `{signal}` by key (by key they take: {by_key})")]
    NoKeyedSignal {
        /// The signal sent.
        signal: String,
        /// The signals registered steps take by key, comma-separated (`none` if none).
        by_key: String,
    },
    /// The saga kept changing under the action (a busy mediator); try again.
    #[error("saga {0} kept changing while the action was applied; try again")]
    Busy(Uuid),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Moves a running saga to compensation, recording `reason`.
pub async fn abort(
    store: &dyn SagaStore,
    registry: &Registry,
    id: Uuid,
    reason: &str,
) -> Result<SagaState, OperatorError> {
    act(store, registry, id, "abort", |def, saga| {
        transition::abort(def, saga, reason)
    })
    .await
}

/// Resumes a failed saga where it stopped, or runs a saga waiting in a backoff now, recording
/// `reason`. Refused for a saga whose definition version `registry` lacks: a program that
/// cannot run the saga should not promise that its workers will.
pub async fn retry(
    store: &dyn SagaStore,
    registry: &Registry,
    id: Uuid,
    reason: &str,
) -> Result<SagaState, OperatorError> {
    act(store, registry, id, "retry", |_, saga| {
        transition::retry(saga, reason)
    })
    .await
}

/// Sends the signal `name` carrying `data` to `target`, once per `event_id`: kept for the saga
/// (or the sagas of that correlation key) until its signal step takes it, and the sagas waiting
/// on it made due so that a worker takes it up. A signal to a saga id is checked first: the saga
/// exists, its definition version is registered here, a step of it waits for this signal and
/// has not ended, and the data fits that step; otherwise nothing is written. A signal to a key
/// must be one that a registered saga takes by key; its data is checked when a saga takes it
/// (one that does not fit is passed over), since its sagas may not be waiting yet.
pub async fn signal(
    store: &dyn SagaStore,
    registry: &Registry,
    target: &SignalTarget,
    name: &str,
    event_id: Uuid,
    data: &Value,
) -> Result<SignalSent, OperatorError> {
    if let SignalTarget::Saga(id) = target {
        let id = *id;
        let saga = store.get(id).await?.ok_or(OperatorError::NotFound(id))?;
        let def = registered(registry, &saga, "signal")?;
        if let Err(reason) = transition::check_signal(def, &saga, name, data) {
            // A sender retrying a signal already kept (a webhook delivered again) hears that it
            // was, even once the saga has moved on. (One still waited for is told so by the
            // store's own duplicate check below.)
            let kept = store.kept_signals(id, name, None).await?;
            if kept.iter().any(|s| s.event_id == event_id) {
                let again = SignalSent {
                    kept: false,
                    woken: Vec::new(),
                };
                return Ok(again);
            }
            let action = "signal";
            return Err(OperatorError::Refused { action, id, reason });
        }
    }
    if let SignalTarget::Key(_) = target {
        // Some registered saga must take this signal by key, or it could never be taken.
        let mut by_key: Vec<&str> = registry
            .definitions()
            .iter()
            .flat_map(|d| d.steps().iter().filter_map(|s| s.signal()))
            .filter_map(|(signal, key)| key.map(|_| signal))
            .collect();
        by_key.sort_unstable();
        by_key.dedup();
        if !by_key.contains(&name) {
            return Err(OperatorError::NoKeyedSignal {
                signal: name.to_string(),
                by_key: if by_key.is_empty() {
                    "none".into()
                } else {
                    by_key.join(", ")
                },
            });
        }
    }
    let sent = store
        .send_signal(&NewSignal {
            target,
            name,
            event_id,
            data,
        })
        .await?;
    tracing::info!(%target, signal = name, %event_id, kept = sent.kept, woken = sent.woken.len(), "signal sent");
    Ok(sent)
}

/// The definition version `saga` runs on, if `registry` has it.
fn registered<'a>(
    registry: &'a Registry,
    saga: &SagaState,
    action: &'static str,
) -> Result<&'a Definition, OperatorError> {
    registry
        .get(&saga.definition, saga.version)
        .map(|d| d.as_ref())
        .ok_or_else(|| OperatorError::UnknownVersion {
            action,
            id: saga.id,
            definition: saga.definition.clone(),
            version: saga.version,
        })
}

/// Reads the saga, computes the change and writes it, again if a mediator wrote in between.
async fn act(
    store: &dyn SagaStore,
    registry: &Registry,
    id: Uuid,
    action: &'static str,
    decide: impl Fn(&Definition, &SagaState) -> Result<Change, Refused>,
) -> Result<SagaState, OperatorError> {
    for _ in 0..20 {
        let saga = store.get(id).await?.ok_or(OperatorError::NotFound(id))?;
        let def = registered(registry, &saga, action)?;
        let change =
            decide(def, &saga).map_err(|reason| OperatorError::Refused { action, id, reason })?;
        match write(store, Some(&saga), change, None, &FaultPlan::default()).await {
            Ok(written) => {
                tracing::info!(saga_id = %id, action, "operator action recorded");
                return Ok(written.state);
            }
            Err(StoreError::LeaseLost(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(OperatorError::Busy(id))
}
