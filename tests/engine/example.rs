//! The `order_saga` and `trip` examples, run for real as a user would (cargo builds examples for
//! `cargo test`).

use std::path::PathBuf;
use std::process::{Command, Output};

use sqlx::SqlitePool;

fn example(name: &str) -> PathBuf {
    // target/debug/deps/engine-<hash> -> target/debug/examples/NAME
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

fn run(url: &str, args: &[&str]) -> Output {
    run_example("order_saga", url, args)
}

fn run_example(name: &str, url: &str, args: &[&str]) -> Output {
    Command::new(example(name))
        .args(["--database", url])
        .args(args)
        .env_remove("SAGA_FAULTS")
        .output()
        .expect("the example runs")
}

async fn count(url: &str, status: &str) -> i64 {
    let pool = SqlitePool::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT COUNT(*) FROM saga_instances WHERE status = ?1")
        .bind(status)
        .fetch_one(&pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_example_shows_each_outcome_and_can_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    for round in 1..=2 {
        let out = run(&url, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.matches("  => completed").count(), 1, "{stdout}");
        assert_eq!(stdout.matches("  => compensated").count(), 2, "{stdout}");
        assert!(stdout.contains("card declined"), "{stdout}");
        assert!(stdout.contains("no carrier delivers to AQ"), "{stdout}");
        assert_eq!(count(&url, "completed").await, round);
        assert_eq!(count(&url, "compensated").await, 2 * round);
    }
}

#[tokio::test]
async fn fail_at_forces_a_failure_at_the_named_step() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let out = run(&url, &["--fail-at", "create_shipment"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let undo: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("StepCompensated"))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(undo, ["charge_payment", "reserve_inventory"], "{stdout}");
    assert!(stdout.contains("payment: refunded"), "{stdout}");

    let out = run(&url, &["--fail-at", "no_such_step"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: --fail-at: OrderSaga has no step named `no_such_step`"
    );
}

#[tokio::test]
async fn the_example_over_events_shows_the_same_outcomes_and_the_event_flow() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let out = run(&url, &["--events"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_three_outcomes_over_events(&stdout);
    assert_eq!(count(&url, "completed").await, 1);
    assert_eq!(count(&url, "compensated").await, 2);
}

/// What `order_saga --events` prints for its three orders, in one process or across several:
/// one completed, two compensated, and the commands and replies between them.
pub fn assert_three_outcomes_over_events(stdout: &str) {
    assert_eq!(stdout.matches("  => completed").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("  => compensated").count(), 2, "{stdout}");
    for flow in [
        "ReserveInventory",
        "ChargePayment",
        "RefundPayment",
        "ReleaseInventory",
        "ParticipantReply",
    ] {
        assert!(stdout.contains(flow), "{flow} missing from {stdout}");
    }
    assert!(stdout.contains("failure: card declined"), "{stdout}");
    assert!(
        stdout.contains("inventory: released; payment: refunded"),
        "{stdout}"
    );
}

#[tokio::test]
async fn the_trip_example_completes_the_paid_trip_and_compensates_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("trips.db").display());
    let out = run_example("trip", &url, &["--pay-within", "1s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (paid, unpaid) = stdout.split_once("for bob").unwrap();
    assert!(paid.contains("  => completed"), "{stdout}");
    assert!(
        paid.contains("bookings: 3 made, 0 cancelled; paid $1200.00; loyalty points 100"),
        "{stdout}"
    );
    assert!(
        paid.contains("(loyalty, started by earn_points): completed"),
        "{stdout}"
    );
    assert!(
        unpaid
            .contains("  => compensated: `await_payment` failed: no signal `paid` came within 1s"),
        "{stdout}"
    );
    assert!(
        unpaid.contains("bookings: 3 made, 3 cancelled; paid $0.00; loyalty points 0"),
        "{stdout}"
    );
    // The parallel bookings start in one go, before any completes.
    let starts = paid.find("StepStarted          book_car").unwrap();
    assert!(starts < paid.find("StepCompleted").unwrap(), "{stdout}");
    assert_eq!(
        count(&url, "completed").await,
        2,
        "the trip and its loyalty child"
    );
    assert_eq!(count(&url, "compensated").await, 1);
}
