//! The trip on both backends, with the agency's bookings and points in a real SQLite file:
//! flight, hotel and car booked at once; paid in time, it earns points in a loyalty child saga
//! and completes; never paid, or with a branch failing, or failing after its child completed, or
//! with its child compensated, it is compensated, every booking (and the child's points) undone,
//! in reverse order.

use std::time::Duration;

use saga::engine::{fault::FaultPlan, EventKind, HistoryEvent, Mediator, Registry, SagaStatus};
use saga::sagas::trip::{self, Agency, Trip};

use crate::common::*;

async fn deployment(env: &Env, faults: FaultPlan, pay_within: Duration) -> (Mediator, Agency) {
    let mut registry = Registry::new();
    trip::register(&mut registry, &env.local, pay_within).unwrap();
    let mediator = fast(Mediator::builder(env.store.clone(), registry).faults(faults)).await;
    (mediator, Agency::lazy(&env.local).unwrap())
}

fn position(history: &[HistoryEvent], line: &str) -> usize {
    lines(history)
        .iter()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("no `{line}` in {:#?}", lines(history)))
}

async fn pay(m: &Mediator, id: uuid::Uuid) {
    let sent = m
        .signal(id, "paid", &serde_json::json!({ "amount": 120_000 }))
        .await;
    assert!(sent.is_ok(), "{sent:?}");
}

on_both!(
    multi: a_paid_trip_books_everything_at_once_and_earns_points_in_a_child,
    an_unpaid_trip_is_compensated_every_booking_cancelled,
    a_branch_failing_cancels_the_others_after_they_finish,
    a_failure_after_the_child_completed_compensates_the_child_saga,
    a_child_that_ends_compensated_fails_the_parent_step,
    a_queued_trip_paid_while_it_waits_completes
);

async fn a_paid_trip_books_everything_at_once_and_earns_points_in_a_child() {
    let env = Env::new().await;
    let (m, agency) = deployment(&env, FaultPlan::default(), Duration::from_secs(60)).await;
    let id = m.start(trip::NAME, &Trip::new("t1", "ada")).await.unwrap();
    pay(&m, id).await;
    let done = wait(&m, id).await;
    assert_eq!(done.status, SagaStatus::Completed, "{:?}", done.last_error);
    let t: Trip = serde_json::from_value(done.data.clone()).unwrap();
    assert_eq!(
        (t.flight.as_deref(), t.hotel.as_deref(), t.car.as_deref()),
        (Some("flight-t1"), Some("hotel-t1"), Some("car-t1")),
        "every branch's field merged"
    );
    assert_eq!((t.paid, t.points), (120_000, 100));
    assert_eq!(agency.bookings("t1").await.unwrap(), (3, 0));
    assert_eq!(agency.points("ada").await.unwrap(), 100);
    let history = env.store.history(id).await.unwrap();
    assert_gapless(&history);
    // The three branches start in one commit, before any of them completes.
    assert_eq!(
        lines(&history)[1..4],
        [
            "StepStarted book_flight",
            "StepStarted book_hotel",
            "StepStarted book_car"
        ]
    );
    assert_eq!(history[1].at, history[3].at, "one commit");
    let child = env.store.children_of(id).await.unwrap();
    assert_eq!(child.len(), 1);
    assert_eq!(child[0].1, "earn_points");
    assert_eq!(
        env.store.parent_of(child[0].0).await.unwrap(),
        Some((id, "earn_points".into()))
    );
    let started = history
        .iter()
        .find(|e| e.kind == EventKind::ChildStarted)
        .unwrap();
    assert_eq!(started.detail["child_id"], serde_json::json!(child[0].0));
    let finished = history
        .iter()
        .find(|e| e.kind == EventKind::ChildFinished)
        .unwrap();
    assert_eq!(finished.detail["status"], "completed");
    let loyalty = env.store.get(child[0].0).await.unwrap().unwrap();
    assert_eq!(
        (loyalty.definition.as_str(), loyalty.status),
        (trip::LOYALTY, SagaStatus::Completed)
    );
}

async fn an_unpaid_trip_is_compensated_every_booking_cancelled() {
    let env = Env::new().await;
    let (m, agency) = deployment(&env, FaultPlan::default(), Duration::from_millis(500)).await;
    let id = m.start(trip::NAME, &Trip::new("t2", "bob")).await.unwrap();
    let done = wait(&m, id).await;
    assert_eq!(
        done.status,
        SagaStatus::Compensated,
        "{:?}",
        done.last_error
    );
    assert_eq!(agency.bookings("t2").await.unwrap(), (3, 3));
    let history = env.store.history(id).await.unwrap();
    assert_eq!(
        compensations(&history),
        [
            "CompensationStarted book_car",
            "StepCompensated book_car",
            "CompensationStarted book_hotel",
            "StepCompensated book_hotel",
            "CompensationStarted book_flight",
            "StepCompensated book_flight",
        ]
    );
    assert!(
        env.store.children_of(id).await.unwrap().is_empty(),
        "no child before payment"
    );
}

async fn a_branch_failing_cancels_the_others_after_they_finish() {
    let env = Env::new().await;
    let faults = FaultPlan::default().fail_at("book_hotel");
    let (m, agency) = deployment(&env, faults, Duration::from_secs(60)).await;
    let id = m.start(trip::NAME, &Trip::new("t3", "cy")).await.unwrap();
    let done = wait(&m, id).await;
    assert_eq!(
        done.status,
        SagaStatus::Compensated,
        "{:?}",
        done.last_error
    );
    assert_eq!(
        done.last_error.as_deref(),
        Some("`book_hotel` failed: injected failure at book_hotel (attempt 1)")
    );
    assert_eq!(
        agency.bookings("t3").await.unwrap(),
        (2, 2),
        "flight and car booked, then cancelled"
    );
    let history = env.store.history(id).await.unwrap();
    // Every branch ended before the first compensation started.
    let first_undo = position(&history, "CompensationStarted book_car");
    assert!(position(&history, "StepCompleted book_flight") < first_undo);
    assert!(position(&history, "StepCompleted book_car") < first_undo);
    assert!(position(&history, "StepFailed book_hotel") < first_undo);
    assert_eq!(
        compensations(&history),
        [
            "CompensationStarted book_car",
            "StepCompensated book_car",
            "CompensationStarted book_flight",
            "StepCompensated book_flight",
        ]
    );
}

async fn a_failure_after_the_child_completed_compensates_the_child_saga() {
    let env = Env::new().await;
    let faults = FaultPlan::default().fail_at("confirm");
    let (m, agency) = deployment(&env, faults, Duration::from_secs(60)).await;
    let id = m.start(trip::NAME, &Trip::new("t4", "di")).await.unwrap();
    pay(&m, id).await;
    let done = wait(&m, id).await;
    assert_eq!(
        done.status,
        SagaStatus::Compensated,
        "{:?}",
        done.last_error
    );
    assert_eq!(agency.bookings("t4").await.unwrap(), (3, 3));
    assert_eq!(
        agency.points("di").await.unwrap(),
        0,
        "the child's points revoked"
    );
    let (child, _) = env.store.children_of(id).await.unwrap()[0].clone();
    let loyalty = env.store.get(child).await.unwrap().unwrap();
    assert_eq!(loyalty.status, SagaStatus::Compensated);
    let child_history = lines(&env.store.history(child).await.unwrap());
    assert!(
        child_history.contains(&"StepCompensated credit_points".to_string()),
        "{child_history:#?}"
    );
    let history = env.store.history(id).await.unwrap();
    assert_eq!(
        compensations(&history)[..2],
        [
            "CompensationStarted earn_points",
            "StepCompensated earn_points"
        ]
    );
    assert!(
        position(&history, "ChildFinished earn_points")
            < position(&history, "StepCompensated earn_points")
    );
}

async fn a_child_that_ends_compensated_fails_the_parent_step() {
    let env = Env::new().await;
    let faults = FaultPlan::default().fail_at("credit_points");
    let (m, agency) = deployment(&env, faults, Duration::from_secs(60)).await;
    let id = m.start(trip::NAME, &Trip::new("t5", "eve")).await.unwrap();
    pay(&m, id).await;
    let done = wait(&m, id).await;
    assert_eq!(
        done.status,
        SagaStatus::Compensated,
        "{:?}",
        done.last_error
    );
    let error = done.last_error.unwrap();
    assert!(
        error.starts_with("`earn_points` failed: the child saga `loyalty`"),
        "{error}"
    );
    assert!(error.ends_with("ended compensated: `credit_points` failed: injected failure at credit_points (attempt 1)"), "{error}");
    assert_eq!(agency.bookings("t5").await.unwrap(), (3, 3));
    let history = env.store.history(id).await.unwrap();
    assert!(
        !lines(&history).contains(&"CompensationStarted earn_points".to_string()),
        "the child undid itself"
    );
}

/// Queued (its first step a parallel group, started by whichever worker claims it), and paid
/// only once it waits: the mediator that takes the signal starts the child next.
async fn a_queued_trip_paid_while_it_waits_completes() {
    let env = Env::new().await;
    let (m, agency) = deployment(&env, FaultPlan::default(), Duration::from_secs(60)).await;
    let data = serde_json::to_value(Trip::new("t6", "fay")).unwrap();
    let id = saga::engine::enqueue(env.store.as_ref(), m.registry(), trip::NAME, data)
        .await
        .unwrap();
    until("the trip waits for its payment", || async {
        let history = env.store.history(id).await.unwrap();
        history.iter().any(|e| e.kind == EventKind::SignalAwaited)
    })
    .await;
    pay(&m, id).await;
    let done = wait(&m, id).await;
    assert_eq!(done.status, SagaStatus::Completed, "{:?}", done.last_error);
    assert_eq!(agency.bookings("t6").await.unwrap(), (3, 0));
    assert_eq!(agency.points("fay").await.unwrap(), 100);
}
