//! New sagas: validated, and their first transition computed, before anything is written;
//! started in this mediator, or queued for whichever mediator claims them.

use serde_json::Value;
use uuid::Uuid;

use super::DEFAULT_MAX_PAYLOAD_BYTES;
use crate::error::EngineError;
use crate::fault::FaultPlan;
use crate::registry::Registry;
use crate::store::SagaStore;
use crate::transition;

/// Validates a new saga and computes its first transition (its first step started here, or, for
/// `queued`, due for whichever mediator claims it), with its root span, which the caller keeps
/// until the transition commits ([`crate::trace::created`]); nothing is written on error.
pub(super) fn prepare(
    registry: &Registry,
    name: &str,
    id: Uuid,
    data: Value,
    limit: usize,
    queued: bool,
) -> Result<(transition::Change, tracing::Span), EngineError> {
    let def = registry
        .latest(name)
        .ok_or_else(|| EngineError::UnknownSaga(name.to_string()))?;
    def.check_data(&data)
        .map_err(|reason| EngineError::InvalidData {
            saga: name.to_string(),
            reason,
        })?;
    let size = data.to_string().len();
    if size > limit {
        return Err(EngineError::PayloadTooLarge {
            saga: name.to_string(),
            size,
            limit,
        });
    }
    let mut change = if queued {
        transition::enqueue(def, id, data)
    } else {
        transition::start(def, id, data)
    };
    let (root, parent) = crate::trace::root(def.name(), id, def.version());
    change.state.trace_parent = parent;
    Ok((change, root))
}

/// Records a new saga without running it here: no lease is taken and no step started, so the
/// next mediator that looks for work (`saga worker`) picks it up and records the start of its
/// first step when it runs it. Returns once it is durable.
pub async fn enqueue(
    store: &dyn SagaStore,
    registry: &Registry,
    name: &str,
    data: Value,
) -> Result<Uuid, EngineError> {
    let (change, root) = prepare(
        registry,
        name,
        Uuid::now_v7(),
        data,
        DEFAULT_MAX_PAYLOAD_BYTES,
        true,
    )?;
    let written = crate::commit::write(store, None, change, None, &FaultPlan::default()).await;
    crate::trace::created(&root, &written);
    Ok(written?.state.id)
}
