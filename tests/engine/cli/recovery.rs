//! Instant recovery: a worker killed while it holds sagas (leases of ten minutes) is replaced by
//! one that resumes them at once, when it can prove the holder dead (same machine) or carries
//! the holder's node id; a holder that is alive is never preempted.

use std::time::Instant;

use saga::engine::store::OpenMode;
use saga::engine::StepStatus;

use super::*;
use crate::common::until;

const SAGAS: usize = 8;

/// `saga worker` with ten-minute leases; returns once it has started (it says so on stderr),
/// with its lease owner.
fn worker(db: &Db, extra: &[&str], faults: &str) -> (Worker, String) {
    let mut cmd = db.command();
    cmd.args(["worker", "--lease", "10m", "--poll", "50ms"])
        .args(extra)
        .env("SAGA_FAULTS", faults);
    let (worker, rest) = spawn_saying(cmd, "worker ");
    let owner = rest.split(" on ").next().unwrap().to_string();
    (worker, owner)
}

/// Sagas queued for a worker.
fn queue(db: &Db, tag: &str) -> Vec<Uuid> {
    (0..SAGAS)
        .map(|i| {
            id_of(&db.json(&[
                "run",
                "OrderSaga",
                "--data",
                &order(&format!("{tag}{i}"), 1_000, "FR"),
            ]))
        })
        .collect()
}

/// Waits until `owner` holds every saga in `ids`, each at `confirm_order` (where the fault
/// makes it hang).
async fn held_by(db: &Db, ids: &[Uuid], owner: &str) {
    let store = store::open(&db.url, OpenMode::MustExist).await.unwrap();
    until(&format!("{owner} to hold every saga"), || {
        let store = store.clone();
        async move {
            for id in ids {
                let saga = store.get(*id).await.unwrap().unwrap();
                if saga.lease_owner.as_deref() != Some(owner)
                    || saga.steps[4].status != StepStatus::Running
                {
                    return false;
                }
            }
            true
        }
    })
    .await;
}

async fn kill(mut worker: Worker) {
    worker.0.kill().unwrap(); // SIGKILL
    worker.0.wait().unwrap();
}

/// Kills a worker holding sagas and measures how long the next one takes to finish them.
async fn resumes_at_once(extra: &[&str], how: &str) {
    let db = Db::new().await;
    let ids = queue(&db, how);
    let (first, owner) = worker(&db, extra, "confirm_order=hang");
    held_by(&db, &ids, &owner).await;
    kill(first).await;

    let killed = Instant::now();
    let (_second, next) = worker(&db, extra, "");
    for id in &ids {
        db.until_status(*id, SagaStatus::Completed).await;
    }
    println!(
        "{how}: {SAGAS} sagas held by a killed worker ({owner}) resumed and completed by {next} {:?} after the kill, with leases of 10 minutes",
        killed.elapsed()
    );
    for id in &ids {
        let history = history_types(&db, *id);
        let confirms = history
            .iter()
            .filter(|e| *e == "StepStarted confirm_order")
            .count();
        assert_eq!(confirms, 2, "cut off once, run again once: {history:?}");
    }
}

async fn a_worker_killed_holding_sagas_is_replaced_at_once_on_this_machine() {
    resumes_at_once(&[], "proven dead").await;
}

async fn a_worker_restarted_with_its_node_id_resumes_its_sagas_at_once() {
    resumes_at_once(&["--node-id", "worker-1"], "same node id").await;
}

async fn a_live_holder_is_never_preempted() {
    let db = Db::new().await;
    let ids = queue(&db, "live");
    let (first, owner) = worker(&db, &[], "confirm_order=hang");
    held_by(&db, &ids, &owner).await;
    // A second worker has started (and looked for dead holders) once it says so.
    let (second, other) = worker(&db, &[], "");
    assert_ne!(owner, other);
    let store = store::open(&db.url, OpenMode::MustExist).await.unwrap();
    for id in &ids {
        let saga = store.get(*id).await.unwrap().unwrap();
        assert_eq!(saga.lease_owner.as_deref(), Some(owner.as_str()), "{id}");
        assert_eq!(saga.status, SagaStatus::Running);
    }
    kill(second).await;
    kill(first).await;
}

on_both!(
    a_worker_killed_holding_sagas_is_replaced_at_once_on_this_machine,
    a_worker_restarted_with_its_node_id_resumes_its_sagas_at_once,
    a_live_holder_is_never_preempted
);
