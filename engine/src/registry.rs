//! The registry: which saga definitions (by name and version) this process can run, which
//! events start them, and the shared resources their steps use.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::definition::Definition;
use crate::error::DefinitionError;
use crate::resources::Resources;
use crate::signal_route::SignalRoute;
use crate::trigger::Trigger;

/// The saga definitions a mediator can start and resume, by name and version, and the
/// resources their steps reach.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    sagas: HashMap<String, BTreeMap<u32, Arc<Definition>>>,
    triggers: Vec<Trigger>,
    signal_routes: Vec<SignalRoute>,
    resources: Resources,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a definition; a name and version can be registered once.
    pub fn register(&mut self, definition: Definition) -> Result<&mut Self, DefinitionError> {
        let versions = self.sagas.entry(definition.name().to_string()).or_default();
        if versions.contains_key(&definition.version()) {
            return Err(DefinitionError::AlreadyRegistered {
                name: definition.name().to_string(),
                version: definition.version(),
            });
        }
        versions.insert(definition.version(), Arc::new(definition));
        Ok(self)
    }

    /// Adds an initiating event: events of the trigger's type start its saga. One trigger per
    /// event type: the saga's id is the event's id, so one event can start one saga.
    pub fn trigger(&mut self, trigger: Trigger) -> Result<&mut Self, DefinitionError> {
        self.check_unheard(&trigger.event_type)?;
        self.triggers.push(trigger);
        Ok(self)
    }

    /// Adds a signal route: events of the route's type, heard on the bus, are its signal. One
    /// meaning per event type: it starts a saga or is a signal, not both.
    pub fn signal_route(&mut self, route: SignalRoute) -> Result<&mut Self, DefinitionError> {
        self.check_unheard(&route.event_type)?;
        self.signal_routes.push(route);
        Ok(self)
    }

    /// Refuses an event type that a trigger or a signal route already takes.
    fn check_unheard(&self, event_type: &str) -> Result<(), DefinitionError> {
        let taken = self
            .triggers
            .iter()
            .find(|t| t.event_type == event_type)
            .map(|t| format!("starts saga `{}`", t.saga))
            .or_else(|| {
                self.signal_routes
                    .iter()
                    .find(|r| r.event_type == event_type)
                    .map(|r| format!("is the signal `{}`", r.signal))
            });
        match taken {
            Some(meaning) => Err(DefinitionError::EventTaken {
                event_type: event_type.to_string(),
                meaning,
            }),
            None => Ok(()),
        }
    }

    /// The registered signal routes.
    pub fn signal_routes(&self) -> &[SignalRoute] {
        &self.signal_routes
    }

    /// Provides a shared resource (a pool, a client, a service handle) to every step, which
    /// reaches it by type with [`crate::StepContext::resource`]. One per type: a second value of
    /// the same type replaces the first. Wrap a type you do not own to tell two apart.
    ///
    /// ```
    /// # use saga_engine::{Registry, StepContext, StepError};
    /// #[derive(Clone)]
    /// struct Hotels { base_url: String }
    ///
    /// async fn book(mut ctx: StepContext<Vec<String>>) -> Result<Vec<String>, StepError> {
    ///     let hotels = ctx.resource::<Hotels>()?;
    ///     ctx.data.push(format!("{}/bookings/{}", hotels.base_url, ctx.idempotency_key));
    ///     Ok(ctx.data)
    /// }
    ///
    /// let mut registry = Registry::new();
    /// registry.provide(Hotels { base_url: "https://hotels.example".into() });
    /// ```
    pub fn provide<T: Send + Sync + 'static>(&mut self, resource: T) -> &mut Self {
        self.resources.insert(resource);
        self
    }

    /// The resources provided so far.
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// The registered triggers.
    pub fn triggers(&self) -> &[Trigger] {
        &self.triggers
    }

    /// The newest version of the named saga: what new instances start with.
    pub fn latest(&self, name: &str) -> Option<&Arc<Definition>> {
        self.sagas.get(name)?.values().next_back()
    }

    /// An exact version: what a stored instance resumes with.
    pub fn get(&self, name: &str, version: u32) -> Option<&Arc<Definition>> {
        self.sagas.get(name)?.get(&version)
    }

    /// Every registered definition, sorted by name then version.
    pub fn definitions(&self) -> Vec<&Arc<Definition>> {
        let mut all: Vec<_> = self.sagas.values().flat_map(|v| v.values()).collect();
        all.sort_by(|a, b| (a.name(), a.version()).cmp(&(b.name(), b.version())));
        all
    }

    /// The names of the sagas that a registered definition starts as a child.
    pub fn child_sagas(&self) -> std::collections::HashSet<String> {
        self.definitions()
            .iter()
            .flat_map(|d| d.steps().iter().filter_map(|s| s.child_saga()))
            .map(String::from)
            .collect()
    }

    /// `(name, version)` of every registered definition.
    pub fn keys(&self) -> Vec<(String, u32)> {
        self.definitions()
            .iter()
            .map(|d| (d.name().to_string(), d.version()))
            .collect()
    }
}
