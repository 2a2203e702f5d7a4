//! CLI errors and the exit codes they map to: 0 success, 1 refused or not in the expected
//! state, 2 usage, 3 not found, 4 store unreachable or corrupt, 5 event bus unreachable.

use std::process::ExitCode;

use crate::error::EngineError;
use crate::operator::OperatorError;
use crate::store::StoreError;

/// A command's failure: one sentence for stderr and an exit code that means something.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The operation was refused, or the saga ended in a state other than the one asked for.
    #[error("{0}")]
    Refused(String),
    /// The command line or its input is wrong.
    #[error("{0}")]
    Usage(String),
    /// The named saga, definition or step does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The store cannot be reached or read.
    #[error("{0}")]
    Store(String),
    /// The event bus (broker) cannot be reached or refused the operation.
    #[error("{0}")]
    Bus(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Refused(_) => 1,
            CliError::Usage(_) => 2,
            CliError::NotFound(_) => 3,
            CliError::Store(_) => 4,
            CliError::Bus(_) => 5,
        })
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        CliError::Store(e.to_string())
    }
}

impl From<crate::bus::BusError> for CliError {
    fn from(e: crate::bus::BusError) -> Self {
        use crate::bus::BusError;
        match e {
            BusError::NoSuchDeadLetter(_) => CliError::NotFound(e.to_string()),
            BusError::Config(_) | BusError::Malformed(_) => CliError::Usage(e.to_string()),
            _ => CliError::Bus(e.to_string()),
        }
    }
}

impl From<EngineError> for CliError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::UnknownSaga(name) => CliError::NotFound(format!(
                "no saga named `{name}` is registered; `saga definitions` lists the registered ones"
            )),
            EngineError::NotFound(_) => CliError::NotFound(e.to_string()),
            EngineError::InvalidData { .. }
            | EngineError::PayloadTooLarge { .. }
            | EngineError::Definition(_) => CliError::Usage(e.to_string()),
            EngineError::UnknownVersion { .. } | EngineError::ShuttingDown => {
                CliError::Refused(e.to_string())
            }
            EngineError::Store(e) => e.into(),
            EngineError::Bus(e) => e.into(),
        }
    }
}

impl From<OperatorError> for CliError {
    fn from(e: OperatorError) -> Self {
        match e {
            OperatorError::NotFound(_) => CliError::NotFound(e.to_string()),
            OperatorError::Refused { .. }
            | OperatorError::UnknownVersion { .. }
            | OperatorError::Busy(_) => CliError::Refused(e.to_string()),
            OperatorError::Store(e) => e.into(),
        }
    }
}
