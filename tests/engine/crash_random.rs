//! The randomized mode of the crash matrix: processes running many sagas at once are killed with
//! SIGKILL at seeded random moments, for a bounded time; then every saga is checked.
//! `SAGA_CRASH_SEED` replays the kill schedule, `SAGA_CRASH_SECONDS` makes the run longer.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use saga::engine::{store, SagaStatus};
use sqlx::SqlitePool;

use crate::crash::{child, run_child, Db};

/// The seed of the randomized mode: `SAGA_CRASH_SEED`, or a fresh one (printed for replay).
fn crash_seed() -> u64 {
    std::env::var("SAGA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sigkills_of_busy_processes_lose_nothing() {
    let seed = crash_seed();
    let seconds: u64 = std::env::var("SAGA_CRASH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    println!("randomized crashes: SAGA_CRASH_SEED={seed} SAGA_CRASH_SECONDS={seconds}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let mut round = 0;
    // At least one round; more while time is left.
    while round == 0 || std::time::Instant::now() < deadline {
        // SQLite only: the store and the participants in one file.
        let db = Db::new(dir.path(), &format!("random{round}")).await;
        let (kills, started) = kill_round(&db, &mut rng, deadline).await;
        let checked = check_round(&db.url, &started).await;
        println!(
            "round {round}: {kills} SIGKILLs, {} sagas reported started, {checked} checked",
            started.len()
        );
        round += 1;
    }
}

/// Starts a batch of sagas, then SIGKILLs it and the recovery processes after it at seeded
/// random moments (fewer kills than an attempt's interruption budget, 10), and recovers for
/// good. Returns the kills and the ids the processes reported as started.
async fn kill_round(
    db: &Db,
    rng: &mut fastrand::Rng,
    deadline: std::time::Instant,
) -> (u32, Vec<String>) {
    let spawn = |args: &[&str]| {
        Command::new(child())
            .args(["--database", &db.url])
            .args(args)
            .env_remove("SAGA_FAULTS")
            .env_remove("SAGA_CRASH_AT")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut started: Vec<String> = Vec::new();
    let mut kills = 0;
    let mut proc = spawn(&["batch", "--count", "100"]);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(rng.u64(20..600))).await;
        let mut finished = proc.try_wait().unwrap().is_some();
        if !finished {
            proc.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let status = proc.wait().unwrap();
        // It may have finished on its own just before the kill.
        finished |= status.code().is_some();
        let mut out = String::new();
        std::io::Read::read_to_string(proc.stdout.as_mut().unwrap(), &mut out).unwrap();
        started.extend(
            out.lines()
                .filter_map(|l| l.strip_prefix("started "))
                .map(str::to_string),
        );
        assert!(
            status.success() || status.signal() == Some(9),
            "a child failed: {status:?}"
        );
        // A process that finished by itself left nothing unfinished: the round is over.
        if finished || std::time::Instant::now() > deadline || kills >= 8 {
            break;
        }
        proc = spawn(&["recover"]);
    }
    let last = run_child(db, &["recover"], &[]);
    assert!(
        last.status.success(),
        "final recovery: {}",
        String::from_utf8_lossy(&last.stderr)
    );
    (kills, started)
}

/// Every saga final as its order dictates, none reported started lost, every effect once.
async fn check_round(url: &str, started: &[String]) -> usize {
    let store = store::open(url, store::OpenMode::MustExist).await.unwrap();
    let pool = SqlitePool::connect(url).await.unwrap();
    let sagas = store
        .list(&saga::engine::store::ListQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: std::collections::HashSet<String> = sagas.iter().map(|s| s.id.to_string()).collect();
    assert!(
        started.iter().all(|id| ids.contains(id)),
        "a saga reported started was lost"
    );
    let mut completed = 0;
    for saga in &sagas {
        let order: saga::sagas::Order = serde_json::from_value(saga.data.clone()).unwrap();
        let doomed = order.amount_cents > 100_000 || order.address.country == "AQ";
        let expected = if doomed {
            SagaStatus::Compensated
        } else {
            SagaStatus::Completed
        };
        assert_eq!(
            saga.status, expected,
            "saga {} ({}): {:?}",
            saga.id, order.order_id, saga.last_error
        );
        if expected == SagaStatus::Completed {
            completed += 1;
        }
        let (live_reservations, live_charges, shipments): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM inventory_reservations WHERE order_id = ?1 AND status = 'reserved'), \
             (SELECT COUNT(*) FROM payments_charges WHERE order_id = ?1 AND status = 'charged'), \
             (SELECT COUNT(*) FROM shipments WHERE order_id = ?1)",
        )
        .bind(&order.order_id)
        .fetch_one(&pool)
        .await
        .unwrap();
        let once = i64::from(expected == SagaStatus::Completed);
        assert_eq!(
            (live_reservations, live_charges, shipments),
            (once, once, once),
            "order {}",
            order.order_id
        );
        let history = store.history(saga.id).await.unwrap();
        assert_eq!(
            history.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=history.len() as i64).collect::<Vec<_>>()
        );
    }
    let stock: i64 =
        sqlx::query_scalar("SELECT available FROM inventory_stock WHERE sku = 'widget'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        stock,
        1_000 - completed,
        "every released reservation released once"
    );
    sagas.len()
}
