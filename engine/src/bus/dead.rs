//! Dead letters: messages a consumer group could not handle, kept with their reason until an
//! operator replays them (`saga dead-letters`).

use async_trait::async_trait;
use serde::Serialize;
use uuid::Uuid;

use super::{BusError, Envelope};
use crate::state::Millis;

/// A message in the dead-letter channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// Its id in the dead-letter channel (assigned there; ignored when sending).
    pub id: String,
    /// The consumer group that gave up on it.
    pub group: String,
    /// The route it was published on (`<definition>.<type>`), where a replay sends it.
    pub route: String,
    /// Why: unparseable, rejected by the handler, or too many deliveries.
    pub reason: String,
    /// How many times it had been delivered.
    pub deliveries: u32,
    /// When it was dead-lettered, milliseconds since the Unix epoch.
    pub dead_at: Millis,
    /// The message body as published (lossy UTF-8).
    pub body: String,
}

impl DeadLetter {
    /// A new dead letter (its id is assigned by the channel), stamped now.
    pub fn new(group: &str, route: &str, body: &[u8], deliveries: u32, reason: &str) -> Self {
        Self {
            id: String::new(),
            group: group.to_string(),
            route: route.to_string(),
            reason: reason.to_string(),
            deliveries,
            dead_at: crate::store::now_ms(),
            body: String::from_utf8_lossy(body).into_owned(),
        }
    }

    /// The envelope's event id, if the body is an envelope.
    pub fn event_id(&self) -> Option<Uuid> {
        serde_json::from_str::<Envelope>(&self.body)
            .ok()
            .map(|e| e.event_id)
    }

    /// The envelope's type, if the body is an envelope.
    pub fn kind(&self) -> Option<String> {
        serde_json::from_str::<Envelope>(&self.body)
            .ok()
            .map(|e| e.kind)
    }
}

/// A bus's dead-letter channel (JetStream: a stream of its own; RabbitMQ: a dead-letter exchange
/// and its queue; in process: a list).
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// Stores `letter` (durably, confirmed by the broker) and returns its id.
    async fn send(&self, letter: DeadLetter) -> Result<String, BusError>;
    /// The oldest dead letters first, at most `limit`.
    async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError>;
    /// One dead letter.
    async fn get(&self, id: &str) -> Result<Option<DeadLetter>, BusError>;
    /// Publishes the dead letter's body again on its route (every group bound to it receives
    /// it; consumers drop what they already handled), then removes it from the channel.
    async fn replay(&self, id: &str) -> Result<DeadLetter, BusError>;
}
