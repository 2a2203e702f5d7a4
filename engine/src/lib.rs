//! A durable saga orchestration engine.
//!
//! A central mediator runs saga definitions declared in Rust step by step, persists the saga's
//! state after every step (one database transaction per transition, instance row and history
//! together), and when a step fails for good runs the compensations of the completed steps in
//! reverse order. It runs embedded on a SQLite file by default; with the `nats` or `rabbitmq`
//! feature its events, participants' commands and replies cross a broker between processes.
//!
//! The public API, each item at one path:
//!
//! - At the root, what a saga author uses: [`SagaDefinition`] (with parallel groups),
//!   [`Step`] (local, participant, timer, signal and child saga steps), [`StepContext`],
//!   [`StepError`] with [`StepResultExt`] (`?` and `.terminal()`), [`RetryPolicy`],
//!   [`Registry`] (definitions, [`Trigger`]s, [`SignalRoute`]s, shared [`Resources`]),
//!   [`Mediator`] and [`MediatorBuilder`], [`enqueue`], the states ([`SagaState`],
//!   [`SagaStatus`], [`StepState`], [`StepStatus`], [`Awaiting`], [`Wait`], [`Finished`]), the
//!   history ([`HistoryEvent`], [`EventKind`]) and the errors ([`EngineError`],
//!   [`DefinitionError`]).
//! - [`store`]: where state is written ([`store::open`], [`store::SagaStore`]; SQLite with the
//!   default `sqlite` feature, PostgreSQL with `postgres`).
//! - [`bus`]: where events travel (in process, or NATS JetStream and RabbitMQ with the `nats`
//!   and `rabbitmq` features), consumer groups and dead letters.
//! - [`participant`]: the commands and replies of participant steps, and [`participant::serve`].
//! - [`operator`]: abort and retry from outside the running mediator.
//! - [`fault`]: failure injection; crash points with the `fault-injection` feature.
//! - [`figures`]: the metrics the engine reports through the `metrics` facade.
//! - Traces: the engine's `tracing` spans (a root per saga, a span per attempt); with the
//!   `otel` feature and a `tracing-opentelemetry` layer installed, one OpenTelemetry trace per
//!   saga, its context stored with the saga and carried in every envelope.
//!
//! The `saga` command line is another crate, `saga-cli`.
//!
//! ```no_run
//! use saga_engine::{store, Mediator, Registry, SagaDefinition, Step, StepContext};
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Greeting { sent: bool }
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut registry = Registry::new();
//! registry.register(
//!     SagaDefinition::<Greeting>::new("greet", 1)
//!         .step(Step::new("send", |mut ctx: StepContext<Greeting>| async move {
//!             ctx.data.sent = true;
//!             Ok(ctx.data)
//!         }))
//!         .build()?,
//! )?;
//! let store = store::open("sqlite://sagas.db", store::OpenMode::CreateIfMissing).await?;
//! let mediator = Mediator::builder(store, registry).start().await?;
//! let id = mediator.start("greet", &Greeting { sent: false }).await?;
//! let done = mediator.wait(id).await?;
//! println!("{}: {}", done.id, done.status);
//! # Ok(()) }
//! ```

pub mod bus;
mod commit;
mod definition;
mod error;
mod event;
mod failure;
pub mod fault;
pub mod figures;
mod mediator;
pub mod operator;
pub mod participant;
mod registry;
mod resources;
mod retry;
mod signal_route;
mod state;
mod step;
pub mod store;
mod trace;
mod transition;
mod trigger;

pub use definition::{Definition, SagaDefinition};
pub use error::{DefinitionError, EngineError};
pub use event::{EventKind, HistoryEvent};
pub use failure::{FailureKind, StepError, StepResultExt};
pub use mediator::{enqueue, Mediator, MediatorBuilder, MediatorConfig, DEFAULT_MAX_PAYLOAD_BYTES};
pub use registry::Registry;
pub use resources::Resources;
pub use retry::RetryPolicy;
pub use signal_route::SignalRoute;
pub use state::{
    Awaiting, Finished, Millis, SagaState, SagaStatus, StepState, StepStatus, UnknownStatus, Wait,
};
pub use step::{
    idempotency_key, Phase, SagaData, Step, StepContext, StepKind, StepSpec, DEFAULT_STEP_TIMEOUT,
};
pub use trigger::Trigger;
