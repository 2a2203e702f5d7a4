//! The crash-point matrix, with real processes: for OrderSaga's success path and a failure at
//! each step up to the pivot, a clean run discovers every crash point it passes through; then,
//! for each occurrence of each point, a child process is started with that point armed, must
//! die there (`std::process::abort`, as abrupt as SIGKILL), and fresh processes recover the
//! database until the saga is final. After every run the invariants are checked from the store,
//! the participants' tables and the record of published events.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use saga::engine::{store, EventKind, SagaStatus};
use sqlx::SqlitePool;

use crate::backend::{self, Backend, Schema};

/// One run's databases: the store on the test's backend, and the SQLite file of the
/// participants and of the record of published events.
pub(crate) struct Db {
    pub url: String,
    pub local: String,
    _schema: Option<Schema>,
}

impl Db {
    pub async fn new(dir: &Path, name: &str) -> Db {
        let local = format!("sqlite://{}", dir.join(format!("{name}.db")).display());
        let schema = match backend::current() {
            Backend::Sqlite => None,
            Backend::Postgres => Some(Schema::create().await),
        };
        Db {
            url: schema.as_ref().map_or(local.clone(), |s| s.url.clone()),
            local,
            _schema: schema,
        }
    }
}

pub(crate) fn child() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("crash_child")
}

pub(crate) fn run_child(db: &Db, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(child());
    cmd.args(["--database", &db.url, "--participants", &db.local])
        .args(args)
        .env_remove("SAGA_FAULTS")
        .env_remove("SAGA_CRASH_AT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The crash points a clean run of the child's `args` passes through, each with its occurrence
/// number.
pub(crate) async fn discover(dir: &Path, args: &[&str]) -> Vec<(String, usize)> {
    let db = Db::new(dir, "discover").await;
    let trace = dir.join("trace.txt");
    let out = run_child(
        &db,
        args,
        &[("SAGA_CRASH_TRACE", trace.display().to_string())],
    );
    assert!(
        out.status.success(),
        "clean run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen: HashMap<String, usize> = HashMap::new();
    std::fs::read_to_string(trace)
        .unwrap()
        .lines()
        .map(|point| {
            let n = seen.entry(point.to_string()).or_default();
            *n += 1;
            (point.to_string(), *n)
        })
        .collect()
}

/// Checks the invariants on a database whose saga has been recovered, with the events published
/// read from the `crash_deliveries` record of the child processes.
async fn check(db: &Db, expected: SagaStatus, what: &str, may_be_empty: bool) {
    check_with(db, expected, what, None, may_be_empty).await
}

/// The invariants; `published` is the set of event ids a consumer saw, or `None` to read the
/// child processes' record.
pub(crate) async fn check_with(
    db: &Db,
    expected: SagaStatus,
    what: &str,
    published: Option<&std::collections::HashSet<uuid::Uuid>>,
    may_be_empty: bool,
) {
    let store = store::open(&db.url, store::OpenMode::MustExist)
        .await
        .unwrap();
    let pool = SqlitePool::connect(&db.local).await.unwrap();
    let count = |sql: &'static str| crate::common::scalar(&pool, sql);
    let sagas = store.list(&Default::default()).await.unwrap();
    if sagas.is_empty() {
        // Died before the saga's first commit: the caller was never told it started. Only a
        // crash at the very first commit may leave that.
        assert!(may_be_empty, "{what}: the saga is gone");
        let effects = count("SELECT (SELECT COUNT(*) FROM inventory_reservations) + (SELECT COUNT(*) FROM payments_charges)").await;
        assert_eq!(effects, 0, "{what}: effects without a saga");
        return;
    }
    assert_eq!(sagas.len(), 1, "{what}");
    let saga = &sagas[0];
    // 1. Final, as expected; never stuck.
    assert_eq!(saga.status, expected, "{what}: {:?}", saga.last_error);

    // 2. Effects at most once per key, and every effect of a compensated saga undone once.
    let stock = count("SELECT available FROM inventory_stock WHERE sku = 'widget'").await;
    let charged = count("SELECT COALESCE(SUM(charged), 0) FROM payments_accounts").await;
    let shipments = count("SELECT COUNT(*) FROM shipments").await;
    let confirmations = count("SELECT COUNT(*) FROM order_confirmations").await;
    let live_reservations =
        count("SELECT COUNT(*) FROM inventory_reservations WHERE status = 'reserved'").await;
    let live_charges =
        count("SELECT COUNT(*) FROM payments_charges WHERE status = 'charged'").await;
    match expected {
        SagaStatus::Completed => {
            assert_eq!(
                (stock, charged, shipments, confirmations),
                (998, 4_000, 1, 1),
                "{what}"
            );
            assert_eq!((live_reservations, live_charges), (1, 1), "{what}");
        }
        _ => {
            assert_eq!(
                (stock, charged, shipments, confirmations),
                (1_000, 0, 0, 0),
                "{what}"
            );
            assert_eq!((live_reservations, live_charges), (0, 0), "{what}");
        }
    }

    // 3. A valid history: gapless, no step completed or compensated twice, compensations in
    //    reverse order.
    let history = store.history(saga.id).await.unwrap();
    assert_sound(&history, what);
    let position = |step: &Option<String>| {
        saga.steps
            .iter()
            .position(|s| Some(&s.name) == step.as_ref())
            .unwrap()
    };
    let compensated: Vec<usize> = history
        .iter()
        .filter(|e| e.kind == EventKind::StepCompensated)
        .map(|e| position(&e.step))
        .collect();
    assert!(
        compensated.windows(2).all(|w| w[0] > w[1]),
        "{what}: compensations out of order {compensated:?}"
    );

    // 4. Every transition's event was published at least once; a consumer deduping by id sees
    //    each once (the record holds one row per id).
    match published {
        Some(ids) => {
            for e in &history {
                assert!(
                    ids.contains(&e.event_id),
                    "{what}: {} #{} was never published",
                    e.kind,
                    e.seq
                );
            }
        }
        None => assert_published(&pool, &history, what).await,
    }
    // ...and nothing was published that is not in the history (no event before its commit, none
    // of a transaction that rolled back).
    let committed: std::collections::HashSet<uuid::Uuid> =
        history.iter().map(|e| e.event_id).collect();
    let delivered: Vec<uuid::Uuid> = match published {
        Some(ids) => ids.iter().copied().collect(),
        None => sqlx::query_scalar::<_, String>("SELECT event_id FROM crash_deliveries")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|id| id.parse().unwrap())
            .collect(),
    };
    assert!(
        delivered.iter().all(|id| committed.contains(id)),
        "{what}: an event was published that never committed"
    );
}

/// The matrix: for each crash point a clean run of the child's `start` passes (each
/// occurrence), a child is started with that point armed and must die there, then `recover`
/// runs until it ends, and `check` is given the database, what the run was, and whether the
/// saga may be gone (a crash at the very first commit). Returns how many points it covered.
pub(crate) async fn crash_each<F, Fut>(
    dir: &Path,
    start: &[&str],
    recover: &[&str],
    run: Matrix,
    mut check: F,
) -> usize
where
    F: FnMut(Db, String, bool) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let points = discover(dir, start).await;
    assert!(points.len() >= 7, "discovered only {points:?}");
    let mut unreached = Vec::new();
    for (i, (point, n)) in points.iter().enumerate() {
        let what = format!("crash at {point}:{n} ({})", start.join(" "));
        let db = Db::new(dir, &format!("run{i}")).await;
        let crashed = run_child(&db, start, &[("SAGA_CRASH_AT", format!("{point}:{n}"))]);
        if run.racy && crashed.status.success() {
            // A late occurrence this run did not reach: it ran to its end, checked below.
            unreached.push(format!("{point}:{n}"));
        } else {
            assert_eq!(
                crashed.status.signal(),
                Some(6),
                "{what}: the child did not die there: {crashed:?}"
            );
        }
        let crash_recovery = run.crash_recovery;
        if crash_recovery && i % 3 == 0 {
            let again = run_child(
                &db,
                recover,
                &[("SAGA_CRASH_AT", "after_commit:1".to_string())],
            );
            assert!(
                again.status.success() || again.status.signal() == Some(6),
                "{what}: {again:?}"
            );
        }
        let recovered = run_child(&db, recover, &[]);
        assert!(
            recovered.status.success(),
            "{what}: recovery failed: {}",
            String::from_utf8_lossy(&recovered.stderr)
        );
        check(db, what, point == "before_commit" && *n == 1).await;
    }
    // Races change a few occurrence counts from run to run, not how many points there are.
    assert!(
        unreached.len() * 10 <= points.len(),
        "{} of {} crash points not reached: {unreached:?}",
        unreached.len(),
        points.len()
    );
    points.len()
}

/// How [`crash_each`] runs.
#[derive(Clone, Copy)]
pub(crate) struct Matrix {
    /// Every third run also dies at the first commit of a recovery.
    pub crash_recovery: bool,
    /// The saga has commit attempts that race (a parent told of its child's end by two paths,
    /// one of whose commits is then refused), so an occurrence near the end may not come in a
    /// given run: such a run must end well, and at most one in ten may.
    pub racy: bool,
}

/// Checks that `history` is sound: numbered from 1 without gaps, and no step completed twice.
pub(crate) fn assert_sound(history: &[saga::engine::HistoryEvent], what: &str) {
    assert_eq!(
        history.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=history.len() as i64).collect::<Vec<_>>(),
        "{what}"
    );
    let mut completed = HashMap::new();
    for e in history
        .iter()
        .filter(|e| e.kind == EventKind::StepCompleted)
    {
        *completed.entry(e.step.clone()).or_insert(0) += 1;
    }
    assert!(
        completed.values().all(|&n| n == 1),
        "{what}: a step completed twice"
    );
}

/// Checks that every event of `history` was published at least once, by the record the child
/// processes keep in `pool`.
pub(crate) async fn assert_published(
    pool: &SqlitePool,
    history: &[saga::engine::HistoryEvent],
    what: &str,
) {
    for e in history {
        let delivered: Option<i64> =
            sqlx::query_scalar("SELECT deliveries FROM crash_deliveries WHERE event_id = ?1")
                .bind(e.event_id.to_string())
                .fetch_optional(pool)
                .await
                .unwrap();
        assert!(
            delivered.unwrap_or(0) >= 1,
            "{what}: {} #{} of saga {} was never published",
            e.kind,
            e.seq,
            e.saga_id
        );
    }
}

/// Runs the whole matrix for one scenario and returns how many crash points it covered.
async fn matrix(fail_at: Option<&str>, expected: SagaStatus) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let mut start = vec!["start", "--order-id", "o1"];
    let mut recover = vec!["recover"];
    if let Some(step) = fail_at {
        start.extend(["--fail-at", step]);
        recover.extend(["--fail-at", step]);
    }
    let run = Matrix {
        crash_recovery: true,
        racy: false,
    };
    crash_each(
        dir.path(),
        &start,
        &recover,
        run,
        |db, what, may_be_empty| async move { check(&db, expected, &what, may_be_empty).await },
    )
    .await
}

async fn every_crash_point_of_the_success_path_recovers() {
    let covered = matrix(None, SagaStatus::Completed).await;
    println!("success path: {covered} crash points");
}

async fn every_crash_point_with_validation_failing_recovers() {
    let covered = matrix(Some("validate_order"), SagaStatus::Compensated).await;
    println!("validate_order failing: {covered} crash points");
}

async fn every_crash_point_with_reservation_failing_recovers() {
    let covered = matrix(Some("reserve_inventory"), SagaStatus::Compensated).await;
    println!("reserve_inventory failing: {covered} crash points");
}

async fn every_crash_point_with_payment_failing_recovers() {
    let covered = matrix(Some("charge_payment"), SagaStatus::Compensated).await;
    println!("charge_payment failing: {covered} crash points");
}

async fn every_crash_point_with_shipment_failing_recovers() {
    let covered = matrix(Some("create_shipment"), SagaStatus::Compensated).await;
    println!("create_shipment failing: {covered} crash points");
}

on_both!(multi: every_crash_point_of_the_success_path_recovers, every_crash_point_with_validation_failing_recovers, every_crash_point_with_reservation_failing_recovers, every_crash_point_with_payment_failing_recovers, every_crash_point_with_shipment_failing_recovers);
