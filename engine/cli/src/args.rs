//! The command line's arguments, as clap parses them, and the parsers of its values (statuses,
//! times).

use clap::{Parser, Subcommand};
use saga_engine::SagaStatus;
use uuid::Uuid;

use crate::{act, output};

#[derive(Parser)]
#[command(
    name = "saga",
    version,
    about = "Inspect and operate on sagas in the store"
)]
pub(crate) struct Cli {
    /// Database URL [default: $SAGA_DATABASE_URL, else sqlite://sagas.db]
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) database: Option<String>,
    /// Print one JSON document (stable field names) instead of tables
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Event bus URL: nats://HOST:4222 or amqp://USER:PASS@HOST:5672/%2f [default:
    /// $SAGA_BUS_URL, else the in-process bus]
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) bus: Option<String>,
    /// What the bus's streams, exchanges and queues are named under [default:
    /// $SAGA_BUS_PREFIX, else saga]
    #[arg(long, global = true, value_name = "PREFIX")]
    pub(crate) bus_prefix: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// List sagas, newest first
    List {
        /// Only this status (repeatable): running, compensating, completed, compensated, failed
        #[arg(long = "status", value_parser = parse_status)]
        statuses: Vec<SagaStatus>,
        /// Only this definition
        #[arg(long)]
        definition: Option<String>,
        /// Only sagas started within this long (`90s`, `2h`) or since this time (RFC 3339)
        #[arg(long, value_parser = parse_since)]
        since: Option<i64>,
        /// Only sagas older than this id (the next page)
        #[arg(long)]
        before: Option<Uuid>,
        /// At most this many
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one saga: status, steps, compensations, lease, next attempt, data
    Show {
        /// Saga id or unique id prefix
        id: String,
        /// Also write the saga's timeline (the one `saga ui` draws) to this SVG file
        #[arg(long, value_name = "FILE")]
        svg: Option<std::path::PathBuf>,
    },
    /// Show a saga's event history in order
    History {
        /// Saga id or unique id prefix
        id: String,
    },
    /// Count sagas by definition and status; list failed sagas that need attention
    Stats,
    /// List the registered sagas, their versions and steps
    Definitions,
    /// Move a running saga to compensation
    Abort {
        /// Saga id or unique id prefix
        id: String,
        /// Why (recorded in the saga's history)
        #[arg(long, default_value = "aborted by an operator")]
        reason: String,
    },
    /// Resume a failed saga's compensation, or run a saga waiting in a backoff now
    Retry {
        /// Saga id or unique id prefix
        id: String,
        /// Why (recorded in the saga's history)
        #[arg(long, default_value = "retried by an operator")]
        reason: String,
    },
    /// Send a signal to a saga (or, with --key, to the sagas listening on a correlation key)
    Signal {
        /// Saga id or unique id prefix (with --key: the correlation key)
        target: String,
        /// The signal's name, as the saga's signal step waits for it
        name: String,
        /// What the signal carries: JSON, or @FILE
        #[arg(long, default_value = "null")]
        data: String,
        /// TARGET is a correlation key (the value of the field the signal step correlates on)
        #[arg(long)]
        key: bool,
        /// The signal's unique id: the same id sent twice is kept once (default: a new one)
        #[arg(long, value_name = "UUID")]
        event_id: Option<uuid::Uuid>,
    },
    /// Start a registered saga
    Run {
        /// Definition name
        definition: String,
        /// The saga's data: JSON, or @FILE
        #[arg(long)]
        data: String,
        /// Make this step fail for good (runs the saga here; needs --wait)
        #[arg(long, value_name = "STEP", requires = "wait")]
        fail_at: Option<String>,
        /// Run the saga in this process and wait for its outcome (exit 0 completed, 1 otherwise)
        #[arg(long)]
        wait: bool,
    },
    /// Run a mediator over the store until Ctrl-C or SIGTERM
    Worker(act::WorkerArgs),
    /// Serve web pages over the store: sagas, a saga's timeline and history, definitions
    #[cfg(feature = "ui")]
    Ui(crate::serve::UiArgs),
    /// List, show and replay the messages consumer groups gave up on (needs --bus)
    DeadLetters {
        #[command(subcommand)]
        command: DeadCommand,
    },
}

#[derive(Subcommand)]
pub(crate) enum DeadCommand {
    /// List dead letters, oldest first
    List {
        /// At most this many
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one dead letter: its reason, route and body
    Show {
        /// Dead letter id (from `list`)
        id: String,
    },
    /// Publish a dead letter again on its route and remove it from the dead letters
    Replay {
        /// Dead letter id (from `list`)
        id: String,
    },
}

pub(crate) fn parse_status(text: &str) -> Result<SagaStatus, String> {
    text.parse().map_err(|_| {
        let all: Vec<&str> = SagaStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown status `{text}`; use one of {}", all.join(", "))
    })
}

pub(crate) fn parse_since(text: &str) -> Result<i64, String> {
    if let Ok(ago) = humantime::parse_duration(text) {
        return i64::try_from(ago.as_millis())
            .ok()
            .and_then(|ago| output::now_ms().checked_sub(ago))
            .ok_or_else(|| format!("`{text}` reaches back further than any time"));
    }
    humantime::parse_rfc3339_weak(text)
        .map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0)
        })
        .map_err(|_| {
            format!("`{text}` is neither a duration (90s, 2h) nor a time (2026-11-23T10:00:00Z)")
        })
}
