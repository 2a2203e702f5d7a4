//! The CLI says only what is true and behaves as a Unix tool: nothing "to undo" where nothing
//! will be compensated, no step start recorded for a saga that was only queued, no panic on a
//! closed pipe, no colour codes in logs that are not on a terminal, and operator commands that
//! refuse a saga this program cannot run.

use std::process::Stdio;

use saga::engine::{store, Registry, SagaDefinition, SagaStatus, Step, StepContext};
use serde_json::{json, Value};

use super::*;

/// `compensations_left` of `saga show --json`.
fn to_undo(db: &Db, id: Uuid) -> Vec<String> {
    let show = db.json(&["show", &id.to_string()]);
    show["compensations_left"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

async fn show_lists_nothing_to_undo_where_nothing_will_be_compensated() {
    let db = Db::new().await;
    let done = db.saga(&[
        "run",
        "OrderSaga",
        "--data",
        &order("u1", 1_000, "US"),
        "--wait",
    ]);
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    let completed = id_of(&db.json(&["list", "--status", "completed"])["sagas"][0]);
    assert_eq!(to_undo(&db, completed), Vec::<String>::new());
    let text = stdout(&db.saga(&["show", &completed.to_string()]));
    assert!(!text.contains("to undo"), "{text}");
    assert!(!text.contains("to do"), "{text}");

    // `confirm_order` comes after the pivot (`create_shipment`): failing it for good fails the
    // saga, and nothing before the pivot is ever compensated.
    let failed = db.saga(&[
        "run",
        "OrderSaga",
        "--data",
        &order("u2", 1_000, "US"),
        "--fail-at",
        "confirm_order",
        "--wait",
    ]);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    let failed = id_of(&db.json(&["list", "--status", "failed"])["sagas"][0]);
    assert_eq!(db.status(failed).await, SagaStatus::Failed);
    assert_eq!(to_undo(&db, failed), Vec::<String>::new());
    let text = stdout(&db.saga(&["show", &failed.to_string()]));
    assert!(!text.contains("to undo"), "{text}");
    assert!(!text.contains("compensation (last step first)"), "{text}");

    // A saga whose compensation failed still has its compensations to do (a retry resumes).
    let stuck = db.saga_env(
        &[
            "run",
            "OrderSaga",
            "--data",
            &order("u3", 1_000, "US"),
            "--fail-at",
            "charge_payment",
            "--wait",
        ],
        &[("SAGA_FAULTS", "reserve_inventory/compensate=fail:always")],
    );
    assert_eq!(stuck.status.code(), Some(1), "{}", stderr(&stuck));
    let stuck = id_of(&db.json(&["list", "--status", "failed"])["sagas"][0]);
    assert_eq!(to_undo(&db, stuck), ["reserve_inventory"]);
}

async fn a_queued_saga_records_its_first_step_only_when_a_worker_runs_it() {
    let db = Db::new().await;
    let id = id_of(&db.json(&["run", "OrderSaga", "--data", &order("q1", 1_000, "FR")]));
    assert_eq!(history_types(&db, id), ["SagaStarted"]);
    let show = db.json(&["show", &id.to_string()]);
    assert_eq!(show["steps"][0]["attempts"], 0);
    assert_eq!(show["steps"][0]["status"], "pending");

    let _worker = db.worker("");
    db.until_status(id, SagaStatus::Completed).await;
    let events = db.json(&["history", &id.to_string()])["events"].clone();
    let starts: Vec<(&str, u64, bool)> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "StepStarted")
        .map(|e| {
            (
                e["step"].as_str().unwrap(),
                e["attempt"].as_u64().unwrap(),
                e["detail"]["resumed"] == json!(true),
            )
        })
        .collect();
    assert_eq!(
        starts,
        [
            ("validate_order", 1, false),
            ("reserve_inventory", 1, false),
            ("charge_payment", 1, false),
            ("create_shipment", 1, false),
            ("confirm_order", 1, false),
        ],
        "one start per step, none of them a resumption"
    );
}

#[tokio::test]
async fn a_closed_pipe_ends_a_command_quietly() {
    let db = Db::new().await;
    db.json(&["run", "OrderSaga", "--data", &order("p1", 1_000, "US")]);
    let id = id_of(&db.json(&["list"])["sagas"][0]).to_string();
    for args in [
        vec!["show", id.as_str()],
        vec!["history", id.as_str()],
        vec!["list"],
        vec!["--json", "show", id.as_str()],
    ] {
        // The reader is gone before the command writes a byte, as when `head` has exited.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = db
            .command()
            .args(&args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(141),
            "saga {args:?}: {}",
            stderr(&out)
        );
        assert_eq!(stderr(&out), "", "saga {args:?} says nothing");
    }
}

#[tokio::test]
async fn logs_carry_no_colour_codes_off_a_terminal() {
    let db = Db::new().await;
    db.json(&["run", "OrderSaga", "--data", &order("c1", 1_000, "US")]);
    let out = db
        .command()
        .args(["list"])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let logs = stderr(&out);
    assert!(!logs.is_empty(), "RUST_LOG=debug logs something");
    assert!(!logs.contains('\u{1b}'), "no escape codes: {logs:?}");
}

/// A saga of a definition that the stock `saga` binary does not register.
async fn foreign_saga(db: &Db) -> Uuid {
    let mut registry = Registry::new();
    registry
        .register(
            SagaDefinition::<Value>::new("Elsewhere", 1)
                .step(Step::new("far", |ctx: StepContext<Value>| async move {
                    Ok(ctx.data)
                }))
                .build()
                .unwrap(),
        )
        .unwrap();
    let store = store::open(&db.url, store::OpenMode::CreateIfMissing)
        .await
        .unwrap();
    saga::engine::enqueue(store.as_ref(), &registry, "Elsewhere", json!({}))
        .await
        .unwrap()
}

async fn operator_commands_refuse_a_saga_this_program_cannot_run() {
    let db = Db::new().await;
    let id = foreign_saga(&db).await;
    let before = history_types(&db, id);
    for action in ["abort", "retry"] {
        let out = db.saga(&[action, &id.to_string()]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "saga {action}: {}",
            stderr(&out)
        );
        assert_eq!(
            stderr(&out),
            format!(
                "error: cannot {action} saga {id}: its definition `Elsewhere` version 1 is not registered in this program, so none of its workers would run it"
            )
        );
    }
    assert_eq!(history_types(&db, id), before, "nothing was written");
}

on_both!(
    show_lists_nothing_to_undo_where_nothing_will_be_compensated,
    a_queued_saga_records_its_first_step_only_when_a_worker_runs_it,
    operator_commands_refuse_a_saga_this_program_cannot_run
);
