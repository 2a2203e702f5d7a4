//! Step failures: what a step returns when it fails, how the engine classifies it (retryable or
//! not, outcome known or not), and how the history records it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The step returned an error.
    Error,
    /// The step ran past its timeout: its effect may or may not have happened.
    Timeout,
    /// The step panicked: its effect may or may not have happened.
    Panic,
    /// The saga data could not be read, so the step did not run: retrying cannot help.
    Poison,
    /// The step ran but its output cannot be stored (unserializable, over the size limit): its
    /// effect happened, so it is compensated, but retrying cannot help.
    InvalidOutput,
    /// The attempt was cut off by a crash or a lost lease too many times: its effect may or may
    /// not have happened.
    Interrupted,
}

/// A failed step or compensation, as the step reports it and as the history records it.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct StepError {
    /// One sentence saying what went wrong.
    pub message: String,
    /// Whether trying again may succeed.
    pub retryable: bool,
    /// How it failed.
    pub kind: FailureKind,
}

impl StepError {
    /// A failure that may pass: the retry policy decides whether to try again.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            kind: FailureKind::Error,
        }
    }

    /// A failure that retrying cannot fix (declined card, invalid order): no further attempt.
    pub fn terminal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            kind: FailureKind::Error,
        }
    }

    pub(crate) fn timeout(after: Duration) -> Self {
        Self {
            message: format!("timed out after {after:?}"),
            retryable: true,
            kind: FailureKind::Timeout,
        }
    }

    pub(crate) fn panic(message: String) -> Self {
        Self {
            message: format!("panicked: {message}"),
            retryable: true,
            kind: FailureKind::Panic,
        }
    }

    pub(crate) fn invalid_output(message: String) -> Self {
        Self {
            message,
            retryable: false,
            kind: FailureKind::InvalidOutput,
        }
    }

    pub(crate) fn interrupted(attempts: u32) -> Self {
        Self {
            message: format!("interrupted (crash or lost lease) on each of {attempts} attempt(s)"),
            retryable: false,
            kind: FailureKind::Interrupted,
        }
    }

    pub(crate) fn poison(message: String) -> Self {
        Self {
            message,
            retryable: false,
            kind: FailureKind::Poison,
        }
    }

    /// Whether the effect of the failed work may nevertheless have happened (timeout, panic), in
    /// which case the step is compensated like a completed one.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self.kind,
            FailureKind::Timeout
                | FailureKind::Panic
                | FailureKind::InvalidOutput
                | FailureKind::Interrupted
        )
    }
}
