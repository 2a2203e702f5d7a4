//! Child saga steps: the step starts another registered saga and completes when that child
//! completes, with the child's data folded into the parent's. Compensating the step compensates
//! the child saga.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{SagaData, Step, StepContext, StepError, Work};

/// Makes the child's data from the parent's (type-erased).
pub(crate) type InputFn = Arc<dyn Fn(&Value) -> Result<Value, StepError> + Send + Sync>;

/// What a child step starts.
#[derive(Clone)]
pub(crate) struct ChildSpec {
    /// The child saga's definition (its newest version when the step starts).
    pub(crate) saga: String,
    /// The child's data, from the parent's.
    pub(crate) input: InputFn,
}

impl<D: SagaData> Step<D> {
    /// A step that starts the registered saga `saga` as a child, with the data `input` makes
    /// from the parent's, and completes when the child completes, `apply` folding the child's
    /// final data (of type `C`) into the parent's. A child that ends compensated fails the step
    /// (so the parent compensates); one that fails waits for an operator, and so does the step.
    /// Compensating the step compensates the child saga.
    ///
    /// ```
    /// # use saga_engine::Step;
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Trip { traveller: String, points: u64 }
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Loyalty { member: String, points: u64 }
    /// let enroll = Step::child(
    ///     "earn_points",
    ///     "loyalty",
    ///     |trip: &Trip| Loyalty { member: trip.traveller.clone(), points: 0 },
    ///     |mut trip: Trip, loyalty: Loyalty| { trip.points = loyalty.points; trip },
    /// );
    /// ```
    pub fn child<C, I, F>(
        name: impl Into<String>,
        saga: impl Into<String>,
        input: I,
        apply: F,
    ) -> Self
    where
        C: Serialize + DeserializeOwned,
        I: Fn(&D) -> C + Send + Sync + 'static,
        F: Fn(D, C) -> D + Send + Sync + 'static,
    {
        let input: InputFn = Arc::new(move |data: &Value| {
            let data: D = serde_json::from_value(data.clone())
                .map_err(|e| StepError::poison(format!("saga data cannot be read: {e}")))?;
            serde_json::to_value(input(&data))
                .map_err(|e| StepError::poison(format!("the child's data cannot be written: {e}")))
        });
        let spec = ChildSpec {
            saga: saga.into(),
            input,
        };
        let noop = |ctx: StepContext<D>| std::future::ready(Ok(ctx.data));
        let mut step = Step::new(name, noop);
        step.spec.action = Work::Child(spec.clone());
        step.spec.compensation = Some(Work::Child(spec));
        step.spec.apply = Some(super::remote::fold(apply, "the child saga's data"));
        step
    }
}
