//! Participant steps: the step's work is a command event sent to a participant service, and
//! the saga waits (durably, with no task per saga) for the reply. The wire protocol (commands,
//! replies, serving them) is in [`crate::participant`].

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{SagaData, Step, StepContext, StepError, Work};

/// Folds what a step received (a reply's output, a signal's data, a child saga's data) into the
/// saga data (type-erased).
pub(crate) type ApplyFn = Arc<dyn Fn(Value, Value) -> Result<Value, StepError> + Send + Sync>;

/// Erases `apply`, which folds an `O` into the saga data: data that cannot be read is poison,
/// an `O` that does not fit (`what`, as the error names it) is an invalid output.
pub(crate) fn fold<D, O, F>(apply: F, what: &'static str) -> ApplyFn
where
    D: SagaData,
    O: DeserializeOwned,
    F: Fn(D, O) -> D + Send + Sync + 'static,
{
    Arc::new(move |data: Value, received: Value| {
        let data: D = serde_json::from_value(data)
            .map_err(|e| StepError::poison(format!("saga data cannot be read: {e}")))?;
        let received: O = serde_json::from_value(received)
            .map_err(|e| StepError::invalid_output(format!("{what} does not fit: {e}")))?;
        serde_json::to_value(apply(data, received))
            .map_err(|e| StepError::invalid_output(format!("saga data cannot be written: {e}")))
    })
}

impl<D: SagaData> Step<D> {
    /// A participant step: its action sends a `command` event and the saga waits for the reply,
    /// whose `output` (of type `O`) `apply` folds into the data. The step's timeout is the reply
    /// deadline; no reply by then counts as a failure with an unknown outcome.
    pub fn participant<O, F>(name: impl Into<String>, command: impl Into<String>, apply: F) -> Self
    where
        O: DeserializeOwned,
        F: Fn(D, O) -> D + Send + Sync + 'static,
    {
        let noop = |ctx: StepContext<D>| std::future::ready(Ok(ctx.data));
        let mut step = Step::new(name, noop);
        step.spec.action = Work::Command(command.into());
        step.spec.apply = Some(fold(apply, "the participant's reply output"));
        step
    }

    /// Compensates the step by sending a `command` event to a participant and waiting for its
    /// reply (the compensation's retry policy applies to failures and timeouts).
    pub fn compensate_with_command(mut self, command: impl Into<String>) -> Self {
        self.spec.compensation = Some(Work::Command(command.into()));
        self
    }
}
