//! The acting commands of the CLI: run, abort, retry, worker.

use std::process::Command;
use std::time::Duration;

use saga::engine::SagaStatus;
use serde_json::{json, Value};
use uuid::Uuid;

use super::*;
use crate::common::until;

async fn run_wait_exits_by_outcome() {
    let db = Db::new().await;
    let ok = db.saga(&[
        "run",
        "OrderSaga",
        "--data",
        &order("r1", 1_000, "US"),
        "--wait",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("=> completed"), "{}", stdout(&ok));

    let failed = db.saga(&[
        "run",
        "OrderSaga",
        "--data",
        &order("r2", 1_000, "US"),
        "--fail-at",
        "charge_payment",
        "--wait",
    ]);
    assert_eq!(failed.status.code(), Some(1));
    let text = stdout(&failed);
    assert!(
        text.contains("StepCompensated      reserve_inventory"),
        "{text}"
    );
    assert!(
        text.contains("=> compensated: `charge_payment` failed: injected failure"),
        "{text}"
    );

    let declined = db.saga(&[
        "--json",
        "run",
        "OrderSaga",
        "--data",
        &order("r3", 900_000, "US"),
        "--wait",
    ]);
    assert_eq!(declined.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&declined.stdout).unwrap();
    assert_eq!(v["status"], "compensated");
}

async fn abort_moves_a_running_saga_to_compensation() {
    let db = Db::new().await;
    let started = db.json(&["run", "OrderSaga", "--data", &order("a1", 1_000, "US")]);
    let id = id_of(&started);
    // The worker hangs in charge_payment, after the reservation was made.
    let _worker = db.worker("charge_payment=hang");
    until("charge_payment to be running", || async {
        let show = db.json(&["show", &id.to_string()]);
        show["current_step"] == "charge_payment" && show["steps"][2]["status"] == "running"
    })
    .await;

    let out = db.saga(&["abort", &id.to_string(), "--reason", "customer cancelled"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("now compensating"),
        "{}",
        stdout(&out)
    );
    db.until_status(id, SagaStatus::Compensated).await;

    let history = history_types(&db, id);
    let aborted = history.iter().position(|l| l == "SagaAborted").unwrap();
    assert_eq!(
        history[aborted..],
        [
            "SagaAborted",
            "CompensationStarted charge_payment", // in flight when aborted: possibly done
            "StepCompensated charge_payment",
            "CompensationStarted reserve_inventory",
            "StepCompensated reserve_inventory",
            "SagaCompensated"
        ]
    );
    let events = db.json(&["history", &id.to_string()]);
    let reason = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "SagaAborted")
        .unwrap();
    assert_eq!(reason["detail"]["reason"], "customer cancelled");

    let again = db.saga(&["abort", &id.to_string()]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        stderr(&again),
        format!("error: cannot abort saga {id}: it is already compensated")
    );
}

async fn retry_resumes_a_failed_compensation_once_the_fault_is_gone() {
    let db = Db::new().await;
    let out = db.saga_env(
        &[
            "--json",
            "run",
            "OrderSaga",
            "--data",
            &order("f1", 1_000, "AQ"),
            "--wait",
        ],
        &[("SAGA_FAULTS", "charge_payment/compensate=fail:always")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "failed");
    let id = id_of(&v);
    let stats = db.json(&["stats"]);
    assert_eq!(stats["needs_attention"][0]["id"], id.to_string());
    let show = db.json(&["show", &id.to_string()]);
    assert_eq!(
        show["compensations_left"],
        json!(["charge_payment", "reserve_inventory"])
    );

    let refused = db.saga(&["retry", &id.to_string()]);
    assert_eq!(refused.status.code(), Some(0), "{}", stderr(&refused));
    assert!(stdout(&refused).contains("now compensating"));
    let _worker = db.worker("");
    db.until_status(id, SagaStatus::Compensated).await;
    let history = history_types(&db, id);
    let retried = history.iter().position(|l| l == "SagaRetried").unwrap();
    assert_eq!(
        history[retried..],
        [
            "SagaRetried",
            "CompensationStarted charge_payment",
            "StepCompensated charge_payment",
            "CompensationStarted reserve_inventory",
            "StepCompensated reserve_inventory",
            "SagaCompensated"
        ]
    );

    let again = db.saga(&["retry", &id.to_string()]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        stderr(&again),
        format!("error: cannot retry saga {id}: it is compensated and not waiting for a retry")
    );
}

async fn a_worker_runs_sagas_started_for_it_and_stops_gracefully_on_sigterm() {
    let db = Db::new().await;
    let ids: Vec<Uuid> = (0..5)
        .map(|i| {
            id_of(&db.json(&[
                "run",
                "OrderSaga",
                "--data",
                &order(&format!("w{i}"), 1_000, "FR"),
            ]))
        })
        .collect();
    let mut worker = db.worker("");
    for id in &ids {
        db.until_status(*id, SagaStatus::Completed).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &worker.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(status) = worker.0.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the worker stops on SIGTERM");
    assert!(exited.success());
}

async fn a_worker_killed_mid_batch_loses_nothing_and_the_next_worker_finishes() {
    let db = Db::new().await;
    let ids: Vec<Uuid> = (0..30)
        .map(|i| {
            id_of(&db.json(&[
                "run",
                "OrderSaga",
                "--data",
                &order(&format!("k{i}"), 1_000, "FR"),
            ]))
        })
        .collect();
    // Slow confirmations keep the batch busy long enough to be killed mid-run.
    let mut first = db
        .command()
        .args(["worker", "--poll", "20ms", "--lease", "1s"])
        .env("SAGA_FAULTS", "confirm_order=fail:3")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    until("some sagas to complete", || async {
        let list = db.json(&["list", "--status", "completed", "--limit", "100"]);
        list["sagas"].as_array().unwrap().len() >= 3
    })
    .await;
    let killed = Command::new("kill")
        .args(["-9", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = first.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let unfinished = db.json(&[
        "list",
        "--status",
        "running",
        "--status",
        "compensating",
        "--limit",
        "100",
    ]);
    assert!(
        !unfinished["sagas"].as_array().unwrap().is_empty(),
        "the kill came mid-batch"
    );

    let _second = db.worker("");
    for id in &ids {
        db.until_status(*id, SagaStatus::Completed).await;
    }
    let all = db.json(&["list", "--limit", "100"]);
    assert!(all["sagas"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["status"] == "completed"));
    // Each order charged and shipped exactly once, whatever ran twice.
    let pool = sqlx::SqlitePool::connect(&db.local).await.unwrap();
    let (charges, shipments, confirmations) = crate::common::delivered(&pool).await;
    assert_eq!((charges, shipments, confirmations), (30, 30, 30));
    let stock: i64 =
        sqlx::query_scalar("SELECT available FROM inventory_stock WHERE sku = 'widget'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stock, 1_000 - 30);
}

on_both!(
    run_wait_exits_by_outcome,
    abort_moves_a_running_saga_to_compensation,
    retry_resumes_a_failed_compensation_once_the_fault_is_gone,
    a_worker_runs_sagas_started_for_it_and_stops_gracefully_on_sigterm,
    a_worker_killed_mid_batch_loses_nothing_and_the_next_worker_finishes,
);
