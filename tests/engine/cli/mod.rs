//! The `saga` binary, spawned for real against a real store (a SQLite file, or a PostgreSQL
//! schema with the participants in a SQLite file beside it): the harness.

mod act;
mod dead;
mod links;
#[cfg(feature = "metrics")]
mod metrics;
mod read;
mod recovery;
mod signal;
#[cfg(feature = "otel")]
mod traces;
mod truthful;

use std::process::{Child, Command, Output, Stdio};

use saga::engine::{store, SagaStatus};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::backend::{Backend, Schema};
use crate::common::until;

pub(super) const SAGA: &str = env!("CARGO_BIN_EXE_saga");

/// A temp database and a way to run `saga` on it.
pub(super) struct Db {
    pub(super) dir: tempfile::TempDir,
    /// The store.
    pub(super) url: String,
    /// The participants' SQLite file (the store's own file on SQLite).
    pub(super) local: String,
    _schema: Option<Schema>,
}

impl Db {
    /// A store on the running test's backend.
    pub(super) async fn new() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let local = format!("sqlite://{}", dir.path().join("cli.db").display());
        let schema = match crate::backend::current() {
            Backend::Sqlite => None,
            Backend::Postgres => Some(Schema::create().await),
        };
        let url = schema.as_ref().map_or(local.clone(), |s| s.url.clone());
        Db {
            dir,
            url,
            local,
            _schema: schema,
        }
    }

    /// `saga` on this store, its participants on [`Db::local`].
    pub(super) fn command(&self) -> Command {
        let mut cmd = Command::new(SAGA);
        cmd.args(["--database", &self.url])
            .env("SAGA_PARTICIPANTS_URL", &self.local)
            .env_remove("SAGA_FAULTS")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("SAGA_RECORD_STEP_RUNS");
        cmd
    }

    pub(super) fn saga(&self, args: &[&str]) -> Output {
        self.saga_env(args, &[])
    }

    pub(super) fn saga_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command();
        cmd.args(args).env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    pub(super) fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.saga(&all);
        assert!(out.status.success(), "saga {args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Starts `saga worker` in the background; killed when the guard drops.
    pub(super) fn worker(&self, faults: &str) -> Worker {
        let child = self
            .command()
            .args(["worker", "--poll", "50ms", "--lease", "2s"])
            .env("SAGA_FAULTS", faults)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Worker(child)
    }

    pub(super) async fn status(&self, id: Uuid) -> SagaStatus {
        let store = store::open(&self.url, store::OpenMode::MustExist)
            .await
            .unwrap();
        store.get(id).await.unwrap().unwrap().status
    }

    pub(super) async fn until_status(&self, id: Uuid, status: SagaStatus) {
        until(&format!("saga {id} to be {status}"), || async move {
            self.status(id).await == status
        })
        .await;
    }
}

pub(super) struct Worker(pub(super) Child);

/// Spawns `cmd` (a long-running `saga`) and waits, within [`crate::common::BOUND`], for the
/// first line of its stderr that starts with `prefix`; returns it running, with the rest of that
/// line. Its stderr is drained after, so it never blocks on a full pipe.
pub(super) fn spawn_saying(mut cmd: Command, prefix: &str) -> (Worker, String) {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let (said, heard) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines {
            // Once the line was found nobody listens: the rest is drained.
            let _ = said.send(line.unwrap_or_default());
        }
    });
    let worker = Worker(child);
    let deadline = std::time::Instant::now() + crate::common::BOUND;
    let rest = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = heard
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("saga never said `{prefix}...` ({e})"));
        if let Some(rest) = line.strip_prefix(prefix) {
            break rest.to_string();
        }
    };
    (worker, rest)
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub(super) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

pub(super) fn order(id: &str, amount_cents: i64, country: &str) -> String {
    json!({
        "order_id": id,
        "customer": format!("cust-{id}"),
        "items": [{ "sku": "widget", "quantity": 1 }],
        "amount_cents": amount_cents,
        "address": { "street": "1 Main St", "city": "Springfield", "country": country }
    })
    .to_string()
}

pub(super) fn id_of(v: &Value) -> Uuid {
    v["id"].as_str().unwrap().parse().unwrap()
}

pub(super) fn history_types(db: &Db, id: Uuid) -> Vec<String> {
    db.json(&["history", &id.to_string()])["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap(),
                e["step"].as_str().unwrap_or("")
            )
            .trim()
            .to_string()
        })
        .collect()
}

pub(super) fn run_example(db: &Db) {
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("order_saga");
    let out = Command::new(example)
        .args(["--database", &db.url])
        .env("SAGA_PARTICIPANTS_URL", &db.local)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}
