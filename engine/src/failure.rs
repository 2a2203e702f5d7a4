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
    /// A signal step's wait ended with no signal: nothing happened, and waiting again would not
    /// change that.
    SignalTimeout,
}

/// A failed step or compensation, as the step reports it and as the history records it.
///
/// Any error converts into it, so `?` works inside a step: an ordinary error (a failed query, a
/// refused connection) counts as **retryable**, since most are passing, and the step's retry
/// policy bounds how often it is tried again. Say otherwise with one word,
/// [`StepResultExt::terminal`]: `charge(&card).await.terminal()?`. Like `anyhow::Error`, and
/// for the same reason (that conversion), it is not itself a `std::error::Error`.
///
/// An error type of your own that knows, variant by variant, whether retrying may help (a
/// declined card no, a dropped connection yes) implements `From<YourError> for StepError`
/// instead, and then must not implement `std::error::Error` (the two conversions would
/// overlap); OrderSaga's `ParticipantError` does this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

    pub(crate) fn signal_timeout(signal: &str, after: Duration) -> Self {
        Self {
            message: format!("no signal `{signal}` came within {after:?}"),
            retryable: false,
            kind: FailureKind::SignalTimeout,
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

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// `?` on any error inside a step: a retryable failure whose message is the error and its
/// sources, outermost first.
impl<E: std::error::Error + Send + Sync + 'static> From<E> for StepError {
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        StepError::retryable(message)
    }
}

/// Says how a step's failure should be treated, in one word before the `?`.
///
/// ```
/// use saga_engine::{StepError, StepResultExt};
/// fn parse(text: &str) -> Result<u32, StepError> {
///     // A malformed number will not parse on the next attempt either.
///     let n: u32 = text.parse().terminal()?;
///     Ok(n)
/// }
/// assert!(!parse("x").unwrap_err().retryable);
/// ```
pub trait StepResultExt<T> {
    /// Fails the step for good: no further attempt (the saga compensates, or fails after the
    /// pivot).
    fn terminal(self) -> Result<T, StepError>;
    /// Fails this attempt; the retry policy decides whether another follows (the default for
    /// ordinary errors, spelled out).
    fn retryable(self) -> Result<T, StepError>;
}

impl<T, E: Into<StepError>> StepResultExt<T> for Result<T, E> {
    fn terminal(self) -> Result<T, StepError> {
        self.map_err(|e| StepError {
            retryable: false,
            ..e.into()
        })
    }

    fn retryable(self) -> Result<T, StepError> {
        self.map_err(|e| StepError {
            retryable: true,
            ..e.into()
        })
    }
}
