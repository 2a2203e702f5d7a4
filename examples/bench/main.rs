//! The benchmark harness: OrderSaga throughput and latency at several concurrencies against the
//! database's raw commit rate, and the scale checks (sagas in flight at once, a store of a
//! million finished sagas, the CLI and `saga ui` on it).
//!
//! ```text
//! cargo build --release --bin saga
//! cargo run --release --example bench -- --sagas 2000 --concurrency 1,8,32 --fail-fraction 0.1
//! cargo run --release --example bench -- --database postgres://postgres@127.0.0.1:5432/test
//! cargo run --release --example bench -- --in-flight 10000
//! cargo run --release --example bench -- --fill 1000000 --database sqlite://big.db
//! cargo run --release --example bench -- --bus nats://127.0.0.1:4222    # across processes
//! cargo run --release --example bench -- --bus amqp://guest:guest@127.0.0.1:5672/%2f
//! cargo run --release --example bench -- --telemetry    # traces and figures on, to compare
//! ```
//!
//! Each run prints a Markdown table; it fails (exit 1) if any saga ended otherwise than its order
//! dictates.

mod across;
mod baseline;
mod fill;
mod load;
mod order;
mod report;
mod scale;
mod telemetry;
mod timers;
mod ui;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use saga::engine::store::SagaStore;
use saga::engine::{store, store::OpenMode};

/// Any error of the harness.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(about = "Measure the saga engine: throughput, latency, commits, memory, scale")]
struct Args {
    /// Where to run: sqlite://FILE (a new file; default: one in a temporary directory, removed
    /// afterwards; add ?synchronous=normal to relax durability) or postgres://USER@HOST/DB (runs
    /// in a schema `saga_bench`, recreated for the run and kept for inspection).
    #[arg(long)]
    database: Option<String>,
    /// Sagas per concurrency level.
    #[arg(long, default_value_t = 2000)]
    sagas: usize,
    /// Concurrency levels: clients each running one saga at a time.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    concurrency: Vec<usize>,
    /// Share of orders whose card is declined at charge_payment (compensated).
    #[arg(long, default_value_t = 0.1)]
    fail_fraction: f64,
    /// How long each raw commit baseline runs, in seconds (0 skips it).
    #[arg(long, default_value_t = 3.0)]
    baseline_seconds: f64,
    /// Instead of the throughput runs: start this many sagas that all stay in flight at once
    /// (parked in a step or a retry backoff), report the peak memory, then let them finish.
    #[arg(long, value_name = "N")]
    in_flight: Option<usize>,
    /// Instead of the throughput runs: start this many sagas that all wait on a durable timer
    /// at once, report the peak memory, then let the timers fire.
    #[arg(long, value_name = "N")]
    timers: Option<usize>,
    /// With --timers: how long each timer waits.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    timer_delay: std::time::Duration,
    /// Instead of the throughput runs: fill the store with this many finished sagas, then time
    /// `saga list --status failed` and `saga show ID` on it.
    #[arg(long, value_name = "N")]
    fill: Option<usize>,
    /// Instead of the in-process runs: OrderSaga over events on this broker (nats://HOST:4222 or
    /// amqp://USER:PASS@HOST:5672/%2f), its participants in another process.
    #[arg(long, value_name = "URL")]
    bus: Option<String>,
    /// With --bus: the prefix (the participants' process is started with it).
    #[arg(long, hide = true)]
    bus_prefix: Option<String>,
    /// Run as the participants' process of a --bus run (started by the harness itself).
    #[arg(long, hide = true)]
    serve_participants: bool,
    /// Trace every saga (spans through the OpenTelemetry SDK's batch processor to an exporter
    /// that drops them) and record the engine's figures in a Prometheus recorder.
    #[arg(long)]
    telemetry: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let _traces = telemetry::install(args.telemetry);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    if args.serve_participants {
        let config = saga::engine::bus::BusConfig::new(args.bus.clone())
            .prefix(args.bus_prefix.clone().unwrap_or_default());
        return across::serve_participants(config).await;
    }
    if !(0.0..=1.0).contains(&args.fail_fraction) {
        return Err("--fail-fraction must be between 0 and 1".into());
    }
    let target = Target::new(args.database.as_deref()).await?;
    println!("machine:  {}", report::machine());
    println!("database: {}", target.describe().await?);
    println!("store:    {}", target.url);
    println!(
        "traces:   {}",
        match (args.telemetry, cfg!(feature = "otel")) {
            (true, _) => "on (spans batched to a discarding exporter), figures recorded",
            (false, true) => "off (built with the otel feature, nothing installed)",
            (false, false) => "off (built without the otel feature)",
        }
    );
    let store = store::open(&target.url, OpenMode::CreateIfMissing).await?;
    if let Some(n) = args.in_flight {
        scale::in_flight(store, n).await?;
    } else if let Some(n) = args.timers {
        timers::waiting(store, n, args.timer_delay).await?;
    } else if let Some(n) = args.fill {
        scale::fill_and_time(store, &target.url, n).await?;
    } else if let Some(url) = &args.bus {
        let levels = &args.concurrency;
        across::throughput(url, store, args.sagas, levels, args.fail_fraction).await?;
    } else {
        throughput(&args, &target.url, store).await?;
    }
    target.finish();
    Ok(())
}

/// One row per concurrency level.
async fn throughput(args: &Args, url: &str, store: Arc<dyn SagaStore>) -> Result<(), BoxError> {
    println!(
        "\n{} OrderSagas per level, {:.0} % declined at charge_payment and compensated\n",
        args.sagas,
        args.fail_fraction * 100.0
    );
    println!(
        "| clients | sagas/s | p50 ms | p99 ms | max ms | commits/saga | transitions/commit \
         | baseline commits/s | ratio | peak RSS MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &c in &args.concurrency {
        let c = c.max(1);
        let baseline = match args.baseline_seconds > 0.0 {
            true => {
                let length = Duration::from_secs_f64(args.baseline_seconds);
                Some(baseline::commits_per_second(url, c, length).await?)
            }
            false => None,
        };
        let progress = report::Progress::new(args.sagas, &format!("c={c}"));
        let workload = load::Workload::local()?;
        let run = load::run(
            store.clone(),
            workload,
            args.sagas,
            c,
            args.fail_fraction,
            &progress,
        )
        .await;
        progress.finish();
        let run = run?;
        let secs = run.elapsed.as_secs_f64();
        let transitions_per_s = run.writes.transitions as f64 / secs;
        println!(
            "| {} | {:.0} | {} | {} | {} | {:.2} | {:.2} | {} | {} | {:.0} |",
            run.concurrency,
            run.sagas as f64 / secs,
            report::ms(report::percentile(&run.latencies, 50.0)),
            report::ms(report::percentile(&run.latencies, 99.0)),
            report::ms(run.latencies.last().copied().unwrap_or_default()),
            run.writes.commits as f64 / run.sagas as f64,
            run.writes.transitions as f64 / run.writes.commits.max(1) as f64,
            baseline.map_or("-".into(), |b| format!("{b:.0}")),
            baseline.map_or("-".into(), |b| format!("{:.2}", transitions_per_s / b)),
            run.peak_rss_kib as f64 / 1024.0,
        );
    }
    println!("\nevery saga ended as its order dictates (completed, or compensated when declined)");
    Ok(())
}

/// The database the harness writes to.
struct Target {
    url: String,
    /// A temporary directory holding the default SQLite file, removed at the end.
    scratch: Option<tempfile::TempDir>,
}

impl Target {
    async fn new(given: Option<&str>) -> Result<Self, BoxError> {
        match given {
            None => {
                let scratch = tempfile::Builder::new().prefix("saga-bench").tempdir()?;
                let url = format!("sqlite://{}", scratch.path().join("bench.db").display());
                Ok(Self {
                    url,
                    scratch: Some(scratch),
                })
            }
            Some(url) if url.starts_with("sqlite:") => {
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                let path = path.split('?').next().unwrap_or(path);
                if std::path::Path::new(path).exists() {
                    return Err(format!(
                        "{path} exists; the bench writes a new store: remove it or name another file"
                    )
                    .into());
                }
                Ok(Self {
                    url: url.to_string(),
                    scratch: None,
                })
            }
            Some(url) if url.starts_with("postgres:") || url.starts_with("postgresql:") => {
                let pool = sqlx::PgPool::connect(url).await?;
                sqlx::query("DROP SCHEMA IF EXISTS saga_bench CASCADE")
                    .execute(&pool)
                    .await?;
                sqlx::query("CREATE SCHEMA saga_bench")
                    .execute(&pool)
                    .await?;
                let sep = if url.contains('?') { '&' } else { '?' };
                Ok(Self {
                    url: format!("{url}{sep}options[search_path]=saga_bench"),
                    scratch: None,
                })
            }
            Some(url) => Err(format!("unsupported database URL `{url}`").into()),
        }
    }

    /// The database's name and version.
    async fn describe(&self) -> Result<String, BoxError> {
        if self.url.starts_with("sqlite:") {
            let version: String = sqlx::query_scalar("SELECT sqlite_version()")
                .fetch_one(&sqlx::SqlitePool::connect("sqlite::memory:").await?)
                .await?;
            let durability = match self.url.contains("synchronous=normal") {
                true => "synchronous=NORMAL",
                false => "synchronous=FULL",
            };
            Ok(format!("SQLite {version}, WAL, {durability}"))
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await?;
            let version: String = sqlx::query_scalar("SHOW server_version")
                .fetch_one(&pool)
                .await?;
            let fsync: String = sqlx::query_scalar("SHOW synchronous_commit")
                .fetch_one(&pool)
                .await?;
            Ok(format!("PostgreSQL {version}, synchronous_commit={fsync}"))
        }
    }

    fn finish(self) {
        if let Some(scratch) = self.scratch {
            let _ = scratch.close();
        }
    }
}
