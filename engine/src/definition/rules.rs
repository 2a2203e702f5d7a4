//! The rules a definition must keep, checked once when it is built: names, versions, step kinds
//! in order (compensatable, then one pivot, then retriable), policies, and parallel groups.

use std::collections::HashSet;
use std::time::Duration;

use super::Definition;
use crate::error::DefinitionError;
use crate::step::StepKind;

impl Definition {
    pub(super) fn validate(&self) -> Result<(), DefinitionError> {
        let saga = || self.name.clone();
        if self.name.trim().is_empty() {
            return Err(DefinitionError::EmptyName);
        }
        if self.version == 0 {
            return Err(DefinitionError::InvalidVersion(saga()));
        }
        if self.steps.is_empty() {
            return Err(DefinitionError::NoSteps(saga()));
        }
        let mut names = HashSet::new();
        let mut pivot: Option<&str> = None;
        let mut retriable: Option<&str> = None;
        for (index, step) in self.steps.iter().enumerate() {
            if step.name.trim().is_empty() {
                return Err(DefinitionError::EmptyStepName {
                    saga: saga(),
                    index,
                });
            }
            if !names.insert(step.name.as_str()) {
                return Err(DefinitionError::DuplicateStep {
                    saga: saga(),
                    step: step.name.clone(),
                });
            }
            let invalid = |problem: String| DefinitionError::InvalidPolicy {
                saga: saga(),
                step: step.name.clone(),
                problem,
            };
            for policy in [&step.retry, &step.compensation_retry] {
                if let Some(problem) = policy.problem() {
                    return Err(invalid(problem));
                }
            }
            if let Some(problem) = &step.misuse {
                return Err(invalid(problem.clone()));
            }
            if step.timeout == Duration::ZERO {
                return Err(invalid("timeout must be greater than zero".into()));
            }
            match step.kind {
                StepKind::Compensatable => {
                    if let Some(after) = pivot.or(retriable) {
                        return Err(DefinitionError::CompensatableAfterPivot {
                            saga: saga(),
                            step: step.name.clone(),
                            after: after.to_string(),
                        });
                    }
                }
                StepKind::Pivot => {
                    if let Some(first) = pivot {
                        return Err(DefinitionError::MultiplePivots {
                            saga: saga(),
                            first: first.to_string(),
                            second: step.name.clone(),
                        });
                    }
                    if let Some(before) = retriable {
                        return Err(DefinitionError::PivotAfterRetriable {
                            saga: saga(),
                            pivot: step.name.clone(),
                            retriable: before.to_string(),
                        });
                    }
                    pivot = Some(&step.name);
                }
                StepKind::Retriable => {
                    retriable.get_or_insert(&step.name);
                }
            }
            if step.kind != StepKind::Compensatable && step.compensation.is_some() {
                return Err(DefinitionError::CompensationNeverRuns {
                    saga: saga(),
                    step: step.name.clone(),
                    kind: step.kind.as_str(),
                });
            }
        }
        self.validate_groups()
    }

    /// The rules of parallel groups: two branches at least, names not reused, local steps only,
    /// no pivot, and compensatable or retriable alike.
    fn validate_groups(&self) -> Result<(), DefinitionError> {
        let mut seen = HashSet::new();
        let mut i = 0;
        while i < self.steps.len() {
            let Some(range) = self.group_of(i) else {
                i += 1;
                continue;
            };
            let group = self.steps[i].group.clone().unwrap_or_default();
            let invalid = |problem: String| DefinitionError::InvalidGroup {
                saga: self.name.clone(),
                group: group.clone(),
                problem,
            };
            if !seen.insert(group.clone()) || self.steps.iter().any(|s| s.name == group) {
                return Err(invalid(
                    "its name is taken by another group or a step".into(),
                ));
            }
            if range.len() < 2 {
                return Err(invalid(
                    "a parallel group needs two branches at least".into(),
                ));
            }
            let branches = &self.steps[range.clone()];
            if let Some(b) = branches.iter().find(|b| !b.is_local()) {
                return Err(invalid(format!(
                    "branch `{}` is a participant, timer or signal step; branches run in the mediator",
                    b.name
                )));
            }
            if let Some(b) = branches.iter().find(|b| b.kind == StepKind::Pivot) {
                return Err(invalid(format!(
                    "branch `{}` is a pivot; a pivot stands on its own",
                    b.name
                )));
            }
            if branches.iter().any(|b| b.kind != branches[0].kind) {
                return Err(invalid(
                    "its branches mix compensatable and retriable steps".into(),
                ));
            }
            i = range.end;
        }
        Ok(())
    }
}
