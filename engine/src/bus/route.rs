//! Where a message travels. Every envelope has a [`Route`], `<definition>.<type>` (`_` for an
//! event of no saga, such as an initiating `OrderPlaced`), and a [`Filter`] selects routes. A
//! broker adapter puts the route after its prefix: NATS subject `saga.OrderSaga.SagaCompleted`,
//! AMQP routing key `OrderSaga.SagaCompleted`; a filter becomes the patterns
//! `OrderSaga.SagaCompleted`, `*.ReserveInventory` or `*.*`, the same in both.

use std::collections::BTreeSet;

use super::Envelope;

/// The route of a message: its saga definition (if any) and its type, as broker-safe tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// The definition token (`_` when the event belongs to no saga).
    pub definition: String,
    /// The type token.
    pub kind: String,
}

impl Route {
    /// The token for "no definition".
    pub const NONE: &'static str = "_";

    /// The route of `definition` and `kind`, made broker-safe (see `token`).
    pub fn new(definition: Option<&str>, kind: &str) -> Self {
        Self {
            definition: definition
                .map(token)
                .unwrap_or_else(|| Self::NONE.to_string()),
            kind: token(kind),
        }
    }

    /// The route of an envelope.
    pub fn of(event: &Envelope) -> Self {
        Self::new(event.definition.as_deref(), &event.kind)
    }

    /// `<definition>.<type>`: what follows the prefix in a subject or routing key.
    pub fn key(&self) -> String {
        format!("{}.{}", self.definition, self.kind)
    }

    /// Reads a key back (`None` unless it is two tokens).
    pub fn parse(key: &str) -> Option<Self> {
        let (definition, kind) = key.split_once('.')?;
        (!definition.is_empty() && !kind.is_empty() && !kind.contains('.')).then(|| Self {
            definition: definition.to_string(),
            kind: kind.to_string(),
        })
    }
}

/// A name as a subject or routing-key token: ASCII letters, digits, `_` and `-` are kept, every
/// other character becomes `_` (and an empty name is `_`). Consumers still check the envelope's
/// own fields, so two names that share a token are never confused.
pub fn token(name: &str) -> String {
    if name.is_empty() {
        return Route::NONE.to_string();
    }
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Which events a subscriber receives: all of the given types (all types when empty) of the
/// given definitions (all when empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    types: BTreeSet<String>,
    definitions: BTreeSet<String>,
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
            definitions: BTreeSet::new(),
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

    /// The route patterns this filter selects, `*` standing for any token, in a stable order:
    /// what a broker subscribes or binds to.
    pub fn patterns(&self) -> Vec<String> {
        let any = || std::iter::once("*".to_string());
        let tokens = |set: &BTreeSet<String>| -> Vec<String> {
            if set.is_empty() {
                any().collect()
            } else {
                let mut t: Vec<String> = set.iter().map(|s| token(s)).collect();
                t.dedup();
                t
            }
        };
        let (definitions, types) = (tokens(&self.definitions), tokens(&self.types));
        let mut patterns = Vec::with_capacity(definitions.len() * types.len());
        for d in &definitions {
            for t in &types {
                patterns.push(format!("{d}.{t}"));
            }
        }
        patterns.sort();
        patterns.dedup();
        patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_patterns_are_broker_safe_tokens() {
        let mut e = Envelope::new("SagaCompleted", serde_json::Value::Null);
        assert_eq!(Route::of(&e).key(), "_.SagaCompleted");
        e.definition = Some("Order Saga.v2".into());
        assert_eq!(Route::of(&e).key(), "Order_Saga_v2.SagaCompleted");
        assert_eq!(Route::parse("A.B"), Some(Route::new(Some("A"), "B")));
        assert_eq!(Route::parse("A.B.C"), None);
        assert_eq!(Filter::all().patterns(), vec!["*.*"]);
        let f = Filter::types(["ReserveInventory", "ReleaseInventory"]);
        assert_eq!(
            f.patterns(),
            vec!["*.ReleaseInventory", "*.ReserveInventory"]
        );
        let f = Filter::types(["SagaCompleted"]).definition("OrderSaga");
        assert_eq!(f.patterns(), vec!["OrderSaga.SagaCompleted"]);
    }
}
