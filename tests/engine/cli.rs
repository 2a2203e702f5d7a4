//! The `saga` binary, spawned for real against real SQLite files.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use saga::engine::{store, SagaStatus};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::until;

const SAGA: &str = env!("CARGO_BIN_EXE_saga");

/// A temp database and a way to run `saga` on it.
struct Db {
    dir: tempfile::TempDir,
    url: String,
}

impl Db {
    fn new() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("cli.db").display());
        Db { dir, url }
    }

    fn saga(&self, args: &[&str]) -> Output {
        self.saga_env(args, &[])
    }

    fn saga_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(SAGA);
        cmd.args(["--database", &self.url])
            .args(args)
            .env_remove("SAGA_FAULTS")
            .env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.saga(&all);
        assert!(out.status.success(), "saga {args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Starts `saga worker` in the background; killed when the guard drops.
    fn worker(&self, faults: &str) -> Worker {
        let child = Command::new(SAGA)
            .args([
                "--database",
                &self.url,
                "worker",
                "--poll",
                "50ms",
                "--lease",
                "2s",
            ])
            .env("SAGA_FAULTS", faults)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Worker(child)
    }

    async fn status(&self, id: Uuid) -> SagaStatus {
        let store = store::open(&self.url, store::OpenMode::MustExist)
            .await
            .unwrap();
        store.get(id).await.unwrap().unwrap().status
    }

    async fn until_status(&self, id: Uuid, status: SagaStatus) {
        until(&format!("saga {id} to be {status}"), || async move {
            self.status(id).await == status
        })
        .await;
    }
}

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

fn order(id: &str, amount_cents: i64, country: &str) -> String {
    json!({
        "order_id": id,
        "customer": format!("cust-{id}"),
        "items": [{ "sku": "widget", "quantity": 1 }],
        "amount_cents": amount_cents,
        "address": { "street": "1 Main St", "city": "Springfield", "country": country }
    })
    .to_string()
}

fn id_of(v: &Value) -> Uuid {
    v["id"].as_str().unwrap().parse().unwrap()
}

fn history_types(db: &Db, id: Uuid) -> Vec<String> {
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

fn run_example(db: &Db) {
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
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test]
async fn read_commands_show_what_the_store_holds() {
    let db = Db::new();
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

    let defs = db.json(&["definitions"]);
    assert_eq!(defs["definitions"][0]["name"], "OrderSaga");
    assert_eq!(defs["definitions"][0]["steps"].as_array().unwrap().len(), 5);
    assert_eq!(defs["definitions"][0]["steps"][1]["has_compensation"], true);
}

#[tokio::test]
async fn run_wait_exits_by_outcome() {
    let db = Db::new();
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

#[tokio::test]
async fn abort_moves_a_running_saga_to_compensation() {
    let db = Db::new();
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

#[tokio::test]
async fn retry_resumes_a_failed_compensation_once_the_fault_is_gone() {
    let db = Db::new();
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

#[tokio::test]
async fn errors_are_clear_exit_with_meaning_and_write_nothing() {
    let db = Db::new();
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

#[tokio::test]
async fn a_worker_runs_sagas_started_for_it_and_stops_gracefully_on_sigterm() {
    let db = Db::new();
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
