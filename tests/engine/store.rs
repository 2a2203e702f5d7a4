//! The store's contract, through the trait: fencing, claims, leases, version filtering.

use std::time::Duration;

use saga::engine::{store::Lease, store::Transition};
use saga::engine::{store::StoreError, EventKind, HistoryEvent, Mediator, SagaStatus};
use serde_json::json;
use uuid::Uuid;

use crate::common::*;
use crate::probe::{self, Plan, Probe, ProbeData};

/// Starts a probe saga held at `b` under `first`, returns its id once b is running.
async fn held_saga(env: &Env, probe: &Probe, lease: Duration) -> (Mediator, Uuid) {
    let first = Mediator::builder(
        env.store.clone(),
        probe::registry(probe, &Plan::holding("b", saga::engine::Phase::Action)),
    )
    .lease(lease)
    .start()
    .await
    .unwrap();
    let id = first
        .start(probe::NAME, &ProbeData::default())
        .await
        .unwrap();
    until("b to run", || {
        probe.called("b", saga::engine::Phase::Action)
    })
    .await;
    (first, id)
}

/// Waits until the stored lease of `id` has expired, by the database clock's own reckoning
/// (approximated here by the wall clock of the same machine).
async fn until_lease_expired(env: &Env, id: Uuid) {
    let expires = env
        .store
        .get(id)
        .await
        .unwrap()
        .unwrap()
        .lease_expires_at
        .unwrap();
    until("the lease to expire", || async move {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        now > expires + 5
    })
    .await;
}

async fn a_stale_owner_write_is_refused_after_another_mediator_claims() {
    let env = Env::new().await;
    let probe = Probe::open(&env.local).await;
    let (first, id) = held_saga(&env, &probe, Duration::from_millis(300)).await;
    drop(first); // frozen: no more heartbeats
    let stale = env.store.get(id).await.unwrap().unwrap();
    until_lease_expired(&env, id).await;

    let keys = vec![(probe::NAME.to_string(), 1)];
    let claimed = env
        .store
        .claim("second", Duration::from_secs(60), &keys, 10, &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].fencing_token, stale.fencing_token + 1);
    assert_eq!(claimed[0].lease_owner.as_deref(), Some("second"));

    // The zombie wakes up and tries to record b as completed with its old token.
    let mut zombie = stale.clone();
    zombie.last_seq += 1;
    let event = HistoryEvent {
        seq: zombie.last_seq,
        event_id: Uuid::now_v7(),
        saga_id: id,
        kind: EventKind::StepCompleted,
        step: Some("b".into()),
        attempt: Some(1),
        at: 0,
        detail: json!({}),
    };
    let write = Transition {
        state: &zombie,
        expected_token: Some(stale.fencing_token),
        retry_after: None,
        lease: Some(Lease {
            owner: stale.lease_owner.as_deref().unwrap(),
            duration: Duration::from_secs(60),
        }),
        events: std::slice::from_ref(&event),
        before_deadline: false,
        outbox: &[],
    };
    let refused = env.store.apply(&write).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::LeaseLost(lost) if lost == id),
        "{refused}"
    );
    // Nothing of the refused write landed.
    let after = env.store.get(id).await.unwrap().unwrap();
    assert_eq!(after.last_seq, stale.last_seq);
    assert_eq!(after.lease_owner.as_deref(), Some("second"));
    assert_eq!(
        env.store.history(id).await.unwrap().len() as i64,
        stale.last_seq
    );
}

async fn a_mediator_does_not_take_from_itself_a_saga_it_drives_whose_lease_lapsed() {
    let env = Env::new().await;
    let probe = Probe::open(&env.local).await;
    let (first, id) = held_saga(&env, &probe, Duration::from_millis(300)).await;
    let owner = first.config().owner.clone();
    drop(first); // no more heartbeats: the lease lapses while b is "in flight"
    until_lease_expired(&env, id).await;
    let keys = vec![(probe::NAME.to_string(), 1)];
    let lease = Duration::from_secs(60);
    // Its holder, still driving it, leaves it alone.
    let mine = env.store.claim(&owner, lease, &keys, 10, &[id]).await;
    assert!(mine.unwrap().is_empty());
    // Another mediator takes it, whatever it drives itself.
    let theirs = env.store.claim("other", lease, &keys, 10, &[id]).await;
    assert_eq!(
        theirs.unwrap().iter().map(|s| s.id).collect::<Vec<_>>(),
        [id]
    );
    // A lease given up (as an operator's action does) is taken even by a mediator driving it:
    // its driver there is stale.
    assert_eq!(env.store.release("other", &[id]).await.unwrap(), 1);
    let again = env.store.claim("other", lease, &keys, 10, &[id]).await;
    let again = again.unwrap();
    assert_eq!(again.iter().map(|s| s.id).collect::<Vec<_>>(), [id]);
    assert_eq!(again[0].lease_owner.as_deref(), Some("other"));
}

async fn a_live_lease_is_not_claimed_and_a_claim_bumps_the_token() {
    let env = Env::new().await;
    let probe = Probe::open(&env.local).await;
    let (first, id) = held_saga(&env, &probe, Duration::from_secs(60)).await;
    let keys = vec![(probe::NAME.to_string(), 1)];
    assert!(env
        .store
        .claim("other", Duration::from_secs(60), &keys, 10, &[])
        .await
        .unwrap()
        .is_empty());
    // A graceful release makes it claimable at once. The holder is stopped first: a mediator
    // still running would be woken by the release and could take the saga back itself.
    let owner = first.config().owner.clone();
    drop(first);
    assert_eq!(env.store.release(&owner, &[id]).await.unwrap(), 1);
    let claimed = env
        .store
        .claim("other", Duration::from_secs(60), &keys, 10, &[])
        .await
        .unwrap();
    assert_eq!(claimed.iter().map(|s| s.id).collect::<Vec<_>>(), [id]);
    assert_eq!(claimed[0].fencing_token, 2);
    // Renewal only works for the holder.
    assert_eq!(
        env.store
            .renew("nobody", Duration::from_secs(60), &[id])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        env.store
            .renew("other", Duration::from_secs(60), &[id])
            .await
            .unwrap(),
        1
    );
}

async fn an_unknown_definition_version_is_left_untouched() {
    let env = Env::new().await;
    let probe = Probe::open(&env.local).await;
    let (first, id) = held_saga(&env, &probe, Duration::from_millis(300)).await;
    drop(first);
    until_lease_expired(&env, id).await;
    let before = env.store.get(id).await.unwrap().unwrap();

    // A mediator that only knows version 2 never claims the version-1 saga.
    let v2 = vec![(probe::NAME.to_string(), 2)];
    assert!(env
        .store
        .claim("v2-only", Duration::from_secs(60), &v2, 10, &[])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(env.store.get(id).await.unwrap().unwrap(), before);
    assert_eq!(
        env.store.unfinished_definitions().await.unwrap(),
        [(probe::NAME.to_string(), 1, 1)]
    );

    // One that knows version 1 picks it up and finishes it.
    let second = fast(Mediator::builder(
        env.reopen().await,
        probe::registry(&probe, &Plan::open()),
    ))
    .await;
    assert_eq!(wait(&second, id).await.status, SagaStatus::Completed);
}

async fn an_unreadable_saga_is_failed_and_does_not_block_the_others() {
    let env = Env::new().await;
    let probe = Probe::open(&env.local).await;
    let (first, bad) = held_saga(&env, &probe, Duration::from_millis(300)).await;
    let good = first
        .start(probe::NAME, &ProbeData::default())
        .await
        .unwrap();
    drop(first);
    // Damage one row the way a bad deploy or a hand edit might: valid JSON, wrong shape.
    env.execute(&format!(
        "UPDATE saga_instances SET steps = '{{\"not\": \"steps\"}}' WHERE id = '{bad}'"
    ))
    .await;

    let second = fast(Mediator::builder(
        env.reopen().await,
        probe::registry(&probe, &Plan::open()),
    ))
    .await;
    assert_eq!(wait(&second, good).await.status, SagaStatus::Completed);
    // Unreadable through the store until then, so read the status column itself.
    let failed =
        format!("SELECT COUNT(*) FROM saga_instances WHERE id = '{bad}' AND status = 'failed'");
    until("the bad saga to be quarantined", || async {
        env.number(&failed).await == 1
    })
    .await;
    let error: String = env
        .scalar(&format!(
            "SELECT last_error FROM saga_instances WHERE id = '{bad}'"
        ))
        .await;
    let kind = env.store.history(bad).await.unwrap().last().unwrap().kind;
    assert!(
        error.starts_with("the stored saga cannot be read: "),
        "{error}"
    );
    assert_eq!(kind, EventKind::SagaFailed);
}

async fn a_definition_changed_without_a_new_version_fails_the_saga_instead_of_running_it() {
    let env = Env::new().await;
    let probe = Probe::open(&env.local).await;
    let (first, id) = held_saga(&env, &probe, Duration::from_millis(300)).await;
    drop(first);
    // Version 1 now has different steps: running the stored saga against it would be wrong.
    let changed = saga::engine::SagaDefinition::<ProbeData>::new(probe::NAME, 1)
        .step(saga::engine::Step::new(
            "a",
            |ctx: saga::engine::StepContext<ProbeData>| async move { Ok(ctx.data) },
        ))
        .build()
        .unwrap();
    let mut registry = saga::engine::Registry::new();
    registry.register(changed).unwrap();
    let second = fast(Mediator::builder(env.reopen().await, registry)).await;
    let saga = wait(&second, id).await;
    assert_eq!(saga.status, SagaStatus::Failed);
    let error = saga.last_error.unwrap();
    assert!(error.contains("do not match `probe` version 1"), "{error}");
    assert_eq!(
        probe.calls().await.iter().filter(|c| c.step == "c").count(),
        0,
        "no step of the changed definition ran"
    );
}

on_both!(
    a_stale_owner_write_is_refused_after_another_mediator_claims,
    a_mediator_does_not_take_from_itself_a_saga_it_drives_whose_lease_lapsed,
    a_live_lease_is_not_claimed_and_a_claim_bumps_the_token,
    an_unknown_definition_version_is_left_untouched,
    an_unreadable_saga_is_failed_and_does_not_block_the_others,
    a_definition_changed_without_a_new_version_fails_the_saga_instead_of_running_it,
);
