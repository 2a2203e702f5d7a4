//! Signals in the mediator: sending one (the library call, and events on the bus that a
//! [`crate::SignalRoute`] maps to a signal), and a waiting saga taking the signal kept for it,
//! which the mediator that sent it does at once rather than at its next claim.

use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

use super::{Inner, Mediator};
use crate::definition::Definition;
use crate::error::EngineError;
use crate::operator::{self, OperatorError};
use crate::state::{SagaState, Wait};
use crate::store::{KeptSignal, SignalSent, SignalTarget, StoreError};
use crate::transition::{self, Next};

impl Mediator {
    /// Sends the signal `name` with `data` to saga `id`, where a signal step waits for it (or
    /// will: a signal sent before the saga reaches its wait is kept for it). Refused, with
    /// nothing written, when no step of the saga waits for this signal, that step has ended, the
    /// saga is final, or the data does not fit the step.
    pub async fn signal<T: Serialize + ?Sized>(
        &self,
        id: Uuid,
        name: &str,
        data: &T,
    ) -> Result<SignalSent, EngineError> {
        self.signal_with_id(id, name, Uuid::now_v7(), data).await
    }

    /// [`Mediator::signal`] with the signal's own id (a webhook's delivery id, say): a sender
    /// that retries with the same id is kept once.
    pub async fn signal_with_id<T: Serialize + ?Sized>(
        &self,
        id: Uuid,
        name: &str,
        event_id: Uuid,
        data: &T,
    ) -> Result<SignalSent, EngineError> {
        let data = serde_json::to_value(data).map_err(|e| EngineError::InvalidData {
            saga: format!("signal `{name}`"),
            reason: e.to_string(),
        })?;
        let target = SignalTarget::Saga(id);
        Ok(self
            .inner
            .send_signal(&target, name, event_id, &data)
            .await?)
    }
}

impl Inner {
    /// Sends a signal and has the sagas it woke take it here, when their definition is.
    pub(crate) async fn send_signal(
        self: &Arc<Self>,
        target: &SignalTarget,
        name: &str,
        event_id: Uuid,
        data: &serde_json::Value,
    ) -> Result<SignalSent, OperatorError> {
        let sent = operator::signal(
            self.store.as_ref(),
            &self.registry,
            target,
            name,
            event_id,
            data,
        )
        .await?;
        // Kept, and its sagas due for whichever mediator looks first; not yet taken.
        self.config.faults.crash_point("after_signal_kept").await;
        for &id in &sent.woken {
            let Some(saga) = self.store.get(id).await? else {
                continue;
            };
            let Some(def) = self.registry.get(&saga.definition, saga.version).cloned() else {
                continue;
            };
            match self.take_kept(&def, &saga).await {
                Ok(Some(next)) => self.drive_on(next),
                // Taken by whoever claimed it first, or left to the next claim.
                Ok(None) | Err(StoreError::LeaseLost(_)) => {}
                Err(error) => {
                    tracing::warn!(saga_id = %id, %error, "taking a signal failed; the next claim takes it")
                }
            }
        }
        Ok(sent)
    }

    /// Drives `saga` on from here unless it is final: it runs what comes next, or, for a wait,
    /// starts the child it waits for, takes a signal kept for it, or tells the scheduler when it
    /// is due, as a driver does after any commit.
    pub(crate) fn drive_on(self: &Arc<Self>, saga: SagaState) {
        if transition::next(&saga) != Next::Done {
            self.spawn_driver(saga, false);
        }
    }

    /// The signal kept for `saga` that its signal wait can take, if it waits on one.
    pub(crate) async fn kept_for(
        &self,
        saga: &SagaState,
    ) -> Result<Option<KeptSignal>, StoreError> {
        let Some(Wait::Signal { name, key, .. }) = saga.awaiting.as_ref().map(|a| &a.wait) else {
            return Ok(None);
        };
        let Some(def) = self.registry.get(&saga.definition, saga.version) else {
            return Ok(None);
        };
        let kept = self
            .store
            .kept_signals(saga.id, name, key.as_deref())
            .await?;
        Ok(transition::pick(def, saga, &kept).cloned())
    }

    /// If `saga` waits on a signal and one is kept for it, takes it over (as a claim would, so a
    /// driver left from before cannot write) and records the signal taken; returns the saga
    /// after, leased here.
    pub(crate) async fn take_kept(
        &self,
        def: &Definition,
        saga: &SagaState,
    ) -> Result<Option<SagaState>, StoreError> {
        let Some(signal) = self.kept_for(saga).await? else {
            return Ok(None);
        };
        let mut change = transition::take(def, saga, &signal);
        change.state.fencing_token += 1;
        self.commit(Some(saga), change).await.map(Some)
    }
}
