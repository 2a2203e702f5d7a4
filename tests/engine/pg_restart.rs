//! PostgreSQL restarted in the middle of a run: a `saga worker` keeps going once the server is
//! back (retrying with backoff meanwhile) and every saga ends final, each effect applied once.
//! The server restarted is a private one this test starts in a temp dir (`initdb`, `pg_ctl`), so
//! the tests sharing the main server are not disturbed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use saga::engine::enqueue;
use saga::engine::{store, Registry, SagaStatus};
use saga::sagas::{order, Participants};
use serde_json::Value;
use sqlx::Connection;

use crate::cli::{order as order_json, Worker, SAGA};

const SAGAS: usize = 200;

/// A PostgreSQL server of this test's own, stopped when dropped.
struct Server {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

/// Runs a PostgreSQL tool as the `postgres` user when this process is root (the server refuses
/// to run as root), as this user otherwise.
fn pg(bin: &Path, tool: &str, args: &[&str]) -> std::process::Output {
    pg_command(bin, tool, args).output().unwrap()
}

/// The command [`pg`] runs, to start it without waiting.
fn pg_command(bin: &Path, tool: &str, args: &[&str]) -> Command {
    let tool = bin.join(tool);
    let mut cmd = match is_root() {
        true => {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&tool);
            c
        }
        false => Command::new(&tool),
    };
    cmd.args(args).stdin(Stdio::null());
    cmd
}

fn is_root() -> bool {
    std::env::var("USER").as_deref() == Ok("root")
        || Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
}

impl Server {
    /// Starts one, or says why it cannot.
    fn start() -> Result<Server, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no PostgreSQL installation in /usr/lib/postgresql: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("pg_ctl").exists())
            .ok_or("no pg_ctl under /usr/lib/postgresql")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        if is_root() {
            Command::new("chown")
                .args(["postgres", &dir.path().display().to_string()])
                .status()
                .map_err(|e| e.to_string())?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let out = pg(
            &bin,
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "-N",
            ],
        );
        if !out.status.success() {
            return Err(format!("initdb: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let server = Server {
            bin,
            data,
            port,
            _dir: dir,
        };
        server.ctl(&["start"])?;
        Ok(server)
    }

    fn ctl(&self, action: &[&str]) -> Result<(), String> {
        let out = self.ctl_command(action).output().unwrap();
        Self::ctl_result(action, out)
    }

    /// `pg_ctl ACTION` on this server, not started yet.
    fn ctl_command(&self, action: &[&str]) -> Command {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories=",
            self.port
        );
        let data = self.data.display().to_string();
        // The server's output goes to a log file, not to pipes this test would wait on.
        let log = self.data.with_file_name("server.log").display().to_string();
        let mut args = vec!["-D", &data, "-l", &log, "-w", "-m", "fast", "-o", &options];
        args.extend_from_slice(action);
        pg_command(&self.bin, "pg_ctl", &args)
    }

    fn ctl_result(action: &[&str], out: std::process::Output) -> Result<(), String> {
        match out.status.success() {
            true => Ok(()),
            false => Err(format!(
                "pg_ctl {action:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_finish_when_postgres_restarts_mid_run() {
    let server = match Server::start() {
        Ok(server) => server,
        Err(why) if std::env::var("SAGA_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("a private PostgreSQL server is required (SAGA_REQUIRE_POSTGRES=1): {why}")
        }
        Err(why) => {
            eprintln!("\n!!! SKIPPING the PostgreSQL restart test: {why}\n");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let local = format!("sqlite://{}", dir.path().join("participants.db").display());
    let participants = Participants::open(&local).await.unwrap();
    let store = store::open(&server.url(), store::OpenMode::CreateIfMissing)
        .await
        .unwrap();
    let mut registry = Registry::new();
    order::register_all(&mut registry, &participants).unwrap();
    for i in 0..SAGAS {
        let data: Value = serde_json::from_str(&order_json(&format!("r{i}"), 1_000, "FR")).unwrap();
        enqueue(store.as_ref(), &registry, order::NAME, data)
            .await
            .unwrap();
    }
    drop(store);
    let _worker = Worker(
        Command::new(SAGA)
            .args(["--database", &server.url(), "worker"])
            .args(["--lease", "2s", "--poll", "250ms", "--concurrency", "4"])
            .env("SAGA_PARTICIPANTS_URL", &local)
            // Slow confirmations keep the run going across the restart.
            .env("SAGA_FAULTS", "confirm_order=fail:2")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let confirmed = |min: i64| {
        let local = local.clone();
        async move {
            let pool = sqlx::SqlitePool::connect(&local).await.unwrap();
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM order_confirmations")
                .fetch_one(&pool)
                .await
                .unwrap();
            n >= min
        }
    };
    crate::common::until("some sagas to complete", || confirmed(10)).await;
    // Hold the participants' database: their writes wait, so no saga can finish, and the
    // restart comes mid-run however fast the worker is. The hold ends as the restart begins, so
    // the steps that waited finish and commit while the server goes down.
    let mut hold = sqlx::SqliteConnection::connect(&local).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut hold)
        .await
        .unwrap();
    assert!(!confirmed(SAGAS as i64).await, "the restart comes mid-run");
    let restart = server
        .ctl_command(&["restart"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sqlx::query("ROLLBACK").execute(&mut hold).await.unwrap();
    drop(hold);
    Server::ctl_result(&["restart"], restart.wait_with_output().unwrap()).unwrap();

    // Read through a fresh store: the test's own connections died with the server too.
    let store = store::open(&server.url(), store::OpenMode::MustExist)
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let counts = store.counts().await.unwrap();
        let completed: u64 = counts
            .iter()
            .filter(|(_, s, _)| *s == SagaStatus::Completed)
            .map(|(_, _, n)| n)
            .sum();
        if completed == SAGAS as u64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not all sagas completed after the restart: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let effects = crate::common::effects(&participants, &crate::common::good_order("r0")).await;
    assert_eq!((effects.charged, effects.shipments), (1_000, 1));
    let pool = sqlx::SqlitePool::connect(&local).await.unwrap();
    let (charges, shipments, confirmations) = crate::common::delivered(&pool).await;
    let n = SAGAS as i64;
    assert_eq!((charges, shipments, confirmations), (n, n, n));
}
