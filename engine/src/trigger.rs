//! Initiating events: a trigger maps an incoming event type (e.g. `OrderPlaced`) to a saga and
//! its data, so publishing the event starts the saga. The saga's id is the event's id, so the
//! same event delivered twice (or heard by several mediators) starts one saga: the second insert
//! finds the id taken.

use std::sync::Arc;

use serde_json::Value;

use crate::bus::Envelope;

/// Turns an initiating event into the saga's data, or says why it cannot.
pub type TriggerFn = Arc<dyn Fn(&Envelope) -> Result<Value, String> + Send + Sync>;

/// A registered trigger: events of `event_type` start saga `saga`.
#[derive(Clone)]
pub struct Trigger {
    /// The event type that starts the saga.
    pub event_type: String,
    /// The saga it starts (its newest version).
    pub saga: String,
    /// Maps the event to the saga's data.
    pub map: TriggerFn,
}

impl std::fmt::Debug for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trigger")
            .field("event_type", &self.event_type)
            .field("saga", &self.saga)
            .finish()
    }
}

impl Trigger {
    /// Events of `event_type` start `saga` with the data `map` makes of them.
    pub fn new<F>(event_type: impl Into<String>, saga: impl Into<String>, map: F) -> Self
    where
        F: Fn(&Envelope) -> Result<Value, String> + Send + Sync + 'static,
    {
        Self {
            event_type: event_type.into(),
            saga: saga.into(),
            map: Arc::new(map),
        }
    }

    /// Events of `event_type` start `saga` with the event's payload as the data.
    pub fn with_payload(event_type: impl Into<String>, saga: impl Into<String>) -> Self {
        Self::new(event_type, saga, |e| Ok(e.payload.clone()))
    }
}
