//! Group commit through the store trait, on both backends: transitions submitted together share
//! one commit, and sharing never weakens a guarantee: a refused or failing transition writes
//! nothing and does not affect the others, and two writes of one saga stay in order. Outbox
//! clean-ups ride with transitions, or commit alone when none comes.

use std::time::Duration;

use futures::future::join_all;
use saga::engine::{
    bus::Envelope, store::SagaStore, store::StoreError, store::WriteStats, EventKind, HistoryEvent,
    SagaState, SagaStatus,
};
use saga::engine::{store::Lease, store::Transition};
use serde_json::json;
use uuid::Uuid;

use crate::common::*;

const LEASE: Lease<'static> = Lease {
    owner: "group-commit-test",
    duration: Duration::from_secs(60),
};

/// A saga that exists only in the store (no definition runs it).
fn saga(id: Uuid) -> SagaState {
    SagaState {
        id,
        definition: "Stored".into(),
        version: 1,
        status: SagaStatus::Running,
        current_step: 0,
        data: json!({ "n": 0 }),
        steps: Vec::new(),
        last_error: None,
        next_attempt_at: None,
        awaiting: None,
        lease_owner: None,
        lease_expires_at: None,
        fencing_token: 1,
        last_seq: 0,
        created_at: 0,
        updated_at: 0,
        trace_parent: None,
    }
}

/// The state after one more event on `before`, and that event.
fn next(before: &SagaState, kind: EventKind) -> (SagaState, HistoryEvent) {
    let mut after = before.clone();
    after.last_seq += 1;
    after.data = json!({ "n": after.last_seq });
    let event = HistoryEvent {
        seq: after.last_seq,
        event_id: Uuid::now_v7(),
        saga_id: before.id,
        kind,
        step: None,
        attempt: None,
        at: 0,
        detail: json!({ "seq": after.last_seq }),
    };
    (after, event)
}

/// A transition of `state` by `event`; `expected_token` `None` creates the saga.
fn transition<'a>(
    state: &'a SagaState,
    event: &'a HistoryEvent,
    expected_token: Option<i64>,
) -> Transition<'a> {
    Transition {
        state,
        expected_token,
        retry_after: None,
        lease: Some(LEASE),
        events: std::slice::from_ref(event),
        before_deadline: false,
        outbox: &[],
    }
}

/// Creates `n` sagas, each with its SagaStarted event, one `apply` at a time.
async fn created(store: &dyn SagaStore, n: usize) -> Vec<SagaState> {
    let mut sagas = Vec::new();
    for _ in 0..n {
        let (state, event) = next(&saga(Uuid::now_v7()), EventKind::SagaStarted);
        store
            .apply(&transition(&state, &event, None))
            .await
            .unwrap();
        sagas.push(store.get(state.id).await.unwrap().unwrap());
    }
    sagas
}

fn delta(before: WriteStats, after: WriteStats) -> (u64, u64) {
    (
        after.commits - before.commits,
        after.transitions - before.transitions,
    )
}

async fn transitions_submitted_together_share_one_commit() {
    let env = Env::new().await;
    let store = env.store.as_ref();
    let before = store.write_stats();
    let sagas = created(store, 3).await;
    let (commits, transitions) = delta(before, store.write_stats());
    // Alone, each transition is its own commit: no waiting window holds it back.
    assert_eq!((commits, transitions), (3, 3));

    let news: Vec<_> = (0..29)
        .map(|_| next(&saga(Uuid::now_v7()), EventKind::SagaStarted))
        .collect();
    let steps: Vec<_> = sagas
        .iter()
        .map(|s| next(s, EventKind::StepCompleted))
        .collect();
    let mut writes: Vec<Transition> = news.iter().map(|(s, e)| transition(s, e, None)).collect();
    writes.extend(
        steps
            .iter()
            .zip(&sagas)
            .map(|((s, e), old)| transition(s, e, Some(old.fencing_token))),
    );
    let before = store.write_stats();
    // Submitted from one task at once (this test's runtime has one thread), they are all
    // queued before the committer runs, so they form one batch.
    let outcomes = join_all(writes.iter().map(|t| store.apply(t))).await;
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    assert_eq!(delta(before, store.write_stats()), (1, 32));
    let at = outcomes[0].as_ref().unwrap().at;
    assert!(outcomes.iter().all(|o| o.as_ref().unwrap().at >= at - 1000));
    for (state, _) in news.iter().chain(&steps) {
        let stored = store.get(state.id).await.unwrap().unwrap();
        assert_eq!(stored.last_seq, state.last_seq);
        assert_eq!(stored.data, state.data);
        assert_eq!(stored.lease_owner.as_deref(), Some(LEASE.owner));
        let history = store.history(state.id).await.unwrap();
        assert_eq!(history.len() as i64, state.last_seq);
        assert_eq!(
            history.last().unwrap().detail,
            json!({ "seq": state.last_seq })
        );
    }
}

async fn a_refused_transition_in_a_batch_writes_nothing_and_spares_the_others() {
    let env = Env::new().await;
    let store = env.store.as_ref();
    let sagas = created(store, 4).await;
    let steps: Vec<_> = sagas
        .iter()
        .map(|s| next(s, EventKind::StepCompleted))
        .collect();
    // Saga 1's writer holds a stale token; saga 3's id is created again.
    let again = next(&saga(sagas[3].id), EventKind::SagaStarted);
    let writes = [
        transition(&steps[0].0, &steps[0].1, Some(sagas[0].fencing_token)),
        transition(&steps[1].0, &steps[1].1, Some(sagas[1].fencing_token - 1)),
        transition(&steps[2].0, &steps[2].1, Some(sagas[2].fencing_token)),
        transition(&again.0, &again.1, None),
    ];
    let before = store.write_stats();
    let outcomes = join_all(writes.iter().map(|t| store.apply(t))).await;
    assert_eq!(delta(before, store.write_stats()), (1, 4));
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
    assert!(
        matches!(outcomes[1], Err(StoreError::LeaseLost(id)) if id == sagas[1].id),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[3], Err(StoreError::Duplicate(id)) if id == sagas[3].id),
        "{outcomes:?}"
    );
    for (i, saga) in sagas.iter().enumerate() {
        let stored = store.get(saga.id).await.unwrap().unwrap();
        let history = store.history(saga.id).await.unwrap();
        let applied = i == 0 || i == 2;
        assert_eq!(stored.last_seq, if applied { 2 } else { 1 }, "saga {i}");
        assert_eq!(history.len(), stored.last_seq as usize, "saga {i}");
        // The refused ones keep their first event only; nothing of theirs leaked in.
        assert!(history.iter().all(|e| e.event_id != steps[1].1.event_id));
        assert!(history.iter().all(|e| e.event_id != again.1.event_id));
    }
}

async fn a_failing_statement_fails_only_its_own_transition() {
    let env = Env::new().await;
    let store = env.store.as_ref();
    let sagas = created(store, 3).await;
    let first = store.history(sagas[1].id).await.unwrap()[0].clone();
    let mut steps: Vec<_> = sagas
        .iter()
        .map(|s| next(s, EventKind::StepCompleted))
        .collect();
    // Saga 1's event reuses a sequence number already stored: the database rejects the row.
    steps[1].1.seq = first.seq;
    let writes: Vec<Transition> = steps
        .iter()
        .zip(&sagas)
        .map(|((s, e), old)| transition(s, e, Some(old.fencing_token)))
        .collect();
    let outcomes = join_all(writes.iter().map(|t| store.apply(t))).await;
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
    assert!(
        matches!(outcomes[1], Err(StoreError::Database(_))),
        "{outcomes:?}"
    );
    for (i, saga) in sagas.iter().enumerate() {
        let stored = store.get(saga.id).await.unwrap().unwrap();
        let expected = if i == 1 { 1 } else { 2 };
        assert_eq!(stored.last_seq, expected, "saga {i}");
        assert_eq!(
            store.history(saga.id).await.unwrap().len(),
            expected as usize,
            "saga {i}"
        );
    }
}

async fn two_writes_of_one_saga_submitted_together_apply_in_order() {
    let env = Env::new().await;
    let store = env.store.as_ref();
    let sagas = created(store, 2).await;
    let (one, e1) = next(&sagas[0], EventKind::StepStarted);
    let (two, e2) = next(&one, EventKind::StepCompleted);
    let (other, e3) = next(&sagas[1], EventKind::StepStarted);
    let token = sagas[0].fencing_token;
    let writes = [
        transition(&one, &e1, Some(token)),
        transition(&other, &e3, Some(sagas[1].fencing_token)),
        transition(&two, &e2, Some(token)),
    ];
    let before = store.write_stats();
    let outcomes = join_all(writes.iter().map(|t| store.apply(t))).await;
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    // The second write of saga 0 waits for the next batch, after the first.
    assert_eq!(delta(before, store.write_stats()), (2, 3));
    let history = store.history(sagas[0].id).await.unwrap();
    let kinds: Vec<EventKind> = history.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::SagaStarted,
            EventKind::StepStarted,
            EventKind::StepCompleted
        ]
    );
    assert_eq!(store.get(sagas[0].id).await.unwrap().unwrap().last_seq, 3);
}

/// Creates a saga whose SagaStarted event is also in the outbox; returns it and the event's id.
async fn created_with_outbox(store: &dyn SagaStore) -> (SagaState, Uuid) {
    let (state, event) = next(&saga(Uuid::now_v7()), EventKind::SagaStarted);
    let outbox = [Envelope::of(&state.definition, &event)];
    let mut write = transition(&state, &event, None);
    write.outbox = &outbox;
    store.apply(&write).await.unwrap();
    (store.get(state.id).await.unwrap().unwrap(), event.event_id)
}

async fn outbox_held(store: &dyn SagaStore) -> Vec<Uuid> {
    let held = store.outbox_claim(Duration::ZERO, 100, true).await.unwrap();
    held.iter().map(|e| e.event_id).collect()
}

async fn an_outbox_clean_up_rides_with_the_next_transition_or_commits_alone() {
    let env = Env::new().await;
    let store = env.store.as_ref();
    let (first, published) = created_with_outbox(store).await;
    let (_, left) = created_with_outbox(store).await;
    assert_eq!(outbox_held(store).await, [published, left]);

    // A clean-up waits for the next transition's batch rather than take a commit of its own.
    let (step, event) = next(&first, EventKind::StepCompleted);
    let write = transition(&step, &event, Some(first.fencing_token));
    let before = store.write_stats();
    let ids = [published];
    let (removed, applied) = futures::join!(store.outbox_remove(&ids), store.apply(&write));
    removed.unwrap();
    applied.unwrap();
    assert_eq!(delta(before, store.write_stats()), (1, 1));
    assert_eq!(outbox_held(store).await, [left]);

    // With no transition to ride with, it commits alone.
    let before = store.write_stats();
    store.outbox_remove(&[left]).await.unwrap();
    assert_eq!(delta(before, store.write_stats()), (1, 0));
    assert!(outbox_held(store).await.is_empty());
}

on_both!(
    transitions_submitted_together_share_one_commit,
    an_outbox_clean_up_rides_with_the_next_transition_or_commits_alone,
    a_refused_transition_in_a_batch_writes_nothing_and_spares_the_others,
    a_failing_statement_fails_only_its_own_transition,
    two_writes_of_one_saga_submitted_together_apply_in_order,
);
