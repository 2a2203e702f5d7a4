//! The store contract of waits, on both backends: a signal is kept once per event id and read
//! by saga id and by correlation key (a key never passes for an id), and wakes only the sagas
//! that wait on it; a child link is written once and read both ways; the earliest due time of
//! a saga no mediator holds is what the scheduler sleeps until, and `make_due` ends that sleep.

use std::time::Duration;

use saga::engine::store::{NewSignal, SignalSent, SignalTarget};
use saga::engine::{Mediator, Registry, Wait};
use saga::sagas::booking::{self, Booking, Holds};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::*;

on_both!(
    a_signal_is_kept_once_and_wakes_only_the_sagas_waiting_on_it,
    a_child_link_is_written_once_and_read_both_ways,
    the_earliest_due_time_of_an_unheld_saga_is_what_the_scheduler_waits_for,
);

/// A booking whose cooling-off lasts `timer`, run until it waits as `waits` says, then left
/// with no mediator (a waiting saga holds no lease).
async fn parked(env: &Env, timer: Duration, key: &str, waits: fn(&Wait) -> bool) -> Uuid {
    let mut registry = Registry::new();
    registry
        .register(booking::booking(timer, Duration::from_secs(600)).unwrap())
        .unwrap();
    registry.provide(Holds::lazy(&env.local).unwrap());
    let m = fast(Mediator::builder(env.store.clone(), registry)).await;
    let id = m.start(booking::NAME, &Booking::new(key)).await.unwrap();
    until("the booking to wait", || async {
        let saga = env.store.get(id).await.unwrap().unwrap();
        saga.awaiting.is_some_and(|a| waits(&a.wait))
    })
    .await;
    m.shutdown().await;
    let saga = env.store.get(id).await.unwrap().unwrap();
    assert_eq!(saga.lease_owner, None);
    id
}

async fn send(env: &Env, target: SignalTarget, name: &str, id: Uuid, data: Value) -> SignalSent {
    let signal = NewSignal {
        target: &target,
        name,
        event_id: id,
        data: &data,
    };
    env.store.send_signal(&signal).await.unwrap()
}

async fn kept(env: &Env, saga: Uuid, name: &str, key: Option<&str>) -> Vec<(Uuid, bool)> {
    let signals = env.store.kept_signals(saga, name, key).await.unwrap();
    signals.iter().map(|s| (s.event_id, s.by_key)).collect()
}

async fn a_signal_is_kept_once_and_wakes_only_the_sagas_waiting_on_it() {
    let env = Env::new().await;
    let id = parked(&env, Duration::ZERO, "bk-2", |w| {
        matches!(w, Wait::Signal { .. })
    })
    .await;
    let key = || SignalTarget::Key("bk-2".into());
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    let woke = |woken: Vec<Uuid>| SignalSent { kept: true, woken };

    let first = send(&env, key(), "paid", ids[0], json!({ "amount": 5 })).await;
    assert_eq!(first, woke(vec![id]), "kept, and its saga made due");
    let again = send(&env, key(), "paid", ids[0], json!({ "amount": 6 })).await;
    assert_eq!(
        again,
        SignalSent {
            kept: false,
            woken: vec![]
        },
        "a duplicate changes nothing"
    );
    let other_name = send(&env, SignalTarget::Saga(id), "shipped", ids[1], json!({})).await;
    assert_eq!(
        other_name,
        woke(vec![]),
        "kept, but nobody waits for that name"
    );
    let other_key = send(
        &env,
        SignalTarget::Key("bk-9".into()),
        "paid",
        ids[2],
        json!({}),
    )
    .await;
    assert_eq!(other_key, woke(vec![]));
    let by_id = send(&env, SignalTarget::Saga(id), "paid", ids[3], json!({})).await;
    assert_eq!(by_id, woke(vec![id]));
    // A key spelled like the saga's id is still a key.
    let lookalike = SignalTarget::Key(id.to_string());
    send(&env, lookalike, "paid", ids[4], json!({})).await;

    assert_eq!(
        kept(&env, id, "paid", Some("bk-2")).await,
        [(ids[0], true), (ids[3], false)],
        "by id and by key, oldest first"
    );
    assert_eq!(kept(&env, id, "paid", None).await, [(ids[3], false)]);
    assert_eq!(
        kept(&env, id, "shipped", Some("bk-2")).await,
        [(ids[1], false)]
    );
    assert_eq!(
        kept(&env, Uuid::now_v7(), "paid", Some("bk-9")).await,
        [(ids[2], true)]
    );
    let signals = env.store.kept_signals(id, "paid", None).await.unwrap();
    assert_eq!(signals[0].data, json!({}));
    let first = &env
        .store
        .kept_signals(id, "paid", Some("bk-2"))
        .await
        .unwrap()[0];
    assert_eq!(
        first.data,
        json!({ "amount": 5 }),
        "the first copy is what is kept"
    );
}

async fn a_child_link_is_written_once_and_read_both_ways() {
    let env = Env::new().await;
    let (parent, other) = (Uuid::now_v7(), Uuid::now_v7());
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    env.store.link_child(first, parent, "earn").await.unwrap();
    env.store.link_child(first, parent, "earn").await.unwrap();
    env.store.link_child(first, other, "steal").await.unwrap();
    env.store.link_child(second, parent, "more").await.unwrap();
    assert_eq!(
        env.store.children_of(parent).await.unwrap(),
        [(first, "earn".to_string()), (second, "more".to_string())],
        "oldest first; the second link of `first` changed nothing"
    );
    assert_eq!(
        env.store.parent_of(first).await.unwrap(),
        Some((parent, "earn".to_string()))
    );
    assert_eq!(env.store.parent_of(parent).await.unwrap(), None);
    assert!(env.store.children_of(other).await.unwrap().is_empty());
    assert!(env.store.children_of(first).await.unwrap().is_empty());
}

async fn the_earliest_due_time_of_an_unheld_saga_is_what_the_scheduler_waits_for() {
    let env = Env::new().await;
    assert_eq!(env.store.next_due().await.unwrap(), None, "nothing waits");
    let hour = Duration::from_secs(3600);
    let id = parked(&env, hour, "bk-3", |w| matches!(w, Wait::Timer { .. })).await;
    let due = env
        .store
        .next_due()
        .await
        .unwrap()
        .expect("the timer is due later");
    assert!(
        due > hour - Duration::from_secs(60) && due <= hour,
        "{due:?}"
    );
    let definitions = [(booking::NAME.to_string(), 1)];
    let claim = || {
        env.store
            .claim("other", Duration::from_secs(30), &definitions, 10, &[])
    };
    assert!(claim().await.unwrap().is_empty(), "not due yet");

    env.store.make_due(id).await.unwrap();
    // Due now by the database's clock: nothing later to wait for, and a claim takes it.
    assert_eq!(
        env.store.next_due().await.unwrap(),
        None,
        "due now, not later"
    );
    let taken = claim().await.unwrap();
    assert_eq!(taken.iter().map(|s| s.id).collect::<Vec<_>>(), [id]);
    assert_eq!(taken[0].lease_owner.as_deref(), Some("other"));
}
