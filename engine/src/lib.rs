//! A durable saga orchestration engine.
//!
//! A central mediator runs saga definitions declared in Rust step by step, persists the saga's
//! state after every step (one database transaction per transition, instance row and history
//! together), and when a step fails for good runs the compensations of the completed steps in
//! reverse order. It runs embedded on a SQLite file by default; with the `nats` or `rabbitmq`
//! feature its events, participants' commands and replies cross a broker between processes.
//!
//! - [`definition`], [`step`], [`retry`]: what a saga is.
//! - [`mediator`]: what runs it ([`mediator::driver`] is where a step runs).
//! - [`store`]: where its state is written.
//! - [`event`]: what it emits; [`bus`]: where events travel (in process or a broker), consumer
//!   groups and dead letters; [`participant`]: participant steps and services.
//! - [`fault`]: how to make it fail on purpose.
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
mod definition;
mod error;
mod event;
mod failure;
pub mod fault;
mod mediator;
pub mod operator;
pub mod participant;
mod registry;
mod retry;
mod state;
mod step;
pub mod store;
mod transition;
mod trigger;

pub use definition::{Definition, SagaDefinition};
pub use error::{DefinitionError, EngineError};
pub use event::{EventKind, HistoryEvent};
pub use failure::{FailureKind, StepError};
pub use mediator::{enqueue, Mediator, MediatorBuilder, MediatorConfig, DEFAULT_MAX_PAYLOAD_BYTES};
pub use registry::Registry;
pub use retry::RetryPolicy;
pub use state::{Awaiting, Millis, SagaState, SagaStatus, StepState, StepStatus, UnknownStatus};
pub use step::{
    idempotency_key, Phase, SagaData, Step, StepContext, StepKind, StepSpec, DEFAULT_STEP_TIMEOUT,
};
pub use trigger::Trigger;
