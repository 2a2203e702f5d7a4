//! The `saga` command line, as a library entry: [`main`] serves the same CLI over whatever sagas
//! the calling program registers, so a user's own binary can inspect and operate on its sagas.
//! The `saga` binary of this workspace is this entry with the bundled sagas registered.
//!
//! Exit codes: 0 success; 1 refused, or the saga did not end as asked; 2 usage error; 3 not
//! found; 4 store unreachable or corrupt; 5 event bus unreachable.

/// Prints a line to stdout like `println!`, but returns from the command with
/// [`CliError::ClosedPipe`] when stdout is closed (`saga show ID | head`) instead of panicking.
macro_rules! out {
    () => {
        $crate::output::write_line(format_args!(""))?
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))?
    };
}

mod act;
mod dead;
mod defaults;
mod error;
mod output;
mod read;
#[cfg(feature = "ui")]
mod serve;
mod show;
mod timeline;
#[cfg(feature = "ui")]
pub mod ui;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use uuid::Uuid;

pub use defaults::{
    bus_config, database_url, BUS_PREFIX_ENV, BUS_URL_ENV, DATABASE_URL_ENV, DEFAULT_DATABASE_URL,
};
pub use error::CliError;

use saga_engine::bus;
use saga_engine::store::{self, ListQuery, OpenMode};
use saga_engine::Registry;
use saga_engine::SagaStatus;

/// A boxed error from the caller's registration code.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(
    name = "saga",
    version,
    about = "Inspect and operate on sagas in the store"
)]
struct Cli {
    /// Database URL [default: $SAGA_DATABASE_URL, else sqlite://sagas.db]
    #[arg(long, global = true, value_name = "URL")]
    database: Option<String>,
    /// Print one JSON document (stable field names) instead of tables
    #[arg(long, global = true)]
    json: bool,
    /// Event bus URL: nats://HOST:4222 or amqp://USER:PASS@HOST:5672/%2f [default:
    /// $SAGA_BUS_URL, else the in-process bus]
    #[arg(long, global = true, value_name = "URL")]
    bus: Option<String>,
    /// What the bus's streams, exchanges and queues are named under [default:
    /// $SAGA_BUS_PREFIX, else saga]
    #[arg(long, global = true, value_name = "PREFIX")]
    bus_prefix: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    Ui(serve::UiArgs),
    /// List, show and replay the messages consumer groups gave up on (needs --bus)
    DeadLetters {
        #[command(subcommand)]
        command: DeadCommand,
    },
}

#[derive(Subcommand)]
enum DeadCommand {
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

/// What the registration callback of [`main`] is told: the store and bus in use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Context {
    /// The store's URL.
    pub database_url: String,
    /// The bus URL, if a broker is in use (`None`: the in-process bus).
    pub bus_url: Option<String>,
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

/// Runs the CLI with the sagas `register` returns for the store and bus in use, and returns the
/// process exit code. `register` should not touch the database; it is called for every command.
pub fn main<F>(register: F) -> ExitCode
where
    F: FnOnce(&Context) -> Result<Registry, BoxError>,
{
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let default_level = if matches!(cli.command, Command::Worker(_)) {
        "info"
    } else {
        "warn"
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(4);
        }
    };
    match runtime.block_on(run(cli, register)) {
        Ok(code) => code,
        Err(CliError::ClosedPipe) => CliError::ClosedPipe.exit_code(),
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

async fn run<F>(cli: Cli, register: F) -> Result<ExitCode, CliError>
where
    F: FnOnce(&Context) -> Result<Registry, BoxError>,
{
    let url = database_url(cli.database.as_deref());
    let bus_config = bus_config(cli.bus.as_deref(), cli.bus_prefix.as_deref());
    let context = Context {
        database_url: url.clone(),
        bus_url: bus_config.url.clone(),
    };
    let registry = || {
        register(&context)
            .map_err(|e| CliError::Store(format!("cannot set up the registered sagas: {e}")))
    };
    let json = cli.json;
    let existing = || store::open(&url, OpenMode::MustExist);
    match cli.command {
        Command::List {
            statuses,
            definition,
            since,
            before,
            limit,
        } => {
            let query = ListQuery {
                statuses,
                definition,
                since,
                before,
                limit: limit.max(1),
            };
            read::list(existing().await?.as_ref(), query, json).await?;
        }
        Command::Show { id, svg } => {
            let store = existing().await?;
            show::show(store.as_ref(), &registry()?, &id, json, svg.as_deref()).await?;
        }
        Command::History { id } => read::history(existing().await?.as_ref(), &id, json).await?,
        Command::Stats => read::stats(existing().await?.as_ref(), json).await?,
        Command::Definitions => {
            // Sagas in flight per version, when there is a store to count them in.
            let in_flight = match existing().await {
                Ok(store) => Some(store.unfinished_definitions().await?),
                Err(store::StoreError::Missing(_)) => None,
                Err(e) => return Err(e.into()),
            };
            read::definitions(&registry()?, in_flight.as_deref(), json)?
        }
        Command::Abort { id, reason } => {
            let store = existing().await?;
            act::abort(store.as_ref(), &registry()?, &id, &reason, json).await?;
        }
        Command::Retry { id, reason } => {
            let store = existing().await?;
            act::retry(store.as_ref(), &registry()?, &id, &reason, json).await?;
        }
        Command::Signal {
            target,
            name,
            data,
            key,
            event_id,
        } => {
            let store = existing().await?;
            let signal = act::Signal {
                target: &target,
                by_key: key,
                name: &name,
                data: &data,
                event_id,
            };
            act::signal(store.as_ref(), &registry()?, signal, json).await?;
        }
        Command::Run {
            definition,
            data,
            fail_at,
            wait,
        } => {
            let store = store::open(&url, OpenMode::CreateIfMissing).await?;
            let args = act::RunArgs {
                definition,
                data,
                fail_at,
                wait,
                json,
            };
            return act::run(store, registry()?, args).await;
        }
        Command::Worker(args) => {
            let registry = registry()?;
            let store = store::open(&url, OpenMode::CreateIfMissing).await?;
            let bus = bus::connect(&bus_config).await?;
            act::worker(store, registry, bus, &url, args).await?;
        }
        #[cfg(feature = "ui")]
        Command::Ui(args) => {
            let store = existing().await?;
            serve::ui(store, registry()?, args).await?;
        }
        Command::DeadLetters { command } => {
            if bus_config.url.is_none() {
                return Err(CliError::Usage(
                    "dead letters live on a broker: give --bus URL (or set SAGA_BUS_URL)".into(),
                ));
            }
            let bus = bus::connect(&bus_config).await?;
            match command {
                DeadCommand::List { limit } => dead::list(bus.as_ref(), limit.max(1), json).await?,
                DeadCommand::Show { id } => dead::show(bus.as_ref(), &id, json).await?,
                DeadCommand::Replay { id } => dead::replay(bus.as_ref(), &id, json).await?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM: when a long-running process (a worker, a participant service)
/// should stop gracefully.
pub async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
