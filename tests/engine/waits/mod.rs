//! Timers and signals on both backends, with a real store and the booking saga's holds kept in
//! the participants' SQLite file: a timer fires after its time and survives a restart, a signal
//! sent before the wait is kept for it and taken once, a signal wait that runs out compensates,
//! bad signals are refused with nothing kept, and a bus event routed by correlation key reaches
//! the saga over a real broker.

mod bus;

use std::time::Duration;

use saga::engine::{
    fault::FaultPlan, Definition, EventKind, HistoryEvent, Mediator, Registry, SagaStatus,
};
use saga::sagas::booking::{booking, Booking, Holds};

use crate::common::*;

pub async fn registry(env: &Env, def: Definition) -> Registry {
    let mut registry = Registry::new();
    registry.register(def).unwrap();
    registry.provide(Holds::open(&env.local).await.unwrap());
    registry
}

fn detail_ms(history: &[HistoryEvent], kind: EventKind, field: &str) -> i64 {
    let e = history.iter().find(|e| e.kind == kind).unwrap();
    e.detail[field].as_i64().unwrap()
}

async fn mediator(env: &Env, registry: Registry) -> Mediator {
    fast(Mediator::builder(env.store.clone(), registry).faults(FaultPlan::default())).await
}

fn booking_data(id: &str) -> Booking {
    Booking::new(id)
}

on_both!(
    multi: a_timer_fires_after_its_time_and_survives_a_restart,
    a_signal_sent_before_the_wait_is_kept_and_taken_once,
    a_signal_wait_that_runs_out_compensates,
    bad_signals_are_refused_and_nothing_is_kept
);

async fn a_timer_fires_after_its_time_and_survives_a_restart() {
    let env = Env::new().await;
    let def = || booking(Duration::from_millis(1500), Duration::from_secs(30)).unwrap();
    let first = mediator(&env, registry(&env, def()).await).await;
    let id = first.start("booking", &booking_data("b1")).await.unwrap();
    until("the timer is scheduled", || async {
        let h = env.store.history(id).await.unwrap();
        h.iter().any(|e| e.kind == EventKind::TimerScheduled)
    })
    .await;
    // Waiting on the timer: no lease, nothing in flight, and `saga show`'s wait recorded.
    let saga = env.store.get(id).await.unwrap().unwrap();
    assert_eq!(saga.lease_owner, None);
    assert_eq!(first.in_flight(), 0, "no task waits for the timer");
    drop(first); // as a crash would
    let second = mediator(&env, registry(&env, def()).await).await;
    let saga = second
        .signal(id, "paid", &serde_json::json!({ "amount": 7 }))
        .await;
    assert!(saga.is_ok(), "{saga:?}");
    let done = wait(&second, id).await;
    assert_eq!(done.status, SagaStatus::Completed, "{:?}", done.last_error);
    let history = env.store.history(id).await.unwrap();
    assert_gapless(&history);
    assert_eq!(
        lines(&history)[3..8],
        [
            "StepStarted cool_off",
            "TimerScheduled cool_off",
            "TimerFired cool_off",
            "StepCompleted cool_off",
            "StepStarted await_payment",
        ]
    );
    let fires_at = detail_ms(&history, EventKind::TimerScheduled, "fires_at");
    let fired = history
        .iter()
        .find(|e| e.kind == EventKind::TimerFired)
        .unwrap();
    assert!(
        fired.at >= fires_at,
        "fired {} ms early",
        fires_at - fired.at
    );
    assert_eq!(
        detail_ms(&history, EventKind::TimerFired, "fires_at"),
        fires_at,
        "not moved by the restart"
    );
    let fired_count = history
        .iter()
        .filter(|e| e.kind == EventKind::TimerFired)
        .count();
    assert_eq!(fired_count, 1);
    assert_eq!(done.data["paid"], 7);
}

async fn a_signal_sent_before_the_wait_is_kept_and_taken_once() {
    let env = Env::new().await;
    let registry = registry(
        &env,
        booking(Duration::from_millis(400), Duration::from_secs(30)).unwrap(),
    )
    .await;
    let store = env.store.clone();
    let m = mediator(&env, registry.clone()).await;
    let id = m.start("booking", &booking_data("b2")).await.unwrap();
    // Sent while the saga is still on its timer, twice with the same id.
    let signal_id = uuid::Uuid::now_v7();
    let data = serde_json::json!({ "amount": 120 });
    let target = saga::engine::store::SignalTarget::Saga(id);
    let send = || {
        saga::engine::operator::signal(store.as_ref(), &registry, &target, "paid", signal_id, &data)
    };
    let first = send().await.unwrap();
    assert!(first.kept && first.woken.is_empty(), "{first:?}");
    let again = send().await.unwrap();
    assert!(!again.kept, "the same signal id is kept once");
    let done = wait(&m, id).await;
    assert_eq!(done.status, SagaStatus::Completed, "{:?}", done.last_error);
    assert_eq!(done.data["paid"], 120);
    let history = env.store.history(id).await.unwrap();
    let received: Vec<&HistoryEvent> = history
        .iter()
        .filter(|e| e.kind == EventKind::SignalReceived)
        .collect();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].detail["signal_id"],
        serde_json::json!(signal_id)
    );
    assert_eq!(done.steps[2].signal, Some(signal_id));
    // Kept once, and after the saga took it another send with the same id still changes nothing.
    assert_eq!(env.number("SELECT COUNT(*) FROM saga_signals").await, 1);
    // Its sender hears it was sent, as a retrying webhook should.
    let late = send().await.unwrap();
    assert!(!late.kept && late.woken.is_empty(), "{late:?}");
    assert_eq!(
        Holds::open(&env.local)
            .await
            .unwrap()
            .counts()
            .await
            .unwrap(),
        (1, 0)
    );
}

async fn a_signal_wait_that_runs_out_compensates() {
    let env = Env::new().await;
    let registry = registry(
        &env,
        booking(Duration::from_millis(10), Duration::from_millis(700)).unwrap(),
    )
    .await;
    let m = mediator(&env, registry).await;
    let id = m.start("booking", &booking_data("b3")).await.unwrap();
    let done = wait(&m, id).await;
    assert_eq!(
        done.status,
        SagaStatus::Compensated,
        "{:?}",
        done.last_error
    );
    let history = env.store.history(id).await.unwrap();
    assert_eq!(
        lines(&history)[7..],
        [
            "StepStarted await_payment",
            "SignalAwaited await_payment",
            "StepFailed await_payment",
            "CompensationStarted hold",
            "StepCompensated hold",
            "SagaCompensated",
        ]
    );
    let failed = history
        .iter()
        .find(|e| e.kind == EventKind::StepFailed)
        .unwrap();
    assert_eq!(failed.detail["kind"], "signal_timeout");
    let deadline = detail_ms(&history, EventKind::SignalAwaited, "deadline");
    assert!(
        failed.at >= deadline,
        "timed out {} ms early",
        deadline - failed.at
    );
    assert_eq!(
        compensations(&history),
        ["CompensationStarted hold", "StepCompensated hold"]
    );
    assert_eq!(
        Holds::open(&env.local)
            .await
            .unwrap()
            .counts()
            .await
            .unwrap(),
        (1, 1),
        "the hold is released"
    );
    // A signal for it now is refused: the saga is final.
    let late = m
        .signal(id, "paid", &serde_json::json!({ "amount": 1 }))
        .await;
    assert!(late
        .unwrap_err()
        .to_string()
        .contains("already compensated"));
}

async fn bad_signals_are_refused_and_nothing_is_kept() {
    let env = Env::new().await;
    let registry = registry(
        &env,
        booking(Duration::from_secs(30), Duration::from_secs(30)).unwrap(),
    )
    .await;
    let m = mediator(&env, registry).await;
    let id = m.start("booking", &booking_data("b4")).await.unwrap();
    let before = env.store.history(id).await.unwrap();
    let unknown = m
        .signal(id, "shipped", &serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        unknown.to_string(),
        format!("cannot signal saga {id}: no step of `booking` waits for a signal named `shipped` (it waits for: paid)")
    );
    let misfit = m
        .signal(id, "paid", &serde_json::json!({ "amount": "a lot" }))
        .await
        .unwrap_err();
    assert!(
        misfit
            .to_string()
            .contains("the signal's data does not fit"),
        "{misfit}"
    );
    let nobody = uuid::Uuid::now_v7();
    let missing = m
        .signal(nobody, "paid", &serde_json::json!({ "amount": 1 }))
        .await
        .unwrap_err();
    assert_eq!(missing.to_string(), format!("no saga with id {nobody}"));
    assert_eq!(env.number("SELECT COUNT(*) FROM saga_signals").await, 0);
    let history = env.store.history(id).await.unwrap();
    assert_eq!(
        history[..before.len()],
        before[..],
        "the history only went on"
    );
    assert!(history.iter().all(|e| e.kind != EventKind::SignalReceived));
    assert_eq!(
        env.store.get(id).await.unwrap().unwrap().status,
        SagaStatus::Running
    );
}
