//! Saga definitions: a name, a version and an ordered list of steps over a typed data payload,
//! validated when built so that a broken definition never reaches the mediator.

mod rules;

use std::marker::PhantomData;

use serde_json::Value;

use crate::error::DefinitionError;
use crate::state::{SagaState, SagaStatus, StepStatus};
use crate::step::{SagaData, Step, StepKind, StepSpec};

/// Typed builder of a saga definition over data of type `D`.
///
/// ```
/// use saga_engine::{SagaDefinition, Step, StepContext};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Trip { booked: bool }
/// let definition = SagaDefinition::<Trip>::new("trip", 1)
///     .step(Step::new("book", |mut ctx: StepContext<Trip>| async move {
///         ctx.data.booked = true;
///         Ok(ctx.data)
///     }))
///     .build()
///     .expect("a valid definition");
/// assert_eq!(definition.name(), "trip");
/// ```
pub struct SagaDefinition<D> {
    name: String,
    version: u32,
    steps: Vec<StepSpec>,
    _data: PhantomData<fn(D) -> D>,
}

impl<D: SagaData> SagaDefinition<D> {
    /// Starts a definition. The name and version are stored with every instance, so an instance
    /// is only ever resumed by the same definition.
    pub fn new(name: impl Into<String>, version: u32) -> Self {
        Self {
            name: name.into(),
            version,
            steps: Vec::new(),
            _data: PhantomData,
        }
    }

    /// Appends a step.
    pub fn step(mut self, step: Step<D>) -> Self {
        self.steps.push(step.spec);
        self
    }

    /// Appends a parallel group named `name`: its steps (the branches) start at once, and the
    /// group completes when every branch has completed. Each branch gets the saga data as it
    /// is when its attempt starts; the top-level fields it changes are merged into the saga data
    /// when it completes (so branches should write fields of their own). If a branch fails for
    /// good, the branches still running are awaited (a local step cannot be cut off safely), none
    /// is retried any more, and every branch that completed, or whose outcome is unknown, is
    /// compensated, last first, then the steps before the group. Branches are local steps
    /// (no participant, timer or signal steps), compensatable or all retriable, never a pivot.
    ///
    /// ```
    /// use saga_engine::{SagaDefinition, Step, StepContext};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Trip { flight: bool, hotel: bool }
    /// let trip = SagaDefinition::<Trip>::new("trip", 1)
    ///     .parallel("book", [
    ///         Step::new("book_flight", |mut ctx: StepContext<Trip>| async move {
    ///             ctx.data.flight = true;
    ///             Ok(ctx.data)
    ///         }),
    ///         Step::new("book_hotel", |mut ctx: StepContext<Trip>| async move {
    ///             ctx.data.hotel = true;
    ///             Ok(ctx.data)
    ///         }),
    ///     ])
    ///     .build()
    ///     .expect("a valid definition");
    /// assert_eq!(trip.steps()[1].group(), Some("book"));
    /// ```
    pub fn parallel(
        mut self,
        name: impl Into<String>,
        branches: impl IntoIterator<Item = Step<D>>,
    ) -> Self {
        let name = name.into();
        for step in branches {
            let mut spec = step.spec;
            spec.group = Some(name.clone());
            self.steps.push(spec);
        }
        self
    }

    /// Validates the definition and erases its data type so it can be registered.
    pub fn build(self) -> Result<Definition, DefinitionError> {
        let definition = Definition {
            name: self.name,
            version: self.version,
            steps: self.steps,
            typed: |value| {
                let data = serde_json::from_value::<D>(value.clone()).map_err(|e| e.to_string())?;
                serde_json::to_value(data).map_err(|e| e.to_string())
            },
        };
        definition.validate()?;
        Ok(definition)
    }
}

/// A validated saga definition with its data type erased to JSON: what the registry holds.
#[derive(Clone)]
pub struct Definition {
    name: String,
    version: u32,
    steps: Vec<StepSpec>,
    /// `data` read as the saga's data type and written back.
    typed: fn(&Value) -> Result<Value, String>,
}

impl std::fmt::Debug for Definition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Definition")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("steps", &self.steps)
            .finish()
    }
}

impl Definition {
    /// The saga's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The definition's version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The steps in order.
    pub fn steps(&self) -> &[StepSpec] {
        &self.steps
    }

    /// Checks that `data` deserializes into the saga's data type.
    pub fn check_data(&self, data: &Value) -> Result<(), String> {
        (self.typed)(data).map(|_| ())
    }

    /// `data` as a step of this saga sees it and would write it back unchanged: read as the
    /// saga's data type and written again (absent options come back as `null`, absent defaults
    /// as their values).
    pub(crate) fn as_typed(&self, data: &Value) -> Result<Value, String> {
        (self.typed)(data)
    }

    /// The steps of `saga` (an instance of this definition) still to compensate, last step
    /// first: [`SagaState::compensations_left`], and nothing once a step past the compensatable
    /// ones has started, since a saga past its pivot only goes forward.
    pub fn compensations_left<'a>(&self, saga: &'a SagaState) -> Vec<&'a str> {
        let past_pivot = saga.status == SagaStatus::Running
            && saga.steps.iter().zip(&self.steps).any(|(state, spec)| {
                state.status != StepStatus::Pending && spec.kind() != StepKind::Compensatable
            });
        if past_pivot {
            return Vec::new();
        }
        saga.compensations_left()
    }

    pub(crate) fn step(&self, index: usize) -> Option<&StepSpec> {
        self.steps.get(index)
    }

    /// The indices of the parallel group step `index` is a branch of, or `None` for a step on
    /// its own.
    pub fn group_of(&self, index: usize) -> Option<std::ops::Range<usize>> {
        let name = self.steps.get(index)?.group.as_deref()?;
        let same = |s: &StepSpec| s.group.as_deref() == Some(name);
        let start = (0..=index)
            .rev()
            .take_while(|&i| same(&self.steps[i]))
            .last()?;
        let end = (index..self.steps.len())
            .take_while(|&i| same(&self.steps[i]))
            .last()?
            + 1;
        Some(start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::StepContext;

    type Data = serde_json::Map<String, Value>;

    fn noop(name: &str) -> Step<Data> {
        Step::new(name, |ctx: StepContext<Data>| async move { Ok(ctx.data) })
    }

    #[test]
    fn rejects_duplicate_names() {
        let err = SagaDefinition::new("s", 1)
            .step(noop("a"))
            .step(noop("a"))
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            DefinitionError::DuplicateStep {
                saga: "s".into(),
                step: "a".into()
            }
        );
        assert!(err.to_string().contains("two steps named `a`"));
    }

    #[test]
    fn rejects_empty_saga() {
        let err = SagaDefinition::<Data>::new("s", 1).build().unwrap_err();
        assert_eq!(err, DefinitionError::NoSteps("s".into()));
    }

    #[test]
    fn rejects_compensatable_after_pivot() {
        let err = SagaDefinition::new("s", 1)
            .step(noop("a"))
            .step(noop("p").pivot())
            .step(noop("b"))
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            DefinitionError::CompensatableAfterPivot {
                saga: "s".into(),
                step: "b".into(),
                after: "p".into()
            }
        );
    }

    #[test]
    fn rejects_second_pivot_and_pivot_after_retriable() {
        let two = SagaDefinition::new("s", 1)
            .step(noop("p").pivot())
            .step(noop("q").pivot())
            .build()
            .unwrap_err();
        assert!(matches!(two, DefinitionError::MultiplePivots { .. }));
        let late = SagaDefinition::new("s", 1)
            .step(noop("r").retriable())
            .step(noop("p").pivot())
            .build()
            .unwrap_err();
        assert!(matches!(late, DefinitionError::PivotAfterRetriable { .. }));
    }

    #[test]
    fn rejects_compensation_on_pivot() {
        let err = SagaDefinition::new("s", 1)
            .step(
                noop("p")
                    .pivot()
                    .compensate(|ctx: StepContext<Data>| async move { Ok(ctx.data) }),
            )
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            DefinitionError::CompensationNeverRuns { kind: "pivot", .. }
        ));
    }

    #[test]
    fn accepts_the_classic_shape() {
        let def = SagaDefinition::new("s", 2)
            .step(noop("a"))
            .step(noop("p").pivot())
            .step(noop("r").retriable())
            .build()
            .unwrap();
        assert_eq!(def.version(), 2);
        assert_eq!(def.steps().len(), 3);
    }
}
