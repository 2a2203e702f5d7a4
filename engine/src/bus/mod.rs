//! The event bus: where the engine's events go after their transition commits, and where it
//! hears initiating events and participants' replies. [`EventBus`] is the seam; [`InProcessBus`]
//! (tokio channels) is the default.

mod envelope;
mod in_process;

use std::collections::HashSet;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use envelope::Envelope;
pub use in_process::InProcessBus;

/// Errors from a bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Raw input that is not an event envelope.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// The bus cannot deliver right now.
    #[error("the event bus is unavailable: {0}")]
    Unavailable(String),
}

/// Which events a subscriber receives: all of the given types (all types when empty) of the
/// given definitions (all when empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    types: HashSet<String>,
    definitions: HashSet<String>,
}

impl Filter {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only these event types.
    pub fn types<I: IntoIterator<Item = S>, S: Into<String>>(types: I) -> Self {
        Self {
            types: types.into_iter().map(Into::into).collect(),
            definitions: HashSet::new(),
        }
    }

    /// Also only events of this saga definition.
    pub fn definition(mut self, name: impl Into<String>) -> Self {
        self.definitions.insert(name.into());
        self
    }

    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &Envelope) -> bool {
        (self.types.is_empty() || self.types.contains(&event.kind))
            && (self.definitions.is_empty()
                || event
                    .definition
                    .as_ref()
                    .is_some_and(|d| self.definitions.contains(d)))
    }
}

/// A subscriber's stream of events. Each subscriber has its own queue, so a slow one never holds
/// up the publisher or the others; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Envelope>,
}

impl Subscription {
    /// The next event, or `None` once the bus is gone.
    pub async fn next(&mut self) -> Option<Envelope> {
        self.rx.recv().await
    }

    /// The next event if one is queued.
    pub fn try_next(&mut self) -> Option<Envelope> {
        self.rx.try_recv().ok()
    }
}

/// Where events are published and subscribed to. Delivery is at least once: consumers drop
/// duplicates by `event_id`.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Delivers `event` to every matching subscriber. Never waits for a subscriber.
    async fn publish(&self, event: Envelope) -> Result<(), BusError>;

    /// Starts receiving the events that match `filter`.
    fn subscribe(&self, filter: Filter) -> Subscription;

    /// Publishes an event given as JSON text (from outside the process); malformed text is
    /// refused with [`BusError::Malformed`] and nothing is delivered.
    async fn publish_json(&self, text: &str) -> Result<(), BusError> {
        let event: Envelope =
            serde_json::from_str(text).map_err(|e| BusError::Malformed(e.to_string()))?;
        self.publish(event).await
    }
}
