//! What the mediator hears on the bus: participants' replies, which advance sagas waiting for
//! them, and initiating events, which start sagas. Both arrive through one consumer group that
//! every mediator of a deployment joins, so each message is handled by one of them; it is
//! acknowledged only once the transition it caused has committed (or once it is known to change
//! nothing), and what can never be handled goes to the dead letters.

use std::sync::Arc;

use tracing::Instrument;

use super::Inner;
use crate::bus::{BusError, Consumer, Delivery, Envelope, Filter};
use crate::error::EngineError;
use crate::operator::{OperatorError, Refused};
use crate::participant::{Reply, REPLY};
use crate::state::{Awaiting, Wait};
use crate::step::Phase;
use crate::store::StoreError;
use crate::transition;

/// Messages handled at once, at most.
const HANDLING: usize = 256;

/// Joins the mediators' consumer group for replies and the registered triggers' events. Done
/// before the mediator starts, so nothing published once it has started is missed.
pub(crate) async fn join(inner: &Inner) -> Result<Consumer, BusError> {
    let mut types = vec![REPLY.to_string()];
    let registry = &inner.registry;
    types.extend(registry.triggers().iter().map(|t| t.event_type.clone()));
    types.extend(
        registry
            .signal_routes()
            .iter()
            .map(|r| r.event_type.clone()),
    );
    inner
        .bus
        .consume(
            &inner.config.group,
            Filter::types(types),
            inner.config.consume.clone(),
        )
        .await
}

/// What became of a message.
enum Handled {
    /// Done, or known to change nothing: acknowledge it.
    Done,
    /// Not now (the store is unavailable): deliver it again later.
    Retry(String),
    /// It can never be handled: dead-letter it.
    Poison(String),
}

/// Handles the group's messages, each in its own task, until the mediator begins to shut down:
/// from then on the other mediators of the group get them.
pub(crate) async fn run(inner: Arc<Inner>, consumer: Consumer) {
    let mut shutdown = inner.shutdown.subscribe();
    let stop = async move {
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    let handler = move |delivery: Delivery| {
        let inner = inner.clone();
        async move { settle(&inner, delivery).await }
    };
    consumer.handle(HANDLING, stop, handler).await;
}

async fn settle(inner: &Arc<Inner>, delivery: Delivery) {
    let event = delivery.event();
    let is_signal = |r: &crate::SignalRoute| r.event_type == event.kind;
    // Taking it continues the trace it came with: a reply the participant's span, an initiating
    // event its producer's (the new saga's root is a child of this span).
    let span = tracing::info_span!(
        "saga.consume",
        otel.name = %format_args!("consume {}", event.kind),
        messaging.message.id = %event.event_id,
        saga.event = %event.kind,
        saga.id = event.saga_id.map(|id| id.to_string()).unwrap_or_default(),
        saga.step = event.step.as_deref().unwrap_or(""),
        saga.attempt = event.attempt.unwrap_or(0),
        saga.outcome = tracing::field::Empty,
    );
    crate::trace::follow(&span, event.traceparent.as_deref());
    if event.kind == REPLY {
        // A reply's outcome (`success`, `failure`) is the engine's word, not payload data.
        let outcome = event.payload.get("outcome").and_then(|o| o.as_str());
        crate::trace::outcome(&span, outcome.unwrap_or("unknown"));
    }
    let handled = async {
        if event.kind == REPLY {
            reply(inner, event).await
        } else if let Some(route) = inner.registry.signal_routes().iter().find(|r| is_signal(r)) {
            signal(inner, route, event).await
        } else {
            trigger(inner, event).await
        }
    }
    .instrument(span)
    .await;
    let (event_id, kind) = (event.event_id, event.kind.clone());
    let settled = match handled {
        Handled::Done => delivery.ack().await,
        Handled::Retry(reason) => delivery.retry(&reason).await,
        Handled::Poison(reason) => {
            tracing::warn!(%event_id, event = %kind, %reason, "message cannot be handled");
            delivery.reject(&reason).await
        }
    };
    if let Err(error) = settled {
        tracing::warn!(%event_id, event = %kind, %error, "settling a message failed; the bus will deliver it again");
    }
}

/// Starts the saga an initiating event asks for. Its id is the event's id, so a saga that
/// already exists means the event was a duplicate.
async fn trigger(inner: &Arc<Inner>, event: &Envelope) -> Handled {
    let Some(trigger) = inner
        .registry
        .triggers()
        .iter()
        .find(|t| t.event_type == event.kind)
    else {
        return Handled::Poison(format!("no trigger for events of type `{}`", event.kind));
    };
    let data = match (trigger.map)(event) {
        Ok(data) => data,
        Err(reason) => return Handled::Poison(format!("initiating event does not fit: {reason}")),
    };
    match inner.start(&trigger.saga, event.event_id, data).await {
        Ok(id) => {
            tracing::info!(saga_id = %id, event = %event.kind, "saga started by an event");
            Handled::Done
        }
        Err(EngineError::Store(StoreError::Duplicate(id))) => {
            tracing::info!(saga_id = %id, event_id = %event.event_id, "duplicate initiating event; the saga already exists");
            Handled::Done
        }
        Err(error @ (EngineError::Store(_) | EngineError::ShuttingDown)) => {
            tracing::warn!(event_id = %event.event_id, %error, "starting a saga from an event failed; it will be delivered again");
            Handled::Retry(error.to_string())
        }
        Err(error) => Handled::Poison(error.to_string()),
    }
}

/// Sends the signal an event is. One for a saga that no longer waits for it (final, past its
/// step) changes nothing; one that can never be sent (no target, no such saga or signal, data
/// that does not fit) is dead-lettered.
async fn signal(inner: &Arc<Inner>, route: &crate::SignalRoute, event: &Envelope) -> Handled {
    let target = match (route.target)(event) {
        Ok(target) => target,
        Err(reason) => return Handled::Poison(format!("signal event has no target: {reason}")),
    };
    let sent = inner
        .send_signal(&target, &route.signal, event.event_id, &event.payload)
        .await;
    match sent {
        Ok(sent) => {
            if !sent.kept {
                tracing::info!(event_id = %event.event_id, "duplicate signal ignored");
            }
            Handled::Done
        }
        Err(OperatorError::Refused {
            reason:
                reason @ (Refused::Final(_)
                | Refused::SignalTooLate { .. }
                | Refused::AlreadyCompensating),
            id,
            ..
        }) => {
            tracing::warn!(saga_id = %id, event_id = %event.event_id, %reason, "signal for a saga that no longer waits for it ignored");
            Handled::Done
        }
        Err(error @ (OperatorError::Store(_) | OperatorError::UnknownVersion { .. })) => {
            Handled::Retry(error.to_string())
        }
        Err(error) => Handled::Poison(error.to_string()),
    }
}

/// Applies a participant's reply. One that does not match what its saga awaits (a duplicate, a
/// late one, one for an old attempt or an unknown saga) changes nothing and is logged at warn.
async fn reply(inner: &Arc<Inner>, event: &Envelope) -> Handled {
    let reply = match Reply::parse(event) {
        Ok(reply) => reply,
        Err(reason) => {
            tracing::warn!(event_id = %event.event_id, saga_id = ?event.saga_id, %reason, "malformed reply");
            return Handled::Poison(format!("malformed reply: {reason}"));
        }
    };
    match apply_reply(inner, &reply).await {
        Ok(Applied::Done) => Handled::Done,
        // Another mediator of the group may have the version (a rolling upgrade).
        Ok(Applied::NotHere(reason)) => Handled::Retry(reason),
        Err(error) => {
            tracing::warn!(saga_id = %reply.saga_id, %error, "applying a reply failed; it will be delivered again");
            Handled::Retry(error.to_string())
        }
    }
}

/// What applying a reply came to.
enum Applied {
    /// Applied, or known to change nothing.
    Done,
    /// This mediator cannot apply it (it lacks the saga's definition version).
    NotHere(String),
}

async fn apply_reply(inner: &Arc<Inner>, reply: &Reply) -> Result<Applied, StoreError> {
    // Retried when the saga changed under us (a concurrent duplicate, the deadline firing).
    for _ in 0..5 {
        let Some(saga) = inner.store.get(reply.saga_id).await? else {
            tracing::warn!(saga_id = %reply.saga_id, step = %reply.step, "reply for an unknown saga ignored");
            return Ok(Applied::Done);
        };
        let Some(def) = inner.registry.get(&saga.definition, saga.version).cloned() else {
            tracing::warn!(saga_id = %saga.id, "reply for a saga whose definition version is not registered here; leaving it to the group");
            return Ok(Applied::NotHere(format!(
                "saga {} uses `{}` version {}, which this mediator does not have",
                saga.id, saga.definition, saga.version
            )));
        };
        let index = def.steps().iter().position(|s| s.name() == reply.step);
        let expected = index.map(|step| Awaiting {
            step,
            phase: reply.phase,
            attempt: reply.attempt,
            wait: Wait::Reply,
        });
        if saga.awaiting.is_none() || saga.awaiting != expected {
            tracing::warn!(
                saga_id = %saga.id,
                step = %reply.step,
                attempt = reply.attempt,
                "duplicate, late or unexpected reply ignored"
            );
            return Ok(Applied::Done);
        }
        let (mut change, ok) = match (&reply.outcome, reply.phase) {
            (Ok(output), Phase::Action) => {
                let spec = &def.steps()[saga.current_step];
                let applied = match &spec.apply {
                    Some(apply) => apply(saga.data.clone(), output.clone()),
                    None => Ok(saga.data.clone()),
                };
                match applied {
                    Ok(data) => (
                        transition::succeeded(&def, &saga, Phase::Action, data),
                        true,
                    ),
                    Err(error) => (
                        transition::failed(&def, &saga, Phase::Action, &error),
                        false,
                    ),
                }
            }
            (Ok(_), Phase::Compensation) => (
                transition::succeeded(&def, &saga, Phase::Compensation, saga.data.clone()),
                true,
            ),
            (Err(error), phase) => (transition::failed(&def, &saga, phase, error), false),
        };
        // Taking the saga over, as a claim would: a driver left from before cannot write.
        change.state.fencing_token += 1;
        match inner.commit_checked(Some(&saga), change, true).await {
            Ok(next) => {
                // The attempt ran from the commit that sent its command (the saga's last
                // transition while it waited) to this one, both on the database clock.
                let took = (next.updated_at - saga.updated_at).max(0) as u64;
                crate::figures::attempt(
                    def.name(),
                    &reply.step,
                    reply.phase,
                    ok,
                    std::time::Duration::from_millis(took),
                );
                inner.drive_on(next);
                return Ok(Applied::Done);
            }
            // Refused: the saga moved on (go round and see), or nothing changed and the reply
            // came after its deadline.
            Err(StoreError::LeaseLost(_)) => {
                let now = inner.store.get(reply.saga_id).await?;
                if now.as_ref().is_some_and(|n| {
                    n.last_seq == saga.last_seq && n.fencing_token == saga.fencing_token
                }) {
                    tracing::warn!(saga_id = %saga.id, step = %reply.step, attempt = reply.attempt, "reply came after its deadline; ignored");
                    return Ok(Applied::Done);
                }
            }
            Err(error) => return Err(error),
        }
    }
    tracing::warn!(saga_id = %reply.saga_id, "saga kept changing; reply left to its deadline");
    Ok(Applied::Done)
}
