//! Child sagas in the mediator: a parent's driver starts the child (or asks it to compensate)
//! and records it, and when a child ends, its parent is told as the child's final event is
//! published (before it leaves the outbox, so a crash cannot lose it): taken up here when this
//! mediator has the parent's definition, else made due for whichever mediator has it. A parent
//! also looks at its child every [`CHILD_CHECK`], in case an end was never announced (an
//! outbox published by a process without the child's definition).
//!
//! [`CHILD_CHECK`]: crate::transition::CHILD_CHECK

use std::sync::Arc;

use super::new::prepare;
use super::Inner;
use crate::definition::Definition;
use crate::error::EngineError;
use crate::state::{SagaState, Wait};
use crate::step::{Phase, StepError};
use crate::store::StoreError;
use crate::transition;

/// Why starting (or undoing) a child did not happen.
pub(crate) enum ChildError {
    /// It never can: the step fails with this.
    Step(StepError),
    /// Not now (the store): leave the saga for its next claim.
    Later(StoreError),
}

impl Inner {
    /// The child `saga`'s wait names (started, or asked to compensate), for its driver to record.
    pub(crate) async fn start_or_undo_child(
        self: &Arc<Self>,
        def: &Definition,
        saga: &SagaState,
    ) -> Result<(), ChildError> {
        let Some(awaiting) = saga.awaiting.as_ref() else {
            return Ok(());
        };
        let Wait::Child { id, .. } = awaiting.wait else {
            return Ok(());
        };
        let step = &def.steps()[awaiting.step];
        let Some(child_saga) = step.child_saga() else {
            return Ok(());
        };
        match awaiting.phase {
            Phase::Action => {
                let input = match &step.action {
                    crate::step::Work::Child(spec) => (spec.input)(&saga.data),
                    _ => return Ok(()),
                }
                .map_err(ChildError::Step)?;
                let later = ChildError::Later;
                self.store
                    .link_child(id, saga.id, step.name())
                    .await
                    .map_err(later)?;
                let limit = self.config.max_payload_bytes;
                let (change, root) =
                    prepare(&self.registry, child_saga, id, input, limit, false)
                        .map_err(|e| ChildError::Step(StepError::terminal(e.to_string())))?;
                let created = self.commit(None, change).await;
                crate::trace::created(&root, &created);
                match created {
                    Ok(child) => self.spawn_driver(child, false),
                    // Started before a crash: it is there already.
                    Err(StoreError::Duplicate(_)) => {}
                    Err(error) => return Err(ChildError::Later(error)),
                }
                Ok(())
            }
            Phase::Compensation => self.undo_child(id, saga.id).await,
        }
    }

    /// Asks child `id` of `parent` to compensate (nothing if it is gone or already has).
    async fn undo_child(
        self: &Arc<Self>,
        id: uuid::Uuid,
        parent: uuid::Uuid,
    ) -> Result<(), ChildError> {
        for _ in 0..5 {
            let Some(child) = self.store.get(id).await.map_err(ChildError::Later)? else {
                return Ok(());
            };
            let Some(def) = self.registry.get(&child.definition, child.version).cloned() else {
                return Err(ChildError::Step(StepError::terminal(format!(
                    "the child saga {id} uses `{}` version {}, which is not registered here",
                    child.definition, child.version
                ))));
            };
            let change = match transition::undo(&def, &child, parent) {
                Ok(Some(change)) => change,
                Ok(None) => return Ok(()),
                Err(refused) => {
                    return Err(ChildError::Step(StepError::terminal(format!(
                        "the child saga {id} cannot be compensated: {refused}"
                    ))))
                }
            };
            match self.commit(Some(&child), change).await {
                Ok(next) => {
                    self.drive_on(next);
                    return Ok(());
                }
                Err(StoreError::LeaseLost(_)) => continue,
                Err(error) => return Err(ChildError::Later(error)),
            }
        }
        Err(ChildError::Later(StoreError::LeaseLost(id)))
    }

    /// The child `saga` waits for, if it waits for one it started.
    pub(crate) async fn child_of(&self, saga: &SagaState) -> Result<Option<SagaState>, StoreError> {
        match saga.awaiting.as_ref().map(|a| &a.wait) {
            Some(Wait::Child { id, started: true }) => self.store.get(*id).await,
            _ => Ok(None),
        }
    }

    /// Tells the parent of child saga `id`, which has ended, if it waits for it. A failure is
    /// logged: the parent looks at its child again within [`crate::transition::CHILD_CHECK`].
    pub(crate) async fn tell_parent(self: &Arc<Self>, id: uuid::Uuid) {
        let told = async {
            match self.store.get(id).await? {
                Some(child) => self.child_ended(&child).await,
                None => Ok(()),
            }
        };
        if let Err(error) = told.await {
            tracing::warn!(saga_id = %id, %error, "telling a child's parent failed; the parent looks again within a minute");
        }
    }

    /// Tells `child`'s parent that it ended.
    async fn child_ended(self: &Arc<Self>, child: &SagaState) -> Result<(), EngineError> {
        let Some((parent_id, _)) = self.store.parent_of(child.id).await? else {
            return Ok(());
        };
        for _ in 0..5 {
            let Some(parent) = self.store.get(parent_id).await? else {
                return Ok(());
            };
            let waits_for_it = matches!(
                parent.awaiting.as_ref().map(|a| &a.wait),
                Some(Wait::Child { id, started: true }) if *id == child.id
            );
            if !waits_for_it {
                return Ok(());
            }
            let Some(def) = self
                .registry
                .get(&parent.definition, parent.version)
                .cloned()
            else {
                self.store.make_due(parent_id).await?;
                return Ok(());
            };
            let Some(mut change) = transition::child_ended(&def, &parent, Some(child)) else {
                return Ok(());
            };
            // Taking the parent over, as a claim would.
            change.state.fencing_token += 1;
            match self.commit(Some(&parent), change).await {
                Ok(next) => {
                    self.drive_on(next);
                    return Ok(());
                }
                Err(StoreError::LeaseLost(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        self.store.make_due(parent_id).await?;
        Ok(())
    }
}
