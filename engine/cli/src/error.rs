//! CLI errors and the exit codes they map to: 0 success, 1 refused or not in the expected
//! state, 2 usage (a database URL no backend takes included), 3 not found, 4 store missing,
//! unreachable or corrupt, 5 event bus unreachable.

use std::process::ExitCode;

use saga_engine::operator::OperatorError;
use saga_engine::store::StoreError;
use saga_engine::EngineError;

/// A command's failure: one sentence for stderr and an exit code that means something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// Standard output was closed by its reader (`saga show ID | head`): the command stops
    /// quietly, as Unix tools do, with the status a shell reports for SIGPIPE.
    #[error("standard output was closed")]
    ClosedPipe,
    /// Standard output could not be written.
    #[error("cannot write the output: {0}")]
    Output(String),
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
            CliError::Output(_) => 1,
            CliError::ClosedPipe => 141,
        })
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Missing(_) => CliError::Store(format!(
                "{e}; run a saga first, or check --database / {}",
                crate::DATABASE_URL_ENV
            )),
            // A URL no backend takes, or one this build left out: the invocation is wrong.
            StoreError::UnsupportedUrl(_) | StoreError::NotCompiled { .. } => {
                CliError::Usage(e.to_string())
            }
            _ => CliError::Store(e.to_string()),
        }
    }
}

impl From<saga_engine::bus::BusError> for CliError {
    fn from(e: saga_engine::bus::BusError) -> Self {
        use saga_engine::bus::BusError;
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
            EngineError::UnknownVersion { .. } => CliError::NotFound(e.to_string()),
            EngineError::InvalidData { .. }
            | EngineError::PayloadTooLarge { .. }
            | EngineError::Definition(_) => CliError::Usage(e.to_string()),
            EngineError::Store(e) => e.into(),
            EngineError::Bus(e) => e.into(),
            _ => CliError::Refused(e.to_string()),
        }
    }
}

impl From<OperatorError> for CliError {
    fn from(e: OperatorError) -> Self {
        match e {
            OperatorError::NotFound(_) | OperatorError::UnknownVersion { .. } => {
                CliError::NotFound(e.to_string())
            }
            OperatorError::Store(e) => e.into(),
            // Bad input, as data that does not fit a saga is for `run`.
            OperatorError::Refused {
                reason: saga_engine::operator::Refused::SignalData(_),
                ..
            } => CliError::Usage(e.to_string()),
            _ => CliError::Refused(e.to_string()),
        }
    }
}
