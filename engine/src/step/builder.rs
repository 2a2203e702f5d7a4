//! The typed builder of one step: its action, compensation, kind, retry policies and timeout.
//! Participant, timer, signal and child saga steps have builders of their own beside it.

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use super::{erase, SagaData, StepContext, StepError, StepKind, StepSpec, Work};
use crate::retry::RetryPolicy;

/// Builder of one step of a saga over data of type `D`.
///
/// ```
/// use saga_engine::{Step, StepContext, StepError, RetryPolicy};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Order { reserved: bool }
/// let step = Step::new("reserve", |mut ctx: StepContext<Order>| async move {
///     ctx.data.reserved = true;
///     Ok::<_, StepError>(ctx.data)
/// })
/// .compensate(|mut ctx: StepContext<Order>| async move {
///     ctx.data.reserved = false;
///     Ok(ctx.data)
/// })
/// .retry(RetryPolicy::attempts(5));
/// ```
pub struct Step<D> {
    pub(crate) spec: StepSpec,
    _data: PhantomData<fn(D) -> D>,
}

/// Default time one attempt of a step may run.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(60);

impl<D: SagaData> Step<D> {
    /// A compensatable step with the default retry policy and timeout and no compensation.
    pub fn new<F, Fut>(name: impl Into<String>, action: F) -> Self
    where
        F: Fn(StepContext<D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<D, StepError>> + Send + 'static,
    {
        Self {
            spec: StepSpec {
                name: name.into(),
                kind: StepKind::Compensatable,
                action: Work::Local(erase(action)),
                compensation: None,
                compensation_name: None,
                apply: None,
                retry: RetryPolicy::default(),
                compensation_retry: RetryPolicy::attempts(5),
                timeout: DEFAULT_STEP_TIMEOUT,
                misuse: None,
                group: None,
            },
            _data: PhantomData,
        }
    }

    /// Sets the compensation that undoes this step's effect. It must be idempotent: it may run
    /// more than once, and for an effect that never happened.
    pub fn compensate<F, Fut>(mut self, compensation: F) -> Self
    where
        F: Fn(StepContext<D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<D, StepError>> + Send + 'static,
    {
        self.spec.compensation = Some(Work::Local(erase(compensation)));
        self
    }

    /// Sets the compensation and gives it a name of its own (`cancel_flight` for `book_flight`),
    /// which the history, `saga show` and the compensation's events carry beside the step's.
    pub fn compensate_as<F, Fut>(mut self, name: impl Into<String>, compensation: F) -> Self
    where
        F: Fn(StepContext<D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<D, StepError>> + Send + 'static,
    {
        self.spec.compensation_name = Some(name.into());
        self.compensate(compensation)
    }

    /// Marks the step as the pivot: the point of no return.
    pub fn pivot(mut self) -> Self {
        self.spec.kind = StepKind::Pivot;
        self
    }

    /// Marks the step as retriable: after the pivot, never compensated, retried until it succeeds.
    pub fn retriable(mut self) -> Self {
        self.spec.kind = StepKind::Retriable;
        self
    }

    /// Sets the retry policy of the action.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.spec.retry = policy;
        self
    }

    /// Sets the retry policy of the compensation (default: 5 attempts).
    pub fn compensation_retry(mut self, policy: RetryPolicy) -> Self {
        self.spec.compensation_retry = policy;
        self
    }

    /// Sets how long one attempt (of the action or of the compensation) may run.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.spec.timeout = timeout;
        self
    }
}
