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
mod args;
mod dead;
mod defaults;
mod error;
#[cfg(feature = "metrics")]
mod metrics;
#[cfg(feature = "otel")]
mod otel;
mod output;
mod read;
#[cfg(feature = "ui")]
mod serve;
mod show;
mod timeline;
#[cfg(feature = "ui")]
pub mod ui;

use std::process::ExitCode;

use args::{Cli, Command, DeadCommand};
use clap::Parser;

pub use defaults::{
    bus_config, database_url, BUS_PREFIX_ENV, BUS_URL_ENV, DATABASE_URL_ENV, DEFAULT_DATABASE_URL,
};
pub use error::CliError;

use saga_engine::bus;
use saga_engine::store::{self, ListQuery, OpenMode};
use saga_engine::Registry;

/// A boxed error from the caller's registration code.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the registration callback of [`main`] is told: the store and bus in use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Context {
    /// The store's URL.
    pub database_url: String,
    /// The bus URL, if a broker is in use (`None`: the in-process bus).
    pub bus_url: Option<String>,
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
    // The OpenTelemetry crates' own logs (targets `opentelemetry*`) only from warnings up: their
    // failed exports, not their lifecycle; and none of PostgreSQL's notices (a migration table
    // already there).
    let default_level = if matches!(cli.command, Command::Worker(_)) {
        "info,opentelemetry=warn,sqlx::postgres::notice=warn"
    } else {
        "warn"
    };
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        );
    #[cfg(feature = "otel")]
    let (traces, _exporting) = otel::layer().unzip();
    #[cfg(not(feature = "otel"))]
    let traces: Option<tracing_subscriber::layer::Identity> = None;
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
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
