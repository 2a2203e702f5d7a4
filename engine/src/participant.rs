//! Participant steps: instead of running a function, the mediator sends a command event to a
//! participant service and waits (durably, with no task per saga) for its reply event.
//!
//! A command is an [`Envelope`] of the step's command type, correlated by saga id, step and
//! attempt, whose payload is `{"phase", "idempotency_key", "data"}`. The participant answers with
//! an envelope of type [`REPLY`] carrying the same correlation and a payload
//! `{"phase", "outcome": "success"|"failure", "output", "reason", "retryable"}`; [`Command`]
//! parses the one and builds the other, and [`serve`] runs a participant service over a bus.

use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::Instrument;
use uuid::Uuid;

use crate::bus::{BusError, ConsumeOptions, Delivery, Envelope, EventBus, Filter};
use crate::failure::StepError;
use crate::step::Phase;

/// The event type of every participant's reply.
pub const REPLY: &str = "ParticipantReply";

/// A command as a participant receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The command type (e.g. `ReserveInventory`).
    pub kind: String,
    /// The saga: the correlation id.
    pub saga_id: Uuid,
    /// The saga's definition (copied onto the reply so subscribers can filter by it).
    pub definition: Option<String>,
    /// The step.
    pub step: String,
    /// The attempt; the reply must carry it.
    pub attempt: u32,
    /// The step's action or its compensation.
    pub phase: Phase,
    /// Apply the effect at most once per key (the same on every attempt).
    pub idempotency_key: String,
    /// The saga data as the previous step left it.
    pub data: Value,
}

#[derive(Deserialize)]
struct CommandPayload {
    phase: Phase,
    idempotency_key: String,
    data: Value,
}

impl Command {
    /// The envelope that sends this command: the state machine decides on a command, the
    /// commit writes this envelope to the outbox.
    pub(crate) fn envelope(&self, definition: &str) -> Envelope {
        let mut e = Envelope::new(
            self.kind.clone(),
            json!({ "phase": self.phase, "idempotency_key": self.idempotency_key, "data": self.data }),
        );
        e.saga_id = Some(self.saga_id);
        e.definition = Some(definition.to_string());
        e.step = Some(self.step.clone());
        e.attempt = Some(self.attempt);
        e
    }

    /// Reads a command from its envelope, or says what is missing.
    pub fn parse(e: &Envelope) -> Result<Self, String> {
        let payload: CommandPayload = serde_json::from_value(e.payload.clone())
            .map_err(|err| format!("bad command payload: {err}"))?;
        Ok(Self {
            kind: e.kind.clone(),
            saga_id: e.saga_id.ok_or("command without saga_id")?,
            definition: e.definition.clone(),
            step: e.step.clone().ok_or("command without step")?,
            attempt: e.attempt.ok_or("command without attempt")?,
            phase: payload.phase,
            idempotency_key: payload.idempotency_key,
            data: payload.data,
        })
    }

    /// The saga data as `T`.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(self.data.clone())
            .map_err(|e| format!("command data does not fit: {e}"))
    }

    fn reply(&self, payload: Value) -> Envelope {
        let mut e = Envelope::new(REPLY, payload);
        e.saga_id = Some(self.saga_id);
        e.definition = self.definition.clone();
        e.step = Some(self.step.clone());
        e.attempt = Some(self.attempt);
        e
    }

    /// The reply saying the work is done, with its `output`.
    pub fn success<T: Serialize>(&self, output: &T) -> Envelope {
        let output = serde_json::to_value(output).unwrap_or(Value::Null);
        self.reply(json!({ "phase": self.phase, "outcome": "success", "output": output }))
    }

    /// The reply saying the work failed, and whether trying again may help.
    pub fn failure(&self, reason: impl Into<String>, retryable: bool) -> Envelope {
        self.reply(json!({
            "phase": self.phase, "outcome": "failure", "reason": reason.into(), "retryable": retryable
        }))
    }
}

/// A reply as the mediator reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub saga_id: Uuid,
    pub step: String,
    pub attempt: u32,
    pub phase: Phase,
    pub outcome: Result<Value, StepError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Success,
    Failure,
}

#[derive(Deserialize)]
struct ReplyPayload {
    phase: Phase,
    outcome: Outcome,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    retryable: bool,
}

impl Reply {
    /// Reads a reply, or says why it is malformed.
    pub(crate) fn parse(e: &Envelope) -> Result<Self, String> {
        let p: ReplyPayload = serde_json::from_value(e.payload.clone())
            .map_err(|err| format!("bad reply payload: {err}"))?;
        let outcome = match p.outcome {
            Outcome::Success => Ok(p.output),
            Outcome::Failure => {
                let reason = p
                    .reason
                    .unwrap_or_else(|| "the participant reported a failure".into());
                Err(if p.retryable {
                    StepError::retryable(reason)
                } else {
                    StepError::terminal(reason)
                })
            }
        };
        Ok(Self {
            saga_id: e.saga_id.ok_or("reply without saga_id")?,
            step: e.step.clone().ok_or("reply without step")?,
            attempt: e.attempt.ok_or("reply without attempt")?,
            phase: p.phase,
            outcome,
        })
    }
}

/// Commands a participant service handles at once, at most.
const SERVING: usize = 256;

/// Runs a participant service: joins consumer group `group` for the `commands` types, and for
/// each command calls `handler`, publishes the reply it returns, and acknowledges the command
/// only once the bus confirmed the reply. A command that cannot be parsed goes to the dead
/// letters; one whose reply cannot be published is delivered again (the handler sees it again
/// with the same idempotency key, so it must apply each effect at most once per key).
///
/// Every instance of a service joins the same `group`, so each command reaches one of them;
/// `options` say how long a command may stay unacknowledged (a crashed instance's commands go
/// to another after that) and how often it is delivered before it is dead-lettered. A handler
/// that takes longer than that ack wait may see the same command run again meanwhile on
/// another instance: one more reason to apply each effect once per idempotency key. Returns
/// once the group is joined; the service runs until the returned task is aborted or the bus
/// goes away.
pub async fn serve<H, F>(
    bus: Arc<dyn EventBus>,
    group: &str,
    commands: &[&str],
    options: ConsumeOptions,
    handler: H,
) -> Result<tokio::task::JoinHandle<()>, BusError>
where
    H: Fn(Command) -> F + Send + Sync + 'static,
    F: Future<Output = Envelope> + Send + 'static,
{
    let filter = Filter::types(commands.iter().copied());
    let consumer = bus.consume(group, filter, options).await?;
    let handler = Arc::new(handler);
    let answering = move |delivery: Delivery| {
        let (bus, handler) = (bus.clone(), handler.clone());
        async move { answer(bus.as_ref(), delivery, handler.as_ref()).await }
    };
    Ok(tokio::spawn(consumer.handle(
        SERVING,
        std::future::pending(),
        answering,
    )))
}

/// Handles one command delivery: reply published, then the command acknowledged.
async fn answer<H, F>(bus: &dyn EventBus, delivery: Delivery, handler: &H)
where
    H: Fn(Command) -> F,
    F: Future<Output = Envelope>,
{
    let command = match Command::parse(delivery.event()) {
        Ok(command) => command,
        Err(reason) => {
            let _ = delivery
                .reject(&format!("malformed command: {reason}"))
                .await;
            return;
        }
    };
    let span = tracing::info_span!(
        "saga.participant",
        otel.name = %format_args!("handle {}", command.kind),
        saga.id = %command.saga_id,
        saga.definition = command.definition.as_deref().unwrap_or(""),
        saga.step = %command.step,
        saga.attempt = command.attempt,
        saga.phase = command.phase.as_str(),
        saga.outcome = tracing::field::Empty,
    );
    crate::trace::follow(&span, delivery.event().traceparent.as_deref());
    let mut reply = handler(command).instrument(span.clone()).await;
    let outcome = reply.payload.get("outcome").and_then(|o| o.as_str());
    crate::trace::outcome(&span, outcome.unwrap_or("unknown"));
    reply.traceparent = crate::trace::traceparent(&span).or(reply.traceparent);
    drop(span);
    let settled = match bus.publish(reply).await {
        Ok(()) => delivery.ack().await,
        Err(error) => {
            delivery
                .retry(&format!("publishing the reply failed: {error}"))
                .await
        }
    };
    if let Err(error) = settled {
        tracing::warn!(%error, "settling a command failed; it will be delivered again");
    }
}
