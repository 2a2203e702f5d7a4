//! Signals from the bus: a route maps an event type (e.g. `PaymentReceived`, published by
//! another service) to a named signal, its target taken from the event: the saga id it carries,
//! or a correlation key read from its payload (e.g. `order_id`). The event's id is the signal's,
//! so an event delivered twice is kept once; its payload is the signal's data.

use std::sync::Arc;

use crate::bus::Envelope;
use crate::store::SignalTarget;

/// Finds whom an event's signal is for, or says why it cannot.
pub type TargetFn = Arc<dyn Fn(&Envelope) -> Result<SignalTarget, String> + Send + Sync>;

/// A registered route: events of `event_type` are the signal `signal`.
#[derive(Clone)]
pub struct SignalRoute {
    /// The event type heard.
    pub event_type: String,
    /// The signal it becomes.
    pub signal: String,
    /// Whom it is for.
    pub target: TargetFn,
}

impl std::fmt::Debug for SignalRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalRoute")
            .field("event_type", &self.event_type)
            .field("signal", &self.signal)
            .finish()
    }
}

impl SignalRoute {
    /// Events of `event_type` are the signal `signal` for the saga whose id the event carries
    /// (its envelope's `saga_id`).
    pub fn to_saga(event_type: impl Into<String>, signal: impl Into<String>) -> Self {
        Self::new(event_type, signal, |e| {
            e.saga_id
                .map(SignalTarget::Saga)
                .ok_or_else(|| "the event carries no saga id".to_string())
        })
    }

    /// Events of `event_type` are the signal `signal` for the sagas whose signal step listens on
    /// the value of the payload's `field` (a string or a number), as
    /// [`crate::Step::correlate`] names it on the saga's side.
    pub fn by_key(
        event_type: impl Into<String>,
        signal: impl Into<String>,
        field: impl Into<String>,
    ) -> Self {
        let field = field.into();
        Self::new(event_type, signal, move |e| match e.payload.get(&field) {
            Some(serde_json::Value::String(s)) => Ok(SignalTarget::Key(s.clone())),
            Some(serde_json::Value::Number(n)) => Ok(SignalTarget::Key(n.to_string())),
            Some(other) => Err(format!("`{field}` is {other}, not a string or a number")),
            None => Err(format!("the payload has no `{field}`")),
        })
    }

    /// Events of `event_type` are the signal `signal` for whom `target` says.
    pub fn new<F>(event_type: impl Into<String>, signal: impl Into<String>, target: F) -> Self
    where
        F: Fn(&Envelope) -> Result<SignalTarget, String> + Send + Sync + 'static,
    {
        Self {
            event_type: event_type.into(),
            signal: signal.into(),
            target: Arc::new(target),
        }
    }
}
