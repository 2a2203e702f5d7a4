//! Participant replies at the edges: duplicates, late replies, unknown sagas, malformed replies,
//! a participant that never answers, and a wait that outlives its mediator. The test plays the
//! participant of a small saga: `a` (local) then `b`, sent as `DoB` and undone by `UndoB`.

use std::sync::Arc;
use std::time::Duration;

use saga::engine::participant::Command;
use saga::engine::{
    EventBus, Filter, InProcessBus, Mediator, Registry, RetryPolicy, SagaDefinition, SagaState,
    SagaStatus, Step, StepContext, Subscription,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::common::*;

const NAME: &str = "reply-test";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Data {
    b: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Output {
    value: String,
}

fn registry(reply_timeout: Duration, attempts: u32) -> Registry {
    let quick =
        |n| RetryPolicy::attempts(n).backoff(Duration::from_millis(5), Duration::from_millis(10));
    let def = SagaDefinition::<Data>::new(NAME, 1)
        .step(
            Step::new("a", |ctx: StepContext<Data>| async move { Ok(ctx.data) })
                .compensate(|ctx: StepContext<Data>| async move { Ok(ctx.data) }),
        )
        .step(
            Step::participant("b", "DoB", |mut d: Data, o: Output| {
                d.b = Some(o.value);
                d
            })
            .compensate_with_command("UndoB")
            .retry(quick(attempts))
            .compensation_retry(quick(3))
            .timeout(reply_timeout),
        )
        .build()
        .unwrap();
    let mut registry = Registry::new();
    registry.register(def).unwrap();
    registry
}

struct Setup {
    env: Env,
    bus: Arc<dyn EventBus>,
    m: Mediator,
    commands: Subscription,
}

async fn setup(reply_timeout: Duration, attempts: u32) -> Setup {
    let env = Env::new().await;
    let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::new());
    let commands = bus.subscribe(Filter::types(["DoB", "UndoB"]));
    let m = fast(
        Mediator::builder(env.store.clone(), registry(reply_timeout, attempts)).bus(bus.clone()),
    );
    Setup {
        env,
        bus,
        m,
        commands,
    }
}

async fn next_command(commands: &mut Subscription) -> Command {
    let e = tokio::time::timeout(BOUND, commands.next())
        .await
        .unwrap()
        .unwrap();
    Command::parse(&e).unwrap()
}

/// The saga as stored, with its history, to compare before and after a reply.
async fn snapshot(m: &Mediator, id: Uuid) -> (SagaState, usize) {
    (m.get(id).await.unwrap(), m.history(id).await.unwrap().len())
}

/// Returns once the listener has processed every reply published before: it handles replies in
/// order, so a marker saga's reply, published last, is applied last.
async fn settle(s: &Setup) {
    let mut commands = s.bus.subscribe(Filter::types(["DoB"]));
    let marker = s.m.start(NAME, &Data::default()).await.unwrap();
    let command = loop {
        let c = next_command(&mut commands).await;
        if c.saga_id == marker {
            break c;
        }
    };
    s.bus
        .publish(command.success(&json!({ "value": "marker" })))
        .await
        .unwrap();
    assert_eq!(wait(&s.m, marker).await.status, SagaStatus::Completed);
}

#[tokio::test]
async fn a_duplicate_reply_changes_nothing() {
    let mut s = setup(Duration::from_secs(30), 3).await;
    let id = s.m.start(NAME, &Data::default()).await.unwrap();
    let command = next_command(&mut s.commands).await;
    assert_eq!(
        (command.saga_id, command.step.as_str(), command.attempt),
        (id, "b", 1)
    );
    assert_eq!(command.idempotency_key, format!("{id}:b:action"));
    let reply = command.success(&json!({ "value": "done" }));
    s.bus.publish(reply.clone()).await.unwrap();
    let saga = wait(&s.m, id).await;
    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(saga.data["b"], "done");

    let before = snapshot(&s.m, id).await;
    s.bus.publish(reply.clone()).await.unwrap();
    let mut again = reply;
    again.event_id = Uuid::now_v7(); // the same reply re-sent under a new id
    s.bus.publish(again).await.unwrap();
    settle(&s).await;
    assert_eq!(snapshot(&s.m, id).await, before);
}

#[tokio::test]
async fn a_late_reply_for_a_timed_out_attempt_changes_nothing() {
    let mut s = setup(Duration::from_millis(300), 3).await;
    let id = s.m.start(NAME, &Data::default()).await.unwrap();
    let first = next_command(&mut s.commands).await;
    // No answer: the deadline passes and attempt 2 is sent.
    let second = next_command(&mut s.commands).await;
    assert_eq!((first.attempt, second.attempt), (1, 2));
    assert_eq!(
        first.idempotency_key, second.idempotency_key,
        "same key on every attempt"
    );
    let history = lines(&s.m.history(id).await.unwrap());
    assert!(history.contains(&"StepFailed b".to_string()), "{history:?}");

    let before = snapshot(&s.m, id).await;
    s.bus
        .publish(first.success(&json!({ "value": "late" })))
        .await
        .unwrap();
    settle(&s).await;
    assert_eq!(
        snapshot(&s.m, id).await,
        before,
        "the reply for attempt 1 is ignored"
    );

    s.bus
        .publish(second.success(&json!({ "value": "on time" })))
        .await
        .unwrap();
    let saga = wait(&s.m, id).await;
    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(saga.data["b"], "on time");
    let failed =
        s.m.history(id)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.kind.as_str() == "StepFailed")
            .unwrap();
    assert_eq!(failed.detail["kind"], "timeout");
}

#[tokio::test]
async fn unknown_and_malformed_replies_change_nothing() {
    let mut s = setup(Duration::from_secs(30), 3).await;
    let id = s.m.start(NAME, &Data::default()).await.unwrap();
    let command = next_command(&mut s.commands).await;
    let before = snapshot(&s.m, id).await;

    // For a saga that does not exist.
    let mut stranger = command.success(&json!({ "value": "x" }));
    stranger.saga_id = Some(Uuid::now_v7());
    s.bus.publish(stranger).await.unwrap();
    // For a step the saga does not have.
    let mut wrong_step = command.success(&json!({ "value": "x" }));
    wrong_step.step = Some("zzz".into());
    s.bus.publish(wrong_step).await.unwrap();
    // Not JSON at all, and a reply whose payload makes no sense.
    assert!(s
        .bus
        .publish_json("{\"type\":\"ParticipantReply\", garbage")
        .await
        .is_err());
    let mut nonsense = command.success(&json!({}));
    nonsense.payload = json!({ "outcome": "maybe" });
    s.bus.publish(nonsense).await.unwrap();
    settle(&s).await;
    assert_eq!(snapshot(&s.m, id).await, before);

    // The real reply still works: nothing panicked, nothing stopped listening.
    s.bus
        .publish(command.success(&json!({ "value": "ok" })))
        .await
        .unwrap();
    assert_eq!(wait(&s.m, id).await.status, SagaStatus::Completed);
}

#[tokio::test]
async fn a_participant_that_never_answers_is_timed_out_and_compensated() {
    let mut s = setup(Duration::from_millis(200), 2).await;
    let id = s.m.start(NAME, &Data::default()).await.unwrap();
    // DoB is never answered; UndoB is, when it comes.
    let mut undone = None;
    while undone.is_none() {
        let c = next_command(&mut s.commands).await;
        if c.kind == "UndoB" {
            assert_eq!(c.idempotency_key, format!("{id}:b:compensate"));
            s.bus.publish(c.success(&json!(null))).await.unwrap();
            undone = Some(c);
        }
    }
    let saga = wait(&s.m, id).await;
    assert_eq!(saga.status, SagaStatus::Compensated);
    assert!(
        saga.steps[1].outcome_unknown,
        "a timed-out command may have taken effect"
    );
    assert_eq!(saga.steps[1].attempts, 2);
    assert_eq!(
        compensations(&s.m.history(id).await.unwrap()),
        [
            "CompensationStarted b",
            "StepCompensated b",
            "CompensationStarted a",
            "StepCompensated a"
        ]
    );
}

#[tokio::test]
async fn a_reply_wait_survives_a_restart() {
    let mut s = setup(Duration::from_secs(30), 3).await;
    let id = s.m.start(NAME, &Data::default()).await.unwrap();
    let command = next_command(&mut s.commands).await;
    let waiting = s.m.get(id).await.unwrap();
    assert!(
        waiting.awaiting.is_some() && waiting.lease_owner.is_none(),
        "no task and no lease while waiting"
    );
    drop(s.m); // the mediator goes away while the participant works

    let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::new());
    let m = fast(
        Mediator::builder(s.env.reopen().await, registry(Duration::from_secs(30), 3))
            .bus(bus.clone()),
    );
    bus.publish(command.success(&json!({ "value": "after restart" })))
        .await
        .unwrap();
    let saga = wait(&m, id).await;
    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(saga.data["b"], "after restart");
}
