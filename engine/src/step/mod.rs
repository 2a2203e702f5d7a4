//! Steps: the unit of work of a saga. A step has an action, an optional compensation that undoes
//! it, a kind (compensatable, pivot or retriable), a retry policy for each and a timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::resources::Resources;
use crate::retry::RetryPolicy;

pub(crate) use crate::failure::StepError;

mod builder;
mod child;
mod remote;
mod wait;

pub use builder::{Step, DEFAULT_STEP_TIMEOUT};
pub(crate) use child::ChildSpec;
pub(crate) use remote::ApplyFn;
pub(crate) use wait::{Delay, SignalWait};

/// What saga data must be: serialisable to JSON (it is stored after every step) and sendable.
pub trait SagaData: Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> SagaData for T {}

/// Where a step stands in the saga, after Garcia-Molina and Salem (1987).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Undone by its compensation when a later step fails. Comes before the pivot.
    Compensatable,
    /// The point of no return: once it completes the saga can only go forward.
    Pivot,
    /// After the pivot: never compensated, retried until it succeeds.
    Retriable,
}

impl StepKind {
    /// The lower-case name used in errors and in the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Compensatable => "compensatable",
            StepKind::Pivot => "pivot",
            StepKind::Retriable => "retriable",
        }
    }
}

/// Whether a unit of work is a step's action or its compensation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The step's action.
    Action,
    /// The step's compensation.
    Compensation,
}

impl Phase {
    /// `action` or `compensate`, as used in idempotency keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Action => "action",
            Phase::Compensation => "compensate",
        }
    }
}

/// What a step's action or compensation receives.
#[derive(Debug, Clone)]
pub struct StepContext<D> {
    /// The saga instance.
    pub saga_id: Uuid,
    /// The step's name.
    pub step: String,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// The fencing token of the lease this attempt runs under: it grows each time another
    /// mediator takes the saga over, so a participant that records it can tell runs apart.
    pub fencing_token: i64,
    /// `{saga_id}:{step}:{action|compensate}`: the same on every attempt and after a crash, so a
    /// participant can apply its effect at most once.
    pub idempotency_key: String,
    /// The saga data as the previous step left it.
    pub data: D,
    /// What the program provided to its registry.
    pub(crate) resources: Resources,
}

impl<D> StepContext<D> {
    /// The shared resource of type `T` that the program provided at start-up
    /// ([`crate::Registry::provide`]). A step that asks for a type never provided fails for good,
    /// with an error naming the type: a deployment mistake that retrying cannot mend.
    pub fn resource<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, StepError> {
        self.resources.get::<T>().ok_or_else(|| {
            StepError::terminal(format!(
                "no resource of type `{}` was provided to the registry (Registry::provide); provided: {:?}",
                std::any::type_name::<T>(),
                self.resources.names()
            ))
        })
    }

    /// The idempotency key of this step's action; a compensation uses it to find the effect it
    /// must undo.
    pub fn action_key(&self) -> String {
        idempotency_key(self.saga_id, &self.step, Phase::Action)
    }
}

/// The idempotency key of a step's action or compensation.
pub fn idempotency_key(saga_id: Uuid, step: &str, phase: Phase) -> String {
    format!("{saga_id}:{step}:{}", phase.as_str())
}

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// An action or compensation with its data type erased to JSON, as the mediator calls it.
pub(crate) type StepFn =
    Arc<dyn Fn(StepContext<Value>) -> BoxFuture<Result<Value, StepError>> + Send + Sync>;

/// Wraps a typed step function so the mediator can call it with the stored JSON data. Data that
/// does not deserialize is poison: the step fails without being called and is not retried.
fn erase<D, F, Fut>(f: F) -> StepFn
where
    D: SagaData,
    F: Fn(StepContext<D>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<D, StepError>> + Send + 'static,
{
    Arc::new(
        move |ctx: StepContext<Value>| -> BoxFuture<Result<Value, StepError>> {
            let typed = match serde_json::from_value::<D>(ctx.data) {
                Ok(data) => StepContext {
                    saga_id: ctx.saga_id,
                    step: ctx.step,
                    attempt: ctx.attempt,
                    fencing_token: ctx.fencing_token,
                    idempotency_key: ctx.idempotency_key,
                    data,
                    resources: ctx.resources,
                },
                Err(e) => {
                    let err = StepError::poison(format!("saga data cannot be read: {e}"));
                    return Box::pin(std::future::ready(Err(err)));
                }
            };
            let fut = f(typed);
            Box::pin(async move {
                let data = fut.await?;
                serde_json::to_value(data)
                    .map_err(|e| StepError::poison(format!("saga data cannot be written: {e}")))
            })
        },
    )
}

/// How an action or compensation is carried out.
#[derive(Clone)]
pub(crate) enum Work {
    /// An async function run in-process by the mediator.
    Local(StepFn),
    /// A command event of this type sent to a participant, whose reply the saga awaits.
    Command(String),
    /// A durable timer.
    Timer(Delay),
    /// A wait for a signal.
    Signal(SignalWait),
    /// A child saga (started by the action, compensated by the compensation).
    Child(ChildSpec),
}

/// A step with its data type erased: what a [`crate::Definition`] holds.
#[derive(Clone)]
pub struct StepSpec {
    pub(crate) name: String,
    pub(crate) kind: StepKind,
    pub(crate) action: Work,
    pub(crate) compensation: Option<Work>,
    /// What the compensation is called in the history, `saga show` and events, if it has a
    /// name of its own (`cancel_flight` for `book_flight`).
    pub(crate) compensation_name: Option<String>,
    /// For a participant step: folds the reply's output into the saga data.
    pub(crate) apply: Option<ApplyFn>,
    pub(crate) retry: RetryPolicy,
    pub(crate) compensation_retry: RetryPolicy,
    pub(crate) timeout: Duration,
    /// A builder call that does not fit the step (reported when the definition is built).
    pub(crate) misuse: Option<String>,
    /// The parallel group the step is a branch of, if any.
    pub(crate) group: Option<String>,
}

impl StepSpec {
    /// The step's name (a durable identifier: it is stored with every saga).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Compensatable, pivot or retriable.
    pub fn kind(&self) -> StepKind {
        self.kind
    }

    /// Whether the step has a compensation.
    pub fn has_compensation(&self) -> bool {
        self.compensation.is_some()
    }

    /// The compensation's own name, if it was given one.
    pub fn compensation_name(&self) -> Option<&str> {
        self.compensation_name.as_deref()
    }

    /// The retry policy of the action.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The retry policy of the compensation.
    pub fn compensation_retry_policy(&self) -> &RetryPolicy {
        &self.compensation_retry
    }

    /// How long one attempt may run.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The command type sent to a participant for `phase`, if that phase is a participant's.
    pub fn command(&self, phase: Phase) -> Option<&str> {
        let work = match phase {
            Phase::Action => Some(&self.action),
            Phase::Compensation => self.compensation.as_ref(),
        };
        match work {
            Some(Work::Command(kind)) => Some(kind),
            _ => None,
        }
    }

    /// The parallel group the step is a branch of, if any.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// Whether the step's action runs in the mediator (not a participant's command, a timer or
    /// a signal).
    pub fn is_local(&self) -> bool {
        matches!(self.action, Work::Local(_))
    }

    /// The saga a child step starts.
    pub fn child_saga(&self) -> Option<&str> {
        match &self.action {
            Work::Child(child) => Some(&child.saga),
            _ => None,
        }
    }

    /// Whether the step's action is a durable timer.
    pub fn is_timer(&self) -> bool {
        matches!(self.action, Work::Timer(_))
    }

    /// The signal the step waits for, and the data field that gives its correlation key.
    pub fn signal(&self) -> Option<(&str, Option<&str>)> {
        match &self.action {
            Work::Signal(wait) => Some((&wait.name, wait.key_field.as_deref())),
            _ => None,
        }
    }

    /// For a timer of fixed length, that length.
    pub fn sleeps_for(&self) -> Option<Duration> {
        match &self.action {
            Work::Timer(Delay::For(d)) => Some(*d),
            _ => None,
        }
    }

    pub(crate) fn policy(&self, phase: Phase) -> &RetryPolicy {
        match phase {
            Phase::Action => &self.retry,
            Phase::Compensation => &self.compensation_retry,
        }
    }
}

impl std::fmt::Debug for StepSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("compensation", &self.compensation.is_some())
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .finish()
    }
}
