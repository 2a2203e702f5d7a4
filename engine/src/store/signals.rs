//! Signals as the stores keep them: sent to a saga's id or to a correlation key, kept until a
//! signal step takes them (a signal that comes before the saga reaches its wait is not lost),
//! and unique by event id, so the same signal sent twice is kept once.

use serde_json::Value;
use uuid::Uuid;

use crate::state::Millis;

/// Whom a signal is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalTarget {
    /// One saga, by id.
    Saga(Uuid),
    /// Every saga whose signal step listens on this correlation key (the value of a field of
    /// its data, such as an `order_id`).
    Key(String),
}

impl SignalTarget {
    /// The target as stored: `saga:ID` or `key:VALUE`, so a key can never pass for an id.
    pub(crate) fn stored(&self) -> String {
        match self {
            SignalTarget::Saga(id) => format!("saga:{id}"),
            SignalTarget::Key(key) => format!("key:{key}"),
        }
    }
}

impl std::fmt::Display for SignalTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignalTarget::Saga(id) => write!(f, "saga {id}"),
            SignalTarget::Key(key) => write!(f, "key `{key}`"),
        }
    }
}

/// A signal to keep: [`crate::store::SagaStore::send_signal`].
#[derive(Debug, Clone, Copy)]
pub struct NewSignal<'a> {
    /// Whom it is for.
    pub target: &'a SignalTarget,
    /// The signal's name (what a signal step waits for).
    pub name: &'a str,
    /// Its unique id: a bus event's id, or a new one.
    pub event_id: Uuid,
    /// What it carries.
    pub data: &'a Value,
}

/// What sending a signal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalSent {
    /// `false` when a signal with the same event id was already kept for the same target and
    /// name: nothing changed.
    pub kept: bool,
    /// The sagas waiting on it, now due so that a mediator takes them up.
    pub woken: Vec<Uuid>,
}

/// A kept signal, as a signal step reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptSignal {
    /// Its unique id.
    pub event_id: Uuid,
    /// What it carries.
    pub data: Value,
    /// When the store received it (database time).
    pub received_at: Millis,
    /// Sent to a correlation key rather than to the saga's id.
    pub by_key: bool,
}

/// The `target` values a wait of saga `id` listens on, for [`SagaStore::kept_signals`] queries.
///
/// [`SagaStore::kept_signals`]: crate::store::SagaStore::kept_signals
pub(crate) fn targets(id: Uuid, key: Option<&str>) -> (String, Option<String>) {
    (
        SignalTarget::Saga(id).stored(),
        key.map(|k| SignalTarget::Key(k.to_string()).stored()),
    )
}
