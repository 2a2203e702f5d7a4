//! The store contract beyond what the engine suites show, on both backends: outbox claims held
//! against other sweepers, id prefixes, and wake-ups across processes where the database has
//! them (PostgreSQL's NOTIFY).

use std::time::Duration;

use saga::engine::enqueue;
use saga::engine::{fault::FaultPlan, Mediator, SagaStatus};
use saga::sagas::order;

use crate::common::*;

/// Runs one OrderSaga to its end with event dispatch off, so its events stay in the outbox.
async fn saga_with_undispatched_events(env: &Env) -> (uuid::Uuid, usize) {
    let m = fast(
        Mediator::builder(env.store.clone(), env.registry())
            .faults(FaultPlan::new())
            .dispatch(false),
    )
    .await;
    let id = m.start(order::NAME, &good_order("o1")).await.unwrap();
    assert_eq!(wait(&m, id).await.status, SagaStatus::Completed);
    let events = env.store.history(id).await.unwrap().len();
    (id, events)
}

async fn an_outbox_sweep_holds_what_it_took_from_other_sweepers() {
    let env = Env::new().await;
    let (id, events) = saga_with_undispatched_events(&env).await;
    let first = env
        .store
        .outbox_claim(Duration::ZERO, 100, false)
        .await
        .unwrap();
    assert_eq!(
        first.len(),
        events,
        "every transition's event is in the outbox"
    );
    assert!(first.iter().all(|e| e.saga_id == Some(id)));
    let seqs: Vec<i64> = first.iter().map(|e| e.seq.unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );
    // Another sweeper (another mediator, another process) finds nothing while they are held...
    let second = env
        .store
        .outbox_claim(Duration::ZERO, 100, false)
        .await
        .unwrap();
    assert!(second.is_empty(), "taken twice: {second:?}");
    // ...except a starting mediator, which takes over what a crashed process may have held.
    let taken = env
        .store
        .outbox_claim(Duration::ZERO, 100, true)
        .await
        .unwrap();
    assert_eq!(taken.len(), events);
    // Rows younger than the minimum age are left to their writer.
    let young = env
        .store
        .outbox_claim(Duration::from_secs(3600), 100, true)
        .await
        .unwrap();
    assert!(young.is_empty());
    let ids: Vec<uuid::Uuid> = first.iter().map(|e| e.event_id).collect();
    env.store.outbox_remove(&ids).await.unwrap();
    assert!(env
        .store
        .outbox_claim(Duration::ZERO, 100, true)
        .await
        .unwrap()
        .is_empty());
}

async fn an_id_prefix_finds_its_saga_and_a_bad_prefix_finds_nothing() {
    let env = Env::new().await;
    let m = env.mediator(FaultPlan::new()).await;
    let id = m.start(order::NAME, &good_order("p1")).await.unwrap();
    let text = id.to_string();
    for len in [4, 9, 20, 36] {
        let found = env.store.ids_with_prefix(&text[..len], 10).await.unwrap();
        assert_eq!(found, [id], "prefix of {len}");
    }
    for bad in ["zzzz", "ABCD", "0000-", &format!("{text}0")] {
        assert!(
            env.store.ids_with_prefix(bad, 10).await.unwrap().is_empty(),
            "{bad}"
        );
    }
}

async fn an_idle_mediator_is_woken_by_work_another_process_enqueues() {
    let env = Env::new().await;
    let signal = env.store.runnable_signal();
    match env.backend {
        Backend::Sqlite => {
            assert!(signal.is_none(), "SQLite has no cross-process wake-up");
            return;
        }
        Backend::Postgres => assert!(signal.is_some()),
    }
    let signal = signal.unwrap();
    // The listener announces itself once connected (work announced before may have been
    // missed); from then on every enqueue elsewhere is announced.
    tokio::time::timeout(BOUND, signal.notified())
        .await
        .unwrap();
    let other = env.reopen().await;
    let registry = env.registry();
    let enqueue_one = |name: &'static str| {
        let data = serde_json::to_value(good_order(name)).unwrap();
        let (other, registry) = (other.clone(), &registry);
        async move {
            enqueue(other.as_ref(), registry, order::NAME, data)
                .await
                .unwrap()
        }
    };
    let _ = enqueue_one("w0").await;
    tokio::time::timeout(BOUND, signal.notified())
        .await
        .unwrap();

    // A mediator whose fallback poll is an hour away finds the first saga with its first claim,
    // and the second, enqueued once it is idle, only by the wake-up.
    let idle = Mediator::builder(env.store.clone(), env.registry())
        .lease(Duration::from_secs(5))
        .poll_interval(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let completed = |id| {
        let store = env.store.clone();
        async move { store.get(id).await.unwrap().unwrap().status == SagaStatus::Completed }
    };
    let first = env.store.list(&Default::default()).await.unwrap()[0].id;
    until("the first claim to finish the saga enqueued before", || {
        completed(first)
    })
    .await;
    let second = enqueue_one("w1").await;
    until("the wake-up to finish the saga enqueued while idle", || {
        completed(second)
    })
    .await;
    idle.shutdown().await;
}

on_both!(
    an_outbox_sweep_holds_what_it_took_from_other_sweepers,
    an_id_prefix_finds_its_saga_and_a_bad_prefix_finds_nothing,
    an_idle_mediator_is_woken_by_work_another_process_enqueues,
);
