//! The crash-point matrix for timers and signals, with real processes: a booking (a hold, a
//! timer, a payment signal with a deadline) runs once cleanly to discover every crash point it
//! passes, then once per occurrence with that point armed, dying there; fresh processes recover
//! it (and, for a paid booking, the payer sends its payment again, with the same signal id, as
//! one that never heard back would). Paid at once (the signal kept before the saga reaches its
//! wait), it must complete;
//! unpaid, its wait runs out and it must be compensated. After every run: final as expected,
//! the hold taken once and released once when compensated, the timer fired once and never
//! early, the signal taken at most once, the history gapless, and every event published.

use saga::engine::{store, EventKind, SagaStatus};
use saga::sagas::booking::Holds;
use sqlx::SqlitePool;

use crate::crash::{assert_published, assert_sound, crash_each, Db, Matrix};

async fn check(db: &Db, expected: SagaStatus, what: &str, may_be_empty: bool) {
    let store = store::open(&db.url, store::OpenMode::MustExist)
        .await
        .unwrap();
    let holds = Holds::open(&db.local)
        .await
        .unwrap()
        .counts()
        .await
        .unwrap();
    let sagas = store.list(&Default::default()).await.unwrap();
    if sagas.is_empty() {
        assert!(may_be_empty, "{what}: the saga is gone");
        assert_eq!(holds, (0, 0), "{what}: a hold without a saga");
        return;
    }
    assert_eq!(sagas.len(), 1, "{what}");
    let saga = &sagas[0];
    assert_eq!(saga.status, expected, "{what}: {:?}", saga.last_error);
    let released = i64::from(expected == SagaStatus::Compensated);
    assert_eq!(holds, (1, released), "{what}: holds (taken, released)");

    let history = store.history(saga.id).await.unwrap();
    assert_sound(&history, what);
    let count = |kind: EventKind| history.iter().filter(|e| e.kind == kind).count();
    assert_eq!(
        count(EventKind::TimerFired),
        1,
        "{what}: the timer fired once"
    );
    assert_eq!(
        count(EventKind::TimerScheduled),
        1,
        "{what}: scheduled once, never again"
    );
    let fires_at = history
        .iter()
        .find(|e| e.kind == EventKind::TimerScheduled)
        .and_then(|e| e.detail["fires_at"].as_i64())
        .unwrap();
    let fired = history
        .iter()
        .find(|e| e.kind == EventKind::TimerFired)
        .unwrap();
    assert!(
        fired.at >= fires_at,
        "{what}: fired {} ms early",
        fires_at - fired.at
    );
    let taken = count(EventKind::SignalReceived);
    assert_eq!(
        taken,
        usize::from(expected == SagaStatus::Completed),
        "{what}: signals taken"
    );
    if expected == SagaStatus::Compensated {
        let failed = history
            .iter()
            .find(|e| e.kind == EventKind::StepFailed)
            .unwrap();
        assert_eq!(failed.detail["kind"], "signal_timeout", "{what}");
    }

    let pool = SqlitePool::connect(&db.local).await.unwrap();
    assert_published(&pool, &history, what).await;
}

async fn matrix(pay: bool, expected: SagaStatus) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let (start, recover): (&[&str], &[&str]) = match pay {
        true => (&["booking", "--pay"], &["recover", "--pay"]),
        false => (&["booking"], &["recover"]),
    };
    let run = Matrix {
        crash_recovery: true,
        racy: false,
    };
    crash_each(
        dir.path(),
        start,
        recover,
        run,
        |db, what, may_be_empty| async move { check(&db, expected, &what, may_be_empty).await },
    )
    .await
}

async fn every_crash_point_of_a_paid_booking_recovers() {
    let covered = matrix(true, SagaStatus::Completed).await;
    println!("paid booking: {covered} crash points");
}

async fn every_crash_point_of_an_unpaid_booking_recovers() {
    let covered = matrix(false, SagaStatus::Compensated).await;
    println!("unpaid booking: {covered} crash points");
}

on_both!(multi: every_crash_point_of_a_paid_booking_recovers, every_crash_point_of_an_unpaid_booking_recovers);
