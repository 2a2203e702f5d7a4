//! What an operator does to a saga from outside the mediator that runs it: abort a running saga
//! (it compensates) and retry a failed or backing-off one. Each is one transition written through
//! the same path as the mediator's, recorded in the history with its reason; it moves the fencing
//! token, so the mediator that held the saga cannot overwrite it, and releases the lease, so the
//! next mediator to look continues it.

use uuid::Uuid;

use crate::commit::write;
use crate::definition::Definition;
use crate::fault::FaultPlan;
use crate::registry::Registry;
use crate::state::SagaState;
use crate::store::{SagaStore, StoreError};
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
        /// `abort` or `retry`.
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
        let def = registry
            .get(&saga.definition, saga.version)
            .ok_or_else(|| OperatorError::UnknownVersion {
                action,
                id,
                definition: saga.definition.clone(),
                version: saga.version,
            })?;
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
