//! The event envelope: what the engine publishes for every transition and every participant
//! command, and what it consumes (initiating events, participants' replies).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::event::HistoryEvent;
use crate::state::Millis;

/// One event on the bus. Serde round-trips it; its JSON shape is documented in docs/events.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique id (UUID v7): consumers drop duplicates by it (delivery is at least once).
    pub event_id: Uuid,
    /// `SagaStarted`, `StepCompleted`, a command such as `ReserveInventory`, a reply
    /// (`ParticipantReply`), or an initiating event such as `OrderPlaced`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The saga it concerns: the correlation id (absent on initiating events).
    #[serde(default)]
    pub saga_id: Option<Uuid>,
    /// The saga's definition name.
    #[serde(default)]
    pub definition: Option<String>,
    /// The step concerned.
    #[serde(default)]
    pub step: Option<String>,
    /// The attempt concerned.
    #[serde(default)]
    pub attempt: Option<u32>,
    /// For a transition: its position in the saga's history (1, 2, 3... without gaps), so a
    /// consumer can order one saga's events however they arrive.
    #[serde(default)]
    pub seq: Option<i64>,
    /// When it happened, milliseconds since the Unix epoch (the database clock for the engine's
    /// own events).
    pub occurred_at: Millis,
    /// What happened: a transition's detail, a command's saga data, a reply's outcome.
    #[serde(default)]
    pub payload: Value,
    /// The trace context it continues, a W3C `traceparent` (with the `otel` feature): an
    /// event's saga root span, a command's sending span, a reply's answering span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Envelope {
    /// A new event of type `kind` with `payload`, stamped now (this machine's clock).
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            kind: kind.into(),
            saga_id: None,
            definition: None,
            step: None,
            attempt: None,
            seq: None,
            occurred_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as Millis)
                .unwrap_or(0),
            payload,
            traceparent: None,
        }
    }

    /// The envelope of a committed history event.
    pub fn of(definition: &str, event: &HistoryEvent) -> Self {
        Self {
            event_id: event.event_id,
            kind: event.kind.as_str().to_string(),
            saga_id: Some(event.saga_id),
            definition: Some(definition.to_string()),
            step: event.step.clone(),
            attempt: event.attempt,
            seq: Some(event.seq),
            occurred_at: event.at,
            payload: event.detail.clone(),
            traceparent: None,
        }
    }

    /// One line for people: type, step, attempt and what the payload says (errors, retry
    /// delays, reasons, reply outcomes), in aligned columns.
    pub fn describe(&self) -> String {
        let step = self.step.as_deref().unwrap_or("");
        let attempt = self
            .attempt
            .map(|a| format!("attempt {a}"))
            .unwrap_or_default();
        let text = |key: &str| self.payload.get(key).and_then(|v| v.as_str());
        let retry = self.payload.get("retry_in_ms").and_then(|v| v.as_u64());
        let note = match (text("error"), retry, text("reason"), text("outcome")) {
            (Some(err), Some(ms), _, _) => format!("{err}; retrying in {ms} ms"),
            (Some(err), None, _, _) => err.to_string(),
            (None, _, Some(reason), Some(outcome)) => format!("{outcome}: {reason}"),
            (None, _, Some(reason), None) => format!("reason: {reason}"),
            (None, _, None, Some(outcome)) => outcome.to_string(),
            _ => String::new(),
        };
        format!("{:<20} {:<18} {:<10} {note}", self.kind, step, attempt)
            .trim_end()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_with_the_documented_field_names() {
        let mut e = Envelope::new("StepCompleted", serde_json::json!({ "k": 1 }));
        e.saga_id = Some(Uuid::now_v7());
        e.definition = Some("OrderSaga".into());
        e.step = Some("reserve_inventory".into());
        e.attempt = Some(2);
        e.seq = Some(7);
        let text = serde_json::to_string(&e).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        for field in [
            "event_id",
            "type",
            "saga_id",
            "definition",
            "step",
            "attempt",
            "seq",
            "occurred_at",
            "payload",
        ] {
            assert!(v.get(field).is_some(), "{field} missing from {text}");
        }
        assert_eq!(serde_json::from_str::<Envelope>(&text).unwrap(), e);
    }
}
