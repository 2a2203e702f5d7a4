//! The crash-point matrix for parallel groups and child sagas, with real processes: a trip
//! (three bookings at once, a payment signal, a loyalty child saga) runs once cleanly to
//! discover every crash point it passes, then once per occurrence with that point armed, dying
//! there; fresh processes recover it, the payer sending its payment again with the same id.
//! Paid, it must complete with exactly one loyalty child, completed, and its points granted
//! once; unpaid, it must be compensated with every booking made cancelled and no child. Every
//! saga's history is gapless, no step of any saga completes twice, and every event is published.

use saga::engine::{store, SagaStatus};
use saga::sagas::trip::{self, Agency};
use sqlx::SqlitePool;

use crate::crash::{assert_published, assert_sound, crash_each, Db, Matrix};

async fn check(db: &Db, expected: SagaStatus, what: &str, may_be_empty: bool) {
    let store = store::open(&db.url, store::OpenMode::MustExist)
        .await
        .unwrap();
    let agency = Agency::lazy(&db.local).unwrap();
    let (booked, cancelled) = agency.bookings("tr1").await.unwrap();
    let points = agency.points("ada").await.unwrap();
    let sagas = store.list(&Default::default()).await.unwrap();
    let Some(parent) = sagas.iter().find(|s| s.definition == trip::NAME) else {
        assert!(may_be_empty, "{what}: the trip is gone");
        assert_eq!((booked, points), (0, 0), "{what}: effects without a saga");
        return;
    };
    assert_eq!(parent.status, expected, "{what}: {:?}", parent.last_error);
    let children = store.children_of(parent.id).await.unwrap();
    match expected {
        SagaStatus::Completed => {
            assert_eq!((booked, cancelled), (3, 0), "{what}: bookings");
            assert_eq!(points, 100, "{what}: points granted once");
            assert_eq!(children.len(), 1, "{what}: one child");
            let child = store.get(children[0].0).await.unwrap().unwrap();
            assert_eq!(child.status, SagaStatus::Completed, "{what}");
            assert_eq!(
                sagas.len(),
                2,
                "{what}: the trip and its child, nothing more"
            );
        }
        _ => {
            assert_eq!(booked, cancelled, "{what}: every booking made is cancelled");
            assert_eq!((points, children.len(), sagas.len()), (0, 0, 1), "{what}");
        }
    }
    let pool = SqlitePool::connect(&db.local).await.unwrap();
    for saga in &sagas {
        let history = store.history(saga.id).await.unwrap();
        assert_sound(&history, &format!("{what}: {}", saga.definition));
        assert_published(&pool, &history, what).await;
    }
}

async fn matrix(pay: bool, expected: SagaStatus) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let (start, recover): (&[&str], &[&str]) = match pay {
        true => (&["trip", "--pay"], &["recover", "--pay"]),
        false => (&["trip"], &["recover"]),
    };
    let run = Matrix {
        crash_recovery: true,
        racy: true,
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

async fn every_crash_point_of_a_paid_trip_recovers() {
    let covered = matrix(true, SagaStatus::Completed).await;
    println!("paid trip: {covered} crash points");
}

async fn every_crash_point_of_an_unpaid_trip_recovers() {
    let covered = matrix(false, SagaStatus::Compensated).await;
    println!("unpaid trip: {covered} crash points");
}

on_both!(multi: every_crash_point_of_a_paid_trip_recovers, every_crash_point_of_an_unpaid_trip_recovers);
