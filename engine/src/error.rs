//! The engine's error types: one enum per concern, aggregated into [`EngineError`].

use uuid::Uuid;

use crate::store::StoreError;

/// Why a saga definition was rejected when it was built or registered.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum DefinitionError {
    /// The saga has an empty name.
    #[error("a saga definition needs a name")]
    EmptyName,
    /// Versions start at 1.
    #[error("saga `{0}`: version must be at least 1")]
    InvalidVersion(String),
    /// A saga needs something to do.
    #[error("saga `{0}` has no steps; a saga needs at least one step")]
    NoSteps(String),
    /// A step has an empty name.
    #[error("saga `{saga}`: step {index} has an empty name")]
    EmptyStepName {
        /// The saga.
        saga: String,
        /// Position of the step (0-based).
        index: usize,
    },
    /// Step names identify steps in the store, so they must be unique.
    #[error("saga `{saga}` has two steps named `{step}`; step names must be unique")]
    DuplicateStep {
        /// The saga.
        saga: String,
        /// The repeated name.
        step: String,
    },
    /// Compensatable steps must all come before the pivot.
    #[error("saga `{saga}`: compensatable step `{step}` comes after `{after}`, the point of no return; move it before the pivot or make it retriable")]
    CompensatableAfterPivot {
        /// The saga.
        saga: String,
        /// The misplaced compensatable step.
        step: String,
        /// The pivot or retriable step it follows.
        after: String,
    },
    /// At most one step can be the point of no return.
    #[error("saga `{saga}` has two pivots, `{first}` and `{second}`; a saga has at most one")]
    MultiplePivots {
        /// The saga.
        saga: String,
        /// The first pivot.
        first: String,
        /// The second pivot.
        second: String,
    },
    /// The pivot must precede the retriable steps.
    #[error("saga `{saga}`: pivot `{pivot}` comes after retriable step `{retriable}`")]
    PivotAfterRetriable {
        /// The saga.
        saga: String,
        /// The pivot.
        pivot: String,
        /// The retriable step before it.
        retriable: String,
    },
    /// Pivot and retriable steps are never compensated, so a compensation on them is a mistake.
    #[error("saga `{saga}`: step `{step}` is a {kind} step and is never compensated; remove its compensation or make it compensatable")]
    CompensationNeverRuns {
        /// The saga.
        saga: String,
        /// The step.
        step: String,
        /// Its kind.
        kind: &'static str,
    },
    /// A retry policy or timeout that cannot work.
    #[error("saga `{saga}`, step `{step}`: {problem}")]
    InvalidPolicy {
        /// The saga.
        saga: String,
        /// The step.
        step: String,
        /// What is wrong.
        problem: String,
    },
    /// A parallel group breaks a rule of groups.
    #[error("saga `{saga}`, parallel group `{group}`: {problem}")]
    InvalidGroup {
        /// The saga.
        saga: String,
        /// The group.
        group: String,
        /// What is wrong.
        problem: String,
    },
    /// An event type has one meaning: it starts one saga, or it is one signal.
    #[error(
        "event `{event_type}` already {meaning}; an event type starts one saga or is one signal"
    )]
    EventTaken {
        /// The event type.
        event_type: String,
        /// What it already means (`starts saga `order``, `is the signal `paid``).
        meaning: String,
    },
    /// The registry already holds this name and version.
    #[error("saga `{name}` version {version} is already registered")]
    AlreadyRegistered {
        /// The saga.
        name: String,
        /// The version.
        version: u32,
    },
}

/// Errors from the engine's public operations. Each names what was wrong; none leaves a
/// half-written saga behind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No saga with this name is registered.
    #[error("no saga named `{0}` is registered")]
    UnknownSaga(String),
    /// The saga exists in the store, but this process does not know its definition version.
    #[error("saga {id} uses `{definition}` version {version}, which is not registered here")]
    UnknownVersion {
        /// The saga instance.
        id: Uuid,
        /// Its definition.
        definition: String,
        /// Its version.
        version: u32,
    },
    /// The data does not deserialize into the saga's data type.
    #[error("data does not fit saga `{saga}`: {reason}")]
    InvalidData {
        /// The saga.
        saga: String,
        /// The deserializer's complaint.
        reason: String,
    },
    /// The serialized data is over the configured limit.
    #[error("data for saga `{saga}` is {size} bytes, over the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The saga.
        saga: String,
        /// Serialized size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// No saga instance has this id.
    #[error("no saga with id {0}")]
    NotFound(Uuid),
    /// A definition was rejected.
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    /// The store failed or refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The event bus failed (joining it at start, a subscription).
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
    /// The mediator is shutting down and takes no new work.
    #[error("the mediator is shutting down")]
    ShuttingDown,
    /// A signal was refused (nothing was written): no such saga, no step waits for it, or its
    /// data does not fit.
    #[error(transparent)]
    Signal(#[from] crate::operator::OperatorError),
}
