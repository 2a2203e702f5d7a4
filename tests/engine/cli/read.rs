//! The read commands and the error cases of the CLI.

use std::process::Command;

use uuid::Uuid;

use super::*;

async fn read_commands_show_what_the_store_holds() {
    let db = Db::new().await;
    run_example(&db);

    let list = db.json(&["list"]);
    let sagas = list["sagas"].as_array().unwrap();
    assert_eq!(sagas.len(), 3);
    let ids: Vec<&str> = sagas.iter().map(|s| s["id"].as_str().unwrap()).collect();
    let mut newest_first = ids.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, newest_first, "newest first");
    let statuses: Vec<&str> = sagas
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["compensated", "compensated", "completed"]);
    assert!(list["next_before"].is_null());

    // Filters and pages.
    assert_eq!(
        db.json(&["list", "--status", "compensated"])["sagas"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        db.json(&["list", "--definition", "Nope"])["sagas"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        db.json(&["list", "--since", "1h"])["sagas"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        db.json(&["list", "--since", "2999-01-01T00:00:00Z"])["sagas"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let page = db.json(&["list", "--limit", "2"]);
    let cursor = page["next_before"].as_str().unwrap().to_string();
    assert_eq!(cursor, ids[1]);
    let rest = db.json(&["list", "--limit", "2", "--before", &cursor]);
    assert_eq!(rest["sagas"][0]["id"].as_str().unwrap(), ids[2]);

    // The no-carrier saga: refund then release, shown distinctly.
    let no_carrier = ids[0];
    let show = db.json(&["show", &no_carrier[..18]]);
    assert_eq!(show["id"].as_str().unwrap(), no_carrier);
    assert_eq!(show["status"], "compensated");
    assert_eq!(show["definition"], "OrderSaga");
    let steps: Vec<(&str, &str)> = show["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("validate_order", "completed"),
            ("reserve_inventory", "compensated"),
            ("charge_payment", "compensated"),
            ("create_shipment", "failed"),
            ("confirm_order", "pending")
        ]
    );
    assert_eq!(show["steps"][3]["kind"], "pivot");
    assert!(show["steps"][1]["compensation"]["duration_ms"].is_i64());
    assert!(show["last_error"]
        .as_str()
        .unwrap()
        .contains("no carrier delivers to AQ"));
    assert_eq!(show["data"]["address"]["country"], "AQ");
    let human = stdout(&db.saga(&["show", no_carrier]));
    assert!(human.contains("status      compensated"), "{human}");
    assert!(human.contains("compensation (last step first)"), "{human}");
    assert!(human.contains("no carrier delivers to AQ"), "{human}");

    assert_eq!(
        history_types(&db, no_carrier.parse().unwrap()),
        [
            "SagaStarted",
            "StepStarted validate_order",
            "StepCompleted validate_order",
            "StepStarted reserve_inventory",
            "StepCompleted reserve_inventory",
            "StepStarted charge_payment",
            "StepCompleted charge_payment",
            "StepStarted create_shipment",
            "StepFailed create_shipment",
            "CompensationStarted charge_payment",
            "StepCompensated charge_payment",
            "CompensationStarted reserve_inventory",
            "StepCompensated reserve_inventory",
            "SagaCompensated"
        ]
    );
    let human = stdout(&db.saga(&["history", no_carrier]));
    assert!(human.lines().next().unwrap().starts_with("SEQ"), "{human}");
    assert!(human.contains("StepCompensated"), "{human}");

    let stats = db.json(&["stats"]);
    let counts: Vec<(String, u64)> = stats["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["status"].as_str().unwrap().to_string(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [("completed".to_string(), 1), ("compensated".to_string(), 2)]
    );
    assert!(stats["needs_attention"].as_array().unwrap().is_empty());
    let human = stdout(&db.saga(&["stats"]));
    assert!(
        human.contains("OrderSaga") && human.contains("no failed sagas need attention"),
        "{human}"
    );

    // Both OrderSagas (the one over events, which a broker's `OrderPlaced` starts, and the
    // local), the booking, and the trip with its loyalty child, sorted by name.
    let defs = db.json(&["definitions"]);
    let names: Vec<&str> = defs["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "EventDrivenOrderSaga",
            "OrderSaga",
            "booking",
            "loyalty",
            "trip"
        ]
    );
    assert_eq!(defs["definitions"][1]["steps"].as_array().unwrap().len(), 5);
    assert_eq!(defs["definitions"][1]["steps"][1]["has_compensation"], true);
    assert_eq!(
        defs["definitions"][1]["steps"][1]["compensation_name"],
        "release_inventory"
    );
    let text = stdout(&db.saga(&["definitions"]));
    assert!(text.contains("refund_payment"), "{text}");
    // In flight per version, counted in the store (all three sagas here are finished).
    assert_eq!(defs["definitions"][1]["in_flight"], 0);
    // What a step waits for: nothing for one run in the mediator, a reply's command for one a
    // participant runs.
    let waits = |d: usize, s: usize| defs["definitions"][d]["steps"][s]["waits_for"].clone();
    assert_eq!(waits(1, 1), Value::Null, "{defs:#}");
    assert_eq!(waits(0, 1), "reply to ReserveInventory", "{defs:#}");
    assert!(text.contains("OrderSaga v1  (0 in flight)"), "{text}");
    // Without a store there is nothing to count, and nothing is created.
    let dir = tempfile::tempdir().unwrap();
    let none = format!("sqlite://{}", dir.path().join("none.db").display());
    let out = Command::new(SAGA)
        .args(["--database", &none, "definitions", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let defs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(defs["definitions"][1]["in_flight"].is_null());
    assert!(!dir.path().join("none.db").exists());
}

#[tokio::test]
async fn errors_are_clear_exit_with_meaning_and_write_nothing() {
    let db = Db::new().await;
    let check = |args: &[&str], code: i32, message: &str| {
        let out = db.saga(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "saga {args:?}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(message),
            "saga {args:?}: {}",
            stderr(&out)
        );
    };
    // Read commands never create a database.
    check(&["list"], 4, "does not exist");
    check(&["show", "01a2"], 4, "cli.db` does not exist");
    assert!(!db.dir.path().join("cli.db").exists());
    // A URL no backend takes is a wrong invocation, not a store that is down.
    let odd = Command::new(SAGA)
        .args(["--database", "mysql://root@127.0.0.1/test", "list"])
        .output()
        .unwrap();
    assert_eq!(odd.status.code(), Some(2), "{}", stderr(&odd));
    assert!(
        stderr(&odd).contains("unsupported database URL `mysql://root@127.0.0.1/test`"),
        "{}",
        stderr(&odd)
    );

    let first = db.json(&["run", "OrderSaga", "--data", &order("e1", 1_000, "US")]);
    db.json(&["run", "OrderSaga", "--data", &order("e2", 1_000, "US")]);
    let rows = || db.json(&["list"])["sagas"].as_array().unwrap().len();
    assert_eq!(rows(), 2);

    let missing = Uuid::now_v7().to_string();
    check(
        &["show", &missing],
        3,
        &format!("no saga with id {missing}"),
    );
    check(&["history", "ffff"], 3, "no saga id starts with `ffff`");
    check(
        &["show", &first["id"].as_str().unwrap()[..4]],
        2,
        "is ambiguous",
    );
    check(&["show", "zz"], 2, "neither a saga id nor an id prefix");
    check(&["abort", &missing], 3, "no saga with id");
    check(
        &["run", "OrderSaga", "--data", "{not json"],
        2,
        "--data is not valid JSON",
    );
    check(
        &["run", "OrderSaga", "--data", "{\"order_id\": 1}"],
        2,
        "data does not fit saga `OrderSaga`",
    );
    check(
        &["run", "Nope", "--data", "{}"],
        3,
        "no saga named `Nope` is registered",
    );
    check(
        &["run", "OrderSaga", "--data", "@/no/such/file.json"],
        2,
        "cannot read --data file `/no/such/file.json`",
    );
    check(
        &["run", "OrderSaga", "--data", "{}", "--fail-at", "x"],
        2,
        "--wait",
    );
    check(
        &[
            "run",
            "OrderSaga",
            "--data",
            &order("e3", 1, "US"),
            "--fail-at",
            "nope",
            "--wait",
        ],
        3,
        "has no step named `nope`",
    );
    check(&["list", "--status", "lost"], 2, "unknown status `lost`");
    assert_eq!(rows(), 2, "no error wrote anything");

    let garbage = db.dir.path().join("garbage.db");
    std::fs::write(&garbage, b"this is not a database, just bytes...........................................................").unwrap();
    let out = Command::new(SAGA)
        .args([
            "--database",
            &format!("sqlite://{}", garbage.display()),
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("garbage.db"), "{}", stderr(&out));
}

on_both!(read_commands_show_what_the_store_holds);
