//! The event bus: where the engine's events go after their transition commits, and where it
//! hears initiating events and participants' replies. [`EventBus`] is the seam; [`InProcessBus`]
//! (tokio channels) is the default, and the `nats` and `rabbitmq` features add brokers that carry
//! the same envelopes between processes ([`connect`] picks one by URL).
//!
//! Two ways to receive:
//! - [`EventBus::subscribe`]: every matching event from now on, to this subscriber alone, with
//!   nothing to acknowledge (watching, printing, waiting).
//! - [`EventBus::consume`]: a durable consumer *group*. Each message reaches one member of the
//!   group, is acknowledged once handled, is delivered again if its member dies first, and goes
//!   to the dead letters when it cannot be parsed or fails too often ([`Delivery`]).

pub mod backend;
mod connect;
mod consume;
mod dead;
mod envelope;
mod in_process;
mod recent;
mod route;

#[cfg(feature = "rabbitmq")]
pub mod amqp;
#[cfg(feature = "nats")]
pub mod nats;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use connect::{connect, BusConfig, DEFAULT_PREFIX};
pub use consume::{ConsumeOptions, Consumer, Delivery};
pub use dead::{DeadLetter, DeadLetters};
pub use envelope::Envelope;
pub use in_process::InProcessBus;
pub(crate) use recent::Recent;
pub use route::{Filter, Route};

/// Errors from a bus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// Raw input that is not an event envelope.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// The bus cannot deliver right now (broker unreachable, connection lost).
    #[error("the event bus is unavailable: {0}")]
    Unavailable(String),
    /// The broker did not confirm a publish: the message may not have been stored.
    #[error("the broker did not confirm the message: {0}")]
    NotConfirmed(String),
    /// A bus URL, prefix or group name that cannot be used.
    #[error("bad bus configuration: {0}")]
    Config(String),
    /// No dead letter with this id.
    #[error("no dead letter with id `{0}`")]
    NoSuchDeadLetter(String),
}

/// A subscriber's stream of events. Each subscriber has its own queue, so a slow one never holds
/// up the publisher or the others; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Envelope>,
    /// The task feeding `rx` from a broker, stopped with the subscription.
    feeder: Option<tokio::task::AbortHandle>,
}

impl Subscription {
    /// A subscription reading `rx` (what a bus implementation hands out).
    pub fn new(rx: mpsc::UnboundedReceiver<Envelope>) -> Self {
        Self { rx, feeder: None }
    }

    /// A subscription reading `rx`, fed by `feeder`, which is aborted when it is dropped.
    pub fn fed_by(rx: mpsc::UnboundedReceiver<Envelope>, feeder: tokio::task::AbortHandle) -> Self {
        Self {
            rx,
            feeder: Some(feeder),
        }
    }

    /// The next event, or `None` once the bus is gone.
    pub async fn next(&mut self) -> Option<Envelope> {
        self.rx.recv().await
    }

    /// The next event if one is queued.
    pub fn try_next(&mut self) -> Option<Envelope> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(feeder) = &self.feeder {
            feeder.abort();
        }
    }
}

/// Where events are published and consumed. Delivery is at least once: consumers drop
/// duplicates by `event_id`.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes `event` on its [`Route`]; returns once the bus has it (for a broker: once the
    /// broker confirmed it). The event id travels as the broker's message id.
    async fn publish(&self, event: Envelope) -> Result<(), BusError>;

    /// Publishes `events` in order and returns one result per event, in order. Brokers send
    /// them all before waiting for the confirms; the default publishes one at a time.
    async fn publish_all(&self, events: Vec<Envelope>) -> Vec<Result<(), BusError>> {
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            results.push(self.publish(event).await);
        }
        results
    }

    /// Publishes raw bytes on `route`, as a producer outside the engine would: nothing checks
    /// them here, and consumers dead-letter what they cannot parse.
    async fn publish_raw(&self, route: &Route, body: &[u8]) -> Result<(), BusError>;

    /// Starts receiving the events that match `filter` from now on (every subscriber gets every
    /// matching event; nothing to acknowledge). Returns once the subscription is in place.
    async fn subscribe(&self, filter: Filter) -> Result<Subscription, BusError>;

    /// Joins consumer group `group` for the events matching `filter`, declaring it durably if
    /// it is new. Members of a group share its messages: each goes to one of them. A group is
    /// named for its filter: join it with the same filter everywhere.
    async fn consume(
        &self,
        group: &str,
        filter: Filter,
        options: ConsumeOptions,
    ) -> Result<Consumer, BusError>;

    /// The dead-letter channel: where consumers put what they cannot handle; listed and
    /// replayed from there.
    fn dead_letters(&self) -> Arc<dyn DeadLetters>;

    /// Publishes an event given as JSON text (from outside the process); malformed text is
    /// refused with [`BusError::Malformed`] and nothing is published.
    async fn publish_json(&self, text: &str) -> Result<(), BusError> {
        let event: Envelope =
            serde_json::from_str(text).map_err(|e| BusError::Malformed(e.to_string()))?;
        self.publish(event).await
    }

    /// Deletes what this bus declared under its prefix (streams, exchanges, queues): for tests
    /// and demos that leave a shared broker as they found it. Nothing for the in-process bus.
    async fn remove_all(&self) -> Result<(), BusError> {
        Ok(())
    }
}
