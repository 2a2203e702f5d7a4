//! Restart: a mediator dropped in the middle of a saga (mid-step, mid-backoff, mid-compensation)
//! and a new one opened on the same file finishes it. Nothing completed before runs again; the
//! interrupted work runs again with the same idempotency key; backoff waits are durable.

use std::time::Duration;

use saga::engine::{fault::Fault, fault::FaultPlan, Mediator, Phase, RetryPolicy, SagaStatus};

use crate::common::*;
use crate::probe::{self, Plan, Probe, ProbeData};

async fn a_saga_interrupted_mid_step_is_finished_by_the_next_mediator() {
    let env = Env::new().await;
    let probe = Probe::open(&env.local).await;
    let first = fast(Mediator::builder(
        env.store.clone(),
        probe::registry(&probe, &Plan::holding("b", Phase::Action)),
    ))
    .await;
    let id = first
        .start(probe::NAME, &ProbeData::default())
        .await
        .unwrap();
    until("step b to be running", || probe.called("b", Phase::Action)).await;
    drop(first); // the process dies with b's effect applied but not recorded

    let second = fast(Mediator::builder(
        env.reopen().await,
        probe::registry(&probe, &Plan::open()),
    ))
    .await;
    let saga = wait(&second, id).await;
    assert_eq!(saga.status, SagaStatus::Completed);
    assert!(
        saga.fencing_token >= 2,
        "the second mediator claimed the saga"
    );
    assert_eq!(saga.steps[1].attempts, 2, "the interrupted attempt counts");

    let calls: Vec<(String, i64, String)> = probe
        .calls()
        .await
        .into_iter()
        .map(|c| (c.step, c.attempt, c.key))
        .collect();
    let key = |s: &str| format!("{id}:{s}:action");
    assert_eq!(
        calls,
        [
            ("a".into(), 1, key("a")),
            ("b".into(), 1, key("b")),
            ("b".into(), 2, key("b")), // run again as attempt 2, with the same key
            ("c".into(), 1, key("c")),
        ]
    );
    let history = second.history(id).await.unwrap();
    assert_gapless(&history);
    assert_eq!(
        lines(&history),
        [
            "SagaStarted",
            "StepStarted a",
            "StepCompleted a",
            "StepStarted b",
            "StepStarted b", // resumed
            "StepCompleted b",
            "StepStarted c",
            "StepCompleted c",
            "SagaCompleted"
        ]
    );
    let resumed = history.iter().find(|e| e.attempt == Some(2)).unwrap();
    assert_eq!(resumed.detail["resumed"], true);
}

async fn a_backoff_wait_survives_a_restart_and_is_not_cut_short() {
    let env = Env::new().await;
    let probe = Probe::open(&env.local).await;
    let slow_retry = RetryPolicy::attempts(3)
        .backoff(Duration::from_millis(1500), Duration::from_millis(1500))
        .jitter(0.0);
    let plan = || Plan {
        b_retry: slow_retry.clone(),
        ..Plan::open()
    };
    let faults = FaultPlan::new().inject("b", Phase::Action, Fault::FailTimes(1));
    let first =
        fast(Mediator::builder(env.store.clone(), probe::registry(&probe, &plan())).faults(faults))
            .await;
    let id = first
        .start(probe::NAME, &ProbeData::default())
        .await
        .unwrap();
    let store = env.store.clone();
    until("b's first attempt to fail", || {
        let store = store.clone();
        async move {
            store
                .get(id)
                .await
                .unwrap()
                .unwrap()
                .next_attempt_at
                .is_some()
        }
    })
    .await;
    drop(first);

    let due = env
        .store
        .get(id)
        .await
        .unwrap()
        .unwrap()
        .next_attempt_at
        .unwrap();
    let second = fast(Mediator::builder(
        env.reopen().await,
        probe::registry(&probe, &plan()),
    ))
    .await;
    let saga = wait(&second, id).await;
    assert_eq!(saga.status, SagaStatus::Completed);

    let history = second.history(id).await.unwrap();
    let failed = history
        .iter()
        .find(|e| e.kind.as_str() == "StepFailed")
        .unwrap();
    assert_eq!(failed.detail["retry_in_ms"], 1500);
    assert_eq!(
        due,
        failed.at + 1500,
        "the due time is stored with the failure"
    );
    let retried = history
        .iter()
        .find(|e| e.kind.as_str() == "StepStarted" && e.attempt == Some(2))
        .unwrap();
    assert!(
        retried.at >= due,
        "attempt 2 started at {} before it was due at {due}",
        retried.at
    );
    // Attempt 1 failed before reaching the step (injected); attempt 2 ran with the same key.
    let b: Vec<(i64, String)> = probe
        .calls()
        .await
        .into_iter()
        .filter(|c| c.step == "b")
        .map(|c| (c.attempt, c.key))
        .collect();
    assert_eq!(b, [(2, format!("{id}:b:action"))]);
}

async fn an_interrupted_compensation_is_resumed_in_reverse_order() {
    let env = Env::new().await;
    let probe = Probe::open(&env.local).await;
    let faults = || FaultPlan::new().fail_at("c");
    let first = fast(
        Mediator::builder(
            env.store.clone(),
            probe::registry(&probe, &Plan::holding("b", Phase::Compensation)),
        )
        .faults(faults()),
    )
    .await;
    let id = first
        .start(probe::NAME, &ProbeData::default())
        .await
        .unwrap();
    until("b's compensation to be running", || {
        probe.called("b", Phase::Compensation)
    })
    .await;
    drop(first);

    let second = fast(
        Mediator::builder(env.reopen().await, probe::registry(&probe, &Plan::open()))
            .faults(faults()),
    )
    .await;
    let saga = wait(&second, id).await;
    assert_eq!(saga.status, SagaStatus::Compensated);
    let undo: Vec<(String, String)> = probe
        .calls()
        .await
        .into_iter()
        .filter(|c| c.phase == "compensate")
        .map(|c| (c.step, c.key))
        .collect();
    let key = |s: &str| format!("{id}:{s}:compensate");
    assert_eq!(
        undo,
        [
            ("b".into(), key("b")),
            ("b".into(), key("b")),
            ("a".into(), key("a"))
        ]
    );
    assert_eq!(
        compensations(&second.history(id).await.unwrap()),
        [
            "CompensationStarted b",
            "CompensationStarted b", // resumed as attempt 2
            "StepCompensated b",
            "CompensationStarted a",
            "StepCompensated a"
        ]
    );
}

async fn a_graceful_shutdown_hands_unfinished_sagas_over_at_once() {
    let env = Env::new().await;
    let probe = Probe::open(&env.local).await;
    let plan = Plan::holding("b", Phase::Action);
    let gate = plan.gate.clone();
    let first = Mediator::builder(env.store.clone(), probe::registry(&probe, &plan))
        .lease(Duration::from_secs(3600))
        .shutdown_grace(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    let id = first
        .start(probe::NAME, &ProbeData::default())
        .await
        .unwrap();
    until("step b to be running", || probe.called("b", Phase::Action)).await;
    gate.add_permits(1);
    first.shutdown().await; // lets b finish and commit, then releases the lease
    let saga = env.store.get(id).await.unwrap().unwrap();
    assert_eq!(
        saga.lease_owner, None,
        "lease released even though it had an hour left"
    );
    assert!(saga.steps[1].status == saga::engine::StepStatus::Completed);

    let second = fast(Mediator::builder(
        env.reopen().await,
        probe::registry(&probe, &Plan::open()),
    ))
    .await;
    assert_eq!(wait(&second, id).await.status, SagaStatus::Completed);
    let b_calls = probe
        .calls()
        .await
        .into_iter()
        .filter(|c| c.step == "b")
        .count();
    assert_eq!(
        b_calls, 1,
        "b finished before shutdown and did not run again"
    );
}

async fn a_step_that_kills_its_process_every_time_is_not_retried_forever() {
    let env = Env::new().await;
    let probe = Probe::open(&env.local).await;
    let held = || Plan::holding("b", Phase::Action);
    // Each attempt of b "crashes" the mediator running it; two interruptions are tolerated.
    let mut id = None;
    for crash in 1..=3 {
        let m = fast(
            Mediator::builder(env.reopen().await, probe::registry(&probe, &held()))
                .max_interruptions(2),
        )
        .await;
        let saga = match id {
            None => m.start(probe::NAME, &ProbeData::default()).await.unwrap(),
            Some(id) => id,
        };
        id = Some(saga);
        let calls =
            || async { probe.calls().await.iter().filter(|c| c.step == "b").count() == crash };
        until("b's next attempt", calls).await;
        drop(m);
    }
    let id = id.unwrap();
    let last = fast(
        Mediator::builder(env.reopen().await, probe::registry(&probe, &held()))
            .max_interruptions(2),
    )
    .await;
    let saga = wait(&last, id).await;
    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(saga.steps[1].attempts, 3);
    assert!(saga.steps[1].outcome_unknown);
    let error = saga.steps[1].last_error.clone().unwrap();
    assert!(error.contains("interrupted"), "{error}");
    // b may have taken effect each time, so it is compensated, then a.
    assert_eq!(
        compensations(&last.history(id).await.unwrap()),
        [
            "CompensationStarted b",
            "StepCompensated b",
            "CompensationStarted a",
            "StepCompensated a"
        ]
    );
}

async fn an_ambiguous_commit_is_recovered_without_doing_anything_twice() {
    // Every commit from the 3rd to the 6th, in turn, goes through but is reported as failed.
    for nth in 3..=6 {
        let env = Env::new().await;
        let m = fast(
            Mediator::builder(env.store.clone(), env.registry())
                .faults(FaultPlan::new().ambiguous_commit(nth)),
        )
        .await;
        let mut events = m.subscribe(saga::engine::bus::Filter::all()).await.unwrap();
        let o = good_order(&format!("ambiguous-{nth}"));
        let id = m.start(saga::sagas::order::NAME, &o).await.unwrap();
        let saga = wait(&m, id).await;
        assert_eq!(saga.status, SagaStatus::Completed, "commit {nth}");
        let history = m.history(id).await.unwrap();
        assert_gapless(&history);
        let completed = lines(&history)
            .into_iter()
            .filter(|l| l.starts_with("StepCompleted"))
            .count();
        assert_eq!(completed, 5, "commit {nth}: no step completed twice");
        // Every event was published, the unconfirmed commit's included, in history order.
        let mut published = Vec::new();
        until("every event to be published", || {
            while let Some(e) = events.try_next() {
                if e.saga_id == Some(id) {
                    published.push(e.seq.unwrap());
                }
            }
            let done = published.len() >= history.len();
            async move { done }
        })
        .await;
        assert_eq!(
            published,
            (1..=history.len() as i64).collect::<Vec<_>>(),
            "commit {nth}"
        );
        let after = effects(&env.participants, &o).await;
        assert_eq!(
            (after.charged, after.shipments, after.confirmations),
            (4_000, 1, 1),
            "commit {nth}"
        );
    }
}

on_both!(
    a_saga_interrupted_mid_step_is_finished_by_the_next_mediator,
    a_backoff_wait_survives_a_restart_and_is_not_cut_short,
    an_interrupted_compensation_is_resumed_in_reverse_order,
    a_graceful_shutdown_hands_unfinished_sagas_over_at_once,
    a_step_that_kills_its_process_every_time_is_not_retried_forever,
    an_ambiguous_commit_is_recovered_without_doing_anything_twice,
);
